import XCTest
@testable import SpringCacheUV

/// `Cluster` as the driver of its failure handling, without sockets or wall clocks: calls go through a
/// recording transport and the probe timer through a `ManualScheduler`.
final class ClusterFailureHandlingTests: XCTestCase {
    private let refused = GRPCResult.failure(GRPCCallError(status: .unavailable, message: "connection refused"))
    private let notFoundFromPeer = GRPCResult.failure(GRPCCallError(status: .notFound, message: "", fromPeer: true))

    private func fixture(_ configure: (inout ClusterSettings) -> Void = { _ in }) -> ClusterFixture {
        var settings = ClusterSettings()
        settings.probeIntervalMillis = 1_000
        configure(&settings)
        let f = ClusterFixture(settings: settings)
        addTeardownBlock { f.cluster.close() }
        return f
    }

    /// Fetches `key` from `peer` and fails the call with `result`; returns what the group was told.
    @discardableResult
    private func failFetch(_ f: ClusterFixture, _ key: CacheKey, from peer: String,
                           with result: GRPCResult) -> PeerFetchResult? {
        var outcome: PeerFetchResult?
        f.cluster.fetch(from: PeerID(peer), group: "scores", key: key) { outcome = $0 }
        f.transport.complete(peer, path: PeerService.getPath, with: result)
        return outcome
    }

    func testAFailedCallDropsThePeerBeforeTheGroupHearsOfIt() {
        let f = fixture()
        let key = f.key(ownedBy: "b")
        XCTAssertEqual(f.cluster.owner(of: key), PeerID("b"))
        var ownerWhenTold: PeerID?? = .none
        f.cluster.fetch(from: PeerID("b"), group: "scores", key: key) { result in
            XCTAssertEqual(result, .failed("peer b: UNAVAILABLE: connection refused"))
            // The group's fallback asks the router again: the dead peer must not come back.
            ownerWhenTold = .some(f.cluster.owner(of: key))
        }
        f.transport.complete("b", with: refused)
        XCTAssertNotNil(ownerWhenTold)
        XCTAssertNotEqual(ownerWhenTold!, PeerID("b"))
        XCTAssertEqual(f.cluster.down, ["b"])
        XCTAssertEqual(f.cluster.unreachableOwner(of: key), PeerID("b"), "writes for b's keys are refused")
        XCTAssertEqual(f.cluster.stats.drops, 1)
        XCTAssertEqual(f.cluster.stats.peerFailures, 1)
        XCTAssertEqual(f.cluster.perPeer["b"]?.failures, 1)
    }

    func testAPeerIsDroppedOnlyAfterTheConfiguredFailuresInARow() {
        let f = fixture { $0.failuresToDrop = 3 }
        let key = f.key(ownedBy: "b")
        failFetch(f, key, from: "b", with: refused)
        failFetch(f, key, from: "b", with: refused)
        XCTAssertEqual(f.cluster.owner(of: key), PeerID("b"))
        // An answer in between starts the count again.
        failFetch(f, key, from: "b", with: notFoundFromPeer)
        failFetch(f, key, from: "b", with: refused)
        failFetch(f, key, from: "b", with: refused)
        XCTAssertEqual(f.cluster.down, [])
        failFetch(f, key, from: "b", with: refused)
        XCTAssertEqual(f.cluster.down, ["b"])
        XCTAssertNotEqual(f.cluster.owner(of: key), PeerID("b"))
    }

    func testCallerErrorsAndStatusesFromThePeerNeverDropIt() {
        let f = fixture()
        let key = f.key(ownedBy: "b")
        // A value over our own message limit (issue 10): the caller's error, not b's.
        var stored: PeerCallResult?
        f.cluster.store(at: PeerID("b"), group: "scores", key: key, value: [1], expireUnixSeconds: 0, hot: false) {
            stored = $0
        }
        f.transport.complete("b", with: .failure(GRPCCallError(status: .resourceExhausted, message: "too large")))
        XCTAssertEqual(stored, .failed("peer b: RESOURCE_EXHAUSTED: too large"))
        // An owner whose origin is down or slow answers with a status: it is alive.
        for status in [GRPCStatus.unavailable, .deadlineExceeded, .unknown, .notFound] {
            failFetch(f, key, from: "b", with: .failure(GRPCCallError(status: status, message: "", fromPeer: true)))
        }
        XCTAssertEqual(f.cluster.down, [])
        XCTAssertEqual(f.cluster.stats.drops, 0)
        XCTAssertEqual(f.cluster.stats.peerFailures, 0)
        XCTAssertEqual(f.cluster.owner(of: key), PeerID("b"))
    }

    func testADroppedPeerIsProbedEveryIntervalAndReadmittedWhenItAnswers() {
        let f = fixture()
        let key = f.key(ownedBy: "b")
        var readmissions: [[String]] = []
        f.cluster.onRingChange = { readmissions.append($0) }
        XCTAssertEqual(f.scheduler.armedTimers, 0, "no probe timer while every peer is up")
        failFetch(f, key, from: "b", with: refused)

        f.scheduler.advance(byMillis: 999)
        XCTAssertTrue(f.transport.pending.isEmpty, "no probe before the interval")
        f.scheduler.advance(byMillis: 1)
        let probes = f.transport.pending(to: "b")
        XCTAssertEqual(probes.count, 1)
        // The probe asks for the empty key of our group: refused at once by both implementations.
        XCTAssertEqual(probes.first?.path, PeerService.getPath)
        XCTAssertEqual(probes.first?.message, GetRequest(group: "scores", key: "").encoded())
        f.transport.complete("b", with: refused)
        XCTAssertEqual(f.cluster.down, ["b"])

        f.scheduler.advance(byMillis: 1_000)
        XCTAssertEqual(f.transport.pending(to: "b").count, 1, "the second probe")
        f.scheduler.advance(byMillis: 3_000)
        XCTAssertEqual(f.transport.pending(to: "b").count, 1, "no second probe while one is in flight")

        f.transport.complete("b", with: notFoundFromPeer)
        XCTAssertEqual(f.cluster.down, [])
        XCTAssertEqual(f.cluster.owner(of: key), PeerID("b"))
        XCTAssertEqual(f.cluster.stats.readmissions, 1)
        XCTAssertEqual(readmissions.last, ["b"])
        XCTAssertEqual(f.scheduler.armedTimers, 0, "probing stops once nobody is down")
        f.scheduler.advance(byMillis: 5_000)
        XCTAssertTrue(f.transport.pending.isEmpty)
    }

    func testSetpeerReadmitsADroppedPeerByHand() {
        let f = fixture()
        let key = f.key(ownedBy: "c")
        var readmissions: [[String]] = []
        f.cluster.onRingChange = { readmissions.append($0) }
        failFetch(f, key, from: "c", with: refused)
        XCTAssertEqual(f.cluster.down, ["c"])

        XCTAssertTrue(f.cluster.readmit("c"))
        XCTAssertEqual(f.cluster.down, [])
        XCTAssertEqual(f.cluster.owner(of: key), PeerID("c"))
        XCTAssertEqual(readmissions, [["c"]])
        XCTAssertEqual(f.scheduler.armedTimers, 0)
        // An up member: known, nothing to do; an unknown name: false.
        XCTAssertTrue(f.cluster.readmit("c"))
        XCTAssertFalse(f.cluster.readmit("nobody"))
        XCTAssertEqual(f.cluster.stats.readmissions, 1)
    }

    func testAMemberThatLeavesWhileDroppedIsForgottenAndComesBackUp() {
        let f = fixture()
        let key = f.key(ownedBy: "b")
        failFetch(f, key, from: "b", with: refused)
        f.scheduler.advance(byMillis: 1_000)
        XCTAssertEqual(f.transport.pending(to: "b").count, 1)

        // b's etcd keys are gone: it is no member any more, so nothing is down and probing stops.
        f.cluster.remove(name: "b")
        XCTAssertEqual(f.cluster.down, [])
        XCTAssertEqual(f.transport.forgotten, ["b"])
        XCTAssertEqual(f.scheduler.armedTimers, 0)
        f.transport.complete("b", with: .success([]))
        XCTAssertEqual(f.cluster.stats.readmissions, 0, "a probe answered by a departed member")

        // It registers again: a member like any other, up.
        f.cluster.upsert(ClusterFixture.members[1])
        XCTAssertEqual(f.cluster.down, [])
        XCTAssertEqual(f.cluster.owner(of: key), PeerID("b"))
    }

    func testADroppedMemberThatMovesStaysDroppedAndIsProbedAtItsNewAddress() {
        let f = fixture()
        failFetch(f, f.key(ownedBy: "b"), from: "b", with: refused)
        let moved = Member(name: "b", peer: HostPort(host: "10.0.0.9", port: 9002))
        f.cluster.upsert(moved)
        XCTAssertEqual(f.transport.forgotten, ["b"], "the connection to the old address goes")
        XCTAssertEqual(f.cluster.down, ["b"])
        f.scheduler.advance(byMillis: 1_000)
        XCTAssertEqual(f.transport.pending(to: "b").first?.address, moved.peer)
        f.transport.complete("b", with: .success([]))
        XCTAssertEqual(f.cluster.down, [])
    }

    func testACallCutByAMemberMovingDoesNotDropIt() {
        let f = fixture()
        let key = f.key(ownedBy: "b")
        var result: PeerFetchResult?
        f.cluster.fetch(from: PeerID("b"), group: "scores", key: key) { result = $0 }
        // b registers a new address: its old connection ends, failing the call on it on our side.
        f.cluster.upsert(Member(name: "b", peer: HostPort(host: "10.0.0.9", port: 9002)))
        f.transport.complete("b", with: .failure(GRPCCallError(status: .cancelled, message: "client closed")))
        XCTAssertEqual(result, .failed("peer b: CANCELLED: client closed"), "the caller still hears of it")
        XCTAssertEqual(f.cluster.down, [])
        XCTAssertEqual(f.cluster.owner(of: key), PeerID("b"))
        // A failure at the new address counts.
        failFetch(f, key, from: "b", with: refused)
        XCTAssertEqual(f.cluster.down, ["b"])
    }

    func testProbesOfSeveralPeersRunIndependently() {
        let f = fixture()
        failFetch(f, f.key(ownedBy: "b"), from: "b", with: refused)
        f.scheduler.advance(byMillis: 500)
        failFetch(f, f.key(ownedBy: "c"), from: "c", with: refused)
        f.scheduler.advance(byMillis: 500)
        XCTAssertEqual(f.transport.pending.map(\.peer), ["b", "c"], "one tick probes every dropped peer")
        f.transport.complete("c", with: .success([]))
        XCTAssertEqual(f.cluster.down, ["b"])
        f.transport.complete("b", with: refused)
        f.scheduler.advance(byMillis: 1_000)
        XCTAssertEqual(f.transport.pending.map(\.peer), ["b"])
        f.transport.complete("b", with: .success([]))
        XCTAssertEqual(f.cluster.down, [])
        XCTAssertEqual(f.scheduler.armedTimers, 0)
    }

    // MARK: PeerRouter's promise: never complete inside the call

    func testACallToAPeerWithoutAddressCompletesOnALaterTurn() {
        let f = fixture()
        f.cluster.upsert(Member(name: "d", peer: nil))
        var results: [PeerFetchResult] = []
        f.cluster.fetch(from: PeerID("d"), group: "scores", key: "k") { results.append($0) }
        var removed: [PeerCallResult] = []
        f.cluster.remove(at: PeerID("ghost"), group: "scores", key: "k") { removed.append($0) }
        XCTAssertEqual(results, [], "completed inside the call")
        XCTAssertEqual(removed, [], "completed inside the call")
        f.scheduler.runDue()
        XCTAssertEqual(results, [.failed("peer d: UNAVAILABLE: peer d has no known address")])
        XCTAssertEqual(removed, [.failed("peer ghost: UNAVAILABLE: peer ghost has no known address")])
        XCTAssertTrue(f.transport.started.isEmpty)
        XCTAssertEqual(f.cluster.down, [], "no address is not a failure of the peer")
    }

    func testAnInvalidationWithNoOtherMemberCompletesOnALaterTurn() {
        let solo = ClusterFixture(members: [ClusterFixture.members[0]])
        addTeardownBlock { solo.cluster.close() }
        var done = 0
        solo.cluster.invalidate(group: "scores", key: "k") { done += 1 }
        XCTAssertEqual(done, 0, "completed inside the call")
        solo.scheduler.runDue()
        XCTAssertEqual(done, 1)
        solo.scheduler.advance(byMillis: 10_000)
        XCTAssertEqual(done, 1, "exactly once")
    }

    func testCompletionsQueuedTogetherRunInOrderAndOnlyOnce() {
        let f = fixture()
        var order: [String] = []
        f.cluster.fetch(from: PeerID("x"), group: "scores", key: "1") { _ in
            order.append("x1")
            // Queued from a completion: runs after the batch it was queued in, never inside this completion.
            f.cluster.fetch(from: PeerID("x"), group: "scores", key: "3") { _ in order.append("x3") }
            XCTAssertEqual(order, ["x1"])
        }
        f.cluster.fetch(from: PeerID("y"), group: "scores", key: "2") { _ in order.append("y2") }
        XCTAssertEqual(order, [])
        f.scheduler.runDue()
        XCTAssertEqual(order, ["x1", "y2", "x3"])
        f.scheduler.advance(byMillis: 1_000)
        XCTAssertEqual(order.count, 3)
    }

    func testCallsAfterCloseCompleteOnALaterTurnAndCloseEndsEveryTimer() {
        let f = fixture()
        failFetch(f, f.key(ownedBy: "b"), from: "b", with: refused)
        XCTAssertEqual(f.scheduler.armedTimers, 1)
        f.cluster.close()
        XCTAssertTrue(f.transport.isClosed)
        XCTAssertEqual(f.scheduler.armedTimers, 0)
        var result: PeerFetchResult?
        f.cluster.fetch(from: PeerID("c"), group: "scores", key: "k") { result = $0 }
        XCTAssertNil(result)
        f.scheduler.runDue()
        XCTAssertEqual(result, .failed("peer c: UNAVAILABLE: the cluster is closed"))
        XCTAssertEqual(f.scheduler.armedTimers, 0)
    }

    // MARK: Reused call objects (issue 11)

    private func answer(_ value: String) -> GRPCResult {
        .success(GetResponse(value: Array(value.utf8)).encoded())
    }

    func testAFinishedCallObjectIsReusedOnceTheTransportLetsGoOfIt() {
        let f = fixture()
        let key = f.key(ownedBy: "b")
        var results: [PeerFetchResult] = []
        for i in 0..<10 {
            f.cluster.fetch(from: PeerID("b"), group: "scores", key: key) { results.append($0) }
            f.transport.complete("b", with: answer("v\(i)"))
            // Without reuse every call would make an object and give it back: the pool would grow to 10.
            XCTAssertEqual(f.cluster.idleStartedCalls, 1, "call \(i)")
        }
        XCTAssertEqual(results, (0..<10).map { .value(Array("v\($0)".utf8), expiresAtMillis: 0) })
    }

    func testALateSecondCompletionNeverReachesTheCallThatReusedItsObject() {
        let f = fixture()
        let key = f.key(ownedBy: "b")
        var first: [PeerFetchResult] = []
        f.cluster.fetch(from: PeerID("b"), group: "scores", key: key) { first.append($0) }
        // A transport that keeps the completion after running it (it may run it again, late).
        let firstCompletion = f.transport.pending(to: "b")[0].completion
        f.transport.complete("b", with: answer("one"))
        XCTAssertEqual(first, [.value(Array("one".utf8), expiresAtMillis: 0)])

        var second: [PeerFetchResult] = []
        f.cluster.fetch(from: PeerID("b"), group: "scores", key: key) { second.append($0) }
        firstCompletion(answer("late"))
        XCTAssertEqual(second, [], "a late completion of the first call reached the second")
        XCTAssertEqual(first.count, 1, "a finished call completes once")
        XCTAssertEqual(f.cluster.stats.callLatency.count, 1, "a late completion is not counted again")

        f.transport.complete("b", with: answer("two"))
        XCTAssertEqual(second, [.value(Array("two".utf8), expiresAtMillis: 0)])
    }

    // MARK: The owner's record handed out by owner(of:) (issue 11)

    func testAnOwnerLookedUpBeforeItsMemberLeftIsNotCalledAfter() {
        let f = fixture()
        let key = f.key(ownedBy: "b")
        let owner = f.cluster.owner(of: key)!
        XCTAssertNotNil(owner.route, "the ring hands out b's record")
        f.cluster.remove(name: "b")
        var results: [PeerFetchResult] = []
        f.cluster.fetch(from: owner, group: "scores", key: key) { results.append($0) }
        f.scheduler.runDue()
        XCTAssertEqual(results, [.failed("peer b: UNAVAILABLE: peer b has no known address")])
        XCTAssertTrue(f.transport.started.isEmpty, "the departed member's record was used")
    }

    func testAnOwnerLookedUpBeforeItsMemberMovedIsCalledAtTheNewAddress() {
        let f = fixture()
        let key = f.key(ownedBy: "b")
        let owner = f.cluster.owner(of: key)!
        let moved = Member(name: "b", peer: HostPort(host: "10.0.0.9", port: 9002))
        f.cluster.upsert(moved)
        f.cluster.fetch(from: owner, group: "scores", key: key) { _ in }
        XCTAssertEqual(f.transport.pending(to: "b").map(\.address), [moved.peer!])
        f.transport.complete("b", with: refused)
        XCTAssertEqual(f.cluster.down, ["b"], "a failure at the new address counts")
        XCTAssertEqual(f.cluster.perPeer["b"]?.calls, 1)
    }
}

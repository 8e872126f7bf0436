import XCTest

@testable import SpringCacheUV

/// `EtcdRegistrarState` alone: events in, actions out — no driver, no etcd, no time.
final class EtcdRegistrarStateTests: XCTestCase {
    private let endpoint = "http://e:1"
    private var down: EtcdError { .unreachable(endpoint: endpoint, message: "refused") }

    private func makeState(entries: Int = 3, ttl: Int = 10) -> EtcdRegistrarState {
        var settings = EtcdRegistrarSettings()
        settings.leaseTTLSeconds = ttl
        return EtcdRegistrarState(entryCount: entries, settings: settings)
    }

    /// Runs grant → puts → registered; returns the lease.
    @discardableResult
    private func register(_ state: inout EtcdRegistrarState, lease: Int64 = 7,
                          ttl: Int64 = 10) -> [EtcdRegistrarAction] {
        var last = state.handle(.answered(.granted(EtcdLease(id: lease, ttlSeconds: ttl))))
        for _ in 0..<state.entryCount { last = state.handle(.answered(.put)) }
        return last
    }

    func testGrantThenOnePutPerEntryThenKeepaliveEveryThirdOfTheTTL() {
        var state = makeState()
        XCTAssertEqual(state.handle(.start), [.call(.grant(ttlSeconds: 10))])
        XCTAssertEqual(state.handle(.answered(.granted(EtcdLease(id: 7, ttlSeconds: 9)))),
                       [.call(.put(entry: 0, lease: 7)), .report(.granted(EtcdLease(id: 7, ttlSeconds: 9)))])
        XCTAssertEqual(state.handle(.answered(.put)), [.call(.put(entry: 1, lease: 7))])
        XCTAssertEqual(state.handle(.answered(.put)), [.call(.put(entry: 2, lease: 7))])
        XCTAssertFalse(state.isRegistered)
        // The TTL etcd granted (9 s), not the one asked for, sets the cadence.
        XCTAssertEqual(state.handle(.answered(.put)),
                       [.armTimer(afterMillis: 3_000), .report(.registered(.first, lease: 7))])
        XCTAssertTrue(state.isRegistered)
        XCTAssertEqual(state.handle(.timerFired), [.call(.keepAlive(lease: 7))])
        XCTAssertEqual(state.handle(.answered(.keptAlive(ttlSeconds: 9))), [.armTimer(afterMillis: 3_000)],
                       "a keepalive of a registered node reports nothing")
        XCTAssertEqual(state.stats, EtcdRegistrarStats(grants: 1, keepalives: 1))
    }

    /// 200 → 400 → 800 → 1600 → 2000 → 2000 while etcd fails; a registration resets it to 200.
    func testBackoffDoublesUpToItsCapAndResetsOnceRegistered() {
        var state = makeState()
        _ = state.handle(.start)
        var waits: [Int64] = []
        for _ in 0..<6 {
            let actions = state.handle(.answered(.failed(down)))
            guard case .armTimer(let wait) = actions.first else { return XCTFail("\(actions)") }
            XCTAssertEqual(actions.last, .report(.failed(call: "grant", down, retryInMillis: wait)))
            waits.append(wait)
            XCTAssertEqual(state.handle(.timerFired), [.call(.grant(ttlSeconds: 10))], "no lease yet: grant again")
        }
        XCTAssertEqual(waits, [200, 400, 800, 1_600, 2_000, 2_000])
        XCTAssertEqual(state.stats.failures, 6)
        register(&state)
        XCTAssertEqual(state.backoff.nextMillis, 200, "reset by the registration")
        _ = state.handle(.timerFired)
        XCTAssertEqual(state.handle(.answered(.failed(down))).first, .armTimer(afterMillis: 200))
    }

    /// A keepalive that finds the lease gone: grant a new one, put every entry again, report a new lease.
    func testLeaseLossGrantsAgainAndPutsEveryEntryAgain() {
        var state = makeState()
        _ = state.handle(.start)
        register(&state, lease: 7)
        _ = state.handle(.timerFired)
        XCTAssertEqual(state.handle(.answered(.keptAlive(ttlSeconds: 0))),
                       [.call(.grant(ttlSeconds: 10)), .report(.leaseLost(lease: 7))])
        XCTAssertFalse(state.isRegistered)
        XCTAssertNil(state.leaseID)
        XCTAssertEqual(state.handle(.answered(.granted(EtcdLease(id: 8, ttlSeconds: 10)))).first,
                       .call(.put(entry: 0, lease: 8)))
        _ = state.handle(.answered(.put))
        _ = state.handle(.answered(.put))
        XCTAssertEqual(state.handle(.answered(.put)).last, .report(.registered(.newLease, lease: 8)))
        XCTAssertEqual(state.stats, EtcdRegistrarStats(grants: 2, keepalives: 0, failures: 0, reRegistrations: 1,
                                                       leasesLost: 1))
    }

    /// A put interrupted by a failure: the retry asks about the lease first, then puts only what was left.
    func testAFailedPutIsRetriedAfterAKeepaliveWithTheEntriesLeft() {
        var state = makeState()
        _ = state.handle(.start)
        _ = state.handle(.answered(.granted(EtcdLease(id: 7, ttlSeconds: 10))))
        _ = state.handle(.answered(.put))
        XCTAssertEqual(state.handle(.answered(.failed(down))),
                       [.armTimer(afterMillis: 200), .report(.failed(call: "put", down, retryInMillis: 200))])
        XCTAssertEqual(state.handle(.timerFired), [.call(.keepAlive(lease: 7))])
        XCTAssertEqual(state.handle(.answered(.keptAlive(ttlSeconds: 10))), [.call(.put(entry: 1, lease: 7))])
        _ = state.handle(.answered(.put))
        XCTAssertEqual(state.handle(.answered(.put)).last, .report(.registered(.first, lease: 7)),
                       "never registered before: still the first registration")
    }

    func testAPutThatFindsItsLeaseGoneGrantsANewOne() {
        var state = makeState()
        _ = state.handle(.start)
        _ = state.handle(.answered(.granted(EtcdLease(id: 7, ttlSeconds: 10))))
        let notFound = EtcdError.httpStatus(endpoint: endpoint, status: 404, message: "lease not found")
        XCTAssertEqual(state.handle(.answered(.failed(notFound))),
                       [.call(.grant(ttlSeconds: 10)), .report(.leaseVanishedWhilePutting(lease: 7))])
        XCTAssertEqual(state.stats.failures, 0)
    }

    func testCheckNowAsksAtOnceUnlessACallIsInFlight() {
        var state = makeState()
        XCTAssertEqual(state.handle(.checkNow), [], "not started")
        _ = state.handle(.start)
        XCTAssertEqual(state.handle(.checkNow), [], "the grant is in flight")
        register(&state)
        XCTAssertEqual(state.handle(.checkNow), [.disarmTimer, .call(.keepAlive(lease: 7))])
        XCTAssertEqual(state.handle(.answered(.keptAlive(ttlSeconds: 0))).first, .call(.grant(ttlSeconds: 10)))
    }

    func testStopCancelsTheCallInFlightAndRevokesTheLease() {
        var state = makeState()
        _ = state.handle(.start)
        register(&state)
        _ = state.handle(.timerFired)  // a keepalive in flight, the timer idle
        XCTAssertEqual(state.handle(.stop), [.cancelCall, .call(.revoke(lease: 7, timeoutMillis: 1_000))])
        XCTAssertEqual(state.phase, .stopping)
        XCTAssertFalse(state.isRegistered)
        XCTAssertEqual(state.handle(.stop), [], "already stopping")
        XCTAssertEqual(state.handle(.answered(.revoked)),
                       [.report(.revokeAnswered(lease: 7, nil)), .finishStop], "finishStop comes last")
        XCTAssertEqual(state.phase, .stopped)
        XCTAssertNil(state.leaseID)
        XCTAssertEqual(state.handle(.timerFired), [])
        XCTAssertEqual(state.handle(.checkNow), [])
        var waiting = makeState()
        _ = waiting.handle(.start)
        register(&waiting)  // the keepalive timer armed, nothing in flight
        XCTAssertEqual(waiting.handle(.stop), [.disarmTimer, .call(.revoke(lease: 7, timeoutMillis: 1_000))])
    }

    func testStopWithoutALeaseFinishesFromTheNextTimerTurn() {
        var state = makeState()
        XCTAssertEqual(state.handle(.stop), [.armTimer(afterMillis: 0)], "never started")
        XCTAssertEqual(state.handle(.timerFired), [.finishStop])
        var failing = makeState()
        _ = failing.handle(.start)
        _ = failing.handle(.answered(.failed(down)))  // a retry armed, no lease
        XCTAssertEqual(failing.handle(.stop), [.armTimer(afterMillis: 0)], "re-arming replaces the retry")
        XCTAssertEqual(failing.handle(.timerFired), [.finishStop])
        XCTAssertEqual(failing.stats.grants, 0)
    }

    func testAFailedRevokeStillFinishes() {
        var state = makeState()
        _ = state.handle(.start)
        register(&state)
        _ = state.handle(.stop)
        let timedOut = EtcdError.timedOut(endpoint: endpoint, message: "1000 ms")
        XCTAssertEqual(state.handle(.answered(.failed(timedOut))),
                       [.report(.revokeAnswered(lease: 7, timedOut)), .finishStop])
        XCTAssertEqual(state.stats.failures, 0, "a revoke is not a registration failure")
    }
}

import XCTest
@testable import SpringCacheUV

private func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Group routing through the `PeerRouter` seam (DESIGN.md "Cache semantics", "Ring and membership"): fetches
/// from owners, fallback, hot copies, and sets and deletes sent to owners. A ManualClock and a queued random
/// source drive everything; the fake router completes each call only when the test says so.
final class GroupRoutingTests: XCTestCase {
    /// Not a whole second, so the seconds sent with a forwarded set show their rounding up.
    private static let start: Int64 = 1_700_000_000_123
    private let ownerB = PeerID("node-b")

    private var clock = ManualClock(nowMillis: GroupRoutingTests.start)
    private var loader = CacheTestLoader()
    private var random = CacheTestRandom()
    /// Held here: `Group.router` is weak.
    private var router = CacheTestRouter()

    /// Test config: no jitter, 1 s TTL, sliding, 500 ms negative TTL, no stale grace, no hot copies.
    private func config(_ change: (inout CacheConfig) -> Void = { _ in }) -> CacheConfig {
        var config = CacheConfig(cacheBytes: 1 << 20, hotBytes: 1 << 16, ttlMillis: 1_000, jitterMillis: 0,
                                 sliding: true, negativeTTLMillis: 500, staleGraceMillis: 0, sweepBudget: 100)
        config.hotCopyOneIn = 0
        change(&config)
        return config
    }

    /// A group wired to fresh fakes (a table-driven case calls it once per row).
    private func makeGroup(_ change: (inout CacheConfig) -> Void = { _ in }) -> Group {
        clock = ManualClock(nowMillis: GroupRoutingTests.start)
        loader = CacheTestLoader()
        router = CacheTestRouter()
        let group = Group(name: "scores", config: config(change), clock: clock, random: random, loader: loader)
        group.router = router
        return group
    }

    /// The outcome of a get that must answer before returning (from the cache), else nil.
    private func getNow(_ group: Group, _ key: String, file: StaticString = #filePath,
                        line: UInt = #line) -> GetOutcome? {
        var result: GetOutcome?
        var calls = 0
        group.get(key: key) { result = $0; calls += 1 }
        XCTAssertLessThanOrEqual(calls, 1, "completion called more than once", file: file, line: line)
        return result
    }

    private func fresh(_ group: Group, _ key: String) -> (value: [UInt8], expiresAt: Int64)? {
        b(key).withUnsafeBytes { raw in group.withFreshValue(forKey: raw) { (Array($0.value), $0.expiresAtMillis) } }
    }

    private func value(_ bytes: [UInt8], expiresAt: Int64) -> GetOutcome {
        .value(bytes, expiresAtMillis: expiresAt, etag: LRUCache.valueHash(bytes), stale: false)
    }

    private func valueBytes(_ outcome: GetOutcome?) -> [UInt8]? {
        if case .value(let v, _, _, _)? = outcome { return v }
        return nil
    }

    private func expiry(_ outcome: GetOutcome?) -> Int64? {
        if case .value(_, let e, _, _)? = outcome { return e }
        return nil
    }

    private func assertStatsBalance(_ group: Group, file: StaticString = #filePath, line: UInt = #line) {
        let s = group.stats
        XCTAssertEqual(s.gets, s.hits + s.negativeHits + s.misses, "every get is a hit, negative hit or miss",
                       file: file, line: line)
    }

    /// A completion that records each Bool it gets.
    private final class Results {
        private(set) var all: [Bool] = []
        func callback() -> (Bool) -> Void { { self.all.append($0) } }
    }

    /// A completion that records each write outcome it gets (`Group.erase`).
    private final class RemoveResults {
        private(set) var all: [WriteOutcome] = []
        func callback() -> (WriteOutcome) -> Void { { self.all.append($0) } }
    }

    // MARK: Fetching from the owner

    func testAMissForAKeyOwnedElsewhereIsFetchedOnceForAllWaiters() {
        let group = makeGroup()
        router.owners["k"] = ownerB
        let outcomes = CacheTestOutcomes()
        for _ in 0..<50 { group.get(key: "k", completion: outcomes.callback()) }

        XCTAssertEqual(router.calls, [.fetch(peer: "node-b", group: "scores", key: "k")], "one fetch for 50 gets")
        XCTAssertEqual(loader.loadCount, 0, "the origin is not asked for a key owned elsewhere")
        XCTAssertTrue(outcomes.all.isEmpty, "nothing answers before the owner does")
        XCTAssertEqual(group.fetchesInFlight, 1)
        XCTAssertEqual(group.loadsInFlight, 0)

        let ownerExpiry = clock.nowMillis + 400
        router.completeFetch("k", with: .value(b("remote"), expiresAtMillis: ownerExpiry))
        XCTAssertEqual(outcomes.all, Array(repeating: value(b("remote"), expiresAt: ownerExpiry), count: 50))
        XCTAssertEqual(group.fetchesInFlight, 0)
        XCTAssertEqual(loader.loadCount, 0)
        let s = group.stats
        XCTAssertEqual([s.gets, s.misses, s.peerFetches, s.loads, s.peerFetchErrors, s.fallbackLoads],
                       [50, 50, 1, 0, 0, 0])
        assertStatsBalance(group)
    }

    func testAGetNotForwardedLoadsFromTheOriginEvenWhenTheRouterNamesAnOwner() {
        let group = makeGroup()
        router.defaultOwner = ownerB
        let outcomes = CacheTestOutcomes()
        for _ in 0..<3 { group.get(key: "k", forward: false, completion: outcomes.callback()) }

        XCTAssertEqual(router.calls, [], "a node answering a peer never forwards")
        XCTAssertEqual(loader.calls.map(\.key), ["k"], "one origin load for the three gets")
        loader.complete("k", with: .value(b("origin")))
        XCTAssertEqual(outcomes.all, Array(repeating: value(b("origin"), expiresAt: clock.nowMillis + 1_000), count: 3))
        XCTAssertEqual(group.mainItems, 1)
        XCTAssertEqual(group.stats.peerFetches, 0)
        XCTAssertEqual(group.stats.loads, 1)
        assertStatsBalance(group)
    }

    func testAFetchAndANonForwardedLoadOfOneKeyDoNotShareAFlight() {
        // (the forwarded get starts first, the origin load lands first)
        let cases: [(Bool, Bool)] = [(true, true), (true, false), (false, true), (false, false)]
        for (forwardedFirst, originLandsFirst) in cases {
            let label = "forwarded first \(forwardedFirst), origin lands first \(originLandsFirst)"
            let group = makeGroup()
            router.defaultOwner = ownerB
            let forwarded = CacheTestOutcomes()
            let answering = CacheTestOutcomes()
            let startForwarded = { group.get(key: "k", completion: forwarded.callback()) }
            let startAnswering = { group.get(key: "k", forward: false, completion: answering.callback()) }
            if forwardedFirst { startForwarded(); startAnswering() } else { startAnswering(); startForwarded() }

            XCTAssertEqual(router.fetches(of: "k"), 1, label)
            XCTAssertEqual(loader.loads(of: "k"), 1, label)
            XCTAssertEqual(group.fetchesInFlight, 1, label)
            XCTAssertEqual(group.loadsInFlight, 1, label)

            let landOrigin = { self.loader.complete("k", with: .value(b("origin"))) }
            let landFetch = { self.router.completeFetch("k", with: .value(b("owner"), expiresAtMillis: 0)) }
            if originLandsFirst {
                landOrigin()
                XCTAssertEqual(answering.all.map(valueBytes), [b("origin")], label)
                XCTAssertTrue(forwarded.all.isEmpty, "the forwarded get still waits for the owner; \(label)")
                landFetch()
            } else {
                landFetch()
                XCTAssertEqual(forwarded.all.map(valueBytes), [b("owner")], label)
                XCTAssertTrue(answering.all.isEmpty, "the peer's get still waits for the origin; \(label)")
                landOrigin()
            }
            XCTAssertEqual(forwarded.all.map(valueBytes), [b("owner")], label)
            XCTAssertEqual(answering.all.map(valueBytes), [b("origin")], label)
            XCTAssertEqual(group.fetchesInFlight + group.loadsInFlight, 0, label)
            XCTAssertEqual(router.pendingCount, 0, label)
        }
    }

    func testAFailedFetchFallsBackToOneOriginLoadForAllWaiters() {
        let group = makeGroup()
        router.defaultOwner = ownerB
        let outcomes = CacheTestOutcomes()
        for _ in 0..<5 { group.get(key: "k", completion: outcomes.callback()) }
        XCTAssertEqual(loader.loadCount, 0)

        router.completeFetch("k", with: .failed("connection refused"))
        XCTAssertEqual(loader.calls.map(\.key), ["k"], "one fallback load for all waiters")
        XCTAssertTrue(outcomes.all.isEmpty, "the waiters now wait for the origin")
        XCTAssertEqual(group.fetchesInFlight, 0)
        XCTAssertEqual(group.loadsInFlight, 1)

        loader.complete("k", with: .value(b("origin")))
        XCTAssertEqual(outcomes.all, Array(repeating: value(b("origin"), expiresAt: clock.nowMillis + 1_000), count: 5))
        let s = group.stats
        XCTAssertEqual([s.peerFetches, s.peerFetchErrors, s.fallbackLoads, s.loads], [1, 1, 1, 1])

        // Stored here: the next get is a hit that asks neither the owner nor the origin.
        XCTAssertEqual(group.mainItems, 1)
        XCTAssertEqual(getNow(group, "k"), value(b("origin"), expiresAt: clock.nowMillis + 1_000))
        XCTAssertEqual(router.fetchCount, 1)
        XCTAssertEqual(loader.loadCount, 1)
        assertStatsBalance(group)
    }

    func testAFailedFetchJoinsAnOriginLoadAlreadyInFlight() {
        let group = makeGroup()
        router.defaultOwner = ownerB
        let forwarded = CacheTestOutcomes()
        let answering = CacheTestOutcomes()
        group.get(key: "k", completion: forwarded.callback())
        group.get(key: "k", forward: false, completion: answering.callback())
        router.completeFetch("k", with: .failed("deadline exceeded"))
        XCTAssertEqual(loader.loads(of: "k"), 1, "the fallback joins the load in flight")

        loader.complete("k", with: .value(b("origin")))
        XCTAssertEqual(forwarded.all.map(valueBytes), [b("origin")])
        XCTAssertEqual(answering.all.map(valueBytes), [b("origin")])
        XCTAssertEqual(group.stats.fallbackLoads, 1)
        XCTAssertEqual(group.stats.loads, 1)
    }

    func testNotFoundFromTheOwnerAnswersNotFound() {
        let group = makeGroup()
        router.defaultOwner = ownerB
        let outcomes = CacheTestOutcomes()
        for _ in 0..<3 { group.get(key: "k", completion: outcomes.callback()) }
        router.completeFetch("k", with: .notFound)

        XCTAssertEqual(outcomes.all, [.notFound, .notFound, .notFound])
        XCTAssertEqual(loader.loadCount, 0, "the owner's answer is final: no fallback")
        XCTAssertEqual(group.mainItems + group.hotItems, 0)
        XCTAssertEqual(group.stats.peerFetchErrors, 0)
        XCTAssertEqual(group.fetchesInFlight, 0)
        assertStatsBalance(group)
    }

    // MARK: Hot copies

    func testAHotCopyNeverOutlivesTheOwnersEntryOrTheTTL() {
        // (owner's expiry from the fetch's landing, 0 = not said; expected copy expiry from landing, nil = no copy)
        let cases: [(Int64?, Int64?)] = [(600, 600), (999, 999), (1_000, 1_000), (5_000, 1_000), (nil, 1_000),
                                         (0, nil), (-10, nil)]
        for (ownerOffset, expectedOffset) in cases {
            let label = "owner expiry \(ownerOffset.map(String.init) ?? "unsaid")"
            let group = makeGroup { $0.hotCopyOneIn = 1 }
            router.defaultOwner = ownerB
            let outcomes = CacheTestOutcomes()
            group.get(key: "k", completion: outcomes.callback())
            clock.advance(byMillis: 50)  // the fetch takes a while: bounds count from its landing
            let landed = clock.nowMillis
            router.completeFetch("k", with: .value(b("remote"), expiresAtMillis: ownerOffset.map { landed + $0 } ?? 0))

            guard let expectedOffset else {
                // The owner's entry is already over: the waiter still gets the value, nothing is copied.
                XCTAssertEqual(outcomes.all, [value(b("remote"), expiresAt: landed)], label)
                XCTAssertEqual(group.hotItems, 0, label)
                XCTAssertEqual(group.stats.hotCopies, 0, label)
                continue
            }
            let expiresAt = landed + expectedOffset
            XCTAssertEqual(outcomes.all, [value(b("remote"), expiresAt: expiresAt)], label)
            XCTAssertEqual(group.hotItems, 1, label)
            XCTAssertEqual(group.mainItems, 0, "a copy of a key owned elsewhere is not in main; \(label)")
            XCTAssertEqual(group.stats.hotCopies, 1, label)

            clock.nowMillis = expiresAt - 1
            XCTAssertEqual(getNow(group, "k"), value(b("remote"), expiresAt: expiresAt), label)
            XCTAssertEqual(router.fetchCount, 1, "answered by the copy; \(label)")
            XCTAssertEqual(group.stats.hotHits, 1, label)

            clock.nowMillis = expiresAt
            XCTAssertNil(getNow(group, "k"), "the copy is over: fetched again; \(label)")
            XCTAssertEqual(router.fetchCount, 2, label)
            router.completeFetch("k", with: .notFound)
            assertStatsBalance(group)
        }
    }

    func testAHotCopyIsNotRenewedByHits() {
        let group = makeGroup { $0.hotCopyOneIn = 1; $0.sliding = true }
        router.defaultOwner = ownerB
        group.get(key: "k") { _ in }
        router.completeFetch("k", with: .value(b("remote"), expiresAtMillis: 0))
        let expiresAt = GroupRoutingTests.start + 1_000

        // Hits through both lookups, each of which would slide a main entry's window.
        for at: Int64 in [300, 600, 900, 999] {
            clock.nowMillis = GroupRoutingTests.start + at
            if at.isMultiple(of: 2) {
                XCTAssertEqual(expiry(getNow(group, "k")), expiresAt, "get at \(at)")
            } else {
                XCTAssertEqual(fresh(group, "k")?.expiresAt, expiresAt, "withFreshValue at \(at)")
            }
        }
        XCTAssertEqual(group.stats.hotHits, 4)
        clock.nowMillis = expiresAt
        XCTAssertNil(fresh(group, "k"))
        XCTAssertNil(getNow(group, "k"))
        XCTAssertEqual(router.fetchCount, 2)
    }

    func testHotCopyOneInZeroNeverCopies() {
        let group = makeGroup { $0.hotCopyOneIn = 0 }
        router.defaultOwner = ownerB
        for round in 1...3 {
            let outcomes = CacheTestOutcomes()
            group.get(key: "k", completion: outcomes.callback())
            XCTAssertEqual(router.fetchCount, round, "every get fetches")
            router.completeFetch("k", with: .value(b("remote"), expiresAtMillis: 0))
            XCTAssertEqual(outcomes.all.map(valueBytes), [b("remote")])
        }
        XCTAssertEqual(group.hotItems, 0)
        XCTAssertEqual(group.stats.hotCopies, 0)
        XCTAssertEqual(random.bounds, [], "no chance drawn")
    }

    func testHotCopyOneInTenCopiesOnlyWhenTheRandomSourceDrawsZero() {
        random = CacheTestRandom([9, 1, 0])
        let group = makeGroup { $0.hotCopyOneIn = 10 }
        router.defaultOwner = ownerB
        for (round, copied) in [(1, false), (2, false), (3, true)] {
            group.get(key: "k") { _ in }
            XCTAssertEqual(router.fetchCount, round)
            router.completeFetch("k", with: .value(b("remote"), expiresAtMillis: 0))
            XCTAssertEqual(group.hotItems, copied ? 1 : 0, "round \(round)")
        }
        XCTAssertEqual(random.bounds, [10, 10, 10], "one chance in 10 drawn per fetch")
        XCTAssertEqual(valueBytes(getNow(group, "k")), b("remote"))
        XCTAssertEqual(router.fetchCount, 3, "the copy answers")
        XCTAssertEqual(group.stats.hotCopies, 1)
    }

    // MARK: Sets during a fetch

    func testASetHereDuringAFetchWins() {
        // (what, the mutation made while the fetch is in flight)
        let cases: [(String, (Group, CacheTestRouter) -> Void)] = [
            ("set hot", { group, _ in group.set(key: "k", value: b("new"), ttlMillis: nil, hot: true) }),
            ("set main", { group, _ in group.set(key: "k", value: b("new"), ttlMillis: nil, hot: false) }),
            ("store hot", { group, _ in
                group.writer.store(key: "k", value: b("new"), ttlMillis: nil, hot: true) { _ in }
            }),
            ("store of a key this node now owns", { group, router in
                router.defaultOwner = nil
                group.writer.store(key: "k", value: b("new"), ttlMillis: nil, hot: false) { _ in }
            }),
        ]
        for (what, mutate) in cases {
            let group = makeGroup { $0.hotCopyOneIn = 1 }
            router.defaultOwner = ownerB
            let outcomes = CacheTestOutcomes()
            group.get(key: "k", completion: outcomes.callback())
            clock.advance(byMillis: 100)
            mutate(group, router)
            let newValue = value(b("new"), expiresAt: clock.nowMillis + 1_000)
            clock.advance(byMillis: 100)
            router.completeFetch("k", with: .value(b("old"), expiresAtMillis: 0))

            XCTAssertEqual(outcomes.all, [newValue], what)
            XCTAssertEqual(group.stats.hotCopies, 0, "no copy of the old value; \(what)")
            XCTAssertEqual(valueBytes(getNow(group, "k")), b("new"), "the set value stays; \(what)")
            XCTAssertEqual(group.mainItems + group.hotItems, 1, what)
            XCTAssertEqual(router.fetchCount, 1, what)
        }
    }

    func testAForwardedStoreDuringAFetchLeavesNoHotCopyOfTheOldValue() {
        let group = makeGroup { $0.hotCopyOneIn = 1 }
        router.defaultOwner = ownerB
        group.get(key: "k") { _ in }
        let results = Results()
        group.writer.store(key: "k", value: b("new"), ttlMillis: nil, hot: false, completion: results.callback())
        router.completeFetch("k", with: .value(b("old"), expiresAtMillis: 0))
        XCTAssertEqual(group.hotItems, 0)
        XCTAssertEqual(group.stats.hotCopies, 0)

        router.completeStore("k", with: .done(true))
        XCTAssertEqual(results.all, [true])
        XCTAssertNil(getNow(group, "k"), "nothing local: the next get asks the owner again")
        XCTAssertEqual(router.fetchCount, 2)
    }

    /// A store sent to the owner while a fetch of the key is in flight is newer than that fetch: the fetch's
    /// waiters must get the stored value, as they do for a set made here (testASetHereDuringAFetchWins).
    func testWaitersOfAFetchGetTheValueOfAForwardedStoreMadeDuringIt() {
        let group = makeGroup { $0.hotCopyOneIn = 1 }
        router.defaultOwner = ownerB
        let outcomes = CacheTestOutcomes()
        group.get(key: "k", completion: outcomes.callback())
        group.writer.store(key: "k", value: b("new"), ttlMillis: nil, hot: false) { _ in }
        router.completeFetch("k", with: .value(b("old"), expiresAtMillis: 0))
        router.completeStore("k", with: .done(true))
        XCTAssertEqual(outcomes.all.map(valueBytes), [b("new")], "the fetch's old value must not answer")
    }

    /// Read-your-writes: once a store is acknowledged, a get for the key on the same node must not answer
    /// the value the store replaced, even if a fetch that started before the store is still in flight.
    func testAGetAfterAnAcknowledgedStoreNeverAnswersTheOldValue() {
        let group = makeGroup()
        router.defaultOwner = ownerB
        group.get(key: "k") { _ in }  // a fetch that the owner answers before the store reaches it
        let results = Results()
        group.writer.store(key: "k", value: b("new"), ttlMillis: nil, hot: false, completion: results.callback())
        router.completeStore("k", with: .done(true))
        XCTAssertEqual(results.all, [true], "the store is acknowledged")

        let after = CacheTestOutcomes()
        group.get(key: "k", completion: after.callback())
        router.completeFetch("k", with: .value(b("old"), expiresAtMillis: 0))
        if after.all.isEmpty && router.pendingFetchCount > 0 {
            // A fix may send the later get to the owner again: the owner now has the new value.
            router.completeFetch("k", with: .value(b("new"), expiresAtMillis: 0))
        }
        XCTAssertEqual(after.all.map(valueBytes), [b("new")], "a get after the acknowledged store")
    }

    // MARK: Store

    func testAStoreOfAKeyOwnedElsewhereGoesToTheOwner() {
        let now = GroupRoutingTests.start
        // (TTL asked, expire sent in absolute unix seconds, rounded up, local copy before). Never 0: springcache
        // stores 0 as 1970, so "the default TTL" (nil or 0; 1 s here) is sent as now + that TTL.
        let cases: [(Int64?, Int64, String)] = [
            (nil, 1_700_000_002, "none"), (0, 1_700_000_002, "main"),
            (300_000, (now + 300_000 + 999) / 1_000, "hot"),
            (877, 1_700_000_001, "main"), (878, 1_700_000_002, "hot"), (1, 1_700_000_001, "none"),
        ]
        XCTAssertEqual((now + 300_000 + 999) / 1_000, 1_700_000_301)
        for (ttl, expire, localCopy) in cases {
            let label = "ttl \(ttl.map(String.init) ?? "nil"), local copy in \(localCopy)"
            let group = makeGroup()
            switch localCopy {
            case "main": group.set(key: "k", value: b("old"), ttlMillis: nil, hot: false)
            case "hot": group.storeHotCopy(key: "k", value: b("old"), expiresAtMillis: now + 500)
            default: break
            }
            router.owners["k"] = ownerB
            let results = Results()
            group.writer.store(key: "k", value: b("new"), ttlMillis: ttl, hot: false, completion: results.callback())

            XCTAssertEqual(router.calls, [.store(peer: "node-b", group: "scores", key: "k", value: b("new"),
                                                 expireUnixSeconds: expire, hot: false)], label)
            XCTAssertEqual(group.mainItems + group.hotItems, 0, "local copies dropped at once; \(label)")
            XCTAssertNil(fresh(group, "k"), label)
            XCTAssertEqual(results.all, [], "no answer before the owner's; \(label)")

            router.completeStore("k", with: .done(true))
            XCTAssertEqual(results.all, [true], label)
            XCTAssertEqual(group.mainItems + group.hotItems, 0, "the value lives at its owner; \(label)")
            XCTAssertEqual(group.stats.forwardedSets, 1, label)
            XCTAssertEqual(group.stats.writesRefused, 0, label)
            XCTAssertEqual(router.pendingCount, 0, "no invalidation from a non-owner; \(label)")
        }
    }

    func testAForwardedStoreAnswersWhatTheOwnerDid() {
        // (the owner's answer, whether the router dropped the owner for it, what the write came to): a failed
        // write stores nothing anywhere, because a value kept here would be undone when the owner came back
        // with its old one (issue 10, finding 7).
        let cases: [(PeerCallResult, Bool, WriteOutcome)] = [
            (.done(true), false, .done(true)), (.done(false), false, .done(false)),
            (.failed("connection reset"), true, .ownerUnreachable(ownerB)),
            (.failed("INTERNAL: invalid UTF-8"), false, .ownerFailed("INTERNAL: invalid UTF-8")),
        ]
        for (answer, dropped, expected) in cases {
            let label = "\(answer)"
            let group = makeGroup()
            router.defaultOwner = ownerB
            router.unreachable = [:]
            var outcomes: [WriteOutcome] = []
            group.writer.write(key: "k", value: b("new"), ttlMillis: 2_000, hot: false) { outcomes.append($0) }
            clock.advance(byMillis: 10)
            if dropped { router.unreachable["k"] = ownerB }
            router.completeStore("k", with: answer)

            XCTAssertEqual(outcomes, [expected], label)
            XCTAssertEqual(group.stats.writesRefused, expected == .done(true) || expected == .done(false) ? 0 : 1, label)
            XCTAssertEqual(group.mainItems + group.hotItems, 0, "never stored here; \(label)")
        }
    }

    func testWritesForAKeyWhoseOwnerIsDroppedAreRefusedWithoutACall() {
        let group = makeGroup()
        router.defaultOwner = nil  // the live ring gives the key to this node: its owner was dropped
        router.unreachable["k"] = ownerB
        var outcomes: [WriteOutcome] = []
        group.writer.write(key: "k", value: b("new"), ttlMillis: nil, hot: false) { outcomes.append($0) }
        group.writer.erase(key: "k") { outcomes.append($0) }
        XCTAssertEqual(outcomes, [.ownerUnreachable(ownerB), .ownerUnreachable(ownerB)])
        XCTAssertEqual(router.calls, [], "nothing sent anywhere")
        XCTAssertEqual(group.mainItems + group.hotItems, 0)
        // A hot set stays local by definition and is not refused.
        var hot: [WriteOutcome] = []
        group.writer.write(key: "k", value: b("h"), ttlMillis: nil, hot: true) { hot.append($0) }
        XCTAssertEqual(hot, [.done(true)])
    }

    func testAStoreOfAnOwnedKeyCompletesOnlyAfterTheOthersDroppedTheirCopies() {
        let group = makeGroup()
        let results = Results()
        group.writer.store(key: "k", value: b("new"), ttlMillis: nil, hot: false, completion: results.callback())

        XCTAssertEqual(fresh(group, "k")?.value, b("new"), "stored here at once")
        XCTAssertEqual(group.mainItems, 1)
        XCTAssertEqual(router.calls, [.invalidate(group: "scores", key: "k")])
        XCTAssertEqual(results.all, [], "not acknowledged while other members may still hold copies")

        router.completeInvalidate("k")
        XCTAssertEqual(results.all, [true])
        XCTAssertEqual(group.stats.forwardedSets, 0)
        XCTAssertEqual(group.stats.sets, 1)
    }

    func testAHotStoreStaysHere() {
        let group = makeGroup()
        router.defaultOwner = ownerB
        let results = Results()
        group.writer.store(key: "k", value: b("hot"), ttlMillis: nil, hot: true, completion: results.callback())

        XCTAssertEqual(results.all, [true], "answered at once")
        XCTAssertEqual(router.calls, [], "no owner, no invalidation")
        XCTAssertEqual(group.hotItems, 1)
        XCTAssertEqual(group.mainItems, 0)
        XCTAssertEqual(getNow(group, "k"), value(b("hot"), expiresAt: clock.nowMillis + 1_000))
        XCTAssertEqual(group.stats.forwardedSets, 0)
    }

    // MARK: Remove

    func testARemoveOfAKeyOwnedElsewhereGoesToTheOwner() {
        // (a copy here, the owner's answer, the completion): an unreachable owner did not delete the key, so
        // the delete is not reported done even if a copy here went (the owner would serve its value again).
        // An owner that answered with an error (and was not dropped for it) refused the delete: ownerFailed.
        let refused = WriteOutcome.ownerFailed("refused")
        let cases: [(Bool, PeerCallResult, WriteOutcome)] = [
            (false, .done(true), .done(true)), (false, .done(false), .done(false)), (true, .done(false), .done(true)),
            (true, .done(true), .done(true)), (true, .failed("refused"), refused), (false, .failed("refused"), refused),
        ]
        for (copyHere, answer, expected) in cases {
            let label = "copy here \(copyHere), owner \(answer)"
            let group = makeGroup()
            if copyHere { group.storeHotCopy(key: "k", value: b("old"), expiresAtMillis: clock.nowMillis + 500) }
            router.owners["k"] = ownerB
            let results = RemoveResults()
            group.writer.erase(key: "k", outcome: results.callback())

            XCTAssertEqual(router.calls, [.remove(peer: "node-b", group: "scores", key: "k")], label)
            XCTAssertEqual(group.mainItems + group.hotItems, 0, "the copy is dropped at once; \(label)")
            XCTAssertEqual(results.all, [], "no answer before the owner's; \(label)")

            router.completeRemove("k", with: answer)
            XCTAssertEqual(results.all, [expected], label)
            XCTAssertEqual(group.stats.forwardedDeletes, 1, label)
            XCTAssertEqual(router.pendingCount, 0, label)
        }
    }

    func testARemoveOfAnOwnedKeyCompletesOnlyAfterTheOthersDroppedTheirCopies() {
        for present in [true, false] {
            let group = makeGroup()
            if present { group.set(key: "k", value: b("v"), ttlMillis: nil, hot: false) }
            let results = RemoveResults()
            group.writer.erase(key: "k", outcome: results.callback())

            XCTAssertEqual(group.mainItems + group.hotItems, 0, "present \(present)")
            XCTAssertEqual(router.calls, [.invalidate(group: "scores", key: "k")], "present \(present)")
            XCTAssertEqual(results.all, [], "present \(present)")
            router.completeInvalidate("k")
            XCTAssertEqual(results.all, [.done(present)], "present \(present)")
            XCTAssertEqual(group.stats.forwardedDeletes, 0)
        }
    }

    // MARK: A single node

    func testWithoutARouterStoreAndRemoveCompleteBeforeReturning() {
        let group = makeGroup()
        group.router = nil
        let results = Results()
        group.writer.store(key: "k", value: b("v"), ttlMillis: nil, hot: false, completion: results.callback())
        XCTAssertEqual(results.all, [true])
        XCTAssertEqual(fresh(group, "k")?.value, b("v"))
        group.writer.store(key: "h", value: b("v"), ttlMillis: nil, hot: true, completion: results.callback())
        XCTAssertEqual(results.all, [true, true])
        XCTAssertEqual(group.hotItems, 1)
        let removes = RemoveResults()
        group.writer.erase(key: "k", outcome: removes.callback())
        group.writer.erase(key: "k", outcome: removes.callback())
        XCTAssertEqual(results.all, [true, true])
        XCTAssertEqual(removes.all, [.done(true), .done(false)])
        XCTAssertEqual(group.mainItems, 0)
        XCTAssertEqual(router.calls, [])
        XCTAssertEqual(router.ownerLookups, [])
    }

    // MARK: Reused fetch objects (issue 11)

    func testALandedFetchObjectIsReusedOnceNothingHoldsIt() {
        let group = makeGroup()
        router.defaultOwner = ownerB
        let outcomes = CacheTestOutcomes()
        for i in 0..<10 {
            group.get(key: CacheKey("k\(i)"), completion: outcomes.callback())
            router.completeFetch("k\(i)", with: .value(b("v\(i)"), expiresAtMillis: 0))
            // Without reuse every fetch would make an object and give it back: the pool would grow to 10.
            XCTAssertEqual(group.idleFetchCalls, 1, "fetch \(i)")
        }
        XCTAssertEqual(outcomes.all.map(valueBytes), (0..<10).map { b("v\($0)") })
    }

    func testALateSecondAnswerNeverReachesTheFetchThatReusedItsObject() {
        let group = makeGroup()
        router.defaultOwner = ownerB
        var first: [GetOutcome] = []
        group.get(key: "k") { first.append($0) }
        let firstAnswer = router.takeFetch("k")
        firstAnswer(.value(b("one"), expiresAtMillis: 0))
        XCTAssertEqual(first.map(valueBytes), [b("one")])

        // The first fetch's completion is still held (by `firstAnswer`): its object must not be reused.
        var second: [GetOutcome] = []
        group.get(key: "k") { second.append($0) }
        XCTAssertEqual(group.fetchesInFlight, 1)
        firstAnswer(.value(b("late"), expiresAtMillis: 0))
        XCTAssertEqual(second.count, 0, "a late answer of the first fetch reached the second")
        XCTAssertEqual(first.count, 1, "a landed fetch answers once")
        XCTAssertEqual(group.fetchesInFlight, 1)

        router.completeFetch("k", with: .value(b("two"), expiresAtMillis: 0))
        XCTAssertEqual(second.map(valueBytes), [b("two")])
        XCTAssertEqual(group.fetchesInFlight, 0)
    }
}

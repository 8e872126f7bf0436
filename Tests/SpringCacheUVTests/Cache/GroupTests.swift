import XCTest
@testable import SpringCacheUV

private func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Group semantics (DESIGN.md "Cache semantics"), each driven by a ManualClock; nothing sleeps.
final class GroupTests: XCTestCase {
    private var clock = ManualClock()
    private var loader = CacheTestLoader()
    private var random = CacheTestRandom()

    /// Test config: no jitter, 1 s TTL, sliding, 500 ms negative TTL, no stale grace.
    private func config(_ change: (inout CacheConfig) -> Void = { _ in }) -> CacheConfig {
        var config = CacheConfig(cacheBytes: 1 << 20, hotBytes: 1 << 16, ttlMillis: 1_000, jitterMillis: 0,
                                 sliding: true, negativeTTLMillis: 500, staleGraceMillis: 0, sweepBudget: 100)
        change(&config)
        return config
    }

    private func makeGroup(_ config: CacheConfig? = nil) -> Group {
        Group(name: "scores", config: config ?? self.config(), clock: clock, random: random, loader: loader)
    }

    /// The outcome of a get that must complete synchronously.
    private func getNow(_ group: Group, _ key: String, file: StaticString = #filePath,
                        line: UInt = #line) -> GetOutcome? {
        var result: GetOutcome?
        var calls = 0
        group.get(key: key) { result = $0; calls += 1 }
        XCTAssertLessThanOrEqual(calls, 1, "completion called more than once", file: file, line: line)
        return result
    }

    private func fresh(_ group: Group, _ key: String) -> [UInt8]? {
        b(key).withUnsafeBytes { raw in group.withFreshValue(forKey: raw) { Array($0.value) } }
    }

    private func valueBytes(_ outcome: GetOutcome?) -> [UInt8]? {
        if case .value(let v, _, _, _)? = outcome { return v }
        return nil
    }

    private func expiry(_ outcome: GetOutcome?) -> Int64? {
        if case .value(_, let e, _, _)? = outcome { return e }
        return nil
    }

    private func isStale(_ outcome: GetOutcome?) -> Bool? {
        if case .value(_, _, _, let s)? = outcome { return s }
        return nil
    }

    private func assertStatsBalance(_ group: Group, file: StaticString = #filePath, line: UInt = #line) {
        let s = group.stats
        XCTAssertEqual(s.gets, s.hits + s.negativeHits + s.misses, "every get is a hit, negative hit or miss",
                       file: file, line: line)
    }

    // MARK: Expiry

    func testExplicitTTLIsHonouredWithoutJitter() {
        // A 3-minute jitter (springcache's default) must not stretch a TTL the client chose.
        random = CacheTestRandom([179_999, 179_999])
        let group = makeGroup(config { $0.jitterMillis = 180_000 })
        let start = clock.nowMillis
        group.set(key: "explicit", value: b("v"), ttlMillis: 60_000, hot: false)
        XCTAssertEqual(expiry(getNow(group, "explicit")), start + 60_000)
        XCTAssertEqual(random.bounds, [], "no jitter drawn for an explicit TTL")
        // The default TTL (springcache's expire=0) still gets jitter: such keys are filled together.
        group.set(key: "default", value: b("v"), ttlMillis: nil, hot: false)
        XCTAssertEqual(expiry(getNow(group, "default")), start + 1_000 + 179_999)
    }

    func testJitterIsAddedFromTheRandomSource() {
        // (jitterMillis, the random value drawn, expected TTL window)
        let cases: [(Int64, UInt64, Int64)] = [(0, 0, 1_000), (100, 0, 1_000), (100, 37, 1_037), (100, 99, 1_099)]
        for (jitter, drawn, window) in cases {
            random = CacheTestRandom(jitter > 0 ? [drawn, drawn] : [])
            let group = makeGroup(config { $0.jitterMillis = jitter })
            let start = clock.nowMillis
            group.set(key: "k", value: b("v"), ttlMillis: nil, hot: false)
            XCTAssertEqual(expiry(getNow(group, "k")), start + window, "jitter \(jitter) drawn \(drawn)")
            XCTAssertEqual(random.bounds, jitter > 0 ? [UInt64(jitter)] : [], "drawn below jitterMillis")
            // The window includes the jitter: a sliding hit later renews by the same window.
            clock.advance(byMillis: 400)
            _ = getNow(group, "k")
            XCTAssertEqual(expiry(getNow(group, "k")), clock.nowMillis + window)
            // A load draws jitter too.
            loader.synchronous = true
            loader.store["loaded"] = .value(b("x"))
            XCTAssertEqual(expiry(getNow(group, "loaded")), clock.nowMillis + window)
            loader.synchronous = false
        }
    }

    func testFastRandomJitterStaysWithinBounds() {
        let group = Group(name: "g", config: config { $0.ttlMillis = 5_000; $0.jitterMillis = 1_000 },
                          clock: clock, random: FastRandom(seed: 99), loader: loader)
        var windows: [Int64] = []
        for i in 0..<5_000 {
            group.set(key: "k\(i)", value: b("v"), ttlMillis: nil, hot: false)
            windows.append(expiry(getNow(group, "k\(i)"))! - clock.nowMillis)
        }
        XCTAssertTrue(windows.allSatisfy { $0 >= 5_000 && $0 < 6_000 })
        XCTAssertLessThan(windows.min()!, 5_010, "the low end is reached")
        XCTAssertGreaterThan(windows.max()!, 5_990, "the high end is reached")
    }

    func testSlidingAndAbsoluteExpiry() {
        // (sliding, hit times after the set, is the key fresh at 1_500 ms)
        let cases: [(Bool, [Int64], Bool)] = [
            (true, [], false), (true, [900], true), (true, [600, 1_200], true),
            (false, [], false), (false, [900], false), (false, [600, 1_200], false),
        ]
        for (sliding, hits, freshAtEnd) in cases {
            clock = ManualClock()
            let group = makeGroup(config { $0.sliding = sliding })
            let start = clock.nowMillis
            group.set(key: "k", value: b("v"), ttlMillis: nil, hot: false)
            for at in hits {
                clock.nowMillis = start + at
                // With sliding, each hit renewed the window; absolute expiry ends at 1_000 whatever happens.
                XCTAssertEqual(fresh(group, "k") != nil, sliding || at < 1_000, "sliding \(sliding) at \(at)")
            }
            clock.nowMillis = start + 1_500
            XCTAssertEqual(fresh(group, "k") != nil, freshAtEnd, "sliding \(sliding) hits \(hits)")
        }
    }

    func testEntryIsFreshStrictlyBeforeExpiry() {
        let group = makeGroup(config { $0.sliding = false })
        group.set(key: "k", value: b("v"), ttlMillis: 1_000, hot: false)
        clock.advance(byMillis: 999)
        XCTAssertNotNil(fresh(group, "k"))
        clock.advance(byMillis: 1)
        XCTAssertNil(fresh(group, "k"))
        XCTAssertEqual(group.mainItems, 0, "a dead entry is removed lazily on lookup")
        XCTAssertEqual(group.stats.main.expirations, 1)
    }

    func testSetTTLOverridesDefaultAndNonPositiveMeansDefault() {
        let cases: [(Int64?, Int64)] = [
            (nil, 1_000), (0, 1_000), (-5, 1_000), (60_000, 60_000), (Int64.max, Int64(UInt32.max)),
        ]
        for (ttl, window) in cases {
            let group = makeGroup()
            group.set(key: "k", value: b("v"), ttlMillis: ttl, hot: false)
            XCTAssertEqual(expiry(getNow(group, "k")), clock.nowMillis + window, "ttl \(String(describing: ttl))")
        }
    }

    func testSweepRemovesExpiredEntriesOfBothCaches() {
        let group = makeGroup()
        for i in 0..<10 { group.set(key: "m\(i)", value: b("v"), ttlMillis: 1_000, hot: false) }
        for i in 0..<5 { group.set(key: "h\(i)", value: b("v"), ttlMillis: 1_000, hot: true) }
        group.set(key: "long", value: b("v"), ttlMillis: 10_000, hot: false)
        clock.advance(byMillis: 1_000)
        XCTAssertEqual(group.sweep(), 15)
        XCTAssertEqual(group.mainItems, 1)
        XCTAssertEqual(group.hotItems, 0)
        XCTAssertEqual(group.hotBytes, 0)
        XCTAssertEqual(group.stats.main.expirations, 10)
        XCTAssertEqual(group.stats.hot.expirations, 5)
    }

    // MARK: Single-flight

    func testConcurrentGetsCauseOneLoadAndShareTheOutcome() {
        let group = makeGroup()
        let outcomes = CacheTestOutcomes()
        for _ in 0..<100 { group.get(key: "Tom", completion: outcomes.callback()) }
        XCTAssertEqual(loader.loadCount, 1)
        XCTAssertEqual(loader.calls.first?.group, "scores")
        XCTAssertEqual(group.loadsInFlight, 1)
        XCTAssertTrue(outcomes.all.isEmpty, "nobody answered before the load lands")
        loader.complete("Tom", with: .value(b("630")))
        XCTAssertEqual(outcomes.all.count, 100)
        XCTAssertTrue(outcomes.all.allSatisfy { $0 == outcomes.all[0] })
        XCTAssertEqual(valueBytes(outcomes.all[0]), b("630"))
        XCTAssertEqual(group.loadsInFlight, 0)
        let s = group.stats
        XCTAssertEqual(s.loads, 1)
        XCTAssertEqual(s.misses, 100)
        // Look again: a later get hits the stored value without a second load.
        XCTAssertEqual(valueBytes(getNow(group, "Tom")), b("630"))
        XCTAssertEqual(fresh(group, "Tom"), b("630"))
        XCTAssertEqual(loader.loadCount, 1)
        XCTAssertEqual(group.stats.hits, 2)
        assertStatsBalance(group)
    }

    func testSynchronousLoaderCompletesBeforeGetReturns() {
        loader = CacheTestLoader(synchronous: true, store: ["Tom": .value(b("630"))])
        let group = makeGroup()
        for _ in 0..<100 { XCTAssertEqual(valueBytes(getNow(group, "Tom")), b("630")) }
        XCTAssertEqual(loader.loadCount, 1)
        XCTAssertEqual(group.loadsInFlight, 0)
        XCTAssertEqual(group.stats.hits, 99)
        assertStatsBalance(group)
    }

    func testACompletionThatGetsAgainFindsTheCacheNotTheLandedFlight() {
        let group = makeGroup()
        var inner: GetOutcome?
        group.get(key: "k") { _ in
            // Runs while the flight lands: the flight must already be gone and the value stored.
            XCTAssertEqual(group.loadsInFlight, 0)
            group.get(key: "k") { inner = $0 }
        }
        loader.complete("k", with: .value(b("v")))
        XCTAssertEqual(valueBytes(inner), b("v"))
        XCTAssertEqual(loader.loadCount, 1)
    }

    func testACompletionThatGetsAgainAfterAFailureStartsANewLoad() {
        let group = makeGroup()
        var retried: GetOutcome?
        group.get(key: "k") { outcome in
            XCTAssertEqual(outcome, .failure(.unavailable("down")))
            group.get(key: "k") { retried = $0 }
        }
        loader.complete("k", with: .failure(.unavailable("down")))
        XCTAssertEqual(loader.loadCount, 2)
        loader.complete("k", with: .value(b("v")))
        XCTAssertEqual(valueBytes(retried), b("v"))
    }

    func testDifferentKeysLoadIndependently() {
        let group = makeGroup()
        let outcomes = CacheTestOutcomes()
        group.get(key: "a", completion: outcomes.callback())
        group.get(key: "b", completion: outcomes.callback())
        XCTAssertEqual(loader.loadCount, 2)
        loader.complete("b", with: .value(b("B")))
        loader.complete("a", with: .value(b("A")))
        XCTAssertEqual(outcomes.all.map(valueBytes), [b("B"), b("A")])
    }

    // MARK: Set and delete during a load

    func testSetDuringALoadWins() {
        let group = makeGroup()
        let outcomes = CacheTestOutcomes()
        group.get(key: "k", completion: outcomes.callback())
        group.get(key: "k", completion: outcomes.callback())
        clock.advance(byMillis: 100)
        XCTAssertTrue(group.set(key: "k", value: b("new"), ttlMillis: 5_000, hot: false))
        let setExpiry = clock.nowMillis + 5_000
        clock.advance(byMillis: 100)
        loader.complete("k", with: .value(b("old")))
        XCTAssertEqual(outcomes.all.count, 2)
        for outcome in outcomes.all {
            XCTAssertEqual(outcome, .value(b("new"), expiresAtMillis: setExpiry, etag: LRUCache.valueHash(b("new")),
                                           stale: false))
        }
        XCTAssertEqual(valueBytes(getNow(group, "k")), b("new"), "the late load did not overwrite the set")
        XCTAssertEqual(loader.loadCount, 1)
        XCTAssertEqual(group.stats.sets, 1)
    }

    func testSetDuringAFailingLoadStillAnswersTheSetValue() {
        let group = makeGroup()
        let outcomes = CacheTestOutcomes()
        group.get(key: "k", completion: outcomes.callback())
        group.set(key: "k", value: b("new"), ttlMillis: nil, hot: true)
        loader.complete("k", with: .failure(.timedOut("slow")))
        XCTAssertEqual(valueBytes(outcomes.last), b("new"))
        XCTAssertEqual(fresh(group, "k"), b("new"))
        XCTAssertEqual(group.stats.loadErrors, 1)
    }

    func testDeleteDuringALoadWins() {
        // (what the load answers, what waiters get)
        let cases: [(LoadResult, GetOutcome?)] = [
            (.value(b("old")), nil),  // checked below: the loaded value, not stored
            (.notFound, .notFound),
            (.failure(.unavailable("x")), .failure(.unavailable("x"))),
        ]
        for (result, expected) in cases {
            loader = CacheTestLoader()
            let group = makeGroup()
            group.set(key: "k", value: b("cached"), ttlMillis: 1, hot: false)
            clock.advance(byMillis: 1)  // expired: a get loads
            let outcomes = CacheTestOutcomes()
            group.get(key: "k", completion: outcomes.callback())
            XCTAssertTrue(group.delete(key: "k") == false, "the expired entry was already removed")
            loader.complete("k", with: result)
            if let expected {
                XCTAssertEqual(outcomes.last, expected)
            } else {
                XCTAssertEqual(valueBytes(outcomes.last), b("old"))
            }
            XCTAssertEqual(group.mainItems, 0, "nothing stored after a delete, not even a negative entry")
            XCTAssertEqual(group.hotItems, 0)
            _ = getNow(group, "k")
            XCTAssertEqual(loader.loadCount, 2, "the next get loads again")
        }
    }

    func testSetThenDeleteDuringALoadLeavesNothing() {
        let group = makeGroup()
        let outcomes = CacheTestOutcomes()
        group.get(key: "k", completion: outcomes.callback())
        group.set(key: "k", value: b("new"), ttlMillis: nil, hot: false)
        XCTAssertTrue(group.delete(key: "k"))
        loader.complete("k", with: .value(b("old")))
        XCTAssertEqual(valueBytes(outcomes.last), b("old"))
        XCTAssertEqual(group.mainItems, 0)
        XCTAssertEqual(group.stats.deletes, 1)
    }

    func testSetAfterALoadLandedIsNotAffected() {
        let group = makeGroup()
        group.get(key: "k") { _ in }
        loader.complete("k", with: .value(b("loaded")))
        group.set(key: "k", value: b("set"), ttlMillis: nil, hot: false)
        XCTAssertEqual(fresh(group, "k"), b("set"))
        XCTAssertEqual(group.mainItems, 1)
    }

    // MARK: Negative caching

    func testNotFoundIsRememberedForTheNegativeTTL() {
        let group = makeGroup()
        let outcomes = CacheTestOutcomes()
        group.get(key: "nobody", completion: outcomes.callback())
        loader.complete("nobody", with: .notFound)
        XCTAssertEqual(outcomes.last, .notFound)
        XCTAssertEqual(group.mainItems, 1)
        XCTAssertEqual(group.mainBytes, "nobody".utf8.count + LRUCache.perEntryOverhead, "key + empty value")
        for _ in 0..<10 {
            clock.advance(byMillis: 49)
            XCTAssertEqual(getNow(group, "nobody"), .notFound)
            XCTAssertNil(fresh(group, "nobody"), "the hot path does not answer negative entries")
        }
        XCTAssertEqual(loader.loadCount, 1)
        XCTAssertEqual(group.stats.negativeHits, 10)
        clock.advance(byMillis: 10)  // 500 ms after the load: the negative window (no sliding) is over
        XCTAssertNil(getNow(group, "nobody"))
        XCTAssertEqual(loader.loadCount, 2)
        XCTAssertEqual(group.stats.loadNotFound, 1)
        assertStatsBalance(group)
    }

    func testNegativeTTLZeroDisablesNegativeCaching() {
        loader = CacheTestLoader(synchronous: true)
        let group = makeGroup(config { $0.negativeTTLMillis = 0 })
        for _ in 0..<3 { XCTAssertEqual(getNow(group, "nobody"), .notFound) }
        XCTAssertEqual(loader.loadCount, 3)
        XCTAssertEqual(group.mainItems, 0)
    }

    func testSetReplacesANegativeEntry() {
        for hot in [false, true] {
            loader = CacheTestLoader(synchronous: true)
            let group = makeGroup()
            XCTAssertEqual(getNow(group, "k"), .notFound)
            group.set(key: "k", value: b("now here"), ttlMillis: nil, hot: hot)
            XCTAssertEqual(valueBytes(getNow(group, "k")), b("now here"), "hot \(hot)")
            XCTAssertEqual(group.mainItems + group.hotItems, 1)
            XCTAssertEqual(loader.loadCount, 1)
        }
    }

    // MARK: Serve stale

    func testServeStaleWhenTheReloadFails() {
        let group = makeGroup(config { $0.staleGraceMillis = 10_000 })
        group.set(key: "k", value: b("v1"), ttlMillis: nil, hot: false)
        clock.advance(byMillis: 1_500)
        XCTAssertNil(fresh(group, "k"), "expired is not fresh")
        XCTAssertEqual(group.mainItems, 1, "but within the grace it is kept")
        let outcomes = CacheTestOutcomes()
        group.get(key: "k", completion: outcomes.callback())
        group.get(key: "k", completion: outcomes.callback())
        XCTAssertEqual(loader.loadCount, 1)
        loader.complete("k", with: .failure(.unavailable("origin down")))
        XCTAssertEqual(outcomes.all.count, 2)
        XCTAssertEqual(outcomes.all.map(valueBytes), [b("v1"), b("v1")])
        XCTAssertEqual(outcomes.all.map(isStale), [true, true])
        XCTAssertEqual(group.stats.staleServed, 2)
        XCTAssertEqual(group.stats.loadErrors, 1)
        XCTAssertEqual(group.mainItems, 1, "the stale entry stays")

        // The next get tries again; a successful load replaces the stale value.
        group.get(key: "k", completion: outcomes.callback())
        loader.complete("k", with: .value(b("v2")))
        XCTAssertEqual(valueBytes(outcomes.last), b("v2"))
        XCTAssertEqual(isStale(outcomes.last), false)
        XCTAssertEqual(fresh(group, "k"), b("v2"))
        XCTAssertEqual(group.mainItems, 1)
        assertStatsBalance(group)
    }

    func testStaleEntryIsRemovedWhenTheOriginSaysNotFound() {
        let group = makeGroup(config { $0.staleGraceMillis = 10_000; $0.negativeTTLMillis = 0 })
        group.set(key: "k", value: b("v1"), ttlMillis: nil, hot: true)
        clock.advance(byMillis: 1_500)
        let outcomes = CacheTestOutcomes()
        group.get(key: "k", completion: outcomes.callback())
        loader.complete("k", with: .notFound)
        XCTAssertEqual(outcomes.last, .notFound)
        XCTAssertEqual(group.mainItems + group.hotItems, 0)
    }

    func testNoStaleBeyondTheGraceOrWithoutGrace() {
        // (grace, time since expiry at the get): both mean the entry is dead and the failure is reported.
        for (grace, late) in [(Int64(0), Int64(0)), (0, 1), (1_000, 1_000), (1_000, 5_000)] {
            loader = CacheTestLoader()
            let group = makeGroup(config { $0.staleGraceMillis = grace })
            group.set(key: "k", value: b("v1"), ttlMillis: nil, hot: false)
            clock.advance(byMillis: 1_000 + late)
            let outcomes = CacheTestOutcomes()
            group.get(key: "k", completion: outcomes.callback())
            loader.complete("k", with: .failure(.timedOut("t")))
            XCTAssertEqual(outcomes.last, .failure(.timedOut("t")), "grace \(grace) late \(late)")
            XCTAssertEqual(group.stats.staleServed, 0)
            XCTAssertEqual(group.mainItems, 0)
        }
    }

    func testFailuresAreNotCached() {
        let group = makeGroup()
        let outcomes = CacheTestOutcomes()
        group.get(key: "k", completion: outcomes.callback())
        loader.complete("k", with: .failure(.unavailable("down")))
        XCTAssertEqual(outcomes.last, .failure(.unavailable("down")))
        XCTAssertEqual(group.mainItems, 0)
        group.get(key: "k", completion: outcomes.callback())
        XCTAssertEqual(loader.loadCount, 2)
        loader.complete("k", with: .value(b("v")))
        XCTAssertEqual(valueBytes(outcomes.last), b("v"))
    }

    // MARK: Hot cache

    func testHotSetGoesToTheHotCacheOnly() {
        let group = makeGroup()
        XCTAssertTrue(group.set(key: "k", value: b("hot"), ttlMillis: nil, hot: true))
        XCTAssertEqual(group.hotItems, 1)
        XCTAssertEqual(group.mainItems, 0)
        XCTAssertEqual(group.hotBytes, 1 + 3 + LRUCache.perEntryOverhead)
        XCTAssertEqual(valueBytes(getNow(group, "k")), b("hot"))
        XCTAssertEqual(fresh(group, "k"), b("hot"))
        XCTAssertEqual(loader.loadCount, 0)
        XCTAssertEqual(group.stats.hotHits, 2)
        XCTAssertEqual(group.stats.hits, 2)
        // Setting into one cache removes the key from the other, so main cannot shadow a newer hot value.
        group.set(key: "k", value: b("main"), ttlMillis: nil, hot: false)
        XCTAssertEqual(group.mainItems, 1)
        XCTAssertEqual(group.hotItems, 0)
        group.set(key: "k", value: b("hot again"), ttlMillis: nil, hot: true)
        XCTAssertEqual(group.mainItems, 0)
        XCTAssertEqual(fresh(group, "k"), b("hot again"))
        XCTAssertTrue(group.delete(key: "k"))
        XCTAssertFalse(group.delete(key: "k"))
        XCTAssertEqual(group.hotItems + group.mainItems, 0)
    }

    func testHotCopyExpiresAtTheOwnersExpiryDespiteSliding() {
        let group = makeGroup()
        let ownerExpiry = clock.nowMillis + 300
        XCTAssertTrue(group.storeHotCopy(key: "k", value: b("copy"), expiresAtMillis: ownerExpiry))
        clock.advance(byMillis: 200)
        XCTAssertEqual(fresh(group, "k"), b("copy"))
        XCTAssertEqual(expiry(getNow(group, "k")), ownerExpiry, "not extended by sliding")
        clock.advance(byMillis: 100)
        XCTAssertNil(fresh(group, "k"))
        XCTAssertFalse(group.storeHotCopy(key: "k", value: b("copy"), expiresAtMillis: clock.nowMillis),
                       "an already expired copy is not stored")
    }

    func testOversizeSetIsRefused() {
        let group = makeGroup(config { $0.hotBytes = 200 })
        XCTAssertTrue(group.set(key: "k", value: b("small"), ttlMillis: nil, hot: true))
        XCTAssertFalse(group.set(key: "k", value: [UInt8](repeating: 1, count: 200), ttlMillis: nil, hot: true))
        XCTAssertNil(fresh(group, "k"), "the refused set still replaced the old value")
        XCTAssertEqual(group.hotBytes, 0)
    }

    func testOversizeLoadedValueIsAnsweredButNotStored() {
        loader = CacheTestLoader(synchronous: true, store: ["big": .value([UInt8](repeating: 0, count: 300))])
        let group = makeGroup(config { $0.cacheBytes = 200 })
        XCTAssertEqual(valueBytes(getNow(group, "big"))?.count, 300)
        XCTAssertEqual(group.mainItems, 0)
        _ = getNow(group, "big")
        XCTAssertEqual(loader.loadCount, 2)
    }

    // MARK: Hot path and stats

    func testWithFreshValueViewAndMisses() {
        let group = makeGroup()
        XCTAssertNil(fresh(group, "k"))
        XCTAssertEqual(group.stats.gets, 0, "a nil answer counts nothing; the caller's get will")
        group.set(key: "k", value: [0, 1, 0], ttlMillis: nil, hot: false)
        clock.advance(byMillis: 10)
        let view = b("k").withUnsafeBytes { raw in
            group.withFreshValue(forKey: raw) { ($0.expiresAtMillis, $0.etag, Array($0.value)) }
        }
        XCTAssertEqual(view?.0, clock.nowMillis + 1_000, "sliding renewal applied before the view")
        XCTAssertEqual(view?.1, LRUCache.valueHash([0, 1, 0]))
        XCTAssertEqual(view?.2, [0, 1, 0])
        XCTAssertEqual(group.stats.gets, 1)
        XCTAssertEqual(group.stats.hits, 1)
    }

    func testStatsCounters() {
        loader = CacheTestLoader(synchronous: true, store: ["a": .value(b("A")), "e": .failure(.unavailable("u"))])
        let group = makeGroup()
        _ = getNow(group, "a")          // miss, load
        _ = getNow(group, "a")          // hit
        _ = fresh(group, "a")           // hit
        _ = getNow(group, "missing")    // miss, load, not found
        _ = getNow(group, "missing")    // negative hit
        _ = getNow(group, "e")          // miss, load, error
        group.set(key: "h", value: b("H"), ttlMillis: nil, hot: true)
        _ = getNow(group, "h")          // hot hit
        group.delete(key: "a")
        let s = group.stats
        var expected = GroupStats()
        expected.gets = 7
        expected.hits = 3
        expected.hotHits = 1
        expected.misses = 3
        expected.loads = 3
        expected.loadErrors = 1
        expected.loadNotFound = 1
        expected.negativeHits = 1
        expected.sets = 1
        expected.deletes = 1
        // The gauges: "missing"'s negative entry in main, "h" in hot.
        expected.main.items = 1
        expected.main.bytes = group.mainBytes
        expected.main.capacityBytes = 1 << 20
        expected.hot.items = 1
        expected.hot.bytes = group.hotBytes
        expected.hot.capacityBytes = 1 << 16
        XCTAssertEqual(s, expected)
        assertStatsBalance(group)
        XCTAssertEqual(group.mainCapacityBytes, 1 << 20)
        XCTAssertEqual(group.hotCapacityBytes, 1 << 16)
    }

    func testEvictionsAreCountedPerCache() {
        let entry = 2 + 10 + LRUCache.perEntryOverhead
        let group = makeGroup(config { $0.cacheBytes = 3 * entry; $0.hotBytes = 2 * entry })
        for i in 0..<5 { group.set(key: "m\(i)", value: [UInt8](repeating: 0, count: 10), ttlMillis: nil, hot: false) }
        for i in 0..<5 { group.set(key: "h\(i)", value: [UInt8](repeating: 0, count: 10), ttlMillis: nil, hot: true) }
        XCTAssertEqual(group.stats.main.evictions, 2)
        XCTAssertEqual(group.stats.hot.evictions, 3)
        XCTAssertEqual(group.mainBytes, 3 * entry)
        XCTAssertEqual(group.hotBytes, 2 * entry)
    }

    func testDefaultConfigIsSpringcaches() {
        let config = CacheConfig()
        XCTAssertEqual(config.cacheBytes, 64 << 20)
        XCTAssertEqual(config.hotBytes, 8 << 20)
        XCTAssertEqual(config.ttlMillis, 30_000)
        XCTAssertEqual(config.jitterMillis, 180_000)
        XCTAssertTrue(config.sliding)
        XCTAssertEqual(config.negativeTTLMillis, 5_000)
        XCTAssertEqual(config.staleGraceMillis, 0)
    }
}

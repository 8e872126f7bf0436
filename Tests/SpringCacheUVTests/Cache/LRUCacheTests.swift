import XCTest
@testable import SpringCacheUV

private func b(_ s: String) -> [UInt8] { Array(s.utf8) }
private let overhead = LRUCache.perEntryOverhead
private let seed: UInt64 = 42

final class LRUCacheTests: XCTestCase {
    private func assertSound(_ cache: LRUCache, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNil(cache.checkInvariants(), file: file, line: line)
    }

    private func value(_ cache: LRUCache, _ key: String) -> [UInt8]? {
        cache.find(key: key).map { Array(cache.value(at: $0)) }
    }

    // MARK: Byte accounting

    func testByteAccountingIsExact() {
        enum Op { case insert(String, Int), remove(String) }
        // (operations, expected count, expected bytes); capacity is large enough that nothing is evicted.
        let cases: [(String, [Op], Int, Int)] = [
            ("empty", [], 0, 0),
            ("one", [.insert("a", 10)], 1, 1 + 10 + overhead),
            ("two", [.insert("a", 10), .insert("bb", 0)], 2, 1 + 10 + 2 + 2 * overhead),
            ("replace larger", [.insert("a", 10), .insert("a", 30)], 1, 1 + 30 + overhead),
            ("replace smaller", [.insert("a", 30), .insert("a", 3)], 1, 1 + 3 + overhead),
            ("delete", [.insert("a", 10), .insert("b", 5), .remove("a")], 1, 1 + 5 + overhead),
            ("delete all", [.insert("a", 10), .remove("a")], 0, 0),
            ("empty key and value", [.insert("", 0)], 1, overhead),
        ]
        for (name, ops, expectedCount, expectedBytes) in cases {
            let cache = LRUCache(capacityBytes: 1 << 20, hashSeed: seed)
            for op in ops {
                switch op {
                case .insert(let key, let size):
                    XCTAssertTrue(cache.insert(key: key, value: [UInt8](repeating: 7, count: size), expiresAt: 0,
                                               window: 0), name)
                case .remove(let key):
                    cache.remove(cache.find(key: key)!)
                }
            }
            XCTAssertEqual(cache.count, expectedCount, name)
            XCTAssertEqual(cache.bytes, expectedBytes, name)
            assertSound(cache)
        }
    }

    func testEvictionKeepsBytesWithinCapacityAndCountsEvictions() {
        let entryCost = 1 + 10 + overhead
        let cache = LRUCache(capacityBytes: 3 * entryCost, hashSeed: seed)
        for key in ["a", "b", "c", "d", "e"] {
            XCTAssertTrue(cache.insert(key: key, value: [UInt8](repeating: 1, count: 10), expiresAt: 0, window: 0))
            XCTAssertLessThanOrEqual(cache.bytes, cache.capacityBytes)
        }
        XCTAssertEqual(cache.count, 3)
        XCTAssertEqual(cache.bytes, 3 * entryCost)
        XCTAssertEqual(cache.stats.evictions, 2)
        XCTAssertEqual(cache.keysInRecencyOrder(), [b("e"), b("d"), b("c")])
        // A larger entry evicts as many as it needs.
        XCTAssertTrue(cache.insert(key: "f", value: [UInt8](repeating: 1, count: 10 + entryCost), expiresAt: 0,
                                   window: 0))
        XCTAssertEqual(cache.keysInRecencyOrder(), [b("f"), b("e")])
        XCTAssertEqual(cache.stats.evictions, 4)
        assertSound(cache)
    }

    func testTouchedEntriesSurviveEviction() {
        let entryCost = 1 + 1 + overhead
        let cache = LRUCache(capacityBytes: 3 * entryCost, hashSeed: seed)
        for key in ["a", "b", "c"] { cache.insert(key: key, value: b("v"), expiresAt: 0, window: 0) }
        cache.touch(cache.find(key: "a")!)
        cache.insert(key: "d", value: b("v"), expiresAt: 0, window: 0)
        XCTAssertNil(cache.find(key: "b"), "b was least recently used")
        XCTAssertEqual(cache.keysInRecencyOrder(), [b("d"), b("a"), b("c")])
        cache.touch(cache.find(key: "c")!)
        cache.insert(key: "e", value: b("v"), expiresAt: 0, window: 0)
        XCTAssertEqual(cache.keysInRecencyOrder(), [b("e"), b("c"), b("d")])
        // Replacing an entry makes it most recent.
        cache.insert(key: "d", value: b("w"), expiresAt: 0, window: 0)
        XCTAssertEqual(cache.keysInRecencyOrder(), [b("d"), b("e"), b("c")])
        assertSound(cache)
    }

    func testOversizeEntryIsRefusedAndRemovesTheOldValue() {
        let cache = LRUCache(capacityBytes: 300, hashSeed: seed)
        XCTAssertTrue(cache.insert(key: "k", value: b("small"), expiresAt: 0, window: 0))
        XCTAssertTrue(cache.insert(key: "other", value: b("x"), expiresAt: 0, window: 0))
        let tooBig = [UInt8](repeating: 0, count: 300 - overhead)  // key "k" makes it one byte too many
        XCTAssertFalse(cache.insert(key: "k", value: tooBig, expiresAt: 0, window: 0))
        XCTAssertNil(cache.find(key: "k"))
        XCTAssertNotNil(cache.find(key: "other"), "a refused entry evicts nothing")
        XCTAssertEqual(cache.stats.evictions, 0)
        XCTAssertTrue(cache.insert(key: "", value: tooBig, expiresAt: 0, window: 0), "exactly the capacity fits")
        XCTAssertEqual(cache.bytes, 300)
        XCTAssertEqual(cache.count, 1)
        XCTAssertFalse(LRUCache(capacityBytes: 0, hashSeed: seed).insert(key: "", value: [], expiresAt: 0,
                                                                        window: 0))
        assertSound(cache)
    }

    // MARK: Expiry

    func testExpiredEntriesAreFullyRemoved() {
        let cache = LRUCache(capacityBytes: 1 << 20, hashSeed: seed)
        for i in 0..<100 {
            cache.insert(key: "k\(i)", value: b("v\(i)"), expiresAt: i % 2 == 0 ? 1_000 : 5_000, window: 10)
        }
        var removed = 0
        while removed < 50 {
            let n = cache.sweep(now: 1_000, graceMillis: 0, budget: 7)
            XCTAssertLessThanOrEqual(n, 7)
            removed += n
            if n == 0 && cache.sweep(now: 1_000, graceMillis: 0, budget: 1_000) == 0 { break }
        }
        XCTAssertEqual(cache.count, 50)
        XCTAssertEqual(cache.stats.expirations, 50)
        XCTAssertEqual(cache.bytes, (0..<100).filter { $0 % 2 == 1 }.reduce(0) {
            $0 + "k\($1)".utf8.count + "v\($1)".utf8.count + overhead
        })
        assertSound(cache)
        for i in 0..<100 {
            XCTAssertEqual(cache.find(key: "k\(i)") == nil, i % 2 == 0)
        }
        // Lazy expiry by the caller removes just as completely.
        cache.expire(cache.find(key: "k1")!)
        XCTAssertEqual(cache.stats.expirations, 51)
        XCTAssertNil(cache.find(key: "k1"))
        assertSound(cache)
        // Reinsertion reuses the freed slots and works like new.
        for i in 0..<100 where i % 2 == 0 || i == 1 {
            XCTAssertTrue(cache.insert(key: "k\(i)", value: b("again"), expiresAt: 9_000, window: 10))
        }
        XCTAssertEqual(cache.count, 100)
        XCTAssertEqual(value(cache, "k0"), b("again"))
        XCTAssertEqual(value(cache, "k3"), b("v3"))
        assertSound(cache)
    }

    func testSweepHonoursGraceAndNegativeEntriesGetNone() {
        let cache = LRUCache(capacityBytes: 1 << 20, hashSeed: seed)
        cache.insert(key: "value", value: b("v"), expiresAt: 1_000, window: 0)
        cache.insert(key: "negative", value: [], expiresAt: 1_000, window: 0, flags: .negative)
        XCTAssertEqual(cache.sweep(now: 999, graceMillis: 500, budget: 10), 0)
        XCTAssertEqual(cache.sweep(now: 1_000, graceMillis: 500, budget: 10), 1)
        XCTAssertNil(cache.find(key: "negative"))
        XCTAssertEqual(cache.sweep(now: 1_499, graceMillis: 500, budget: 10), 0)
        XCTAssertEqual(cache.sweep(now: 1_500, graceMillis: 500, budget: 10), 1)
        XCTAssertEqual(cache.count, 0)
        assertSound(cache)
    }

    func testSweepBudgetAndCursorWraparound() {
        let cache = LRUCache(capacityBytes: 1 << 20, hashSeed: seed)
        for i in 0..<10 { cache.insert(key: "k\(i)", value: b("v"), expiresAt: 10_000, window: 0) }
        // Nothing expired: a sweep examines at most its budget and advances the cursor.
        XCTAssertEqual(cache.sweep(now: 0, graceMillis: 0, budget: 4), 0)  // slots 0-3
        XCTAssertEqual(cache.sweep(now: 0, graceMillis: 0, budget: 4), 0)  // slots 4-7
        // Now slots 0 and 9 expire; the next sweep of 4 examines 8, 9, 0, 1 (wrapping around).
        cache.setExpiresAt(0, 5)
        cache.setExpiresAt(9, 5)
        cache.setExpiresAt(2, 5)
        XCTAssertEqual(cache.sweep(now: 100, graceMillis: 0, budget: 4), 2)
        XCTAssertEqual(cache.count, 8)
        XCTAssertNil(cache.find(key: "k0"))
        XCTAssertNil(cache.find(key: "k9"))
        XCTAssertNotNil(cache.find(key: "k2"), "slot 2 is beyond this sweep's budget")
        XCTAssertEqual(cache.sweep(now: 100, graceMillis: 0, budget: 4), 1)  // slots 2-5
        XCTAssertNil(cache.find(key: "k2"))
        // A budget larger than the slot count examines each slot once.
        XCTAssertEqual(cache.sweep(now: 20_000, graceMillis: 0, budget: 1_000), 7)
        XCTAssertEqual(cache.count, 0)
        XCTAssertEqual(cache.sweep(now: 20_000, graceMillis: 0, budget: 1_000), 0)
        XCTAssertEqual(cache.stats.expirations, 10)
        assertSound(cache)
    }

    func testRenewAndAccessors() {
        let cache = LRUCache(capacityBytes: 1 << 20, hashSeed: seed)
        cache.insert(key: "k", value: b("value"), expiresAt: 1_500, window: 500, flags: .fixedExpiry)
        let slot = cache.find(key: "k")!
        XCTAssertEqual(Array(cache.key(at: slot)), b("k"))
        XCTAssertEqual(Array(cache.value(at: slot)), b("value"))
        XCTAssertEqual(cache.expiresAt(at: slot), 1_500)
        XCTAssertEqual(cache.window(at: slot), 500)
        XCTAssertEqual(cache.flags(at: slot), .fixedExpiry)
        XCTAssertEqual(cache.valueHash(at: slot), LRUCache.valueHash(b("value")))
        cache.renew(slot, now: 2_000)
        XCTAssertEqual(cache.expiresAt(at: slot), 2_500)
        XCTAssertTrue(cache.isDead(slot, now: 2_500, graceMillis: 0))
        XCTAssertFalse(cache.isDead(slot, now: 2_500, graceMillis: 1))
    }

    func testRemoveAllEmptiesAndTheCacheStaysUsable() {
        let cache = LRUCache(capacityBytes: 1 << 20, hashSeed: seed)
        for i in 0..<1_000 { cache.insert(key: "k\(i)", value: b("v"), expiresAt: 0, window: 0) }
        cache.removeAll()
        XCTAssertEqual(cache.count, 0)
        XCTAssertEqual(cache.bytes, 0)
        XCTAssertNil(cache.find(key: "k1"))
        assertSound(cache)
        cache.insert(key: "k1", value: b("w"), expiresAt: 0, window: 0)
        XCTAssertEqual(value(cache, "k1"), b("w"))
        assertSound(cache)
    }

    // MARK: Keys as bytes

    func testBinaryKeysAndValuesIncludingZeroBytes() {
        let cache = LRUCache(capacityBytes: 1 << 20, hashSeed: seed)
        let keys: [[UInt8]] = [
            [], [0], [0, 0], [0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0],
            [97, 0, 98], [97, 0, 99], [97, 98], [97, 98, 0], [255, 254, 0, 1],
            Array(repeating: 0, count: 40), Array(repeating: 0, count: 41), Array(0...255),
        ]
        for (i, key) in keys.enumerated() {
            XCTAssertTrue(cache.insert(key: key, value: [0, UInt8(i), 0], expiresAt: 0, window: 0))
        }
        XCTAssertEqual(cache.count, keys.count, "keys differing only in zero bytes or length are distinct")
        for (i, key) in keys.enumerated() {
            let slot = cache.find(key: key)
            XCTAssertNotNil(slot, "\(key)")
            if let slot {
                XCTAssertEqual(Array(cache.value(at: slot)), [0, UInt8(i), 0])
                XCTAssertEqual(Array(cache.key(at: slot)), key)
            }
        }
        XCTAssertNil(cache.find(key: [0, 0, 0]))
        assertSound(cache)
    }

    func testLookupFromARawBufferNeedsNoOwnedKey() {
        let cache = LRUCache(capacityBytes: 1 << 20, hashSeed: seed)
        cache.insert(key: "Tom", value: b("630"), expiresAt: 0, window: 0)
        // The HTTP layer decodes into a scratch buffer and looks up from a slice of it.
        let scratch: [UInt8] = b("key=Tom&x")
        let slot = scratch.withUnsafeBytes { cache.find(key: UnsafeRawBufferPointer(rebasing: $0[4..<7])) }
        XCTAssertNotNil(slot)
        XCTAssertEqual(slot.map { Array(cache.value(at: $0)) }, b("630"))
    }

    func testHashIsDeterministicPerSeedAndSpreadsSimilarKeys() {
        var seen = Set<UInt64>()
        for length in 0..<64 {
            let key = [UInt8](repeating: 0, count: length)
            let h = key.withUnsafeBytes { LRUCache.hashBytes($0, seed: 1) }
            XCTAssertEqual(h, key.withUnsafeBytes { LRUCache.hashBytes($0, seed: 1) })
            XCTAssertNotEqual(h, key.withUnsafeBytes { LRUCache.hashBytes($0, seed: 2) })
            seen.insert(h)
        }
        for i in 0..<10_000 { seen.insert(Array("key\(i)".utf8).withUnsafeBytes { LRUCache.hashBytes($0, seed: 1) }) }
        XCTAssertEqual(seen.count, 64 + 10_000)
        XCTAssertEqual(LRUCache.valueHash(b("630")), LRUCache.valueHash(b("630")), "ETag is stable")
    }

    // MARK: Packing limits (the entry layout, docs/memory.md)

    func testEntryHeaderStaysFortyBytes() {
        // The per-entry figures in docs/memory.md and `perEntryOverhead` assume this size.
        XCTAssertEqual(LRUCache.entryStride, 40)
    }

    func testExpiryIsKeptExactlyWithin48BitsAndSaturatesBeyond() {
        let latest = LRUCache.latestExpiresAt
        let earliest = LRUCache.earliestExpiresAt
        // (stored expiresAt, what reads back)
        let cases: [(Int64, Int64)] = [
            (0, 0), (1, 1), (-1, -1), (1_764_480_000_123, 1_764_480_000_123), (latest, latest),
            (earliest, earliest), (latest + 1, latest), (Int64.max, latest), (earliest - 1, earliest),
            (Int64.min, earliest),
        ]
        for (stored, expected) in cases {
            let cache = LRUCache(capacityBytes: 1 << 20, hashSeed: seed)
            let flags: LRUEntryFlags = [.fixedExpiry, .negative]
            XCTAssertTrue(cache.insert(key: "k", value: [], expiresAt: stored, window: 7, flags: flags))
            guard let slot = cache.find(key: "k") else { return XCTFail("\(stored): not found") }
            XCTAssertEqual(cache.expiresAt(at: slot), expected, "\(stored)")
            XCTAssertEqual(cache.flags(at: slot), flags, "\(stored): the flags packed beside expiry survive")
            cache.setExpiresAt(slot, stored)
            XCTAssertEqual(cache.expiresAt(at: slot), expected, "\(stored): setExpiresAt")
            XCTAssertEqual(cache.flags(at: slot), flags)
            XCTAssertEqual(cache.find(key: "k"), slot, "\(stored): the hash tag packed beside expiry survives")
            assertSound(cache)
        }
        // A saturated expiry means "not within any clock a cache will see", never a wrap into the past.
        let cache = LRUCache(capacityBytes: 1 << 20, hashSeed: seed)
        cache.insert(key: "forever", value: b("v"), expiresAt: Int64.max, window: UInt32.max)
        let slot = cache.find(key: "forever")!
        XCTAssertFalse(cache.isDead(slot, now: 4_102_444_800_000, graceMillis: 0), "alive in 2100")
        cache.renew(slot, now: latest)
        XCTAssertEqual(cache.expiresAt(at: slot), latest, "a renewal past the bound saturates too")
        cache.insert(key: "past", value: b("v"), expiresAt: Int64.min, window: 0)
        XCTAssertTrue(cache.isDead(cache.find(key: "past")!, now: 0, graceMillis: 0))
    }

    func testEntryLimitEvictsTheLeastRecentlyUsed() {
        let cache = LRUCache(capacityBytes: 1 << 20, hashSeed: seed, maxEntries: 3)
        for key in ["a", "b", "c"] { XCTAssertTrue(cache.insert(key: key, value: b("v"), expiresAt: 0, window: 0)) }
        cache.touch(cache.find(key: "a")!)
        XCTAssertTrue(cache.insert(key: "d", value: b("v"), expiresAt: 0, window: 0))
        XCTAssertEqual(cache.keysInRecencyOrder(), [b("d"), b("a"), b("c")], "b was least recently used")
        XCTAssertEqual(cache.stats.evictions, 1)
        // Replacing a key at the limit frees its own slot first: nothing else is evicted.
        XCTAssertTrue(cache.insert(key: "c", value: b("w"), expiresAt: 0, window: 0))
        XCTAssertEqual(cache.keysInRecencyOrder(), [b("c"), b("d"), b("a")])
        XCTAssertEqual(cache.stats.evictions, 1)
        for i in 0..<100 { cache.insert(key: "k\(i)", value: b("v"), expiresAt: 0, window: 0) }
        XCTAssertEqual(cache.count, 3)
        XCTAssertEqual(cache.keysInRecencyOrder(), [b("k99"), b("k98"), b("k97")])
        XCTAssertEqual(cache.stats.evictions, 101)
        assertSound(cache)
    }

    func testRemovalFromAnyPlaceInAHashChainKeepsTheOthersFindable() {
        // 16 keys in the initial 16 buckets: by pigeonhole some share a chain unless spread perfectly, and
        // removing in these orders takes entries from the heads, middles and ends of those chains.
        let keys = (0..<16).map { "key\($0)" }
        let orders: [(String, [Int])] = [
            ("oldest first", Array(0..<16)), ("newest first", Array((0..<16).reversed())),
            ("odd then even", Array(stride(from: 1, to: 16, by: 2)) + Array(stride(from: 0, to: 16, by: 2))),
        ]
        for (name, order) in orders {
            let cache = LRUCache(capacityBytes: 1 << 20, hashSeed: seed)
            for key in keys { cache.insert(key: key, value: b(key), expiresAt: 0, window: 0) }
            var left = Set(keys)
            for n in order {
                cache.remove(cache.find(key: keys[n])!)
                left.remove(keys[n])
                XCTAssertNil(cache.checkInvariants(), "\(name), after removing \(keys[n])")
                for key in left { XCTAssertEqual(value(cache, key), b(key), "\(name): \(key)") }
            }
            XCTAssertEqual(cache.count, 0, name)
        }
    }

    func testValueBeyond32BitLengthIsRefusedNotTruncated() {
        let cache = LRUCache(capacityBytes: Int.max / 2, hashSeed: seed)
        XCTAssertTrue(cache.insert(key: "k", value: b("old"), expiresAt: 0, window: 0))
        var byte: UInt8 = 0
        withUnsafeBytes(of: &byte) { one in
            // Never read: the length is refused before any copy (the value hash is given, so nothing hashes it).
            let huge = UnsafeRawBufferPointer(start: one.baseAddress, count: Int(UInt32.max) + 1)
            XCTAssertFalse("k".utf8.withContiguousStorageIfAvailable {
                cache.insert(key: UnsafeRawBufferPointer($0), value: huge, expiresAt: 0, window: 0, valueHash: 0)
            }!)
        }
        XCTAssertNil(cache.find(key: "k"), "the refused insert still removes the value it meant to replace")
        XCTAssertEqual(cache.count, 0)
        XCTAssertEqual(cache.bytes, 0)
        assertSound(cache)
    }

    // MARK: Model-based

    /// Random operations against a plain Dictionary + recency list model, including eviction, many
    /// deletes (unlinking from the middle of hash chains) and table growth.
    func testRandomOperationsMatchAModel() {
        for (capacity, keySpace) in [(1 << 30, 3_000), (60 * (overhead + 12), 200), (5 * (overhead + 12), 40)] {
            let random = FastRandom(seed: UInt64(capacity))
            let cache = LRUCache(capacityBytes: capacity, hashSeed: UInt64(keySpace))
            var model: [[UInt8]: [UInt8]] = [:]
            var recency: [[UInt8]] = []  // most recent first
            var modelBytes = 0
            var evictions: UInt64 = 0

            func randomKey() -> [UInt8] {
                let n = Int(random.next(below: UInt64(keySpace)))
                // Varied lengths and zero bytes: key n is n's bytes padded with n % 9 zeros.
                return Array(String(n).utf8) + [UInt8](repeating: 0, count: n % 9)
            }
            func modelRemove(_ key: [UInt8]) {
                guard let old = model.removeValue(forKey: key) else { return }
                modelBytes -= key.count + old.count + overhead
                recency.removeAll { $0 == key }
            }

            for step in 0..<20_000 {
                let key = randomKey()
                switch random.next(below: 10) {
                case 0..<5:
                    let value = [UInt8](repeating: UInt8(step & 0xFF), count: Int(random.next(below: 4)))
                    modelRemove(key)
                    let cost = key.count + value.count + overhead
                    while modelBytes + cost > capacity, let victim = recency.last {
                        modelRemove(victim)
                        evictions += 1
                    }
                    model[key] = value
                    modelBytes += cost
                    recency.insert(key, at: 0)
                    XCTAssertTrue(cache.insert(key: key, value: value, expiresAt: 0, window: 0))
                case 5..<7:
                    if let slot = cache.find(key: key) {
                        cache.remove(slot)
                    }
                    modelRemove(key)
                case 7:
                    if let slot = cache.find(key: key) {
                        cache.touch(slot)
                        recency.removeAll { $0 == key }
                        recency.insert(key, at: 0)
                    }
                default:
                    let found = cache.find(key: key).map { Array(cache.value(at: $0)) }
                    XCTAssertEqual(found, model[key], "step \(step)")
                }
                XCTAssertEqual(cache.count, model.count, "step \(step)")
                XCTAssertEqual(cache.bytes, modelBytes, "step \(step)")
                if step % 1_000 == 0 { assertSound(cache) }
            }
            XCTAssertEqual(cache.keysInRecencyOrder(), recency)
            XCTAssertEqual(cache.stats.evictions, evictions)
            for (key, value) in model {
                XCTAssertEqual(cache.find(key: key).map { Array(cache.value(at: $0)) }, value)
            }
            assertSound(cache)
        }
    }
}

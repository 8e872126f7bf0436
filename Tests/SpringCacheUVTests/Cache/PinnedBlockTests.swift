import XCTest
@testable import SpringCacheUV

/// The ownership rule for entry blocks: a block a write still reads (pinned) outlives its entry — replaced,
/// deleted, expired, evicted or cleared — with its bytes intact, and is freed by the last unpin.
final class PinnedBlockTests: XCTestCase {
    private let big = (0..<40_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }

    private func cacheWithBig(capacity: Int = 1 << 20) -> (LRUCache, Int32) {
        let cache = LRUCache(capacityBytes: capacity, hashSeed: 7)
        XCTAssertTrue(cache.insert(key: "k", value: big, expiresAt: 1_000, window: 0))
        return (cache, cache.find(key: "k")!)
    }

    private var blockBytes: Int { 8 + 1 + big.count }

    func testPinnedBlockOutlivesEveryKindOfRemoval() {
        let removals: [(String, (LRUCache, Int32) -> Void)] = [
            ("replace", { c, _ in XCTAssertTrue(c.insert(key: "k", value: [1, 2, 3], expiresAt: 1_000, window: 0)) }),
            ("delete", { c, slot in c.remove(slot) }),
            ("expire", { c, slot in c.expire(slot) }),
            ("sweep", { c, _ in XCTAssertEqual(c.sweep(now: 5_000, graceMillis: 0, budget: 10), 1) }),
            ("evict", { c, _ in
                // Fills the cache so that the pinned entry, the least recently used, must go.
                XCTAssertTrue(c.insert(key: "other", value: [UInt8](repeating: 9, count: 60_000), expiresAt: 1_000,
                                       window: 0))
                XCTAssertNil(c.find(key: "k"))
            }),
            ("removeAll", { c, _ in c.removeAll() }),
        ]
        for (label, remove) in removals {
            let (cache, slot) = cacheWithBig(capacity: 100_000)
            let value = cache.value(at: slot)
            let block = cache.pin(slot)
            remove(cache, slot)
            let stillThere = cache.find(key: "k").map { cache.value(at: $0).count == big.count } ?? false
            XCTAssertFalse(stillThere, "\(label): the entry is gone")
            XCTAssertLessThanOrEqual(cache.bytes, cache.capacityBytes, "\(label): --cache-bytes counts entries only")
            XCTAssertEqual(cache.orphanedBytes, blockBytes, "\(label): the pinned block is counted as orphaned")
            XCTAssertEqual(Array(value), big, "\(label): the pinned value is intact")
            XCTAssertNil(cache.checkInvariants(), label)
            cache.unpin(block)
            XCTAssertEqual(cache.orphanedBytes, 0, "\(label): the last unpin frees the block")
            XCTAssertEqual(cache.pinnedBlocks, 0, label)
        }
    }

    func testUnpinOfALiveEntryLeavesItCached() {
        let (cache, slot) = cacheWithBig()
        let block = cache.pin(slot)
        cache.unpin(block)
        XCTAssertEqual(cache.pinnedBlocks, 0)
        XCTAssertEqual(cache.orphanedBytes, 0)
        XCTAssertEqual(cache.find(key: "k").map { Array(cache.value(at: $0)) }, big, "still cached, still whole")
        // Removed later without a pin, the block is freed at once.
        cache.remove(cache.find(key: "k")!)
        XCTAssertEqual(cache.orphanedBytes, 0)
    }

    func testPinsNestAndTheLastOneFrees() {
        let (cache, slot) = cacheWithBig()
        let value = cache.value(at: slot)
        let first = cache.pin(slot)
        let second = cache.pin(slot)
        XCTAssertEqual(first, second)
        XCTAssertEqual(cache.pinnedBlocks, 1)
        cache.remove(slot)
        cache.unpin(first)
        XCTAssertEqual(cache.orphanedBytes, blockBytes, "one write still reads the block")
        XCTAssertEqual(Array(value), big)
        cache.unpin(second)
        XCTAssertEqual(cache.orphanedBytes, 0)
        XCTAssertEqual(cache.pinnedBlocks, 0)
    }

    func testAReplacementIsServedWhileTheOldValueIsStillPinned() {
        let (cache, slot) = cacheWithBig()
        let old = cache.value(at: slot)
        let block = cache.pin(slot)
        let newer = [UInt8](repeating: 0xAB, count: 50_000)
        XCTAssertTrue(cache.insert(key: "k", value: newer, expiresAt: 1_000, window: 0))
        XCTAssertEqual(cache.find(key: "k").map { Array(cache.value(at: $0)) }, newer)
        XCTAssertEqual(Array(old), big, "the write in flight still sends the value it began with")
        cache.unpin(block)
        XCTAssertEqual(cache.find(key: "k").map { Array(cache.value(at: $0)) }, newer, "the new entry is untouched")
        XCTAssertEqual(cache.orphanedBytes, 0)
    }

    // MARK: through the group

    func testGroupPinKeepsAHitsValueUntilReleased() {
        let clock = ManualClock()
        let group = Group(name: "g", config: CacheConfig(jitterMillis: 0, sliding: false), clock: clock,
                          random: FastRandom(seed: 1), loader: CacheTestLoader())
        let cases: [(String, (Group) -> Void)] = [
            ("set", { XCTAssertTrue($0.set(key: "k", value: [7], ttlMillis: nil, hot: false)) }),
            ("delete", { XCTAssertTrue($0.delete(key: "k")) }),
            ("expire", { _ in
                clock.advance(byMillis: 31_000)
                XCTAssertGreaterThanOrEqual(group.sweep(), 1)
            }),
        ]
        for (label, change) in cases {
            XCTAssertTrue(group.set(key: "k", value: big, ttlMillis: nil, hot: false), label)
            var pin: ValuePin?
            let hit = Array("k".utf8).withUnsafeBytes { key in
                group.withFreshValue(forKey: key) { view in pin = view.pin() }
            }
            XCTAssertNotNil(hit, label)
            change(group)
            XCTAssertEqual(Array(pin!.value), big, "\(label): the pinned value survives")
            XCTAssertEqual(group.pinnedOrphanBytes, blockBytes, label)
            pin = nil
            XCTAssertEqual(group.pinnedOrphanBytes, 0, "\(label): released, the block is freed")
            XCTAssertEqual(group.pinnedBlocks, 0, label)
        }
    }
}

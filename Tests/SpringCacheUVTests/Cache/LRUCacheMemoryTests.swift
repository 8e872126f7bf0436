import Foundation
import XCTest
@testable import SpringCacheUV

/// Measures what an entry really costs, to justify `LRUCache.perEntryOverhead`.
///
/// Heavy (a million entries, ~100 MB), so it runs only with `SPRINGCACHE_MEMORY_TEST=1`, and it should run
/// alone so memory freed by other tests does not flatter the figure:
/// `SPRINGCACHE_MEMORY_TEST=1 swift test --filter LRUCacheMemoryTests`.
final class LRUCacheMemoryTests: XCTestCase {
    private func residentBytes() throws -> Int {
        let statm = try String(contentsOfFile: "/proc/self/statm", encoding: .utf8)
        let fields = statm.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { throw XCTSkip("unreadable /proc/self/statm") }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    func testPerEntryOverheadAtOneMillionEntries() throws {
        guard ProcessInfo.processInfo.environment["SPRINGCACHE_MEMORY_TEST"] != nil else {
            throw XCTSkip("set SPRINGCACHE_MEMORY_TEST=1 to measure per-entry memory")
        }
        let entries = 1_000_000
        let keyAndValueBytes = 16
        let cache = LRUCache(capacityBytes: Int.max / 2, hashSeed: 7)
        let before = try residentBytes()
        for i in 0..<entries {
            var key = UInt64(i)
            var value = UInt64(i) &* 0x9E37_79B9
            withUnsafeBytes(of: &key) { k in
                withUnsafeBytes(of: &value) { v in
                    _ = cache.insert(key: k, value: v, expiresAt: 0, window: 0)
                }
            }
        }
        let after = try residentBytes()
        XCTAssertEqual(cache.count, entries)
        let perEntry = Double(after - before) / Double(entries) - Double(keyAndValueBytes)
        print("LRUCache: RSS grew \(after - before) bytes for \(entries) entries of 8+8 bytes: "
              + "\(perEntry) bytes per entry beyond key and value "
              + "(perEntryOverhead = \(LRUCache.perEntryOverhead))")
        XCTAssertLessThanOrEqual(perEntry, 64, "issue 11's bound: at most 64 bytes beyond key and value")
        XCTAssertLessThanOrEqual(perEntry, Double(LRUCache.perEntryOverhead), "perEntryOverhead undercounts")
        withExtendedLifetime(cache) {}
    }
}

import XCTest
@testable import SpringCacheUV

/// A Set's `expire` as springcache sends it: absolute unix seconds; a time already past (springcache's own
/// `expire=0` arrives as "now", and an expired Set is how a delete reaches it) drops the key instead of being
/// refused; 0 is the default TTL (what earlier springcache-uv nodes sent).
final class PeerSetExpiryTests: XCTestCase {
    func testExpiryRules() {
        let now: Int64 = 1_700_000_000_500
        let cases: [(Int64, PeerService.SetExpiry)] = [
            (0, .defaultTTL),
            (1, .past),                                  // what our delete-as-Set sends
            (-5, .past),
            (1_700_000_000, .past),                      // springcache's expire=0 minutes: "now", truncated
            (1_700_000_001, .ttl(500)),
            (1_700_000_300, .ttl(299_500)),
            (Int64.min, .past),
            (Int64.max, .ttl(Int64.max / 2)),            // overflows in ms: far future, not an error
        ]
        for (expire, expected) in cases {
            XCTAssertEqual(PeerService.expiry(ofSetExpire: expire, nowMillis: now), expected, "expire \(expire)")
        }
    }
}

import XCTest
@testable import SpringCacheUV

final class BearerTokenTests: XCTestCase {
    func testTheSchemeIsCaseInsensitiveAndTheTokenExact() {
        let token = Array("s3cret".utf8)
        let cases: [(String, Bool)] = [
            ("Bearer s3cret", true), ("bearer s3cret", true), ("BEARER s3cret", true), ("bEaReR s3cret", true),
            ("Bearer S3cret", false), ("Bearer s3cre", false), ("Bearer s3crett", false), ("Bearers3cret", false),
            ("Bearer  s3cret", false), ("Bearer", false), ("Bearer ", false), ("Basic s3cret", false),
            ("Bearer\ts3cret", false), ("Xearer s3cret", false), ("", false),
        ]
        for (header, expected) in cases {
            let matched = Array(header.utf8).withUnsafeBytes { BearerToken.matches($0, token: token) }
            XCTAssertEqual(matched, expected, header)
        }
    }
}

final class CacheKeyTests: XCTestCase {
    func testKeysAreComparedAsBytes() {
        let distinct: [CacheKey] = [CacheKey([0x80]), CacheKey([0xFF]), CacheKey([0xEF, 0xBF, 0xBD]),
                                    "\u{E9}", "e\u{301}", "\u{FB01}", "fi", CacheKey([0x6B, 0x00]), "k"]
        XCTAssertEqual(Set(distinct).count, distinct.count)
        XCTAssertEqual(Set(distinct.map(\.description)).count, distinct.count, "descriptions never collide")
    }

    func testDescriptionShowsPrintableASCIIAndEscapesTheRest() {
        XCTAssertEqual(CacheKey("Tom").description, "Tom")
        XCTAssertEqual(CacheKey("caf\u{E9}").description, "caf%C3%A9")
        XCTAssertEqual(CacheKey([0x73, 0x80]).description, "s%80")
        XCTAssertEqual(CacheKey("50%").description, "50%25")
        XCTAssertEqual(CacheKey("a b\n").description, "a%20b%0A")
    }
}

final class AbuseLogTests: XCTestCase {
    func testEachKindIsLoggedOncePerIntervalWithWhatWasFolded() {
        var lines: [String] = []
        let log = AbuseLog(intervalMillis: 10_000) { lines.append($0) }
        log.report(.headerList, peer: "10.0.0.1:5", "first", now: 0)
        log.report(.headerList, peer: "10.0.0.2:5", "second", now: 5_000)
        log.report(.bufferFull, peer: "10.0.0.3:5", "other kind", now: 5_000)
        log.report(.headerList, peer: "10.0.0.4:5", "third", now: 9_999)
        log.report(.headerList, peer: "10.0.0.5:5", "fourth", now: 10_000)
        XCTAssertEqual(lines, [
            "abuse header-list-too-large from 10.0.0.1:5: first",
            "abuse buffer-full from 10.0.0.3:5: other kind",
            "abuse header-list-too-large from 10.0.0.5:5: fourth (and 2 more of this kind since the last report)",
        ])
        XCTAssertEqual(log.counts[.headerList], 4)
    }
}

import XCTest
@testable import SpringCacheUV

final class ValueParsingTests: XCTestCase {
    func testByteSizes() throws {
        let cases: [(String, Int)] = [
            ("0", 0), ("65536", 65536), ("64KiB", 64 << 10), ("64k", 64 << 10), ("512KB", 512_000),
            ("64MiB", 64 << 20), ("8MB", 8_000_000), ("1GiB", 1 << 30), ("2gb", 2_000_000_000), ("100b", 100),
        ]
        for (text, expected) in cases {
            XCTAssertEqual(try ValueParsing.byteSize(text, flag: "--cache-bytes"), expected, text)
        }
    }

    func testBadByteSizesNameTheFlagAndTheForm() {
        for text in ["", "MiB", "12XB", "-5", "1.5MiB", "abc", "99999999999999999999", "9999999999999GiB"] {
            XCTAssertThrowsError(try ValueParsing.byteSize(text, flag: "--cache-bytes"), text) { error in
                XCTAssertTrue("\(error)".contains("--cache-bytes"), "\(error)")
            }
        }
    }

    func testDurations() throws {
        let cases: [(String, Int64)] = [
            ("0", 0), ("500ms", 500), ("30s", 30_000), ("3m", 180_000), ("1h", 3_600_000), ("1m30s", 90_000),
        ]
        for (text, expected) in cases {
            XCTAssertEqual(try ValueParsing.durationMillis(text, flag: "--ttl"), expected, text)
        }
    }

    func testBadDurationsNameTheFlagAndTheForm() {
        for text in ["", "30", "s", "3x", "1.5s", "-1s", "abc", "99999999999999999999h", "2562047788015h", "87601h"] {
            XCTAssertThrowsError(try ValueParsing.durationMillis(text, flag: "--ttl"), text) { error in
                XCTAssertTrue("\(error)".contains("--ttl"), "\(error)")
            }
        }
    }

    func testFormattingRoundTrips() throws {
        for millis: Int64 in [0, 1, 500, 1000, 30_000, 180_000, 3_600_000, 90_000] {
            let text = ValueParsing.formatDuration(millis)
            XCTAssertEqual(try ValueParsing.durationMillis(text, flag: "--x"), millis, text)
        }
        for bytes in [0, 100, 1024, 64 << 20, 1 << 30, 1000] {
            XCTAssertEqual(try ValueParsing.byteSize(ValueParsing.formatSize(bytes), flag: "--x"), bytes)
        }
    }

    func testLists() {
        XCTAssertEqual(ValueParsing.list("a, b ,c"), ["a", "b", "c"])
        XCTAssertEqual(ValueParsing.list(""), [])
        XCTAssertEqual(ValueParsing.list("a,,b,"), ["a", "b"])
    }

    func testHostPort() throws {
        XCTAssertEqual(try HostPort.parse("127.0.0.1:9999"), HostPort(host: "127.0.0.1", port: 9999))
        XCTAssertEqual(try HostPort.parse("[::1]:0"), HostPort(host: "::1", port: 0))
        XCTAssertEqual(try HostPort.parse("localhost:80").description, "localhost:80")
        for bad in ["", "nonsense", "1.2.3.4", ":99", "h:99999", "h:-1", "[::1]99", "[::1"] {
            XCTAssertThrowsError(try HostPort.parse(bad), bad)
        }
    }
}

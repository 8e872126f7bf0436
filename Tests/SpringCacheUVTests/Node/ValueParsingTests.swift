import XCTest
@testable import SpringCacheUV

final class ValueParsingTests: XCTestCase {
    func testByteSizes() throws {
        let cases: [(String, Int)] = [
            ("0", 0), ("65536", 65536), ("64KiB", 64 << 10), ("64k", 64 << 10), ("512KB", 512_000),
            ("64MiB", 64 << 20), ("8MB", 8_000_000), ("1GiB", 1 << 30), ("2gb", 2_000_000_000), ("100b", 100),
            ("5GB", 5_000_000_000), ("1TiB", 1 << 40), ("2t", 2 << 40), ("3TB", 3_000_000_000_000), ("7B", 7),
            ("1M", 1 << 20), ("1G", 1 << 30),
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

    func testNegativeValuesSayNegative() {
        XCTAssertThrowsError(try ValueParsing.byteSize("-5", flag: "--cache-bytes")) { error in
            XCTAssertEqual("\(error)", "--cache-bytes must not be negative, got '-5'")
        }
        XCTAssertThrowsError(try ValueParsing.durationMillis("-1s", flag: "--ttl")) { error in
            XCTAssertEqual("\(error)", "--ttl must not be negative, got '-1s'")
        }
    }

    func testLogLinesCarryMillisecondsPidAndNode() {
        XCTAssertEqual(NodeLogHandler.timestamp(unixMillis: 1_796_008_960_007), "2026-11-30T03:22:40.007Z")
        let text = NodeLogHandler.format(.text, timestamp: "2026-11-30T03:22:40.007Z", level: .warning, pid: 42,
                                         node: "a-0", message: "origin load failed", metadata: ["k": "v"])
        XCTAssertEqual(text, "2026-11-30T03:22:40.007Z warning pid=42 node=a-0 origin load failed k=v\n")
        let json = NodeLogHandler.format(.json, timestamp: "2026-11-30T03:22:40.007Z", level: .info, pid: 42,
                                         node: "a", message: "say \"hi\"\n\u{1}", metadata: [:])
        XCTAssertEqual(json, #"{"ts":"2026-11-30T03:22:40.007Z","level":"info","pid":42,"node":"a","#
                       + #""msg":"say \"hi\"\n\u0001"}"# + "\n")
    }

    func testFailureLogSaysOncePerIntervalThenSumsUp() {
        var log = FailureLog(intervalMillis: 10_000)
        XCTAssertEqual(log.record(kind: "origin unreachable", cause: "refused 1", now: 0), "refused 1")
        XCTAssertNil(log.record(kind: "origin unreachable", cause: "refused 2", now: 1_000))
        XCTAssertNil(log.record(kind: "origin unreachable", cause: "refused 3", now: 2_000))
        XCTAssertEqual(log.record(kind: "origin timeout", cause: "slow", now: 2_500), "slow", "kinds apart")
        XCTAssertEqual(log.flush(now: 9_999), [], "the interval is not over")
        XCTAssertEqual(log.flush(now: 10_000), ["origin unreachable: 2 more in the last 10s; last: refused 3"])
        XCTAssertEqual(log.record(kind: "origin unreachable", cause: "refused 4", now: 10_001), "refused 4")
        XCTAssertNil(log.record(kind: "origin unreachable", cause: "refused 5", now: 10_002))
        // Not flushed in time: the next logged line carries the count.
        XCTAssertEqual(log.record(kind: "origin unreachable", cause: "refused 6", now: 30_000),
                       "refused 6 (and 1 more like it before)")
        // When the failures stop (etcd answers again), the count is told at once, interval over or not.
        XCTAssertNil(log.record(kind: "origin unreachable", cause: "refused 7", now: 31_000))
        XCTAssertEqual(log.drain(now: 32_000), ["origin unreachable: 1 more in the last 2s; last: refused 7"])
        XCTAssertEqual(log.drain(now: 33_000), [])
        XCTAssertEqual(log.record(kind: "origin unreachable", cause: "refused 8", now: 33_000), "refused 8")
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
        for bytes in [0, 100, 1024, 64 << 20, 1 << 30, 1000, 1 << 40] {
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

import XCTest

@testable import SpringCacheUV

/// Inputs the gRPC framing fuzzer (fuzz/targets/GRPCFramingFuzz.swift) found, kept as regression tests.
final class GRPCFramingFuzzRegressionTests: XCTestCase {
    /// Found as an out-of-memory: a 5-byte prefix claiming a message just under the limit made the decoder
    /// reserve the whole claimed length before any of it arrived.
    func testLengthPrefixAloneReservesLittle() {
        let limit = 4 << 20
        var decoder = GRPCMessageDecoder(maxMessageBytes: limit, maxMessages: 1)
        let prefix: [UInt8] = [0, UInt8(limit >> 24), UInt8(limit >> 16 & 0xFF), UInt8(limit >> 8 & 0xFF),
                               UInt8(limit & 0xFF)]
        XCTAssertNil(prefix.withUnsafeBytes { decoder.feed($0) })
        // (Array rounds its capacity up a little.)
        XCTAssertLessThan(decoder.reservedBytes, 2 * GRPCMessageDecoder.maxInitialReserve)
        XCTAssertEqual(decoder.finish(), .truncated)

        // The message still arrives whole when its bytes do come, in any number of DATA frames.
        let body = (0..<limit).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var offset = 0
        while offset < body.count {
            let end = min(offset + 16_384, body.count)
            XCTAssertNil(body[offset..<end].withUnsafeBytes { decoder.feed($0) })
            offset = end
        }
        XCTAssertNil(decoder.finish())
        XCTAssertEqual(decoder.messages.count, 1)
        XCTAssertTrue(decoder.messages.first == body)
    }

    /// Found as a trap: encoding a timeout within 999 ms of `Int64.max` overflowed while rounding up to
    /// seconds. The fuzzer's input, as the header value it had to produce.
    func testTimeoutNearInt64MaxEncodesWithoutOverflow() {
        let cases: [(Int64, String)] = [
            (Int64.max, "99999999H"),
            (Int64.max - 998, "99999999H"),
            (0x7FFF_FFFF_FFFF_FF40, "99999999H"),
            (99_999_999_999, "1666667M"),       // 99,999,999.999 s rounds up past 8 digits of seconds
            (99_999_999_000, "99999999S"),
        ]
        for (millis, expected) in cases {
            let text = GRPCTimeout.encode(millis: millis)
            XCTAssertEqual(text, expected, "\(millis)")
            XCTAssertNotNil(GRPCTimeout.parse(text))
        }
    }
}

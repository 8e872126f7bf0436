import CNGHTTP2
import XCTest

@testable import SpringCacheUV

final class GRPCFramingTests: XCTestCase {
    private func framed(_ message: [UInt8], flag: UInt8 = 0) -> [UInt8] {
        let n = message.count
        return [flag, UInt8(n >> 24 & 0xFF), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)] + message
    }

    func testDecoderReassemblesAcrossEverySplit() {
        let message = Array("hello, springcache".utf8)
        let bytes = framed(message)
        for split in 0...bytes.count {
            var d = GRPCMessageDecoder(maxMessageBytes: 1024, maxMessages: 1)
            bytes.withUnsafeBytes { raw in
                XCTAssertNil(d.feed(UnsafeRawBufferPointer(rebasing: raw[..<split])))
                XCTAssertNil(d.feed(UnsafeRawBufferPointer(rebasing: raw[split...])))
            }
            XCTAssertNil(d.finish())
            XCTAssertEqual(d.messages, [message], "split at \(split)")
        }
    }

    func testARestartedDecoderDecodesTheNextStreamInTheLastMessagesBuffer() {
        var d = GRPCMessageDecoder(maxMessageBytes: 64 << 10, maxMessages: 1)
        _ = framed(Array("the first answer, the longest of the three".utf8)).withUnsafeBytes { d.feed($0) }
        let storage = d.firstMessage?.withUnsafeBytes { $0.baseAddress }
        // A stream cut short leaves nothing behind either: the restart forgets the partial prefix.
        for next in [Array("second".utf8), Array("third, longer than the second".utf8)] {
            d.restart()
            XCTAssertEqual(d.messageCount, 0)
            XCTAssertNil(d.firstMessage)
            _ = [0, 0].withUnsafeBytes { d.feed($0) }
            d.restart()
            _ = framed(next).withUnsafeBytes { d.feed($0) }
            XCTAssertNil(d.finish())
            XCTAssertEqual(d.messages, [next])
            XCTAssertEqual(d.firstMessage?.withUnsafeBytes { $0.baseAddress }, storage, "the same buffer again")
        }
        // A buffer above the bound is let go (a peak must not stay pinned in an idle call).
        let large = [UInt8](repeating: 9, count: GRPCMessageDecoder.keptBufferBytes + 1)
        _ = framed(large).withUnsafeBytes { (d.restart(), d.feed($0)).1 }
        XCTAssertEqual(d.firstMessage, large)
        d.restart()
        XCTAssertLessThanOrEqual(d.reservedBytes, GRPCMessageDecoder.keptBufferBytes)
    }

    func testALargeMessageGrowsItsBufferOnceItsFirstBytesAreHere() {
        // Issue 11: a 4 MiB answer used to double its buffer six times (copying and faulting in its first
        // 2 MiB again); once `maxInitialReserve` bytes have really arrived it is reserved whole, once.
        let length = 4 << 20
        var message = [UInt8](repeating: 0, count: length)
        for i in stride(from: 0, to: length, by: 4093) { message[i] = UInt8(truncatingIfNeeded: i >> 12) }
        let bytes = framed(message)
        var d = GRPCMessageDecoder(maxMessageBytes: length, maxMessages: 1)
        var capacities = Set<Int>()
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let end = min(offset + 16_384, raw.count)
                XCTAssertNil(d.feed(UnsafeRawBufferPointer(rebasing: raw[offset..<end])))
                if d.messageCount == 0 { capacities.insert(d.reservedBytes) }
                offset = end
            }
        }
        XCTAssertNil(d.finish())
        XCTAssertTrue(d.firstMessage == Array(bytes[5...]))
        XCTAssertEqual(capacities.count, 2, "the first reserve, then the whole message: \(capacities.sorted())")
        XCTAssertLessThan(capacities.min()!, 2 * GRPCMessageDecoder.maxInitialReserve)
        XCTAssertGreaterThanOrEqual(capacities.max()!, length)
    }

    func testDecoderFailures() {
        struct Case { let bytes: [UInt8]; let encoding: Bool; let feed: GRPCFramingFailure?; let finish: GRPCFramingFailure? }
        let cases: [Case] = [
            Case(bytes: framed([1, 2], flag: 1), encoding: false, feed: .compressedWithoutEncoding, finish: nil),
            Case(bytes: framed([1, 2], flag: 1), encoding: true, feed: .compressionUnsupported, finish: nil),
            Case(bytes: framed([1, 2], flag: 7), encoding: false, feed: .invalidFlag(7), finish: nil),
            Case(bytes: framed([UInt8](repeating: 0, count: 11)), encoding: false,
                 feed: .tooLarge(length: 11, limit: 10), finish: nil),
            Case(bytes: framed([1]) + framed([2]), encoding: false, feed: .tooManyMessages(limit: 1), finish: nil),
            Case(bytes: Array(framed([1, 2, 3]).dropLast()), encoding: false, feed: nil, finish: .truncated),
            Case(bytes: [0, 0, 0], encoding: false, feed: nil, finish: .truncated),
            Case(bytes: framed([]), encoding: false, feed: nil, finish: nil),
        ]
        for (i, c) in cases.enumerated() {
            var d = GRPCMessageDecoder(maxMessageBytes: 10, maxMessages: 1, encodingDeclared: c.encoding)
            let failure = c.bytes.withUnsafeBytes { d.feed($0) }
            XCTAssertEqual(failure, c.feed, "case \(i)")
            if failure == nil { XCTAssertEqual(d.finish(), c.finish, "case \(i)") }
        }
        XCTAssertEqual(GRPCFramingFailure.tooLarge(length: 1, limit: 0).serverStatus, .resourceExhausted)
        XCTAssertEqual(GRPCFramingFailure.tooManyMessages(limit: 1).serverStatus, .unimplemented)
        XCTAssertEqual(GRPCFramingFailure.compressedWithoutEncoding.serverStatus, .internal)
    }

    func testPrefixBytes() {
        let n = 0x0102_0304
        XCTAssertEqual((0..<5).map { GRPCMessageDecoder.prefixByte($0, length: n) }, [0, 1, 2, 3, 4])
    }

    func testTimeoutParsing() {
        let cases: [(String, Int64?)] = [
            ("2S", 2000), ("100m", 100), ("5000u", 5), ("5001u", 6), ("1n", 1), ("0m", 0), ("1H", 3_600_000),
            ("3M", 180_000), ("99999999m", 99_999_999), ("123456789m", nil), ("m", nil), ("10", nil),
            ("10x", nil), ("-1S", nil), ("", nil), ("1 S", nil),
        ]
        for (text, expected) in cases {
            XCTAssertEqual(GRPCTimeout.parse(text), expected, text)
        }
        XCTAssertEqual(GRPCTimeout.encode(millis: 2000), "2000m")
        XCTAssertEqual(GRPCTimeout.encode(millis: 100_000_000), "100000S")
        XCTAssertEqual(GRPCTimeout.encode(millis: -5), "0m")
        for millis: Int64 in [1, 999, 99_999_999, 100_000_001, 400_000_000_000] {
            XCTAssertGreaterThanOrEqual(GRPCTimeout.parse(GRPCTimeout.encode(millis: millis))!, millis)
        }
    }

    func testStatusMessagePercentEncoding() {
        let cases: [(String, String)] = [
            ("no such key", "no such key"),
            ("100% sure", "100%25 sure"),
            ("line\nbreak", "line%0Abreak"),
            ("café ✓", "caf%C3%A9 %E2%9C%93"),
        ]
        for (plain, encoded) in cases {
            XCTAssertEqual(GRPCStatusMessage.encode(plain), encoded)
            XCTAssertEqual(GRPCStatusMessage.decode(encoded), plain)
        }
        // Lenient decoding: a bad escape stays as it is.
        XCTAssertEqual(GRPCStatusMessage.decode("50%zz %4"), "50%zz %4")
        XCTAssertEqual(GRPCStatusMessage.decode("%FF"), "\u{FFFD}")
    }

    func testHTTPStatusMapping() {
        let cases: [(Int, GRPCStatus)] = [(400, .internal), (401, .unauthenticated), (403, .permissionDenied),
                                          (404, .unimplemented), (429, .unavailable), (502, .unavailable),
                                          (503, .unavailable), (504, .unavailable), (500, .unknown)]
        for (http, status) in cases { XCTAssertEqual(GRPCStatus.fromHTTPStatus(http), status, "\(http)") }
        XCTAssertEqual(GRPCStatus.notFound.name, "NOT_FOUND")
    }

    final class Item: DeadlineTracked {
        let expiresAtMillis: Int64
        var deadlineSlot = -1
        init(_ t: Int64) { expiresAtMillis = t }
    }

    func testDeadlineQueueOrdersAndRemoves() {
        var q = DeadlineQueue<Item>()
        var rng = SystemRandomNumberGenerator()
        let items = (0..<200).map { _ in Item(Int64.random(in: 0..<1000, using: &rng)) }
        for item in items { q.insert(item) }
        let removed = Set(items.indices.filter { $0 % 3 == 0 })
        for i in removed { q.remove(items[i]); q.remove(items[i]) }
        var popped: [Int64] = []
        while let item = q.popExpired(now: 500) { popped.append(item.expiresAtMillis) }
        XCTAssertEqual(popped, popped.sorted())
        let expected = items.indices.filter { !removed.contains($0) && items[$0].expiresAtMillis <= 500 }.count
        XCTAssertEqual(popped.count, expected)
        XCTAssertTrue(q.earliest.map { $0 > 500 } ?? true)
        XCTAssertEqual(q.removeAll().count, items.count - removed.count - expected)
        XCTAssertTrue(q.isEmpty)
    }

    /// How a closed stream becomes a client result (PROTOCOL-HTTP2.md, http-grpc-status-mapping.md).
    func testClientCallOutcome() {
        func makeCall(http: Int = 200, grpc: Int? = nil, message: String? = nil, body: [UInt8] = []) -> GRPCClientCall {
            let call = GRPCClientCall(path: "/p", request: [], metadata: [], expiresAtMillis: 0, maxMessageBytes: 100) { _ in }
            call.httpStatus = http
            call.contentTypeOK = true
            call.grpcStatus = grpc
            call.grpcMessage = message
            _ = body.withUnsafeBytes { call.decoder.feed($0) }
            return call
        }
        let noError = NGHTTP2_NO_ERROR.rawValue
        func status(_ r: GRPCResult) -> GRPCStatus? { if case .failure(let e) = r { return e.status } else { return nil } }
        XCTAssertEqual(try makeCall(grpc: 0, body: framed([7])).outcome(resetCode: noError).get(), [7])
        XCTAssertEqual(status(makeCall(grpc: 5, message: "gone").outcome(resetCode: noError)), .notFound)
        XCTAssertEqual(status(makeCall(http: 503).outcome(resetCode: noError)), .unavailable)
        XCTAssertEqual(status(makeCall(http: 404).outcome(resetCode: noError)), .unimplemented)
        XCTAssertEqual(status(makeCall().outcome(resetCode: noError)), .internal, "no trailers")
        XCTAssertEqual(status(makeCall(grpc: 0).outcome(resetCode: noError)), .unimplemented, "OK without a message")
        XCTAssertEqual(status(makeCall(grpc: 0, body: [0, 0, 0]).outcome(resetCode: noError)), .internal, "truncated")
        XCTAssertEqual(status(makeCall().outcome(resetCode: NGHTTP2_REFUSED_STREAM.rawValue)), .unavailable)
        XCTAssertEqual(status(makeCall().outcome(resetCode: NGHTTP2_CANCEL.rawValue)), .cancelled)
        XCTAssertEqual(status(makeCall().outcome(resetCode: NGHTTP2_PROTOCOL_ERROR.rawValue)), .internal)
        // grpc-status wins over the HTTP status when both are present.
        XCTAssertEqual(status(makeCall(http: 503, grpc: 5).outcome(resetCode: noError)), .notFound)
    }
}

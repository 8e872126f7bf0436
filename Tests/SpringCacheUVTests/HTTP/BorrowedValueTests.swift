import CLibUV
import XCTest
@testable import SpringCacheUV

/// Large values leave straight from their cache entries: answers keep their order with borrowed values between
/// copied bytes, whatever part the kernel takes at once, and the entry stays pinned exactly as long as a write
/// still holds its value.
final class BorrowedValueTests: XCTestCase {
    private var clock: ManualClock!
    private var group: Group!
    private var api: APIHandler!
    private var writer: ResponseWriter!
    private let threshold = 16 << 10
    private let large = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }

    override func setUp() {
        super.setUp()
        clock = ManualClock()
        group = Group(name: "g", config: CacheConfig(jitterMillis: 0, sliding: false), clock: clock,
                      random: FastRandom(seed: 1), loader: CacheTestLoader())
        var settings = APISettings()
        settings.borrowedValueBytes = threshold
        api = APIHandler(settings: settings, clock: clock, group: group, host: APITestHost())
        writer = ResponseWriter(collectingInto: ResponseScratch()) {}
    }

    /// The bytes of `owned` with `borrowed` spliced in, as the socket would receive them.
    private func flatten(_ owned: UnsafeRawBufferPointer, _ borrowed: [BorrowedBytes]) -> [UInt8] {
        var iovecs: [uv_buf_t] = []
        BorrowedBytes.iovecs(owned, borrowed, into: &iovecs)
        return iovecs.flatMap { Array(UnsafeRawBufferPointer(start: $0.base, count: Int($0.len))) }
    }

    /// Everything the writer would send now.
    private func pending() -> [UInt8] {
        writer.withPendingBytes { flatten($0, writer.borrowed) }
    }

    private func handle(_ raw: String) {
        let bytes = Array(raw.utf8)
        bytes.withUnsafeBytes { b in
            var parser = HTTPParser()
            guard case .request(let head, _, _) = parser.parse(b) else { return XCTFail("not a request: \(raw)") }
            let request = HTTPRequest(head: head, bytes: b, keepAlive: true, startNanos: 0)
            XCTAssertEqual(api.handle(request, writer: writer), .done, raw)
        }
    }

    /// Splits concatenated responses into (status, body) by their Content-Length (HEAD answers have no body).
    private func responses(_ bytes: [UInt8], heads: Set<Int> = []) -> [(Int, [UInt8])] {
        var out: [(Int, [UInt8])] = []
        var i = 0
        let crlf2 = Array("\r\n\r\n".utf8)
        while i < bytes.count {
            guard let end = (i...(bytes.count - 4)).first(where: { Array(bytes[$0..<$0 + 4]) == crlf2 }) else {
                XCTFail("a response without its head's end")
                break
            }
            let head = String(decoding: bytes[i..<end], as: UTF8.self)
            let status = Int(head.split(separator: " ")[1])!
            let length = head.components(separatedBy: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                .map { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces))! } ?? 0
            let bodyLength = heads.contains(out.count) || status == 304 ? 0 : length
            out.append((status, Array(bytes[end + 4..<end + 4 + bodyLength])))
            i = end + 4 + bodyLength
        }
        return out
    }

    private func store(_ key: String, _ value: [UInt8]) {
        XCTAssertTrue(group.set(key: CacheKey(key), value: value, ttlMillis: nil, hot: false))
    }

    func testLargeHitsAreBorrowedAndSmallOnesCopiedInPipelinedOrder() {
        let small = Array("630".utf8)
        let atThreshold = [UInt8](repeating: 0x5A, count: threshold)
        store("small", small)
        store("large", large)
        store("edge", atThreshold)
        store("below", [UInt8](repeating: 1, count: threshold - 1))
        handle("GET /api/get?key=small HTTP/1.1\r\nHost: t\r\n\r\n")
        handle("GET /api/get?key=large HTTP/1.1\r\nHost: t\r\n\r\n")
        handle("GET /api/get?key=small HTTP/1.1\r\nHost: t\r\n\r\n")
        handle("GET /v1/cache/g/large HTTP/1.1\r\nHost: t\r\n\r\n")
        handle("HEAD /v1/cache/g/large HTTP/1.1\r\nHost: t\r\n\r\n")
        handle("GET /v1/cache/g/edge HTTP/1.1\r\nHost: t\r\n\r\n")
        handle("GET /api/get?key=below HTTP/1.1\r\nHost: t\r\n\r\n")
        handle("GET /v1/cache/g/small HTTP/1.1\r\nHost: t\r\n\r\n")

        XCTAssertEqual(writer.borrowed.count, 3, "the two large values and the one at the threshold; HEAD has none")
        XCTAssertEqual(writer.borrowed.map(\.bytes.count), [large.count, large.count, threshold])
        XCTAssertEqual(writer.pendingCount, pending().count, "borrowed bytes count toward the output bounds")
        let answers = responses(pending(), heads: [4])
        XCTAssertEqual(answers.map(\.0), [200, 200, 200, 200, 200, 200, 200, 200])
        // XCTAssertTrue, not XCTAssertEqual: a failure would print megabytes.
        XCTAssertTrue(answers.map(\.1) == [
            Array("value=630\n".utf8), Array("value=".utf8) + large + [10], Array("value=630\n".utf8), large, [],
            atThreshold, Array("value=".utf8) + [UInt8](repeating: 1, count: threshold - 1) + [10], small,
        ])
    }

    func testNotModifiedAndHeadBorrowNothing() {
        store("large", large)
        let etag = group.withFreshValue(forKey: UnsafeRawBufferPointer(start: "large", count: 5)) { $0.etag }!
        EntityTag.withQuoted(etag) { quoted in
            handle("GET /v1/cache/g/large HTTP/1.1\r\nHost: t\r\nIf-None-Match: \(String(decoding: quoted, as: UTF8.self))\r\n\r\n")
        }
        handle("HEAD /api/get?key=large HTTP/1.1\r\nHost: t\r\n\r\n")
        XCTAssertTrue(writer.borrowed.isEmpty)
        XCTAssertEqual(group.pinnedBlocks, 0, "no write holds the entry")
        XCTAssertEqual(responses(pending(), heads: [1]).map(\.0), [304, 200])
    }

    func testTheEntryStaysPinnedUntilTheAnswerIsSentOrDropped() {
        for dropped in [false, true] {
            store("large", large)
            handle("GET /v1/cache/g/large HTTP/1.1\r\nHost: t\r\n\r\n")
            XCTAssertEqual(group.pinnedBlocks, 1)
            // A pipelined request in the same batch deletes the entry before the batch is sent.
            XCTAssertTrue(group.delete(key: CacheKey("large")))
            XCTAssertEqual(group.pinnedOrphanBytes, 8 + 5 + large.count, "the entry is gone, its block is not")
            XCTAssertTrue(responses(pending()).map(\.1) == [large], "the answer still holds the value it began with")
            if dropped { writer.discard() } else { writer.sentPending() }
            XCTAssertEqual(group.pinnedBlocks, 0, "released once sent (or dropped): dropped=\(dropped)")
            XCTAssertEqual(group.pinnedOrphanBytes, 0)
            writer.discard()
        }
    }

    // MARK: the write queue's splice

    /// What the kernel did not take, for every split point: the rest keeps the order, copies only the owned
    /// parts, and points into the borrowed memory for the rest of a borrowed part.
    func testSpliceKeepsOrderForEveryPartTheKernelTakes() {
        let owned = Array("HEAD1value=|\nHEAD2|HEAD3".utf8)
        let first = [UInt8](repeating: 0xA1, count: 300)
        let second = [UInt8](repeating: 0xB2, count: 200)
        let keeper = NSObject()
        owned.withUnsafeBytes { o in
            first.withUnsafeBytes { f in
                second.withUnsafeBytes { s in
                    let borrowed = [BorrowedBytes(offset: 11, bytes: f, keeper: keeper),
                                    BorrowedBytes(offset: 19, bytes: s, keeper: keeper),
                                    BorrowedBytes(offset: 19, bytes: UnsafeRawBufferPointer(start: nil, count: 0),
                                                  keeper: keeper)]
                    let whole = flatten(o, borrowed)
                    XCTAssertTrue(whole == Array(owned[..<11]) + first + Array(owned[11..<19]) + second
                                    + Array(owned[19...]))
                    for skip in [0, 5, 11, 12, 150, 311, 312, 319, 320, 519, 520, 523, whole.count] {
                        var buffer = ByteBuffer(capacity: 16)
                        var rest: [BorrowedBytes] = []
                        BorrowedBytes.splice(o, borrowed, skipping: skip, into: &buffer, &rest)
                        XCTAssertTrue(flatten(buffer.readable, rest) == Array(whole[skip...]), "skip \(skip)")
                        XCTAssertEqual(buffer.count + rest.reduce(0) { $0 + $1.bytes.count }, whole.count - skip)
                        for part in rest {
                            let inFirst = part.bytes.baseAddress! >= f.baseAddress! && part.bytes.baseAddress!
                                < f.baseAddress! + f.count
                            let inSecond = part.bytes.baseAddress! >= s.baseAddress! && part.bytes.baseAddress!
                                < s.baseAddress! + s.count
                            XCTAssertTrue(inFirst || inSecond, "skip \(skip): borrowed bytes are not copied")
                        }
                    }
                }
            }
        }
    }
}

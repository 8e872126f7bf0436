import XCTest

@testable import SpringCacheUV

final class EtcdWatchStreamSplitterTests: XCTestCase {
    /// A real stream body (etcd 3.4.23, `curl -sN -X POST $E/v3/watch`), one line per response.
    static let stream = EtcdGatewayTests.watchLines.joined(separator: "\n") + "\n"

    private func split(_ bytes: [UInt8], chunkSizes: () -> Int) throws -> [[UInt8]] {
        var splitter = WatchStreamSplitter()
        var lines: [[UInt8]] = []
        var i = 0
        while i < bytes.count {
            let n = min(chunkSizes(), bytes.count - i)
            lines += try splitter.append(Array(bytes[i..<i + n]))
            i += n
        }
        if let last = splitter.finish() { lines.append(last) }
        return lines
    }

    func testByteAtATimeAndRandomChunksGiveTheSameLines() throws {
        let bytes = Array(Self.stream.utf8)
        let expected = EtcdGatewayTests.watchLines.map { Array($0.utf8) }
        XCTAssertEqual(try split(bytes) { bytes.count }, expected)
        XCTAssertEqual(try split(bytes) { 1 }, expected)
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            XCTAssertEqual(try split(bytes) { Int.random(in: 1...64, using: &generator) }, expected)
        }
    }

    func testLineEndingsAndEmptyLines() throws {
        var splitter = WatchStreamSplitter()
        XCTAssertEqual(try splitter.append(Array("a\r\n\n\r\nb".utf8)), [Array("a".utf8)])
        XCTAssertEqual(splitter.pendingByteCount, 1)
        XCTAssertEqual(try splitter.append(Array("c\n".utf8)), [Array("bc".utf8)])
        XCTAssertNil(splitter.finish())
        XCTAssertEqual(try splitter.append(Array("tail".utf8)), [])
        XCTAssertEqual(splitter.finish(), Array("tail".utf8))
    }

    func testLongLinesAreRefused() {
        var splitter = WatchStreamSplitter(maxLineBytes: 8)
        XCTAssertNoThrow(try splitter.append(Array("12345678\n".utf8)))
        XCTAssertNoThrow(try splitter.append(Array("1234".utf8)))
        XCTAssertThrowsError(try splitter.append(Array("56789".utf8)))
    }
}

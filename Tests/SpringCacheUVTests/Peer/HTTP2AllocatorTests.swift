import CNGHTTP2
import XCTest

@testable import SpringCacheUV

/// The free-list allocator nghttp2 is given: blocks come back for reuse, contents survive realloc, calloc
/// zeroes, and large blocks bypass the pool.
final class HTTP2AllocatorTests: XCTestCase {
    func testAFreedBlockIsReusedForTheSameSize() {
        let a = HTTP2Allocator()
        let first = a.allocate(100)
        a.deallocate(first)
        let second = a.allocate(120)  // same size class (128)
        XCTAssertEqual(first, second)
        XCTAssertEqual(a.mallocs, 1)
        a.deallocate(second)
        XCTAssertEqual(a.blocksInUse, 0)
    }

    func testReallocKeepsTheBytesAndCallocZeroes() {
        let a = HTTP2Allocator()
        var mem = a.nghttp2Mem
        let p = mem.calloc(10, 8, mem.mem_user_data)!
        XCTAssertTrue(UnsafeRawBufferPointer(start: p, count: 80).allSatisfy { $0 == 0 })
        for i in 0..<80 { p.storeBytes(of: UInt8(i), toByteOffset: i, as: UInt8.self) }
        let grown = mem.realloc(p, 20_000, mem.mem_user_data)!  // beyond the pooled sizes
        XCTAssertEqual(Array(UnsafeRawBufferPointer(start: grown, count: 80)), (0..<80).map { UInt8($0) })
        mem.free(grown, mem.mem_user_data)
        mem.free(nil, mem.mem_user_data)
        XCTAssertEqual(a.blocksInUse, 0)
    }

    func testTheFreeListsAreBounded() {
        let a = HTTP2Allocator()
        let blocks = (0..<(HTTP2Allocator.maxFreeBlocksPerSize + 10)).map { _ in a.allocate(64) }
        for b in blocks { a.deallocate(b) }
        let again = (0..<(HTTP2Allocator.maxFreeBlocksPerSize + 10)).map { _ in a.allocate(64) }
        XCTAssertEqual(a.mallocs, blocks.count + 10, "only maxFreeBlocksPerSize were kept")
        for b in again { a.deallocate(b) }
    }
}

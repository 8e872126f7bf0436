import CNGHTTP2
#if canImport(Glibc)
import Glibc
#endif

/// The memory nghttp2 uses for one session: small blocks come from per-size free lists instead of malloc.
///
/// Why: every stream makes nghttp2 allocate and free the same few objects (the stream, its outbound HEADERS
/// and DATA items, header buffers); with one session carrying every remote hit of a peer, that was about a
/// third of the allocations of a remote hit. Blocks up to `largestPooledBytes` are rounded up to a power of
/// two and kept on that size's free list when freed (at most `maxFreeBlocksPerSize` of each, so an idle
/// session holds a bounded amount); larger ones go to malloc. One allocator per session, so no locking:
/// a session is used by one loop.
///
/// Each block starts with a 16-byte header (keeping the 16-byte alignment malloc gives) that holds its size
/// class, or `unpooled` for a malloc'd block.
final class HTTP2Allocator {
    static let smallestPooledShift = 5  // 32 bytes
    static let largestPooledShift = 13  // 8 KiB
    static var largestPooledBytes: Int { 1 << largestPooledShift }
    static let maxFreeBlocksPerSize = 64
    private static let headerBytes = 16
    private static let unpooled = -1

    /// Free blocks of each size class, linked through their first word (after the header), and how many.
    /// Why raw memory and not arrays or stored counters: this runs several times per stream, and every
    /// access to a class's stored property costs a dynamic exclusivity check (about as much as malloc).
    private let heads: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    private let counts: UnsafeMutablePointer<Int>
    /// [blocks in use, blocks that came from malloc].
    private let tallies: UnsafeMutablePointer<Int>
    private static let classes = largestPooledShift - smallestPooledShift + 1

    /// Blocks handed out and not freed (for tests: everything nghttp2 took is given back).
    var blocksInUse: Int { tallies[0] }
    /// Blocks that came from malloc (a pooled one counts once, however often it is reused).
    var mallocs: Int { tallies[1] }

    init() {
        heads = .allocate(capacity: HTTP2Allocator.classes)
        heads.initialize(repeating: nil, count: HTTP2Allocator.classes)
        counts = .allocate(capacity: HTTP2Allocator.classes)
        counts.initialize(repeating: 0, count: HTTP2Allocator.classes)
        tallies = .allocate(capacity: 2)
        tallies.initialize(repeating: 0, count: 2)
    }

    deinit {
        for c in 0..<HTTP2Allocator.classes {
            var block = heads[c]
            while let b = block {
                block = b.load(fromByteOffset: HTTP2Allocator.headerBytes, as: UnsafeMutableRawPointer?.self)
                Glibc.free(b)
            }
        }
        heads.deallocate()
        counts.deallocate()
        tallies.deallocate()
    }

    /// The size class holding `size` bytes, or nil when it is too large to pool.
    private static func sizeClass(_ size: Int) -> Int? {
        guard size <= largestPooledBytes else { return nil }
        let shift = max(smallestPooledShift, Int.bitWidth - max(size - 1, 1).leadingZeroBitCount)
        return shift - smallestPooledShift
    }

    private static func capacity(ofClass c: Int) -> Int { 1 << (c + smallestPooledShift) }

    func allocate(_ size: Int) -> UnsafeMutableRawPointer? {
        let block: UnsafeMutableRawPointer
        if let c = HTTP2Allocator.sizeClass(size) {
            if let head = heads[c] {
                heads[c] = head.load(fromByteOffset: HTTP2Allocator.headerBytes, as: UnsafeMutableRawPointer?.self)
                counts[c] -= 1
                block = head
            } else {
                guard let b = malloc(HTTP2Allocator.headerBytes + HTTP2Allocator.capacity(ofClass: c)) else {
                    return nil
                }
                tallies[1] += 1
                block = b
            }
            block.storeBytes(of: c, as: Int.self)
        } else {
            guard let b = malloc(HTTP2Allocator.headerBytes + size) else { return nil }
            tallies[1] += 1
            block = b
            block.storeBytes(of: HTTP2Allocator.unpooled, as: Int.self)
            block.storeBytes(of: size, toByteOffset: MemoryLayout<Int>.size, as: Int.self)
        }
        tallies[0] += 1
        return block + HTTP2Allocator.headerBytes
    }

    func deallocate(_ pointer: UnsafeMutableRawPointer?) {
        guard let pointer else { return }
        tallies[0] -= 1
        let block = pointer - HTTP2Allocator.headerBytes
        let c = block.load(as: Int.self)
        guard c != HTTP2Allocator.unpooled, counts[c] < HTTP2Allocator.maxFreeBlocksPerSize else {
            Glibc.free(block)
            return
        }
        pointer.storeBytes(of: heads[c], as: UnsafeMutableRawPointer?.self)
        heads[c] = block
        counts[c] += 1
    }

    func reallocate(_ pointer: UnsafeMutableRawPointer?, _ size: Int) -> UnsafeMutableRawPointer? {
        guard let pointer else { return allocate(size) }
        let block = pointer - HTTP2Allocator.headerBytes
        let c = block.load(as: Int.self)
        let usable = c == HTTP2Allocator.unpooled
            ? block.load(fromByteOffset: MemoryLayout<Int>.size, as: Int.self) : HTTP2Allocator.capacity(ofClass: c)
        if size <= usable && c != HTTP2Allocator.unpooled { return pointer }
        guard let moved = allocate(size) else { return nil }
        moved.copyMemory(from: pointer, byteCount: min(usable, size))
        deallocate(pointer)
        return moved
    }

    /// The `nghttp2_mem` for `nghttp2_session_*_new3`; `self` must outlive the session (the session owns it).
    var nghttp2Mem: nghttp2_mem {
        nghttp2_mem(
            mem_user_data: Unmanaged.passUnretained(self).toOpaque(),
            malloc: { size, user in HTTP2Allocator.from(user).allocate(size) },
            free: { pointer, user in HTTP2Allocator.from(user).deallocate(pointer) },
            calloc: { count, size, user in
                let (bytes, overflow) = count.multipliedReportingOverflow(by: size)
                guard !overflow, let p = HTTP2Allocator.from(user).allocate(bytes) else { return nil }
                memset(p, 0, bytes)
                return p
            },
            realloc: { pointer, size, user in HTTP2Allocator.from(user).reallocate(pointer, size) })
    }

    private static func from(_ user: UnsafeMutableRawPointer?) -> HTTP2Allocator {
        Unmanaged<HTTP2Allocator>.fromOpaque(user!).takeUnretainedValue()
    }
}

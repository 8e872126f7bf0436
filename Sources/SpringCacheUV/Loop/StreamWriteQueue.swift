import CLibUV

/// The write side of one libuv stream, shared by HTTP/1.1 and HTTP/2 connections.
///
/// Bytes go out with `uv_try_write` first; only what the kernel does not take is copied into `writing` and
/// written with `uv_write`. Bytes produced while that write is in flight wait in `queued`, which becomes the
/// next write when the first completes (two buffers swapping, so neither grows while libuv reads from it).
/// The owner keeps the `uv_write_t` alive (it owns this struct) and calls `completed()` from its write callback.
///
/// Borrowed bytes (a large cached value) are sent from where they live, never copied: the kernel gets them as
/// iovecs between the copied bytes, and what it does not take waits as a reference beside the copied bytes,
/// its keeper retained until the write that sends it completes.
struct StreamWriteQueue: ~Copyable {
    private var writing: ByteBuffer?
    private var queued: ByteBuffer?
    /// The borrowed parts of `writing` and `queued`, in order, with their places among the copied bytes.
    private var writingBorrowed: [BorrowedBytes] = []
    private var queuedBorrowed: [BorrowedBytes] = []
    /// Bytes in `writingBorrowed` and `queuedBorrowed`: the part of `backlog` that is references, not copies.
    private(set) var borrowedBacklog = 0
    /// The iovecs of the last write with borrowed parts (libuv copies them; kept only to reuse the array).
    private var iovecs: [uv_buf_t] = []
    private var request: UnsafeMutablePointer<uv_write_t>?
    private(set) var inFlight = false

    /// Buffers larger than this are freed once drained: one large answer must not stay with an idle connection.
    static let keepCapacity = 64 << 10

    /// Bytes accepted but not yet taken by the kernel.
    var backlog: Int { writing.byteCount + queued.byteCount + borrowedBacklog }

    /// Sends `bytes`; returns a libuv error (< 0) if the stream failed, else 0. `owner` goes into the write
    /// request's data for `callback`, which must call `completed()` and then `startQueued`.
    mutating func send(_ bytes: UnsafeRawBufferPointer, on stream: UnsafeMutablePointer<uv_stream_t>,
                       owner: UnsafeMutableRawPointer, callback: uv_write_cb) -> Int32 {
        guard bytes.count > 0 else { return 0 }
        if inFlight {
            if queued.bytesBase == nil { queued = ByteBuffer(capacity: max(bytes.count, 4096)) }
            queued!.append(bytes)
            return 0
        }
        var buf = uv_buf_init(UnsafeMutableRawPointer(mutating: bytes.baseAddress!).assumingMemoryBound(to: CChar.self),
                              UInt32(bytes.count))
        let n = Int(uv_try_write(stream, &buf, 1))
        if n == bytes.count { return 0 }
        if n < 0 && n != Int(UV_EAGAIN.rawValue) { return Int32(n) }
        let written = max(n, 0)
        if writing.bytesBase == nil { writing = ByteBuffer(capacity: max(bytes.count - written, 4096)) }
        writing!.count = 0
        writing!.append(UnsafeRawBufferPointer(rebasing: bytes[written...]))
        return start(on: stream, owner: owner, callback: callback)
    }

    /// Sends `bytes` with `borrowed` spliced in at their offsets (ascending) — one `uv_try_write` with all parts,
    /// then one `uv_write` of what is left. Borrowed bytes are never copied; their keepers are retained until sent.
    mutating func send(_ bytes: UnsafeRawBufferPointer, borrowed: [BorrowedBytes],
                       on stream: UnsafeMutablePointer<uv_stream_t>, owner: UnsafeMutableRawPointer,
                       callback: uv_write_cb) -> Int32 {
        if borrowed.isEmpty { return send(bytes, on: stream, owner: owner, callback: callback) }
        if inFlight {
            if queued.bytesBase == nil { queued = ByteBuffer(capacity: max(bytes.count, 4096)) }
            BorrowedBytes.splice(bytes, borrowed, skipping: 0, into: &queued!, &queuedBorrowed)
            borrowedBacklog += borrowed.reduce(0) { $0 + $1.bytes.count }
            return 0
        }
        BorrowedBytes.iovecs(bytes, borrowed, into: &iovecs)
        let total = iovecs.reduce(0) { $0 + Int($1.len) }
        let n = iovecs.withUnsafeMutableBufferPointer { Int(uv_try_write(stream, $0.baseAddress, UInt32($0.count))) }
        if n == total { return 0 }
        if n < 0 && n != Int(UV_EAGAIN.rawValue) { return Int32(n) }
        if writing.bytesBase == nil { writing = ByteBuffer(capacity: max(bytes.count, 4096)) }
        writing!.count = 0
        writingBorrowed.removeAll(keepingCapacity: true)
        BorrowedBytes.splice(bytes, borrowed, skipping: max(n, 0), into: &writing!, &writingBorrowed)
        borrowedBacklog += writingBorrowed.reduce(0) { $0 + $1.bytes.count }
        return start(on: stream, owner: owner, callback: callback)
    }

    /// The write in flight has finished (its callback ran): borrowed bytes it sent are released.
    mutating func completed() {
        inFlight = false
        writing?.count = 0
        borrowedBacklog -= writingBorrowed.reduce(0) { $0 + $1.bytes.count }
        writingBorrowed.removeAll(keepingCapacity: true)
    }

    /// Starts writing what was queued meanwhile: nil if nothing was (then oversized buffers are freed),
    /// else the status of the new write (< 0: the stream failed).
    mutating func startQueued(on stream: UnsafeMutablePointer<uv_stream_t>, owner: UnsafeMutableRawPointer,
                              callback: uv_write_cb) -> Int32? {
        if queued.byteCount > 0 || !queuedBorrowed.isEmpty {
            swap(&writing, &queued)
            swap(&writingBorrowed, &queuedBorrowed)
            return start(on: stream, owner: owner, callback: callback)
        }
        if writing.byteCapacity > StreamWriteQueue.keepCapacity { writing = nil }
        if queued.byteCapacity > StreamWriteQueue.keepCapacity { queued = nil }
        return nil
    }

    private mutating func start(on stream: UnsafeMutablePointer<uv_stream_t>, owner: UnsafeMutableRawPointer,
                                callback: uv_write_cb) -> Int32 {
        let count = writing.byteCount
        if request == nil { request = .allocate(capacity: 1) }
        sc_uv_req_set_data(request!, owner)
        let status: Int32
        if !writingBorrowed.isEmpty {
            let owned = UnsafeRawBufferPointer(start: writing.bytesBase, count: count)
            BorrowedBytes.iovecs(owned, writingBorrowed, into: &iovecs)
            // libuv copies the iovecs into the request, so the array may change once this returns.
            status = iovecs.withUnsafeMutableBufferPointer {
                uv_write(request!, stream, $0.baseAddress, UInt32($0.count), callback)
            }
        } else {
            guard count > 0, let base = writing.bytesBase else { return 0 }
            var buf = uv_buf_init(UnsafeMutableRawPointer(base).assumingMemoryBound(to: CChar.self), UInt32(count))
            status = uv_write(request!, stream, &buf, 1, callback)
        }
        if status == 0 { inFlight = true }
        return status
    }

    /// Frees the buffers and the request; only after the stream's close callback.
    mutating func deallocate() {
        request?.deallocate()
        writing = nil
        queued = nil
        request = nil
        writingBorrowed = []
        queuedBorrowed = []
        borrowedBacklog = 0
    }
}

/// Bytes a write sends from memory it does not own — a cached value's block — and what keeps them valid.
struct BorrowedBytes {
    /// Their place in the owned bytes they go with: after the first `offset` of them.
    var offset: Int
    var bytes: UnsafeRawBufferPointer
    /// Keeps `bytes` valid while retained (a `ValuePin`); released once they are written or dropped.
    var keeper: AnyObject

    /// The parts of `owned` with `borrowed` spliced in, in order, as iovecs into `out` (empty parts left out).
    static func iovecs(_ owned: UnsafeRawBufferPointer, _ borrowed: [BorrowedBytes], into out: inout [uv_buf_t]) {
        out.removeAll(keepingCapacity: true)
        forEachPart(owned, borrowed) { part, _ in
            out.append(uv_buf_init(UnsafeMutableRawPointer(mutating: part.baseAddress!)
                                    .assumingMemoryBound(to: CChar.self), UInt32(part.count)))
        }
    }

    /// Appends what is left of `owned` with `borrowed` spliced in after the first `skip` bytes: owned parts are
    /// copied into `buffer`, borrowed parts are recorded in `list` at their place in `buffer` (not copied).
    static func splice(_ owned: UnsafeRawBufferPointer, _ borrowed: [BorrowedBytes], skipping skip: Int,
                       into buffer: inout ByteBuffer, _ list: inout [BorrowedBytes]) {
        var position = 0
        forEachPart(owned, borrowed) { part, keeper in
            let start = max(skip - position, 0)
            position += part.count
            guard start < part.count else { return }
            let rest = UnsafeRawBufferPointer(rebasing: part[start...])
            if let keeper {
                list.append(BorrowedBytes(offset: buffer.count, bytes: rest, keeper: keeper))
            } else {
                buffer.append(rest)
            }
        }
    }

    /// Calls `body` with each non-empty part in order: owned parts with a nil keeper, borrowed ones with theirs.
    private static func forEachPart(_ owned: UnsafeRawBufferPointer, _ borrowed: [BorrowedBytes],
                                    _ body: (UnsafeRawBufferPointer, AnyObject?) -> Void) {
        var from = 0
        for b in borrowed {
            precondition(b.offset >= from && b.offset <= owned.count, "borrowed bytes out of order")
            if b.offset > from { body(UnsafeRawBufferPointer(rebasing: owned[from..<b.offset]), nil) }
            if b.bytes.count > 0 { body(b.bytes, b.keeper) }
            from = b.offset
        }
        if owned.count > from { body(UnsafeRawBufferPointer(rebasing: owned[from...]), nil) }
    }
}

import CLibUV

/// The write side of one libuv stream, shared by HTTP/1.1 and HTTP/2 connections.
///
/// Bytes go out with `uv_try_write` first; only what the kernel does not take is copied into `writing` and
/// written with `uv_write`. Bytes produced while that write is in flight wait in `queued`, which becomes the
/// next write when the first completes (two buffers swapping, so neither grows while libuv reads from it).
/// The owner keeps the `uv_write_t` alive (it owns this struct) and calls `completed()` from its write callback.
struct StreamWriteQueue: ~Copyable {
    private var writing: ByteBuffer?
    private var queued: ByteBuffer?
    private var request: UnsafeMutablePointer<uv_write_t>?
    private(set) var inFlight = false

    /// Buffers larger than this are freed once drained: one large answer must not stay with an idle connection.
    static let keepCapacity = 64 << 10

    /// Bytes accepted but not yet taken by the kernel.
    var backlog: Int { writing.byteCount + queued.byteCount }

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

    /// The write in flight has finished (its callback ran).
    mutating func completed() {
        inFlight = false
        writing?.count = 0
    }

    /// Starts writing what was queued meanwhile: nil if nothing was (then oversized buffers are freed),
    /// else the status of the new write (< 0: the stream failed).
    mutating func startQueued(on stream: UnsafeMutablePointer<uv_stream_t>, owner: UnsafeMutableRawPointer,
                              callback: uv_write_cb) -> Int32? {
        if queued.byteCount > 0 {
            swap(&writing, &queued)
            return start(on: stream, owner: owner, callback: callback)
        }
        if writing.byteCapacity > StreamWriteQueue.keepCapacity { writing = nil }
        if queued.byteCapacity > StreamWriteQueue.keepCapacity { queued = nil }
        return nil
    }

    private mutating func start(on stream: UnsafeMutablePointer<uv_stream_t>, owner: UnsafeMutableRawPointer,
                                callback: uv_write_cb) -> Int32 {
        let count = writing.byteCount
        guard count > 0, let base = writing.bytesBase else { return 0 }
        if request == nil { request = .allocate(capacity: 1) }
        sc_uv_req_set_data(request!, owner)
        var buf = uv_buf_init(UnsafeMutableRawPointer(base).assumingMemoryBound(to: CChar.self), UInt32(count))
        let status = uv_write(request!, stream, &buf, 1, callback)
        if status == 0 { inFlight = true }
        return status
    }

    /// Frees the buffers and the request; only after the stream's close callback.
    mutating func deallocate() {
        request?.deallocate()
        writing = nil
        queued = nil
        request = nil
    }
}

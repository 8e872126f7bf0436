import CLibUV

/// The write side of one libuv stream, shared by HTTP/1.1 and HTTP/2 connections.
///
/// Bytes go out with `uv_try_write` first; only what the kernel does not take is copied into `writing` and
/// written with `uv_write`. Bytes produced while that write is in flight wait in `queued`, which becomes the
/// next write when the first completes (two buffers swapping, so neither grows while libuv reads from it).
/// The owner keeps the `uv_write_t` alive (it owns this struct) and calls `completed()` from its write callback.
struct StreamWriteQueue {
    private var writing: ByteBuffer?
    private var queued: ByteBuffer?
    private var request: UnsafeMutablePointer<uv_write_t>?
    private(set) var inFlight = false

    /// Buffers larger than this are freed once drained: one large answer must not stay with an idle connection.
    static let keepCapacity = 64 << 10

    /// Bytes accepted but not yet taken by the kernel.
    var backlog: Int { (writing?.count ?? 0) + (queued?.count ?? 0) }

    /// Sends `bytes`; returns a libuv error (< 0) if the stream failed, else 0. `owner` goes into the write
    /// request's data for `callback`, which must call `completed()` and then `startQueued`.
    mutating func send(_ bytes: UnsafeRawBufferPointer, on stream: UnsafeMutablePointer<uv_stream_t>,
                       owner: UnsafeMutableRawPointer, callback: uv_write_cb) -> Int32 {
        guard bytes.count > 0 else { return 0 }
        if inFlight {
            var q = queued ?? ByteBuffer(capacity: max(bytes.count, 4096))
            q.append(bytes)
            queued = q
            return 0
        }
        var buf = uv_buf_init(UnsafeMutableRawPointer(mutating: bytes.baseAddress!).assumingMemoryBound(to: CChar.self),
                              UInt32(bytes.count))
        let n = Int(uv_try_write(stream, &buf, 1))
        if n == bytes.count { return 0 }
        if n < 0 && n != Int(UV_EAGAIN.rawValue) { return Int32(n) }
        let written = max(n, 0)
        var w = writing ?? ByteBuffer(capacity: max(bytes.count - written, 4096))
        w.count = 0
        w.append(UnsafeRawBufferPointer(rebasing: bytes[written...]))
        writing = w
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
        if let q = queued, q.count > 0 {
            let drained = writing
            writing = q
            queued = drained
            return start(on: stream, owner: owner, callback: callback)
        }
        if let w = writing, w.capacity > StreamWriteQueue.keepCapacity { var w = w; w.deallocate(); writing = nil }
        if let q = queued, q.capacity > StreamWriteQueue.keepCapacity { var q = q; q.deallocate(); queued = nil }
        return nil
    }

    private mutating func start(on stream: UnsafeMutablePointer<uv_stream_t>, owner: UnsafeMutableRawPointer,
                                callback: uv_write_cb) -> Int32 {
        guard let w = writing, w.count > 0 else { return 0 }
        if request == nil { request = .allocate(capacity: 1) }
        sc_uv_req_set_data(request!, owner)
        var buf = uv_buf_init(UnsafeMutableRawPointer(w.base).assumingMemoryBound(to: CChar.self), UInt32(w.count))
        let status = uv_write(request!, stream, &buf, 1, callback)
        if status == 0 { inFlight = true }
        return status
    }

    /// Frees the buffers and the request; only after the stream's close callback.
    mutating func deallocate() {
        writing?.deallocate()
        queued?.deallocate()
        request?.deallocate()
        writing = nil
        queued = nil
        request = nil
    }
}

import CLibUV

/// Buffers that an owner (a server, or one client) shares among its HTTP/2 connections.
///
/// Why shared: every read lands in `read` and nghttp2 consumes all of it inside `mem_recv` (it keeps what
/// it needs), and `mem_send` output is gathered in `output` and written with one `uv_try_write`; only what
/// the kernel does not take at once is copied into the connection's own queue. Both are empty at every
/// callback boundary, so an idle connection holds no buffers.
final class HTTP2IOBuffers {
    let read: UnsafeMutablePointer<UInt8>
    let readCapacity: Int
    var output = ByteBuffer(capacity: 64 << 10)
    /// Output of all the owner's connections waiting for their sockets, and the most there may be: a
    /// connection with output already waiting stops pulling more from nghttp2 while the total is at the bound.
    var queuedOutputBytes = 0
    var maxQueuedOutputBytes = Int.max

    init(readCapacity: Int = 64 << 10) {
        self.readCapacity = readCapacity
        read = .allocate(capacity: readCapacity)
    }

    deinit {
        read.deallocate()
    }
}

/// The thin libuv driver of one TCP connection carrying HTTP/2: the loop owns the socket, the
/// `HTTP2Session` owns the protocol, and this object performs what the session asks (write, close).
///
/// Every read is handed to `session.receive`; after it, `flush()` pulls the session's output into one
/// write. Subclasses (`GRPCServerConnection`, `GRPCClientConnection`) add accepting or connecting and tell
/// their owner when the connection closes.
///
/// Lifecycle (libuv's): the object retains itself in the TCP handle's `data` from `init` until the close
/// callback, which is the only place it is released; the session goes with it, so nghttp2 is never freed
/// while one of its callbacks is running. A connection that must die is closed with `close(reason:)`
/// (at once) or `closeWhenFlushed(reason:)` (after the bytes already produced, e.g. a GOAWAY, are written).
class HTTP2Connection: HTTP2SessionDriver {
    let loop: EventLoop
    let tcp: UnsafeMutablePointer<uv_tcp_t>
    let buffers: HTTP2IOBuffers
    let maxOutputBytes: Int
    let session: HTTP2Session

    /// Output the kernel has not taken yet.
    private var output = StreamWriteQueue()
    var writeInFlight: Bool { output.inFlight }
    /// `output.backlog` as last added to `buffers.queuedOutputBytes`.
    private var accountedBacklog = 0

    /// Whether the owner wants input (set by `startReading`); `reading` is whether uv is reading now,
    /// which is false while output is backed up (backpressure).
    private var readWanted = false
    private var reading = false
    private(set) var isClosing = false

    /// Takes the handle (initialized by the caller with `uv_tcp_init`) and the session; owns both from now
    /// on, also when the session could not create nghttp2's (then the owner closes at once).
    init(loop: EventLoop, tcp: UnsafeMutablePointer<uv_tcp_t>, buffers: HTTP2IOBuffers, session: HTTP2Session,
         maxOutputBytes: Int) {
        self.loop = loop
        self.tcp = tcp
        self.buffers = buffers
        self.maxOutputBytes = maxOutputBytes
        self.session = session
        sc_uv_handle_set_data(tcp, Unmanaged.passRetained(self).toOpaque())
        uv_tcp_nodelay(tcp, 1)
        session.driver = self
    }

    deinit {
        precondition(isClosing, "HTTP2Connection released without close()")
        output.deallocate()
        tcp.deallocate()
    }

    var stream: UnsafeMutablePointer<uv_stream_t> {
        UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_stream_t.self)
    }

    private static func owner(_ handle: UnsafeRawPointer) -> HTTP2Connection {
        Unmanaged<HTTP2Connection>.fromOpaque(sc_uv_handle_get_data(handle)!).takeUnretainedValue()
    }

    // MARK: HTTP2SessionDriver

    /// Output appeared outside a read (default: flush now; owners that batch override this).
    func sessionWantsFlush() { flush() }

    var peerDescription: String { tcpPeerAddress(tcp) }

    func closeConnection(reason: String) { close(reason: reason) }

    /// From the uv close callback, just before the object is released.
    func connectionDidClose() {}

    // MARK: reading

    /// Starts (or resumes) reading. Input is processed as it arrives; output is flushed after each read.
    func startReading() {
        readWanted = true
        resumeReading()
    }

    private func resumeReading() {
        guard readWanted, !reading, !isClosing, !session.isFinishing else { return }
        let status = uv_read_start(stream, { handle, _, buf in
            let c = HTTP2Connection.owner(handle!)
            buf!.pointee = uv_buf_init(UnsafeMutableRawPointer(c.buffers.read).assumingMemoryBound(to: CChar.self),
                                       UInt32(c.buffers.readCapacity))
        }, { handle, nread, _ in
            HTTP2Connection.owner(handle!).didRead(nread)
        })
        if status < 0 {
            close(reason: "\(UVError(status, "uv_read_start"))")
            return
        }
        reading = true
    }

    private func pauseReading() {
        guard reading else { return }
        reading = false
        uv_read_stop(stream)
    }

    private func didRead(_ nread: Int) {
        if nread == 0 { return }
        guard !isClosing else { return }
        if nread < 0 {
            let reason = nread == Int(UV_EOF.rawValue) ? "connection closed by peer"
                : "read failed: \(String(cString: uv_strerror(Int32(nread))))"
            close(reason: reason)
            return
        }
        perform(session.receive(UnsafeRawBufferPointer(start: buffers.read, count: nread), now: loop.clock.nowMillis))
    }

    /// Does what the session asked for; `.proceed` means pull its output.
    func perform(_ action: HTTP2Action) {
        switch action {
        case .proceed: flush()
        case .closeWhenFlushed(let reason): closeWhenFlushed(reason: reason)
        case .close(let reason): close(reason: reason)
        }
    }

    // MARK: writing

    private static let writeCallback: uv_write_cb = { req, status in
        Unmanaged<HTTP2Connection>.fromOpaque(sc_uv_req_get_data(req!)!).takeUnretainedValue().didWrite(status)
    }

    /// Pulls what the session has to send into one write. Stops pulling while `maxOutputBytes` are already
    /// waiting for the socket, or the owner's connections together hold their bound (the session keeps
    /// the rest), and stops reading until the peer reads: a peer that does not read its answers cannot
    /// make us buffer more.
    func flush() {
        guard !isClosing, !session.processingInput else { return }
        var action = HTTP2Action.proceed
        while true {
            buffers.output.count = 0
            let backlog = output.backlog
            var budget = maxOutputBytes - backlog
            if backlog > 0 { budget = min(budget, buffers.maxQueuedOutputBytes - buffers.queuedOutputBytes) }
            action = session.produceOutput(into: &buffers.output, budget: budget)
            let stoppedAtBudget = buffers.output.count >= budget
            if buffers.output.count > 0 { write() }
            // Why again: the budget stopped the pull with output left in nghttp2, and the kernel took the whole
            // write at once, so no write callback comes to pull the rest; nothing else would until the peer
            // sends (with several 1 MiB answers in flight it did not: the calls hung until --peer-timeout).
            guard stoppedAtBudget, action == .proceed, !isClosing, output.backlog == 0 else { break }
        }
        if case .close(let reason) = action {
            close(reason: reason)
            return
        }
        if isClosing { return }
        if session.isFinishing {
            pauseReading()
            if !writeInFlight { close(reason: "connection finished") }
            return
        }
        if output.backlog >= maxOutputBytes {
            pauseReading()
        } else {
            resumeReading()
        }
    }

    /// Writes `buffers.output`: `uv_try_write` first, and only the part the kernel does not take is copied.
    private func write() {
        defer { buffers.output.count = 0 }
        let status = output.send(buffers.output.readable, on: stream, owner: Unmanaged.passUnretained(self).toOpaque(),
                                 callback: HTTP2Connection.writeCallback)
        accountBacklog()
        if status < 0 { close(reason: "write failed: \(String(cString: uv_strerror(status)))") }
    }

    /// Keeps the owner's total of waiting output in step with this connection's, and tells the session
    /// whether output is waiting for the socket.
    private func accountBacklog() {
        let now = isClosing ? 0 : output.backlog
        buffers.queuedOutputBytes += now - accountedBacklog
        accountedBacklog = now
        session.writeInFlight = output.inFlight
    }

    private func didWrite(_ status: Int32) {
        output.completed()
        session.writeCompleted(now: loop.clock.nowMillis)
        defer { accountBacklog() }
        if isClosing { return }
        if status < 0 {
            close(reason: "write failed: \(String(cString: uv_strerror(status)))")
            return
        }
        if let next = output.startQueued(on: stream, owner: Unmanaged.passUnretained(self).toOpaque(),
                                         callback: HTTP2Connection.writeCallback) {
            if next < 0 { close(reason: "\(UVError(next, "uv_write"))") }
            return
        }
        // More may be waiting in nghttp2 (backpressure), and reading may resume.
        flush()
    }

    // MARK: closing

    /// Closes after what was already produced has been written (e.g. a GOAWAY); reads nothing more.
    func closeWhenFlushed(reason: String) {
        guard !isClosing else { return }
        if !session.isFinishing { _ = session.finish(reason: reason) }
        flush()
        if !isClosing && !writeInFlight { close(reason: reason) }
    }

    /// Closes now: pending writes are cancelled by libuv; the object is released in the close callback.
    func close(reason: String) {
        guard !isClosing else { return }
        isClosing = true
        session.closed(reason: reason)
        pauseReading()
        accountBacklog()
        uv_close(UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_handle_t.self)) { handle in
            let unmanaged = Unmanaged<HTTP2Connection>.fromOpaque(sc_uv_handle_get_data(handle!)!)
            unmanaged.takeUnretainedValue().connectionDidClose()
            unmanaged.release()
        }
    }
}

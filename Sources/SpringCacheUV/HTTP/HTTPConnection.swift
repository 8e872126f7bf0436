import CLibUV

/// One client connection: reads requests, hands them to the handler in order, writes their responses.
///
/// Lifecycle (libuv's): the object retains itself in the handle's `data` from `init` until the close
/// callback, which is the only place it is released and removed from the server. A connection that must
/// die is marked closing and freed from that callback, never in the middle of its own callback.
///
/// Ordering: requests are answered strictly in order. When a handler defers (a miss waiting for the
/// origin), processing stops until it finishes; pipelined requests behind it wait in `pendingInput`.
public final class HTTPConnection {
    unowned let server: HTTPServer
    let tcp: UnsafeMutablePointer<uv_tcp_t>
    var index = -1

    /// Deadline (loop ms) and what happens when it passes.
    var deadline: Int64 = .max
    private var deadlineKind = DeadlineKind.idle

    private var parser: HTTPParser
    /// Unprocessed input that did not fit in one read or waits behind a deferred request.
    private var pendingInput: ByteBuffer?
    /// Output the kernel has not taken yet.
    private var output = StreamWriteQueue()
    private var writeInFlight: Bool { output.inFlight }
    /// `output.backlog` as last added to `server.queuedOutputBytes`.
    private var accountedBacklog = 0
    /// When queued answers last moved to the socket (loop ms); `unreadTimeoutMillis` is measured from it.
    private(set) var lastWriteMillis: Int64 = 0
    /// Stopped with nothing queued because all connections together are at the hard cap; the server resumes it.
    var waitingForRoom = false
    /// Whether the kernel has ever taken a whole batch of this connection's answers at once: a client seen to
    /// read. Such connections are resumed first when room is made (`HTTPServer.makeRoom`), so connections that
    /// arrive in a flood and never read cannot push a reading client to the back of the queue.
    private(set) var answersTaken = false
    /// Bytes this connection has queued for its socket.
    var queuedBytes: Int { output.backlog }

    private var reading = false
    private var deferred = false
    private var closeAfterFlush = false
    private var draining = false
    private var lingering = false
    private var closing = false
    private var batchStart: UInt64 = 0
    /// With an access log: the deferred request's first line and start, logged when its answer is written.
    private var deferredRequestLine: [UInt8]?
    private var deferredStartNanos: UInt64 = 0
    /// The client's address as the access log writes it; looked up once, on the first logged request.
    private var remoteAddress: String?
    /// Where handlers write this connection's answers. It holds the connection too, so that a handler
    /// answering late keeps it alive; the cycle is broken when the socket's close callback runs.
    private(set) var writer: ResponseWriter!

    private enum DeadlineKind { case idle, request, linger }

    init(server: HTTPServer, tcp: UnsafeMutablePointer<uv_tcp_t>, now: Int64) {
        self.server = server
        self.tcp = tcp
        parser = HTTPParser(limits: server.config.limits)
        // The first request's clock starts at accept: a connection that sends nothing gets the header
        // timeout, not the idle one, so silent sockets cannot hold `--max-connections` for a minute each.
        deadlineKind = .request
        deadline = now + server.config.headerTimeoutMillis
        sc_uv_handle_set_data(tcp, Unmanaged.passRetained(self).toOpaque())
        uv_tcp_nodelay(tcp, 1)
        writer = ResponseWriter(connection: self)
    }

    deinit {
        precondition(closing, "HTTPConnection released without close()")
        output.deallocate()
        tcp.deallocate()
    }

    private var stream: UnsafeMutablePointer<uv_stream_t> {
        UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_stream_t.self)
    }

    private static func owner(_ handle: UnsafeRawPointer) -> HTTPConnection {
        Unmanaged<HTTPConnection>.fromOpaque(sc_uv_handle_get_data(handle)!).takeUnretainedValue()
    }

    /// Answers a connection over the limit with a 503 it can read, then closes it. The write is
    /// best effort (`uv_try_write`), so a refused client never costs buffers.
    static func refuse(_ tcp: UnsafeMutablePointer<uv_tcp_t>, reason: String) {
        var message = ByteBuffer(capacity: 256)
        let body = reason + "\n"
        message.append("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n")
        message.append("Connection: close\r\nContent-Length: ")
        message.appendDecimal(body.utf8.count)
        message.append("\r\n\r\n")
        message.append(body)
        var buf = uv_buf_init(UnsafeMutableRawPointer(message.base).assumingMemoryBound(to: CChar.self),
                              UInt32(message.count))
        _ = uv_try_write(UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_stream_t.self), &buf, 1)
        uv_close(UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_handle_t.self)) { h in
            UnsafeMutableRawPointer(h!).assumingMemoryBound(to: uv_tcp_t.self).deallocate()
        }
    }

    // MARK: reading

    func startReading() {
        guard !reading, !closing else { return }
        reading = true
        let status = uv_read_start(stream, { handle, suggested, buf in
            HTTPConnection.owner(handle!).allocate(buf!)
        }, { handle, nread, buf in
            HTTPConnection.owner(handle!).didRead(nread)
        })
        if status < 0 { close() }
    }

    private func stopReading() {
        guard reading else { return }
        reading = false
        uv_read_stop(stream)
    }

    /// Reads land in the server's shared buffer unless this connection already holds unprocessed
    /// input, in which case they are appended to it (a request split across reads).
    private func allocate(_ buf: UnsafeMutablePointer<uv_buf_t>) {
        if pendingInput.byteCount > 0 {
            pendingInput!.reserve(16 << 10)
            let (base, count, capacity) = (pendingInput.bytesBase!, pendingInput.byteCount, pendingInput.byteCapacity)
            buf.pointee = uv_buf_init(UnsafeMutableRawPointer(base + count).assumingMemoryBound(to: CChar.self),
                                      UInt32(capacity - count))
        } else {
            buf.pointee = uv_buf_init(UnsafeMutableRawPointer(server.sharedReadBuffer)
                                        .assumingMemoryBound(to: CChar.self), UInt32(server.sharedReadCapacity))
        }
    }

    private func didRead(_ nread: Int) {
        if nread < 0 {
            // EOF or error. A client that half-closes after its last request still gets its answers.
            stopReading()
            if lingering || (!deferred && !writeInFlight) || nread != Int(UV_EOF.rawValue) {
                close()
            } else {
                closeAfterFlush = true
            }
            return
        }
        if nread == 0 { return }
        server.stats.bytesIn += UInt64(nread)
        // After the final answer (lingering) or once it is decided (Connection: close, a parse error), what the
        // client still sends is read and dropped: keeping it would let a client grow our buffers without bound.
        if lingering || closeAfterFlush { return }
        batchStart = uv_hrtime()
        if pendingInput.byteCount > 0 {
            pendingInput!.count += nread
            processPendingInput()
        } else {
            let bytes = UnsafeRawBufferPointer(start: server.sharedReadBuffer, count: nread)
            let used = process(bytes)
            if used < nread { keep(UnsafeRawBufferPointer(rebasing: bytes[used...])) }
        }
        flush()
        afterBatch()
    }

    /// Copies input that could not be processed now into this connection's own buffer.
    private func keep(_ bytes: UnsafeRawBufferPointer) {
        if pendingInput.bytesBase == nil { pendingInput = ByteBuffer(capacity: max(bytes.count, 4096)) }
        pendingInput!.append(bytes)
    }

    private func processPendingInput() {
        guard let base = pendingInput.bytesBase else { return }
        let count = pendingInput.byteCount
        let used = process(UnsafeRawBufferPointer(start: base, count: count))
        // Processing may have ended the connection's input (lingering close frees it).
        guard pendingInput.bytesBase != nil else { return }
        pendingInput!.discardFront(used)
        // Why free it: an idle connection should hold no buffers at all.
        if pendingInput.byteCount == 0 { pendingInput = nil }
    }

    /// Parses and handles whole requests from `bytes`; returns how many bytes were consumed.
    private func process(_ bytes: UnsafeRawBufferPointer) -> Int {
        var offset = 0
        while offset < bytes.count && !deferred && !closeAfterFlush && !closing {
            // Answers of this batch still in the shared buffer count too: a client can pipeline thousands of
            // requests in one read, and their answers must not pile up there before the check sees them.
            if !mayAnswer(batch: server.output.bytes.count) {
                flush()
                if outputBacklog == 0 && !mayAnswer(batch: 0)
                    && !(answersTaken && server.makeRoomForReader() && mayAnswer(batch: 0)) {
                    // Nothing of ours is queued, but all connections together are at the hard cap.
                    stopReading()
                    waitingForRoom = true
                    server.waitForRoom(self)
                    break
                }
                if mustPause {
                    // Backpressure: the client is not reading its answers; stop reading its requests.
                    server.stats.backpressurePauses += 1
                    server.abuse.report(.httpUnreadAnswers, peer: tcpPeerAddress(tcp),
                                        "\(outputBacklog) answer bytes unread; all connections \(server.queuedOutputBytes)",
                                        now: server.loop.clock.nowMillis)
                    stopReading()
                    break
                }
            }
            let request = UnsafeRawBufferPointer(rebasing: bytes[offset...])
            switch parser.parse(request) {
            case .needMore(let sendContinue):
                if sendContinue {
                    server.output.bytes.append("HTTP/1.1 100 Continue\r\n\r\n")
                }
                if deadlineKind != .request {
                    deadlineKind = .request
                    deadline = server.loop.clock.nowMillis + server.config.headerTimeoutMillis
                }
                return offset
            case .request(let head, _, let consumed):
                parser.reset()
                let keepAlive = head.keepAlive && !draining
                let req = HTTPRequest(head: head, bytes: UnsafeRawBufferPointer(rebasing: request[..<consumed]),
                                      keepAlive: keepAlive, startNanos: batchStart)
                offset += consumed
                deadlineKind = .idle
                if !keepAlive { closeAfterFlush = true }
                let mark = server.output.bytes.count
                if server.handler.handle(req, writer: writer) == .deferred {
                    deferred = true
                    stopReading()
                    if server.accessLog != nil {
                        deferredRequestLine = Array(HTTPConnection.requestLine(req.bytes))
                        deferredStartNanos = req.startNanos
                    }
                } else if server.accessLog != nil {
                    logAnswer(HTTPConnection.requestLine(req.bytes), startNanos: req.startNanos, from: mark)
                }
            case .error(let error):
                server.stats.parseErrors += 1
                let mark = server.output.bytes.count
                server.abuse.report(.httpMalformed, peer: tcpPeerAddress(tcp), "\(error.status) \(error.reason)",
                                    now: server.loop.clock.nowMillis)
                server.handler.writeError(status: error.status, reason: error.reason, into: writer)
                // Rejected requests are logged too, with what their first line was (cut, escaped).
                if server.accessLog != nil {
                    logAnswer(HTTPConnection.requestLine(request), startNanos: batchStart, from: mark)
                }
                closeAfterFlush = true
                return bytes.count
            }
        }
        return offset
    }

    /// Sets the deadline that fits the state after a batch, and closes if the last answer was final.
    private func afterBatch() {
        if closing { return }
        if closeAfterFlush && !deferred {
            if !writeInFlight { finishAndLinger() }
            return
        }
        if deferred { deadline = .max; return }
        if deadlineKind == .idle {
            if draining && (pendingInput?.isEmpty ?? true) && !writeInFlight { close(); return }
            deadline = server.loop.clock.nowMillis + server.config.idleTimeoutMillis
        }
    }

    /// Completes a request the handler deferred: its response is already in `server.output`.
    public func finishDeferred() {
        precondition(deferred, "finishDeferred without a deferred request")
        deferred = false
        if let line = deferredRequestLine {
            deferredRequestLine = nil
            if !closing { line.withUnsafeBytes { logAnswer($0, startNanos: deferredStartNanos, from: 0) } }
        }
        if closing {
            server.output.clear()
            return
        }
        batchStart = uv_hrtime()
        // Requests that arrived behind the deferred one are answered now, in order.
        processPendingInput()
        flush()
        if !closeAfterFlush && !deferred && !closing && !mustPause {
            startReading()
        }
        afterBatch()
    }

    // MARK: access log

    /// The request's first line without its line ending.
    private static func requestLine(_ bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        var end = 0
        while end < bytes.count && bytes[end] != UInt8(ascii: "\r") && bytes[end] != UInt8(ascii: "\n") { end += 1 }
        return UnsafeRawBufferPointer(rebasing: bytes[..<end])
    }

    /// Writes the access-log line of the answer that starts at `mark` in the shared output.
    private func logAnswer(_ line: UnsafeRawBufferPointer, startNanos: UInt64, from mark: Int) {
        guard let log = server.accessLog else { return }
        let answer = UnsafeRawBufferPointer(rebasing: server.output.bytes.readable[mark...])
        // "HTTP/1.1 200 ...": the status is the three digits after the protocol.
        var status = 0
        if answer.count >= 12 {
            for c in answer[9..<12] { status = status * 10 + Int(c &- UInt8(ascii: "0")) }
        }
        if remoteAddress == nil { remoteAddress = peerAddress() }
        log.record(remote: remoteAddress ?? "-", unixMillis: server.loop.clock.nowMillis, requestLine: line,
                   status: status, responseBytes: answer.count, seconds: Double(uv_hrtime() &- startNanos) / 1e9)
    }

    private func peerAddress() -> String {
        var storage = sockaddr_storage()
        var len = Int32(MemoryLayout<sockaddr_storage>.size)
        var text = [CChar](repeating: 0, count: 64)
        let ok = withUnsafeMutablePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa -> Bool in
                guard uv_tcp_getpeername(tcp, sa, &len) == 0 else { return false }
                if sa.pointee.sa_family == sa_family_t(AF_INET6) {
                    return sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                        uv_ip6_name($0, &text, text.count) == 0
                    }
                }
                return sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                    uv_ip4_name($0, &text, text.count) == 0
                }
            }
        }
        return ok ? String(cString: text) : "-"
    }

    /// Whether this connection is closed or closing (a deferred answer is then dropped).
    public var isClosing: Bool { closing }

    // MARK: writing

    private var outputBacklog: Int { output.backlog }

    /// Whether another request may be answered, with `batch` answer bytes of this connection not yet queued:
    /// under its own bound, and under the process-wide one — past which only a connection with nothing queued
    /// goes on, up to the hard cap (see `HTTPServerConfig.maxQueuedOutputBytes`).
    private func mayAnswer(batch: Int) -> Bool {
        let mine = outputBacklog + batch
        let total = server.queuedOutputBytes + batch
        guard mine <= server.config.maxOutputBytesPerConnection else { return false }
        return total < server.config.maxQueuedOutputBytes || (mine == 0 && total < server.config.queuedOutputHardCap)
    }

    /// Whether this connection's unread answers should stop its requests being read: over its own bound, or
    /// holding some while all connections together are at the process-wide bound.
    private var mustPause: Bool {
        outputBacklog > server.config.maxOutputBytesPerConnection
            || (outputBacklog > 0 && server.queuedOutputBytes >= server.config.maxQueuedOutputBytes)
    }

    /// Called by the server when there is room again after `waitForRoom`: answers what waited, reads again.
    func roomAvailable() {
        guard waitingForRoom, !closing else { return }
        waitingForRoom = false
        guard !deferred, !writeInFlight else { return }
        batchStart = uv_hrtime()
        processPendingInput()
        flush()
        if !closeAfterFlush && !deferred && !writeInFlight && !waitingForRoom { startReading() }
        afterBatch()
    }

    /// Keeps the server's total of queued answers in step with this connection's.
    private func accountBacklog() {
        let now = closing ? 0 : output.backlog
        server.queuedOutputBytes += now - accountedBacklog
        accountedBacklog = now
    }

    private static let writeCallback: uv_write_cb = { req, status in
        Unmanaged<HTTPConnection>.fromOpaque(sc_uv_req_get_data(req!)!).takeUnretainedValue().didWrite(status)
    }

    /// Sends what the current callback produced in `server.output`: one `uv_try_write` for the whole
    /// batch; only the part the kernel does not take is copied and written asynchronously.
    private func flush() {
        let out = server.output
        guard out.bytes.count > 0 else { return }
        defer { out.clear() }
        if closing { return }
        server.stats.bytesOut += UInt64(out.bytes.count)
        let wasQueued = outputBacklog
        let status = output.send(out.bytes.readable, on: stream, owner: Unmanaged.passUnretained(self).toOpaque(),
                                 callback: HTTPConnection.writeCallback)
        if wasQueued == 0 { lastWriteMillis = server.loop.clock.nowMillis }
        if output.backlog == 0 { answersTaken = true }
        accountBacklog()
        if status < 0 { close() }
    }

    private func didWrite(_ status: Int32) {
        output.completed()
        lastWriteMillis = server.loop.clock.nowMillis
        defer { accountBacklog() }
        if status < 0 || closing {
            close()
            return
        }
        if let next = output.startQueued(on: stream, owner: Unmanaged.passUnretained(self).toOpaque(),
                                         callback: HTTPConnection.writeCallback) {
            if next < 0 { close() }
            return
        }
        if closeAfterFlush && !deferred {
            finishAndLinger()
            return
        }
        if draining && !deferred && (pendingInput?.isEmpty ?? true) {
            close()
            return
        }
        if !reading && !deferred {
            // Backpressure released: answer what is buffered, then read again.
            batchStart = uv_hrtime()
            processPendingInput()
            flush()
            if !closeAfterFlush && !deferred && !writeInFlight { startReading() }
            afterBatch()
        }
    }

    // MARK: closing

    /// After the final answer is written: send FIN, then read and discard until the client closes or
    /// `lingerMillis` passes, so unread input does not make the kernel reset the connection and destroy
    /// the answer before the client reads it.
    private func finishAndLinger() {
        guard !closing, !lingering else { return }
        lingering = true
        pendingInput = nil
        let req = UnsafeMutablePointer<uv_shutdown_t>.allocate(capacity: 1)
        let status = uv_shutdown(req, stream) { req, _ in req!.deallocate() }
        if status < 0 {
            req.deallocate()
            close()
            return
        }
        deadlineKind = .linger
        deadline = server.loop.clock.nowMillis + server.config.lingerMillis
        startReading()
    }

    func deadlinePassed(now: Int64) {
        switch deadlineKind {
        case .idle, .linger:
            close()
        case .request:
            server.stats.timeouts += 1
            server.abuse.report(.httpTimeout, peer: tcpPeerAddress(tcp),
                                "request not received within \(server.config.headerTimeoutMillis) ms", now: now)
            guard !closing, !deferred else { return }
            server.handler.writeError(status: 408, reason: "request not received within \(server.config.headerTimeoutMillis) ms",
                                      into: writer)
            closeAfterFlush = true
            deadlineKind = .idle
            flush()
            afterBatch()
        }
    }

    /// Graceful stop of the node: idle connections close now, busy ones after their current answer.
    func beginDraining() {
        draining = true
        if !deferred && !writeInFlight && (pendingInput?.isEmpty ?? true) {
            close()
        }
    }

    func close() {
        guard !closing else { return }
        closing = true
        stopReading()
        accountBacklog()
        uv_close(UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_handle_t.self)) { h in
            let unmanaged = Unmanaged<HTTPConnection>.fromOpaque(sc_uv_handle_get_data(h!)!)
            let c = unmanaged.takeUnretainedValue()
            c.server.remove(c)
            c.writer = nil
            unmanaged.release()
        }
    }
}

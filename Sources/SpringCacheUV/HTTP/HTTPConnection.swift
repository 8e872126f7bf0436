import CLibUV

/// The libuv driver of one client connection: performs what its `HTTP1ConnectionState` decides (read, answer in
/// order, write, pause, linger, close) and tells it what happened.
///
/// Lifecycle (libuv's): the object retains itself in the handle's `data` from `init` until the close
/// callback, which is the only place it is released and removed from the server. A connection that must
/// die is marked closing and freed from that callback, never in the middle of its own callback.
///
/// Batches: everything one callback answers (a read, a deferred answer landing, a resume) is written through this
/// connection's `ResponseWriter` and sent with one `uv_try_write` at the end of the callback; only what the kernel
/// does not take is copied into `output`.
public final class HTTPConnection: SlottedConnection, ResponseWriterOwner {
    unowned let server: HTTPServer
    let tcp: UnsafeMutablePointer<uv_tcp_t>
    /// The connection's place in the server's `ConnectionSet`.
    public var slot = -1

    /// The protocol state; the one place the connection's phase and deadline are kept.
    private(set) var state: HTTP1ConnectionState
    /// Unprocessed input that did not fit in one read or waits behind a deferred request.
    private var pendingInput: ByteBuffer?
    /// Output the kernel has not taken yet.
    private var output = StreamWriteQueue()
    /// `output.backlog` as last added to `server.queuedOutputBytes`.
    private var accountedBacklog = 0
    /// Whether libuv is reading the socket (kept in step with `state.wantsToRead`).
    private var reading = false
    private var batchStart: UInt64 = 0
    /// With an access log: the deferred request's first line and start, logged when its answer is written.
    private var deferredRequestLine: [UInt8]?
    private var deferredStartNanos: UInt64 = 0
    /// The client's address as the access log writes it; looked up once, on the first logged request.
    private var remoteAddress: String?
    /// Where handlers write this connection's answers. It holds the connection too, so that a handler
    /// answering late keeps it alive; the cycle is broken when the socket's close callback runs.
    private(set) var writer: ResponseWriter!

    init(server: HTTPServer, tcp: UnsafeMutablePointer<uv_tcp_t>, now: Int64) {
        self.server = server
        self.tcp = tcp
        state = HTTP1ConnectionState(config: server.config, now: now)
        sc_uv_handle_set_data(tcp, Unmanaged.passRetained(self).toOpaque())
        uv_tcp_nodelay(tcp, 1)
        if let limit = server.config.unsentBytesBeforeReading { tcpLimitUnsentBytes(tcp, limit) }
        writer = ResponseWriter(owner: self, scratch: server.scratch)
    }

    deinit {
        precondition(state.isClosed, "HTTPConnection released without close()")
        output.deallocate()
        tcp.deallocate()
    }

    private var stream: UnsafeMutablePointer<uv_stream_t> {
        UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_stream_t.self)
    }

    private var now: Int64 { server.loop.clock.nowMillis }

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

    func start() { syncReading() }

    /// Starts or stops libuv's reading to match what the state wants.
    private func syncReading() {
        let want = state.wantsToRead
        if want == reading { return }
        reading = want
        if !want {
            uv_read_stop(stream)
            return
        }
        let status = uv_read_start(stream, { handle, suggested, buf in
            HTTPConnection.owner(handle!).allocate(buf!)
        }, { handle, nread, buf in
            HTTPConnection.owner(handle!).didRead(nread)
        })
        if status < 0 {
            reading = false
            close()
        }
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
            perform(state.inputEnded(eof: nread == Int(UV_EOF.rawValue)))
            syncReading()
            return
        }
        if nread == 0 { return }
        server.stats.bytesIn += UInt64(nread)
        // While lingering, what the client still sends is read and dropped: keeping it would let a client grow
        // our buffers without bound.
        guard state.takesRequests else { return }
        batchStart = uv_hrtime()
        writer.open()
        if pendingInput.byteCount > 0 {
            pendingInput!.count += nread
            serveBufferedInput()
        } else {
            let bytes = UnsafeRawBufferPointer(start: server.sharedReadBuffer, count: nread)
            let used = serve(bytes)
            if used < nread && !state.isClosed { keep(UnsafeRawBufferPointer(rebasing: bytes[used...])) }
        }
        endBatch()
    }

    /// Copies input that could not be processed now into this connection's own buffer.
    private func keep(_ bytes: UnsafeRawBufferPointer) {
        if pendingInput.bytesBase == nil { pendingInput = ByteBuffer(capacity: max(bytes.count, 4096)) }
        pendingInput!.append(bytes)
    }

    private func serveBufferedInput() {
        guard let base = pendingInput.bytesBase else { return }
        let count = pendingInput.byteCount
        let used = serve(UnsafeRawBufferPointer(start: base, count: count))
        // Serving may have ended the connection's input (a lingering or closed connection frees it).
        guard pendingInput.bytesBase != nil else { return }
        pendingInput!.discardFront(used)
        // Why free it: an idle connection should hold no buffers at all.
        if pendingInput.byteCount == 0 { pendingInput = nil }
    }

    /// Parses and answers whole requests from `bytes` while the state takes requests; returns how many bytes
    /// were consumed.
    private func serve(_ bytes: UnsafeRawBufferPointer) -> Int {
        var offset = 0
        while offset < bytes.count && state.takesRequests {
            if !state.answersTaken && server.turnBudgetSpent {
                // This loop turn has written its share to clients not yet seen to read: the rest waits for the next
                // turn, so accepting and readers are not held up behind a flood's copying.
                state.waitForRoom(now: now)
                server.deferToNextTurn(self)
                return offset
            }
            switch state.admission(batchBytes: writer.pendingCount, totalQueued: server.queuedOutputBytes) {
            case .answer:
                break
            case .flushFirst:
                flush()
                continue
            case .needRoom:
                // Nothing of ours is queued, but all connections together are at the hard cap: the longest-stalled
                // connections that do not read are closed for us now, else we wait for room.
                if server.makeRoomNow() { continue }
                state.waitForRoom(now: now)
                server.waitForRoom(self)
                return offset
            case .pause:
                // Back-pressure: the client is not reading its answers; stop reading its requests.
                server.stats.backpressurePauses += 1
                let total = server.queuedOutputBytes
                server.abuse.report(.httpUnreadAnswers, peer: tcpPeerAddress(tcp),
                                    "\(state.queuedBytes) answer bytes unread; all connections \(total)", now: now)
                state.pauseForUnreadAnswers()
                return offset
            }
            let request = UnsafeRawBufferPointer(rebasing: bytes[offset...])
            switch state.parse(request, now: now) {
            case .needMore(let sendContinue):
                if sendContinue { HTTPResponse.appendContinue(to: &writer.bytes) }
                return offset
            case .request(let head, let consumed, let keepAlive):
                let req = HTTPRequest(head: head, bytes: UnsafeRawBufferPointer(rebasing: request[..<consumed]),
                                      keepAlive: keepAlive, startNanos: batchStart)
                offset += consumed
                let mark = writer.copiedCount
                if server.handler.handle(req, writer: writer) == .deferred {
                    state.answerDeferred()
                    if server.accessLog != nil {
                        deferredRequestLine = Array(HTTPConnection.requestLine(req.bytes))
                        deferredStartNanos = req.startNanos
                    }
                } else if server.accessLog != nil {
                    logAnswer(HTTPConnection.requestLine(req.bytes), startNanos: req.startNanos, from: mark)
                }
            case .error(let error):
                server.stats.parseErrors += 1
                let mark = writer.copiedCount
                server.abuse.report(.httpMalformed, peer: tcpPeerAddress(tcp), "\(error.status) \(error.reason)",
                                    now: now)
                server.handler.writeError(status: error.status, reason: error.reason, into: writer)
                // Rejected requests are logged too, with what their first line was (cut, escaped).
                if server.accessLog != nil {
                    logAnswer(HTTPConnection.requestLine(request), startNanos: batchStart, from: mark)
                }
                return bytes.count
            }
        }
        return offset
    }

    /// Ends a batch: sends its answers, frees the scratch for the next connection, and lets the state set the
    /// deadline and say whether the connection now lingers or closes.
    private func endBatch() {
        flush()
        writer.endBatch()
        // Why pause here too: a batch that ended exactly at this client's bound would otherwise read once more.
        if state.takesRequests && state.mustPause(totalQueued: server.queuedOutputBytes) {
            state.pauseForUnreadAnswers()
        }
        perform(state.batchEnded(bufferedInput: pendingInput.byteCount > 0, now: now))
        syncReading()
    }

    /// Completes a request the handler deferred: its response is in the writer.
    func finishDeferred() {
        if let line = deferredRequestLine {
            deferredRequestLine = nil
            if !state.isClosed { line.withUnsafeBytes { logAnswer($0, startNanos: deferredStartNanos, from: 0) } }
        }
        guard state.answeredLater() else {
            writer.discard()
            return
        }
        resume()
    }

    /// Answers the requests that waited (behind a deferred one, for room, or for the client to read), then reads.
    private func resume() {
        batchStart = uv_hrtime()
        writer.open()
        serveBufferedInput()
        endBatch()
    }

    // MARK: access log

    /// The request's first line without its line ending.
    private static func requestLine(_ bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        var end = 0
        while end < bytes.count && bytes[end] != UInt8(ascii: "\r") && bytes[end] != UInt8(ascii: "\n") { end += 1 }
        return UnsafeRawBufferPointer(rebasing: bytes[..<end])
    }

    /// Writes the access-log line of the answer that starts at `mark` in the writer's unsent bytes.
    private func logAnswer(_ line: UnsafeRawBufferPointer, startNanos: UInt64, from mark: Int) {
        guard server.accessLog != nil else { return }
        let borrowed = writer.borrowedCount(from: mark)
        writer.withPendingBytes { pending in
            logAnswer(line, startNanos: startNanos, answer: UnsafeRawBufferPointer(rebasing: pending[mark...]),
                      borrowed: borrowed)
        }
    }

    /// `answer` is the answer's copied bytes (its status line first); `borrowed` counts its value sent uncopied.
    private func logAnswer(_ line: UnsafeRawBufferPointer, startNanos: UInt64, answer: UnsafeRawBufferPointer,
                           borrowed: Int) {
        guard let log = server.accessLog else { return }
        // "HTTP/1.1 200 ...": the status is the three digits after the protocol.
        var status = 0
        if answer.count >= 12 {
            for c in answer[9..<12] { status = status * 10 + Int(c &- UInt8(ascii: "0")) }
        }
        if remoteAddress == nil { remoteAddress = peerAddress() }
        log.record(remote: remoteAddress ?? "-", unixMillis: server.loop.clock.nowMillis, requestLine: line,
                   status: status, responseBytes: answer.count + borrowed,
                   seconds: Double(uv_hrtime() &- startNanos) / 1e9)
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
    public var isClosing: Bool { state.isClosed }

    // MARK: writing

    /// Called by the server when there is room again after `waitForRoom`: answers what waited, reads again.
    func roomAvailable() {
        guard state.roomAvailable(now: now) else { return }
        resume()
    }

    /// Keeps the server's total of queued answers in step with this connection's.
    ///
    /// Once closed, the count stays until the close callback, where the memory is freed: closing a connection to
    /// make room must not let others fill that room before it is really free (`HTTPServer.releasingOutputBytes`).
    private func accountBacklog() {
        if state.isClosed { return }
        server.queuedOutputBytes += output.backlog - accountedBacklog
        accountedBacklog = output.backlog
    }

    private static let writeCallback: uv_write_cb = { req, status in
        Unmanaged<HTTPConnection>.fromOpaque(sc_uv_req_get_data(req!)!).takeUnretainedValue().didWrite(status)
    }

    /// Sends what the writer holds of this batch: one `uv_try_write` for all of it (large values as iovecs into
    /// their cache entries); only the part the kernel does not take is queued — copied, except borrowed values,
    /// which stay pinned in place until written — and written asynchronously.
    private func flush() {
        let count = writer.pendingCount
        guard count > 0 else { return }
        defer { writer.sentPending() }
        if state.isClosed { return }
        server.stats.bytesOut += UInt64(count)
        let owner = Unmanaged.passUnretained(self).toOpaque()
        let backlogBefore = output.backlog
        let status = writer.withPendingBytes { bytes in
            output.send(bytes, borrowed: writer.borrowed, on: stream, owner: owner,
                        callback: HTTPConnection.writeCallback)
        }
        let wasReading = state.answersTaken
        if !wasReading { server.spendTurnBudget(count + backlogBefore - output.backlog) }
        state.sent(queued: output.backlog, now: now)
        if !wasReading && state.answersTaken { clientSeenToRead() }
        accountBacklog()
        if status < 0 { close() }
    }

    /// The client is now seen to read: the kernel may hold its full share of unsent answer bytes.
    private func clientSeenToRead() {
        if server.config.socketUnsentBytes > 0 { tcpLimitUnsentBytes(tcp, server.config.socketUnsentBytes) }
    }

    private func didWrite(_ status: Int32) {
        output.completed()
        if status < 0 || state.isClosed {
            close()
            return
        }
        if let next = output.startQueued(on: stream, owner: Unmanaged.passUnretained(self).toOpaque(),
                                         callback: HTTPConnection.writeCallback), next < 0 {
            close()
            return
        }
        let wasReading = state.answersTaken
        let action = state.writeCompleted(queued: output.backlog, bufferedInput: pendingInput.byteCount > 0, now: now)
        if !wasReading && state.answersTaken { clientSeenToRead() }
        accountBacklog()
        perform(action)
        syncReading()
    }

    // MARK: deadlines, stop and close

    /// Does what the state decided.
    private func perform(_ action: HTTP1ConnectionState.Action) {
        switch action {
        case .none: break
        case .close: closeSocket()
        case .linger: linger()
        case .resume: resume()
        case .requestTimeout: answerTimeout()
        }
    }

    /// After the final answer is written: send FIN, then read and discard until the client closes or
    /// `lingerMillis` passes, so unread input does not make the kernel reset the connection and destroy
    /// the answer before the client reads it.
    private func linger() {
        pendingInput = nil
        let req = UnsafeMutablePointer<uv_shutdown_t>.allocate(capacity: 1)
        let status = uv_shutdown(req, stream) { req, _ in req!.deallocate() }
        if status < 0 {
            req.deallocate()
            close()
            return
        }
        syncReading()
    }

    /// The server's tick found the deadline passed.
    func deadlinePassed(now: Int64) {
        perform(state.deadlinePassed(now: now))
        syncReading()
    }

    /// The request did not arrive within the header timeout: 408, then the connection lingers and closes.
    private func answerTimeout() {
        let timeout = server.config.headerTimeoutMillis
        server.stats.timeouts += 1
        server.abuse.report(.httpTimeout, peer: tcpPeerAddress(tcp), "request not received within \(timeout) ms",
                            now: now)
        writer.open()
        server.handler.writeError(status: 408, reason: "request not received within \(timeout) ms", into: writer)
        endBatch()
    }

    /// Graceful stop of the node: idle connections close now, busy ones after their current answer.
    func beginDraining() {
        perform(state.drain(bufferedInput: pendingInput.byteCount > 0))
        syncReading()
    }

    /// Closes the connection now (the server's stop grace passed, or its answers stalled at the bound).
    func close() {
        perform(state.close())
    }

    private func closeSocket() {
        precondition(state.isClosed)
        if reading {
            reading = false
            uv_read_stop(stream)
        }
        writer.discard()
        // Why borrowed bytes leave the count now and copied ones only in the close callback: copies are freed there,
        // so counting them until then keeps others from filling room that is not free yet. A borrowed value is a
        // reference to a cache entry's block, which the cache counts while the entry lives; and the block of an
        // entry evicted meanwhile is one block however many connections share it. Holding those bytes too made
        // clients wait a loop turn for each few connections closed for them: a new client arriving among 800
        // non-readers of one 1 MiB value waited 0.2 s (issue 10).
        let borrowed = min(output.borrowedBacklog, accountedBacklog)
        server.queuedOutputBytes -= borrowed
        accountedBacklog -= borrowed
        server.releasingOutputBytes += accountedBacklog
        uv_close(UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_handle_t.self)) { h in
            let unmanaged = Unmanaged<HTTPConnection>.fromOpaque(sc_uv_handle_get_data(h!)!)
            let c = unmanaged.takeUnretainedValue()
            // Pending writes were cancelled before this callback; the queue's memory goes with the connection.
            c.server.queuedOutputBytes -= c.accountedBacklog
            c.server.releasingOutputBytes -= c.accountedBacklog
            c.accountedBacklog = 0
            c.server.remove(c)
            c.writer.detach()
            c.writer = nil
            unmanaged.release()
        }
    }
}

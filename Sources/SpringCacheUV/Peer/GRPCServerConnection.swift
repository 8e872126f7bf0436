import CLibUV
import CNGHTTP2

/// One request stream on a server connection: its headers as they arrive, its message being reassembled,
/// and, once dispatched, its call and its answer.
final class GRPCServerStream {
    let id: Int32
    unowned let connection: GRPCServerConnection
    var path = ""
    var isPost = false
    var contentTypeOK = false
    var timeoutMillis: Int64?
    var timeoutMalformed = false
    var authorization: String?
    /// Whether `authorization` carried the peer token (checked on the raw bytes as the header arrives).
    var authorized = false
    /// When the stream's HEADERS arrived, and when it must be over (`streamTimeoutMillis`).
    let endsAtMillis: Int64
    /// Bytes charged to this stream against the connection's and the process's buffer bounds.
    var held = 0
    /// The stream outlived `streamTimeoutMillis` and was ended; what it held is gone.
    var timedOut = false
    var encodingDeclared = false
    var deadlineMillis: Int64?
    var decoder: GRPCMessageDecoder?
    /// The client sent END_STREAM.
    var remoteClosed = false
    /// An answer (response or status) was submitted; later input on the stream is ignored.
    var answered = false
    /// Answered before the client finished sending: reset (NO_ERROR) once our END_STREAM is out.
    var resetAfterAnswer = false
    var call: GRPCServerCall?
    /// The response message being sent by the data provider, and how much of prefix + message went out.
    var response: [UInt8] = []
    var responseOffset = 0

    init(id: Int32, connection: GRPCServerConnection, endsAtMillis: Int64) {
        self.id = id
        self.connection = connection
        self.endsAtMillis = endsAtMillis
    }
}

/// A server-side HTTP/2 connection speaking gRPC (PROTOCOL-HTTP2.md): validates requests, reassembles
/// their message, hands complete calls to the server, and sends answers (HEADERS, DATA, trailers).
final class GRPCServerConnection: HTTP2Connection {
    let server: GRPCServer
    var index = -1
    var isDirty = false
    private var streams: [Int32: GRPCServerStream] = [:]
    /// Streams whose request completed during the current read; dispatched after `mem_recv` returns, so
    /// the handler never runs inside an nghttp2 callback.
    private var ready: [GRPCServerStream] = []
    private var protocolFailed = false
    /// Bytes held by this connection's streams (see `GRPCServerSettings.maxConnectionBufferBytes`).
    private var held = 0
    let acceptedAtMillis: Int64
    /// Looked up only when something is reported about the connection.
    var peerAddress: String { tcpPeerAddress(tcp) }
    /// Whether the peer has authenticated (`GRPCServerSettings.maxUnauthenticatedConnections`).
    private(set) var isAuthenticated = false
    /// When we sent a PING to a silent connection; nil when none is outstanding.
    private var pingSentAtMillis: Int64?

    init(server: GRPCServer, tcp: UnsafeMutablePointer<uv_tcp_t>) {
        self.server = server
        acceptedAtMillis = server.loop.clock.nowMillis
        super.init(loop: server.loop, tcp: tcp, buffers: server.buffers, isServer: true,
                   maxOutputBytes: server.settings.maxOutputBytesPerConnection,
                   maxHeaderListBytes: Int(server.settings.maxHeaderListBytes))
    }

    private func authenticated() {
        guard !isAuthenticated else { return }
        isAuthenticated = true
        server.connectionAuthenticated()
    }

    private func reportAbuse(_ kind: AbuseLog.Kind, _ detail: String) {
        server.abuse.report(kind, peer: peerAddress, detail, now: loop.clock.nowMillis)
    }

    // MARK: buffer bounds

    /// Charges `bytes` to `stream`; false (nothing charged) if the connection or the process is at its bound.
    private func hold(_ bytes: Int, for stream: GRPCServerStream) -> Bool {
        guard server.mayHold(bytes, connectionHeld: held) else { return false }
        stream.held += bytes
        held += bytes
        server.heldBytes += bytes
        return true
    }

    /// Gives back `bytes` (all of them by default) of what `stream` holds.
    private func release(_ stream: GRPCServerStream, _ bytes: Int? = nil) {
        let n = min(bytes ?? stream.held, stream.held)
        stream.held -= n
        held -= n
        server.heldBytes -= n
    }

    private func refuseForBuffers(_ stream: GRPCServerStream, what: String, bytes: Int) {
        server.stats.bufferRefusals += 1
        let s = server.settings
        reportAbuse(.bufferFull, "\(what) of \(bytes) bytes refused: this connection holds \(held) bytes "
                    + "(limit \(s.maxConnectionBufferBytes)), all peers \(server.heldBytes + buffers.queuedOutputBytes) "
                    + "(limit \(s.maxBufferBytes))")
        stream.decoder = nil
        stream.response = []
        release(stream)
        sendStatus(stream, status: .resourceExhausted,
                   message: "the server's buffers for unfinished requests and unsent answers are full; retry later")
    }

    // MARK: deadlines

    /// Called by the server's tick: the handshake and idle deadlines, and the lifetime bound of each stream.
    func checkDeadlines(now: Int64) {
        guard !isClosing else { return }
        let s = server.settings
        if !handshakeComplete {
            if now - acceptedAtMillis >= s.handshakeTimeoutMillis {
                timedOut("no HTTP/2 preface and SETTINGS within \(s.handshakeTimeoutMillis) ms")
            }
            return
        }
        if writeInFlight && now - lastWriteMillis >= s.streamTimeoutMillis {
            timedOut("the peer read none of our output for \(s.streamTimeoutMillis) ms")
            return
        }
        if let sent = pingSentAtMillis, lastInputMillis < sent {
            if now - sent >= s.pingTimeoutMillis {
                timedOut("silent for \(s.idleTimeoutMillis) ms and no answer to a PING in \(s.pingTimeoutMillis) ms")
                return
            }
        } else if now - lastInputMillis >= s.idleTimeoutMillis, let session {
            // A live peer (nghttp2 answers PINGs by itself) keeps the connection; a dead or silent one goes.
            pingSentAtMillis = now
            nghttp2_submit_ping(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nil)
            requestFlush()
        }
        var expired: [GRPCServerStream] = []
        for stream in streams.values where stream.endsAtMillis <= now && !stream.timedOut { expired.append(stream) }
        for stream in expired { endStream(stream) }
    }

    private func timedOut(_ reason: String) {
        server.stats.connectionTimeouts += 1
        reportAbuse(.connectionTimeout, reason)
        close(reason: reason)
    }

    /// A stream outlived `streamTimeoutMillis`: answer DEADLINE_EXCEEDED if no answer was given, else reset it;
    /// either way what it held is released now, whether or not the peer ever takes another byte.
    private func endStream(_ stream: GRPCServerStream) {
        guard let session, !stream.timedOut else { return }
        stream.timedOut = true
        server.stats.streamTimeouts += 1
        reportAbuse(.streamTimeout, "stream \(stream.id) still open after \(server.settings.streamTimeoutMillis) ms "
                    + (stream.answered ? "(its answer not taken)" : "(not answered)"))
        stream.decoder = nil
        stream.response = []
        release(stream)
        if let call = stream.call {
            call.expire()
        } else if !stream.answered {
            sendStatus(stream, status: .deadlineExceeded,
                       message: "stream not finished within \(server.settings.streamTimeoutMillis) ms")
        } else {
            nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream.id, NGHTTP2_CANCEL.rawValue)
            requestFlush()
        }
    }

    /// Sends our SETTINGS and starts reading.
    func open() {
        guard session != nil else {
            close(reason: "cannot create an HTTP/2 session")
            return
        }
        let s = server.settings
        submitSettings([(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, s.maxConcurrentStreams),
                        (NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, UInt32(s.initialWindowSize)),
                        (NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, s.maxHeaderListBytes),
                        (NGHTTP2_SETTINGS_ENABLE_PUSH, 0)],
                       connectionWindow: s.connectionWindowSize)
        startReading()
        flush()
    }

    // MARK: requests

    override func didBeginHeaders(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let f = frame.pointee
        guard f.hd.type == UInt8(NGHTTP2_HEADERS.rawValue), f.headers.cat == NGHTTP2_HCAT_REQUEST else { return 0 }
        let endsAt = loop.clock.nowMillis + server.settings.streamTimeoutMillis
        streams[f.hd.stream_id] = GRPCServerStream(id: f.hd.stream_id, connection: self, endsAtMillis: endsAt)
        return 0
    }

    override func didReceiveHeader(_ frame: UnsafePointer<nghttp2_frame>, name: UnsafeRawBufferPointer,
                                   value: UnsafeRawBufferPointer) -> Int32 {
        let f = frame.pointee
        // Only the request's own header block; headers in trailers (none in gRPC) are ignored.
        guard f.hd.type == UInt8(NGHTTP2_HEADERS.rawValue), f.headers.cat == NGHTTP2_HCAT_REQUEST,
              let stream = streams[f.hd.stream_id] else { return 0 }
        if name.equals(":path") {
            stream.path = String(decoding: value, as: UTF8.self)
        } else if name.equals(":method") {
            stream.isPost = value.equals("POST")
        } else if name.equals("content-type") {
            stream.contentTypeOK = GRPCServerConnection.isGRPCContentType(value)
        } else if name.equals("grpc-timeout") {
            if let millis = GRPCTimeout.parse(value) {
                stream.timeoutMillis = millis
            } else {
                stream.timeoutMalformed = true
            }
        } else if name.equals("authorization") {
            stream.authorization = String(decoding: value, as: UTF8.self)
            if let token = server.settings.peerToken { stream.authorized = BearerToken.matches(value, token: token) }
        } else if name.equals("grpc-encoding") {
            stream.encodingDeclared = !value.equals("identity")
        }
        return 0
    }

    /// `application/grpc`, optionally followed by `+format` or `;params` (PROTOCOL-HTTP2.md, Content-Type).
    static func isGRPCContentType(_ value: UnsafeRawBufferPointer) -> Bool {
        guard value.starts(with: "application/grpc") else { return false }
        let n = "application/grpc".utf8.count
        return value.count == n || value[n] == UInt8(ascii: "+") || value[n] == UInt8(ascii: ";")
    }

    override func didReceiveFrame(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let f = frame.pointee
        if !isAuthenticated && handshakeComplete && server.settings.peerToken == nil { authenticated() }
        let endStream = f.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        switch f.hd.type {
        case UInt8(NGHTTP2_HEADERS.rawValue):
            guard let stream = streams[f.hd.stream_id] else { return 0 }
            if f.headers.cat == NGHTTP2_HCAT_REQUEST { headersComplete(stream) }
            if endStream { requestComplete(stream) }
        case UInt8(NGHTTP2_DATA.rawValue):
            if endStream, let stream = streams[f.hd.stream_id] { requestComplete(stream) }
        default:
            break
        }
        return 0
    }

    /// Validates the request headers as soon as they are complete, so a bad request is answered without
    /// waiting for (or buffering) its body.
    private func headersComplete(_ stream: GRPCServerStream) {
        if server.settings.peerToken != nil {
            guard stream.authorized else {
                // Refused before its message is read: an unauthenticated peer gets nothing buffered.
                server.stats.unauthenticatedRequests += 1
                reportAbuse(.unauthenticated, "request for \(stream.path) without the peer token")
                sendStatus(stream, status: .unauthenticated, message: "this peer port requires authorization: Bearer <token>")
                return
            }
            authenticated()
        }
        if !stream.isPost {
            sendStatus(stream, status: .unimplemented, message: "gRPC requires POST", httpStatus: 405)
            return
        }
        if !stream.contentTypeOK {
            // PROTOCOL-HTTP2.md: a Content-Type not starting with application/grpc SHOULD get HTTP 415.
            sendStatus(stream, status: .internal, message: "content-type must be application/grpc", httpStatus: 415)
            return
        }
        if stream.timeoutMalformed {
            sendStatus(stream, status: .internal, message: "malformed grpc-timeout")
            return
        }
        if let timeout = stream.timeoutMillis {
            stream.deadlineMillis = min(loop.clock.nowMillis + timeout, stream.endsAtMillis)
        } else {
            // A deadline on every call, sent or not: the stream's own lifetime bound.
            stream.deadlineMillis = stream.endsAtMillis
        }
        stream.decoder = GRPCMessageDecoder(maxMessageBytes: server.settings.maxMessageBytes, maxMessages: 1,
                                            encodingDeclared: stream.encodingDeclared)
    }

    override func didReceiveData(streamID: Int32, _ data: UnsafeRawBufferPointer) -> Int32 {
        guard let stream = streams[streamID], !stream.answered, stream.decoder != nil else { return 0 }
        guard hold(data.count, for: stream) else {
            refuseForBuffers(stream, what: "request data", bytes: data.count)
            return 0
        }
        if let failure = stream.decoder!.feed(data) {
            // Answered at once: e.g. an oversized message is refused before it is buffered.
            stream.decoder = nil
            sendStatus(stream, status: failure.serverStatus, message: failure.message)
        }
        return 0
    }

    /// END_STREAM from the client: a unary request must hold exactly one whole message.
    private func requestComplete(_ stream: GRPCServerStream) {
        stream.remoteClosed = true
        guard !stream.answered, let decoder = stream.decoder else { return }
        if let failure = decoder.finish() {
            sendStatus(stream, status: failure.serverStatus, message: failure.message)
        } else if decoder.messages.isEmpty {
            // statuscodes.md: request cardinality violation → UNIMPLEMENTED.
            sendStatus(stream, status: .unimplemented, message: "unary call ended without a request message")
        } else {
            ready.append(stream)
        }
    }

    override func didProcessInput() {
        guard !ready.isEmpty else { return }
        let batch = ready
        ready.removeAll(keepingCapacity: true)
        for stream in batch where !stream.answered && !isClosing && streams[stream.id] === stream {
            guard let message = stream.decoder?.messages.first else { continue }
            stream.decoder = nil
            let call = GRPCServerCall(path: stream.path, message: message, deadlineMillis: stream.deadlineMillis,
                                      authorization: stream.authorization, stream: stream, server: server)
            stream.call = call
            server.dispatch(call)
        }
    }

    override func didSendFrame(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let f = frame.pointee
        guard f.hd.type == UInt8(NGHTTP2_HEADERS.rawValue), f.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0,
              let stream = streams[f.hd.stream_id], stream.resetAfterAnswer, !stream.remoteClosed,
              let session else { return 0 }
        stream.resetAfterAnswer = false
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream.id, NGHTTP2_NO_ERROR.rawValue)
        return 0
    }

    override func didCloseStream(_ streamID: Int32, errorCode: UInt32) -> Int32 {
        guard let stream = streams.removeValue(forKey: streamID) else { return 0 }
        stream.response = []
        release(stream)
        stream.call?.cancel()
        return 0
    }

    // MARK: answers

    /// HEADERS (:status 200), one DATA message through the data provider, then trailers with status OK.
    func respond(_ stream: GRPCServerStream, message: [UInt8]) {
        guard !stream.answered, !isClosing, let session else { return }
        if message.count > server.settings.maxMessageBytes {
            sendStatus(stream, status: .resourceExhausted,
                       message: "response of \(message.count) bytes exceeds the limit of \(server.settings.maxMessageBytes) bytes")
            return
        }
        // The request message is done with; the answer is held until the peer's window lets it out.
        release(stream)
        guard hold(5 + message.count, for: stream) else {
            refuseForBuffers(stream, what: "answer", bytes: 5 + message.count)
            return
        }
        stream.answered = true
        stream.response = message
        stream.responseOffset = 0
        let h = server.headers
        h.reset()
        h.add(":status", "200")
        h.add("content-type", "application/grpc")
        h.add("grpc-accept-encoding", "identity")
        var provider = HTTP2Connection.dataProvider
        let rv = h.withNV { nv, count in nghttp2_submit_response(session, stream.id, nv, count, &provider) }
        if rv == 0 { server.countAnswer(.ok) }
        requestFlush()
    }

    override func readBody(streamID: Int32, into buffer: UnsafeMutablePointer<UInt8>, length: Int,
                           flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let stream = streams[streamID], !stream.timedOut, let session else {
            return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
        }
        let total = 5 + stream.response.count
        var offset = stream.responseOffset
        let n = min(length, total - offset)
        var out = 0
        while offset < 5 && out < n {
            buffer[out] = GRPCMessageDecoder.prefixByte(offset, length: stream.response.count)
            out += 1
            offset += 1
        }
        if out < n {
            let count = n - out
            stream.response.withUnsafeBufferPointer { src in
                (buffer + out).update(from: src.baseAddress! + (offset - 5), count: count)
            }
            offset += count
        }
        stream.responseOffset = offset
        release(stream, n)
        if offset == total {
            stream.response = []
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue | NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
            let h = server.headers
            h.reset()
            h.add("grpc-status", "0")
            _ = h.withNV { nv, count in nghttp2_submit_trailer(session, streamID, nv, count) }
        }
        return n
    }

    /// A status without a message: Trailers-Only (one HEADERS frame with END_STREAM). If the client is
    /// still sending, RST_STREAM(NO_ERROR) tells it to stop (RFC 9113 §8.1) instead of us discarding its
    /// data; it is submitted only once the HEADERS frame has been sent (`didSendFrame`), because nghttp2
    /// drops frames still queued for a stream it is resetting.
    func sendStatus(_ stream: GRPCServerStream, status: GRPCStatus, message: String, httpStatus: Int = 200) {
        guard !stream.answered, !isClosing, let session else { return }
        stream.answered = true
        stream.decoder = nil
        release(stream)
        let h = server.headers
        h.reset()
        h.add(":status", httpStatus == 200 ? "200" : String(httpStatus))
        h.add("content-type", "application/grpc")
        h.add("grpc-status", String(status.rawValue))
        if !message.isEmpty { h.add("grpc-message", GRPCStatusMessage.encode(message)) }
        let rv = h.withNV { nv, count in nghttp2_submit_response(session, stream.id, nv, count, nil) }
        if rv == 0 { server.countAnswer(status) }
        stream.resetAfterAnswer = !stream.remoteClosed
        requestFlush()
    }

    private func requestFlush() {
        // During a read the flush happens once at its end; otherwise in the next loop iteration, batched.
        if !processingInput { server.scheduleFlush(self) }
    }

    // MARK: closing

    /// Graceful close: GOAWAY with the last stream we took; the session ends when those are answered.
    func goAway() {
        guard !isClosing, let session else { return }
        nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nghttp2_session_get_last_proc_stream_id(session),
                              NGHTTP2_NO_ERROR.rawValue, nil, 0)
        flush()
    }

    override func connectionDidFail(reason: String) {
        if failedProtocol {
            server.stats.protocolErrors += 1
            reportAbuse(reason.hasPrefix("HTTP/2 abuse: header list") ? .headerList : .http2Protocol, reason)
        }
        if !isAuthenticated {
            isAuthenticated = true
            server.connectionAuthenticated()
        }
        for stream in streams.values { release(stream) }
        let open = streams
        streams.removeAll()
        ready.removeAll()
        for stream in open.values { stream.call?.cancel() }
    }

    override func connectionDidClose() {
        server.remove(self)
    }
}

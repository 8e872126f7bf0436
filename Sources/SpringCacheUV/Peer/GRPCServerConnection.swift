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

    init(id: Int32, connection: GRPCServerConnection) {
        self.id = id
        self.connection = connection
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

    init(server: GRPCServer, tcp: UnsafeMutablePointer<uv_tcp_t>) {
        self.server = server
        super.init(loop: server.loop, tcp: tcp, buffers: server.buffers, isServer: true,
                   maxOutputBytes: server.settings.maxOutputBytesPerConnection)
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
        streams[f.hd.stream_id] = GRPCServerStream(id: f.hd.stream_id, connection: self)
        return 0
    }

    override func didReceiveHeader(_ frame: UnsafePointer<nghttp2_frame>, name: UnsafeRawBufferPointer,
                                   value: UnsafeRawBufferPointer) -> Int32 {
        let f = frame.pointee
        // Only the request's own header block; headers in trailers (none in gRPC) are ignored.
        guard f.hd.type == UInt8(NGHTTP2_HEADERS.rawValue), f.headers.cat == NGHTTP2_HCAT_REQUEST,
              let stream = streams[f.hd.stream_id] else { return 0 }
        if http2Equal(name, ":path") {
            stream.path = String(decoding: value, as: UTF8.self)
        } else if http2Equal(name, ":method") {
            stream.isPost = http2Equal(value, "POST")
        } else if http2Equal(name, "content-type") {
            stream.contentTypeOK = GRPCServerConnection.isGRPCContentType(value)
        } else if http2Equal(name, "grpc-timeout") {
            if let millis = GRPCTimeout.parse(value) {
                stream.timeoutMillis = millis
            } else {
                stream.timeoutMalformed = true
            }
        } else if http2Equal(name, "authorization") {
            stream.authorization = String(decoding: value, as: UTF8.self)
        } else if http2Equal(name, "grpc-encoding") {
            stream.encodingDeclared = !http2Equal(value, "identity")
        }
        return 0
    }

    /// `application/grpc`, optionally followed by `+format` or `;params` (PROTOCOL-HTTP2.md, Content-Type).
    static func isGRPCContentType(_ value: UnsafeRawBufferPointer) -> Bool {
        guard http2HasPrefix(value, "application/grpc") else { return false }
        let n = "application/grpc".utf8.count
        return value.count == n || value[n] == UInt8(ascii: "+") || value[n] == UInt8(ascii: ";")
    }

    override func didReceiveFrame(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let f = frame.pointee
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
            stream.deadlineMillis = loop.clock.nowMillis + timeout
        }
        stream.decoder = GRPCMessageDecoder(maxMessageBytes: server.settings.maxMessageBytes, maxMessages: 1,
                                            encodingDeclared: stream.encodingDeclared)
    }

    override func didReceiveData(streamID: Int32, _ data: UnsafeRawBufferPointer) -> Int32 {
        guard let stream = streams[streamID], !stream.answered, stream.decoder != nil else { return 0 }
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
        guard let stream = streams[streamID], let session else {
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
        if failedProtocol { server.stats.protocolErrors += 1 }
        let open = streams
        streams.removeAll()
        ready.removeAll()
        for stream in open.values { stream.call?.cancel() }
    }

    override func connectionDidClose() {
        server.remove(self)
    }
}

import CLibUV
import CNGHTTP2

/// A client-side HTTP/2 connection to one peer: connects, sends each call as a stream (HEADERS, one DATA
/// message with END_STREAM), and turns what comes back into the call's result (PROTOCOL-HTTP2.md).
final class GRPCClientConnection: HTTP2Connection {
    let client: GRPCClient
    var isDirty = false
    private(set) var wasConnected = false
    /// The server's first SETTINGS frame arrived (the HTTP/2 handshake is complete).
    private(set) var receivedSettings = false
    private let connectRequest: UnsafeMutablePointer<uv_connect_t>
    private var streams: [Int32: GRPCClientCall] = [:]
    /// Set by a GOAWAY with an error inside `mem_recv`; the connection is failed once that returns.
    private var failAfterInput: String?

    init(client: GRPCClient, tcp: UnsafeMutablePointer<uv_tcp_t>) {
        self.client = client
        connectRequest = .allocate(capacity: 1)
        super.init(loop: client.loop, tcp: tcp, buffers: client.buffers, isServer: false,
                   maxOutputBytes: client.settings.maxOutputBytes,
                   maxHeaderListBytes: client.settings.maxHeaderListBytes)
    }

    deinit {
        // libuv runs the connect callback (UV_ECANCELED at worst) before the handle's close callback.
        connectRequest.deallocate()
    }

    func connect(to address: UnsafePointer<sockaddr>) -> Int32 {
        sc_uv_req_set_data(connectRequest, Unmanaged.passUnretained(self).toOpaque())
        return uv_tcp_connect(connectRequest, tcp, address) { req, status in
            Unmanaged<GRPCClientConnection>.fromOpaque(sc_uv_req_get_data(req!)!).takeUnretainedValue()
                .didConnect(status)
        }
    }

    private func didConnect(_ status: Int32) {
        if isClosing { return }
        if status < 0 {
            client.connectFailed(self, reason: String(cString: uv_strerror(status)))
            return
        }
        wasConnected = true
        client.connected(self)
    }

    /// Sends the preface (nghttp2 adds the client magic) and our SETTINGS, and starts reading.
    func open() {
        let s = client.settings
        submitSettings([(NGHTTP2_SETTINGS_ENABLE_PUSH, 0),
                        (NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, UInt32(s.initialWindowSize)),
                        (NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, UInt32(s.maxHeaderListBytes))],
                       connectionWindow: s.connectionWindowSize)
        startReading()
    }

    // MARK: requests

    /// Submits `call` as a new stream; nghttp2 queues it if the server's stream limit is reached.
    func start(_ call: GRPCClientCall) {
        guard let session, !isClosing else {
            client.finish(call, .failure(GRPCCallError(status: .unavailable, message: "connection closing")))
            return
        }
        let h = client.headers
        h.reset()
        h.add(":method", "POST")
        h.add(":scheme", "http")
        h.add(":path", call.path)
        h.add(":authority", client.target.description)
        h.add("te", "trailers")
        h.add("content-type", "application/grpc")
        h.add("user-agent", client.settings.userAgent)
        h.add("grpc-accept-encoding", "identity")
        h.add("grpc-timeout", GRPCTimeout.encode(millis: max(call.expiresAtMillis - loop.clock.nowMillis, 1)))
        for (name, value) in call.metadata { h.add(name.lowercased(), value) }
        var provider = HTTP2Connection.dataProvider
        let id = h.withNV { nv, count in nghttp2_submit_request(session, nil, nv, count, &provider, nil) }
        if id < 0 {
            if id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE.rawValue { client.retire(self) }
            client.finish(call, .failure(GRPCCallError(
                status: .unavailable, message: "cannot start a stream: \(String(cString: nghttp2_strerror(id)))")))
            return
        }
        call.streamID = id
        call.connection = self
        streams[id] = call
    }

    override func readBody(streamID: Int32, into buffer: UnsafeMutablePointer<UInt8>, length: Int,
                           flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let call = streams[streamID], !call.isDone else {
            return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
        }
        let total = 5 + call.request.count
        var offset = call.requestOffset
        let n = min(length, total - offset)
        var out = 0
        while offset < 5 && out < n {
            buffer[out] = GRPCMessageDecoder.prefixByte(offset, length: call.request.count)
            out += 1
            offset += 1
        }
        if out < n {
            let count = n - out
            call.request.withUnsafeBufferPointer { src in
                (buffer + out).update(from: src.baseAddress! + (offset - 5), count: count)
            }
            offset += count
        }
        call.requestOffset = offset
        if offset == total {
            call.request = []
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
        }
        return n
    }

    /// The deadline passed (the call is already completed): reset the stream so the server stops working on it.
    func cancel(_ call: GRPCClientCall) {
        guard let session, !isClosing, call.streamID > 0, streams[call.streamID] === call else { return }
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), call.streamID, NGHTTP2_CANCEL.rawValue)
    }

    // MARK: responses

    override func didReceiveHeader(_ frame: UnsafePointer<nghttp2_frame>, name: UnsafeRawBufferPointer,
                                   value: UnsafeRawBufferPointer) -> Int32 {
        let f = frame.pointee
        guard f.hd.type == UInt8(NGHTTP2_HEADERS.rawValue), let call = streams[f.hd.stream_id], !call.isDone else {
            return 0
        }
        if name.equals(":status") {
            call.httpStatus = Int(String(decoding: value, as: UTF8.self)) ?? 0
        } else if name.equals("content-type") {
            call.contentTypeOK = GRPCServerConnection.isGRPCContentType(value)
        } else if name.equals("grpc-status") {
            // Error parsing returned status → UNKNOWN (statuscodes.md).
            call.grpcStatus = Int(String(decoding: value, as: UTF8.self)) ?? GRPCStatus.unknown.rawValue
        } else if name.equals("grpc-message") {
            call.grpcMessage = GRPCStatusMessage.decode(value)
        }
        return 0
    }

    override func didReceiveData(streamID: Int32, _ data: UnsafeRawBufferPointer) -> Int32 {
        guard let call = streams[streamID], !call.isDone else { return 0 }
        if let failure = call.decoder.feed(data) {
            // E.g. a response over maxMessageBytes: fail now, and reset so the rest is not sent.
            client.finish(call, .failure(GRPCCallError(status: failure.clientStatus, message: failure.message)))
            if let session {
                nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, NGHTTP2_CANCEL.rawValue)
            }
        }
        return 0
    }

    override func didReceiveFrame(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let f = frame.pointee
        if f.hd.type == UInt8(NGHTTP2_SETTINGS.rawValue) && f.hd.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) == 0
            && !receivedSettings {
            receivedSettings = true
            client.handshakeCompleted(self)
            return 0
        }
        guard f.hd.type == UInt8(NGHTTP2_GOAWAY.rawValue) else { return 0 }
        // nghttp2 closes the streams above last_stream_id itself (REFUSED_STREAM → UNAVAILABLE).
        client.retire(self)
        if f.goaway.error_code != NGHTTP2_NO_ERROR.rawValue {
            failAfterInput = "server sent GOAWAY (\(String(cString: nghttp2_http2_strerror(f.goaway.error_code))))"
        }
        return 0
    }

    override func didNotSendFrame(_ frame: UnsafePointer<nghttp2_frame>, error: Int32) -> Int32 {
        let f = frame.pointee
        guard f.hd.type == UInt8(NGHTTP2_HEADERS.rawValue),
              let call = streams.removeValue(forKey: f.hd.stream_id) else { return 0 }
        client.finish(call, .failure(GRPCCallError(
            status: .unavailable, message: "request not sent: \(String(cString: nghttp2_strerror(error)))")))
        return 0
    }

    override func didCloseStream(_ streamID: Int32, errorCode: UInt32) -> Int32 {
        guard let call = streams.removeValue(forKey: streamID) else { return 0 }
        if !call.isDone { client.finish(call, call.outcome(resetCode: errorCode)) }
        return 0
    }

    override func didProcessInput() {
        if let reason = failAfterInput {
            failAfterInput = nil
            close(reason: reason)
        }
        client.runCompletions()
    }

    // MARK: closing

    override func connectionDidFail(reason: String) {
        let calls = streams.sorted { $0.key < $1.key }.map { $0.value }
        streams.removeAll()
        client.connectionLost(self, reason: reason, calls: calls.filter { !$0.isDone })
    }

    override func connectionDidClose() {
        client.connectionClosed(self)
    }
}

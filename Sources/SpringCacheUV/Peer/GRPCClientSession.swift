import CNGHTTP2

/// What a `GRPCClientSession` needs from the client that owns it.
protocol GRPCClientSessionOwner: AnyObject {
    var settings: GRPCClientSettings { get }
    var headers: HTTP2HeaderBlock { get }
    /// The `:authority` of every request (the peer's address).
    var authority: String { get }
    /// Completes a call (queued; completions never run inside an nghttp2 callback).
    func finish(_ call: GRPCClientCall, _ result: GRPCResult)
    /// Runs the completions queued so far (called after nghttp2 returned).
    func runCompletions()
    /// The server's SETTINGS arrived: the handshake is complete.
    func sessionCompletedHandshake(_ session: GRPCClientSession)
    /// A GOAWAY arrived or no stream ids are left: new calls must go to a new connection.
    func retire(_ session: GRPCClientSession)
    /// The connection failed; `calls` (not yet completed, in stream order) fail with it.
    func sessionLost(_ session: GRPCClientSession, reason: String, calls: [GRPCClientCall])
}

/// The client side of one HTTP/2 session speaking gRPC (PROTOCOL-HTTP2.md), apart from I/O: sends each
/// call as a stream (HEADERS, one DATA message with END_STREAM) and turns what comes back into the call's
/// result.
final class GRPCClientSession: HTTP2Session {
    unowned let owner: GRPCClientSessionOwner
    /// The transport connected (the driver says so); a connection lost after that counts as lost.
    var wasConnected = false
    /// The server's first SETTINGS frame arrived (the HTTP/2 handshake is complete).
    private(set) var receivedSettings = false
    /// The calls by stream id, each as the use it was started for: a call object is reused once completed
    /// (see `GRPCClientCall`), and a stream of its old use may still be open here until its reset closes it.
    private var streams: [Int32: GRPCCallUse] = [:]

    /// The call of stream `id`, if that stream belongs to the call's current use and it has not completed.
    private func liveCall(_ id: Int32) -> GRPCClientCall? {
        streams[id]?.live
    }

    init(owner: GRPCClientSessionOwner, nowMillis: Int64) {
        self.owner = owner
        super.init(isServer: false, settings: owner.settings.http2, nowMillis: nowMillis)
    }

    /// Queues the preface (nghttp2 adds the client magic) and our SETTINGS.
    func open() {
        submitSettings()
    }

    // MARK: requests

    /// Submits `call` as a new stream; nghttp2 queues it if the server's stream limit is reached.
    func start(_ call: GRPCClientCall, now: Int64) {
        guard let session, !isClosed else {
            owner.finish(call, .failure(GRPCCallError(status: .unavailable, message: "connection closing")))
            return
        }
        let h = owner.headers
        h.reset()
        h.add(":method", "POST")
        h.add(":scheme", "http")
        h.add(":path", call.path)
        h.add(":authority", owner.authority)
        h.add("te", "trailers")
        h.add("content-type", "application/grpc")
        h.add("user-agent", owner.settings.userAgent)
        h.add("grpc-accept-encoding", "identity")
        h.add("grpc-timeout", GRPCTimeout.encode(millis: max(call.expiresAtMillis - now, 1)))
        for (name, value) in call.metadata { h.add(name.lowercased(), value) }
        var provider = HTTP2Session.dataProvider
        let id = h.withNV { nv, count in nghttp2_submit_request(session, nil, nv, count, &provider, nil) }
        if id < 0 {
            if id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE.rawValue { owner.retire(self) }
            owner.finish(call, .failure(GRPCCallError(
                status: .unavailable, message: "cannot start a stream: \(String(cString: nghttp2_strerror(id)))")))
            return
        }
        call.streamID = id
        call.session = self
        streams[id] = GRPCCallUse(call)
    }

    override func readBody(streamID: Int32, into buffer: UnsafeMutablePointer<UInt8>, length: Int,
                           flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let call = liveCall(streamID) else {
            return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
        }
        let n = copyGRPCMessage(call.request, from: &call.requestOffset, into: buffer, length: length)
        if call.requestOffset == GRPCMessageDecoder.prefixBytes + call.request.count {
            call.releaseRequest()
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
        }
        return n
    }

    /// The deadline passed (the call is already completed): reset the stream so the server stops working on it.
    func cancel(_ call: GRPCClientCall) {
        guard !isClosed, call.streamID > 0, let use = streams[call.streamID], use.call === call,
              use.generation == call.generation else { return }
        resetStream(call.streamID, code: NGHTTP2_CANCEL.rawValue)
    }

    // MARK: responses

    override func didReceiveHeader(_ frame: UnsafePointer<nghttp2_frame>, name: UnsafeRawBufferPointer,
                                   value: UnsafeRawBufferPointer) -> Int32 {
        let f = frame.pointee
        guard f.hd.type == UInt8(NGHTTP2_HEADERS.rawValue), let call = liveCall(f.hd.stream_id) else { return 0 }
        if name.equals(":status") {
            call.httpStatus = GRPCClientSession.decimal(value) ?? 0
        } else if name.equals("content-type") {
            call.contentTypeOK = GRPCServerSession.isGRPCContentType(value)
        } else if name.equals("grpc-status") {
            // Error parsing returned status → UNKNOWN (statuscodes.md).
            call.grpcStatus = GRPCClientSession.decimal(value) ?? GRPCStatus.unknown.rawValue
        } else if name.equals("grpc-message") {
            call.grpcMessage = GRPCStatusMessage.decode(value)
        }
        return 0
    }

    /// A small non-negative decimal (`:status`, `grpc-status`) read from the bytes, without making a String
    /// (which allocated twice per call); nil unless it is 1-9 ASCII digits.
    static func decimal(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard !bytes.isEmpty, bytes.count <= 9 else { return nil }
        var n = 0
        for b in bytes {
            guard b >= UInt8(ascii: "0"), b <= UInt8(ascii: "9") else { return nil }
            n = n * 10 + Int(b - UInt8(ascii: "0"))
        }
        return n
    }

    override func didReceiveData(streamID: Int32, _ data: UnsafeRawBufferPointer) -> Int32 {
        guard let call = liveCall(streamID) else { return 0 }
        if let failure = call.decoder.feed(data) {
            // E.g. a response over maxMessageBytes: fail now, and reset so the rest is not sent.
            owner.finish(call, .failure(GRPCCallError(status: failure.clientStatus, message: failure.message)))
            resetStream(streamID, code: NGHTTP2_CANCEL.rawValue)
        }
        return 0
    }

    override func didReceiveFrame(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let f = frame.pointee
        if f.hd.type == UInt8(NGHTTP2_SETTINGS.rawValue) && f.hd.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) == 0
            && !receivedSettings {
            receivedSettings = true
            owner.sessionCompletedHandshake(self)
            return 0
        }
        guard f.hd.type == UInt8(NGHTTP2_GOAWAY.rawValue) else { return 0 }
        // nghttp2 closes the streams above last_stream_id itself (REFUSED_STREAM → UNAVAILABLE).
        owner.retire(self)
        if f.goaway.error_code != NGHTTP2_NO_ERROR.rawValue {
            closeAfterInput = "server sent GOAWAY (\(String(cString: nghttp2_http2_strerror(f.goaway.error_code))))"
        }
        return 0
    }

    override func didNotSendFrame(_ frame: UnsafePointer<nghttp2_frame>, error: Int32) -> Int32 {
        let f = frame.pointee
        guard f.hd.type == UInt8(NGHTTP2_HEADERS.rawValue),
              let call = streams.removeValue(forKey: f.hd.stream_id)?.live else { return 0 }
        owner.finish(call, .failure(GRPCCallError(
            status: .unavailable, message: "request not sent: \(String(cString: nghttp2_strerror(error)))")))
        return 0
    }

    override func didCloseStream(_ streamID: Int32, errorCode: UInt32) -> Int32 {
        guard let call = streams.removeValue(forKey: streamID)?.live else { return 0 }
        owner.finish(call, call.outcome(resetCode: errorCode))
        return 0
    }

    override func didProcessInput() {
        // A GOAWAY with an error: the calls on this connection fail now, with the others completed below.
        if let reason = closeAfterInput { reportFailure(reason) }
        owner.runCompletions()
    }

    // MARK: closing

    override func connectionDidFail(reason: String) {
        let calls = streams.sorted { $0.key < $1.key }.compactMap { $0.value.live }
        streams.removeAll()
        owner.sessionLost(self, reason: reason, calls: calls)
    }
}

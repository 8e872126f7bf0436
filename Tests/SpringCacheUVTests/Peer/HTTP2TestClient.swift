import CNGHTTP2
import XCTest

@testable import SpringCacheUV

/// A raw nghttp2 client session for driving a server session from a test: no socket, bytes are handed
/// over by hand. Unlike our own client it can misbehave on purpose (oversized headers, a closed window,
/// resets, silence).
final class HTTP2TestClient {
    struct Stream {
        var headers: [(String, String)] = []
        var data: [UInt8] = []
        /// The RST_STREAM/close error code once the stream closed.
        var closedCode: UInt32?

        func header(_ name: String) -> String? { headers.last { $0.0 == name }?.1 }
        var grpcStatus: Int? { header("grpc-status").flatMap { Int($0) } }
        /// The response message without its 5-byte prefix.
        var message: [UInt8] { data.count >= 5 ? Array(data[5...]) : [] }
    }

    private(set) var session: OpaquePointer!
    var streams: [Int32: Stream] = [:]
    /// PINGs received that were not ACKs (nghttp2 answers them by itself).
    var pingsReceived = 0
    var goAwayCode: UInt32?
    /// Request bodies (with their gRPC prefix) being sent, by stream.
    private var bodies: [Int32: (bytes: [UInt8], offset: Int)] = [:]
    /// Streams whose body, once sent, leaves the stream open (`send(_:on:endStream:)` with false).
    private var openAfterBody: Set<Int32> = []
    private let headerBlock = HTTP2HeaderBlock()

    init(initialWindowSize: UInt32 = 65_535) {
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, nameLength, value, valueLength, _,
                                                                      userData in
            let c = HTTP2TestClient.from(userData)
            let n = String(decoding: UnsafeRawBufferPointer(start: name, count: nameLength), as: UTF8.self)
            let v = String(decoding: UnsafeRawBufferPointer(start: value, count: valueLength), as: UTF8.self)
            c.streams[frame!.pointee.hd.stream_id, default: Stream()].headers.append((n, v))
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, streamID, data, length, userData in
            HTTP2TestClient.from(userData).streams[streamID, default: Stream()].data
                .append(contentsOf: UnsafeBufferPointer(start: data, count: length))
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, userData in
            let c = HTTP2TestClient.from(userData)
            let f = frame!.pointee
            if f.hd.type == UInt8(NGHTTP2_PING.rawValue) && f.hd.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) == 0 {
                c.pingsReceived += 1
            }
            if f.hd.type == UInt8(NGHTTP2_GOAWAY.rawValue) { c.goAwayCode = f.goaway.error_code }
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, streamID, errorCode, userData in
            HTTP2TestClient.from(userData).streams[streamID, default: Stream()].closedCode = errorCode
            return 0
        }
        var created: OpaquePointer?
        nghttp2_session_client_new(&created, callbacks, Unmanaged.passUnretained(self).toOpaque())
        session = created
        var iv = [nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue),
                                         value: initialWindowSize),
                  nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0)]
        nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), &iv, iv.count)
    }

    deinit { nghttp2_session_del(session) }

    private static func from(_ userData: UnsafeMutableRawPointer?) -> HTTP2TestClient {
        Unmanaged<HTTP2TestClient>.fromOpaque(userData!).takeUnretainedValue()
    }

    /// Submits a gRPC request: POST to `path` with `message` (prefixed) as its body, or no body (and no
    /// END_STREAM) when `message` is nil. Returns the stream id.
    @discardableResult
    func request(_ message: [UInt8]?, path: String = PeerService.getPath, grpcTimeout: String? = nil,
                 extraHeaders: [(String, String)] = []) -> Int32 {
        let h = headerBlock
        h.reset()
        h.add(":method", "POST")
        h.add(":scheme", "http")
        h.add(":path", path)
        h.add(":authority", "test")
        h.add("te", "trailers")
        h.add("content-type", "application/grpc")
        if let grpcTimeout { h.add("grpc-timeout", grpcTimeout) }
        for (name, value) in extraHeaders { h.add(name, value) }
        guard let message else {
            return h.withNV { nv, count in nghttp2_submit_headers(session, 0, -1, nil, nv, count, nil) }
        }
        var provider = HTTP2TestClient.bodyProvider
        let id = h.withNV { nv, count in nghttp2_submit_request(session, nil, nv, count, &provider, nil) }
        bodies[id] = (HTTP2TestClient.prefixed(message), 0)
        return id
    }

    /// A gRPC Length-Prefixed-Message: the 5-byte prefix, then `message`.
    static func prefixed(_ message: [UInt8]) -> [UInt8] {
        let length = UInt32(message.count)
        return [0, UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF),
                UInt8(length & 0xFF)] + message
    }

    /// Sends `bytes` (raw: a gRPC prefix is the caller's) as DATA on `streamID`, opened by `request(nil)` and
    /// an `output()` since (nghttp2 opens a client stream when its HEADERS go out); the stream stays open
    /// unless `endStream`.
    func send(_ bytes: [UInt8], on streamID: Int32, endStream: Bool) {
        if endStream { openAfterBody.remove(streamID) } else { openAfterBody.insert(streamID) }
        bodies[streamID] = (bytes, 0)
        var provider = HTTP2TestClient.bodyProvider
        let rv = nghttp2_submit_data(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, &provider)
        XCTAssertEqual(rv, 0, "DATA refused: a stream is opened by `output()` after `request(nil)`")
    }

    /// Reads a stream's body from `bodies`.
    private static var bodyProvider: nghttp2_data_provider {
        nghttp2_data_provider(source: nghttp2_data_source(ptr: nil)) {
            _, streamID, buffer, length, flags, _, userData in
            let c = HTTP2TestClient.from(userData)
            guard var body = c.bodies[streamID] else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
            let n = min(length, body.bytes.count - body.offset)
            body.bytes.withUnsafeBufferPointer { src in buffer!.update(from: src.baseAddress! + body.offset, count: n) }
            body.offset += n
            c.bodies[streamID] = body
            if body.offset == body.bytes.count {
                flags!.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
                if c.openAfterBody.contains(streamID) { flags!.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue }
            }
            return n
        }
    }

    func reset(_ streamID: Int32, code: UInt32 = NGHTTP2_CANCEL.rawValue) {
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, code)
    }

    /// Everything the client has to send now.
    func output() -> [UInt8] {
        var out: [UInt8] = []
        while true {
            var data: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(session, &data)
            if n <= 0 { break }
            out.append(contentsOf: UnsafeBufferPointer(start: data, count: n))
        }
        return out
    }

    func input(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        let consumed = bytes.withUnsafeBufferPointer { nghttp2_session_mem_recv(session, $0.baseAddress, $0.count) }
        XCTAssertEqual(consumed, bytes.count, "the test client rejected the server's output")
    }
}

/// The driver side of a session under test: records what the session asked of its driver.
final class HTTP2TestDriver: HTTP2SessionDriver {
    var flushRequests = 0
    var closedReason: String?
    weak var session: HTTP2Session?

    func sessionWantsFlush() { flushRequests += 1 }
    var peerDescription: String { "test-peer" }
    func closeConnection(reason: String) {
        closedReason = reason
        session?.closed(reason: reason)
    }
}

/// The handler of the session tests: `never` is kept unanswered, anything else is echoed at once.
final class HTTP2TestHandler: GRPCServiceHandler {
    var calls: [GRPCServerCall] = []

    func handle(_ call: GRPCServerCall) {
        calls.append(call)
        if String(decoding: call.message, as: UTF8.self).hasPrefix("never") { return }
        call.respond(message: call.message)
    }
}

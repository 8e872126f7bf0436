import CNGHTTP2

/// The HTTP/2 settings both ends of a peer connection advertise (RFC 9113 §6.5.2); every bound is named
/// here (STYLE habit 8).
public struct HTTP2Settings {
    /// SETTINGS_INITIAL_WINDOW_SIZE: how much the other end may send on one stream before we consume it.
    /// A node sizes it with `sizeWindows` so that a whole message of the largest size arrives in one round
    /// trip, without waiting for a WINDOW_UPDATE.
    public var initialWindowSize: Int32 = 4 << 20
    /// The connection-level receive window (raised with WINDOW_UPDATE at start); `sizeWindows` ties it to
    /// the per-connection buffer bound.
    public var connectionWindowSize: Int32 = 16 << 20
    /// SETTINGS_MAX_FRAME_SIZE we advertise (the largest DATA payload the other end may send us in one
    /// frame), and the largest DATA payload we send (never more than the other end advertises: grpc-go and
    /// nghttp2's default stay at 16 KiB). Sending larger frames costs nghttp2 one frame buffer of this size
    /// per connection; receiving them costs nothing extra (DATA payloads are handed over as they arrive).
    public var maxFrameSize: Int32 = HTTP2Settings.defaultMaxFrameSize
    /// SETTINGS_MAX_HEADER_LIST_SIZE: decoded header bytes per request or response, advertised and enforced.
    public var maxHeaderListBytes = 16 << 10

    /// RFC 9113 §6.5.2: SETTINGS_MAX_FRAME_SIZE lies between 2^14 (the default) and 2^24 - 1.
    public static let frameSizeRange: ClosedRange<Int> = (1 << 14)...((1 << 24) - 1)
    public static let defaultMaxFrameSize: Int32 = 64 << 10
    /// The bytes a gRPC Length-Prefixed-Message adds to its message (for the start-up check of the buffer bounds).
    public static let grpcPrefixBytes = GRPCMessageDecoder.prefixBytes

    public init() {}

    /// Sizes the receive windows for messages of up to `maxMessageBytes` while holding to `bufferBytes`, the
    /// bytes one connection may make us buffer (`--peer-max-connection-buffer`): the stream window takes a
    /// whole message with its gRPC prefix, so one round trip carries it (no WINDOW_UPDATE, no stall), and
    /// the connection window is the buffer bound, so several such answers are in flight at once.
    ///
    /// Why the buffer bound caps both: a window is what the other end may send before we have consumed it,
    /// i.e. memory it may make us hold. Neither window exceeds `bufferBytes` (nor HTTP/2's 2^31 - 1); when
    /// the bound is smaller than a message plus its prefix, the largest messages take a WINDOW_UPDATE.
    public mutating func sizeWindows(maxMessageBytes: Int, bufferBytes: Int) {
        let cap = min(bufferBytes, Int(Int32.max))
        initialWindowSize = Int32(max(min(maxMessageBytes + HTTP2Settings.grpcPrefixBytes, cap), 1))
        connectionWindowSize = max(Int32(max(cap, 1)), initialWindowSize)
    }
}

/// What the driver of an `HTTP2Session` must do after giving it an event.
enum HTTP2Action: Equatable {
    /// Nothing beyond the usual: output may be waiting in the session, so pull it (`produceOutput`) when the
    /// socket can take it, and keep reading.
    case proceed
    /// Write what has been produced (e.g. a GOAWAY), read nothing more, then close.
    case closeWhenFlushed(reason: String)
    /// Close now; what is not written yet is dropped.
    case close(reason: String)
}

/// What an `HTTP2Session` needs from whoever moves its bytes: a way to be asked for a flush when output
/// appears outside an event (a handler answered later), and a name for the peer in reports.
protocol HTTP2SessionDriver: AnyObject {
    /// The session has output to send; pull it soon (the server batches these into the next loop turn).
    func sessionWantsFlush()
    /// The peer's address, looked up only when something is reported about it.
    var peerDescription: String { get }
    /// Closes the connection now (e.g. the server makes room for a new one); the session is told with
    /// `closed(reason:)`.
    func closeConnection(reason: String)
}

/// One HTTP/2 session as a value apart from I/O: nghttp2 owns the protocol, and this object turns the
/// events of one connection (bytes read, output pulled, write completed, closed) into actions for its
/// driver (write these bytes, close now, close once flushed). It never touches a socket or a timer, so
/// it is unit-tested by handing it bytes (STYLE habit 1; nghttp2: "mem_recv in, mem_send out").
///
/// Subclasses (`GRPCServerSession`, `GRPCClientSession`) implement the gRPC side through the `did…` hooks,
/// which run inside nghttp2 calls.
///
/// Re-entrancy rule: the `did…` hooks run inside `nghttp2_session_mem_recv`/`mem_send` and must neither
/// pull output nor run user code; work that may call user code is collected there and done in
/// `didProcessInput()` (after `mem_recv` returned) or later. `isInsideNGHTTP2` tells, and
/// `produceOutput` refuses to run while it holds.
class HTTP2Session {
    private(set) var session: OpaquePointer?
    weak var driver: HTTP2SessionDriver?

    /// SETTINGS_MAX_HEADER_LIST_SIZE as we advertise it, enforced (RFC 9113 §6.5.2 makes it advisory; we
    /// do not): a header block whose decoded size (RFC 7541 §4.1: name + value + 32 per field) passes it ends
    /// the connection. Why end it rather than reset the stream: HPACK lets a few bytes on the wire expand to
    /// megabytes of decoded fields, and the decoding is the cost, so the sender must not get to send more.
    let maxHeaderListBytes: Int
    /// Decoded size of the header block being received.
    private var headerBlockBytes = 0
    /// Why the peer's input was refused by one of our own checks (shown instead of nghttp2's generic text).
    private(set) var refusal: String?

    /// When the peer last sent anything (ms), and whether its SETTINGS (the end of the handshake) came.
    private(set) var lastInputMillis: Int64
    private(set) var handshakeComplete = false
    /// Whether output is waiting for the socket (the driver says so), and when output last left for it:
    /// a peer that stops reading is found by the age of its oldest unread output.
    var writeInFlight = false
    private(set) var lastWriteMillis: Int64

    /// True from the start of a read's processing until it returns: output wanted meanwhile is pulled once,
    /// by the driver, after `receive` returns.
    private(set) var processingInput = false
    /// Depth of nghttp2 calls that may run our callbacks (`mem_recv`, `mem_send`).
    private var nghttp2Depth = 0
    /// Whether we are inside an nghttp2 call (and so inside one of its callbacks, when a hook runs).
    var isInsideNGHTTP2: Bool { nghttp2Depth > 0 }

    /// The session has ended (GOAWAY sent or received and no stream left, or a failure): the driver writes
    /// what was produced and then closes.
    private(set) var isFinishing = false
    /// The driver closed the connection; nothing is produced or accepted any more.
    private(set) var isClosed = false
    private var failureReported = false
    /// Whether the connection ended because the peer broke HTTP/2: nghttp2 rejected its input, or sent
    /// a GOAWAY with an error code on its own (bad frame, flow-control violation, …).
    private(set) var failedProtocol = false
    private var goAwayErrorSent: UInt32?

    private(set) var bytesIn: UInt64 = 0
    private(set) var bytesOut: UInt64 = 0
    /// Pulls that produced output: one per write the driver makes (tests check calls are coalesced).
    private(set) var outputBatches: UInt64 = 0
    /// Set by a hook that decided, inside `mem_recv`, that the connection must end (e.g. a GOAWAY with an
    /// error arrived): `receive` then answers `.close` with it.
    var closeAfterInput: String?

    /// Most entries in one SETTINGS frame, queued ACKs, HPACK encoder table, CONTINUATIONs per block.
    static let maxSettingsEntries = 32
    static let maxOutboundAcks = 1000
    static let maxDeflateTableBytes = 4096
    static let maxContinuations = 8

    /// Our side's settings, sent by `submitSettings`.
    let settings: HTTP2Settings
    /// nghttp2's memory (free lists, not malloc, for what every stream allocates); freed after the session.
    let allocator = HTTP2Allocator()

    /// Creates the nghttp2 session (`session` stays nil if nghttp2 cannot: the owner then closes).
    init(isServer: Bool, settings: HTTP2Settings, nowMillis: Int64) {
        self.settings = settings
        maxHeaderListBytes = settings.maxHeaderListBytes
        lastInputMillis = nowMillis
        lastWriteMillis = nowMillis
        var callbacks: OpaquePointer?
        guard nghttp2_session_callbacks_new(&callbacks) == 0 else { return }
        defer { nghttp2_session_callbacks_del(callbacks) }
        HTTP2Session.install(callbacks)
        var option: OpaquePointer?
        guard nghttp2_option_new(&option) == 0 else { return }
        defer { nghttp2_option_del(option) }
        // Why: without it nghttp2 keeps closed streams around for priority bookkeeping that gRPC never uses.
        nghttp2_option_set_no_closed_streams(option, 1)
        // Why explicit: these bound what a peer can make us queue or remember (SETTINGS entries, ACKs for its
        // PINGs and SETTINGS, HPACK table we encode against, CONTINUATION frames per header block); nghttp2's
        // defaults happen to be close, but a bound the node relies on is written where it is relied on.
        nghttp2_option_set_max_settings(option, HTTP2Session.maxSettingsEntries)
        nghttp2_option_set_max_outbound_ack(option, HTTP2Session.maxOutboundAcks)
        nghttp2_option_set_max_deflate_dynamic_table_size(option, HTTP2Session.maxDeflateTableBytes)
        nghttp2_option_set_max_continuations(option, HTTP2Session.maxContinuations)
        let userData = Unmanaged.passUnretained(self).toOpaque()
        var created: OpaquePointer?
        var mem = allocator.nghttp2Mem
        let status = isServer ? nghttp2_session_server_new3(&created, callbacks, userData, option, &mem)
                              : nghttp2_session_client_new3(&created, callbacks, userData, option, &mem)
        if status == 0 { session = created }
    }

    deinit {
        if let session { nghttp2_session_del(session) }
    }

    // MARK: subclass hooks (default: ignore); they run inside nghttp2 calls

    func didBeginHeaders(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 { 0 }
    func didReceiveHeader(_ frame: UnsafePointer<nghttp2_frame>, name: UnsafeRawBufferPointer,
                          value: UnsafeRawBufferPointer) -> Int32 { 0 }
    func didReceiveData(streamID: Int32, _ data: UnsafeRawBufferPointer) -> Int32 { 0 }
    func didReceiveFrame(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 { 0 }
    func didSendFrame(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 { 0 }
    func didNotSendFrame(_ frame: UnsafePointer<nghttp2_frame>, error: Int32) -> Int32 { 0 }
    func didCloseStream(_ streamID: Int32, errorCode: UInt32) -> Int32 { 0 }
    /// Fills `buffer` with up to `length` bytes of a body submitted with `dataProvider`; sets
    /// NGHTTP2_DATA_FLAG_EOF (and, for trailers, NO_END_STREAM) in `flags` at the end.
    func readBody(streamID: Int32, into buffer: UnsafeMutablePointer<UInt8>, length: Int,
                  flags: UnsafeMutablePointer<UInt32>) -> Int {
        Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
    }

    // MARK: subclass hooks that run outside nghttp2

    /// After one read's input went through nghttp2 (it has returned): run user code here.
    func didProcessInput() {}
    /// The connection failed or is being closed: called exactly once, with why.
    func connectionDidFail(reason: String) {}

    // MARK: nghttp2 callbacks (non-capturing trampolines; user_data is this object, unretained)

    private static func from(_ userData: UnsafeMutableRawPointer?) -> HTTP2Session {
        Unmanaged<HTTP2Session>.fromOpaque(userData!).takeUnretainedValue()
    }

    private static func install(_ callbacks: OpaquePointer?) {
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks) { _, frame, userData in
            let s = HTTP2Session.from(userData)
            s.headerBlockBytes = 0
            return s.didBeginHeaders(frame!)
        }
        nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, nameLength, value, valueLength, _,
                                                                      userData in
            let s = HTTP2Session.from(userData)
            s.headerBlockBytes += nameLength + valueLength + 32
            if s.headerBlockBytes > s.maxHeaderListBytes {
                s.refusal = "header list over \(s.maxHeaderListBytes) bytes (SETTINGS_MAX_HEADER_LIST_SIZE)"
                return NGHTTP2_ERR_CALLBACK_FAILURE.rawValue
            }
            return s.didReceiveHeader(
                frame!, name: UnsafeRawBufferPointer(start: name, count: nameLength),
                value: UnsafeRawBufferPointer(start: value, count: valueLength))
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, streamID, data, length, userData in
            HTTP2Session.from(userData).didReceiveData(streamID: streamID,
                                                       UnsafeRawBufferPointer(start: data, count: length))
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, userData in
            let s = HTTP2Session.from(userData)
            let hd = frame!.pointee.hd
            if hd.type == UInt8(NGHTTP2_SETTINGS.rawValue) && hd.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) == 0 {
                s.handshakeComplete = true
            }
            return s.didReceiveFrame(frame!)
        }
        nghttp2_session_callbacks_set_on_frame_not_send_callback(callbacks) { _, frame, error, userData in
            HTTP2Session.from(userData).didNotSendFrame(frame!, error: error)
        }
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks) { _, frame, userData in
            let f = frame!.pointee
            let s = HTTP2Session.from(userData)
            if f.hd.type == UInt8(NGHTTP2_GOAWAY.rawValue) && f.goaway.error_code != NGHTTP2_NO_ERROR.rawValue {
                s.goAwayErrorSent = f.goaway.error_code
            }
            return s.didSendFrame(frame!)
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, streamID, errorCode, userData in
            HTTP2Session.from(userData).didCloseStream(streamID, errorCode: errorCode)
        }
        nghttp2_session_callbacks_set_data_source_read_length_callback(callbacks) { _, _, _, _, _, _, userData in
            // nghttp2 clamps this to the windows and to the other end's SETTINGS_MAX_FRAME_SIZE.
            Int(HTTP2Session.from(userData).settings.maxFrameSize)
        }
    }

    /// A data provider whose reads go to `readBody(streamID:…)`; nghttp2 copies the struct on submit.
    static var dataProvider: nghttp2_data_provider {
        nghttp2_data_provider(source: nghttp2_data_source(ptr: nil)) {
            _, streamID, buffer, length, flags, _, userData in
            HTTP2Session.from(userData).readBody(streamID: streamID, into: buffer!, length: length, flags: flags!)
        }
    }

    // MARK: events

    /// Bytes read from the peer. Hooks run while nghttp2 consumes them, then `didProcessInput`; the driver
    /// then pulls output (`produceOutput`) unless told to close.
    func receive(_ bytes: UnsafeRawBufferPointer, now: Int64) -> HTTP2Action {
        guard let session, !isClosed, !isFinishing, bytes.count > 0 else { return .proceed }
        bytesIn += UInt64(bytes.count)
        lastInputMillis = now
        processingInput = true
        nghttp2Depth += 1
        let consumed = nghttp2_session_mem_recv(
            session, bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes.count)
        nghttp2Depth -= 1
        if consumed < 0 {
            processingInput = false
            return protocolFailure(Int32(consumed))
        }
        didProcessInput()
        processingInput = false
        if let reason = closeAfterInput {
            closeAfterInput = nil
            reportFailure(reason)
            return .close(reason: reason)
        }
        return .proceed
    }

    /// nghttp2 gave up on the input (bad preface, flood, …): say GOAWAY if the peer speaks HTTP/2, then close.
    private func protocolFailure(_ code: Int32) -> HTTP2Action {
        failedProtocol = true
        if let refusal {
            return terminate(errorCode: NGHTTP2_ENHANCE_YOUR_CALM.rawValue, reason: "HTTP/2 abuse: \(refusal)")
        }
        let reason = "HTTP/2 error: \(String(cString: nghttp2_strerror(code)))"
        if code == NGHTTP2_ERR_BAD_CLIENT_MAGIC.rawValue {
            // Not HTTP/2 at all (e.g. an HTTP/1.1 request): a GOAWAY would be noise to it.
            reportFailure(reason)
            return .close(reason: reason)
        }
        return terminate(errorCode: NGHTTP2_PROTOCOL_ERROR.rawValue, reason: reason)
    }

    /// Queues GOAWAY with `errorCode` (streams fail now); the driver writes it and closes.
    func terminate(errorCode: UInt32, reason: String) -> HTTP2Action {
        guard !isClosed else { return .proceed }
        reportFailure(reason)
        guard let session, nghttp2_session_terminate_session(session, errorCode) == 0 else {
            return .close(reason: reason)
        }
        isFinishing = true
        return .closeWhenFlushed(reason: reason)
    }

    /// Ends the session after what was already produced has been written; reads nothing more.
    func finish(reason: String) -> HTTP2Action {
        guard !isClosed else { return .proceed }
        reportFailure(reason)
        isFinishing = true
        return .closeWhenFlushed(reason: reason)
    }

    /// Appends what nghttp2 has to send to `out` while `out` holds fewer than `budget` bytes (nghttp2 keeps
    /// the rest: its data providers are pulled lazily, so a slow reader cannot make us buffer more).
    /// Returns `.closeWhenFlushed` once the session is over (GOAWAY sent or received, no stream left).
    func produceOutput(into out: inout ByteBuffer, budget: Int) -> HTTP2Action {
        precondition(!isInsideNGHTTP2, "output pulled from inside an nghttp2 callback")
        guard let session, !isClosed, !processingInput else { return .proceed }
        let start = out.count
        var failed: String?
        nghttp2Depth += 1
        while out.count < budget {
            var data: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(session, &data)
            if n < 0 {
                failed = "HTTP/2 send error: \(String(cString: nghttp2_strerror(Int32(n))))"
                break
            }
            if n == 0 { break }
            out.append(UnsafeRawBufferPointer(start: data, count: n))
        }
        nghttp2Depth -= 1
        bytesOut += UInt64(out.count - start)
        if out.count > start { outputBatches += 1 }
        if let failed {
            reportFailure(failed)
            return .close(reason: failed)
        }
        if isFinishing { return .closeWhenFlushed(reason: "connection finished") }
        if nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0 {
            // GOAWAY sent or received and no stream left: the session is done.
            if let code = goAwayErrorSent {
                failedProtocol = true
                reportFailure("HTTP/2 error: sent GOAWAY (\(String(cString: nghttp2_http2_strerror(code))))")
            }
            isFinishing = true
            return .closeWhenFlushed(reason: "connection finished")
        }
        return .proceed
    }

    /// Output left for the socket (a write completed).
    func writeCompleted(now: Int64) {
        lastWriteMillis = now
    }

    /// The driver is closing the connection: streams fail now (`connectionDidFail`, once), nothing more is
    /// produced.
    func closed(reason: String) {
        guard !isClosed else { return }
        reportFailure(reason)
        isClosed = true
    }

    /// Fails the connection now (`connectionDidFail`, once), e.g. before running completions of its calls;
    /// the driver closes it after.
    func reportFailure(_ reason: String) {
        guard !failureReported else { return }
        failureReported = true
        connectionDidFail(reason: reason)
    }

    /// Asks the driver to pull output; during a read's processing that happens once at its end anyway.
    func requestFlush() {
        if !processingInput { driver?.sessionWantsFlush() }
    }

    // MARK: helpers for subclasses

    /// Submits our SETTINGS (`settings`, push disabled, and `extra`) and raises the connection-level receive
    /// window (RFC 9113 §6.9.2: SETTINGS only changes stream windows; the connection window grows only by
    /// WINDOW_UPDATE).
    func submitSettings(extra: [(NGHTTP2_SETTINGS_ID, UInt32)] = []) {
        guard let session else { return }
        let entries = [(NGHTTP2_SETTINGS_ENABLE_PUSH, 0),
                       (NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, UInt32(settings.initialWindowSize)),
                       (NGHTTP2_SETTINGS_MAX_FRAME_SIZE, UInt32(settings.maxFrameSize)),
                       (NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, UInt32(settings.maxHeaderListBytes))] + extra
        let iv = entries.map { nghttp2_settings_entry(settings_id: Int32($0.0.rawValue), value: $0.1) }
        _ = iv.withUnsafeBufferPointer { nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue),
                                                                 $0.baseAddress, $0.count) }
        _ = nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0,
                                                  settings.connectionWindowSize)
    }

    /// Resets `streamID` (RST_STREAM with `code`); sent with the next output.
    func resetStream(_ streamID: Int32, code: UInt32) {
        guard let session else { return }
        nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, code)
    }
}

typealias NGHTTP2_SETTINGS_ID = nghttp2_settings_id

/// A reusable list of header fields turned into `nghttp2_nv` for one submit call.
///
/// nghttp2 copies the name/value pairs inside every `nghttp2_submit_*` call, so the bytes only need to live
/// for that call; one block per owner is reused and nothing is allocated per response once it has grown.
final class HTTP2HeaderBlock {
    private var bytes = ByteBuffer(capacity: 1024)
    private var spans: [(name: Int, nameLength: Int, value: Int, valueLength: Int)] = []

    init() { spans.reserveCapacity(16) }

    func reset() {
        bytes.count = 0
        spans.removeAll(keepingCapacity: true)
    }

    func add(_ name: StaticString, _ value: StaticString) {
        add(UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount),
            UnsafeRawBufferPointer(start: value.utf8Start, count: value.utf8CodeUnitCount))
    }

    func add(_ name: StaticString, _ value: String) {
        var value = value
        value.withUTF8 { v in
            add(UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount), UnsafeRawBufferPointer(v))
        }
    }

    func add(_ name: String, _ value: String) {
        var name = name
        var value = value
        name.withUTF8 { n in value.withUTF8 { v in add(UnsafeRawBufferPointer(n), UnsafeRawBufferPointer(v)) } }
    }

    func add(_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) {
        let nameAt = bytes.count
        bytes.append(name)
        let valueAt = bytes.count
        bytes.append(value)
        spans.append((nameAt, name.count, valueAt, value.count))
    }

    /// A header field whose name and value live for the whole process (a `StaticString`), to submit with
    /// NGHTTP2_NV_FLAG_NO_COPY_NAME/VALUE: nghttp2 keeps pointing at these bytes instead of copying them
    /// (nghttp2_submit_request's contract: they must outlive the frame). The name must be lower case.
    static func staticField(_ name: StaticString, _ value: StaticString) -> nghttp2_nv {
        nghttp2_nv(name: UnsafeMutablePointer(mutating: name.utf8Start),
                   value: UnsafeMutablePointer(mutating: value.utf8Start),
                   namelen: name.utf8CodeUnitCount, valuelen: value.utf8CodeUnitCount,
                   flags: UInt8(NGHTTP2_NV_FLAG_NO_COPY_NAME.rawValue | NGHTTP2_NV_FLAG_NO_COPY_VALUE.rawValue))
    }

    /// Calls `body` with the fields as an `nghttp2_nv` array valid only during the call.
    func withNV<R>(_ body: (UnsafePointer<nghttp2_nv>, Int) -> R) -> R {
        withUnsafeTemporaryAllocation(of: nghttp2_nv.self, capacity: max(spans.count, 1)) { nv in
            for (i, s) in spans.enumerated() {
                nv[i] = nghttp2_nv(name: bytes.base + s.name, value: bytes.base + s.value,
                                   namelen: s.nameLength, valuelen: s.valueLength,
                                   flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
            }
            return body(UnsafePointer(nv.baseAddress!), spans.count)
        }
    }
}

/// Copies the next `length`-bounded piece of a gRPC Length-Prefixed-Message (the 5-byte prefix, then
/// `message`) into `buffer`, from `offset` on; returns how many bytes it wrote and advances `offset`.
/// Both sides send one message per stream through it (the server its answer, the client its request).
func copyGRPCMessage(_ message: [UInt8], from offset: inout Int, into buffer: UnsafeMutablePointer<UInt8>,
                     length: Int) -> Int {
    message.withUnsafeBytes { copyGRPCMessage($0, from: &offset, into: buffer, length: length) }
}

/// `copyGRPCMessage` for a message held elsewhere (the server's answer buffer, `GRPCServerStream.response`).
func copyGRPCMessage(_ message: UnsafeRawBufferPointer, from offset: inout Int,
                     into buffer: UnsafeMutablePointer<UInt8>, length: Int) -> Int {
    let prefix = GRPCMessageDecoder.prefixBytes
    let total = prefix + message.count
    let n = min(length, total - offset)
    var out = 0
    while offset < prefix && out < n {
        buffer[out] = GRPCMessageDecoder.prefixByte(offset, length: message.count)
        out += 1
        offset += 1
    }
    if out < n {
        let count = n - out
        let source = message.baseAddress! + (offset - prefix)
        UnsafeMutableRawPointer(buffer + out).copyMemory(from: source, byteCount: count)
        offset += count
    }
    return n
}

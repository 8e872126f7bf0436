import CLibUV
import CNGHTTP2
#if canImport(Glibc)
import Glibc
#endif

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

/// One TCP connection carrying HTTP/2: the loop owns the socket, nghttp2 owns the protocol.
///
/// nghttp2 does no I/O (STYLE: "mem_recv in, mem_send out"): every read is handed to
/// `nghttp2_session_mem_recv`, whose callbacks arrive as the overridable `did…` methods below; after the
/// input is processed, `flush()` drains `nghttp2_session_mem_send` into one write. Subclasses
/// (`GRPCServerConnection`, `GRPCClientConnection`) implement the gRPC side.
///
/// Lifecycle (libuv's): the object retains itself in the TCP handle's `data` from `init` until the close
/// callback, which is the only place it is released; the nghttp2 session is deleted in `deinit`, so it is
/// never freed while one of its callbacks is running. A connection that must die is closed with
/// `close(reason:)` (at once) or `closeWhenFlushed(reason:)` (after the bytes already produced, e.g. a
/// GOAWAY, are written).
///
/// Re-entrancy rule: the `did…` callbacks run inside nghttp2 calls and must not call `flush()`; work
/// that may call user code is collected there and done in `didProcessInput()` or later.
class HTTP2Connection {
    let loop: EventLoop
    let tcp: UnsafeMutablePointer<uv_tcp_t>
    let buffers: HTTP2IOBuffers
    let maxOutputBytes: Int
    private(set) var session: OpaquePointer?

    /// Output the kernel has not taken yet.
    private var output = StreamWriteQueue()
    var writeInFlight: Bool { output.inFlight }
    /// `output.backlog` as last added to `buffers.queuedOutputBytes`.
    private var accountedBacklog = 0
    /// When output last left for the socket (loop ms): a peer that stops reading is found by its age.
    private(set) var lastWriteMillis: Int64 = 0

    /// Whether the owner wants input (set by `startReading`); `reading` is whether uv is reading now,
    /// which is false while output is backed up (backpressure).
    private var readWanted = false
    private var reading = false
    private(set) var isClosing = false
    private var closeAfterFlush = false
    private var failureReported = false
    /// True from the start of a read's processing until its flush: flushes wanted meanwhile happen once.
    private(set) var processingInput = false

    /// Whether the connection ended because the peer broke HTTP/2: nghttp2 rejected its input, or sent
    /// a GOAWAY with an error code on its own (bad frame, flow-control violation, …).
    private(set) var failedProtocol = false
    private var goAwayErrorSent: UInt32?

    private(set) var bytesIn: UInt64 = 0
    private(set) var bytesOut: UInt64 = 0

    /// SETTINGS_MAX_HEADER_LIST_SIZE as we advertise it, enforced (RFC 9113 §6.5.2 makes it advisory; we
    /// do not): a header block whose decoded size (RFC 7541 §4.1: name + value + 32 per field) passes it ends
    /// the connection. Why end it rather than reset the stream: HPACK lets a few bytes on the wire expand to
    /// megabytes of decoded fields, and the decoding is the cost, so the sender must not get to send more.
    let maxHeaderListBytes: Int
    /// Decoded size of the header block being received.
    private var headerBlockBytes = 0
    /// Why the peer's input was refused by one of our own checks (shown instead of nghttp2's generic text).
    private var refusal: String?
    /// When the peer last sent anything (loop ms), and whether its SETTINGS (the end of the handshake) came.
    private(set) var lastInputMillis: Int64
    private(set) var handshakeComplete = false

    /// Creates the nghttp2 session; the handle must be initialized (`uv_tcp_init`) by the caller and is
    /// owned by this object from now on, also when the session cannot be created (then it closes at once).
    init(loop: EventLoop, tcp: UnsafeMutablePointer<uv_tcp_t>, buffers: HTTP2IOBuffers, isServer: Bool,
         maxOutputBytes: Int, maxHeaderListBytes: Int) {
        self.loop = loop
        self.tcp = tcp
        self.buffers = buffers
        self.maxOutputBytes = maxOutputBytes
        self.maxHeaderListBytes = maxHeaderListBytes
        lastInputMillis = loop.clock.nowMillis
        lastWriteMillis = lastInputMillis
        sc_uv_handle_set_data(tcp, Unmanaged.passRetained(self).toOpaque())
        uv_tcp_nodelay(tcp, 1)

        var callbacks: OpaquePointer?
        guard nghttp2_session_callbacks_new(&callbacks) == 0 else { return }
        defer { nghttp2_session_callbacks_del(callbacks) }
        HTTP2Connection.install(callbacks)
        var option: OpaquePointer?
        guard nghttp2_option_new(&option) == 0 else { return }
        defer { nghttp2_option_del(option) }
        // Why: without it nghttp2 keeps closed streams around for priority bookkeeping that gRPC never uses.
        nghttp2_option_set_no_closed_streams(option, 1)
        // Why explicit: these bound what a peer can make us queue or remember (SETTINGS entries, ACKs for its
        // PINGs and SETTINGS, HPACK table we encode against, CONTINUATION frames per header block); nghttp2's
        // defaults happen to be close, but a bound the node relies on is written where it is relied on.
        nghttp2_option_set_max_settings(option, HTTP2Connection.maxSettingsEntries)
        nghttp2_option_set_max_outbound_ack(option, HTTP2Connection.maxOutboundAcks)
        nghttp2_option_set_max_deflate_dynamic_table_size(option, HTTP2Connection.maxDeflateTableBytes)
        nghttp2_option_set_max_continuations(option, HTTP2Connection.maxContinuations)
        let userData = Unmanaged.passUnretained(self).toOpaque()
        var created: OpaquePointer?
        let status = isServer ? nghttp2_session_server_new2(&created, callbacks, userData, option)
                              : nghttp2_session_client_new2(&created, callbacks, userData, option)
        if status == 0 { session = created }
    }

    /// Most entries in one SETTINGS frame, queued ACKs, HPACK encoder table, CONTINUATIONs per block.
    static let maxSettingsEntries = 32
    static let maxOutboundAcks = 1000
    static let maxDeflateTableBytes = 4096
    static let maxContinuations = 8

    deinit {
        precondition(isClosing, "HTTP2Connection released without close()")
        if let session { nghttp2_session_del(session) }
        output.deallocate()
        tcp.deallocate()
    }

    var stream: UnsafeMutablePointer<uv_stream_t> {
        UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_stream_t.self)
    }

    private static func owner(_ handle: UnsafeRawPointer) -> HTTP2Connection {
        Unmanaged<HTTP2Connection>.fromOpaque(sc_uv_handle_get_data(handle)!).takeUnretainedValue()
    }

    // MARK: subclass hooks (default: ignore)

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
    /// After one read's input went through nghttp2, before the flush: run user code here.
    func didProcessInput() {}
    /// The connection failed or is being closed: called exactly once, before the close, with why.
    func connectionDidFail(reason: String) {}
    /// From the uv close callback, just before the object is released.
    func connectionDidClose() {}

    // MARK: nghttp2 callbacks (non-capturing trampolines; user_data is this object, unretained)

    private static func from(_ userData: UnsafeMutableRawPointer?) -> HTTP2Connection {
        Unmanaged<HTTP2Connection>.fromOpaque(userData!).takeUnretainedValue()
    }

    private static func install(_ callbacks: OpaquePointer?) {
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks) { _, frame, userData in
            let c = HTTP2Connection.from(userData)
            c.headerBlockBytes = 0
            return c.didBeginHeaders(frame!)
        }
        nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, nameLength, value, valueLength, _,
                                                                      userData in
            let c = HTTP2Connection.from(userData)
            c.headerBlockBytes += nameLength + valueLength + 32
            if c.headerBlockBytes > c.maxHeaderListBytes {
                c.refusal = "header list over \(c.maxHeaderListBytes) bytes (SETTINGS_MAX_HEADER_LIST_SIZE)"
                return NGHTTP2_ERR_CALLBACK_FAILURE.rawValue
            }
            return c.didReceiveHeader(
                frame!, name: UnsafeRawBufferPointer(start: name, count: nameLength),
                value: UnsafeRawBufferPointer(start: value, count: valueLength))
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, streamID, data, length, userData in
            HTTP2Connection.from(userData).didReceiveData(streamID: streamID,
                                                          UnsafeRawBufferPointer(start: data, count: length))
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, userData in
            let c = HTTP2Connection.from(userData)
            let hd = frame!.pointee.hd
            if hd.type == UInt8(NGHTTP2_SETTINGS.rawValue) && hd.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) == 0 {
                c.handshakeComplete = true
            }
            return c.didReceiveFrame(frame!)
        }
        nghttp2_session_callbacks_set_on_frame_not_send_callback(callbacks) { _, frame, error, userData in
            HTTP2Connection.from(userData).didNotSendFrame(frame!, error: error)
        }
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks) { _, frame, userData in
            let f = frame!.pointee
            let c = HTTP2Connection.from(userData)
            if f.hd.type == UInt8(NGHTTP2_GOAWAY.rawValue) && f.goaway.error_code != NGHTTP2_NO_ERROR.rawValue {
                c.goAwayErrorSent = f.goaway.error_code
            }
            return c.didSendFrame(frame!)
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, streamID, errorCode, userData in
            HTTP2Connection.from(userData).didCloseStream(streamID, errorCode: errorCode)
        }
    }

    /// A data provider whose reads go to `readBody(streamID:…)`; nghttp2 copies the struct on submit.
    static var dataProvider: nghttp2_data_provider {
        nghttp2_data_provider(source: nghttp2_data_source(ptr: nil)) { _, streamID, buffer, length, flags, _, userData in
            HTTP2Connection.from(userData).readBody(streamID: streamID, into: buffer!, length: length, flags: flags!)
        }
    }

    // MARK: reading

    /// Starts (or resumes) reading. Input is processed as it arrives; output is flushed after each read.
    func startReading() {
        readWanted = true
        resumeReading()
    }

    private func resumeReading() {
        guard readWanted, !reading, !isClosing, !closeAfterFlush else { return }
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
        guard let session, !closeAfterFlush else { return }
        bytesIn += UInt64(nread)
        lastInputMillis = loop.clock.nowMillis
        processingInput = true
        let consumed = nghttp2_session_mem_recv(session, buffers.read, nread)
        if consumed < 0 {
            processingInput = false
            protocolFailure(Int32(consumed))
            return
        }
        didProcessInput()
        processingInput = false
        flush()
    }

    /// nghttp2 gave up on the input (bad preface, flood, …): say GOAWAY if the peer speaks HTTP/2, then close.
    private func protocolFailure(_ code: Int32) {
        failedProtocol = true
        if let refusal {
            terminate(errorCode: NGHTTP2_ENHANCE_YOUR_CALM.rawValue, reason: "HTTP/2 abuse: \(refusal)")
            return
        }
        let reason = "HTTP/2 error: \(String(cString: nghttp2_strerror(code)))"
        if code == NGHTTP2_ERR_BAD_CLIENT_MAGIC.rawValue || session == nil {
            // Not HTTP/2 at all (e.g. an HTTP/1.1 request): a GOAWAY would be noise to it.
            close(reason: reason)
            return
        }
        terminate(errorCode: NGHTTP2_PROTOCOL_ERROR.rawValue, reason: reason)
    }

    /// Sends GOAWAY with `errorCode` and closes once it is written; streams fail now.
    func terminate(errorCode: UInt32, reason: String) {
        guard !isClosing else { return }
        reportFailure(reason)
        if let session, nghttp2_session_terminate_session(session, errorCode) == 0 {
            closeWhenFlushed(reason: reason)
        } else {
            close(reason: reason)
        }
    }

    // MARK: writing

    private var outputBacklog: Int { output.backlog }

    private static let writeCallback: uv_write_cb = { req, status in
        Unmanaged<HTTP2Connection>.fromOpaque(sc_uv_req_get_data(req!)!).takeUnretainedValue().didWrite(status)
    }

    /// Drains what nghttp2 has to send into one write. Stops draining while `maxOutputBytes` are already
    /// waiting for the socket (nghttp2 keeps the rest: its data providers are pulled lazily), and stops
    /// reading until the peer reads: a peer that does not read its answers cannot make us buffer more.
    func flush() {
        guard !isClosing, let session else { return }
        if processingInput { return }  // the read that is being processed flushes once at its end
        buffers.output.count = 0
        var failed: String?
        while outputBacklog + buffers.output.count < maxOutputBytes
                && (outputBacklog == 0 || buffers.queuedOutputBytes + buffers.output.count < buffers.maxQueuedOutputBytes) {
            var data: UnsafePointer<UInt8>?
            let n = nghttp2_session_mem_send(session, &data)
            if n < 0 {
                failed = "HTTP/2 send error: \(String(cString: nghttp2_strerror(Int32(n))))"
                break
            }
            if n == 0 { break }
            buffers.output.append(UnsafeRawBufferPointer(start: data, count: n))
        }
        if buffers.output.count > 0 { write() }
        if let failed {
            close(reason: failed)
            return
        }
        if isClosing { return }
        if nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0 {
            // GOAWAY sent or received and no stream left: the session is done.
            if !closeAfterFlush, let code = goAwayErrorSent {
                failedProtocol = true
                reportFailure("HTTP/2 error: sent GOAWAY (\(String(cString: nghttp2_http2_strerror(code))))")
            }
            closeAfterFlush = true
        }
        if closeAfterFlush {
            pauseReading()
            if !writeInFlight { close(reason: "connection finished") }
            return
        }
        if outputBacklog >= maxOutputBytes {
            pauseReading()
        } else {
            resumeReading()
        }
    }

    /// Writes `buffers.output`: `uv_try_write` first, and only the part the kernel does not take is copied.
    private func write() {
        defer { buffers.output.count = 0 }
        bytesOut += UInt64(buffers.output.count)
        let status = output.send(buffers.output.readable, on: stream, owner: Unmanaged.passUnretained(self).toOpaque(),
                                 callback: HTTP2Connection.writeCallback)
        accountBacklog()
        if status < 0 { close(reason: "write failed: \(String(cString: uv_strerror(status)))") }
    }

    /// Keeps the owner's total of waiting output in step with this connection's.
    private func accountBacklog() {
        let now = isClosing ? 0 : output.backlog
        buffers.queuedOutputBytes += now - accountedBacklog
        accountedBacklog = now
    }

    private func didWrite(_ status: Int32) {
        output.completed()
        lastWriteMillis = loop.clock.nowMillis
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

    private func reportFailure(_ reason: String) {
        guard !failureReported else { return }
        failureReported = true
        connectionDidFail(reason: reason)
    }

    /// Closes after what was already produced has been written (e.g. a GOAWAY); reads nothing more.
    func closeWhenFlushed(reason: String) {
        guard !isClosing else { return }
        reportFailure(reason)
        closeAfterFlush = true
        flush()
        if !isClosing && !writeInFlight { close(reason: reason) }
    }

    /// Closes now: pending writes are cancelled by libuv; the object is released in the close callback.
    func close(reason: String) {
        guard !isClosing else { return }
        reportFailure(reason)
        isClosing = true
        pauseReading()
        accountBacklog()
        uv_close(UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_handle_t.self)) { handle in
            let unmanaged = Unmanaged<HTTP2Connection>.fromOpaque(sc_uv_handle_get_data(handle!)!)
            unmanaged.takeUnretainedValue().connectionDidClose()
            unmanaged.release()
        }
    }

    // MARK: helpers for subclasses

    /// Submits SETTINGS and raises the connection-level receive window (RFC 9113 §6.9.2: SETTINGS only
    /// changes stream windows; the connection window grows only by WINDOW_UPDATE).
    func submitSettings(_ entries: [(NGHTTP2_SETTINGS_ID, UInt32)], connectionWindow: Int32) {
        guard let session else { return }
        let iv = entries.map { nghttp2_settings_entry(settings_id: Int32($0.0.rawValue), value: $0.1) }
        _ = iv.withUnsafeBufferPointer { nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue),
                                                                 $0.baseAddress, $0.count) }
        _ = nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, connectionWindow)
    }
}

typealias NGHTTP2_SETTINGS_ID = nghttp2_settings_id

// Peer/: gRPC over HTTP/2 cleartext (h2c, prior knowledge) between nodes — server, client, framing.
import CLibUV
import CNGHTTP2

/// Limits and HTTP/2 settings of a `GRPCServer`; every bound is named here (STYLE habit 8).
public struct GRPCServerSettings {
    /// Connections beyond this are closed as soon as they are accepted.
    public var maxConnections = 1024
    /// SETTINGS_MAX_CONCURRENT_STREAMS: streams a client may have open on one connection; nghttp2 refuses
    /// more with RST_STREAM(REFUSED_STREAM), which gRPC clients retry.
    public var maxConcurrentStreams: UInt32 = 1000
    /// Windows and header-list bound we advertise (and enforce on request headers).
    public var http2 = HTTP2Settings()
    /// Largest request message accepted, and largest response sent (RESOURCE_EXHAUSTED beyond it).
    public var maxMessageBytes = 4 << 20
    /// Output waiting for one slow peer before we stop pulling answers from nghttp2 and stop reading it.
    public var maxOutputBytesPerConnection = 4 << 20
    /// Bytes the streams of one connection may hold: request messages being received or waiting for their
    /// answer, and answers not yet sent (a peer that does not open its window keeps them here). A request
    /// or an answer that would pass it is refused with RESOURCE_EXHAUSTED. Counted before authentication.
    public var maxConnectionBufferBytes = 16 << 20
    /// The same bound over every connection of the server, plus their output waiting for the socket.
    public var maxBufferBytes = 64 << 20
    /// Every stream ends this long after its HEADERS arrived, whether or not the caller sent `grpc-timeout`
    /// (a shorter `grpc-timeout` still wins): an unanswered call gets DEADLINE_EXCEEDED, a request still
    /// arriving or an answer the peer does not take is reset, and what it held is released. Also the
    /// longest a connection may leave its output unread before it is closed.
    public var streamTimeoutMillis: Int64 = 10_000
    /// A connection must send the HTTP/2 preface and its SETTINGS within this long of being accepted.
    public var handshakeTimeoutMillis: Int64 = 5_000
    /// A connection silent this long is sent a PING; silent `pingTimeoutMillis` more, it is closed.
    public var idleTimeoutMillis: Int64 = 60_000
    /// How long a connection that was sent an idle PING may stay silent before it is closed
    /// (`--peer-ping-timeout`); nghttp2 answers PINGs, so a live peer never reaches it.
    public var pingTimeoutMillis: Int64 = 10_000
    /// Connections that have not authenticated yet (with a peer token: sent no request carrying it;
    /// without: not finished the handshake). A new connection beyond it closes the oldest of them, so
    /// silent or slow sockets cannot lock peers out (item 5 of issue 10).
    public var maxUnauthenticatedConnections = 64
    /// With `--peer-token-file`: every request must carry `authorization: Bearer <token>`; checked when its
    /// headers arrive, so an unauthenticated request never gets its message buffered.
    public var peerToken: [UInt8]?
    /// How often deadlines, handshakes and idle connections are checked (`--timer-tick`): the resolution of every
    /// timeout above, not a limit (each fires up to one tick late).
    public var tickMillis: UInt64 = 250
    /// How long `close` waits for answers in flight before closing connections anyway.
    public var shutdownGraceMillis: Int64 = 2000
    public var backlog: Int32 = 511
    public var reusePort = false

    public init() {}
}

/// Counters of one server; read by /api/stats and /metrics.
public struct GRPCServerStats {
    public var connectionsAccepted: UInt64 = 0
    public var connectionsRejected: UInt64 = 0
    public var connectionsClosed: UInt64 = 0
    /// Connections closed because nghttp2 rejected their input (not HTTP/2, bad frames, floods), or because
    /// a header list passed SETTINGS_MAX_HEADER_LIST_SIZE (those are also in `headerListViolations`).
    public var protocolErrors: UInt64 = 0
    /// Connections closed for a header block larger than `http2.maxHeaderListBytes` (an HPACK bomb).
    public var headerListViolations: UInt64 = 0
    /// Complete unary requests handed to the handler.
    public var calls: UInt64 = 0
    /// Answers sent, by grpc-status (index = code).
    public var answers = [UInt64](repeating: 0, count: GRPCStatus.definedCount)
    /// Calls whose deadline passed before the handler answered (answered DEADLINE_EXCEEDED).
    public var deadlineExceeded: UInt64 = 0
    /// Calls whose stream was reset or whose connection closed before the handler answered.
    public var cancelled: UInt64 = 0
    /// Bytes read and written by all connections, the open ones included.
    public var bytesIn: UInt64 = 0
    public var bytesOut: UInt64 = 0
    /// Requests or answers refused because a connection or the process held its bound of bytes.
    public var bufferRefusals: UInt64 = 0
    /// Streams ended by `streamTimeoutMillis` (reset, or answered DEADLINE_EXCEEDED).
    public var streamTimeouts: UInt64 = 0
    /// Connections closed for not finishing the handshake, staying silent after a PING, or not reading.
    public var connectionTimeouts: UInt64 = 0
    /// Unauthenticated connections closed to make room for a new one.
    public var unauthenticatedEvictions: UInt64 = 0
    /// Requests refused for a missing or wrong peer token.
    public var unauthenticatedRequests: UInt64 = 0
    /// Bytes held now by streams and output of all connections (see `maxBufferBytes`).
    public var bufferedBytes: Int = 0
    /// Connections open now, and how many of them have not authenticated yet.
    public var openConnections: Int = 0
    public var unauthenticatedConnections: Int = 0

    public init() {}
}

/// The seam between the transport and the service: one method for every complete unary call.
public protocol GRPCServiceHandler: AnyObject {
    /// Called once per complete unary call; the call must be answered exactly once (now or later) with
    /// `call.respond(message:)` or `call.fail(status:message:)`. If the stream is reset, the connection
    /// closes, or the deadline passes first, the answer is dropped (`call.isCancelled` becomes true).
    func handle(_ call: GRPCServerCall)
    /// The `:path`s the handler serves. Optional: a request for one of them reuses this String instead of
    /// making one from the header's bytes (an allocation per call for paths over 15 bytes).
    var methodPaths: [String] { get }
}

extension GRPCServiceHandler {
    public var methodPaths: [String] { [] }
}

/// One unary call as the handler sees it: what was asked, and the one way to answer it.
///
/// Reused by its stream for a later request once the handler and everyone else let go of it (the session
/// checks it is uniquely referenced): a handler that keeps a call keeps it for itself.
public final class GRPCServerCall: DeadlineTracked {
    /// The HTTP/2 `:path`, e.g. `/springcachepb.SpringCache/Get`.
    public private(set) var path: String
    /// The request message (without the 5-byte prefix).
    public private(set) var message: [UInt8]
    /// When the client stops waiting (loop clock, unix ms), from `grpc-timeout`; nil if none was sent.
    public private(set) var deadlineMillis: Int64?
    /// The `authorization` header, if any (e.g. `Bearer …`).
    public private(set) var authorization: String?
    /// True once the answer can no longer be delivered: stream reset, connection closed, deadline passed.
    public private(set) var isCancelled = false
    /// True once `respond` or `fail` was called (or the deadline answered for the handler).
    public private(set) var isAnswered = false
    /// Called once if the call is cancelled before it is answered (e.g. to stop work done for it). A reset
    /// stream or a closed connection marks the call cancelled at once but runs this in the server's next
    /// loop turn, never inside nghttp2; a passed deadline runs it right after the DEADLINE_EXCEEDED answer.
    public var onCancel: (() -> Void)?

    /// The stream to answer on; nil once answered or cancelled (the invariant that keeps `unowned` safe:
    /// a stream is detached from its call before its session can go away).
    var stream: GRPCServerStream?
    let context: GRPCServerContext
    public var expiresAtMillis: Int64 { deadlineMillis ?? .max }
    public var deadlineSlot = -1

    init(path: String, message: [UInt8], deadlineMillis: Int64?, authorization: String?, stream: GRPCServerStream,
         context: GRPCServerContext) {
        self.path = path
        self.message = message
        self.deadlineMillis = deadlineMillis
        self.authorization = authorization
        self.stream = stream
        self.context = context
    }

    /// Makes a finished call, held by its stream alone, the call of a new request.
    func reuse(path: String, message: [UInt8], deadlineMillis: Int64?, authorization: String?,
               stream: GRPCServerStream) {
        precondition(self.stream == nil && deadlineSlot == -1 && onCancel == nil, "a call reused before it was over")
        self.path = path
        self.message = message
        self.deadlineMillis = deadlineMillis
        self.authorization = authorization
        self.stream = stream
        isCancelled = false
        isAnswered = false
    }

    /// Lets go of the request message (its buffer goes back to the stream's decoder).
    func clearMessage() {
        message = []
    }

    /// Answers with one response message and status OK.
    public func respond(message: [UInt8]) {
        respond { $0.append(message) }
    }

    /// Answers with status OK and the message `encode` writes into the buffer it is given: the stream's own
    /// answer buffer, so an answer built from borrowed bytes (a cached value) is copied once, not twice.
    public func respond(encoding encode: (inout ByteBuffer) -> Void) {
        guard let stream = claimAnswer() else { return }
        stream.session.respond(stream, encode: encode)
    }

    /// Answers with a non-OK status; `message` is sent percent-encoded in `grpc-message`.
    public func fail(status: GRPCStatus, message: String) {
        guard let stream = claimAnswer() else { return }
        stream.session.sendStatus(stream, status: status, message: message)
    }

    /// Marks the call answered and detaches it; nil if the answer is to be dropped.
    private func claimAnswer() -> GRPCServerStream? {
        assert(!isAnswered, "GRPCServerCall answered twice (\(path))")
        guard !isAnswered else { return nil }
        isAnswered = true
        context.callFinished(self)
        guard !isCancelled, let stream else { return nil }
        self.stream = nil
        stream.call = nil
        onCancel = nil
        return stream
    }

    /// The stream went away (reset, connection closed) before an answer. Called from nghttp2's
    /// stream-close callback or while a connection closes, so `onCancel` (user code, which may start new
    /// work or answer other calls) is not run here but deferred to the server's next turn.
    func cancel() {
        guard !isAnswered, !isCancelled else { return }
        isCancelled = true
        context.callFinished(self)
        context.stats.cancelled += 1
        stream?.call = nil
        stream = nil
        if let callback = onCancel {
            onCancel = nil
            context.runSoon(callback)
        }
    }

    /// The deadline passed: answer DEADLINE_EXCEEDED for the handler, then drop its late answer. Runs from
    /// a timer or the tick, outside nghttp2, so `onCancel` runs at once.
    func expire() {
        guard !isAnswered, !isCancelled, let stream else { return }
        context.callFinished(self)
        context.stats.deadlineExceeded += 1
        stream.session.sendStatus(stream, status: .deadlineExceeded,
                                  message: "deadline exceeded before the server answered")
        isCancelled = true
        stream.call = nil
        self.stream = nil
        let callback = onCancel
        onCancel = nil
        callback?()
    }
}

/// A gRPC server on the loop: the listener, one `GRPCServerSession` per connection driven by a
/// `GRPCServerConnection`, the tick and deadline timers, and graceful close. Unary calls only (all
/// springcache's methods are unary).
public final class GRPCServer {
    public let loop: EventLoop
    public var settings: GRPCServerSettings { context.settings }
    public var handler: GRPCServiceHandler { context.handler }
    /// A snapshot of the counters (see `GRPCServerStats`).
    public var stats: GRPCServerStats { currentStats }
    public private(set) var boundPort = 0
    public var openConnections: Int { connections.count }
    public private(set) var isClosing = false
    /// Told once per interval about each kind of protocol abuse, with the peer's address (the node logs it).
    public var abuse: AbuseLog { context.abuse }

    /// The sessions' shared state, apart from I/O.
    let context: GRPCServerContext
    private let scheduler: Scheduler
    private var tick: SchedulerTimer?
    private var listener: TCPListener?
    private var connections: ConnectionSet<GRPCServerConnection>
    private var flushWork: HTTP2DeferredWork?
    private var dirty: [GRPCServerConnection] = []
    private var graceTimer: SchedulerTimer?
    private var onClosed: (() -> Void)?

    public init(loop: EventLoop, settings: GRPCServerSettings = GRPCServerSettings(), handler: GRPCServiceHandler,
                abuse: AbuseLog = AbuseLog()) {
        self.loop = loop
        scheduler = loop.scheduler
        context = GRPCServerContext(settings: settings, handler: handler, abuse: abuse, scheduler: scheduler)
        connections = ConnectionSet(limit: settings.maxConnections)
    }

    deinit {
        precondition(listener == nil && flushWork == nil && tick == nil, "GRPCServer released without close()")
        context.close()
    }

    /// A snapshot of the counters, with the bytes held, read and written and the connections open now.
    public var currentStats: GRPCServerStats {
        var s = context.currentStats
        s.openConnections = connections.count
        connections.forEach { c in
            s.bytesIn += c.session.bytesIn
            s.bytesOut += c.session.bytesOut
        }
        return s
    }

    /// Replaces the token every call must carry (SIGHUP re-reads `--peer-token-file`); requests from now on
    /// are checked against it.
    public func setPeerToken(_ token: [UInt8]?) {
        context.settings.peerToken = token
    }

    /// Binds and listens on `address` (port 0 picks a free port: see `boundPort`).
    public func start(address: HostPort) throws {
        precondition(listener == nil && !isClosing, "GRPCServer.start called twice")
        listener = try TCPListener(loop: loop, address: address, reusePort: settings.reusePort,
                                   backlog: settings.backlog) { [unowned self] tcp in
            self.accept(tcp)
        }
        boundPort = listener!.boundPort
        flushWork = HTTP2DeferredWork(loop: loop) { [unowned self] in self.flushDirty() }
        let work = flushWork!
        context.wakeDriver = { work.schedule() }
        let timer = scheduler.makeTimer { [unowned self] in self.checkConnections() }
        // Why a coarse tick: see `GRPCServerSession.tick`.
        timer.arm(afterMillis: Int64(settings.tickMillis), repeatMillis: Int64(settings.tickMillis))
        tick = timer
    }

    /// Handshake and idle deadlines of every connection, and the lifetime bound of every stream.
    private func checkConnections() {
        let now = scheduler.clock.nowMillis
        connections.forEachAllowingRemoval { $0.tick(now: now) }
    }

    private func accept(_ tcp: UnsafeMutablePointer<uv_tcp_t>) {
        if connections.isFull || isClosing {
            // Refused at once: holding it open would cost a session and buffers for nothing.
            context.stats.connectionsRejected += 1
            uv_close(UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_handle_t.self)) { h in
                UnsafeMutableRawPointer(h!).assumingMemoryBound(to: uv_tcp_t.self).deallocate()
            }
            return
        }
        context.stats.connectionsAccepted += 1
        let connection = GRPCServerConnection(server: self, tcp: tcp)
        context.sessionOpened(connection.serverSession)
        connections.add(connection)
        connection.open()
    }

    /// Called from a connection's close callback.
    func remove(_ connection: GRPCServerConnection) {
        context.stats.connectionsClosed += 1
        context.stats.bytesIn += connection.session.bytesIn
        context.stats.bytesOut += connection.session.bytesOut
        guard connections.remove(connection) else { return }
        if isClosing && connections.isEmpty { finishClose() }
    }

    // MARK: flushing answers given outside a read

    /// An answer was submitted outside the connection's own read processing (the handler answered later):
    /// flush it in the next loop iteration, together with every other answer given before then.
    func scheduleFlush(_ connection: GRPCServerConnection) {
        guard !connection.isDirty else { return }
        connection.isDirty = true
        dirty.append(connection)
        flushWork?.schedule()
    }

    /// Deferred callbacks first (they may answer calls), then one flush per connection with output.
    private func flushDirty() {
        context.runDeferredWork()
        let batch = dirty
        dirty.removeAll(keepingCapacity: true)
        for connection in batch {
            connection.isDirty = false
            connection.flush()
        }
    }

    // MARK: closing

    /// Graceful close: stop listening, send GOAWAY (streams already started may finish), close each
    /// connection once its answers are written, and close the rest after `shutdownGraceMillis`
    /// (their unanswered calls are cancelled). `completion` runs once every connection is closed;
    /// the server's own handles are then closing and the loop finishes them.
    public func close(completion: @escaping () -> Void) {
        guard !isClosing else { return }
        isClosing = true
        onClosed = completion
        listener?.close()
        listener = nil
        if connections.isEmpty {
            finishClose()
            return
        }
        let timer = scheduler.makeTimer { [unowned self] in
            self.connections.forEachAllowingRemoval { $0.close(reason: "server closing: grace period over") }
        }
        timer.arm(afterMillis: max(settings.shutdownGraceMillis, 0))
        graceTimer = timer
        connections.forEachAllowingRemoval { $0.goAway() }
    }

    private func finishClose() {
        graceTimer?.close()
        graceTimer = nil
        tick?.close()
        tick = nil
        // Cancel callbacks queued by the last connections still run, once, before the work handle goes.
        context.close()
        flushWork?.close()
        flushWork = nil
        dirty.removeAll()
        let done = onClosed
        onClosed = nil
        done?()
    }
}

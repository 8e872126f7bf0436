// HTTP/: the HTTP/1.1 API — parser, response writer, connections, router and handlers.
import CLibUV

/// One parsed request as a handler sees it. The bytes are valid only during `HTTPHandler.handle`:
/// a handler that answers later must copy what it needs first.
public struct HTTPRequest {
    public let head: HTTPRequestHead
    /// The whole request, head and body; `head`'s ranges index into it.
    public let bytes: UnsafeRawBufferPointer
    /// Whether the connection stays open after this response (false on `Connection: close`,
    /// HTTP/1.0 without keep-alive, or while the node is stopping).
    public let keepAlive: Bool
    /// When the read that completed this request arrived (uv_hrtime), for the latency histogram.
    public let startNanos: UInt64

    @inline(__always)
    public func slice(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[range])
    }

    public var path: UnsafeRawBufferPointer { slice(head.path) }
    public var query: UnsafeRawBufferPointer? { head.query.map { slice($0) } }
    public var body: UnsafeRawBufferPointer {
        slice(head.headLength..<(head.headLength + head.contentLength))
    }
}

/// Whether a handler answered at once or will answer later through `HTTPConnection.finishDeferred`.
public enum HTTPHandling {
    case done
    case deferred
}

/// The seam between connections and the API: routes one request and writes its response.
public protocol HTTPHandler: AnyObject {
    /// Appends the response to `writer.bytes` and returns `.done`, or returns `.deferred` and later writes
    /// the response to the same writer and calls `writer.finishDeferred()` exactly once.
    func handle(_ request: HTTPRequest, writer: ResponseWriter) -> HTTPHandling
    /// Writes an error response for a request that could not be parsed or timed out.
    func writeError(status: Int, reason: String, into writer: ResponseWriter)
}

/// The bytes of the responses being produced by the current callback; shared by every connection.
///
/// Why shared: every response produced by one read is written with one `uv_try_write` from here, and
/// only what the kernel does not take at once is copied into the connection's own queue. So the hot
/// path neither allocates nor copies, and an idle connection holds no buffers. It is empty at every
/// callback boundary.
public final class ResponseBuffer {
    /// What the buffer starts with, and what it goes back to after an answer made it grow past `keepCapacity`.
    static let initialCapacity = 64 << 10
    /// The most the buffer keeps between callbacks; one large answer must not pin its memory for good.
    static let keepCapacity = 1 << 20

    public var bytes = ByteBuffer(capacity: ResponseBuffer.initialCapacity)

    /// Empties the buffer once its bytes are written or copied, giving back memory a large batch took.
    func clear() {
        bytes.count = 0
        if bytes.capacity > ResponseBuffer.keepCapacity {
            bytes.shrink(to: ResponseBuffer.initialCapacity)
        }
    }
}

/// Counters about connections and requests that the server owns; read by /api/stats and /metrics.
public struct ConnectionStats {
    public var accepted: UInt64 = 0
    public var rejected: UInt64 = 0
    public var closed: UInt64 = 0
    public var parseErrors: UInt64 = 0
    public var timeouts: UInt64 = 0
    public var bytesIn: UInt64 = 0
    public var bytesOut: UInt64 = 0
    public var backpressurePauses: UInt64 = 0
    /// Connections closed because their answers stayed unread while all together were at the bound.
    public var unreadClosed: UInt64 = 0
}

/// The HTTP/1.1 server of one node: the listener, every open connection, their timeouts, and graceful stop.
public final class HTTPServer {
    public let loop: EventLoop
    public let config: HTTPServerConfig
    public let handler: HTTPHandler
    public let output = ResponseBuffer()
    public internal(set) var stats = ConnectionStats()
    /// Response bytes queued on all connections (see `HTTPServerConfig.maxQueuedOutputBytes`).
    public internal(set) var queuedOutputBytes = 0
    /// Malformed requests, timeouts and unread answers, told to the log once per kind and interval.
    public let abuse = AbuseLog()
    public var openConnections: Int { connections.count }
    public private(set) var boundPort = 0

    /// Where every read lands first (see `ResponseBuffer` for why one per loop is enough).
    let sharedReadBuffer: UnsafeMutablePointer<UInt8>
    let sharedReadCapacity = 64 << 10

    private var listener: TCPListener?
    private var connections: [HTTPConnection] = []
    /// Connections stopped because all together were at the hard cap on queued answers (`waitForRoom`).
    private var waiting: [HTTPConnection] = []
    private var tick: LoopTimer?
    private var stopping = false
    private var stopDeadline: Int64 = 0
    /// With `--access-log`: every answered request is logged there.
    public var accessLog: AccessLog?
    /// While set, new connections get a 503 with this reason and are closed (the node is not ready yet).
    public var admissionRefusal: String?
    private var onStopped: (() -> Void)?

    public init(loop: EventLoop, config: HTTPServerConfig, handler: HTTPHandler) {
        self.loop = loop
        self.config = config
        self.handler = handler
        sharedReadBuffer = .allocate(capacity: sharedReadCapacity)
    }

    deinit {
        sharedReadBuffer.deallocate()
    }

    public func start(address: HostPort, reusePort: Bool) throws {
        listener = try TCPListener(loop: loop, address: address, reusePort: reusePort,
                                   backlog: config.backlog) { [unowned self] tcp in
            self.accept(tcp)
        }
        boundPort = listener!.boundPort
        let timer = LoopTimer(loop: loop) { [unowned self] in self.checkDeadlines() }
        // Why a coarse tick: per-connection timers would be re-armed on every request (a heap operation);
        // a deadline is a plain integer store, and one scan a second is cheap even at 10,000 connections.
        timer.start(timeoutMillis: 250, repeatMillis: 250)
        tick = timer
    }

    private func accept(_ tcp: UnsafeMutablePointer<uv_tcp_t>) {
        if connections.count >= config.maxConnections || stopping || admissionRefusal != nil {
            // Refused at once, not queued: a short answer the client can read, then close.
            stats.rejected += 1
            HTTPConnection.refuse(tcp, reason: stopping ? "the node is shutting down"
                                  : admissionRefusal ?? "too many connections (limit \(config.maxConnections))")
            return
        }
        stats.accepted += 1
        let connection = HTTPConnection(server: self, tcp: tcp, now: loop.clock.nowMillis)
        connection.index = connections.count
        connections.append(connection)
        connection.startReading()
    }

    /// Called from a connection's close callback.
    func remove(_ connection: HTTPConnection) {
        let i = connection.index
        guard i >= 0, i < connections.count, connections[i] === connection else { return }
        let last = connections.removeLast()
        if i < connections.count {
            connections[i] = last
            last.index = i
        }
        connection.index = -1
        stats.closed += 1
        if stopping && connections.isEmpty { finishStop() }
    }

    /// `connection` stopped with nothing queued because all connections are at the hard cap on queued answers;
    /// it is resumed from the tick once there is room.
    func waitForRoom(_ connection: HTTPConnection) {
        waiting.append(connection)
    }

    /// At the process-wide bound on queued answers: closes, oldest first, connections whose answers have not
    /// moved for `unreadTimeoutMillis` (at once, whatever their age, while a client that reads waits: see
    /// `makeRoomForReader`), until the total is under the bound; then resumes those that waited, readers first,
    /// then the newest first.
    private func makeRoom(now: Int64) {
        let readerWaiting = waiting.contains { $0.answersTaken && !$0.isClosing }
        closeStalled(now: now, minStallMillis: readerWaiting ? 0 : config.unreadTimeoutMillis)
        guard !waiting.isEmpty, queuedOutputBytes < config.maxQueuedOutputBytes else { return }
        // Readers first; then the newest first (adaptive LIFO): under a flood of connections that never read,
        // the oldest waiters are the flood, and a client that just arrived is the one most likely still there.
        let resumed = waiting.filter { $0.answersTaken } + waiting.filter { !$0.answersTaken }.reversed()
        waiting.removeAll()
        for c in resumed { c.roomAvailable() }
    }

    /// A client seen to read its answers found all connections at the hard cap: the connections whose
    /// queued answers have moved least recently are closed for it now. Why not wait for `--unread-timeout`:
    /// memory held for a client that does not read is worth less than an answer to one that does, and
    /// waiting made every reader stall for that long whenever a flood of non-readers filled the bound.
    /// True if anything was closed.
    func makeRoomForReader() -> Bool {
        closeStalled(now: loop.clock.nowMillis, minStallMillis: 0) > 0
    }

    /// Closes connections with answers queued that have not moved for `minStallMillis`, longest-stalled first,
    /// until the total is under `maxQueuedOutputBytes`. Returns how many it closed.
    @discardableResult
    private func closeStalled(now: Int64, minStallMillis: Int64) -> Int {
        guard queuedOutputBytes >= config.maxQueuedOutputBytes else { return 0 }
        let stalled = connections.filter {
            $0.queuedBytes > 0 && !$0.isClosing && now - $0.lastWriteMillis >= minStallMillis
        }.sorted { $0.lastWriteMillis < $1.lastWriteMillis }
        var closed = 0
        for c in stalled where queuedOutputBytes >= config.maxQueuedOutputBytes {
            abuse.report(.httpUnreadAnswers, peer: tcpPeerAddress(c.tcp),
                         "closed: \(c.queuedBytes) answer bytes unread for \(now - c.lastWriteMillis) ms while all "
                         + "connections held \(queuedOutputBytes) (limit \(config.maxQueuedOutputBytes))", now: now)
            stats.unreadClosed += 1
            c.close()
            closed += 1
        }
        return closed
    }

    private func checkDeadlines() {
        let now = loop.clock.nowMillis
        makeRoom(now: now)
        var i = 0
        while i < connections.count {
            let c = connections[i]
            // A connection may close itself (and leave the array) from inside `deadlinePassed`.
            if c.deadline <= now { c.deadlinePassed(now: now) }
            if i < connections.count && connections[i] === c { i += 1 }
        }
        if stopping && now >= stopDeadline {
            for c in connections { c.close() }
        }
    }

    /// Graceful stop: stop accepting, close idle connections, let responses in flight finish (each then
    /// closes), and close whatever is left after `shutdownGraceMillis`. Calls `completion` once all are closed.
    public func stop(completion: @escaping () -> Void) {
        guard !stopping else { return }
        stopping = true
        onStopped = completion
        stopDeadline = loop.clock.nowMillis + config.shutdownGraceMillis
        listener?.close()
        listener = nil
        for c in connections { c.beginDraining() }
        if connections.isEmpty { finishStop() }
    }

    public var isStopping: Bool { stopping }

    private func finishStop() {
        tick?.close()
        tick = nil
        let done = onStopped
        onStopped = nil
        done?()
    }
}

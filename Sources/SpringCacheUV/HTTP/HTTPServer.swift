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

/// Whether a handler answered at once or will answer later through `ResponseWriter.finishDeferred`.
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
///
/// Lifecycle: like the handles it owns, it must be stopped (`stop`) before it is released once started; its
/// `deinit` checks that the listener and the tick are closed.
public final class HTTPServer {
    public let loop: EventLoop
    public let config: HTTPServerConfig
    public let handler: HTTPHandler
    /// Backs the writer of whichever connection has a batch of answers open (see `ResponseWriter`).
    let scratch = ResponseScratch()
    public internal(set) var stats = ConnectionStats()
    /// Response bytes queued on all connections (see `HTTPServerConfig.maxQueuedOutputBytes`), including those of
    /// closed connections until their close callback frees them.
    public internal(set) var queuedOutputBytes = 0
    /// The part of `queuedOutputBytes` on connections already closed, freed in their close callbacks.
    var releasingOutputBytes = 0
    /// Malformed requests, timeouts and unread answers, told to the log once per kind and interval.
    public let abuse = AbuseLog()
    public var openConnections: Int { connections.count }
    public private(set) var boundPort = 0

    /// Where every read lands first (one per loop is enough: a read is processed before the next one lands).
    let sharedReadBuffer: UnsafeMutablePointer<UInt8>
    let sharedReadCapacity = 64 << 10

    private let scheduler: Scheduler
    private var listener: TCPListener?
    private var connections: ConnectionSet<HTTPConnection>
    /// Connections stopped because all together were at the hard cap on queued answers (`waitForRoom`).
    private var waiting: [HTTPConnection] = []
    /// Bytes written this loop turn to connections not yet seen to read (`HTTPServerConfig.turnWriteBudgetBytes`).
    private var turnBudget: TurnWriteBudget
    /// Connections not yet seen to read whose requests wait for the next loop turn (`deferToNextTurn`), newest last.
    private var deferred: [HTTPConnection] = []
    /// Fires in the next loop turn while connections are deferred.
    private var nextTurn: SchedulerTimer?
    private var nextTurnArmed = false
    private var tick: SchedulerTimer?
    private var stopping = false
    private var stopDeadline: Int64 = 0
    /// With `--access-log`: every answered request is logged there.
    public var accessLog: AccessLog?
    /// While set, new connections get a 503 with this reason and are closed (the node is not ready yet).
    public var admissionRefusal: String?
    private var onStopped: (() -> Void)?

    /// `scheduler` defaults to the loop's real timers; tests pass a `ManualScheduler`.
    public init(loop: EventLoop, config: HTTPServerConfig, handler: HTTPHandler, scheduler: Scheduler? = nil) {
        self.loop = loop
        self.config = config
        self.handler = handler
        self.scheduler = scheduler ?? loop.scheduler
        connections = ConnectionSet(limit: config.maxConnections)
        turnBudget = TurnWriteBudget(limit: config.turnWriteBudgetBytes)
        sharedReadBuffer = .allocate(capacity: sharedReadCapacity)
    }

    deinit {
        precondition(listener == nil && tick == nil && nextTurn == nil, "HTTPServer released without stop()")
        sharedReadBuffer.deallocate()
    }

    private var now: Int64 { scheduler.clock.nowMillis }

    public func start(address: HostPort, reusePort: Bool) throws {
        listener = try TCPListener(loop: loop, address: address, reusePort: reusePort,
                                   backlog: config.backlog) { [unowned self] tcp in
            self.accept(tcp)
        }
        boundPort = listener!.boundPort
        let timer = scheduler.makeTimer { [unowned self] in self.checkDeadlines() }
        // Why a coarse tick: per-connection timers would be re-armed on every request (a heap operation);
        // a deadline is a plain integer store, and four scans a second are cheap even at 10,000 connections.
        timer.arm(afterMillis: config.tickMillis, repeatMillis: config.tickMillis)
        tick = timer
        nextTurn = scheduler.makeTimer { [unowned self] in self.serveDeferred() }
    }

    private func accept(_ tcp: UnsafeMutablePointer<uv_tcp_t>) {
        if connections.isFull || stopping || admissionRefusal != nil {
            // Refused at once, not queued: a short answer the client can read, then close.
            stats.rejected += 1
            HTTPConnection.refuse(tcp, reason: stopping ? "the node is shutting down"
                                  : admissionRefusal ?? "too many connections (limit \(config.maxConnections))")
            return
        }
        stats.accepted += 1
        let connection = HTTPConnection(server: self, tcp: tcp, now: now)
        connections.add(connection)
        connection.start()
    }

    /// Called from a connection's close callback.
    func remove(_ connection: HTTPConnection) {
        guard connections.remove(connection) else { return }
        stats.closed += 1
        if stopping && connections.isEmpty { finishStop() }
        // Its answers' memory is free now: connections that waited for room go on at once, not at the next tick.
        if !waiting.isEmpty && queuedOutputBytes < config.queuedOutputHardCap { resumeWaiting() }
    }

    /// `connection` stopped with nothing queued because all connections are at the hard cap on queued answers;
    /// it is resumed once there is room: when a closed connection's answers are freed, or from the tick.
    func waitForRoom(_ connection: HTTPConnection) {
        waiting.append(connection)
    }

    /// Whether a connection not yet seen to read must leave its requests to the next loop turn.
    var turnBudgetSpent: Bool { turnBudget.isSpent(now: now) }

    /// `bytes` of answers went to the kernel for a connection not yet seen to read.
    func spendTurnBudget(_ bytes: Int) { turnBudget.spend(bytes, now: now) }

    /// `connection` (not yet seen to read) stopped because this turn's write budget is spent; it goes on in the
    /// next turn, after the loop has polled (accepted, read) once more.
    func deferToNextTurn(_ connection: HTTPConnection) {
        deferred.append(connection)
        armNextTurn()
    }

    /// Why 1 ms and not 0: libuv (1.44) runs a timer re-armed for 0 ms from its own callback again in the same
    /// timer phase, so every deferred connection was served in one turn after all (142 ms, 267 answers); one
    /// millisecond later lets the loop poll in between.
    private func armNextTurn() {
        guard !nextTurnArmed, let nextTurn else { return }
        nextTurnArmed = true
        nextTurn.arm(afterMillis: HTTPServer.nextTurnMillis)
    }

    static let nextTurnMillis: Int64 = 1

    /// A new turn: resumes deferred connections, the newest first, while the budget lasts.
    ///
    /// Why the newest first: under a flood the oldest deferred connections are the flood's, and a client that has
    /// just arrived among them is the one most likely still there (as `resumeWaiting`). One that defers itself
    /// again goes back on top, so the loop ends when the budget is spent.
    private func serveDeferred() {
        nextTurnArmed = false
        turnBudget.startTurn(now: now)
        while !turnBudget.isSpent(now: now), let c = deferred.popLast() {
            c.roomAvailable()
        }
        if !deferred.isEmpty { armNextTurn() }
    }

    /// At the process-wide bound on queued answers: closes, oldest first, connections whose answers have not
    /// moved for `unreadTimeoutMillis` (at once, whatever their age, while a connection waits: see `makeRoomNow`),
    /// until the total is under the bound; then resumes those that waited, readers first, then the newest first.
    private func makeRoom(now: Int64) {
        let someoneWaits = waiting.contains { !$0.isClosing }
        closeStalled(now: now, minStallMillis: someoneWaits ? 0 : config.unreadTimeoutMillis)
        // Why the hard cap and not the bound: a waiter has nothing queued, so it is served below the hard cap, as
        // the connections that arrive meanwhile are; resumed only below the bound, it waited while they went on.
        guard !waiting.isEmpty, queuedOutputBytes < config.queuedOutputHardCap else { return }
        resumeWaiting()
    }

    /// Resumes the connections that waited for room.
    private func resumeWaiting() {
        // Readers first; then the newest first (adaptive LIFO): under a flood of connections that never read,
        // the oldest waiters are the flood, and a client that just arrived is the one most likely still there.
        let resumed = waiting.filter { $0.state.answersTaken } + waiting.filter { !$0.state.answersTaken }.reversed()
        waiting.removeAll()
        for c in resumed { c.roomAvailable() }
    }

    /// A connection with nothing queued found all connections at the hard cap: the connections whose queued
    /// answers have moved least recently are closed for it now. True if anything was closed.
    ///
    /// Why at once, and for any such connection, not only for clients seen to read: memory held for a client that
    /// does not read is worth less than an answer to one that may, and a new client cannot be told from a flood
    /// until it reads. Waiting for `--unread-timeout` (or for a reader to come along) made a new client that
    /// arrived during a flood of non-readers wait for room like the flood did — 10 s and a 408 once (issue 10).
    /// Those closed are the longest-stalled, so a client whose answers are moving is the last to go.
    func makeRoomNow() -> Bool {
        closeStalled(now: now, minStallMillis: 0) > 0
    }

    /// Closes connections with answers queued that have not moved for `minStallMillis`, longest-stalled first,
    /// until the total will be under `maxQueuedOutputBytes` once they are freed. Returns how many it closed.
    @discardableResult
    private func closeStalled(now: Int64, minStallMillis: Int64) -> Int {
        // What stays once the connections already closed are freed.
        var remaining: Int { queuedOutputBytes - releasingOutputBytes }
        guard remaining >= config.maxQueuedOutputBytes else { return 0 }
        let stalled = connections.all.filter {
            $0.state.queuedBytes > 0 && !$0.isClosing && now - $0.state.lastWriteMillis >= minStallMillis
        }.sorted { $0.state.lastWriteMillis < $1.state.lastWriteMillis }
        var closed = 0
        for c in stalled where remaining >= config.maxQueuedOutputBytes {
            let unread = c.state.queuedBytes, stalledMillis = now - c.state.lastWriteMillis
            abuse.report(.httpUnreadAnswers, peer: tcpPeerAddress(c.tcp),
                         "closed: \(unread) answer bytes unread for \(stalledMillis) ms while all "
                         + "connections held \(queuedOutputBytes) (limit \(config.maxQueuedOutputBytes))", now: now)
            stats.unreadClosed += 1
            c.close()
            closed += 1
        }
        return closed
    }

    private func checkDeadlines() {
        let now = self.now
        makeRoom(now: now)
        // Closing never removes a connection at once (that waits for its close callback), so a plain walk is safe.
        connections.forEach { c in
            if c.state.deadlineMillis <= now { c.deadlinePassed(now: now) }
        }
        if stopping && now >= stopDeadline {
            connections.forEach { $0.close() }
        }
    }

    /// Graceful stop: stop accepting, close idle connections, let responses in flight finish (each then
    /// closes), and close whatever is left after `shutdownGraceMillis`. Calls `completion` once all are closed.
    public func stop(completion: @escaping () -> Void) {
        guard !stopping else { return }
        stopping = true
        onStopped = completion
        stopDeadline = now + config.shutdownGraceMillis
        listener?.close()
        listener = nil
        connections.forEach { $0.beginDraining() }
        if connections.isEmpty { finishStop() }
    }

    public var isStopping: Bool { stopping }

    private func finishStop() {
        tick?.close()
        tick = nil
        nextTurn?.close()
        nextTurn = nil
        deferred.removeAll()
        let done = onStopped
        onStopped = nil
        done?()
    }
}

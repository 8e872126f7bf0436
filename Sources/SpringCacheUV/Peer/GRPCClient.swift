import CLibUV
import CNGHTTP2
#if canImport(Glibc)
import Glibc
#endif

/// Limits and timing of a `GRPCClient`; every bound is named here (STYLE habit 8).
public struct GRPCClientSettings {
    /// Largest response message accepted (RESOURCE_EXHAUSTED beyond it) and largest request sent.
    public var maxMessageBytes = 4 << 20
    /// Windows and header-list bound we advertise (and enforce on response headers and trailers).
    public var http2 = HTTP2Settings()
    /// Requests waiting for the socket before we stop pulling more from nghttp2 (it queues the rest).
    public var maxOutputBytes = 4 << 20
    /// A connect attempt that has not completed by then fails like a refused one.
    public var connectTimeoutMillis: Int64 = 2000
    /// Backoff after the first failed connect attempt; doubled after each further failure, up to the max.
    /// During backoff calls fail at once with UNAVAILABLE instead of waiting for a connection.
    public var initialBackoffMillis: Int64 = 100
    public var maxBackoffMillis: Int64 = 5000
    public var userAgent = "springcache-uv"

    public init() {}
}

/// Counters of one client (one peer); read by /api/stats and /metrics.
public struct GRPCClientStats {
    public var calls: UInt64 = 0
    public var succeeded: UInt64 = 0
    /// Failed calls by status (index = code).
    public var failures = [UInt64](repeating: 0, count: GRPCStatus.definedCount)
    public var connectAttempts: UInt64 = 0
    public var connectFailures: UInt64 = 0
    /// Connections established; `reconnects` counts those after the first.
    public var connections: UInt64 = 0
    public var reconnects: UInt64 = 0
    /// Established connections that failed (reset, EOF, protocol error, GOAWAY with an error).
    public var connectionsLost: UInt64 = 0
    /// Calls started and not yet completed.
    public var inFlight = 0

    public init() {}

    public var failed: UInt64 { failures.reduce(0, +) }
}

/// One unary call of a client, from `unary` to its completion; then kept by the client for its next call.
///
/// Why reused (issue 11: a remote hit's allocation budget): a call object per call was one allocation per
/// remote hit. A call that failed on its deadline may still be in its session's stream table until the
/// reset closes the stream, and may still be in the client's waiting list, so each use has a `generation`:
/// those tables remember the generation they were given, and an entry whose generation is not the call's
/// current one is an old use's and is ignored (a late frame of the old stream never reaches the new use).
final class GRPCClientCall: DeadlineTracked {
    private(set) var path: String
    /// The request message until it has been handed to nghttp2, then released (`releaseRequest`).
    private(set) var request: [UInt8]
    var requestOffset = 0
    private(set) var metadata: [(String, String)]
    private(set) var expiresAtMillis: Int64
    var deadlineSlot = -1
    var completion: ((GRPCResult) -> Void)?
    var result: GRPCResult?
    var isDone = false
    var streamID: Int32 = -1
    var session: GRPCClientSession?
    /// Which use of this object the call is (see the type's comment); wraps around harmlessly.
    private(set) var generation: UInt32 = 0

    // The response as it arrives.
    var httpStatus = 0
    var contentTypeOK = false
    var grpcStatus: Int?
    var grpcMessage: String?
    var decoder: GRPCMessageDecoder

    init(path: String, request: [UInt8], metadata: [(String, String)], expiresAtMillis: Int64, maxMessageBytes: Int,
         completion: @escaping (GRPCResult) -> Void) {
        self.path = path
        self.request = request
        self.metadata = metadata
        self.expiresAtMillis = expiresAtMillis
        self.completion = completion
        decoder = GRPCMessageDecoder(maxMessageBytes: maxMessageBytes, maxMessages: 1)
    }

    /// Makes a completed call (its completion has run) a new call: a new generation, nothing of the old use.
    /// The limits stay those of the call's client; the request is given with `setRequest`.
    func reuse(path: String, metadata: [(String, String)], expiresAtMillis: Int64,
               completion: @escaping (GRPCResult) -> Void) {
        precondition(isDone && self.completion == nil && deadlineSlot < 0, "a call reused before it completed")
        generation &+= 1
        self.path = path
        releaseRequest()
        requestOffset = 0
        self.metadata = metadata
        self.expiresAtMillis = expiresAtMillis
        self.completion = completion
        result = nil
        isDone = false
        streamID = -1
        session = nil
        httpStatus = 0
        contentTypeOK = false
        grpcStatus = nil
        grpcMessage = nil
        decoder.restart()
    }

    /// Copies `message` in as the request, into the buffer kept from the call's last use.
    func setRequest(_ message: UnsafeRawBufferPointer) {
        request.removeAll(keepingCapacity: true)
        request.append(contentsOf: message)
        requestOffset = 0
    }

    /// Lets go of the request (sent, or the call is over); a buffer of at most
    /// `GRPCMessageDecoder.keptBufferBytes` is kept for the next use's request.
    func releaseRequest() {
        if request.capacity <= GRPCMessageDecoder.keptBufferBytes {
            request.removeAll(keepingCapacity: true)
        } else {
            request = []
        }
    }

    /// The result once the stream has closed (PROTOCOL-HTTP2.md; statuscodes.md for the library's own codes).
    func outcome(resetCode: UInt32) -> GRPCResult {
        if let status = grpcStatus {
            if status != 0 {
                return .failure(GRPCCallError(status: GRPCStatus(rawValue: status), message: grpcMessage ?? "",
                                              fromPeer: true))
            }
            if let failure = decoder.finish() {
                return .failure(GRPCCallError(status: failure.clientStatus, message: failure.message))
            }
            guard decoder.messageCount == 1, let message = decoder.firstMessage else {
                // Response cardinality violation → UNIMPLEMENTED (statuscodes.md).
                return .failure(GRPCCallError(status: .unimplemented,
                                              message: "status OK with \(decoder.messageCount) response messages"))
            }
            return .success(message)
        }
        if httpStatus != 0 && httpStatus != 200 {
            return .failure(GRPCCallError(status: .fromHTTPStatus(httpStatus),
                                          message: "HTTP status \(httpStatus) without grpc-status"))
        }
        switch resetCode {
        case NGHTTP2_NO_ERROR.rawValue:
            break
        case NGHTTP2_REFUSED_STREAM.rawValue:
            // The server did not process the stream (RFC 9113 §8.7): safe to retry elsewhere.
            return .failure(GRPCCallError(status: .unavailable, message: "stream refused by the server"))
        case NGHTTP2_CANCEL.rawValue:
            return .failure(GRPCCallError(status: .cancelled, message: "stream cancelled by the server"))
        default:
            let reason = String(cString: nghttp2_http2_strerror(resetCode))
            return .failure(GRPCCallError(status: .internal, message: "stream reset: \(reason)"))
        }
        if httpStatus == 200 && !contentTypeOK {
            return .failure(GRPCCallError(status: .internal, message: "response content-type is not application/grpc"))
        }
        return .failure(GRPCCallError(status: .internal, message: "response ended without grpc-status"))
    }
}

/// A gRPC client for one peer: ONE HTTP/2 connection, opened lazily on the first call, with every call a
/// stream multiplexed on it.
///
/// Failure semantics (the cluster layer relies on them):
/// - A connection that is refused, reset, closed (EOF), times out connecting, breaks the protocol, or gets a
///   GOAWAY with an error fails every call in flight on it AT ONCE with UNAVAILABLE; the message says why.
/// - A GOAWAY with NO_ERROR (graceful shutdown of the peer) stops new calls from using the connection; calls
///   the server did not take (stream id above its last-stream-id) fail at once with UNAVAILABLE, the others
///   may still finish (their deadlines still apply), and the connection then closes.
/// - New calls open a new connection. Failed connect attempts are spaced by exponential backoff
///   (`initialBackoffMillis` doubling to `maxBackoffMillis`); during backoff calls fail at once with
///   UNAVAILABLE "peer X unreachable; retrying in N ms". A successful connect resets the backoff.
/// - Every call has a deadline (`timeoutMillis`, sent as `grpc-timeout` and enforced here too): when it
///   passes the stream is reset (RST_STREAM CANCEL) and the call fails with DEADLINE_EXCEEDED.
/// - `close()` fails the calls still in flight with CANCELLED ("client closed"): the caller gave up, the
///   peer did not fail.
///
/// Completions run exactly once, from the loop, never inside `unary` and never inside an nghttp2 callback.
/// Targets are numeric IPv4/IPv6 addresses (or `localhost`): peers advertise addresses, not names.
///
/// Coalescing (issue 11): a call only submits its stream; the connection is flushed once per loop iteration
/// (`scheduleFlush`, on the deferred-work idle handle), so every call made for this peer during one
/// iteration leaves in one write, and the answers that arrive in one read complete in one pass
/// (`runCompletions` after nghttp2 returns).
///
/// Why no batching rpc (`GetMany`), re-decided with the numbers of issue 11 (`make bench-peercost`, per remote
/// hit of a small value; nghttp2's part from its `--profile` callgrind output): nghttp2 is ≈ 10.4k of 39.9k
/// instructions on the asking node (26 %; ≈ 14 % when this was first decided) and ≈ 12.2k of 26.7k on the
/// owner (46 %, since the owner's own per-call work went down to no allocation). Almost all of it is per
/// stream, not per byte: HPACK of the request's 9 and the answer's 3 + 1 header fields, nghttp2's checks of
/// each received field, stream open and close, one DATA frame and one trailers frame.
///
/// What a GetMany would save at most: with b keys per batch, (1 − 1/b) of that per-stream work on both nodes,
/// i.e. ≈ 11.3k of 66.6k instructions per remote hit (17 %) at b = 2 and ≈ 19.8k (30 %) at b = 8, plus a
/// little of our own per-call work (stream and call objects are pooled already). Nothing at b = 1, which is
/// what a lightly loaded node sees: a batch can only hold the distinct keys for one peer that arise in one
/// loop turn.
///
/// What it would cost: a batch completes at its slowest key (one origin load on the owner holds back every
/// hit in it, where multiplexed streams answer each as it is ready); per-key deadlines and cancellation
/// become one deadline for the batch (or per-key bookkeeping inside one stream, which gRPC does not give us);
/// a new message and method, with a fallback to Get when a peer answers UNIMPLEMENTED (every springcache node
/// does), remembered per peer; and a second code path for the same answer on both sides.
///
/// Decision: not built yet. The bound is now large enough to matter, but it depends on b, which has not been
/// measured under load; measure calls per flush on the asking node (`GRPCClientStats` calls against
/// `outputBatches`) in `make bench-cluster` first. A cheaper cut on the owner is
/// `nghttp2_option_set_no_http_messaging` on the server session (tried, not kept: 26,657 → 24,097 owner
/// instructions per remote hit, −10 %), at the price of making nghttp2's HTTP checks of every request field
/// (pseudo-headers, field characters, content-length) ourselves. Until then, plain HTTP/2 multiplexing.
public final class GRPCClient: GRPCClientSessionOwner {
    public let loop: EventLoop
    public let target: HostPort
    public let settings: GRPCClientSettings
    public var stats: GRPCClientStats {
        var s = statsStorage
        s.inFlight = deadlines.count
        return s
    }
    /// Output batches (writes) of the connections not yet closed (tests check one per loop iteration).
    var outputBatches: UInt64 { connections.reduce(0) { $0 + $1.session.outputBatches } }
    /// Whether a connection is established and usable for new calls.
    public var isConnected: Bool { if case .ready = state { return true } else { return false } }

    let buffers = HTTP2IOBuffers()
    let headers = HTTP2HeaderBlock()
    /// Computed once: every request carries it.
    let authority: String

    private enum State {
        case idle
        case connecting
        case ready
        case backoff(until: Int64)
    }

    private var statsStorage = GRPCClientStats()
    private var state = State.idle
    /// The connection new calls use (connecting or ready).
    private var connection: GRPCClientConnection?
    /// Every connection not yet closed, including ones finishing after a GOAWAY.
    private var connections: [GRPCClientConnection] = []
    /// Calls waiting for the connection; a call whose deadline passed meanwhile may have been reused, so
    /// each entry names the use it was made for.
    private var waiting: [GRPCCallUse] = []
    /// Completed calls, kept for the next calls (see `GRPCClientCall`).
    private var idleCalls: [GRPCClientCall] = []
    /// The most calls that were in flight at once: the bound of `idleCalls`.
    private var mostInFlight = 0
    private var completed: [GRPCClientCall] = []
    /// The batch `runCompletions` is running (it trades places with `completed`).
    private var completing: [GRPCClientCall] = []
    private var dirty: [GRPCClientConnection] = []
    /// The batch `runDeferredWork` is flushing (it trades places with `dirty`).
    private var flushing: [GRPCClientConnection] = []
    private var backoffMillis: Int64 = 0
    private var closed = false
    /// After `close()`: a caller that kept this client must not start calls on it.
    public var isClosed: Bool { closed }
    private var address = sockaddr_storage()
    private var addressError: String?

    /// Calls started and not completed, by deadline: when one passes, the call fails DEADLINE_EXCEEDED.
    private var deadlines: DeadlineTimer<GRPCClientCall>!
    private var connectTimer: SchedulerTimer!
    private var work: HTTP2DeferredWork!

    public init(loop: EventLoop, target: HostPort, settings: GRPCClientSettings = GRPCClientSettings()) {
        self.loop = loop
        self.target = target
        self.settings = settings
        authority = target.description
        addressError = GRPCClient.parseAddress(target, into: &address)
        deadlines = DeadlineTimer(scheduler: loop.scheduler) { [unowned self] call in self.deadlinePassed(call) }
        connectTimer = loop.scheduler.makeTimer { [unowned self] in self.connectTimedOut() }
        // Strong on purpose: completions queued by `close()` still run after the owner has dropped the client;
        // the cycle ends when the work handle closes (after that last drain).
        work = HTTP2DeferredWork(loop: loop) { self.runDeferredWork() }
    }

    deinit {
        precondition(closed, "GRPCClient released without close()")
    }

    private static func parseAddress(_ target: HostPort, into storage: inout sockaddr_storage) -> String? {
        let host = target.host == "localhost" ? "127.0.0.1" : target.host
        return withUnsafeMutableBytes(of: &storage) { raw -> String? in
            let status = host.contains(":")
                ? uv_ip6_addr(host, Int32(target.port), raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self))
                : uv_ip4_addr(host, Int32(target.port), raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self))
            return status == 0 ? nil : "'\(target)' is not a numeric address"
        }
    }

    // MARK: calls

    /// Starts a unary call: `message` (without the gRPC prefix) to `path`, e.g. `/springcachepb.SpringCache/Get`.
    /// `completion` runs exactly once, later, with the response message or a `GRPCCallError`.
    /// `metadata` names are sent lower-cased (e.g. `("authorization", "Bearer …")`).
    public func unary(path: String, message: [UInt8], timeoutMillis: Int, metadata: [(String, String)] = [],
                      completion: @escaping (GRPCResult) -> Void) {
        message.withUnsafeBytes {
            unary(path: path, message: $0, timeoutMillis: timeoutMillis, metadata: metadata, completion: completion)
        }
    }

    /// `unary` with the message as bytes, copied before this returns (into a buffer the call keeps for its next
    /// use: no allocation per call).
    public func unary(path: String, message: UnsafeRawBufferPointer, timeoutMillis: Int,
                      metadata: [(String, String)] = [], completion: @escaping (GRPCResult) -> Void) {
        statsStorage.calls += 1
        let now = loop.clock.nowMillis
        let call: GRPCClientCall
        if let reused = idleCalls.popLast() {
            reused.reuse(path: path, metadata: metadata, expiresAtMillis: now + Int64(timeoutMillis),
                         completion: completion)
            call = reused
        } else {
            call = GRPCClientCall(path: path, request: [], metadata: metadata,
                                  expiresAtMillis: now + Int64(timeoutMillis),
                                  maxMessageBytes: settings.maxMessageBytes, completion: completion)
        }
        if closed {
            finish(call, .failure(GRPCCallError(status: .cancelled, message: "client closed")))
            return
        }
        if timeoutMillis <= 0 {
            finish(call, .failure(GRPCCallError(status: .deadlineExceeded, message: "timeout \(timeoutMillis) ms")))
            return
        }
        if message.count > settings.maxMessageBytes {
            finish(call, .failure(GRPCCallError(
                status: .resourceExhausted,
                message: "request of \(message.count) bytes exceeds the limit of \(settings.maxMessageBytes) bytes")))
            return
        }
        if let addressError {
            finish(call, .failure(GRPCCallError(status: .unavailable, message: addressError)))
            return
        }
        call.setRequest(message)
        deadlines.insert(call)
        mostInFlight = max(mostInFlight, deadlines.count)
        switch state {
        case .ready:
            connection!.clientSession.start(call, now: now)
            scheduleFlush(connection!)
        case .connecting:
            waiting.append(GRPCCallUse(call))
        case .backoff(let until) where until > now:
            finish(call, .failure(GRPCCallError(status: .unavailable,
                                                message: "peer \(target) unreachable; retrying in \(until - now) ms")))
        case .idle, .backoff:
            waiting.append(GRPCCallUse(call))
            connect()
        }
    }

    /// Completes a call: queued, and run from the loop (see `runCompletions`).
    func finish(_ call: GRPCClientCall, _ result: GRPCResult) {
        guard !call.isDone else { return }
        call.isDone = true
        call.result = result
        call.session = nil
        call.releaseRequest()
        deadlines.remove(call)
        switch result {
        case .success: statsStorage.succeeded += 1
        case .failure(let error): statsStorage.failures[error.status.statsIndex] += 1
        }
        completed.append(call)
        if let work {
            work.schedule()
        } else {
            // Called after the client closed: a one-off idle handle keeps "never synchronously" true.
            let calls = completed
            completed.removeAll()
            HTTP2DeferredWork.once(loop: loop) { for c in calls { c.runCompletion() } }
        }
    }

    /// Runs the completions queued so far; ones queued meanwhile wait for the next loop iteration, so a
    /// completion that starts a call that fails at once cannot keep us here.
    func runCompletions() {
        // Not nested: what a completion finishes waits for the next pass (the batch is being run).
        guard !completed.isEmpty, completing.isEmpty else { return }
        // Why swapped, not copied: a copy shares the storage, so emptying `completed` would allocate anew
        // on every pass; two arrays that trade places keep both buffers.
        swap(&completed, &completing)
        for call in completing {
            call.runCompletion()
            // Why bounded by the most calls ever in flight at once: that many objects existed together anyway,
            // so the pool needs no limit of its own (a few hundred bytes each, plus request and answer buffers
            // of at most `GRPCMessageDecoder.keptBufferBytes`; larger ones are released).
            if idleCalls.count < mostInFlight {
                idleCalls.append(call)
            }
        }
        completing.removeAll(keepingCapacity: true)
    }

    // MARK: connection management

    private func connect() {
        statsStorage.connectAttempts += 1
        state = .connecting
        let tcp = UnsafeMutablePointer<uv_tcp_t>.allocate(capacity: 1)
        uv_tcp_init(loop.uv, tcp)
        let conn = GRPCClientConnection(client: self, tcp: tcp)
        connection = conn
        connections.append(conn)
        guard conn.clientSession.session != nil else {
            connectFailed(conn, reason: "cannot create an HTTP/2 session")
            return
        }
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { conn.connect(to: $0) }
        }
        if status < 0 {
            connectFailed(conn, reason: String(cString: uv_strerror(status)))
            return
        }
        connectTimer.arm(afterMillis: max(settings.connectTimeoutMillis, 1))
    }

    private func connectTimedOut() {
        guard case .connecting = state, let conn = connection else { return }
        connectFailed(conn, reason: "connect timed out after \(settings.connectTimeoutMillis) ms")
    }

    func connected(_ conn: GRPCClientConnection) {
        guard conn === connection, case .connecting = state else {
            conn.close(reason: "connection no longer wanted")
            return
        }
        connectTimer.disarm()
        state = .ready
        statsStorage.connections += 1
        if statsStorage.connections > 1 { statsStorage.reconnects += 1 }
        conn.open()
        let calls = waiting
        waiting.removeAll()
        let now = loop.clock.nowMillis
        for use in calls { if let call = use.live { conn.clientSession.start(call, now: now) } }
        conn.flush()
    }

    /// The server's SETTINGS arrived: the peer really speaks HTTP/2, so the backoff starts over.
    func sessionCompletedHandshake(_ session: GRPCClientSession) {
        if session === connection?.clientSession { backoffMillis = 0 }
    }

    private func enterBackoff() {
        backoffMillis = backoffMillis == 0 ? settings.initialBackoffMillis
            : min(backoffMillis * 2, settings.maxBackoffMillis)
        state = .backoff(until: loop.clock.nowMillis + backoffMillis)
    }

    func connectFailed(_ conn: GRPCClientConnection, reason: String) {
        guard conn === connection else { return }
        connectTimer.disarm()
        connection = nil
        statsStorage.connectFailures += 1
        enterBackoff()
        let calls = waiting
        waiting.removeAll()
        let message = "cannot connect to peer \(target): \(reason); retrying in \(backoffMillis) ms"
        let error = GRPCCallError(status: .unavailable, message: message)
        for use in calls { if let call = use.live { finish(call, .failure(error)) } }
        conn.close(reason: reason)
    }

    /// A GOAWAY arrived: new calls go to a new connection; this one finishes what the server took.
    func retire(_ session: GRPCClientSession) {
        guard session === connection?.clientSession else { return }
        connection = nil
        state = .idle
    }

    /// An established (or connecting) connection failed: every call on it fails now.
    func sessionLost(_ session: GRPCClientSession, reason: String, calls: [GRPCClientCall]) {
        if session === connection?.clientSession {
            connection = nil
            if case .ready = state { statsStorage.connectionsLost += 1 }
            state = .idle
            if !session.receivedSettings {
                // Why back off here too: a peer that accepts and drops at once (over its connection limit,
                // not HTTP/2, dying) would otherwise be re-dialled by every call (gRPC counts a connection
                // as established only once the server's SETTINGS arrive).
                statsStorage.connectFailures += 1
                enterBackoff()
            }
            // Calls still waiting for this connection (it never connected) fail with it.
            let queued = waiting
            waiting.removeAll()
            for use in queued {
                if let call = use.live {
                    finish(call, .failure(GRPCCallError(status: .unavailable, message: "peer \(target): \(reason)")))
                }
            }
        } else if session.wasConnected && !closed {
            statsStorage.connectionsLost += 1
        }
        let error = GRPCCallError(status: .unavailable, message: "connection to peer \(target) lost: \(reason)")
        for call in calls { finish(call, .failure(error)) }
    }

    func connectionClosed(_ conn: GRPCClientConnection) {
        if let i = connections.firstIndex(where: { $0 === conn }) { connections.remove(at: i) }
    }

    // MARK: deadlines

    /// The call's deadline passed: it fails now, and its stream is reset so the server stops working on it.
    private func deadlinePassed(_ call: GRPCClientCall) {
        let session = call.session
        finish(call, .failure(GRPCCallError(status: .deadlineExceeded, message: "deadline exceeded")))
        if let session {
            session.cancel(call)
            session.requestFlush()
        }
    }

    // MARK: batching

    /// Requests (and resets) submitted outside a read are written in the next loop iteration, all together.
    func scheduleFlush(_ conn: GRPCClientConnection) {
        guard !conn.session.processingInput, !conn.isDirty else { return }
        conn.isDirty = true
        dirty.append(conn)
        work?.schedule()
    }

    private func runDeferredWork() {
        swap(&dirty, &flushing)  // swapped, not copied: see `runCompletions`
        for conn in flushing {
            conn.isDirty = false
            conn.flush()
        }
        flushing.removeAll(keepingCapacity: true)
        runCompletions()
        if closed && completed.isEmpty {
            work.close()
            work = nil
        }
    }

    // MARK: closing

    /// Fails the calls in flight with CANCELLED ("client closed"), closes the connections and handles.
    /// Their completions still run (from the loop); the loop then has nothing of this client left.
    public func close() {
        guard !closed else { return }
        closed = true
        let error = GRPCCallError(status: .cancelled, message: "client closed")
        for use in waiting { if let call = use.live { finish(call, .failure(error)) } }
        waiting.removeAll()
        for call in deadlines.close() { finish(call, .failure(error)) }
        connection = nil
        for conn in connections { conn.close(reason: "client closed") }
        connectTimer.close()
        dirty.removeAll()
        work.schedule()
    }
}

/// One use of a (reused) call, as a table that may outlive that use remembers it.
struct GRPCCallUse {
    let call: GRPCClientCall
    let generation: UInt32

    init(_ call: GRPCClientCall) {
        self.call = call
        generation = call.generation
    }

    /// The call, if it is still this use and not completed; nil for an old use's entry.
    var live: GRPCClientCall? { call.generation == generation && !call.isDone ? call : nil }
}

extension GRPCClientCall {
    func runCompletion() {
        guard let completion, let result else { return }
        // Let go of both first: once the completion has let go of the answer too, its buffer is the
        // decoder's alone again and is reused for the next call's answer (`GRPCMessageDecoder.restart`).
        self.completion = nil
        self.result = nil
        completion(result)
    }
}

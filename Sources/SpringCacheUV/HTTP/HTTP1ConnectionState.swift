/// The HTTP/1.1 protocol state of one client connection, apart from its socket: a value that takes events (bytes
/// parsed, handler answered now or later, answers written, deadline passed, room available, stop) and returns what
/// the driver (`HTTPConnection`) must do with libuv (answer a request, flush, pause, close, lingering close).
///
/// It never touches a socket, a timer or the clock: time comes in as `now`, and deadlines go out as
/// `deadlineMillis`, which the server's tick compares with the loop's clock. So every rule below is unit-tested
/// without sockets (SwiftNIO's connection state machines are the model).
///
/// Rules, with the reasons:
/// - Requests are answered strictly in order (RFC 9112 §9.3.2). While a handler answers later, the requests
///   pipelined behind it wait unparsed.
/// - The first request's header clock starts at accept: a connection that sends nothing gets the header timeout,
///   not the idle one, so silent sockets cannot hold `--max-connections` for a minute each. Later requests' clocks
///   start at their first byte; between requests the idle timeout runs.
/// - Time the node itself chose not to read the socket (waiting for room under the process-wide bound on queued
///   answers) is not counted against the client's header timeout.
/// - After the last answer (Connection: close, a parse error, a timeout, end of input) the connection sends FIN and
///   lingers, reading and dropping input, so unread input does not make the kernel reset the connection and destroy
///   the answer before the client reads it.
struct HTTP1ConnectionState {
    /// Where the connection is in its life: one explicit state in place of separate flags.
    enum Phase: Equatable {
        /// Reading and answering requests; `draining` once the node stops (new answers say `Connection: close`,
        /// and the connection closes as soon as nothing is in flight).
        case serving(Wait, draining: Bool)
        /// The last answer is decided: no more requests are taken. Once it is answered (`awaitingAnswer` false)
        /// and written, the connection lingers.
        case finishing(awaitingAnswer: Bool)
        /// FIN sent after the last answer; input is read and dropped until the client closes or `lingerMillis`.
        case lingering
        case closed
    }

    /// Why a serving connection takes no request now.
    enum Wait: Equatable {
        /// It does not wait: requests are read and answered.
        case none
        /// The handler answers the current request later; requests behind it wait.
        case answer
        /// Back-pressure: the client does not read its answers, so its requests are not read either.
        case unreadAnswers
        /// All connections together are at the hard cap on queued answers, or the loop turn's write budget for
        /// clients not yet seen to read is spent; the server resumes it when there is room, or in the next turn.
        case room
    }

    /// What a deadline, once passed, means.
    enum DeadlineKind: Equatable {
        /// The request in progress (or the first one) did not arrive in time: 408, then close.
        case header
        /// No request for `idleTimeoutMillis`: close.
        case idle
        /// The lingering close is over: close.
        case linger
        /// No deadline runs (a handler is answering, or the node itself is not reading).
        case none
    }

    /// Whether the next request may be answered now (`admission`), and if not what the driver must do first.
    enum Admission: Equatable {
        case answer
        /// This batch's answers must go to the socket before the bounds can be judged again.
        case flushFirst
        /// Nothing of this connection is queued, yet all connections together are at the hard cap: room must be
        /// made (or this connection waits for it).
        case needRoom
        /// Back-pressure: stop reading this client's requests until its answers move.
        case pause
    }

    /// What parsing the bytes held found.
    enum ParseStep: Equatable {
        /// A whole request of `consumed` bytes; answer it (the connection stays open after it if `keepAlive`).
        case request(HTTPRequestHead, consumed: Int, keepAlive: Bool)
        /// The request is incomplete; with `sendContinue`, answer `100 Continue` first (RFC 9110 §10.1.1).
        case needMore(sendContinue: Bool)
        /// The request is broken: answer the error; it is the last answer.
        case error(HTTPParseError)
    }

    /// What the driver must do after an event.
    enum Action: Equatable {
        case none
        /// Close the socket now.
        case close
        /// Send FIN, then read and drop until the client closes or the linger deadline (the state is `lingering`).
        case linger
        /// Answer the requests that waited, then read again.
        case resume
        /// The header deadline passed: answer 408 (the state is `finishing`).
        case requestTimeout
    }

    /// The bounds the state judges by; copied from `HTTPServerConfig`.
    struct Limits: Equatable {
        var headerTimeoutMillis: Int64
        var idleTimeoutMillis: Int64
        var lingerMillis: Int64
        var maxOutputBytesPerConnection: Int
        var maxQueuedOutputBytes: Int
        var queuedOutputHardCap: Int

        init(_ config: HTTPServerConfig) {
            headerTimeoutMillis = config.headerTimeoutMillis
            idleTimeoutMillis = config.idleTimeoutMillis
            lingerMillis = config.lingerMillis
            maxOutputBytesPerConnection = config.maxOutputBytesPerConnection
            maxQueuedOutputBytes = config.maxQueuedOutputBytes
            queuedOutputHardCap = config.queuedOutputHardCap
        }
    }

    let limits: Limits
    private var parser: HTTPParser
    private(set) var phase = Phase.serving(.none, draining: false)
    /// When the deadline passes (loop ms; `.max`: none runs) and what it means.
    private(set) var deadlineMillis: Int64
    private(set) var deadlineKind = DeadlineKind.header
    /// While the node does not read (`Wait.room`): what was left of the header deadline.
    private var suspendedHeaderMillis: Int64?
    /// Answer bytes handed to the socket that the kernel has not taken yet (told by the driver).
    private(set) var queuedBytes = 0
    /// When queued answers last moved to the socket (loop ms); the server closes, longest-stalled first,
    /// connections whose answers do not move while all together are at the bound.
    private(set) var lastWriteMillis: Int64 = 0
    /// Whether the kernel has ever taken a whole batch of this connection's answers at once, or all that was queued
    /// for it has been written: a client seen to read. Such connections are resumed first when room is made and are
    /// not held to the loop turn's write budget, so connections that arrive in a flood and never read cannot push
    /// a reading client to the back of the queue.
    private(set) var answersTaken = false

    init(config: HTTPServerConfig, now: Int64) {
        limits = Limits(config)
        parser = HTTPParser(limits: config.limits)
        deadlineMillis = now + limits.headerTimeoutMillis
    }

    // MARK: what the driver asks

    /// Whether the socket should be read: while serving without waiting, and while lingering (to drop input).
    var wantsToRead: Bool {
        switch phase {
        case .serving(.none, _), .lingering: return true
        default: return false
        }
    }

    /// Whether requests may be parsed and answered now.
    var takesRequests: Bool {
        if case .serving(.none, _) = phase { return true }
        return false
    }

    var isClosed: Bool { phase == .closed }

    /// Whether a handler is answering the current request later.
    var awaitsAnswer: Bool {
        switch phase {
        case .serving(.answer, _), .finishing(awaitingAnswer: true): return true
        default: return false
        }
    }

    /// Whether the connection waits for the server to make room (`Wait.room`).
    var waitsForRoom: Bool {
        if case .serving(.room, _) = phase { return true }
        return false
    }

    /// Whether another request may be answered with `batchBytes` answer bytes of this connection not yet queued,
    /// while all connections together have `totalQueued` queued: under this connection's own bound, and under the
    /// process-wide one — past which only a connection with nothing queued goes on, up to the hard cap
    /// (see `HTTPServerConfig.maxQueuedOutputBytes`).
    func mayAnswer(batchBytes: Int, totalQueued: Int) -> Bool {
        let mine = queuedBytes + batchBytes
        let total = totalQueued + batchBytes
        guard mine <= limits.maxOutputBytesPerConnection else { return false }
        return total < limits.maxQueuedOutputBytes || (mine == 0 && total < limits.queuedOutputHardCap)
    }

    /// Whether this connection's unread answers should stop its requests being read: over its own bound, or
    /// holding some while all connections together are at the process-wide bound.
    func mustPause(totalQueued: Int) -> Bool {
        queuedBytes > limits.maxOutputBytesPerConnection
            || (queuedBytes > 0 && totalQueued >= limits.maxQueuedOutputBytes)
    }

    /// Judges the bounds before the next request. Why before each request and counting this batch's answers: a
    /// client can pipeline thousands of requests in one read, and their answers must not pile up unsent before the
    /// check sees them.
    func admission(batchBytes: Int, totalQueued: Int) -> Admission {
        if mayAnswer(batchBytes: batchBytes, totalQueued: totalQueued) { return .answer }
        if batchBytes > 0 { return .flushFirst }
        if queuedBytes == 0 { return .needRoom }
        return .pause
    }

    // MARK: events

    /// Parses the next request from `bytes` (everything held from the start of the current request).
    mutating func parse(_ bytes: UnsafeRawBufferPointer, now: Int64) -> ParseStep {
        precondition(takesRequests, "parse while not taking requests")
        switch parser.parse(bytes) {
        case .needMore(let sendContinue):
            // A request has begun: its header clock starts at its first byte (or ran since accept).
            if deadlineKind != .header {
                deadlineKind = .header
                deadlineMillis = now + limits.headerTimeoutMillis
            }
            return .needMore(sendContinue: sendContinue)
        case .request(let head, _, let consumed):
            parser.reset()
            guard case .serving(_, let draining) = phase else { preconditionFailure("parse while not serving") }
            let keepAlive = head.keepAlive && !draining
            deadlineKind = .idle
            if !keepAlive { phase = .finishing(awaitingAnswer: false) }
            return .request(head, consumed: consumed, keepAlive: keepAlive)
        case .error(let error):
            phase = .finishing(awaitingAnswer: false)
            return .error(error)
        }
    }

    /// The handler will answer the request just parsed later (`ResponseWriter.finishDeferred`).
    mutating func answerDeferred() {
        switch phase {
        case .serving(_, let draining): phase = .serving(.answer, draining: draining)
        case .finishing: phase = .finishing(awaitingAnswer: true)
        case .lingering, .closed: break
        }
    }

    /// The handler gave the deferred answer. Returns false if the connection closed meanwhile (the answer is
    /// dropped); else the driver answers what waited behind it, as after a read.
    mutating func answeredLater() -> Bool {
        switch phase {
        case .serving(.answer, let draining):
            phase = .serving(.none, draining: draining)
            return true
        case .finishing(awaitingAnswer: true):
            phase = .finishing(awaitingAnswer: false)
            return true
        case .closed:
            return false
        default:
            preconditionFailure("finishDeferred without a deferred request (\(phase))")
        }
    }

    /// The driver stopped taking requests because this client does not read its answers.
    mutating func pauseForUnreadAnswers() {
        if case .serving(.none, let draining) = phase { phase = .serving(.unreadAnswers, draining: draining) }
    }

    /// Nothing of this connection is queued but all connections are at the hard cap: it waits for the server to
    /// make room. The node is not reading the client now, so the header clock stops until it does again.
    mutating func waitForRoom(now: Int64) {
        guard case .serving(.none, let draining) = phase else { return }
        phase = .serving(.room, draining: draining)
        // Why no deadline at all meanwhile: neither the idle nor the header timeout is the client's doing now.
        if deadlineKind == .header && deadlineMillis != .max {
            suspendedHeaderMillis = max(deadlineMillis - now, 0)
        }
        deadlineMillis = .max
    }

    /// The server made room after `waitForRoom`: true if the driver should answer what waited and read again.
    mutating func roomAvailable(now: Int64) -> Bool {
        guard case .serving(.room, let draining) = phase else { return false }
        phase = .serving(.none, draining: draining)
        if let left = suspendedHeaderMillis {
            suspendedHeaderMillis = nil
            if deadlineKind == .header { deadlineMillis = now + left }
        }
        return true
    }

    /// Answers went to the socket: `queued` bytes are what the kernel did not take.
    mutating func sent(queued: Int, now: Int64) {
        if queuedBytes == 0 { lastWriteMillis = now }
        if queued == 0 { answersTaken = true }
        queuedBytes = queued
    }

    /// A write finished and nothing more is being written (`queued` bytes wait, 0 when all is written).
    mutating func writeCompleted(queued: Int, bufferedInput: Bool, now: Int64) -> Action {
        lastWriteMillis = now
        queuedBytes = queued
        if queued > 0 { return .none }
        // Everything queued was written: what the kernel could not take at first, the client made room for.
        answersTaken = true
        switch phase {
        case .finishing(awaitingAnswer: false):
            return startLingering(now: now)
        case .serving(let wait, draining: true) where wait != .answer && !bufferedInput:
            return close()
        case .serving(.unreadAnswers, let draining):
            // Back-pressure released: answer what is buffered, then read again.
            phase = .serving(.none, draining: draining)
            return .resume
        default:
            return .none
        }
    }

    /// The end of a batch (a read, a deferred answer, a resume): sets the deadline that fits, and says whether the
    /// connection must now close or linger.
    mutating func batchEnded(bufferedInput: Bool, now: Int64) -> Action {
        switch phase {
        case .closed, .lingering:
            return .none
        case .finishing(awaitingAnswer: false):
            return queuedBytes == 0 ? startLingering(now: now) : .none
        case .finishing(awaitingAnswer: true), .serving(.answer, _):
            deadlineKind = .none
            deadlineMillis = .max
            return .none
        case .serving(.room, _):
            return .none
        case .serving(_, let draining):
            if deadlineKind == .none { deadlineKind = .idle }
            guard deadlineKind == .idle else { return .none }
            if draining && !bufferedInput && queuedBytes == 0 { return close() }
            deadlineMillis = now + limits.idleTimeoutMillis
            return .none
        }
    }

    /// Input ended: `eof` for the client's FIN, false for a read error.
    mutating func inputEnded(eof: Bool) -> Action {
        switch phase {
        case .closed:
            return .none
        case .lingering:
            return close()
        case .finishing(let awaiting):
            if !eof || (!awaiting && queuedBytes == 0) { return close() }
            return .none
        case .serving(let wait, _):
            // A client that half-closes after its last request still gets its answers.
            if !eof || (wait != .answer && queuedBytes == 0) { return close() }
            phase = .finishing(awaitingAnswer: wait == .answer)
            return .none
        }
    }

    /// The server's tick: acts if the deadline has passed.
    mutating func deadlinePassed(now: Int64) -> Action {
        guard now >= deadlineMillis else { return .none }
        switch deadlineKind {
        case .idle, .linger:
            return close()
        case .header:
            switch phase {
            case .serving(.answer, _), .finishing(awaitingAnswer: true):
                deadlineKind = .none
                deadlineMillis = .max
                return .none
            case .serving:
                // The deadline is left in the past: if the 408 cannot be written at once, the next tick closes.
                phase = .finishing(awaitingAnswer: false)
                deadlineKind = .idle
                return .requestTimeout
            case .finishing, .lingering, .closed:
                return close()
            }
        case .none:
            return .none
        }
    }

    /// Graceful stop of the node: an idle connection closes now, a busy one after its current answer.
    mutating func drain(bufferedInput: Bool) -> Action {
        switch phase {
        case .serving(let wait, _):
            phase = .serving(wait, draining: true)
            if wait != .answer && queuedBytes == 0 && !bufferedInput { return close() }
            return .none
        case .lingering:
            return close()
        case .finishing(awaitingAnswer: false) where queuedBytes == 0:
            return close()
        case .finishing, .closed:
            return .none
        }
    }

    /// The connection is closed (by the driver, for any reason).
    mutating func close() -> Action {
        if phase == .closed { return .none }
        phase = .closed
        queuedBytes = 0
        deadlineKind = .none
        deadlineMillis = .max
        return .close
    }

    private mutating func startLingering(now: Int64) -> Action {
        phase = .lingering
        deadlineKind = .linger
        deadlineMillis = now + limits.lingerMillis
        return .linger
    }
}

import CNGHTTP2

/// What every session of one gRPC server shares: settings, counters, the handler, the bounds on bytes
/// held for unfinished requests and unsent answers, the unauthenticated connections, the deadlines of calls
/// in the handler's hands, and the callbacks that must run outside nghttp2. No I/O: `GRPCServer` drives it
/// with libuv (its scheduler is the loop's), tests with a `ManualScheduler`.
final class GRPCServerContext {
    var settings: GRPCServerSettings
    let handler: GRPCServiceHandler
    let abuse: AbuseLog
    let clock: Clock
    var stats = GRPCServerStats()
    /// The drivers' output accounting (`queuedOutputBytes`) counts against `maxBufferBytes` too.
    let buffers: HTTP2IOBuffers
    let headers = HTTP2HeaderBlock()
    /// Bytes held by streams of all sessions (requests and answers; output waiting for sockets is in `buffers`).
    var heldBytes = 0
    /// Sessions that have not authenticated yet, oldest first (accept order).
    private(set) var unauthenticated: [GRPCServerSession] = []
    /// Work that arose where it must not run (inside nghttp2's callbacks): run by `runDeferredWork`.
    private var deferred: [() -> Void] = []
    /// Asks the driver to call `runDeferredWork` soon (production: the next loop iteration).
    var wakeDriver: (() -> Void)?

    /// The handler's method paths (`GRPCServiceHandler.methodPaths`) as bytes: a request's `:path` that is
    /// one of them gets the handler's own string, so it costs no String per call.
    private let knownPaths: [(bytes: [UInt8], path: String)]

    private let scheduler: Scheduler
    /// Calls in the handler's hands with a deadline; made on the first one, so a server that never starts
    /// holds no timer.
    private var deadlines: DeadlineTimer<GRPCServerCall>?
    private var isClosed = false

    init(settings: GRPCServerSettings, handler: GRPCServiceHandler, abuse: AbuseLog, scheduler: Scheduler,
         buffers: HTTP2IOBuffers = HTTP2IOBuffers()) {
        self.settings = settings
        self.handler = handler
        self.abuse = abuse
        self.scheduler = scheduler
        clock = scheduler.clock
        self.buffers = buffers
        buffers.maxQueuedOutputBytes = settings.maxBufferBytes
        knownPaths = handler.methodPaths.map { (Array($0.utf8), $0) }
    }

    /// A request's `:path` as a String: one of `knownPaths` shared, any other made from the bytes.
    func path(_ bytes: UnsafeRawBufferPointer) -> String {
        for known in knownPaths where known.bytes.withUnsafeBytes({ bytes.equals($0) }) { return known.path }
        return String(decoding: bytes, as: UTF8.self)
    }

    deinit {
        precondition(deadlines == nil, "GRPCServerContext released without close()")
    }

    /// Stops watching deadlines (every session is closed by now) and runs the work still deferred.
    func close() {
        isClosed = true
        _ = deadlines?.close()
        deadlines = nil
        wakeDriver = nil
        runDeferredWork()
    }

    /// A snapshot of the counters, with what is held and open now.
    var currentStats: GRPCServerStats {
        var s = stats
        s.bufferedBytes = heldBytes + buffers.queuedOutputBytes
        s.unauthenticatedConnections = unauthenticated.count
        return s
    }

    // MARK: buffer bounds

    /// Whether `bytes` more may be held by a stream of a session holding `connectionHeld` (its bound and
    /// the process's).
    func mayHold(_ bytes: Int, connectionHeld: Int) -> Bool {
        connectionHeld + bytes <= settings.maxConnectionBufferBytes
            && heldBytes + buffers.queuedOutputBytes + bytes <= settings.maxBufferBytes
    }

    // MARK: authentication

    /// A new session: counted as unauthenticated; when too many are, the oldest of them is closed, so silent
    /// or slow sockets cannot lock peers out (item 5 of issue 10).
    func sessionOpened(_ session: GRPCServerSession) {
        if unauthenticated.count >= settings.maxUnauthenticatedConnections, let oldest = unauthenticated.first {
            stats.unauthenticatedEvictions += 1
            abuse.report(.unauthenticatedFlood, peer: oldest.peerDescription,
                         "more than \(settings.maxUnauthenticatedConnections) connections not authenticated; "
                         + "closing the oldest", now: clock.nowMillis)
            sessionAuthenticated(oldest)
            oldest.driver?.closeConnection(
                reason: "closed to make room: too many connections that have not authenticated")
        }
        unauthenticated.append(session)
    }

    /// A session authenticated, or closed before it did.
    func sessionAuthenticated(_ session: GRPCServerSession) {
        if let i = unauthenticated.firstIndex(where: { $0 === session }) { unauthenticated.remove(at: i) }
    }

    // MARK: calls

    /// Hands a complete request to the handler; watches its deadline if it is not answered at once.
    func dispatch(_ call: GRPCServerCall) {
        stats.calls += 1
        if let deadline = call.deadlineMillis, deadline <= clock.nowMillis {
            // Why not call the handler: the client has already given up; work done now would be wasted.
            call.expire()
            return
        }
        handler.handle(call)
        if !call.isAnswered && !call.isCancelled && call.deadlineMillis != nil && !isClosed {
            if deadlines == nil {
                // When it passes: DEADLINE_EXCEEDED for the handler (`GRPCServerCall.expire`).
                deadlines = DeadlineTimer(scheduler: scheduler) { call in call.expire() }
            }
            deadlines!.insert(call)
        }
    }

    /// A call was answered or cancelled: its deadline no longer needs watching.
    func callFinished(_ call: GRPCServerCall) {
        deadlines?.remove(call)
    }

    func countAnswer(_ status: GRPCStatus) {
        stats.answers[status.statsIndex] += 1
    }

    // MARK: deferred work

    /// Runs `work` from the driver, soon, and never inside the caller (e.g. a cancel callback that arose in
    /// nghttp2's stream-close callback: it may start new calls, answer others, or close connections).
    func runSoon(_ work: @escaping () -> Void) {
        deferred.append(work)
        wakeDriver?()
    }

    /// Runs the work deferred so far; work deferred meanwhile waits for the next call.
    func runDeferredWork() {
        guard !deferred.isEmpty else { return }
        let batch = deferred
        deferred.removeAll(keepingCapacity: true)
        for work in batch { work() }
    }
}

/// One request stream on a server session: its headers as they arrive, its message being reassembled,
/// and, once dispatched, its call and its answer.
///
/// Reused: a closed stream goes back to its session's pool (`GRPCServerSession.maxPooledStreams`) with its
/// request buffer (`spareDecoder`), its answer buffer (`response`) and its last call (`spareCall`), so a
/// served Get allocates none of them. `generation` tells one use from the next.
final class GRPCServerStream {
    private(set) var id: Int32
    unowned let session: GRPCServerSession
    /// Bumped each time the object is taken from the pool for a new stream. Whatever names a stream for
    /// later (`GRPCServerSession.ready`) keeps the generation it saw: a stream closed and reused within one
    /// read must not be mistaken for the one that completed.
    private(set) var generation: UInt32 = 0
    var path = ""
    var isPost = false
    var contentTypeOK = false
    var timeoutMillis: Int64?
    var timeoutMalformed = false
    var authorization: String?
    /// Whether `authorization` carried the peer token (checked on the raw bytes as the header arrives).
    var authorized = false
    /// When the stream's HEADERS arrived, and when it must be over (`streamTimeoutMillis`).
    private(set) var endsAtMillis: Int64
    /// Bytes charged to this stream against the connection's and the process's buffer bounds.
    var held = 0
    /// The stream outlived `streamTimeoutMillis` and was ended; what it held is gone.
    var timedOut = false
    var encodingDeclared = false
    var deadlineMillis: Int64?
    /// Set while the request's message is being received; nil before its headers are checked and after.
    var decoder: GRPCMessageDecoder?
    /// The decoder of an earlier request on this object, kept for its message buffer
    /// (`GRPCMessageDecoder.restart` keeps a buffer of up to `keptBufferBytes`).
    var spareDecoder: GRPCMessageDecoder?
    /// The client sent END_STREAM.
    var remoteClosed = false
    /// An answer (response or status) was submitted; later input on the stream is ignored.
    var answered = false
    /// Answered before the client finished sending: reset (NO_ERROR) once our END_STREAM is out.
    var resetAfterAnswer = false
    var call: GRPCServerCall?
    /// The call last made for this object, reused for the next request when nobody else holds it.
    var spareCall: GRPCServerCall?
    /// The response message being sent by the data provider, and how much of prefix + message went out.
    var response = ByteBuffer(capacity: GRPCServerStream.keptAnswerBytes)
    var responseOffset = 0

    /// Largest answer buffer a stream keeps once its answer is out. Why this small: every pooled stream
    /// keeps one, so a burst of large answers must not stay pinned; a Get of a small value fits.
    static let keptAnswerBytes = 1 << 10

    init(id: Int32, session: GRPCServerSession, endsAtMillis: Int64) {
        self.id = id
        self.session = session
        self.endsAtMillis = endsAtMillis
    }

    /// Makes a closed stream taken from the pool the new stream `id`: every per-stream field starts over,
    /// the kept buffers stay.
    func reuse(id: Int32, endsAtMillis: Int64) {
        precondition(call == nil && held == 0, "a stream reused before it was finished")
        generation &+= 1
        self.id = id
        self.endsAtMillis = endsAtMillis
        path = ""
        isPost = false
        contentTypeOK = false
        timeoutMillis = nil
        timeoutMalformed = false
        authorization = nil
        authorized = false
        timedOut = false
        encodingDeclared = false
        deadlineMillis = nil
        decoder = nil
        remoteClosed = false
        answered = false
        resetAfterAnswer = false
        dropResponse()
        // The last call's message shares its buffer with `spareDecoder`; let go of it first so that the
        // decoder's restart finds the buffer unshared. A call someone still holds is not reused.
        if spareCall != nil {
            if isKnownUniquelyReferenced(&spareCall) { spareCall!.clearMessage() } else { spareCall = nil }
        }
    }

    /// Forgets the answer, and gives back its buffer if a large answer made it grow.
    func dropResponse() {
        response.count = 0
        responseOffset = 0
        if response.capacity > GRPCServerStream.keptAnswerBytes {
            response.shrink(to: GRPCServerStream.keptAnswerBytes)
        }
    }

    /// A decoder for this stream's request message: the spare one restarted (its buffer kept), else a new one.
    func makeDecoder(maxMessageBytes: Int) -> GRPCMessageDecoder {
        if var decoder = spareDecoder, decoder.maxMessageBytes == maxMessageBytes {
            spareDecoder = nil
            decoder.restart()
            decoder.encodingDeclared = encodingDeclared
            return decoder
        }
        return GRPCMessageDecoder(maxMessageBytes: maxMessageBytes, maxMessages: 1,
                                  encodingDeclared: encodingDeclared)
    }
}

/// The server side of one HTTP/2 session speaking gRPC (PROTOCOL-HTTP2.md), apart from I/O: validates
/// requests, reassembles their message, hands complete calls to the handler, sends answers (HEADERS, DATA,
/// trailers), and keeps the connection's deadlines (`tick`) and buffer bounds.
final class GRPCServerSession: HTTP2Session {
    unowned let context: GRPCServerContext
    private var streams: [Int32: GRPCServerStream] = [:]
    /// Streams whose request completed during the current read, with their generation; dispatched after
    /// `mem_recv` returns, so the handler never runs inside an nghttp2 callback.
    private var ready: [(stream: GRPCServerStream, generation: UInt32)] = []
    /// `ready` of the read being dispatched (`didProcessInput`), kept with its capacity.
    private var dispatching: [(stream: GRPCServerStream, generation: UInt32)] = []
    /// Closed streams kept for reuse (`GRPCServerStream.reuse`), at most `maxPooledStreams`.
    private var pool: [GRPCServerStream] = []
    /// Most closed streams a session keeps for reuse. Why a bound: each keeps its buffers (up to
    /// `GRPCServerStream.keptAnswerBytes` and `GRPCMessageDecoder.keptBufferBytes`), so a burst of
    /// concurrent streams must not stay pinned; a peer's usual concurrency fits.
    static let maxPooledStreams = 64
    /// Bytes held by this session's streams (see `GRPCServerSettings.maxConnectionBufferBytes`).
    private(set) var held = 0
    let acceptedAtMillis: Int64
    /// Whether the peer has authenticated (`GRPCServerSettings.maxUnauthenticatedConnections`).
    private(set) var isAuthenticated = false
    /// When we sent a PING to a silent connection; nil when none is outstanding.
    private var pingSentAtMillis: Int64?

    /// Streams open now (tests, reports).
    var openStreams: Int { streams.count }
    /// Closed streams kept for reuse (tests).
    var pooledStreams: Int { pool.count }

    init(context: GRPCServerContext) {
        self.context = context
        acceptedAtMillis = context.clock.nowMillis
        super.init(isServer: true, settings: context.settings.http2, nowMillis: acceptedAtMillis)
    }

    /// The peer's address for reports (the driver looks it up).
    var peerDescription: String { driver?.peerDescription ?? "unknown" }

    private func authenticated() {
        guard !isAuthenticated else { return }
        isAuthenticated = true
        context.sessionAuthenticated(self)
    }

    private func reportAbuse(_ kind: AbuseLog.Kind, _ detail: String) {
        context.abuse.report(kind, peer: peerDescription, detail, now: context.clock.nowMillis)
    }

    /// Queues our SETTINGS (the driver then writes them and starts reading); `.close` if nghttp2 could not
    /// make a session.
    func open() -> HTTP2Action {
        guard session != nil else { return .close(reason: "cannot create an HTTP/2 session") }
        submitSettings(extra: [(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, context.settings.maxConcurrentStreams)])
        return .proceed
    }

    // MARK: buffer bounds

    /// Charges `bytes` to `stream`; false (nothing charged) if the connection or the process is at its bound.
    private func hold(_ bytes: Int, for stream: GRPCServerStream) -> Bool {
        guard context.mayHold(bytes, connectionHeld: held) else { return false }
        stream.held += bytes
        held += bytes
        context.heldBytes += bytes
        return true
    }

    /// Gives back `bytes` (all of them by default) of what `stream` holds.
    private func release(_ stream: GRPCServerStream, _ bytes: Int? = nil) {
        let n = min(bytes ?? stream.held, stream.held)
        stream.held -= n
        held -= n
        context.heldBytes -= n
    }

    private func refuseForBuffers(_ stream: GRPCServerStream, what: String, bytes: Int) {
        context.stats.bufferRefusals += 1
        let s = context.settings
        reportAbuse(.bufferFull, "\(what) of \(bytes) bytes refused: this connection holds \(held) bytes "
                    + "(limit \(s.maxConnectionBufferBytes)), all peers "
                    + "\(context.heldBytes + context.buffers.queuedOutputBytes) (limit \(s.maxBufferBytes))")
        stream.decoder = nil
        stream.dropResponse()
        release(stream)
        sendStatus(stream, status: .resourceExhausted,
                   message: "the server's buffers for unfinished requests and unsent answers are full; retry later")
    }

    // MARK: deadlines

    /// The server's tick: the handshake and idle deadlines, output left unread, and the lifetime bound of
    /// each stream. Why a coarse tick rather than a timer each: these bounds are seconds long, and one scan
    /// of the open connections a few times a second costs less than keeping a timer per stream up to date.
    func tick(now: Int64) -> HTTP2Action {
        guard !isClosed else { return .proceed }
        let s = context.settings
        if !handshakeComplete {
            if now - acceptedAtMillis >= s.handshakeTimeoutMillis {
                return timedOut("no HTTP/2 preface and SETTINGS within \(s.handshakeTimeoutMillis) ms")
            }
            return .proceed
        }
        if writeInFlight && now - lastWriteMillis >= s.streamTimeoutMillis {
            return timedOut("the peer read none of our output for \(s.streamTimeoutMillis) ms")
        }
        if let sent = pingSentAtMillis, lastInputMillis < sent {
            if now - sent >= s.pingTimeoutMillis {
                return timedOut("silent for \(s.idleTimeoutMillis) ms and no answer to a PING in "
                                + "\(s.pingTimeoutMillis) ms")
            }
        } else if now - lastInputMillis >= s.idleTimeoutMillis, let session {
            // A live peer (nghttp2 answers PINGs by itself) keeps the connection; a dead or silent one goes.
            pingSentAtMillis = now
            nghttp2_submit_ping(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nil)
            requestFlush()
        }
        var expired: [GRPCServerStream] = []
        for stream in streams.values where stream.endsAtMillis <= now && !stream.timedOut { expired.append(stream) }
        for stream in expired { endStream(stream) }
        return .proceed
    }

    private func timedOut(_ reason: String) -> HTTP2Action {
        context.stats.connectionTimeouts += 1
        reportAbuse(.connectionTimeout, reason)
        return .close(reason: reason)
    }

    /// A stream outlived `streamTimeoutMillis`: answer DEADLINE_EXCEEDED if no answer was given, else reset it;
    /// either way what it held is released now, whether or not the peer ever takes another byte.
    private func endStream(_ stream: GRPCServerStream) {
        guard session != nil, !stream.timedOut else { return }
        stream.timedOut = true
        context.stats.streamTimeouts += 1
        reportAbuse(.streamTimeout, "stream \(stream.id) still open after \(context.settings.streamTimeoutMillis) ms "
                    + (stream.answered ? "(its answer not taken)" : "(not answered)"))
        stream.decoder = nil
        stream.dropResponse()
        release(stream)
        if let call = stream.call {
            call.expire()
        } else if !stream.answered {
            sendStatus(stream, status: .deadlineExceeded,
                       message: "stream not finished within \(context.settings.streamTimeoutMillis) ms")
        } else {
            resetStream(stream.id, code: NGHTTP2_CANCEL.rawValue)
            requestFlush()
        }
    }

    // MARK: requests

    override func didBeginHeaders(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let f = frame.pointee
        guard f.hd.type == UInt8(NGHTTP2_HEADERS.rawValue), f.headers.cat == NGHTTP2_HCAT_REQUEST else { return 0 }
        let endsAt = context.clock.nowMillis + context.settings.streamTimeoutMillis
        if let stream = pool.popLast() {
            stream.reuse(id: f.hd.stream_id, endsAtMillis: endsAt)
            streams[f.hd.stream_id] = stream
        } else {
            streams[f.hd.stream_id] = GRPCServerStream(id: f.hd.stream_id, session: self, endsAtMillis: endsAt)
        }
        return 0
    }

    override func didReceiveHeader(_ frame: UnsafePointer<nghttp2_frame>, name: UnsafeRawBufferPointer,
                                   value: UnsafeRawBufferPointer) -> Int32 {
        let f = frame.pointee
        // Only the request's own header block; headers in trailers (none in gRPC) are ignored.
        guard f.hd.type == UInt8(NGHTTP2_HEADERS.rawValue), f.headers.cat == NGHTTP2_HCAT_REQUEST,
              let stream = streams[f.hd.stream_id] else { return 0 }
        if name.equals(":path") {
            stream.path = context.path(value)
        } else if name.equals(":method") {
            stream.isPost = value.equals("POST")
        } else if name.equals("content-type") {
            stream.contentTypeOK = GRPCServerSession.isGRPCContentType(value)
        } else if name.equals("grpc-timeout") {
            if let millis = GRPCTimeout.parse(value) {
                stream.timeoutMillis = millis
            } else {
                stream.timeoutMalformed = true
            }
        } else if name.equals("authorization") {
            stream.authorization = String(decoding: value, as: UTF8.self)
            if let token = context.settings.peerToken { stream.authorized = BearerToken.matches(value, token: token) }
        } else if name.equals("grpc-encoding") {
            stream.encodingDeclared = !value.equals("identity")
        }
        return 0
    }

    /// `application/grpc`, optionally followed by `+format` or `;params` (PROTOCOL-HTTP2.md, Content-Type).
    static func isGRPCContentType(_ value: UnsafeRawBufferPointer) -> Bool {
        guard value.starts(with: "application/grpc") else { return false }
        let n = "application/grpc".utf8.count
        return value.count == n || value[n] == UInt8(ascii: "+") || value[n] == UInt8(ascii: ";")
    }

    override func didReceiveFrame(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let f = frame.pointee
        if !isAuthenticated && handshakeComplete && context.settings.peerToken == nil { authenticated() }
        let endStream = f.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        switch f.hd.type {
        case UInt8(NGHTTP2_HEADERS.rawValue):
            guard let stream = streams[f.hd.stream_id] else { return 0 }
            if f.headers.cat == NGHTTP2_HCAT_REQUEST { headersComplete(stream) }
            if endStream { requestComplete(stream) }
        case UInt8(NGHTTP2_DATA.rawValue):
            if endStream, let stream = streams[f.hd.stream_id] { requestComplete(stream) }
        default:
            break
        }
        return 0
    }

    /// Validates the request headers as soon as they are complete, so a bad request is answered without
    /// waiting for (or buffering) its body.
    private func headersComplete(_ stream: GRPCServerStream) {
        if context.settings.peerToken != nil {
            guard stream.authorized else {
                // Refused before its message is read: an unauthenticated peer gets nothing buffered.
                context.stats.unauthenticatedRequests += 1
                reportAbuse(.unauthenticated, "request for \(stream.path) without the peer token")
                sendStatus(stream, status: .unauthenticated,
                           message: "this peer port requires authorization: Bearer <token>")
                return
            }
            authenticated()
        }
        if !stream.isPost {
            sendStatus(stream, status: .unimplemented, message: "gRPC requires POST", httpStatus: 405)
            return
        }
        if !stream.contentTypeOK {
            // PROTOCOL-HTTP2.md: a Content-Type not starting with application/grpc SHOULD get HTTP 415.
            sendStatus(stream, status: .internal, message: "content-type must be application/grpc", httpStatus: 415)
            return
        }
        if stream.timeoutMalformed {
            sendStatus(stream, status: .internal, message: "malformed grpc-timeout")
            return
        }
        if let timeout = stream.timeoutMillis {
            stream.deadlineMillis = min(context.clock.nowMillis + timeout, stream.endsAtMillis)
        } else {
            // A deadline on every call, sent or not: the stream's own lifetime bound.
            stream.deadlineMillis = stream.endsAtMillis
        }
        stream.decoder = stream.makeDecoder(maxMessageBytes: context.settings.maxMessageBytes)
    }

    override func didReceiveData(streamID: Int32, _ data: UnsafeRawBufferPointer) -> Int32 {
        guard let stream = streams[streamID], !stream.answered, stream.decoder != nil else { return 0 }
        guard hold(data.count, for: stream) else {
            refuseForBuffers(stream, what: "request data", bytes: data.count)
            return 0
        }
        if let failure = stream.decoder!.feed(data) {
            // Answered at once: e.g. an oversized message is refused before it is buffered.
            stream.decoder = nil
            sendStatus(stream, status: failure.serverStatus, message: failure.message)
        }
        return 0
    }

    /// END_STREAM from the client: a unary request must hold exactly one whole message.
    private func requestComplete(_ stream: GRPCServerStream) {
        stream.remoteClosed = true
        guard !stream.answered, let decoder = stream.decoder else { return }
        if let failure = decoder.finish() {
            sendStatus(stream, status: failure.serverStatus, message: failure.message)
        } else if decoder.messageCount == 0 {
            // statuscodes.md: request cardinality violation → UNIMPLEMENTED.
            sendStatus(stream, status: .unimplemented, message: "unary call ended without a request message")
        } else {
            ready.append((stream, stream.generation))
        }
    }

    override func didProcessInput() {
        guard !ready.isEmpty else { return }
        // Why a swap with a second kept array rather than `let batch = ready; ready.removeAll(…)`: that copy
        // shares the buffer, so emptying `ready` allocated a new one on every read that completed a request.
        swap(&ready, &dispatching)
        defer { dispatching.removeAll(keepingCapacity: true) }
        for (stream, generation) in dispatching {
            // The generation check: a stream that completed, was reset and was reused for a new stream in
            // the same read is still in `streams`, under its new id; the old entry must not dispatch it.
            guard stream.generation == generation, !stream.answered, !isClosed, streams[stream.id] === stream,
                  let message = stream.decoder?.firstMessage else { continue }
            stream.spareDecoder = stream.decoder
            stream.decoder = nil
            let call: GRPCServerCall
            if stream.spareCall != nil && isKnownUniquelyReferenced(&stream.spareCall) {
                call = stream.spareCall!
                call.reuse(path: stream.path, message: message, deadlineMillis: stream.deadlineMillis,
                           authorization: stream.authorization, stream: stream)
            } else {
                call = GRPCServerCall(path: stream.path, message: message, deadlineMillis: stream.deadlineMillis,
                                      authorization: stream.authorization, stream: stream, context: context)
                stream.spareCall = call
            }
            stream.call = call
            context.dispatch(call)
        }
    }

    override func didSendFrame(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let f = frame.pointee
        guard f.hd.type == UInt8(NGHTTP2_HEADERS.rawValue), f.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0,
              let stream = streams[f.hd.stream_id], stream.resetAfterAnswer, !stream.remoteClosed else { return 0 }
        stream.resetAfterAnswer = false
        resetStream(stream.id, code: NGHTTP2_NO_ERROR.rawValue)
        return 0
    }

    override func didCloseStream(_ streamID: Int32, errorCode: UInt32) -> Int32 {
        guard let stream = streams.removeValue(forKey: streamID) else { return 0 }
        stream.dropResponse()
        release(stream)
        // Inside nghttp2's callback: the call is marked cancelled now, its `onCancel` runs later (deferred).
        stream.call?.cancel()
        if pool.count < GRPCServerSession.maxPooledStreams { pool.append(stream) }
        return 0
    }

    // MARK: answers

    /// HEADERS (:status 200), one DATA message through the data provider, then trailers with status OK.
    /// `encode` writes the response message into the stream's own answer buffer (kept with the stream), so
    /// the answer is not built elsewhere and copied in.
    func respond(_ stream: GRPCServerStream, encode: (inout ByteBuffer) -> Void) {
        guard !stream.answered, !isClosed, let session else { return }
        stream.dropResponse()
        encode(&stream.response)
        let size = stream.response.count
        if size > context.settings.maxMessageBytes {
            stream.dropResponse()
            sendStatus(stream, status: .resourceExhausted,
                       message: "response of \(size) bytes exceeds the limit of "
                       + "\(context.settings.maxMessageBytes) bytes")
            return
        }
        // The request message is done with; the answer is held until the peer's window lets it out.
        release(stream)
        let framed = GRPCMessageDecoder.prefixBytes + size
        guard hold(framed, for: stream) else {
            refuseForBuffers(stream, what: "answer", bytes: framed)
            return
        }
        stream.answered = true
        var provider = HTTP2Session.dataProvider
        let rv = GRPCServerSession.responseHeaders.withUnsafeBufferPointer { nv in
            nghttp2_submit_response(session, stream.id, nv.baseAddress, nv.count, &provider)
        }
        if rv == 0 { context.countAnswer(.ok) }
        requestFlush()
    }

    /// The HEADERS of every OK answer, and the trailers after its message. Static, and submitted with
    /// NGHTTP2_NV_FLAG_NO_COPY_NAME/VALUE: nghttp2 points at these bytes instead of copying them per stream.
    private static let responseHeaders = [HTTP2HeaderBlock.staticField(":status", "200"),
                                          HTTP2HeaderBlock.staticField("content-type", "application/grpc"),
                                          HTTP2HeaderBlock.staticField("grpc-accept-encoding", "identity")]
    private static let okTrailers = [HTTP2HeaderBlock.staticField("grpc-status", "0")]

    override func readBody(streamID: Int32, into buffer: UnsafeMutablePointer<UInt8>, length: Int,
                           flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let stream = streams[streamID], !stream.timedOut, let session else {
            return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
        }
        let n = copyGRPCMessage(stream.response.readable, from: &stream.responseOffset, into: buffer,
                                length: length)
        release(stream, n)
        if stream.responseOffset == GRPCMessageDecoder.prefixBytes + stream.response.count {
            stream.dropResponse()
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue | NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
            _ = GRPCServerSession.okTrailers.withUnsafeBufferPointer { nv in
                nghttp2_submit_trailer(session, streamID, nv.baseAddress, nv.count)
            }
        }
        return n
    }

    /// A status without a message: Trailers-Only (one HEADERS frame with END_STREAM). If the client is
    /// still sending, RST_STREAM(NO_ERROR) tells it to stop (RFC 9113 §8.1) instead of us discarding its
    /// data; it is submitted only once the HEADERS frame has been sent (`didSendFrame`), because nghttp2
    /// drops frames still queued for a stream it is resetting.
    func sendStatus(_ stream: GRPCServerStream, status: GRPCStatus, message: String, httpStatus: Int = 200) {
        guard !stream.answered, !isClosed, let session else { return }
        stream.answered = true
        stream.decoder = nil
        release(stream)
        let h = context.headers
        h.reset()
        h.add(":status", httpStatus == 200 ? "200" : String(httpStatus))
        h.add("content-type", "application/grpc")
        h.add("grpc-status", String(status.rawValue))
        if !message.isEmpty { h.add("grpc-message", GRPCStatusMessage.encode(message)) }
        let rv = h.withNV { nv, count in nghttp2_submit_response(session, stream.id, nv, count, nil) }
        if rv == 0 { context.countAnswer(status) }
        stream.resetAfterAnswer = !stream.remoteClosed
        requestFlush()
    }

    // MARK: closing

    /// Graceful close: GOAWAY with the last stream we took; the session ends when those are answered.
    func goAway() {
        guard !isClosed, let session else { return }
        nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue),
                              nghttp2_session_get_last_proc_stream_id(session), NGHTTP2_NO_ERROR.rawValue, nil, 0)
    }

    override func connectionDidFail(reason: String) {
        if failedProtocol {
            context.stats.protocolErrors += 1
            if refusal != nil {
                context.stats.headerListViolations += 1
                reportAbuse(.headerList, reason)
            } else {
                reportAbuse(.http2Protocol, reason)
            }
        }
        if !isAuthenticated {
            isAuthenticated = true
            context.sessionAuthenticated(self)
        }
        for stream in streams.values { release(stream) }
        let open = streams
        streams.removeAll()
        ready.removeAll()
        pool.removeAll()
        for stream in open.values { stream.call?.cancel() }
    }
}

import CLibUV

/// A request the API refuses before doing anything: the status and, in words, why (DESIGN, "HTTP API":
/// errors say what is wrong). Thrown by the handlers' parameter checks and answered in one place.
struct APIRefusal: Error {
    let status: Int
    let message: String

    init(_ status: Int, _ message: String) {
        self.status = status
        self.message = message
    }

    static let unauthorized = APIRefusal(401, APIAuth.refusal)
}

/// What answering a request needs, now or later: the writer of its connection, its framing, the route it is
/// counted as and when it arrived. A deferred answer keeps this, never the request, whose bytes are gone.
struct Reply {
    let writer: ResponseWriter
    let framing: HTTPResponseFraming
    let route: APIRoute
    let startNanos: UInt64

    init(_ request: HTTPRequest, _ writer: ResponseWriter, _ route: APIRoute) {
        self.writer = writer
        framing = HTTPResponseFraming(request)
        self.route = route
        startNanos = request.startNanos
    }
}

extension HTTPResponseFraming {
    /// The framing of the answer to `request`: kept open or not as the connection decided, no body for HEAD.
    @inline(__always)
    init(_ request: HTTPRequest) {
        self.init(keepAlive: request.keepAlive, isHTTP10: request.head.isHTTP10,
                  omitBody: request.head.method == .head)
    }
}

// The API's ways of answering; each writes one whole response to the reply's writer and counts it.
extension APIHandler {
    /// Counts an answer of `status` under the reply's route, with the time since the request arrived.
    func record(_ reply: Reply, _ status: Int) {
        requestStats.record(route: reply.route, status: status, latencyNanos: uv_hrtime() &- reply.startNanos)
    }

    /// A plain-text answer: `message` and a newline.
    @discardableResult
    func text(_ reply: Reply, _ status: Int, _ message: String,
              extraHeaders: (inout ByteBuffer) -> Void = { _ in }) -> HTTPHandling {
        HTTPResponse.appendText(to: &reply.writer.bytes, status: status, message: message, framing: reply.framing,
                                date: date, extraHeaders: extraHeaders)
        record(reply, status)
        return .done
    }

    /// An answer of `body` as `contentType`.
    func body(_ reply: Reply, _ status: Int, _ contentType: StaticString,
              _ body: UnsafeRawBufferPointer) -> HTTPHandling {
        HTTPResponse.append(to: &reply.writer.bytes, status: status, contentType: contentType, body: body,
                            framing: reply.framing, date: date)
        record(reply, status)
        return .done
    }

    /// 204 No Content: a write of `/v1/cache` that was done.
    func noContent(_ reply: Reply) {
        var framing = reply.framing
        framing.omitBody = true
        HTTPResponse.appendHead(to: &reply.writer.bytes, status: 204, contentType: nil, contentLength: 0,
                                framing: framing, date: date)
        record(reply, 204)
    }

    /// The answer to a refused request; a 401 carries its challenge (RFC 9110 §11.6.1).
    func refuse(_ reply: Reply, _ refusal: APIRefusal) -> HTTPHandling {
        text(reply, refusal.status, refusal.message) {
            if refusal.status == 401 { $0.append(APIAuth.challenge) }
        }
    }

    /// 405 for a path served with other methods, with the `Allow` header the table worked out.
    func methodNotAllowed(_ reply: Reply, _ allowed: HTTPMethods) -> HTTPHandling {
        RouteTable.appendMethodNotAllowed(to: &reply.writer.bytes, allowed: allowed, framing: reply.framing,
                                          date: date)
        record(reply, 405)
        return .done
    }

    /// Runs `start`, which must call `finish()` on the answer it is given exactly once after writing the answer
    /// to the writer; copes with `finish` being called before `start` returns (the demo store answers at once),
    /// which is then `.done`.
    func deferAnswer(_ writer: ResponseWriter, _ start: (DeferredAnswer) -> Void) -> HTTPHandling {
        let answer = DeferredAnswer(writer)
        return deferAnswer(answer) { start(answer) }
    }

    /// `deferAnswer` with an answer made by the caller (one that carries what finishing it needs).
    func deferAnswer(_ answer: DeferredAnswer, _ start: () -> Void) -> HTTPHandling {
        start()
        answer.inside = false
        return answer.finishedInside ? .done : .deferred
    }
}

/// An answer a handler gave back to the connection to finish later (`deferAnswer`).
///
/// Why an object and not two captured flags and a `finish` closure: those were three allocations per remote
/// hit (issue 11); this is one.
class DeferredAnswer {
    /// nil only while a reused answer (`APIHandler.PendingRead`) is idle, so that it pins no connection.
    private var writer: ResponseWriter?
    fileprivate var inside = true
    fileprivate var finishedInside = false

    init(_ writer: ResponseWriter) {
        self.writer = writer
    }

    /// Makes a finished answer the answer to a new request on `writer`.
    func rearm(_ writer: ResponseWriter) {
        self.writer = writer
        inside = true
        finishedInside = false
    }

    /// Lets go of the writer once the answer is finished (an idle reused answer).
    func releaseWriter() {
        writer = nil
    }

    /// The answer is in the writer.
    func finish() {
        if inside { finishedInside = true } else { writer?.finishDeferred() }
    }
}

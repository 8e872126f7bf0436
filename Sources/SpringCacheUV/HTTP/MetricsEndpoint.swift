import CLibUV

/// The handler of the metrics listener (`--metrics HOST:PORT`): `GET /metrics` (the node's Prometheus page)
/// and `GET /healthz`; nothing else, so the port can be opened to a monitoring network without exposing the
/// cache's routes.
///
/// Why a listener of its own: the API port is shared by every worker (SO_REUSEPORT), so a scrape of it reaches
/// whichever worker the kernel picks, and Prometheus, which keeps its connection, would see one worker only.
/// Worker i listens on PORT+i, so each worker is a target of its own.
public final class MetricsEndpoint: HTTPHandler {
    let api: APIHandler
    let clock: Clock
    private var date = HTTPDate()

    init(api: APIHandler, clock: Clock) {
        self.api = api
        self.clock = clock
    }

    public func handle(_ request: HTTPRequest, writer out: ResponseWriter) -> HTTPHandling {
        date.update(unixSeconds: clock.nowMillis / 1000)
        let framing = HTTPResponseFraming(keepAlive: request.keepAlive, isHTTP10: request.head.isHTTP10,
                                          omitBody: request.head.method == .head)
        let path = request.path
        let isRead = request.head.method == .get || request.head.method == .head
        if path.equals("/metrics") && isRead {
            var text = ByteBuffer(capacity: 8192)
            api.renderMetrics(into: &text)
            HTTPResponse.append(to: &out.bytes, status: 200, contentType: PrometheusWriter.contentType,
                                body: text.readable, framing: framing, date: date)
        } else if path.equals("/healthz") && isRead {
            HTTPResponse.appendText(to: &out.bytes, status: 200, message: "ok", framing: framing, date: date)
        } else if path.equals("/metrics") || path.equals("/healthz") {
            HTTPResponse.appendText(to: &out.bytes, status: 405, message: "method not allowed; use GET, HEAD",
                                    framing: framing, date: date) {
                HTTPResponse.appendHeader(to: &$0, name: "Allow", value: "GET, HEAD")
            }
        } else {
            HTTPResponse.appendText(to: &out.bytes, status: 404,
                                    message: "the metrics port serves only /metrics and /healthz",
                                    framing: framing, date: date)
        }
        return .done
    }

    public func writeError(status: Int, reason: String, into out: ResponseWriter) {
        date.update(unixSeconds: clock.nowMillis / 1000)
        HTTPResponse.appendText(to: &out.bytes, status: status, message: reason,
                                framing: HTTPResponseFraming(keepAlive: false), date: date)
    }
}

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
    private let routes = RouteTable([
        Route("/metrics", .exact, .reads, .metrics),
        Route("/healthz", .exact, .reads, .healthz),
    ])

    init(api: APIHandler, clock: Clock) {
        self.api = api
        self.clock = clock
    }

    public func handle(_ request: HTTPRequest, writer: ResponseWriter) -> HTTPHandling {
        date.update(unixSeconds: clock.nowMillis / 1000)
        let framing = HTTPResponseFraming(request)
        switch routes.match(path: request.path, method: request.head.method) {
        case .found(let route) where route.route == .metrics:
            var page = ByteBuffer(capacity: 8192)
            api.renderMetrics(into: &page)
            HTTPResponse.append(to: &writer.bytes, status: 200, contentType: PrometheusWriter.contentType,
                                body: page.readable, framing: framing, date: date)
        case .found:
            HTTPResponse.appendText(to: &writer.bytes, status: 200, message: "ok", framing: framing, date: date)
        case .methodNotAllowed(_, let allowed):
            RouteTable.appendMethodNotAllowed(to: &writer.bytes, allowed: allowed, framing: framing, date: date)
        case .notFound:
            HTTPResponse.appendText(to: &writer.bytes, status: 404,
                                    message: "the metrics port serves only /metrics and /healthz",
                                    framing: framing, date: date)
        }
        return .done
    }

    public func writeError(status: Int, reason: String, into writer: ResponseWriter) {
        date.update(unixSeconds: clock.nowMillis / 1000)
        HTTPResponse.appendText(to: &writer.bytes, status: status, message: reason,
                                framing: HTTPResponseFraming(keepAlive: false), date: date)
    }
}

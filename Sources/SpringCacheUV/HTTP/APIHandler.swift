import CLibUV

/// The node's HTTP API: springcache's routes (`/api/get`, `/api/set`, `/setpeer`) and ours
/// (`/v1/cache/...`, `/api/delete`, `/api/stats`, `/api/peers`, `/metrics`, `/healthz`).
///
/// Every route is declared once, in `routes`, with its path, methods and whether it needs the bearer token;
/// the table answers 404 and 405, `APIAuth` answers 401, and the handlers live by job: `+CacheReads` (gets),
/// `+CacheWrites` (sets and deletes), `+Peers` (`/setpeer`, `/api/peers`), `+Stats` (`/api/stats`,
/// `/metrics`, `/healthz`). Answers are written by `+Answers`, parameters read by `+Parameters`. What the
/// API needs from the node beyond the group comes through `APIHost`.
///
/// A hit is answered without allocating: the key is percent-decoded into `scratch`, looked up by its bytes,
/// and `value=<V>\n` is appended to the connection's writer. Misses defer the answer until the group's load
/// lands, and then answer through the writer they kept.
public final class APIHandler: HTTPHandler {
    let clock: Clock
    let group: Group
    let host: APIHost
    public internal(set) var requestStats = RequestStats()
    var auth: APIAuth
    var date = HTTPDate()
    /// Decoded parameters of the current request; reset per request, never shrinks.
    var scratch: ByteBuffer
    /// Hits on values at least this large send the value from its entry (`APISettings.borrowedValueBytes`).
    let borrowedValueBytes: Int
    /// Answered reads kept for reuse (`PendingRead`, `ReusePool`).
    var pendingReads = ReusePool<PendingRead>(limit: APIHandler.pendingReadPoolLimit)

    /// The largest `expire` of springcache's /api/set, in minutes (3 days).
    static let maxExpireMinutes = 4320
    /// The largest `ttl` of PUT /v1/cache, in seconds (the same 3 days).
    static let maxTTLSeconds = 4320 * 60
    /// The prefix of the raw-value routes, `/v1/cache/{group}/{key}`.
    static let v1Prefix: StaticString = "/v1/cache/"

    /// Every route of the API. `/api/get` first: it is the hot path.
    let routes = RouteTable([
        Route("/api/get", .exact, .reads, .get),
        Route(APIHandler.v1Prefix, .prefix, .reads, .v1Get),
        Route(APIHandler.v1Prefix, .prefix, .put, .v1Put, authenticated: true),
        Route(APIHandler.v1Prefix, .prefix, .delete, .v1Delete, authenticated: true),
        Route("/api/set", .exact, .post, .set, authenticated: true),
        Route("/api/delete", .exact, .post, .delete, authenticated: true),
        Route("/healthz", .exact, .reads, .healthz),
        Route("/api/stats", .exact, .reads, .stats),
        Route("/metrics", .exact, .reads, .metrics),
        Route("/api/peers", .exact, .reads, .peers),
        Route("/setpeer", .exact, .post, .setpeer, authenticated: true),
    ])

    public init(settings: APISettings, clock: Clock, group: Group, host: APIHost) {
        self.clock = clock
        self.group = group
        self.host = host
        auth = APIAuth(token: settings.authToken)
        scratch = ByteBuffer(capacity: settings.scratchCapacity)
        borrowedValueBytes = settings.borrowedValueBytes
    }

    /// Gives back the scratch memory at once; the handler is not used after the server stopped.
    func close() {
        scratch.shrink(to: 0)
    }

    /// The bearer token mutating routes require (`--auth-token-file`); replaced when SIGHUP re-reads the file.
    public var authToken: [UInt8]? {
        get { auth.token }
        set { auth.token = newValue }
    }

    // MARK: routing

    public func handle(_ request: HTTPRequest, writer: ResponseWriter) -> HTTPHandling {
        date.update(unixSeconds: clock.nowMillis / 1000)
        scratch.count = 0
        switch routes.match(path: request.path, method: request.head.method) {
        case .found(let route):
            if route.authenticated && !auth.allows(request) {
                return refuse(Reply(request, writer, route.route), .unauthorized)
            }
            do {
                return try serve(route.route, request, writer)
            } catch {
                return refuse(Reply(request, writer, route.route), error)
            }
        case .methodNotAllowed(let first, let allowed):
            return methodNotAllowed(Reply(request, writer, first.route), allowed)
        case .notFound:
            return text(Reply(request, writer, .other), 404,
                        "no such route: \(String(decoding: request.path, as: UTF8.self))")
        }
    }

    /// Runs the handler of `route`; a request it refuses before doing anything throws why.
    private func serve(_ route: APIRoute, _ request: HTTPRequest,
                       _ writer: ResponseWriter) throws(APIRefusal) -> HTTPHandling {
        switch route {
        case .get: return try getValue(request, writer)
        case .v1Get: return try getRawValue(request, writer)
        case .set: return try setValue(request, writer)
        case .delete: return try deleteValue(request, writer)
        case .v1Put: return try putRawValue(request, writer)
        case .v1Delete: return try deleteRawValue(request, writer)
        case .setpeer: return try setPeer(request, writer)
        case .peers: return peers(Reply(request, writer, route))
        case .stats: return stats(Reply(request, writer, route))
        case .metrics: return metrics(Reply(request, writer, route))
        case .healthz: return healthz(Reply(request, writer, route))
        case .other: preconditionFailure("no route is declared as .other")
        }
    }

    public func writeError(status: Int, reason: String, into writer: ResponseWriter) {
        date.update(unixSeconds: clock.nowMillis / 1000)
        HTTPResponse.appendError(to: &writer.bytes, HTTPParseError(status: status, reason: reason),
                                 framing: HTTPResponseFraming(), date: date)
        requestStats.record(route: .other, status: status)
    }
}

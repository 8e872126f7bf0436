/// An API route as counted in request statistics; a small fixed set so counters live in a flat table.
public enum APIRoute: Int, CaseIterable {
    case get        // springcache's GET /api/get
    case set        // POST /api/set
    case delete     // POST /api/delete
    case v1Get      // GET|HEAD /v1/cache/{group}/{key}
    case v1Put      // PUT /v1/cache/{group}/{key}
    case v1Delete   // DELETE /v1/cache/{group}/{key}
    case stats      // GET /api/stats
    case metrics    // GET /metrics
    case healthz    // GET /healthz
    case peers      // GET /api/peers
    case setpeer    // POST /setpeer
    case other      // anything else, including requests the parser rejected

    /// The `route` label value.
    public var label: StaticString {
        switch self {
        case .get: return "get"
        case .set: return "set"
        case .delete: return "delete"
        case .v1Get: return "v1_get"
        case .v1Put: return "v1_put"
        case .v1Delete: return "v1_delete"
        case .stats: return "stats"
        case .metrics: return "metrics"
        case .healthz: return "healthz"
        case .peers: return "peers"
        case .setpeer: return "setpeer"
        case .other: return "other"
        }
    }
}

/// The HTTP server's counters: requests by route and status, latencies by route, connections, bytes and
/// parse errors. A plain struct owned by the loop; `/metrics` and `/api/stats` read it.
///
/// Why a fixed status table instead of a dictionary: recording runs once per request on the hot path, and
/// a switch to an index plus an array increment costs nothing and allocates nothing. Any status outside the
/// table (the server sends none today) is counted in a last column reported as code="other".
public struct RequestStats: Equatable {
    /// The statuses counted individually, in column order; anything else is counted as "other".
    public static let trackedStatuses: [Int] = [
        100, 200, 204, 304, 400, 401, 403, 404, 405, 408, 411, 413, 414, 431, 500, 501, 502, 503, 504, 505,
    ]
    /// The `code` label of each column: the tracked statuses, then "other".
    public static let statusLabels: [StaticString] = [
        "100", "200", "204", "304", "400", "401", "403", "404", "405", "408", "411", "413", "414", "431",
        "500", "501", "502", "503", "504", "505", "other",
    ]
    public static var statusColumns: Int { statusLabels.count }

    /// requestCounts[route.rawValue * statusColumns + statusColumn(status)].
    public private(set) var requestCounts: [UInt64]
    /// One histogram per route, indexed by `APIRoute.rawValue`.
    public private(set) var latencies: [LatencyHistogram]

    public var connectionsAccepted: UInt64 = 0
    public var connectionsClosed: UInt64 = 0
    /// Connections refused because the connection limit was reached.
    public var connectionsRejected: UInt64 = 0
    /// Connections open now (a gauge).
    public var currentConnections: Int = 0
    public var bytesIn: UInt64 = 0
    public var bytesOut: UInt64 = 0
    /// Requests the parser rejected (each also counted under route `other` with its status).
    public var parseErrors: UInt64 = 0

    public init() {
        requestCounts = [UInt64](repeating: 0, count: APIRoute.allCases.count * RequestStats.statusColumns)
        // One distinct histogram each: `repeating:` would share one bucket array, copied on first observe.
        latencies = APIRoute.allCases.map { _ in LatencyHistogram() }
    }

    /// The column of `status` in the table.
    public static func statusColumn(_ status: Int) -> Int {
        switch status {
        case 100: return 0
        case 200: return 1
        case 204: return 2
        case 304: return 3
        case 400: return 4
        case 401: return 5
        case 403: return 6
        case 404: return 7
        case 405: return 8
        case 408: return 9
        case 411: return 10
        case 413: return 11
        case 414: return 12
        case 431: return 13
        case 500: return 14
        case 501: return 15
        case 502: return 16
        case 503: return 17
        case 504: return 18
        case 505: return 19
        default: return 20
        }
    }

    /// Counts one answered request and, when given, how long it took from its arrival to its response.
    public mutating func record(route: APIRoute, status: Int, latencyNanos: UInt64? = nil) {
        requestCounts[route.rawValue * RequestStats.statusColumns + RequestStats.statusColumn(status)] &+= 1
        if let latencyNanos { latencies[route.rawValue].observe(nanoseconds: latencyNanos) }
    }

    /// How many requests to `route` were answered with `status` (or, for an untracked status, any untracked).
    public func requests(route: APIRoute, status: Int) -> UInt64 {
        requestCounts[route.rawValue * RequestStats.statusColumns + RequestStats.statusColumn(status)]
    }

    /// All requests to `route`, whatever their status.
    public func requests(route: APIRoute) -> UInt64 {
        let start = route.rawValue * RequestStats.statusColumns
        return requestCounts[start..<start + RequestStats.statusColumns].reduce(0, &+)
    }

    /// All requests counted.
    public var totalRequests: UInt64 { requestCounts.reduce(0, &+) }
}

// Metrics/: the counters' plain types and their rendering (Prometheus text, JSON); knows no subsystem.

/// The kind of a Prometheus metric family, as written in its `# TYPE` line.
public enum PrometheusMetricType {
    case counter, gauge, histogram

    var text: StaticString {
        switch self {
        case .counter: return "counter"
        case .gauge: return "gauge"
        case .histogram: return "histogram"
        }
    }
}

/// One `name="value"` label of a Prometheus sample.
public struct PrometheusLabel {
    public enum Value {
        case text(StaticString)
        case string(String)
        case integer(Int)
    }

    public let name: StaticString
    public let value: Value

    public init(_ name: StaticString, _ value: StaticString) { self.name = name; self.value = .text(value) }
    public init(_ name: StaticString, _ value: String) { self.name = name; self.value = .string(value) }
    public init(_ name: StaticString, _ value: Int) { self.name = name; self.value = .integer(value) }
}

/// The numbers one cache reports, as plain values the server copies from the caches it owns.
public struct CacheMetricValues {
    /// The `cache` label: "main", "hot", or a group name.
    public var name: String
    public var items: Int
    public var bytes: Int
    public var hits: UInt64
    public var misses: UInt64
    public var loads: UInt64
    public var loadErrors: UInt64
    public var evictions: UInt64
    public var expirations: UInt64

    public init(name: String, items: Int = 0, bytes: Int = 0, hits: UInt64 = 0, misses: UInt64 = 0,
                loads: UInt64 = 0, loadErrors: UInt64 = 0, evictions: UInt64 = 0, expirations: UInt64 = 0) {
        self.name = name
        self.items = items
        self.bytes = bytes
        self.hits = hits
        self.misses = misses
        self.loads = loads
        self.loadErrors = loadErrors
        self.evictions = evictions
        self.expirations = expirations
    }
}

/// A writer of the Prometheus text exposition format, version 0.0.4, appending to a `ByteBuffer`.
///
/// Use it through `write(into:constantLabels:_:)`; inside, call `family` once per metric name (its `# HELP`
/// and `# TYPE` lines) and then `sample` or `histogram` for each label set. `constantLabels` (such as
/// `worker="0"`) are added to every sample. Rendering /metrics is not on the request hot path, so label lists
/// are plain arrays and floats are formatted with `description`; counters and gauges of integers never
/// allocate. Serve the result as `text/plain; version=0.0.4; charset=utf-8` (`contentType`).
public struct PrometheusWriter {
    /// The content type of the exposition format.
    public static let contentType: StaticString = "text/plain; version=0.0.4; charset=utf-8"

    /// The caller's buffer, borrowed for the duration of `write(into:)`.
    private let out: UnsafeMutablePointer<ByteBuffer>
    private var buffer: ByteBuffer {
        _read { yield out.pointee }
        nonmutating _modify { yield &out.pointee }
    }
    public var constantLabels: [PrometheusLabel]

    private init(out: UnsafeMutablePointer<ByteBuffer>, constantLabels: [PrometheusLabel]) {
        self.out = out
        self.constantLabels = constantLabels
    }

    /// Runs `body` with a writer that appends to `out`.
    public static func write(into out: inout ByteBuffer, constantLabels: [PrometheusLabel] = [],
                             _ body: (inout PrometheusWriter) -> Void) {
        // The writer borrows `out` for the call; exclusivity of `out` keeps the caller from touching it meanwhile.
        withUnsafeMutablePointer(to: &out) { p in
            var writer = PrometheusWriter(out: p, constantLabels: constantLabels)
            body(&writer)
        }
    }

    /// Appends the `# HELP` and `# TYPE` lines of a metric family; counters' names should end in `_total`.
    public mutating func family(_ name: StaticString, _ type: PrometheusMetricType, help: StaticString) {
        buffer.append("# HELP ")
        buffer.append(name)
        buffer.append(UInt8(ascii: " "))
        // HELP text escapes backslash and newline (exposition format 0.0.4).
        appendEscaped(UnsafeRawBufferPointer(start: help.utf8Start, count: help.utf8CodeUnitCount), quotes: false)
        buffer.append("\n# TYPE ")
        buffer.append(name)
        buffer.append(UInt8(ascii: " "))
        buffer.append(type.text)
        buffer.append(UInt8(ascii: "\n"))
    }

    public mutating func sample(_ name: StaticString, labels: [PrometheusLabel] = [], value: UInt64) {
        sampleStart(name, suffix: "", labels: labels, le: nil)
        buffer.appendDecimal(value)
        buffer.append(UInt8(ascii: "\n"))
    }

    public mutating func sample(_ name: StaticString, labels: [PrometheusLabel] = [], value: Int) {
        sampleStart(name, suffix: "", labels: labels, le: nil)
        buffer.appendDecimal(value)
        buffer.append(UInt8(ascii: "\n"))
    }

    public mutating func sample(_ name: StaticString, labels: [PrometheusLabel] = [], value: Double) {
        sampleStart(name, suffix: "", labels: labels, le: nil)
        appendDouble(value)
        buffer.append(UInt8(ascii: "\n"))
    }

    /// Appends the `_bucket` (cumulative, with `le`), `_sum` (seconds) and `_count` samples of a histogram.
    public mutating func histogram(_ name: StaticString, labels: [PrometheusLabel] = [], _ h: LatencyHistogram) {
        var cumulative: UInt64 = 0
        for (i, le) in LatencyHistogram.upperBoundLabels.enumerated() {
            cumulative &+= h.bucketCounts[i]
            sampleStart(name, suffix: "_bucket", labels: labels, le: le)
            buffer.appendDecimal(cumulative)
            buffer.append(UInt8(ascii: "\n"))
        }
        sampleStart(name, suffix: "_sum", labels: labels, le: nil)
        appendDouble(h.sumSeconds)
        buffer.append(UInt8(ascii: "\n"))
        sampleStart(name, suffix: "_count", labels: labels, le: nil)
        buffer.appendDecimal(h.count)
        buffer.append(UInt8(ascii: "\n"))
    }

    /// A family with a single unlabelled (apart from constant labels) sample.
    public mutating func counter(_ name: StaticString, help: StaticString, value: UInt64) {
        family(name, .counter, help: help)
        sample(name, value: value)
    }

    public mutating func gauge(_ name: StaticString, help: StaticString, value: Int) {
        family(name, .gauge, help: help)
        sample(name, value: value)
    }

    // MARK: - The server's own families

    /// Appends the HTTP server's metrics. Only route/code pairs and routes that have seen requests are listed,
    /// so the page stays short (12 routes × 21 codes would be mostly zeros).
    public mutating func requestStats(_ stats: RequestStats) {
        family("springcache_http_requests_total", .counter, help: "HTTP requests answered, by route and status.")
        for route in APIRoute.allCases {
            for column in 0..<RequestStats.statusColumns {
                let n = stats.requestCounts[route.rawValue * RequestStats.statusColumns + column]
                if n == 0 { continue }
                sample("springcache_http_requests_total",
                       labels: [PrometheusLabel("route", route.label),
                                PrometheusLabel("code", RequestStats.statusLabels[column])],
                       value: n)
            }
        }
        family("springcache_http_request_duration_seconds", .histogram,
               help: "Time from a request's arrival to its response, by route.")
        for route in APIRoute.allCases where stats.latencies[route.rawValue].count > 0 {
            histogram("springcache_http_request_duration_seconds", labels: [PrometheusLabel("route", route.label)],
                      stats.latencies[route.rawValue])
        }
        counter("springcache_http_connections_accepted_total", help: "TCP connections accepted.",
                value: stats.connectionsAccepted)
        counter("springcache_http_connections_closed_total", help: "TCP connections closed.",
                value: stats.connectionsClosed)
        counter("springcache_http_connections_rejected_total",
                help: "TCP connections refused because the connection limit was reached.",
                value: stats.connectionsRejected)
        gauge("springcache_http_connections", help: "TCP connections open now.", value: stats.currentConnections)
        counter("springcache_http_received_bytes_total", help: "Bytes read from API connections.",
                value: stats.bytesIn)
        counter("springcache_http_sent_bytes_total", help: "Bytes written to API connections.",
                value: stats.bytesOut)
        counter("springcache_http_parse_errors_total", help: "Requests rejected as malformed or too large.",
                value: stats.parseErrors)
    }

    /// Appends one family per cache statistic, with a `cache` label per entry of `caches`.
    public mutating func caches(_ caches: [CacheMetricValues]) {
        family("springcache_cache_items", .gauge, help: "Entries held in the cache.")
        for c in caches {
            sample("springcache_cache_items", labels: [PrometheusLabel("cache", c.name)], value: c.items)
        }
        family("springcache_cache_bytes", .gauge, help: "Bytes charged to the cache (keys, values and overhead).")
        for c in caches {
            sample("springcache_cache_bytes", labels: [PrometheusLabel("cache", c.name)], value: c.bytes)
        }
        cacheCounter("springcache_cache_hits_total", "Lookups answered from the cache.", caches, \.hits)
        cacheCounter("springcache_cache_misses_total", "Lookups not found in the cache.", caches, \.misses)
        cacheCounter("springcache_cache_loads_total", "Misses filled from the origin or a peer.", caches, \.loads)
        cacheCounter("springcache_cache_load_errors_total", "Loads that failed.", caches, \.loadErrors)
        cacheCounter("springcache_cache_evictions_total", "Entries evicted to stay within the byte bound.",
                     caches, \.evictions)
        cacheCounter("springcache_cache_expirations_total", "Entries dropped because their TTL ran out.",
                     caches, \.expirations)
    }

    private mutating func cacheCounter(_ name: StaticString, _ help: StaticString, _ caches: [CacheMetricValues],
                                       _ field: KeyPath<CacheMetricValues, UInt64>) {
        family(name, .counter, help: help)
        for c in caches { sample(name, labels: [PrometheusLabel("cache", c.name)], value: c[keyPath: field]) }
    }

    // MARK: - Internals

    private mutating func sampleStart(_ name: StaticString, suffix: StaticString, labels: [PrometheusLabel],
                                      le: StaticString?) {
        buffer.append(name)
        buffer.append(suffix)
        if constantLabels.isEmpty && labels.isEmpty && le == nil {
            buffer.append(UInt8(ascii: " "))
            return
        }
        buffer.append(UInt8(ascii: "{"))
        var first = true
        for label in constantLabels { appendLabel(label, first: &first) }
        for label in labels { appendLabel(label, first: &first) }
        if let le { appendLabel(PrometheusLabel("le", le), first: &first) }
        buffer.append("} ")
    }

    private mutating func appendLabel(_ label: PrometheusLabel, first: inout Bool) {
        if !first { buffer.append(UInt8(ascii: ",")) }
        first = false
        buffer.append(label.name)
        buffer.append("=\"")
        switch label.value {
        case .text(let s):
            appendEscaped(UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount), quotes: true)
        case .string(var s):
            s.withUTF8 { appendEscaped(UnsafeRawBufferPointer($0), quotes: true) }
        case .integer(let n):
            buffer.appendDecimal(n)
        }
        buffer.append(UInt8(ascii: "\""))
    }

    /// Escapes `\` and newline, and `"` too inside label values (exposition format 0.0.4).
    private mutating func appendEscaped(_ bytes: UnsafeRawBufferPointer, quotes: Bool) {
        for c in bytes {
            switch c {
            case UInt8(ascii: "\\"): buffer.append("\\\\")
            case UInt8(ascii: "\n"): buffer.append("\\n")
            case UInt8(ascii: "\"") where quotes: buffer.append("\\\"")
            default: buffer.append(c)
            }
        }
    }

    /// Writes a float as Go's ParseFloat (Prometheus' reader) accepts it: digits, exponents, NaN, ±Inf.
    private mutating func appendDouble(_ value: Double) {
        if value.isNaN { buffer.append("NaN"); return }
        if value.isInfinite { buffer.append(value < 0 ? "-Inf" : "+Inf"); return }
        if value == value.rounded(), abs(value) < 1e15 {
            buffer.appendDecimal(Int(value))
            return
        }
        buffer.append(value.description)
    }
}

import CLibUV

// Origin/: where the owner of a key fills a miss from (springcache's "getter"), behind Cache's OriginLoader.

/// Why an origin load did not yield a value; the `outcome` label of `springcache_origin_requests_total`.
public enum OriginOutcome: Int, CaseIterable {
    case ok, notFound, unreachable, timedOut, badStatus, tooLarge, failed

    public var label: StaticString {
        switch self {
        case .ok: return "ok"
        case .notFound: return "not_found"
        case .unreachable: return "unreachable"
        case .timedOut: return "timeout"
        case .badStatus: return "bad_status"
        case .tooLarge: return "too_large"
        case .failed: return "other"
        }
    }
}

/// Counters of one HTTP origin, read by /metrics and /api/stats.
public struct OriginStats {
    /// Loads by outcome, indexed by `OriginOutcome.rawValue`.
    public var outcomes = [UInt64](repeating: 0, count: OriginOutcome.allCases.count)
    /// Time from starting a load to its outcome, whatever the outcome.
    public var latency = LatencyHistogram()
}

/// An origin reached over HTTP: a miss for `key` becomes `GET <template with {key} and {group} filled in>`.
///
/// Reply mapping (what the API reports, see `LoadError`): 200 → the body is the value; 404 → not found;
/// any other status, a refused or reset connection or an unresolvable host → `.unavailable` (502);
/// no answer within `timeoutMillis` → `.timedOut` (504). Loads run on the shared `CurlMulti`, so
/// hundreds can be in flight at once; its `Settings.maxHostConnections` bounds the connections to the
/// origin and curl queues the rest.
///
/// Why the client's message names only the failure class ("origin unreachable", "origin timed out",
/// "origin answered 500"): curl's own words carry the origin's address and port, which are internal; they go
/// to `onFailure` (the node's rate-limited log) instead.
public final class HTTPOrigin: OriginLoader {
    private let template: URLTemplate
    private let multi: CurlMulti
    public let timeoutMillis: Int
    public private(set) var stats = OriginStats()
    /// Called for each failed load with its class and the full cause (curl's message, the URL's host).
    public var onFailure: ((OriginOutcome, String) -> Void)?

    /// - Throws: `URLTemplate.ParseError` when the template is not an http(s) URL containing `{key}`.
    public init(urlTemplate: String, multi: CurlMulti, timeoutMillis: Int = 2000) throws {
        self.template = try URLTemplate(urlTemplate)
        self.multi = multi
        self.timeoutMillis = timeoutMillis
    }

    /// The URL loaded for one key; exposed for tests and logs.
    public func url(group: String, key: CacheKey) -> String {
        template.expand(group: group, key: key)
    }

    public func load(group: String, key: CacheKey, completion: @escaping (LoadResult) -> Void) {
        // The connect limit is the whole limit: an origin that cannot be reached in time is as late as one
        // that does not answer, and both are reported the same way.
        let url = url(group: group, key: key)
        let request = CurlRequest(url: url, timeoutMillis: timeoutMillis, connectTimeoutMillis: timeoutMillis)
        let timeoutMillis = self.timeoutMillis
        let started = uv_hrtime()
        multi.perform(request) { [weak self] outcome in
            let (result, kind) = HTTPOrigin.result(of: outcome, key: key, timeoutMillis: timeoutMillis)
            if let self {
                self.stats.outcomes[kind.rawValue] &+= 1
                self.stats.latency.observe(nanoseconds: uv_hrtime() &- started)
                if case .failure(let error) = result, let onFailure = self.onFailure {
                    onFailure(kind, "\(error.message) (GET \(url): \(HTTPOrigin.cause(of: outcome)))")
                }
            }
            completion(result)
        }
    }

    /// The reply mapping described on the type, with the outcome's class.
    static func result(of outcome: CurlOutcome, key: CacheKey, timeoutMillis: Int) -> (LoadResult, OriginOutcome) {
        switch outcome {
        case .response(status: 200, let body):
            return (.value(body), .ok)
        case .response(status: 404, _):
            return (.notFound, .notFound)
        case .response(let status, _):
            return (.failure(.unavailable("origin answered \(status) for key \(quoted(key))")), .badStatus)
        case .failed(let failure):
            switch failure.kind {
            case .timedOut:
                return (.failure(.timedOut("origin timed out (no answer within \(timeoutMillis) ms)")), .timedOut)
            case .connectFailed:
                return (.failure(.unavailable("origin unreachable for key \(quoted(key))")), .unreachable)
            case .responseTooLarge:
                return (.failure(.unavailable("origin value for key \(quoted(key)) is too large")), .tooLarge)
            case .other:
                return (.failure(.unavailable("origin request for key \(quoted(key)) failed")), .failed)
            }
        }
    }

    /// curl's own description of a failure (for the log only: it may name internal addresses).
    static func cause(of outcome: CurlOutcome) -> String {
        switch outcome {
        case .response(let status, _): return "status \(status)"
        case .failed(let failure): return failure.message
        }
    }

    private static func quoted(_ key: CacheKey) -> String {
        "\"\(key)\""
    }
}

/// An origin URL with `{key}` and optionally `{group}` placeholders, e.g. `http://db:8080/v/{group}/{key}`.
///
/// Each placeholder is replaced by the percent-encoded value (RFC 3986 §2.3: the unreserved characters
/// A-Z a-z 0-9 - . _ ~ stay; every other byte of the UTF-8 form becomes %XX, uppercase hex per §2.1), so a
/// key can never change the path's structure, add a query or reach another host.
public struct URLTemplate: Equatable {
    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    enum Part: Equatable {
        case literal(String)
        case key
        case group
    }

    let parts: [Part]

    public init(_ template: String) throws {
        let lower = template.lowercased()
        let scheme: String
        if lower.hasPrefix("http://") {
            scheme = "http://"
        } else if lower.hasPrefix("https://") {
            scheme = "https://"
        } else {
            throw ParseError(message: "origin URL template \"\(template)\" must start with http:// or https://")
        }
        let afterScheme = template.dropFirst(scheme.count)
        if afterScheme.isEmpty || afterScheme.hasPrefix("/") || afterScheme.hasPrefix("{") {
            throw ParseError(message: "origin URL template \"\(template)\" has no host after \(scheme)")
        }
        var parts: [Part] = []
        var literal = ""
        var rest = Substring(template)
        while !rest.isEmpty {
            if rest.hasPrefix("{key}") {
                if !literal.isEmpty { parts.append(.literal(literal)); literal = "" }
                parts.append(.key)
                rest = rest.dropFirst(5)
            } else if rest.hasPrefix("{group}") {
                if !literal.isEmpty { parts.append(.literal(literal)); literal = "" }
                parts.append(.group)
                rest = rest.dropFirst(7)
            } else {
                literal.append(rest.removeFirst())
            }
        }
        if !literal.isEmpty { parts.append(.literal(literal)) }
        guard parts.contains(.key) else {
            throw ParseError(message: "origin URL template \"\(template)\" must contain {key}, "
                + "e.g. http://HOST:PORT/PATH/{key}")
        }
        self.parts = parts
    }

    public func expand(group: String, key: String) -> String {
        expand(group: group, key: CacheKey(key))
    }

    public func expand(group: String, key: CacheKey) -> String {
        var url = ""
        for part in parts {
            switch part {
            case .literal(let text): url += text
            case .key: url += PercentEncoding.encoded(key.bytes)
            case .group: url += PercentEncoding.encoded(group.utf8)
            }
        }
        return url
    }
}

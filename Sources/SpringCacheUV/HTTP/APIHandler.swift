import CLibUV
#if canImport(Glibc)
import Glibc
#endif

/// The node's HTTP API: springcache's routes (`/api/get`, `/api/set`, `/setpeer`) and ours
/// (`/v1/cache/...`, `/api/delete`, `/api/stats`, `/api/peers`, `/metrics`, `/healthz`).
///
/// A hit is answered without allocating: the key is percent-decoded into `scratch`, looked up by its bytes,
/// and `value=<V>\n` is appended to the shared output. Misses defer the answer until the group's load lands.
public final class APIHandler: HTTPHandler {
    let config: NodeConfig
    let clock: Clock
    let group: Group
    let cluster: Cluster?
    weak var server: HTTPServer?
    /// With etcd: looks a name up there and adds it to the cluster; completes with whether it was found.
    var resolvePeer: ((String, @escaping (Bool) -> Void) -> Void)?
    public private(set) var requestStats = RequestStats()
    /// The bearer token mutating routes require (`--auth-token-file`); replaced when SIGHUP re-reads the file.
    public var authToken: [UInt8]?
    /// Families the node adds to /metrics (process, build, origin, etcd), inside the node's constant labels.
    var extraMetrics: ((inout PrometheusWriter) -> Void)?
    /// Fields the node adds to /api/stats (version, configuration, RSS).
    var extraStats: ((inout JSONWriter) -> Void)?
    private var date = HTTPDate()
    /// Decoded parameters of the current request; reset per request, never shrinks.
    private var scratch = ByteBuffer(capacity: 8 << 10)
    private let startedAtMillis: Int64

    /// The largest `expire` of springcache's /api/set, in minutes (3 days).
    static let maxExpireMinutes = 4320
    /// The largest `ttl` of PUT /v1/cache, in seconds (the same 3 days).
    static let maxTTLSeconds = 4320 * 60

    init(config: NodeConfig, clock: Clock, group: Group, cluster: Cluster?) {
        self.config = config
        self.clock = clock
        self.group = group
        self.cluster = cluster
        authToken = config.authToken
        startedAtMillis = clock.nowMillis
    }

    func close() {
        // Gives back the scratch memory at once; the handler is not used after the server stopped.
        scratch.shrink(to: 0)
    }

    private var out: ResponseBuffer { server!.output }

    // MARK: routing

    public func handle(_ request: HTTPRequest, writer: ResponseWriter) -> HTTPHandling {
        let connection = writer.connection
        date.update(unixSeconds: clock.nowMillis / 1000)
        scratch.count = 0
        let path = request.path
        let method = request.head.method

        if path.starts(with: "/v1/cache/") {
            return handleV1(request, on: connection, rest: UnsafeRawBufferPointer(rebasing: path[10...]))
        }
        if path.equals("/api/get") {
            guard method == .get || method == .head else { return methodNotAllowed(request, .get, "GET, HEAD") }
            return handleGet(request, on: connection)
        }
        if path.equals("/api/set") {
            guard method == .post else { return methodNotAllowed(request, .set, "POST") }
            return handleSet(request, on: connection)
        }
        if path.equals("/api/delete") {
            guard method == .post else { return methodNotAllowed(request, .delete, "POST") }
            return handleDelete(request, on: connection)
        }
        if path.equals("/healthz") {
            guard method == .get || method == .head else { return methodNotAllowed(request, .healthz, "GET, HEAD") }
            return text(request, .healthz, 200, "ok")
        }
        if path.equals("/api/stats") {
            guard method == .get || method == .head else { return methodNotAllowed(request, .stats, "GET, HEAD") }
            return handleStats(request)
        }
        if path.equals("/metrics") {
            guard method == .get || method == .head else { return methodNotAllowed(request, .metrics, "GET, HEAD") }
            return handleMetrics(request)
        }
        if path.equals("/api/peers") {
            guard method == .get || method == .head else { return methodNotAllowed(request, .peers, "GET, HEAD") }
            return handlePeers(request)
        }
        if path.equals("/setpeer") {
            guard method == .post else { return methodNotAllowed(request, .setpeer, "POST") }
            return handleSetPeer(request, on: connection)
        }
        return text(request, .other, 404, "no such route: \(String(decoding: path, as: UTF8.self))")
    }

    public func writeError(status: Int, reason: String, into writer: ResponseWriter) {
        date.update(unixSeconds: clock.nowMillis / 1000)
        HTTPResponse.appendText(to: &writer.bytes, status: status, message: reason,
                                framing: HTTPResponseFraming(keepAlive: false), date: date)
        requestStats.record(route: .other, status: status)
    }

    // MARK: springcache's routes

    /// `GET /api/get?key=K` → `value=<V>\n` (springcache's answer, byte for byte).
    private func handleGet(_ request: HTTPRequest, on connection: HTTPConnection) -> HTTPHandling {
        let key: Range<Int>
        switch requiredField("key", in: request.query ?? UnsafeRawBufferPointer(start: nil, count: 0)) {
        case .success(let range): key = range
        case .failure(let message): return text(request, .get, 400, message)
        }
        let framing = ReplyContext(request).framing
        let keyBytes = UnsafeRawBufferPointer(start: scratch.base + key.lowerBound, count: key.count)
        let hit: Bool? = group.withFreshValue(forKey: keyBytes) { view in
            HTTPResponse.appendValue(to: &out.bytes, value: view.value, framing: framing, date: date)
            return true
        }
        if hit != nil {
            requestStats.record(route: .get, status: 200, latencyNanos: uv_hrtime() &- request.startNanos)
            return .done
        }
        let cacheKey = CacheKey(keyBytes)
        let start = request.startNanos
        return deferAnswer(connection) { [unowned self] finish in
            self.group.get(key: cacheKey) { outcome in
                let status: Int
                switch outcome {
                case .value(let value, _, _, let stale):
                    value.withUnsafeBytes { v in
                        HTTPResponse.appendValue(to: &self.out.bytes, value: v, framing: framing, date: self.date) {
                            if stale { $0.append("Warning: 110 - \"Response is Stale\"\r\n") }
                        }
                    }
                    status = 200
                case .notFound, .failure:
                    status = self.writeMiss(outcome, key: cacheKey, framing: framing)
                }
                self.requestStats.record(route: .get, status: status, latencyNanos: uv_hrtime() &- start)
                finish()
            }
        }
    }

    /// `POST /api/set` form `key, value, expire, hot` → `done\n`, with springcache's validation.
    private func handleSet(_ request: HTTPRequest, on connection: HTTPConnection) -> HTTPHandling {
        if let denied = checkAuth(request, .set) { return denied }
        let key: Range<Int>
        switch requiredField("key", of: request) {
        case .success(let range): key = range
        case .failure(let message): return text(request, .set, 400, message)
        }
        let value: Range<Int>
        switch formField("value", of: request) {
        case .absent: return text(request, .set, 400, "missing form field \"value\"")
        case .malformed(let message): return text(request, .set, 400, message)
        case .value(let range): value = range
        }
        var ttlMillis: Int64? = nil
        switch formField("expire", of: request) {
        case .absent: break
        case .malformed(let message): return text(request, .set, 400, message)
        case .value(let range):
            let minutes = range.isEmpty ? 0 : parseDecimal(range, max: APIHandler.maxExpireMinutes)
            guard let minutes else {
                return text(request, .set, 400, "expire must be whole minutes from 0 to \(APIHandler.maxExpireMinutes)"
                            + " (3 days; 0 = the default TTL), got \"\(scratchString(range))\"")
            }
            if minutes > 0 { ttlMillis = Int64(minutes) * 60_000 }
        }
        var hot = false
        switch formField("hot", of: request) {
        case .absent: break
        case .malformed(let message): return text(request, .set, 400, message)
        case .value(let range):
            guard let parsed = parseHot(range) else {
                return text(request, .set, 400, "hot must be true, false or empty, got \"\(scratchString(range))\"")
            }
            hot = parsed
        }
        let cacheKey = scratchKey(key)
        let valueBytes = Array(UnsafeRawBufferPointer(start: scratch.base + value.lowerBound, count: value.count))
        let reply = ReplyContext(request)
        return deferAnswer(connection) { [unowned self] finish in
            self.group.write(key: cacheKey, value: valueBytes, ttlMillis: ttlMillis, hot: hot) { outcome in
                if self.answeredRefusal(outcome, reply, .set, "stored") {
                } else if outcome == .done(true) {
                    self.text(reply, .set, 200, "done")
                } else {
                    self.text(reply, .set, 413, "value of \(valueBytes.count) bytes does not fit in the "
                              + (hot ? "hot" : "main") + " cache")
                }
                finish()
            }
        }
    }

    /// `POST /api/delete` form `key` → `deleted\n`, 404 if nothing was cached under it; 503 when the key's
    /// owner is unreachable and 502 when it refused, so the client never hears "deleted" unless the owner did it.
    private func handleDelete(_ request: HTTPRequest, on connection: HTTPConnection) -> HTTPHandling {
        if let denied = checkAuth(request, .delete) { return denied }
        switch requiredField("key", of: request) {
        case .failure(let message): return text(request, .delete, 400, message)
        case .success(let key):
            let cacheKey = scratchKey(key)
            let reply = ReplyContext(request)
            return deferAnswer(connection) { [unowned self] finish in
                self.group.erase(key: cacheKey) { outcome in
                    if self.answeredRefusal(outcome, reply, .delete, "deleted") {
                    } else if outcome == .done(true) {
                        self.text(reply, .delete, 200, "deleted")
                    } else {
                        self.text(reply, .delete, 404, "key \"\(cacheKey)\" was not cached")
                    }
                    finish()
                }
            }
        }
    }

    /// `POST /setpeer` form `peer=NAME` (springcache's). A single node has no other peers to re-admit.
    private func handleSetPeer(_ request: HTTPRequest, on connection: HTTPConnection) -> HTTPHandling {
        if let denied = checkAuth(request, .setpeer) { return denied }
        switch requiredField("peer", of: request) {
        case .failure(let message): return text(request, .setpeer, 400, message)
        case .success(let peer):
            let name = scratchString(peer)
            let known = cluster?.readmit(name) ?? (name == config.name)
            if known { return setPeerDone(ReplyContext(request), name) }
            guard let resolvePeer else { return text(request, .setpeer, 404, "no member named \"\(name)\"") }
            // Not a member here: springcache resolved the name through etcd, and so do we.
            let reply = ReplyContext(request)
            return deferAnswer(connection) { [unowned self] finish in
                resolvePeer(name) { found in
                    if found {
                        self.setPeerDone(reply, name)
                    } else {
                        self.text(reply, .setpeer, 404, "no member named \"\(name)\", here or in etcd")
                    }
                    finish()
                }
            }
        }
    }

    // MARK: /v1/cache/{group}/{key}

    private func handleV1(_ request: HTTPRequest, on connection: HTTPConnection,
                          rest: UnsafeRawBufferPointer) -> HTTPHandling {
        let method = request.head.method
        let route: APIRoute = method == .put ? .v1Put : method == .delete ? .v1Delete : .v1Get
        guard let slash = rest.firstIndex(of: UInt8(ascii: "/")) else {
            return text(request, route, 404, "expected /v1/cache/{group}/{key}")
        }
        guard let groupRange = FormDecoder.decodePathSegment(UnsafeRawBufferPointer(rebasing: rest[..<slash]),
                                                             into: &scratch) else {
            return text(request, route, 400, "the group in the path has a malformed percent-escape")
        }
        guard scratchEquals(groupRange, group.name) else {
            return text(request, route, 404, "no such group \"\(scratchString(groupRange))\"")
        }
        guard let key = FormDecoder.decodePathSegment(UnsafeRawBufferPointer(rebasing: rest[(slash + 1)...]),
                                                      into: &scratch) else {
            return text(request, route, 400, "the key in the path has a malformed percent-escape")
        }
        guard !key.isEmpty else {
            return text(request, route, 400, "the key in /v1/cache/{group}/{key} must not be empty")
        }
        switch method {
        case .get, .head: return handleV1Get(request, on: connection, key: key)
        case .put: return handleV1Put(request, on: connection, key: key)
        case .delete:
            if let denied = checkAuth(request, .v1Delete) { return denied }
            let cacheKey = scratchKey(key)
            let reply = ReplyContext(request)
            return deferAnswer(connection) { [unowned self] finish in
                self.group.erase(key: cacheKey) { outcome in
                    if self.answeredRefusal(outcome, reply, .v1Delete, "deleted") {
                    } else if outcome == .done(true) {
                        self.empty(reply, .v1Delete, 204)
                    } else {
                        self.text(reply, .v1Delete, 404, "key \"\(cacheKey)\" was not cached")
                    }
                    finish()
                }
            }
        default:
            return methodNotAllowed(request, .v1Get, "GET, HEAD, PUT, DELETE")
        }
    }

    private func handleV1Get(_ request: HTTPRequest, on connection: HTTPConnection, key: Range<Int>) -> HTTPHandling {
        let framing = ReplyContext(request).framing
        let ifNoneMatch = request.head.ifNoneMatch.map { request.slice($0) }
        let keyBytes = UnsafeRawBufferPointer(start: scratch.base + key.lowerBound, count: key.count)
        let now = clock.nowMillis
        let status: Int? = group.withFreshValue(forKey: keyBytes) { view in
            writeRawValue(view.value, expiresAt: view.expiresAtMillis, etag: view.etag, now: now,
                          ifNoneMatch: ifNoneMatch, framing: framing, stale: false)
        }
        if let status {
            requestStats.record(route: .v1Get, status: status, latencyNanos: uv_hrtime() &- request.startNanos)
            return .done
        }
        let cacheKey = scratchKey(key)
        let ifNoneMatchCopy = ifNoneMatch.map { Array($0) }
        let start = request.startNanos
        return deferAnswer(connection) { [unowned self] finish in
            self.group.get(key: cacheKey) { outcome in
                let status: Int
                switch outcome {
                case .value(let value, let expiresAt, let etag, let stale):
                    status = value.withUnsafeBytes { v in
                        if let inm = ifNoneMatchCopy {
                            return inm.withUnsafeBytes { i in
                                self.writeRawValue(v, expiresAt: expiresAt, etag: etag, now: self.clock.nowMillis,
                                                   ifNoneMatch: i, framing: framing, stale: stale)
                            }
                        }
                        return self.writeRawValue(v, expiresAt: expiresAt, etag: etag, now: self.clock.nowMillis,
                                                  ifNoneMatch: nil, framing: framing, stale: stale)
                    }
                case .notFound, .failure:
                    status = self.writeMiss(outcome, key: cacheKey, framing: framing)
                }
                self.requestStats.record(route: .v1Get, status: status, latencyNanos: uv_hrtime() &- start)
                finish()
            }
        }
    }

    /// Writes a raw value with its validators; 304 when the client's If-None-Match names its ETag.
    private func writeRawValue(_ value: UnsafeRawBufferPointer, expiresAt: Int64, etag: UInt64, now: Int64,
                               ifNoneMatch: UnsafeRawBufferPointer?, framing: HTTPResponseFraming,
                               stale: Bool) -> Int {
        var tag = (UInt64(0), UInt64(0), UInt8(0), UInt8(0))  // "\"" + 16 hex + "\"" = 18 bytes
        return withUnsafeMutableBytes(of: &tag) { tagBytes in
            APIHandler.formatETag(etag, into: tagBytes)
            let etagBytes = UnsafeRawBufferPointer(rebasing: tagBytes[0..<18])
            let maxAge = max(0, (expiresAt - now) / 1000)
            let notModified = ifNoneMatch.map { APIHandler.etagMatches($0, etagBytes) } ?? false
            let status = notModified ? 304 : 200
            HTTPResponse.append(to: &out.bytes, status: status, contentType: HTTPResponse.octetStream,
                                body: value, framing: framing, date: date) { o in
                HTTPResponse.appendHeader(to: &o, name: "ETag", value: etagBytes)
                o.append("Cache-Control: max-age=")
                o.appendDecimal(Int(maxAge))
                o.append("\r\n")
                if stale { o.append("Warning: 110 - \"Response is Stale\"\r\n") }
            }
            return status
        }
    }

    private func handleV1Put(_ request: HTTPRequest, on connection: HTTPConnection, key: Range<Int>) -> HTTPHandling {
        if let denied = checkAuth(request, .v1Put) { return denied }
        let query = request.query ?? UnsafeRawBufferPointer(start: nil, count: 0)
        var ttlMillis: Int64? = nil
        switch FormDecoder.field("ttl", in: query, into: &scratch) {
        case .absent: break
        case .malformed(let m): return text(request, .v1Put, 400, m)
        case .value(let range):
            guard let seconds = parseDecimal(range, max: APIHandler.maxTTLSeconds) else {
                return text(request, .v1Put, 400, "ttl must be whole seconds from 0 to \(APIHandler.maxTTLSeconds)"
                            + " (3 days; 0 = the default TTL), got \"\(scratchString(range))\"")
            }
            if seconds > 0 { ttlMillis = Int64(seconds) * 1000 }
        }
        var hot = false
        switch FormDecoder.field("hot", in: query, into: &scratch) {
        case .absent: break
        case .malformed(let m): return text(request, .v1Put, 400, m)
        case .value(let range):
            guard let parsed = parseHot(range) else {
                return text(request, .v1Put, 400, "hot must be true, false or empty, got \"\(scratchString(range))\"")
            }
            hot = parsed
        }
        let value = Array(request.body)
        let cacheKey = scratchKey(key)
        let reply = ReplyContext(request)
        return deferAnswer(connection) { [unowned self] finish in
            self.group.write(key: cacheKey, value: value, ttlMillis: ttlMillis, hot: hot) { outcome in
                if self.answeredRefusal(outcome, reply, .v1Put, "stored") {
                } else if outcome == .done(true) {
                    self.empty(reply, .v1Put, 204)
                } else {
                    self.text(reply, .v1Put, 413, "value of \(value.count) bytes does not fit in the "
                              + (hot ? "hot" : "main") + " cache")
                }
                finish()
            }
        }
    }

    // MARK: observability

    private func handleStats(_ request: HTTPRequest) -> HTTPHandling {
        var json = ByteBuffer(capacity: 2048)
        StatsReport.writeJSON(into: &json, node: config, group: group, requests: requestStats,
                              connections: server?.stats ?? ConnectionStats(),
                              openConnections: server?.openConnections ?? 0,
                              uptimeMillis: clock.nowMillis - startedAtMillis, cluster: cluster, extra: extraStats)
        return bytes(request, .stats, 200, "application/json", json.readable)
    }

    private func handleMetrics(_ request: HTTPRequest) -> HTTPHandling {
        var text = ByteBuffer(capacity: 8192)
        renderMetrics(into: &text)
        return bytes(request, .metrics, 200, PrometheusWriter.contentType, text.readable)
    }

    /// The node's whole /metrics page; the metrics listener (`--metrics`) serves the same page.
    func renderMetrics(into text: inout ByteBuffer) {
        StatsReport.writePrometheus(into: &text, node: config, group: group, requests: requestStats,
                                    connections: server?.stats ?? ConnectionStats(),
                                    openConnections: server?.openConnections ?? 0,
                                    uptimeMillis: clock.nowMillis - startedAtMillis, cluster: cluster,
                                    extra: extraMetrics)
    }

    private func handlePeers(_ request: HTTPRequest) -> HTTPHandling {
        var json = ByteBuffer(capacity: 512)
        StatsReport.writePeersJSON(into: &json, node: config, apiPort: server?.boundPort ?? config.api.port,
                                   cluster: cluster)
        return bytes(request, .peers, 200, "application/json", json.readable)
    }

    /// Writes the answer to a get that found no value: 404, or 502/504 when the load failed.
    private func writeMiss(_ outcome: GetOutcome, key: CacheKey, framing: HTTPResponseFraming) -> Int {
        let status: Int
        let message: String
        switch outcome {
        case .failure(let error):
            status = APIHandler.status(of: error)
            message = error.message
        default:
            status = 404
            message = "key \"\(key)\" not found in group \"\(group.name)\""
        }
        HTTPResponse.appendText(to: &out.bytes, status: status, message: message, framing: framing, date: date)
        return status
    }

    /// springcache's `hot`: true, false or empty; nil for anything else.
    private func parseHot(_ range: Range<Int>) -> Bool? {
        switch scratchString(range) {
        case "", "false": return false
        case "true": return true
        default: return nil
        }
    }

    // MARK: helpers

    /// Runs `start`, which must call `finish` exactly once after writing the answer to `out`; copes with
    /// `finish` being called before `start` returns (the demo store answers at once).
    private func deferAnswer(_ connection: HTTPConnection,
                             _ start: (@escaping () -> Void) -> Void) -> HTTPHandling {
        var inside = true
        var finishedInside = false
        start {
            if inside { finishedInside = true } else { connection.finishDeferred() }
        }
        inside = false
        return finishedInside ? .done : .deferred
    }

    private enum FieldResult { case success(Range<Int>), failure(String) }

    /// A field of a POST route, read as Go's `FormValue` reads it (springcache's): the urlencoded body first,
    /// then the query string, so `POST /api/set?key=a&value=b` works as it did there.
    private func formField(_ name: StaticString, of request: HTTPRequest) -> FormField {
        let found = FormDecoder.field(name, in: request.body, into: &scratch)
        guard case .absent = found, let query = request.query else { return found }
        return FormDecoder.field(name, in: query, into: &scratch)
    }

    /// A POST route's field that must be present and non-empty (body first, then query).
    private func requiredField(_ name: StaticString, of request: HTTPRequest) -> FieldResult {
        required(name, formField(name, of: request))
    }

    /// springcache's `/setpeer` answer, `application/octet-stream` like its `/api/get`.
    @discardableResult
    private func setPeerDone(_ reply: ReplyContext, _ name: String) -> HTTPHandling {
        let body = Array("set peer \(name) successful\n".utf8)
        body.withUnsafeBytes { b in
            HTTPResponse.append(to: &out.bytes, status: 200, contentType: HTTPResponse.octetStream,
                                body: b, framing: reply.framing, date: date)
        }
        requestStats.record(route: .setpeer, status: 200, latencyNanos: uv_hrtime() &- reply.startNanos)
        return .done
    }

    /// A field that must be present and non-empty (springcache's `key` and `peer`).
    private func requiredField(_ name: StaticString, in form: UnsafeRawBufferPointer) -> FieldResult {
        required(name, FormDecoder.field(name, in: form, into: &scratch))
    }

    private func required(_ name: StaticString, _ field: FormField) -> FieldResult {
        switch field {
        case .absent: return .failure("missing parameter \"\(name)\"")
        case .malformed(let message): return .failure(message)
        case .value(let range):
            if range.isEmpty { return .failure("parameter \"\(name)\" must not be empty") }
            return .success(range)
        }
    }

    /// Answers a write its owner did not take: 503 when the owner is unreachable (docs/reliability.md, "Writes
    /// across a partition"), 502 when it answered with an error. False (nothing written) for `.done`.
    private func answeredRefusal(_ outcome: WriteOutcome, _ reply: ReplyContext, _ route: APIRoute,
                                 _ done: String) -> Bool {
        switch outcome {
        case .done: return false
        case .ownerUnreachable(let owner):
            text(reply, route, 503, "the owner of this key, node \(owner), is unreachable: nothing was \(done); "
                 + "retry once it is back")
        case .ownerFailed(let why):
            text(reply, route, 502, "the owner of this key refused it: \(why); nothing was \(done)")
        }
        return true
    }

    /// The decoded key's bytes, exactly: never through `String`, which would merge distinct byte strings.
    private func scratchKey(_ range: Range<Int>) -> CacheKey {
        CacheKey(UnsafeRawBufferPointer(start: scratch.base + range.lowerBound, count: range.count))
    }

    private func scratchString(_ range: Range<Int>) -> String {
        String(decoding: UnsafeRawBufferPointer(start: scratch.base + range.lowerBound, count: range.count),
               as: UTF8.self)
    }

    private func scratchEquals(_ range: Range<Int>, _ s: String) -> Bool {
        var s = s
        return s.withUTF8 { u in
            u.count == range.count && (u.count == 0 || memcmp(u.baseAddress!, scratch.base + range.lowerBound, u.count) == 0)
        }
    }

    /// Parses a non-negative decimal in `range` of the scratch; nil if not all digits or above `max`.
    private func parseDecimal(_ range: Range<Int>, max: Int) -> Int? {
        guard !range.isEmpty, range.count <= 10 else { return nil }
        var n = 0
        for i in range {
            let d = scratch.base[i] &- UInt8(ascii: "0")
            guard d <= 9 else { return nil }
            n = n * 10 + Int(d)
        }
        return n <= max ? n : nil
    }

    /// 401 unless the request carries the configured bearer token; nil when allowed.
    private func checkAuth(_ request: HTTPRequest, _ route: APIRoute) -> HTTPHandling? {
        guard let token = authToken else { return nil }
        if let header = request.head.authorization {
            if BearerToken.matches(request.slice(header), token: token) { return nil }
        }
        let framing = ReplyContext(request).framing
        HTTPResponse.appendText(to: &out.bytes, status: 401,
                                message: "this route requires the header \"Authorization: Bearer <token>\"",
                                framing: framing, date: date) {
            $0.append("WWW-Authenticate: Bearer\r\n")
        }
        requestStats.record(route: route, status: 401, latencyNanos: uv_hrtime() &- request.startNanos)
        return .done
    }

    static func status(of error: LoadError) -> Int {
        switch error {
        case .unavailable: return 502
        case .timedOut: return 504
        }
    }

    private static let hexDigits: StaticString = "0123456789abcdef"

    static func formatETag(_ etag: UInt64, into bytes: UnsafeMutableRawBufferPointer) {
        bytes[0] = UInt8(ascii: "\"")
        for i in 0..<16 {
            let nibble = Int((etag >> UInt64(60 - 4 * i)) & 0xF)
            bytes[1 + i] = hexDigits.utf8Start[nibble]
        }
        bytes[17] = UInt8(ascii: "\"")
    }

    /// RFC 9110 §13.1.2: If-None-Match is `*` or a list of entity tags, compared weakly.
    static func etagMatches(_ header: UnsafeRawBufferPointer, _ etag: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        let n = header.count
        while i < n {
            while i < n && (header[i] == UInt8(ascii: " ") || header[i] == UInt8(ascii: ",")) { i += 1 }
            if i < n && header[i] == UInt8(ascii: "*") { return true }
            if i + 1 < n && header[i] == UInt8(ascii: "W") && header[i + 1] == UInt8(ascii: "/") { i += 2 }
            var j = i
            while j < n && header[j] != UInt8(ascii: ",") { j += 1 }
            var end = j
            while end > i && header[end - 1] == UInt8(ascii: " ") { end -= 1 }
            if end - i == etag.count && memcmp(header.baseAddress! + i, etag.baseAddress!, etag.count) == 0 {
                return true
            }
            i = j + 1
        }
        return false
    }

    /// What answering a request later needs from it: its framing and arrival time.
    private struct ReplyContext {
        let framing: HTTPResponseFraming
        let startNanos: UInt64

        init(_ request: HTTPRequest, omitBody: Bool? = nil) {
            framing = HTTPResponseFraming(keepAlive: request.keepAlive, isHTTP10: request.head.isHTTP10,
                                          omitBody: omitBody ?? (request.head.method == .head))
            startNanos = request.startNanos
        }
    }

    @discardableResult
    private func text(_ request: HTTPRequest, _ route: APIRoute, _ status: Int, _ message: String) -> HTTPHandling {
        text(ReplyContext(request), route, status, message)
    }

    @discardableResult
    private func text(_ reply: ReplyContext, _ route: APIRoute, _ status: Int, _ message: String) -> HTTPHandling {
        HTTPResponse.appendText(to: &out.bytes, status: status, message: message, framing: reply.framing, date: date)
        requestStats.record(route: route, status: status, latencyNanos: uv_hrtime() &- reply.startNanos)
        return .done
    }

    /// A response without a body (204).
    private func empty(_ reply: ReplyContext, _ route: APIRoute, _ status: Int) {
        var framing = reply.framing
        framing.omitBody = true
        HTTPResponse.appendHead(to: &out.bytes, status: status, contentType: nil, contentLength: 0,
                                framing: framing, date: date)
        requestStats.record(route: route, status: status, latencyNanos: uv_hrtime() &- reply.startNanos)
    }

    private func bytes(_ request: HTTPRequest, _ route: APIRoute, _ status: Int, _ contentType: StaticString,
                       _ body: UnsafeRawBufferPointer) -> HTTPHandling {
        let framing = ReplyContext(request).framing
        HTTPResponse.append(to: &out.bytes, status: status, contentType: contentType, body: body,
                            framing: framing, date: date)
        requestStats.record(route: route, status: status, latencyNanos: uv_hrtime() &- request.startNanos)
        return .done
    }

    private func methodNotAllowed(_ request: HTTPRequest, _ route: APIRoute, _ allow: StaticString) -> HTTPHandling {
        let framing = ReplyContext(request).framing
        HTTPResponse.appendText(to: &out.bytes, status: 405, message: "method not allowed; use \(allow)",
                                framing: framing, date: date) {
            HTTPResponse.appendHeader(to: &$0, name: "Allow", value: allow)
        }
        requestStats.record(route: route, status: 405, latencyNanos: uv_hrtime() &- request.startNanos)
        return .done
    }
}

extension UnsafeRawBufferPointer {
    /// Whether these bytes equal `s` exactly.
    @inline(__always)
    func equals(_ s: StaticString) -> Bool {
        count == s.utf8CodeUnitCount && (count == 0 || memcmp(baseAddress!, s.utf8Start, count) == 0)
    }

    /// Whether these bytes start with `s`.
    @inline(__always)
    func starts(with s: StaticString) -> Bool {
        count >= s.utf8CodeUnitCount && memcmp(baseAddress!, s.utf8Start, s.utf8CodeUnitCount) == 0
    }
}

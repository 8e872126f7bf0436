// Etcd/: the etcd gateway client; registration, discovery and reconnect probe as state values with thin drivers.

/// Limits of an `EtcdClient`, named (STYLE 8).
public struct EtcdClientSettings {
    /// The whole-call limit of a unary call (grant, put, range, keepalive, revoke). Why 2 s: a healthy etcd
    /// answers in milliseconds; a lease of 10 s kept alive every 3.3 s survives one timed-out keepalive.
    public var callTimeoutMillis = 2_000
    /// The limit on connecting, for every call and the watch.
    public var connectTimeoutMillis = 1_000
    /// How long a watch may wait for its `created` line. A watch has no whole-call limit (it stays open), but
    /// an etcd that accepts the connection and never answers (stopped, overloaded) must not hold it forever.
    public var watchCreateTimeoutMillis = 3_000

    public init() {}
}

/// Why an etcd call failed, converted once from curl's outcome and etcd's reply (STYLE 4).
public enum EtcdError: Error, Equatable, CustomStringConvertible {
    /// No connection: refused, unreachable, reset, or a stream cut off by the server going away.
    case unreachable(endpoint: String, message: String)
    /// The call's time limit passed first.
    case timedOut(endpoint: String, message: String)
    /// etcd answered with a status other than 200; `message` is etcd's own (e.g. "etcdserver: requested lease
    /// not found", which comes with 404).
    case httpStatus(endpoint: String, status: Int, message: String)
    /// A 200 reply that is not what the gateway sends; `message` says what is wrong and shows the text.
    case malformedReply(endpoint: String, message: String)
    /// etcd canceled a watch; `compactRevision` != 0 when its start revision had been compacted.
    case watchCanceled(endpoint: String, compactRevision: Int64, reason: String)
    /// A watch stream ended without being canceled.
    case streamEnded(endpoint: String)

    public var description: String {
        switch self {
        case .unreachable(let endpoint, let message): return "etcd \(endpoint) unreachable: \(message)"
        case .timedOut(let endpoint, let message): return "etcd \(endpoint) timed out: \(message)"
        case .httpStatus(let endpoint, let status, let message):
            return "etcd \(endpoint) answered \(status): \(message)"
        case .malformedReply(let endpoint, let message): return "etcd \(endpoint) sent a malformed reply: \(message)"
        case .watchCanceled(let endpoint, let compactRevision, let reason):
            let why = compactRevision != 0 ? "start revision compacted (compact_revision \(compactRevision))" : reason
            return "etcd \(endpoint) canceled the watch: \(why)"
        case .streamEnded(let endpoint): return "etcd \(endpoint) ended the watch stream"
        }
    }

    /// The call never reached a working etcd: the next call goes to the next endpoint.
    public var isTransportFailure: Bool {
        switch self {
        case .unreachable, .timedOut: return true
        default: return false
        }
    }

    /// etcd said the thing (a lease) does not exist (gRPC NOT_FOUND, which the gateway maps to 404).
    public var isNotFound: Bool {
        if case .httpStatus(_, 404, _) = self { return true }
        return false
    }
}

/// Counters of an `EtcdClient`.
public struct EtcdClientStats: Equatable {
    public var calls: UInt64 = 0
    public var failures: UInt64 = 0
    /// Times the client moved to the next endpoint after a transport failure.
    public var endpointRotations: UInt64 = 0
    public var watchesStarted: UInt64 = 0
}

/// Names one unary call, for `EtcdClient.cancel`.
public struct EtcdCallHandle: Hashable, Sendable {
    let id: UInt64
}

/// Names one watch, for `EtcdClient.cancelWatch`.
public struct EtcdWatchHandle: Hashable, Sendable {
    let id: UInt64
}

/// A client of etcd's v3 JSON gateway (reference/etcd-gateway.md) on a `CurlMulti`: every call is an async
/// `POST http://ENDPOINT/v3/...` with a JSON body, so a slow or hung etcd delays nothing else on the loop.
///
/// Contract (CurlMulti's): each completion runs exactly once, from a later loop callback, never inside the
/// call that started it — unless cancelled (`cancel`, `cancelWatch`, `close`), after which nothing runs.
///
/// Endpoints: calls go to the current endpoint; a transport failure (refused, timeout) moves the client to
/// the next one for the calls that follow. Why not retry the failed call there: its owner (registrar,
/// discovery) already retries with backoff, and a retry here would double the time a caller waits.
public final class EtcdClient {
    /// `http://HOST:PORT`, in the order given.
    public let endpoints: [String]
    public let settings: EtcdClientSettings
    public private(set) var stats = EtcdClientStats()

    private let loop: EventLoop
    private let curl: CurlMulti
    private var endpointIndex = 0
    private var nextID: UInt64 = 1
    private var calls: [UInt64: CurlTransferHandle] = [:]
    private var watches: [UInt64: EtcdWatchStream] = [:]
    private var closed = false

    /// - Parameter endpoints: `HOST:PORT` or `http://HOST:PORT` each (the `--etcd` list, split at commas).
    public init(endpoints: [String], loop: EventLoop, curl: CurlMulti,
                settings: EtcdClientSettings = EtcdClientSettings()) throws {
        self.endpoints = try EtcdClient.parseEndpoints(endpoints)
        self.loop = loop
        self.curl = curl
        self.settings = settings
    }

    /// Normalises `--etcd` entries to base URLs; refuses an empty list, https (not configured here) and
    /// anything that is not HOST:PORT.
    public static func parseEndpoints(_ entries: [String]) throws -> [String] {
        var urls: [String] = []
        for raw in entries {
            var entry = Substring(raw.trimmingWhitespace())
            if entry.isEmpty { continue }
            if entry.hasPrefix("http://") { entry = entry.dropFirst("http://".count) }
            while entry.hasSuffix("/") { entry = entry.dropLast() }
            guard !entry.contains("/") else {
                throw ConfigError("--etcd endpoint '\(raw)' must be HOST:PORT or http://HOST:PORT (no https, no path)")
            }
            let address = try HostPort.parse(String(entry), flag: "--etcd endpoint")
            guard address.port > 0 else { throw ConfigError("--etcd endpoint '\(raw)' needs a port above 0") }
            urls.append("http://\(address)")
        }
        guard !urls.isEmpty else { throw ConfigError("--etcd needs at least one HOST:PORT (e.g. 127.0.0.1:2379)") }
        return urls
    }

    /// The endpoint the next call goes to.
    public var currentEndpoint: String { endpoints[endpointIndex] }

    /// Unary calls and watches not yet finished.
    public var inFlight: Int { calls.count + watches.count }

    /// Cancels every call and watch (no callback runs) and refuses new ones. The `CurlMulti` is the caller's.
    public func close() {
        guard !closed else { return }
        closed = true
        for (_, transfer) in calls { curl.cancel(transfer) }
        calls.removeAll()
        for (_, watch) in watches { watch.stop() }
        watches.removeAll()
    }

    // MARK: - Unary calls

    /// Grants a lease of `ttlSeconds`.
    @discardableResult
    public func grant(ttlSeconds: Int, timeoutMillis: Int? = nil,
                      completion: @escaping (Result<EtcdLease, EtcdError>) -> Void) -> EtcdCallHandle {
        call("/v3/lease/grant", body: EtcdGateway.grantBody(ttlSeconds: ttlSeconds), timeoutMillis: timeoutMillis,
             parse: EtcdGateway.parseGrant, completion: completion)
    }

    /// Puts `key` → `value`, attached to `lease` (0: none). Succeeds with the store's new revision.
    @discardableResult
    public func put(key: [UInt8], value: [UInt8], lease: Int64 = 0, timeoutMillis: Int? = nil,
                    completion: @escaping (Result<Int64, EtcdError>) -> Void) -> EtcdCallHandle {
        call("/v3/kv/put", body: EtcdGateway.putBody(key: key, value: value, lease: lease),
             timeoutMillis: timeoutMillis, parse: EtcdGateway.parsePut, completion: completion)
    }

    /// Reads every key that starts with `prefix` (every key for an empty prefix).
    @discardableResult
    public func range(prefix: [UInt8], timeoutMillis: Int? = nil,
                      completion: @escaping (Result<EtcdRangeResult, EtcdError>) -> Void) -> EtcdCallHandle {
        // An empty prefix means every key: etcd wants key "\0" with range_end "\0" for that.
        let body = EtcdGateway.rangeBody(key: prefix.isEmpty ? [0] : prefix,
                                         rangeEnd: EtcdGateway.prefixRangeEnd(prefix))
        return call("/v3/kv/range", body: body, timeoutMillis: timeoutMillis, parse: EtcdGateway.parseRange,
                    completion: completion)
    }

    /// Reads exactly one key (the result has no kvs when it does not exist).
    @discardableResult
    public func get(key: [UInt8], timeoutMillis: Int? = nil,
                    completion: @escaping (Result<EtcdRangeResult, EtcdError>) -> Void) -> EtcdCallHandle {
        call("/v3/kv/range", body: EtcdGateway.rangeBody(key: key, rangeEnd: nil), timeoutMillis: timeoutMillis,
             parse: EtcdGateway.parseRange, completion: completion)
    }

    /// Renews `lease` once. Succeeds with its TTL in seconds; 0 means the lease no longer exists.
    @discardableResult
    public func keepAlive(lease: Int64, timeoutMillis: Int? = nil,
                          completion: @escaping (Result<Int64, EtcdError>) -> Void) -> EtcdCallHandle {
        call("/v3/lease/keepalive", body: EtcdGateway.leaseBody(id: lease), timeoutMillis: timeoutMillis,
             parse: EtcdGateway.parseKeepAlive, completion: completion)
    }

    /// Revokes `lease`, deleting every key attached to it at once. A lease etcd does not know fails with
    /// `httpStatus(404)` (`isNotFound`).
    @discardableResult
    public func revoke(lease: Int64, timeoutMillis: Int? = nil,
                       completion: @escaping (Result<Void, EtcdError>) -> Void) -> EtcdCallHandle {
        call("/v3/lease/revoke", body: EtcdGateway.leaseBody(id: lease), timeoutMillis: timeoutMillis,
             parse: { reply in _ = try EtcdGateway.object(reply, "revoke") }, completion: completion)
    }

    /// Cancels a unary call: its completion will not run. False when it had already finished.
    @discardableResult
    public func cancel(_ handle: EtcdCallHandle) -> Bool {
        guard let transfer = calls.removeValue(forKey: handle.id) else { return false }
        curl.cancel(transfer)
        return true
    }

    private func call<T>(_ path: String, body: [UInt8], timeoutMillis: Int?, parse: @escaping (JSONValue) throws -> T,
                         completion: @escaping (Result<T, EtcdError>) -> Void) -> EtcdCallHandle {
        let handle = EtcdCallHandle(id: nextID)
        nextID += 1
        guard !closed else { return handle }
        stats.calls += 1
        let index = endpointIndex
        let endpoint = endpoints[index]
        let request = CurlRequest(url: endpoint + path, method: .post, body: body,
                                  headers: ["Content-Type: application/json"],
                                  timeoutMillis: timeoutMillis ?? settings.callTimeoutMillis,
                                  connectTimeoutMillis: settings.connectTimeoutMillis)
        let transfer = curl.perform(request) { [weak self] outcome in
            guard let self, self.calls.removeValue(forKey: handle.id) != nil else { return }
            let result = EtcdClient.interpret(outcome, endpoint: endpoint, parse: parse)
            if case .failure(let error) = result { self.noteFailure(error, endpointIndex: index) }
            completion(result)
        }
        calls[handle.id] = transfer
        return handle
    }

    static func interpret<T>(_ outcome: CurlOutcome, endpoint: String,
                             parse: (JSONValue) throws -> T) -> Result<T, EtcdError> {
        switch outcome {
        case .failed(let failure):
            return .failure(error(for: failure, endpoint: endpoint))
        case .response(let status, let body):
            guard status == 200 else {
                return .failure(.httpStatus(endpoint: endpoint, status: status,
                                            message: EtcdGateway.errorMessage(body)))
            }
            do {
                return .success(try parse(try JSONValue.parse(body)))
            } catch {
                return .failure(.malformedReply(endpoint: endpoint, message: "\(error) in \(EtcdGateway.text(body))"))
            }
        }
    }

    static func error(for failure: CurlFailure, endpoint: String) -> EtcdError {
        switch failure.kind {
        case .timedOut: return .timedOut(endpoint: endpoint, message: failure.message)
        case .connectFailed, .other: return .unreachable(endpoint: endpoint, message: failure.message)
        case .responseTooLarge: return .malformedReply(endpoint: endpoint, message: failure.message)
        }
    }

    /// Counts a failure; a transport failure on the current endpoint moves to the next one.
    fileprivate func noteFailure(_ error: EtcdError, endpointIndex index: Int) {
        stats.failures += 1
        if error.isTransportFailure, index == endpointIndex, endpoints.count > 1 {
            endpointIndex = (endpointIndex + 1) % endpoints.count
            stats.endpointRotations += 1
        }
    }

    // MARK: - Watch

    /// Watches every key under `prefix` from `startRevision` (0: from now) on one streaming POST to `/v3/watch`.
    ///
    /// The stream's lines are read as they arrive: `onCreated` after the first (`created: true`); `onEvents`
    /// for each response with events, with its header revision. The watch ends with `onEnd` exactly once —
    /// when etcd cancels it (e.g. its start revision was compacted), reports an error, the stream ends or
    /// breaks, a line is malformed, or `created` does not come within `watchCreateTimeoutMillis` — unless it
    /// is cancelled first (`cancelWatch`, `close`), after which nothing runs.
    @discardableResult
    public func watch(prefix: [UInt8], startRevision: Int64, onCreated: (() -> Void)? = nil,
                      onEvents: @escaping ([EtcdEvent], Int64) -> Void,
                      onEnd: @escaping (EtcdError) -> Void) -> EtcdWatchHandle {
        let handle = EtcdWatchHandle(id: nextID)
        nextID += 1
        guard !closed else { return handle }
        stats.watchesStarted += 1
        let index = endpointIndex
        let stream = EtcdWatchStream(endpoint: endpoints[index], loop: loop, curl: curl,
                                     onCreated: onCreated ?? {}, onEvents: onEvents)
        stream.onEnd = { [weak self] error in
            guard let self, self.watches.removeValue(forKey: handle.id) != nil else { return }
            self.noteFailure(error, endpointIndex: index)
            onEnd(error)
        }
        watches[handle.id] = stream
        let body = EtcdGateway.watchBody(key: prefix.isEmpty ? [0] : prefix,
                                         rangeEnd: EtcdGateway.prefixRangeEnd(prefix), startRevision: startRevision)
        stream.start(body: body, connectTimeoutMillis: settings.connectTimeoutMillis,
                     createTimeoutMillis: settings.watchCreateTimeoutMillis)
        return handle
    }

    /// Cancels a watch: no more callbacks. False when it had already ended.
    @discardableResult
    public func cancelWatch(_ handle: EtcdWatchHandle) -> Bool {
        guard let stream = watches.removeValue(forKey: handle.id) else { return false }
        stream.stop()
        return true
    }
}

/// One watch stream: its transfer, its line splitter and its create timer.
private final class EtcdWatchStream {
    let endpoint: String
    let loop: EventLoop
    let curl: CurlMulti
    let onCreated: () -> Void
    let onEvents: ([EtcdEvent], Int64) -> Void
    var onEnd: ((EtcdError) -> Void)?

    private var splitter = WatchStreamSplitter()
    private var transfer: CurlTransferHandle?
    private var createTimer: LoopTimer?
    private var created = false
    private var ended = false

    init(endpoint: String, loop: EventLoop, curl: CurlMulti, onCreated: @escaping () -> Void,
         onEvents: @escaping ([EtcdEvent], Int64) -> Void) {
        self.endpoint = endpoint
        self.loop = loop
        self.curl = curl
        self.onCreated = onCreated
        self.onEvents = onEvents
    }

    func start(body: [UInt8], connectTimeoutMillis: Int, createTimeoutMillis: Int) {
        // No whole-transfer limit: the stream stays open for as long as the watch lives.
        let request = CurlRequest(url: endpoint + "/v3/watch", method: .post, body: body,
                                  headers: ["Content-Type: application/json"], timeoutMillis: 0,
                                  connectTimeoutMillis: connectTimeoutMillis)
        let timer = LoopTimer(loop: loop) { [weak self] in
            guard let self, !self.created else { return }
            self.end(.timedOut(endpoint: self.endpoint, message: "no watch created within \(createTimeoutMillis) ms"))
        }
        timer.start(timeoutMillis: UInt64(max(1, createTimeoutMillis)))
        createTimer = timer
        transfer = curl.perform(request, onData: { [weak self] chunk in
            self?.receive(chunk)
        }, completion: { [weak self] outcome in
            self?.transfer = nil
            self?.finished(outcome)
        })
    }

    /// Ends silently (cancelled by the owner).
    func stop() {
        guard !ended else { return }
        ended = true
        onEnd = nil
        release()
    }

    private func release() {
        if let transfer { curl.cancel(transfer) }
        transfer = nil
        createTimer?.close()
        createTimer = nil
    }

    private func end(_ error: EtcdError) {
        guard !ended else { return }
        ended = true
        release()
        let onEnd = self.onEnd
        self.onEnd = nil
        onEnd?(error)
    }

    private func receive(_ chunk: [UInt8]) {
        guard !ended else { return }
        let lines: [[UInt8]]
        do {
            lines = try splitter.append(chunk)
        } catch {
            end(.malformedReply(endpoint: endpoint, message: "\(error)"))
            return
        }
        for line in lines {
            handle(line)
            if ended { return }
        }
    }

    private func handle(_ line: [UInt8]) {
        let message: EtcdWatchMessage
        do {
            message = try EtcdGateway.parseWatchLine(line)
        } catch {
            end(.malformedReply(endpoint: endpoint, message: "\(error) in \(EtcdGateway.text(line))"))
            return
        }
        switch message {
        case .created:
            guard !created else { return }
            created = true
            createTimer?.close()
            createTimer = nil
            onCreated()
        case .events(let revision, let events):
            onEvents(events, revision)
        case .progress:
            break
        case .canceled(let compactRevision, let reason):
            end(.watchCanceled(endpoint: endpoint, compactRevision: compactRevision, reason: reason))
        case .failed(let message):
            end(.watchCanceled(endpoint: endpoint, compactRevision: 0, reason: message))
        }
    }

    private func finished(_ outcome: CurlOutcome) {
        guard !ended else { return }
        // A last line without its newline counts only when the stream ended cleanly; a cut-off one is noise.
        if case .response = outcome, let last = splitter.finish() {
            handle(last)
            if ended { return }
        }
        switch outcome {
        case .failed(let failure):
            end(EtcdClient.error(for: failure, endpoint: endpoint))
        case .response(let status, _) where status != 200:
            end(.httpStatus(endpoint: endpoint, status: status, message: "watch refused"))
        case .response:
            end(.streamEnded(endpoint: endpoint))
        }
    }
}

extension String {
    fileprivate func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" { s = s.dropLast() }
        return String(s)
    }
}

import Logging

/// Settings of an `EtcdDiscovery` (STYLE 8).
public struct EtcdDiscoverySettings {
    /// Where members register (`EtcdRegistrar.membersPrefix`).
    public var prefix = EtcdRegistrar.membersPrefix
    /// The first retry after a failure, doubled after each further failure up to `maxBackoffMillis`.
    public var initialBackoffMillis: UInt64 = 200
    /// The longest wait between retries.
    public var maxBackoffMillis: UInt64 = 2_000
    /// While etcd keeps failing, one warning per this interval (with the count of the others).
    public var failureLogIntervalMillis: Int64 = 10_000

    public init() {}
}

/// Counters of an `EtcdDiscovery`.
public struct EtcdDiscoveryStats: Equatable {
    public var snapshots: UInt64 = 0
    public var puts: UInt64 = 0
    public var deletes: UInt64 = 0
    /// Member records that could not be read (skipped).
    public var malformed: UInt64 = 0
    /// Failed ranges and watches that ended (each followed by a retry).
    public var failures: UInt64 = 0
}

/// Discovers the cluster's members under a prefix in etcd, and follows them.
///
/// Cycle: range the prefix → `onSnapshot` with every member → watch from the range's revision + 1 (so no
/// change between the two is missed) → `onPut` / `onDelete` per event. When the watch breaks, is canceled
/// (e.g. compacted) or etcd cannot be reached, it retries with capped backoff from a fresh range, whose
/// snapshot replaces whatever was missed meanwhile. Until then the caller keeps the last membership it had.
public final class EtcdDiscovery {
    private enum Phase { case idle, running, stopped }

    public let settings: EtcdDiscoverySettings
    public private(set) var stats = EtcdDiscoveryStats()
    /// Whether a watch is established (created) right now.
    public private(set) var isWatching = false

    /// Every member under the prefix, after each (re)start of the cycle.
    public var onSnapshot: (([Member]) -> Void)?
    /// A member registered or changed its record.
    public var onPut: ((Member) -> Void)?
    /// A member's record was deleted (revoked lease, expired lease, by hand): its name.
    public var onDelete: ((String) -> Void)?
    /// A range or watch failed; a retry is scheduled (e.g. to start an `EtcdReconnectProbe`).
    public var onFailure: (() -> Void)?

    private let client: EtcdClient
    private let logger: Logger
    private let prefix: [UInt8]
    private var phase = Phase.idle
    private var backoffMillis: UInt64
    private var pendingRange: EtcdCallHandle?
    private var watch: EtcdWatchHandle?
    private var retryTimer: LoopTimer!
    private let clock: Clock
    private var failureLog: FailureLog

    public init(client: EtcdClient, loop: EventLoop, settings: EtcdDiscoverySettings = EtcdDiscoverySettings(),
                logger: Logger = Logger(label: "springcache.etcd.discovery")) {
        self.client = client
        self.settings = settings
        self.logger = logger
        clock = loop.clock
        failureLog = FailureLog(intervalMillis: settings.failureLogIntervalMillis)
        prefix = Array(settings.prefix.utf8)
        backoffMillis = settings.initialBackoffMillis
        retryTimer = LoopTimer(loop: loop) { [unowned self] in
            guard self.phase == .running else { return }
            self.rangeThenWatch()
        }
    }

    deinit {
        assert(phase != .running, "EtcdDiscovery released without stop()")
        if phase == .idle { retryTimer.close() }
    }

    public func start() {
        guard phase == .idle else { return }
        phase = .running
        rangeThenWatch()
    }

    /// Cancels the range or watch in flight and the retry timer; no callback runs afterwards.
    public func stop() {
        guard phase != .stopped else { return }
        phase = .stopped
        if let pendingRange { client.cancel(pendingRange) }
        pendingRange = nil
        if let watch { client.cancelWatch(watch) }
        watch = nil
        isWatching = false
        retryTimer.close()
    }

    // MARK: - The cycle

    private func rangeThenWatch() {
        pendingRange = client.range(prefix: prefix) { [unowned self] result in
            self.pendingRange = nil
            switch result {
            case .success(let reply):
                var members: [Member] = []
                for kv in reply.kvs {
                    if let member = self.member(from: kv) { members.append(member) }
                }
                self.stats.snapshots += 1
                self.logger.debug("etcd snapshot at revision \(reply.revision): \(members.map(\.name))")
                self.onSnapshot?(members)
                guard self.phase == .running else { return }
                self.startWatch(from: reply.revision + 1)
            case .failure(let error):
                self.retry(after: "range", error)
            }
        }
    }

    private func startWatch(from revision: Int64) {
        watch = client.watch(prefix: prefix, startRevision: revision, onCreated: { [unowned self] in
            self.isWatching = true
            for line in self.failureLog.drain(now: self.clock.nowMillis) {
                self.logger.info("etcd watch works again; \(line)")
            }
            // The cycle works again: the next failure starts from a short wait.
            self.backoffMillis = self.settings.initialBackoffMillis
        }, onEvents: { [unowned self] events, _ in
            for event in events {
                guard self.phase == .running else { return }
                self.apply(event)
            }
        }, onEnd: { [unowned self] error in
            self.watch = nil
            self.isWatching = false
            self.retry(after: "watch", error)
        })
    }

    private func apply(_ event: EtcdEvent) {
        switch event.kind {
        case .put:
            guard let member = member(from: event.kv) else { return }
            stats.puts += 1
            onPut?(member)
        case .delete:
            guard let name = EtcdDiscovery.name(fromKey: event.kv.key, prefix: prefix) else { return }
            stats.deletes += 1
            onDelete?(name)
        }
    }

    /// Re-reads the members at once if a retry is waiting out its backoff: someone saw etcd answer again
    /// (the registrar's keepalive), so the gap in following it should be one request, not up to 2 s.
    public func retryNow() {
        guard phase == .running, pendingRange == nil, watch == nil else { return }
        retryTimer.stop()
        backoffMillis = settings.initialBackoffMillis
        rangeThenWatch()
    }

    private func retry(after what: String, _ error: EtcdError) {
        stats.failures += 1
        let delay = backoffMillis
        backoffMillis = min(backoffMillis * 2, settings.maxBackoffMillis)
        // Why rate-limited: with etcd down this fails every backoff period (2 s) for as long as the outage lasts.
        let cause = "etcd \(what) of \(settings.prefix) failed (fresh range in \(delay) ms): \(error)"
        if let line = failureLog.record(kind: "etcd watch failures", cause: cause, now: clock.nowMillis) {
            logger.warning("\(line)")
        }
        retryTimer.start(timeoutMillis: delay)
        onFailure?()
    }

    private func member(from kv: EtcdKeyValue) -> Member? {
        switch EtcdDiscovery.member(key: kv.key, value: kv.value, prefix: prefix) {
        case .success(let member):
            return member
        case .failure(let problem):
            stats.malformed += 1
            logger.warning("skipping etcd member record \(String(decoding: kv.key, as: UTF8.self)): \(problem)")
            return nil
        }
    }

    // MARK: - Records (pure)

    /// Why a member record was skipped.
    public struct RecordError: Error, Equatable, CustomStringConvertible {
        public var description: String
        init(_ description: String) { self.description = description }
    }

    /// The member name a key stands for: the part after the prefix (nil when it is not under it or empty).
    public static func name(fromKey key: [UInt8], prefix: [UInt8]) -> String? {
        guard key.count > prefix.count, key.starts(with: prefix) else { return nil }
        return String(decoding: key[prefix.count...], as: UTF8.self)
    }

    /// Reads a member record: the key names the member; the value is `{"name":..,"peer":"HOST:PORT",
    /// "api":"HOST:PORT"}` whose `name`, when present, must agree with the key, and whose `peer` is required.
    public static func member(key: [UInt8], value: [UInt8], prefix: [UInt8]) -> Result<Member, RecordError> {
        guard let name = name(fromKey: key, prefix: prefix) else {
            return .failure(RecordError("key is not under the prefix"))
        }
        let record: JSONValue
        do {
            record = try JSONValue.parse(value)
        } catch {
            return .failure(RecordError("value is not JSON: \(error)"))
        }
        guard record.objectValue != nil else { return .failure(RecordError("value is not a JSON object")) }
        if let field = record["name"] {
            guard let recorded = field.stringValue, recorded == name else {
                return .failure(RecordError("value names another member than the key"))
            }
        }
        guard let peerText = record["peer"]?.stringValue else {
            return .failure(RecordError("value has no peer address"))
        }
        let peer: HostPort
        do {
            peer = try HostPort.parse(peerText, flag: "peer")
        } catch {
            return .failure(RecordError("\(error)"))
        }
        var api: String?
        if let field = record["api"], !field.isNull {
            guard let text = field.stringValue else { return .failure(RecordError("api is not a string")) }
            api = text
        }
        return .success(Member(name: name, peer: peer, api: api))
    }

    // MARK: - springcache's own keys

    /// Looks up springcache's key `NAME` → `HOST:PORT` (what a springcache node registers), so a name listed
    /// with `--peer a,b` can be resolved. Succeeds with nil when the key does not exist.
    public static func lookupAddress(of name: String, client: EtcdClient,
                                     completion: @escaping (Result<HostPort?, EtcdError>) -> Void) {
        client.get(key: Array(name.utf8)) { result in
            switch result {
            case .success(let reply):
                guard let kv = reply.kvs.first else { return completion(.success(nil)) }
                let text = String(decoding: kv.value, as: UTF8.self)
                guard let address = try? HostPort.parse(text, flag: "etcd key \(name)") else {
                    return completion(.failure(.malformedReply(endpoint: client.currentEndpoint,
                                                               message: "key \(name) holds '\(text)', not HOST:PORT")))
                }
                completion(.success(address))
            case .failure(let error):
                completion(.failure(error))
            }
        }
    }
}

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

/// Discovers the cluster's members under a prefix in etcd, and follows them. The rules (range, then watch from
/// the range's revision + 1; a fresh range after any failure, with backoff) are `EtcdDiscoveryState`'s; this is
/// its driver, which performs the state's actions with an `EtcdCalls` and one `SchedulerTimer`, and turns its
/// reports into log lines and the owner's callbacks. Until a retry succeeds the owner keeps the membership it had.
public final class EtcdDiscovery {
    public let settings: EtcdDiscoverySettings
    public var stats: EtcdDiscoveryStats { state.stats }
    /// Whether a watch is established (created) right now.
    public var isWatching: Bool { state.isWatching }

    /// Every member under the prefix, after each (re)start of the cycle.
    public var onSnapshot: (([Member]) -> Void)?
    /// A member registered or changed its record.
    public var onPut: ((Member) -> Void)?
    /// A member's record was deleted (revoked lease, expired lease, by hand): its name.
    public var onDelete: ((String) -> Void)?
    /// A range or watch failed; a retry is scheduled (e.g. to start an `EtcdReconnectProbe`).
    public var onFailure: (() -> Void)?

    private var state: EtcdDiscoveryState
    private let client: EtcdCalls
    private let logger: Logger
    private let clock: Clock
    private var failureLog: FailureLog
    private var pendingRange: EtcdCallHandle?
    private var watch: EtcdWatchHandle?
    private var retryTimer: SchedulerTimer!

    public init(client: EtcdCalls, scheduler: Scheduler, settings: EtcdDiscoverySettings = EtcdDiscoverySettings(),
                logger: Logger = Logger(label: "springcache.etcd.discovery")) {
        self.client = client
        self.settings = settings
        self.logger = logger
        clock = scheduler.clock
        state = EtcdDiscoveryState(settings: settings)
        failureLog = FailureLog(intervalMillis: settings.failureLogIntervalMillis)
        retryTimer = scheduler.makeTimer { [unowned self] in self.handle(.timerFired) }
    }

    public convenience init(client: EtcdCalls, loop: EventLoop,
                            settings: EtcdDiscoverySettings = EtcdDiscoverySettings(),
                            logger: Logger = Logger(label: "springcache.etcd.discovery")) {
        self.init(client: client, scheduler: loop.scheduler, settings: settings, logger: logger)
    }

    deinit {
        assert(state.phase != .running, "EtcdDiscovery released without stop()")
        if state.phase == .idle { retryTimer.close() }
    }

    public func start() {
        handle(.start)
    }

    /// Cancels the range or watch in flight and the retry timer; no callback runs afterwards.
    public func stop() {
        handle(.stop)
    }

    /// Re-reads the members at once if a retry is waiting out its backoff: someone saw etcd answer again
    /// (the registrar's keepalive), so the gap in following it should be one request, not up to 2 s.
    public func retryNow() {
        handle(.retryNow)
    }

    // MARK: - Performing the state's actions

    private func handle(_ event: EtcdDiscoveryEvent) {
        for action in state.handle(event) { perform(action) }
    }

    private func perform(_ action: EtcdDiscoveryAction) {
        switch action {
        case .range:
            pendingRange = client.range(prefix: state.prefix, timeoutMillis: nil) { [unowned self] result in
                self.pendingRange = nil
                self.handle(.rangeAnswered(result))
            }
        case .watch(let revision):
            watch = client.watch(prefix: state.prefix, startRevision: revision, onCreated: { [unowned self] in
                self.handle(.watchCreated)
            }, onEvents: { [unowned self] events, _ in
                self.handle(.watchEvents(events))
            }, onEnd: { [unowned self] error in
                self.watch = nil
                self.handle(.watchEnded(error))
            })
        case .cancelRange:
            if let pendingRange { client.cancel(pendingRange) }
            pendingRange = nil
        case .cancelWatch:
            if let watch { client.cancelWatch(watch) }
            watch = nil
        case .armTimer(let millis):
            retryTimer.arm(afterMillis: millis)
        case .disarmTimer:
            retryTimer.disarm()
        case .closeTimer:
            retryTimer.close()
        case .report(let report):
            // "No callback runs after stop", also when an owner's callback stops it halfway through a batch.
            guard state.phase == .running else { return }
            self.report(report)
        }
    }

    private func report(_ report: EtcdDiscoveryReport) {
        switch report {
        case .snapshot(let members, let revision):
            logger.debug("etcd snapshot at revision \(revision): \(members.map(\.name))")
            onSnapshot?(members)
        case .put(let member):
            onPut?(member)
        case .delete(let name):
            onDelete?(name)
        case .skipped(let key, let problem):
            logger.warning("skipping etcd member record \(String(decoding: key, as: UTF8.self)): \(problem)")
        case .watching:
            for line in failureLog.drain(now: clock.nowMillis) { logger.info("etcd watch works again; \(line)") }
        case .failed(let call, let error, let delay):
            // Why rate-limited: with etcd down this fails every backoff period (2 s) for as long as it lasts.
            let cause = "etcd \(call) of \(settings.prefix) failed (fresh range in \(delay) ms): \(error)"
            if let line = failureLog.record(kind: "etcd watch failures", cause: cause, now: clock.nowMillis) {
                logger.warning("\(line)")
            }
            onFailure?()
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
    public static func lookupAddress(of name: String, client: EtcdCalls,
                                     completion: @escaping (Result<HostPort?, EtcdError>) -> Void) {
        client.get(key: Array(name.utf8), timeoutMillis: nil) { result in
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

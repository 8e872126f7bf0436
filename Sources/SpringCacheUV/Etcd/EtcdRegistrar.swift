import Logging

/// Settings of an `EtcdRegistrar`; every period is named here (STYLE 8).
public struct EtcdRegistrarSettings {
    /// The lease's TTL (`--lease-ttl`; springcache's 10 s): how long peers keep a node that stopped answering.
    public var leaseTTLSeconds = 10
    /// The first retry after a failure, doubled after each further failure up to `maxBackoffMillis`.
    public var initialBackoffMillis: UInt64 = 200
    /// The longest wait between retries. Why 2 s: a node re-registers within about 2 s of etcd answering again.
    public var maxBackoffMillis: UInt64 = 2_000
    /// While etcd keeps failing, one warning per this interval (with the count of the others).
    public var failureLogIntervalMillis: Int64 = 10_000
    /// The limit on the revoke sent by `stop`: a graceful stop must not hang on a dead etcd.
    public var revokeTimeoutMillis = 1_000

    public init() {}
}

/// Counters of an `EtcdRegistrar`.
public struct EtcdRegistrarStats: Equatable {
    public var grants: UInt64 = 0
    /// Keepalives etcd answered with the lease alive.
    public var keepalives: UInt64 = 0
    /// Calls that failed (transport, timeout, error status, malformed reply).
    public var failures: UInt64 = 0
    /// Times the keys were put again on a new lease after the first registration (lease lost or expired).
    public var reRegistrations: UInt64 = 0
    /// Keepalives that found the lease gone.
    public var leasesLost: UInt64 = 0
}

/// One key to register and its value.
public struct EtcdEntry: Equatable, Sendable {
    public var key: [UInt8]
    public var value: [UInt8]

    public init(key: [UInt8], value: [UInt8]) {
        self.key = key
        self.value = value
    }

    public init(key: String, value: String) {
        self.init(key: Array(key.utf8), value: Array(value.utf8))
    }
}

/// Keeps this node registered in etcd: every entry put on ONE lease, the lease kept alive, the lease revoked
/// on `stop`. The rules (cadence TTL/3, backoff, lease loss, revoke) are `EtcdRegistrarState`'s; this is its
/// driver, which performs the state's actions with an `EtcdCalls` (the `EtcdClient`) and one `SchedulerTimer`,
/// and turns its reports into log lines and the owner's callbacks.
public final class EtcdRegistrar {
    public let entries: [EtcdEntry]
    public var settings: EtcdRegistrarSettings { state.settings }
    public var stats: EtcdRegistrarStats { state.stats }
    /// Whether etcd last confirmed that every entry is on a live lease.
    public var isRegistered: Bool { state.isRegistered }
    /// The lease the entries are (or are being) put on; nil before the first grant or after one was lost.
    public var leaseID: Int64? { state.leaseID }
    /// Called each time the node becomes registered (first time and after every recovery).
    public var onRegistered: (() -> Void)?
    /// Called after each failed call, once its retry is scheduled (e.g. to start an `EtcdReconnectProbe`).
    public var onFailure: (() -> Void)?

    private var state: EtcdRegistrarState
    private let client: EtcdCalls
    private let logger: Logger
    private let clock: Clock
    private var failureLog: FailureLog
    private var pending: EtcdCallHandle?
    /// Schedules both the next keepalive and retries after failures (never both at once).
    private var timer: SchedulerTimer!
    private var stopCompletions: [() -> Void] = []
    /// Set while stopping: the registrar keeps itself alive until the revoke has answered, so its owner may let
    /// go of it right after calling `stop`.
    private var keptAliveUntilStopped: EtcdRegistrar?

    public init(entries: [EtcdEntry], client: EtcdCalls, scheduler: Scheduler,
                settings: EtcdRegistrarSettings = EtcdRegistrarSettings(),
                logger: Logger = Logger(label: "springcache.etcd.registrar")) {
        self.entries = entries
        self.client = client
        self.logger = logger
        clock = scheduler.clock
        state = EtcdRegistrarState(entryCount: entries.count, settings: settings)
        failureLog = FailureLog(intervalMillis: settings.failureLogIntervalMillis)
        timer = scheduler.makeTimer { [unowned self] in self.handle(.timerFired) }
    }

    public convenience init(entries: [EtcdEntry], client: EtcdCalls, loop: EventLoop,
                            settings: EtcdRegistrarSettings = EtcdRegistrarSettings(),
                            logger: Logger = Logger(label: "springcache.etcd.registrar")) {
        self.init(entries: entries, client: client, scheduler: loop.scheduler, settings: settings, logger: logger)
    }

    deinit {
        assert(state.phase == .idle || state.phase == .stopped, "EtcdRegistrar released without stop()")
        if state.phase == .idle { timer.close() }
    }

    /// Starts registering; returns at once (everything happens from loop callbacks).
    public func start() {
        handle(.start)
    }

    /// Stops keeping the lease alive and revokes it (bounded by `revokeTimeoutMillis`), so the entries vanish
    /// at once; `completion` runs from a loop callback when that is done or failed. Then the registrar is spent.
    /// (Once stopped, a further `stop` completes at once.)
    public func stop(completion: @escaping () -> Void = {}) {
        switch state.phase {
        case .stopped:
            completion()
        case .stopping:
            stopCompletions.append(completion)
        case .idle, .running:
            stopCompletions.append(completion)
            keptAliveUntilStopped = self
            handle(.stop)
        }
    }

    /// Asks etcd about the lease now instead of at the next keepalive or at the end of a retry's backoff.
    /// Why: etcd may have restarted empty between two keepalives (TTL/3 apart), or come back while a retry
    /// waits out up to `maxBackoffMillis`; whoever notices first (discovery's snapshot, the reconnect probe)
    /// calls this so the node is registered again at once. A no-op while a call is in flight.
    public func checkNow() {
        handle(.checkNow)
    }

    // MARK: - Performing the state's actions

    private func handle(_ event: EtcdRegistrarEvent) {
        // Extended: `finishStop` lets go of the reference that kept a stopping registrar alive.
        withExtendedLifetime(self) {
            for action in state.handle(event) { perform(action) }
        }
    }

    private func perform(_ action: EtcdRegistrarAction) {
        switch action {
        case .call(let call):
            pending = issue(call)
        case .cancelCall:
            if let pending { client.cancel(pending) }
            pending = nil
        case .armTimer(let millis):
            timer.arm(afterMillis: millis)
        case .disarmTimer:
            timer.disarm()
        case .report(let report):
            self.report(report)
        case .finishStop:
            timer.close()
            let completions = stopCompletions
            stopCompletions.removeAll()
            keptAliveUntilStopped = nil
            for completion in completions { completion() }
        }
    }

    private func issue(_ call: EtcdRegistrarCall) -> EtcdCallHandle {
        switch call {
        case .grant(let ttl):
            return client.grant(ttlSeconds: ttl, timeoutMillis: nil) { [unowned self] result in
                self.answered(result.map { .granted($0) })
            }
        case .put(let index, let lease):
            let entry = entries[index]
            return client.put(key: entry.key, value: entry.value, lease: lease, timeoutMillis: nil) {
                [unowned self] result in
                self.answered(result.map { _ in .put })
            }
        case .keepAlive(let lease):
            return client.keepAlive(lease: lease, timeoutMillis: nil) { [unowned self] result in
                self.answered(result.map { .keptAlive(ttlSeconds: $0) })
            }
        case .revoke(let lease, let timeoutMillis):
            return client.revoke(lease: lease, timeoutMillis: timeoutMillis) { [unowned self] result in
                self.answered(result.map { .revoked })
            }
        }
    }

    private func answered(_ result: Result<EtcdRegistrarAnswer, EtcdError>) {
        pending = nil
        switch result {
        case .success(let answer): handle(.answered(answer))
        case .failure(let error): handle(.answered(.failed(error)))
        }
    }

    private func report(_ report: EtcdRegistrarReport) {
        switch report {
        case .granted(let lease):
            logger.info("etcd lease \(lease.id) granted, TTL \(lease.ttlSeconds) s")
        case .registered(let how, let lease):
            for line in failureLog.drain(now: clock.nowMillis) { logger.info("etcd answers again; \(line)") }
            switch how {
            case .first: logger.info("registered in etcd on lease \(lease) (\(entries.count) keys)")
            case .sameLease: logger.info("etcd answers again; still registered on lease \(lease)")
            case .newLease: logger.info("registered again in etcd on new lease \(lease)")
            }
            onRegistered?()
        case .leaseLost(let lease):
            logger.warning("etcd lease \(lease) is gone; granting a new one and registering again")
        case .leaseVanishedWhilePutting(let lease):
            logger.warning("etcd lease \(lease) vanished while putting keys; granting a new one")
        case .failed(let call, let error, let delay):
            // Why rate-limited: with etcd down this fails every backoff period (2 s) for as long as it lasts.
            let cause = "etcd \(call) failed (retrying in \(delay) ms): \(error)"
            if let line = failureLog.record(kind: "etcd registration failures", cause: cause, now: clock.nowMillis) {
                logger.warning("\(line)")
            }
            onFailure?()
        case .revokeAnswered(let lease, nil):
            logger.info("etcd lease \(lease) revoked")
        case .revokeAnswered(let lease, let error?) where error.isNotFound:
            logger.info("etcd lease \(lease) was already gone")
        case .revokeAnswered(let lease, let error?):
            logger.warning("etcd lease \(lease) not revoked (peers drop this node after its TTL): \(error)")
        }
    }
}

extension EtcdRegistrar {
    /// The prefix under which springcache-uv nodes register their member record.
    public static let membersPrefix = "springcache/members/"

    /// The entries one node registers:
    /// - `springcache/members/NAME` → `{"name":NAME,"peer":"HOST:PORT","api":"HOST:PORT"}` (what `EtcdDiscovery`
    ///   reads; `api` omitted when unknown),
    /// - springcache's own keys, so springcache nodes can resolve this one: `NAME` → `HOST:PORT` (the peer
    ///   address) and `NAME/HOST:PORT` → `{"Op":0,"Addr":"HOST:PORT","Metadata":null}` (grpc-go's naming
    ///   `Update` record, which springcache's resolver reads).
    public static func entries(name: String, peer: HostPort, api: String?,
                               membersPrefix: String = EtcdRegistrar.membersPrefix) -> [EtcdEntry] {
        let address = peer.description
        let member = writeJSON { json in
            json.object { json in
                json.field("name", name)
                json.field("peer", address)
                if let api { json.field("api", api) }
            }
        }
        let update = writeJSON { json in
            json.object { json in
                json.field("Op", 0)
                json.field("Addr", address)
                json.key("Metadata")
                json.null()
            }
        }
        return [
            EtcdEntry(key: Array((membersPrefix + name).utf8), value: member),
            EtcdEntry(key: name, value: address),
            EtcdEntry(key: Array("\(name)/\(address)".utf8), value: update),
        ]
    }

    private static func writeJSON(_ body: (inout JSONWriter) -> Void) -> [UInt8] {
        var buffer = ByteBuffer(capacity: 128)
        JSONWriter.write(into: &buffer, body)
        let bytes = Array(buffer.readable)
        return bytes
    }
}

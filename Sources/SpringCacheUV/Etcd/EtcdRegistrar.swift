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

/// Keeps this node registered in etcd: every entry put on ONE lease, the lease kept alive.
///
/// Cycle: grant a lease (TTL `leaseTTLSeconds`), put every entry with it, then renew it every TTL/3 with one
/// keepalive request at a time (the next is scheduled when the previous has answered, so a slow etcd never
/// piles requests up). Why TTL/3: two keepalives may fail before peers see the node leave.
///
/// - A keepalive reply without TTL means the lease is gone (expired while we could not reach etcd, revoked
///   by hand, or etcd restarted empty): grant a new lease and put every entry again.
/// - Any failure (etcd down, timeout, error): retry with capped exponential backoff. The retry first asks
///   about the lease it has (keepalive): alive → finish what was left (entries not yet put) and go on;
///   gone → grant anew. So the node is back within `maxBackoffMillis` of etcd answering again.
/// - `stop` revokes the lease so peers drop the node at once instead of after the TTL.
public final class EtcdRegistrar {
    private enum Phase { case idle, running, stopping, stopped }

    public let entries: [EtcdEntry]
    public let settings: EtcdRegistrarSettings
    public private(set) var stats = EtcdRegistrarStats()
    /// Whether etcd last confirmed that every entry is on a live lease.
    public private(set) var isRegistered = false
    /// The lease the entries are (or are being) put on; nil before the first grant or after one was lost.
    public private(set) var leaseID: Int64?
    /// Called each time the node becomes registered (first time and after every recovery).
    public var onRegistered: (() -> Void)?
    /// Called after each failed call, before its retry is scheduled (e.g. to start an `EtcdReconnectProbe`).
    public var onFailure: (() -> Void)?

    private let client: EtcdClient
    private let logger: Logger
    private var phase = Phase.idle
    /// The TTL etcd granted (it may differ from the one asked for).
    private var leaseTTL: Int64 = 0
    /// Entries before this index are on the current lease.
    private var nextEntry = 0
    private var registeredOnce = false
    /// Set by a grant after the first registration: the next completed registration is a re-registration.
    private var onNewLease = false
    private var stopCompletions: [() -> Void] = []
    private var backoffMillis: UInt64
    private var pending: EtcdCallHandle?
    /// Schedules both the next keepalive and retries after failures (never both at once).
    private var timer: LoopTimer!
    private let clock: Clock
    private var failureLog: FailureLog
    private var timerAction: (() -> Void)?

    public init(entries: [EtcdEntry], client: EtcdClient, loop: EventLoop,
                settings: EtcdRegistrarSettings = EtcdRegistrarSettings(),
                logger: Logger = Logger(label: "springcache.etcd.registrar")) {
        self.entries = entries
        self.client = client
        self.settings = settings
        self.logger = logger
        clock = loop.clock
        failureLog = FailureLog(intervalMillis: settings.failureLogIntervalMillis)
        backoffMillis = settings.initialBackoffMillis
        timer = LoopTimer(loop: loop) { [unowned self] in
            let action = self.timerAction
            self.timerAction = nil
            action?()
        }
    }

    deinit {
        assert(phase == .idle || phase == .stopped, "EtcdRegistrar released without stop()")
    }

    /// Starts registering; returns at once (everything happens from loop callbacks).
    public func start() {
        guard phase == .idle else { return }
        phase = .running
        grant()
    }

    /// Stops keeping the lease alive and revokes it (bounded by `revokeTimeoutMillis`), so the entries vanish
    /// at once; `completion` runs from a loop callback when that is done or failed. Then the registrar is spent.
    /// The registrar keeps itself alive until then, so its owner may let go of it right after calling `stop`.
    /// (Once stopped, a further `stop` completes at once.)
    public func stop(completion: @escaping () -> Void = {}) {
        switch phase {
        case .stopped:
            completion()
            return
        case .stopping:
            stopCompletions.append(completion)
            return
        case .idle, .running:
            break
        }
        phase = .stopping
        stopCompletions.append(completion)
        if let pending { client.cancel(pending) }
        pending = nil
        isRegistered = false
        // Strong captures on purpose: they keep the registrar alive until the revoke has answered.
        let finish: () -> Void = {
            self.phase = .stopped
            self.timerAction = nil
            self.timer.close()
            let completions = self.stopCompletions
            self.stopCompletions.removeAll()
            for completion in completions { completion() }
        }
        guard let lease = leaseID else {
            schedule(after: 0, finish)
            return
        }
        timer.stop()
        timerAction = nil
        client.revoke(lease: lease, timeoutMillis: settings.revokeTimeoutMillis) { result in
            switch result {
            case .success:
                self.logger.info("etcd lease \(lease) revoked")
            case .failure(let error) where error.isNotFound:
                self.logger.info("etcd lease \(lease) was already gone")
            case .failure(let error):
                self.logger.warning("etcd lease \(lease) not revoked (peers drop this node after its TTL): \(error)")
            }
            self.leaseID = nil
            finish()
        }
    }

    /// Asks etcd about the lease now instead of at the next keepalive or at the end of a retry's backoff.
    /// Why: etcd may have restarted empty between two keepalives (TTL/3 apart), or come back while a retry
    /// waits out up to `maxBackoffMillis`; whoever notices first (discovery's snapshot, the reconnect probe)
    /// calls this so the node is registered again at once. A no-op while a call is in flight.
    public func checkNow() {
        guard phase == .running, pending == nil else { return }
        timer.stop()
        timerAction = nil
        if leaseID != nil { keepAlive() } else { grant() }
    }

    // MARK: - The cycle

    private func grant() {
        leaseID = nil
        nextEntry = 0
        onNewLease = registeredOnce
        pending = client.grant(ttlSeconds: settings.leaseTTLSeconds) { [unowned self] result in
            self.pending = nil
            switch result {
            case .success(let lease):
                self.stats.grants += 1
                self.leaseID = lease.id
                self.leaseTTL = lease.ttlSeconds
                self.logger.info("etcd lease \(lease.id) granted, TTL \(lease.ttlSeconds) s")
                self.putEntries()
            case .failure(let error):
                self.failed("grant", error)
            }
        }
    }

    private func putEntries() {
        guard let lease = leaseID else { return grant() }
        guard nextEntry < entries.count else { return registered() }
        let entry = entries[nextEntry]
        pending = client.put(key: entry.key, value: entry.value, lease: lease) { [unowned self] result in
            self.pending = nil
            switch result {
            case .success:
                self.nextEntry += 1
                self.putEntries()
            case .failure(let error) where error.isNotFound:
                // "requested lease not found": it expired between grant and put.
                self.logger.warning("etcd lease \(lease) vanished while putting keys; granting a new one")
                self.grant()
            case .failure(let error):
                self.failed("put", error)
            }
        }
    }

    private func registered() {
        for line in failureLog.drain(now: clock.nowMillis) { logger.info("etcd answers again; \(line)") }
        if !isRegistered {
            if onNewLease {
                stats.reRegistrations += 1
                onNewLease = false
                logger.info("registered again in etcd on new lease \(leaseID ?? 0)")
            } else if registeredOnce {
                logger.info("etcd answers again; still registered on lease \(leaseID ?? 0)")
            } else {
                logger.info("registered in etcd on lease \(leaseID ?? 0) (\(entries.count) keys)")
            }
            registeredOnce = true
            isRegistered = true
            onRegistered?()
            guard phase == .running else { return }
        }
        backoffMillis = settings.initialBackoffMillis
        schedule(after: keepAliveIntervalMillis) { [unowned self] in self.keepAlive() }
    }

    /// TTL/3, at least 1 ms.
    private var keepAliveIntervalMillis: UInt64 {
        UInt64(max(1, leaseTTL * 1000 / 3))
    }

    private func keepAlive() {
        guard let lease = leaseID else { return grant() }
        pending = client.keepAlive(lease: lease) { [unowned self] result in
            self.pending = nil
            switch result {
            case .success(let ttl) where ttl > 0:
                self.stats.keepalives += 1
                // Alive: finish the entries a failure interrupted, else carry on.
                self.putEntries()
            case .success:
                self.stats.leasesLost += 1
                self.isRegistered = false
                self.logger.warning("etcd lease \(lease) is gone; granting a new one and registering again")
                self.grant()
            case .failure(let error):
                self.failed("keepalive", error)
            }
        }
    }

    private func failed(_ what: String, _ error: EtcdError) {
        stats.failures += 1
        isRegistered = false
        let delay = backoffMillis
        backoffMillis = min(backoffMillis * 2, settings.maxBackoffMillis)
        // Why rate-limited: with etcd down this fails every backoff period (2 s) for as long as the outage lasts.
        let cause = "etcd \(what) failed (retrying in \(delay) ms): \(error)"
        if let line = failureLog.record(kind: "etcd registration failures", cause: cause, now: clock.nowMillis) {
            logger.warning("\(line)")
        }
        onFailure?()
        // Why a keepalive first when a lease exists: it tells whether the lease survived the outage.
        schedule(after: delay) { [unowned self] in
            if self.leaseID != nil { self.keepAlive() } else { self.grant() }
        }
    }

    private func schedule(after millis: UInt64, _ action: @escaping () -> Void) {
        timerAction = action
        timer.start(timeoutMillis: millis)
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

/// Settings of an `EtcdReconnectProbe` (STYLE 8).
public struct EtcdReconnectProbeSettings {
    /// How often etcd is asked whether it answers again, while the registrar or discovery is failing; also
    /// the timeout of each probe (so at most one probe is in flight).
    public var intervalMillis: UInt64 = 250
    /// The key read by each probe (a plain range of one key: the cheapest read etcd serves).
    public var key: [UInt8] = Array("springcache/members/".utf8)

    public init() {}
}

/// Counters of an `EtcdReconnectProbe`.
public struct EtcdReconnectProbeStats: Equatable {
    /// Probes sent.
    public var probes: UInt64 = 0
    /// Times a probe found etcd answering again (each followed by `onAnswer`).
    public var recoveries: UInt64 = 0
}

/// Notices etcd answering again sooner than the registrar's and discovery's capped backoff would.
///
/// Why: both retry with backoff up to 2 s, so after an outage a node could stay blind to membership changes
/// for up to that long after etcd is back — a member that leaves right then would stay in the ring for the
/// whole backoff. While anything is failing, this reads one small key every `intervalMillis` (one request in
/// flight at most), and on the first answer calls `onAnswer` once, which retries the registrar and discovery
/// at once. It costs one tiny read per interval per node, and only while etcd is unreachable. The rules are
/// `EtcdReconnectProbeState`'s; this driver performs them with an `EtcdCalls` and one `SchedulerTimer`.
public final class EtcdReconnectProbe {
    public let settings: EtcdReconnectProbeSettings
    public var stats: EtcdReconnectProbeStats { state.stats }
    /// Whether the probe is running (something failed and etcd has not answered since).
    public var isProbing: Bool { state.isProbing }
    /// Called once each time a probe finds etcd answering after `start`.
    public var onAnswer: (() -> Void)?

    private var state: EtcdReconnectProbeState
    private let client: EtcdCalls
    private var pending: EtcdCallHandle?
    private var timer: SchedulerTimer!

    public init(client: EtcdCalls, scheduler: Scheduler,
                settings: EtcdReconnectProbeSettings = EtcdReconnectProbeSettings()) {
        self.client = client
        self.settings = settings
        state = EtcdReconnectProbeState(settings: settings)
        timer = scheduler.makeTimer { [unowned self] in self.handle(.timerFired) }
    }

    public convenience init(client: EtcdCalls, loop: EventLoop,
                            settings: EtcdReconnectProbeSettings = EtcdReconnectProbeSettings()) {
        self.init(client: client, scheduler: loop.scheduler, settings: settings)
    }

    deinit {
        // Released without close() (e.g. its owner's init threw after creating it): close the timer here.
        if !state.isClosed { timer.close() }
    }

    /// Starts probing (a no-op while already probing): the first probe leaves after one interval, since the
    /// failure that called this has just shown etcd not answering.
    public func start() {
        handle(.start)
    }

    /// Stops probing, e.g. because the registrar or discovery saw etcd answer on their own.
    public func stop() {
        handle(.stop)
    }

    /// Stops for good; no callback runs afterwards.
    public func close() {
        onAnswer = nil
        handle(.close)
    }

    private func handle(_ event: EtcdReconnectProbeEvent) {
        for action in state.handle(event) {
            switch action {
            case .armTimer(let millis):
                timer.arm(afterMillis: millis)
            case .disarmTimer:
                timer.disarm()
            case .probe(let timeoutMillis):
                pending = client.get(key: settings.key, timeoutMillis: timeoutMillis) { [unowned self] result in
                    self.pending = nil
                    self.handle(.answered(etcdAnswered: (try? result.get()) != nil))
                }
            case .cancelProbe:
                if let pending { client.cancel(pending) }
                pending = nil
            case .closeTimer:
                timer.close()
            case .reportAnswer:
                onAnswer?()
            }
        }
    }
}

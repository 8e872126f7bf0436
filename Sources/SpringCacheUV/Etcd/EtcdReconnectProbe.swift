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
/// at once. It costs one tiny read per interval per node, and only while etcd is unreachable.
public final class EtcdReconnectProbe {
    public let settings: EtcdReconnectProbeSettings
    public private(set) var stats = EtcdReconnectProbeStats()
    /// Whether the probe is running (something failed and etcd has not answered since).
    public private(set) var isProbing = false
    /// Called once each time a probe finds etcd answering after `start`.
    public var onAnswer: (() -> Void)?

    private let client: EtcdClient
    private var pending: EtcdCallHandle?
    private var timer: LoopTimer!
    private var closed = false

    public init(client: EtcdClient, loop: EventLoop,
                settings: EtcdReconnectProbeSettings = EtcdReconnectProbeSettings()) {
        self.client = client
        self.settings = settings
        timer = LoopTimer(loop: loop) { [unowned self] in self.probe() }
    }

    deinit {
        // Released without close() (e.g. its owner's init threw after creating it): close the timer here.
        if !closed { timer.close() }
    }

    /// Starts probing (a no-op while already probing): the first probe leaves after one interval, since the
    /// failure that called this has just shown etcd not answering.
    public func start() {
        guard !closed, !isProbing else { return }
        isProbing = true
        timer.start(timeoutMillis: settings.intervalMillis)
    }

    /// Stops probing, e.g. because the registrar or discovery saw etcd answer on their own.
    public func stop() {
        guard isProbing else { return }
        isProbing = false
        timer.stop()
        if let pending { client.cancel(pending) }
        pending = nil
    }

    /// Stops for good; no callback runs afterwards.
    public func close() {
        guard !closed else { return }
        stop()
        closed = true
        onAnswer = nil
        timer.close()
    }

    private func probe() {
        guard isProbing, pending == nil else { return }
        stats.probes += 1
        pending = client.get(key: settings.key, timeoutMillis: Int(settings.intervalMillis)) { [unowned self] result in
            self.pending = nil
            guard self.isProbing else { return }
            switch result {
            case .success:
                self.stats.recoveries += 1
                self.isProbing = false
                self.onAnswer?()
            case .failure:
                self.timer.start(timeoutMillis: self.settings.intervalMillis)
            }
        }
    }
}

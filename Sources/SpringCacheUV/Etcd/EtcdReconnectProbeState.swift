/// What happens to a reconnect probe.
public enum EtcdReconnectProbeEvent: Equatable {
    /// Something failed: probe until etcd answers.
    case start
    case timerFired
    /// The probe in flight came back (never after `cancelProbe`): etcd answered, or not.
    case answered(etcdAnswered: Bool)
    /// Stop probing (e.g. the registrar or discovery saw etcd answer on their own).
    case stop
    /// Stop for good.
    case close
}

/// What the probe's state asks its driver to do, in order.
public enum EtcdReconnectProbeAction: Equatable {
    case armTimer(afterMillis: Int64)
    case disarmTimer
    /// Read the probe key, giving up after `timeoutMillis`.
    case probe(timeoutMillis: Int)
    case cancelProbe
    case closeTimer
    /// etcd answers again: tell the owner (once per `start`).
    case reportAnswer
}

/// `EtcdReconnectProbe`'s rules as a value: events in, actions out; no I/O, no timers.
///
/// While probing, one probe per `intervalMillis` (the interval is also each probe's timeout, so at most one
/// is in flight); the first one answered ends the probing and is reported once. The first probe leaves after
/// one interval, since the failure that started the probing has just shown etcd not answering.
public struct EtcdReconnectProbeState {
    public let intervalMillis: Int64
    public private(set) var stats = EtcdReconnectProbeStats()
    /// Whether the probe is running (something failed and etcd has not answered since).
    public private(set) var isProbing = false
    public private(set) var isClosed = false
    public private(set) var probeInFlight = false

    public init(settings: EtcdReconnectProbeSettings) {
        intervalMillis = Int64(settings.intervalMillis)
    }

    public mutating func handle(_ event: EtcdReconnectProbeEvent) -> [EtcdReconnectProbeAction] {
        switch event {
        case .start:
            guard !isClosed, !isProbing else { return [] }
            isProbing = true
            return [.armTimer(afterMillis: intervalMillis)]
        case .timerFired:
            guard isProbing, !probeInFlight else { return [] }
            stats.probes += 1
            probeInFlight = true
            return [.probe(timeoutMillis: Int(intervalMillis))]
        case .answered(let etcdAnswered):
            probeInFlight = false
            guard isProbing else { return [] }
            guard etcdAnswered else { return [.armTimer(afterMillis: intervalMillis)] }
            stats.recoveries += 1
            isProbing = false
            return [.reportAnswer]
        case .stop:
            return stop()
        case .close:
            guard !isClosed else { return [] }
            isClosed = true
            return stop() + [.closeTimer]
        }
    }

    private mutating func stop() -> [EtcdReconnectProbeAction] {
        guard isProbing else { return [] }
        isProbing = false
        var out: [EtcdReconnectProbeAction] = [.disarmTimer]
        if probeInFlight {
            probeInFlight = false
            out.append(.cancelProbe)
        }
        return out
    }
}

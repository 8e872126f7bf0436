/// A call the registrar's state asks its driver to make (one in flight at a time).
public enum EtcdRegistrarCall: Equatable {
    case grant(ttlSeconds: Int)
    /// Put `entries[entry]` on `lease`.
    case put(entry: Int, lease: Int64)
    case keepAlive(lease: Int64)
    case revoke(lease: Int64, timeoutMillis: Int)
}

/// How the call in flight came back.
public enum EtcdRegistrarAnswer: Equatable {
    case granted(EtcdLease)
    case put
    /// The lease's TTL; 0 means etcd no longer knows the lease.
    case keptAlive(ttlSeconds: Int64)
    case revoked
    case failed(EtcdError)
}

/// What happens to a registrar: its driver's calls, timer and owner turn into these.
public enum EtcdRegistrarEvent: Equatable {
    case start
    /// The call in flight answered (never after `cancelCall`).
    case answered(EtcdRegistrarAnswer)
    case timerFired
    /// Someone saw etcd answer (again): ask about the lease now instead of after the timer.
    case checkNow
    case stop
}

/// How a registration came about, for the log and the owner.
public enum EtcdRegistration: Equatable {
    /// The first registration since `start`.
    case first
    /// Calls failed, and then etcd answered with the lease still alive.
    case sameLease
    /// The keys were put again on a new lease after the old one was lost.
    case newLease
}

/// What the driver reports (logs, stats, callbacks); always the last actions of a batch, so an owner's
/// callback that stops the registrar runs after the timer and calls of its batch have been performed.
public enum EtcdRegistrarReport: Equatable {
    case granted(EtcdLease)
    case registered(EtcdRegistration, lease: Int64)
    /// A keepalive found the lease gone (expired during an outage, revoked by hand, etcd restarted empty).
    case leaseLost(lease: Int64)
    /// A put found the lease gone ("requested lease not found"): it expired between grant and put.
    case leaseVanishedWhilePutting(lease: Int64)
    case failed(call: String, EtcdError, retryInMillis: Int64)
    /// The revoke sent by `stop` answered; nil error: revoked.
    case revokeAnswered(lease: Int64, EtcdError?)
}

/// What the registrar's state asks its driver to do, in order.
public enum EtcdRegistrarAction: Equatable {
    case call(EtcdRegistrarCall)
    /// Cancel the call in flight: its answer must never arrive.
    case cancelCall
    /// Arm the timer (replacing any earlier schedule).
    case armTimer(afterMillis: Int64)
    case disarmTimer
    case report(EtcdRegistrarReport)
    /// `stop` is done: close the timer and run the stop completions (always the very last action).
    case finishStop
}

/// The registration cycle of `EtcdRegistrar` as a value: events in, actions out; no I/O, no timers, no clock.
///
/// Cycle: grant a lease (TTL `leaseTTLSeconds`), put every entry with it, then renew it every TTL/3 with one
/// keepalive at a time (the next is scheduled when the previous has answered, so a slow etcd never piles
/// requests up). Why TTL/3: two keepalives may fail before peers see the node leave.
///
/// - A keepalive answered without TTL means the lease is gone: grant a new lease and put every entry again.
/// - Any failure (etcd down, timeout, error): retry after `EtcdBackoff`. The retry first asks about the lease
///   it has (keepalive): alive → finish what was left (entries not yet put) and go on; gone → grant anew. So
///   the node is back within `maxBackoffMillis` of etcd answering again.
/// - `stop` revokes the lease so peers drop the node at once instead of after the TTL.
public struct EtcdRegistrarState {
    public enum Phase: Equatable { case idle, running, stopping, stopped }

    public let entryCount: Int
    public let settings: EtcdRegistrarSettings
    public private(set) var phase = Phase.idle
    public private(set) var stats = EtcdRegistrarStats()
    /// Whether etcd last confirmed that every entry is on a live lease.
    public private(set) var isRegistered = false
    /// The lease the entries are (or are being) put on; nil before the first grant or after one was lost.
    public private(set) var leaseID: Int64?
    /// The call in flight, if any.
    public private(set) var inFlight: EtcdRegistrarCall?
    public private(set) var backoff: EtcdBackoff

    /// What the armed timer is for (nil: disarmed). Both the next keepalive and a retry after a failure
    /// ask about the lease (or grant one), so they share one purpose.
    private enum TimerPurpose { case nextCall, finishStop }
    private var timer: TimerPurpose?
    /// The TTL etcd granted (it may differ from the one asked for).
    private var leaseTTLSeconds: Int64 = 0
    /// Entries before this index are on the current lease.
    private var nextEntry = 0
    private var registeredOnce = false
    /// Set by a grant after the first registration: the next completed registration is a re-registration.
    private var onNewLease = false

    public init(entryCount: Int, settings: EtcdRegistrarSettings) {
        self.entryCount = entryCount
        self.settings = settings
        backoff = EtcdBackoff(initialMillis: Int64(settings.initialBackoffMillis),
                              maxMillis: Int64(settings.maxBackoffMillis))
    }

    /// TTL/3, at least 1 ms.
    public var keepAliveIntervalMillis: Int64 {
        max(1, leaseTTLSeconds * 1000 / 3)
    }

    public mutating func handle(_ event: EtcdRegistrarEvent) -> [EtcdRegistrarAction] {
        var out: [EtcdRegistrarAction] = []
        var reports: [EtcdRegistrarReport] = []
        let wasStopped = phase == .stopped
        switch event {
        case .start:
            guard phase == .idle else { break }
            phase = .running
            grant(&out)
        case .answered(let answer):
            guard let call = inFlight else {
                assertionFailure("an answer without a call in flight")
                break
            }
            inFlight = nil
            answered(call, answer, &out, &reports)
        case .timerFired:
            let purpose = timer
            timer = nil
            switch purpose {
            case .nextCall? where phase == .running:
                askAboutLease(&out)
            case .finishStop? where phase == .stopping:
                phase = .stopped
            default:
                break
            }
        case .checkNow:
            guard phase == .running, inFlight == nil else { break }
            if timer != nil {
                timer = nil
                out.append(.disarmTimer)
            }
            askAboutLease(&out)
        case .stop:
            stop(&out)
        }
        let finished = !wasStopped && phase == .stopped
        return out + reports.map { .report($0) } + (finished ? [.finishStop] : [])
    }

    // MARK: - The cycle

    private mutating func answered(_ call: EtcdRegistrarCall, _ answer: EtcdRegistrarAnswer,
                                   _ out: inout [EtcdRegistrarAction], _ reports: inout [EtcdRegistrarReport]) {
        if case .revoke(let lease, _) = call {
            var failure: EtcdError?
            if case .failed(let error) = answer { failure = error }
            reports.append(.revokeAnswered(lease: lease, failure))
            leaseID = nil
            phase = .stopped
            return
        }
        guard phase == .running else { return }
        switch (call, answer) {
        case (.grant, .granted(let lease)):
            stats.grants += 1
            leaseID = lease.id
            leaseTTLSeconds = lease.ttlSeconds
            reports.append(.granted(lease))
            putEntries(&out, &reports)
        case (.put, .put):
            nextEntry += 1
            putEntries(&out, &reports)
        case (.put(_, let lease), .failed(let error)) where error.isNotFound:
            reports.append(.leaseVanishedWhilePutting(lease: lease))
            grant(&out)
        case (.keepAlive, .keptAlive(let ttl)) where ttl > 0:
            stats.keepalives += 1
            // Alive: finish the entries a failure interrupted, else carry on.
            putEntries(&out, &reports)
        case (.keepAlive(let lease), .keptAlive):
            stats.leasesLost += 1
            isRegistered = false
            reports.append(.leaseLost(lease: lease))
            grant(&out)
        case (_, .failed(let error)):
            failed(call, error, &out, &reports)
        default:
            assertionFailure("answer \(answer) does not fit call \(call)")
        }
    }

    private mutating func grant(_ out: inout [EtcdRegistrarAction]) {
        leaseID = nil
        nextEntry = 0
        onNewLease = registeredOnce
        issue(.grant(ttlSeconds: settings.leaseTTLSeconds), &out)
    }

    private mutating func askAboutLease(_ out: inout [EtcdRegistrarAction]) {
        if let lease = leaseID {
            issue(.keepAlive(lease: lease), &out)
        } else {
            grant(&out)
        }
    }

    private mutating func putEntries(_ out: inout [EtcdRegistrarAction], _ reports: inout [EtcdRegistrarReport]) {
        guard let lease = leaseID else { return grant(&out) }
        guard nextEntry < entryCount else { return registered(lease, &out, &reports) }
        issue(.put(entry: nextEntry, lease: lease), &out)
    }

    private mutating func registered(_ lease: Int64, _ out: inout [EtcdRegistrarAction],
                                     _ reports: inout [EtcdRegistrarReport]) {
        if !isRegistered {
            let how: EtcdRegistration = onNewLease ? .newLease : (registeredOnce ? .sameLease : .first)
            if onNewLease { stats.reRegistrations += 1 }
            onNewLease = false
            registeredOnce = true
            isRegistered = true
            reports.append(.registered(how, lease: lease))
        }
        backoff.reset()
        arm(.nextCall, afterMillis: keepAliveIntervalMillis, &out)
    }

    private mutating func failed(_ call: EtcdRegistrarCall, _ error: EtcdError, _ out: inout [EtcdRegistrarAction],
                                 _ reports: inout [EtcdRegistrarReport]) {
        stats.failures += 1
        isRegistered = false
        let delay = backoff.next()
        // Why a keepalive first when a lease exists (`askAboutLease` when the timer fires): it tells whether
        // the lease survived the outage.
        arm(.nextCall, afterMillis: delay, &out)
        reports.append(.failed(call: call.name, error, retryInMillis: delay))
    }

    private mutating func stop(_ out: inout [EtcdRegistrarAction]) {
        guard phase == .idle || phase == .running else { return }
        phase = .stopping
        if inFlight != nil {
            inFlight = nil
            out.append(.cancelCall)
        }
        isRegistered = false
        guard let lease = leaseID else {
            // Nothing to revoke; still finish from a later callback, as the revoke's answer would.
            arm(.finishStop, afterMillis: 0, &out)
            return
        }
        if timer != nil {
            timer = nil
            out.append(.disarmTimer)
        }
        issue(.revoke(lease: lease, timeoutMillis: settings.revokeTimeoutMillis), &out)
    }

    private mutating func issue(_ call: EtcdRegistrarCall, _ out: inout [EtcdRegistrarAction]) {
        precondition(inFlight == nil, "one registrar call at a time")
        inFlight = call
        out.append(.call(call))
    }

    private mutating func arm(_ purpose: TimerPurpose, afterMillis: Int64, _ out: inout [EtcdRegistrarAction]) {
        timer = purpose
        out.append(.armTimer(afterMillis: afterMillis))
    }
}

extension EtcdRegistrarCall {
    /// The call's name in log lines ("etcd keepalive failed").
    public var name: String {
        switch self {
        case .grant: return "grant"
        case .put: return "put"
        case .keepAlive: return "keepalive"
        case .revoke: return "revoke"
        }
    }
}

/// What happens to a discovery: its driver's range, watch, timer and owner turn into these.
public enum EtcdDiscoveryEvent: Equatable {
    case start
    /// The range in flight answered (never after `cancelRange`).
    case rangeAnswered(Result<EtcdRangeResult, EtcdError>)
    /// The watch is established (etcd sent `created`).
    case watchCreated
    case watchEvents([EtcdEvent])
    /// The watch ended: canceled by etcd (e.g. its start revision was compacted), an error, the stream broke.
    case watchEnded(EtcdError)
    case timerFired
    /// Someone saw etcd answer again: re-read now if a retry is waiting out its backoff.
    case retryNow
    case stop
}

/// What the driver reports (logs, stats, the owner's callbacks); always the last actions of a batch.
public enum EtcdDiscoveryReport: Equatable {
    /// Every member under the prefix at `revision`, after each (re)start of the cycle.
    case snapshot([Member], revision: Int64)
    case put(Member)
    /// A member's record was deleted: its name.
    case delete(String)
    /// A member record that could not be read, skipped.
    case skipped(key: [UInt8], problem: String)
    /// The watch is established: the cycle works (again).
    case watching
    case failed(call: String, EtcdError, retryInMillis: Int64)
}

/// What the discovery's state asks its driver to do, in order.
public enum EtcdDiscoveryAction: Equatable {
    /// Range the prefix (one at a time).
    case range
    /// Watch the prefix from `revision` on.
    case watch(fromRevision: Int64)
    case cancelRange
    case cancelWatch
    /// Arm the retry timer (replacing any earlier schedule).
    case armTimer(afterMillis: Int64)
    case disarmTimer
    /// Stopped for good: close the timer.
    case closeTimer
    case report(EtcdDiscoveryReport)
}

/// The discovery cycle of `EtcdDiscovery` as a value: events in, actions out; no I/O, no timers, no clock.
///
/// Cycle: range the prefix → snapshot with every member → watch from the range's revision + 1 (so no change
/// between the two is missed) → put / delete per event. When the watch breaks, is canceled (e.g. its start
/// revision was compacted) or etcd cannot be reached, it retries after `EtcdBackoff` with a fresh range,
/// whose snapshot replaces whatever was missed meanwhile. Why a fresh range and not a watch from the last
/// revision seen: after a compaction that revision is gone, and after an empty restart it means nothing.
public struct EtcdDiscoveryState {
    public enum Phase: Equatable { case idle, running, stopped }

    public let prefix: [UInt8]
    public private(set) var phase = Phase.idle
    public private(set) var stats = EtcdDiscoveryStats()
    /// Whether a watch is established (created) right now.
    public private(set) var isWatching = false
    public private(set) var rangeInFlight = false
    /// Whether a watch was started and has not ended (created or not yet).
    public private(set) var watchOpen = false
    /// The revision the current (or last) watch started from.
    public private(set) var watchedFromRevision: Int64 = 0
    public private(set) var backoff: EtcdBackoff
    private var timerArmed = false

    public init(settings: EtcdDiscoverySettings) {
        prefix = Array(settings.prefix.utf8)
        backoff = EtcdBackoff(initialMillis: Int64(settings.initialBackoffMillis),
                              maxMillis: Int64(settings.maxBackoffMillis))
    }

    public mutating func handle(_ event: EtcdDiscoveryEvent) -> [EtcdDiscoveryAction] {
        var out: [EtcdDiscoveryAction] = []
        var reports: [EtcdDiscoveryReport] = []
        switch event {
        case .start:
            guard phase == .idle else { break }
            phase = .running
            range(&out)
        case .rangeAnswered(let result):
            rangeInFlight = false
            guard phase == .running else { break }
            switch result {
            case .success(let reply):
                var members: [Member] = []
                for kv in reply.kvs {
                    if let member = member(from: kv, &reports) { members.append(member) }
                }
                stats.snapshots += 1
                watchOpen = true
                watchedFromRevision = reply.revision + 1
                out.append(.watch(fromRevision: watchedFromRevision))
                reports.append(.snapshot(members, revision: reply.revision))
            case .failure(let error):
                retry(after: "range", error, &out, &reports)
            }
        case .watchCreated:
            guard phase == .running, watchOpen else { break }
            isWatching = true
            // The cycle works again: the next failure starts from a short wait.
            backoff.reset()
            reports.append(.watching)
        case .watchEvents(let events):
            guard phase == .running, watchOpen else { break }
            for event in events { apply(event, &reports) }
        case .watchEnded(let error):
            watchOpen = false
            isWatching = false
            guard phase == .running else { break }
            retry(after: "watch", error, &out, &reports)
        case .timerFired:
            timerArmed = false
            guard phase == .running, !rangeInFlight, !watchOpen else { break }
            range(&out)
        case .retryNow:
            guard phase == .running, !rangeInFlight, !watchOpen else { break }
            if timerArmed {
                timerArmed = false
                out.append(.disarmTimer)
            }
            backoff.reset()
            range(&out)
        case .stop:
            guard phase != .stopped else { break }
            phase = .stopped
            if rangeInFlight { out.append(.cancelRange) }
            if watchOpen { out.append(.cancelWatch) }
            rangeInFlight = false
            watchOpen = false
            isWatching = false
            timerArmed = false
            out.append(.closeTimer)
        }
        return out + reports.map { .report($0) }
    }

    private mutating func range(_ out: inout [EtcdDiscoveryAction]) {
        rangeInFlight = true
        out.append(.range)
    }

    private mutating func apply(_ event: EtcdEvent, _ reports: inout [EtcdDiscoveryReport]) {
        switch event.kind {
        case .put:
            guard let member = member(from: event.kv, &reports) else { return }
            stats.puts += 1
            reports.append(.put(member))
        case .delete:
            guard let name = EtcdDiscovery.name(fromKey: event.kv.key, prefix: prefix) else { return }
            stats.deletes += 1
            reports.append(.delete(name))
        }
    }

    private mutating func retry(after what: String, _ error: EtcdError, _ out: inout [EtcdDiscoveryAction],
                                _ reports: inout [EtcdDiscoveryReport]) {
        stats.failures += 1
        let delay = backoff.next()
        timerArmed = true
        out.append(.armTimer(afterMillis: delay))
        reports.append(.failed(call: what, error, retryInMillis: delay))
    }

    private mutating func member(from kv: EtcdKeyValue, _ reports: inout [EtcdDiscoveryReport]) -> Member? {
        switch EtcdDiscovery.member(key: kv.key, value: kv.value, prefix: prefix) {
        case .success(let member):
            return member
        case .failure(let problem):
            stats.malformed += 1
            reports.append(.skipped(key: kv.key, problem: problem.description))
            return nil
        }
    }
}

/// The second time seam beside `Clock`: timers.
///
/// Why injected: keepalive cadence, backoff, probes and deadlines are decisions the code owns; with a
/// `ManualScheduler` a unit test moves time forward and sees every timer fire in order, so no unit test waits
/// on a wall clock (SwiftNIO's `EmbeddedEventLoop.advanceTime` habit). In production `LoopScheduler` makes
/// plain uv timers on the node's one loop.
public protocol Scheduler: AnyObject {
    /// The time the scheduler's timers are measured against.
    var clock: Clock { get }
    /// A timer that calls `fire` on the loop; it does nothing until `arm`.
    func makeTimer(_ fire: @escaping () -> Void) -> SchedulerTimer
}

/// One timer made by a `Scheduler`.
public protocol SchedulerTimer: AnyObject {
    /// Fires once after `afterMillis` (0: on the next turn), then every `repeatMillis` if that is > 0.
    /// Arming again replaces the previous schedule.
    func arm(afterMillis: Int64, repeatMillis: Int64)
    /// Stops the timer; it can be armed again.
    func disarm()
    /// Ends the timer for good: it never fires again. Must be called before its owner lets go of it.
    func close()
}

extension SchedulerTimer {
    /// Fires once after `afterMillis`.
    public func arm(afterMillis: Int64) { arm(afterMillis: afterMillis, repeatMillis: 0) }
}

/// Real uv timers on one loop.
public final class LoopScheduler: Scheduler {
    // Unowned: the loop owns its scheduler (`EventLoop.scheduler`).
    private unowned let loop: EventLoop

    public init(loop: EventLoop) {
        self.loop = loop
    }

    public var clock: Clock { loop.clock }

    public func makeTimer(_ fire: @escaping () -> Void) -> SchedulerTimer {
        LoopSchedulerTimer(LoopTimer(loop: loop, fire))
    }
}

private final class LoopSchedulerTimer: SchedulerTimer {
    private let timer: LoopTimer

    init(_ timer: LoopTimer) {
        self.timer = timer
    }

    func arm(afterMillis: Int64, repeatMillis: Int64) {
        timer.start(timeoutMillis: UInt64(max(afterMillis, 0)), repeatMillis: UInt64(max(repeatMillis, 0)))
    }

    func disarm() { timer.stop() }
    func close() { timer.close() }
}

/// A scheduler and clock that move only when told to; for tests.
///
/// `advance(byMillis:)` fires every timer that falls due within the step, earliest first (ties in the order
/// they were armed), with `nowMillis` set to each timer's due time while it runs — so a timer armed from a
/// callback fires within the same step if it falls due before the step's end, as it would on a real loop.
public final class ManualScheduler: Scheduler, Clock {
    public private(set) var nowMillis: Int64
    /// Timers currently armed.
    public var armedTimers: Int { timers.reduce(0) { $0 + ($1.dueMillis == nil ? 0 : 1) } }
    /// How many timer callbacks have run in all.
    public private(set) var fired = 0

    private var timers: [ManualTimer] = []
    private var sequence: UInt64 = 0

    public init(nowMillis: Int64 = 1_700_000_000_000) {
        self.nowMillis = nowMillis
    }

    public var clock: Clock { self }

    public func makeTimer(_ fire: @escaping () -> Void) -> SchedulerTimer {
        let timer = ManualTimer(scheduler: self, fire: fire)
        timers.append(timer)
        return timer
    }

    /// Moves time forward by `delta` ms, firing what falls due on the way.
    public func advance(byMillis delta: Int64) {
        precondition(delta >= 0, "ManualScheduler cannot go backwards")
        let end = nowMillis + delta
        while let next = nextDue(notAfter: end) {
            nowMillis = max(nowMillis, next.dueMillis!)
            next.fireNow()
            fired += 1
        }
        nowMillis = end
    }

    /// Fires what is due now without moving time (a loop turn at the same instant).
    public func runDue() { advance(byMillis: 0) }

    /// When the earliest armed timer falls due, if any is armed.
    public var nextDueMillis: Int64? { timers.compactMap { $0.dueMillis }.min() }

    fileprivate func nextSequence() -> UInt64 {
        sequence += 1
        return sequence
    }

    fileprivate func forget(_ timer: ManualTimer) {
        timers.removeAll { $0 === timer }
    }

    private func nextDue(notAfter end: Int64) -> ManualTimer? {
        var best: ManualTimer?
        for t in timers {
            guard let due = t.dueMillis, due <= end else { continue }
            if let b = best, (b.dueMillis!, b.order) <= (due, t.order) { continue }
            best = t
        }
        return best
    }
}

private final class ManualTimer: SchedulerTimer {
    private weak var scheduler: ManualScheduler?
    private var fire: (() -> Void)?
    private(set) var dueMillis: Int64?
    private(set) var order: UInt64 = 0
    private var repeatMillis: Int64 = 0

    init(scheduler: ManualScheduler, fire: @escaping () -> Void) {
        self.scheduler = scheduler
        self.fire = fire
    }

    func arm(afterMillis: Int64, repeatMillis: Int64) {
        guard let scheduler, fire != nil else { return }
        dueMillis = scheduler.nowMillis + max(afterMillis, 0)
        self.repeatMillis = max(repeatMillis, 0)
        order = scheduler.nextSequence()
    }

    func disarm() { dueMillis = nil }

    func close() {
        dueMillis = nil
        fire = nil
        scheduler?.forget(self)
    }

    func fireNow() {
        guard let due = dueMillis, let scheduler else { return }
        if repeatMillis > 0 {
            dueMillis = due + repeatMillis
            order = scheduler.nextSequence()
        } else {
            dueMillis = nil
        }
        fire?()
    }
}

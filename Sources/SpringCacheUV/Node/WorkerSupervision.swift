#if canImport(Glibc)
import Glibc
#endif

/// The worker supervisor's policy as a value: when to restart a worker and after how long, when to give up,
/// which signals go to which workers, and the supervisor's exit status. Events in (a worker started, failed
/// to start or exited; a restart or kill timer fired; a signal arrived), actions out; `WorkerSupervisor`
/// performs them (spawns, signals, timers, logs). No processes and no clock: events carry the time, so the
/// policy is unit-tested without forking.
///
/// The rules:
/// - A worker that dies is restarted after a delay that starts at `initialRestartDelayMillis` and doubles at
///   each restart up to `maxRestartDelayMillis` (a crash loop costs little CPU); one that ran at least
///   `stableAfterMillis` before dying starts again from the initial delay. A worker that cannot be spawned
///   at all is retried the same way.
/// - Give-up rule: a worker that exits with `startFailureStatus` (78, EX_CONFIG: a bad flag, a taken port)
///   cannot be helped by a restart, so every worker is stopped and the supervisor exits with 1.
/// - SIGTERM/SIGINT: stop — SIGTERM to every live worker (each revokes its lease and finishes its answers),
///   SIGKILL to the ones still alive after `stopGraceMillis`; done when all have exited (status 0).
/// - SIGHUP goes to every live worker (each re-reads its token files); SIGUSR1/SIGUSR2 are ignored (their
///   default action would end the supervisor, and with it every worker).
struct WorkerSupervision {
    /// What the driver must do, in order.
    enum Action: Equatable {
        /// Start worker `worker`; report with `started` or `spawnFailed`.
        case spawn(worker: Int)
        /// Arm worker `worker`'s restart timer; report with `restartDue`.
        case scheduleRestart(worker: Int, afterMillis: Int64)
        /// Disarm worker `worker`'s restart timer.
        case cancelRestart(worker: Int)
        /// Send `signal` to the process `pid`.
        case send(signal: Int32, pid: Int32)
        /// Arm the kill timer (the stop's grace period); report with `killTimerFired`.
        case armKillTimer(afterMillis: Int64)
        /// Every worker is gone: close the signal watchers and the timers; the supervisor exits with `status`.
        case finish(status: Int32)
        /// Log that worker `worker` (process `pid`) ended with wait status `status` after `ranForMillis`.
        case reportExit(worker: Int, pid: Int32, status: Int32, ranForMillis: Int64)
        /// Log that worker `worker` could not start, which stops the supervisor.
        case reportStartFailure(worker: Int)
    }

    /// What to do with a signal the supervisor received.
    enum SignalDecision: Equatable {
        case stop
        case forwardToWorkers
        case ignore
    }

    /// The exit status of a worker that failed to start (bad configuration, a port taken): EX_CONFIG from
    /// sysexits.h.
    static let startFailureStatus: Int32 = 78

    private struct Worker: Equatable {
        var pid: Int32 = 0
        var startedAtMillis: Int64 = 0
        var restartDelayMillis: Int64
        var restartPending = false
    }

    let settings: SupervisorSettings
    private var workers: [Worker]
    /// Whether a stop has begun (by a signal or the give-up rule).
    private(set) var isStopping = false
    private(set) var isFinished = false
    /// The supervisor's exit status: 0 after a graceful stop, 1 when a worker could not start.
    private(set) var exitStatus: Int32 = 0
    /// Restarts so far (a respawn after a death or a failed spawn).
    private(set) var restarts = 0

    init(count: Int, settings: SupervisorSettings) {
        precondition(count >= 1, "a supervisor needs at least one worker")
        self.settings = settings
        workers = Array(repeating: Worker(restartDelayMillis: settings.initialRestartDelayMillis), count: count)
    }

    var count: Int { workers.count }

    /// The processes of the workers running now.
    var livePIDs: [Int32] { workers.filter { $0.pid > 0 }.map(\.pid) }

    /// The delay the next restart of worker `worker` will wait.
    func nextRestartDelay(of worker: Int) -> Int64 { workers[worker].restartDelayMillis }

    static func decision(for signal: Int32) -> SignalDecision {
        switch signal {
        case SIGINT, SIGTERM: return .stop
        case SIGHUP: return .forwardToWorkers
        default: return .ignore
        }
    }

    // MARK: events

    /// The supervisor begins: spawn every worker.
    func start() -> [Action] {
        (0..<workers.count).map { .spawn(worker: $0) }
    }

    /// Worker `worker` was spawned as process `pid`.
    mutating func started(worker: Int, pid: Int32, nowMillis: Int64) {
        workers[worker].pid = pid
        workers[worker].startedAtMillis = nowMillis
    }

    /// Worker `worker` could not be spawned (the system refused): try again later.
    mutating func spawnFailed(worker: Int) -> [Action] {
        isStopping ? [] : [scheduleRestart(worker)]
    }

    /// A child exited with wait status `status` (as `waitpid` reports it).
    mutating func exited(pid: Int32, status: Int32, nowMillis: Int64) -> [Action] {
        guard pid > 0, let index = workers.firstIndex(where: { $0.pid == pid }) else { return [] }
        workers[index].pid = 0
        if isStopping { return finishIfAllExited() }
        if WorkerSupervision.exitCode(status) == WorkerSupervision.startFailureStatus {
            // The worker printed its reason (one line) before exiting; restarting cannot fix a bad flag or a
            // taken port, so stop the others and exit with that failure.
            exitStatus = 1
            return [.reportStartFailure(worker: index)] + stop()
        }
        let ranFor = nowMillis - workers[index].startedAtMillis
        if ranFor >= settings.stableAfterMillis {
            workers[index].restartDelayMillis = settings.initialRestartDelayMillis
        }
        return [.reportExit(worker: index, pid: pid, status: status, ranForMillis: ranFor), scheduleRestart(index)]
    }

    /// Worker `worker`'s restart timer fired.
    mutating func restartDue(worker: Int) -> [Action] {
        guard workers[worker].restartPending else { return [] }
        workers[worker].restartPending = false
        guard !isStopping else { return [] }
        restarts += 1
        return [.spawn(worker: worker)]
    }

    /// A signal arrived.
    mutating func received(signal: Int32) -> [Action] {
        switch WorkerSupervision.decision(for: signal) {
        case .stop: return stop()
        case .forwardToWorkers: return livePIDs.map { .send(signal: signal, pid: $0) }
        case .ignore: return []
        }
    }

    /// The stop's grace period is over: kill the workers still alive.
    func killTimerFired() -> [Action] {
        livePIDs.map { .send(signal: SIGKILL, pid: $0) }
    }

    // MARK: decisions

    private mutating func scheduleRestart(_ index: Int) -> Action {
        let delay = workers[index].restartDelayMillis
        workers[index].restartDelayMillis = min(delay * 2, settings.maxRestartDelayMillis)
        workers[index].restartPending = true
        return .scheduleRestart(worker: index, afterMillis: delay)
    }

    private mutating func stop() -> [Action] {
        guard !isStopping else { return [] }
        isStopping = true
        var actions: [Action] = []
        for i in workers.indices where workers[i].restartPending {
            workers[i].restartPending = false
            actions.append(.cancelRestart(worker: i))
        }
        let live = livePIDs
        if live.isEmpty { return actions + finishIfAllExited() }
        actions += live.map { .send(signal: SIGTERM, pid: $0) }
        actions.append(.armKillTimer(afterMillis: settings.stopGraceMillis))
        return actions
    }

    private mutating func finishIfAllExited() -> [Action] {
        guard !isFinished, livePIDs.isEmpty else { return [] }
        isFinished = true
        return [.finish(status: exitStatus)]
    }

    /// The exit code of a worker that exited normally, nil when a signal ended it.
    static func exitCode(_ status: Int32) -> Int32? {
        status & 0x7f == 0 ? (status >> 8) & 0xff : nil
    }
}

import CLibUV
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Settings of the worker supervisor; every period and bound is named here.
public struct SupervisorSettings: Equatable {
    /// The first restart of a worker that died waits this long; each quick death doubles it.
    public var initialRestartDelayMillis: Int64 = 100
    /// The longest wait between restarts of a worker that keeps dying.
    public var maxRestartDelayMillis: Int64 = 5_000
    /// A worker that ran at least this long before dying is restarted after the initial delay again.
    public var stableAfterMillis: Int64 = 10_000
    /// On SIGTERM/SIGINT, how long workers get to stop gracefully before they are killed.
    public var stopGraceMillis: Int64 = 8_000

    public init() {}
}

/// Runs one full node per core: spawns `count` workers of this same binary, restarts any that die (with
/// backoff), and on SIGTERM/SIGINT stops them all gracefully and exits.
///
/// Why processes, not threads: each node is a single-threaded loop with no locks; more cores means more
/// nodes, which share the API port through SO_REUSEPORT and are one another's cluster members.
/// Workers ask the kernel for SIGTERM when the supervisor dies (PR_SET_PDEATHSIG), so none is orphaned.
///
/// The policy (restart delays, the give-up rule, which signal goes where, the exit status) is the
/// `WorkerSupervision` value; this class performs its actions: spawns, signals, timers and log lines.
public final class WorkerSupervisor {
    let loop: EventLoop
    let executable: String
    let argumentsForWorker: (Int) -> [String]
    let count: Int
    let logger: Logger

    private var policy: WorkerSupervision
    private var restartTimers: [SchedulerTimer?]
    private var signals: [SignalWatcher] = []
    private var killTimer: SchedulerTimer?
    public var restarts: Int { policy.restarts }

    public init(loop: EventLoop, executable: String, count: Int, settings: SupervisorSettings, logger: Logger,
                argumentsForWorker: @escaping (Int) -> [String]) {
        self.loop = loop
        self.executable = executable
        self.count = count
        self.logger = logger
        self.argumentsForWorker = argumentsForWorker
        policy = WorkerSupervision(count: count, settings: settings)
        restartTimers = Array(repeating: nil, count: count)
    }

    /// Spawns every worker and supervises them until told to stop; returns the exit status (0 after a
    /// graceful stop).
    public func run() throws -> Int32 {
        for signum in [SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2] {
            signals.append(try SignalWatcher(loop: loop, signal: signum) { [unowned self] sig in self.received(sig) })
        }
        signals.append(try SignalWatcher(loop: loop, signal: SIGCHLD) { [unowned self] _ in self.reap() })
        perform(policy.start())
        loop.run()
        loop.close()
        return policy.exitStatus
    }

    /// The exit status of a worker that failed to start (bad configuration, a port taken): EX_CONFIG from
    /// sysexits.h. Why a status of its own: restarting such a worker cannot help, so the supervisor stops.
    public static let startFailureStatus: Int32 = WorkerSupervision.startFailureStatus

    private func received(_ sig: Int32) {
        switch WorkerSupervision.decision(for: sig) {
        case .stop:
            logger.info("supervisor received signal \(sig); stopping \(count) workers")
        case .forwardToWorkers:
            // SIGHUP (systemd's ExecReload) goes to the supervisor: every worker re-reads its token files.
            logger.notice("supervisor received SIGHUP; passing it to \(count) workers")
        case .ignore:
            logger.notice("supervisor received signal \(sig); ignored (SIGHUP re-reads tokens, SIGTERM stops)")
        }
        perform(policy.received(signal: sig))
    }

    private func perform(_ actions: [WorkerSupervision.Action]) {
        for action in actions {
            switch action {
            case .spawn(let index):
                spawn(index)
            case .scheduleRestart(let index, let delay):
                let timer = restartTimers[index] ?? loop.scheduler.makeTimer { [unowned self] in
                    self.perform(self.policy.restartDue(worker: index))
                }
                restartTimers[index] = timer
                timer.arm(afterMillis: delay, repeatMillis: 0)
                logger.info("restarting worker \(index) in \(delay) ms")
            case .cancelRestart(let index):
                restartTimers[index]?.disarm()
            case .send(let signal, let pid):
                if signal == SIGKILL { logger.warning("worker pid \(pid) did not stop in time; killing it") }
                kill(pid, signal)
            case .armKillTimer(let after):
                let timer = loop.scheduler.makeTimer { [unowned self] in self.perform(self.policy.killTimerFired()) }
                killTimer = timer
                timer.arm(afterMillis: after, repeatMillis: 0)
            case .finish:
                finish()
            case .reportExit(let index, let pid, let status, let ranFor):
                let how = WorkerSupervisor.describe(status)
                logger.warning("worker \(index) (pid \(pid)) exited (\(how)) after \(ranFor) ms")
            case .reportStartFailure(let index):
                logger.critical("worker \(index) could not start (its reason is logged above); stopping all workers")
            }
        }
    }

    private func spawn(_ index: Int) {
        let args = [executable] + argumentsForWorker(index)
        var cArgs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) }
        cArgs.append(nil)
        defer { for p in cArgs { free(p) } }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, executable, nil, nil, cArgs, environ)
        if status != 0 {
            logger.error("cannot start worker \(index): \(String(cString: strerror(status)))")
            perform(policy.spawnFailed(worker: index))
            return
        }
        policy.started(worker: index, pid: pid, nowMillis: loop.clock.nowMillis)
        logger.info("worker \(index) started (pid \(pid))")
    }

    /// Collects every child that exited and lets the policy decide what follows.
    private func reap() {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid <= 0 { break }
            perform(policy.exited(pid: pid, status: status, nowMillis: loop.clock.nowMillis))
        }
    }

    /// SIGTERM to every worker (each revokes its lease and finishes its answers), SIGKILL after the grace.
    public func stop() {
        perform(policy.received(signal: SIGTERM))
    }

    private func finish() {
        killTimer?.close()
        killTimer = nil
        for i in restartTimers.indices {
            restartTimers[i]?.close()
            restartTimers[i] = nil
        }
        for s in signals { s.close() }
        signals.removeAll()
        logger.info("all workers stopped")
    }

    static func describe(_ status: Int32) -> String {
        let signal = status & 0x7f
        if signal == 0 { return "exit code \((status >> 8) & 0xff)" }
        return "killed by signal \(signal)"
    }

    /// The number of cores this process may run on (`--workers auto`).
    public static func coreCount() -> Int {
        max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    /// The path of the running executable, to spawn workers of the same binary.
    public static func currentExecutable() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        if n > 0 { return String(cString: buffer) }
        return CommandLine.arguments[0]
    }

    /// The environment variable through which workers learn their supervisor's pid.
    public static let supervisorPIDVariable = "SPRINGCACHE_SUPERVISOR_PID"

    /// Called in the supervisor before spawning: workers inherit its pid through the environment.
    public static func exportSupervisorPID() {
        setenv(supervisorPIDVariable, "\(getpid())", 1)
    }

    /// Called in a worker: ask for SIGTERM when the supervisor dies, and exit at once if it already has.
    public static func bindToSupervisor() {
        _ = sc_set_parent_death_signal()
        // Why compare with the pid from the environment: the supervisor may have died before prctl took
        // effect, and then the worker's parent is already someone else.
        if let text = getenv(supervisorPIDVariable), let expected = pid_t(String(cString: text)), getppid() != expected {
            exit(0)
        }
    }
}

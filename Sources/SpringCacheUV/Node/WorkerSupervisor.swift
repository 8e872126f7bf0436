import CLibUV
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Settings of the worker supervisor; every period and bound is named here.
public struct SupervisorSettings {
    /// The first restart of a worker that died waits this long; each quick death doubles it.
    public var initialRestartDelayMillis: UInt64 = 100
    /// The longest wait between restarts of a worker that keeps dying.
    public var maxRestartDelayMillis: UInt64 = 5_000
    /// A worker that ran at least this long before dying is restarted after the initial delay again.
    public var stableAfterMillis: Int64 = 10_000
    /// On SIGTERM/SIGINT, how long workers get to stop gracefully before they are killed.
    public var stopGraceMillis: UInt64 = 8_000

    public init() {}
}

/// Runs one full node per core: spawns `count` workers of this same binary, restarts any that die (with
/// backoff), and on SIGTERM/SIGINT stops them all gracefully and exits.
///
/// Why processes, not threads: each node is a single-threaded loop with no locks; more cores means more
/// nodes, which share the API port through SO_REUSEPORT and are one another's cluster members.
/// Workers ask the kernel for SIGTERM when the supervisor dies (PR_SET_PDEATHSIG), so none is orphaned.
public final class WorkerSupervisor {
    let loop: EventLoop
    let executable: String
    let argumentsForWorker: (Int) -> [String]
    let count: Int
    let settings: SupervisorSettings
    let logger: Logger

    private struct Worker {
        var pid: pid_t = 0
        var startedAt: Int64 = 0
        var restartDelay: UInt64
        var restartTimer: LoopTimer?
    }

    private var workers: [Worker]
    private var signals: [SignalWatcher] = []
    private var stopping = false
    private var killTimer: LoopTimer?
    /// The supervisor's own exit status: 0 after a graceful stop, 1 when a worker could not start.
    private var exitStatus: Int32 = 0
    public private(set) var restarts = 0

    public init(loop: EventLoop, executable: String, count: Int, settings: SupervisorSettings, logger: Logger,
                argumentsForWorker: @escaping (Int) -> [String]) {
        self.loop = loop
        self.executable = executable
        self.count = count
        self.settings = settings
        self.logger = logger
        self.argumentsForWorker = argumentsForWorker
        workers = Array(repeating: Worker(restartDelay: settings.initialRestartDelayMillis), count: count)
    }

    /// Spawns every worker and supervises them until told to stop; returns the exit status (0 after a
    /// graceful stop).
    public func run() throws -> Int32 {
        for signum in [SIGINT, SIGTERM] {
            signals.append(try SignalWatcher(loop: loop, signal: signum) { [unowned self] sig in
                self.logger.info("supervisor received signal \(sig); stopping \(self.count) workers")
                self.stop()
            })
        }
        signals.append(try SignalWatcher(loop: loop, signal: SIGCHLD) { [unowned self] _ in self.reap() })
        // SIGHUP (systemd's ExecReload) goes to the supervisor: every worker re-reads its token files.
        signals.append(try SignalWatcher(loop: loop, signal: SIGHUP) { [unowned self] _ in
            self.logger.notice("supervisor received SIGHUP; passing it to \(self.count) workers")
            for w in self.workers where w.pid > 0 { kill(w.pid, SIGHUP) }
        })
        // Their default action would end the supervisor, and with it every worker.
        for signum in [SIGUSR1, SIGUSR2] {
            signals.append(try SignalWatcher(loop: loop, signal: signum) { [unowned self] sig in
                self.logger.notice("supervisor received signal \(sig); ignored (SIGHUP re-reads tokens, SIGTERM stops)")
            })
        }
        for i in 0..<count { spawn(i) }
        loop.run()
        loop.close()
        return exitStatus
    }

    /// The exit status of a worker that failed to start (bad configuration, a port taken): EX_CONFIG from
    /// sysexits.h. Why a status of its own: restarting such a worker cannot help, so the supervisor stops.
    public static let startFailureStatus: Int32 = 78

    private func spawn(_ index: Int) {
        let args = [executable] + argumentsForWorker(index)
        var cArgs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) }
        cArgs.append(nil)
        defer { for p in cArgs { free(p) } }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, executable, nil, nil, cArgs, environ)
        if status != 0 {
            logger.error("cannot start worker \(index): \(String(cString: strerror(status)))")
            scheduleRestart(index)
            return
        }
        workers[index].pid = pid
        workers[index].startedAt = loop.clock.nowMillis
        logger.info("worker \(index) started (pid \(pid))")
    }

    /// Collects every worker that exited; restarts it unless the supervisor is stopping.
    private func reap() {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid <= 0 { break }
            guard let index = workers.firstIndex(where: { $0.pid == pid }) else { continue }
            workers[index].pid = 0
            if stopping {
                if workers.allSatisfy({ $0.pid == 0 }) { finish() }
                continue
            }
            let ranFor = loop.clock.nowMillis - workers[index].startedAt
            if WorkerSupervisor.exitCode(status) == WorkerSupervisor.startFailureStatus {
                // The worker printed its reason (one line) before exiting; restarting cannot fix a bad flag or
                // a taken port, so stop the others and exit with that failure.
                logger.critical("worker \(index) could not start (its reason is logged above); stopping all workers")
                exitStatus = 1
                stop()
                continue
            }
            logger.warning("worker \(index) (pid \(pid)) exited (\(WorkerSupervisor.describe(status))) after \(ranFor) ms")
            if ranFor >= settings.stableAfterMillis { workers[index].restartDelay = settings.initialRestartDelayMillis }
            scheduleRestart(index)
        }
    }

    private func scheduleRestart(_ index: Int) {
        let delay = workers[index].restartDelay
        workers[index].restartDelay = min(delay * 2, settings.maxRestartDelayMillis)
        workers[index].restartTimer?.close()
        let timer = LoopTimer(loop: loop) { [unowned self] in
            self.workers[index].restartTimer?.close()
            self.workers[index].restartTimer = nil
            guard !self.stopping else { return }
            self.restarts += 1
            self.spawn(index)
        }
        timer.start(timeoutMillis: delay)
        workers[index].restartTimer = timer
        logger.info("restarting worker \(index) in \(delay) ms")
    }

    /// SIGTERM to every worker (each revokes its lease and finishes its answers), SIGKILL after the grace.
    public func stop() {
        guard !stopping else { return }
        stopping = true
        for i in workers.indices {
            workers[i].restartTimer?.close()
            workers[i].restartTimer = nil
            if workers[i].pid > 0 { kill(workers[i].pid, SIGTERM) }
        }
        if workers.allSatisfy({ $0.pid == 0 }) {
            finish()
            return
        }
        let timer = LoopTimer(loop: loop) { [unowned self] in
            for w in self.workers where w.pid > 0 {
                self.logger.warning("worker pid \(w.pid) did not stop in time; killing it")
                kill(w.pid, SIGKILL)
            }
        }
        timer.start(timeoutMillis: settings.stopGraceMillis)
        killTimer = timer
    }

    private func finish() {
        killTimer?.close()
        killTimer = nil
        for s in signals { s.close() }
        signals.removeAll()
        logger.info("all workers stopped")
    }

    /// The exit code of a worker that exited normally, nil when a signal ended it.
    static func exitCode(_ status: Int32) -> Int32? {
        status & 0x7f == 0 ? (status >> 8) & 0xff : nil
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

#if canImport(Glibc)
import Glibc
#endif
import XCTest
@testable import SpringCacheUV

/// The worker supervisor's policy, without forking: restart delays, the give-up rule, signals, exit status.
final class WorkerSupervisionTests: XCTestCase {
    /// A wait status as `waitpid` reports it.
    private func exitedWith(_ code: Int32) -> Int32 { (code & 0xff) << 8 }
    private func killedBy(_ signal: Int32) -> Int32 { signal & 0x7f }

    private func started(_ count: Int, settings: SupervisorSettings = SupervisorSettings(),
                         at now: Int64 = 0) -> WorkerSupervision {
        var s = WorkerSupervision(count: count, settings: settings)
        XCTAssertEqual(s.start(), (0..<count).map { .spawn(worker: $0) })
        for i in 0..<count { s.started(worker: i, pid: Int32(100 + i), nowMillis: now) }
        return s
    }

    func testACrashLoopBacksOffDoublingUpToTheCap() {
        var s = started(2)
        var now: Int64 = 0
        var delays: [Int64] = []
        var pid: Int32 = 100
        for _ in 0..<9 {
            now += 50
            let actions = s.exited(pid: pid, status: killedBy(SIGSEGV), nowMillis: now)
            guard case .scheduleRestart(0, let delay) = actions.last else {
                return XCTFail("no restart scheduled: \(actions)")
            }
            XCTAssertEqual(actions.first, .reportExit(worker: 0, pid: pid, status: killedBy(SIGSEGV), ranForMillis: 50))
            delays.append(delay)
            now += delay
            XCTAssertEqual(s.restartDue(worker: 0), [.spawn(worker: 0)])
            pid += 10
            s.started(worker: 0, pid: pid, nowMillis: now)
        }
        XCTAssertEqual(delays, [100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000])
        XCTAssertEqual(s.restarts, 9)
        XCTAssertEqual(s.nextRestartDelay(of: 1), 100, "the other worker's backoff is its own")
    }

    func testAWorkerThatRanLongEnoughRestartsAfterTheInitialDelayAgain() {
        var s = started(1)
        for (i, now) in [Int64(10), 20, 30].enumerated() {
            _ = s.exited(pid: Int32(100 + i), status: exitedWith(1), nowMillis: now)
            _ = s.restartDue(worker: 0)
            s.started(worker: 0, pid: Int32(101 + i), nowMillis: now)
        }
        XCTAssertEqual(s.nextRestartDelay(of: 0), 800)
        let stable = SupervisorSettings().stableAfterMillis
        let actions = s.exited(pid: 103, status: exitedWith(1), nowMillis: 30 + stable)
        XCTAssertEqual(actions.last, .scheduleRestart(worker: 0, afterMillis: 100))
    }

    func testAStartFailureStopsEveryWorkerAndTheSupervisorExitsWith1() {
        var s = started(3)
        let actions = s.exited(pid: 101, status: exitedWith(WorkerSupervision.startFailureStatus), nowMillis: 5)
        XCTAssertEqual(actions, [
            .reportStartFailure(worker: 1),
            .send(signal: SIGTERM, pid: 100), .send(signal: SIGTERM, pid: 102),
            .armKillTimer(afterMillis: SupervisorSettings().stopGraceMillis),
        ])
        XCTAssertTrue(s.isStopping)
        XCTAssertEqual(s.exited(pid: 100, status: exitedWith(0), nowMillis: 6), [])
        XCTAssertEqual(s.exited(pid: 102, status: exitedWith(0), nowMillis: 7), [.finish(status: 1)])
        XCTAssertEqual(s.restarts, 0)
    }

    func testTheOnlyWorkerFailingToStartFinishesAtOnce() {
        var s = started(1)
        XCTAssertEqual(s.exited(pid: 100, status: exitedWith(78), nowMillis: 1),
                       [.reportStartFailure(worker: 0), .finish(status: 1)])
    }

    func testOtherExitCodesAreRestartedNotGivenUpOn() {
        for status in [exitedWith(0), exitedWith(1), exitedWith(77), exitedWith(79), killedBy(SIGKILL)] {
            var s = started(1)
            let actions = s.exited(pid: 100, status: status, nowMillis: 1)
            XCTAssertEqual(actions.last, .scheduleRestart(worker: 0, afterMillis: 100), "status \(status)")
            XCTAssertFalse(s.isStopping)
        }
    }

    func testSigtermStopsGracefullyThenKillsTheStragglersAndExitsWith0() {
        var s = started(3)
        XCTAssertEqual(s.received(signal: SIGTERM), [
            .send(signal: SIGTERM, pid: 100), .send(signal: SIGTERM, pid: 101), .send(signal: SIGTERM, pid: 102),
            .armKillTimer(afterMillis: 8_000),
        ])
        XCTAssertEqual(s.received(signal: SIGINT), [], "a second signal changes nothing")
        XCTAssertEqual(s.exited(pid: 100, status: exitedWith(0), nowMillis: 10), [], "no restart while stopping")
        XCTAssertEqual(s.killTimerFired(), [.send(signal: SIGKILL, pid: 101), .send(signal: SIGKILL, pid: 102)])
        XCTAssertEqual(s.exited(pid: 101, status: killedBy(SIGKILL), nowMillis: 8_010), [])
        XCTAssertEqual(s.exited(pid: 102, status: killedBy(SIGKILL), nowMillis: 8_010), [.finish(status: 0)])
        XCTAssertEqual(s.exitStatus, 0)
    }

    func testAStopCancelsPendingRestartsAndATimerThatFiresAnywayStartsNothing() {
        var s = started(2)
        _ = s.exited(pid: 100, status: killedBy(SIGSEGV), nowMillis: 1)
        XCTAssertEqual(s.received(signal: SIGINT), [
            .cancelRestart(worker: 0), .send(signal: SIGTERM, pid: 101), .armKillTimer(afterMillis: 8_000),
        ])
        XCTAssertEqual(s.restartDue(worker: 0), [])
        XCTAssertEqual(s.exited(pid: 101, status: exitedWith(0), nowMillis: 2), [.finish(status: 0)])
    }

    func testAStopWithNoWorkerAliveFinishesAtOnce() {
        var s = started(1)
        _ = s.exited(pid: 100, status: killedBy(SIGSEGV), nowMillis: 1)
        XCTAssertEqual(s.received(signal: SIGTERM), [.cancelRestart(worker: 0), .finish(status: 0)])
    }

    func testSighupGoesToLiveWorkersAndUsr1Usr2AreIgnored() {
        var s = started(3)
        _ = s.exited(pid: 101, status: killedBy(SIGSEGV), nowMillis: 1)
        XCTAssertEqual(s.received(signal: SIGHUP), [.send(signal: SIGHUP, pid: 100), .send(signal: SIGHUP, pid: 102)])
        XCTAssertEqual(s.received(signal: SIGUSR1), [])
        XCTAssertEqual(s.received(signal: SIGUSR2), [])
        XCTAssertFalse(s.isStopping)
        XCTAssertEqual(WorkerSupervision.decision(for: SIGTERM), .stop)
        XCTAssertEqual(WorkerSupervision.decision(for: SIGINT), .stop)
        XCTAssertEqual(WorkerSupervision.decision(for: SIGHUP), .forwardToWorkers)
        XCTAssertEqual(WorkerSupervision.decision(for: SIGUSR1), .ignore)
    }

    func testAFailedSpawnIsRetriedWithBackoffAndAnUnknownChildIsIgnored() {
        var s = WorkerSupervision(count: 1, settings: SupervisorSettings())
        _ = s.start()
        XCTAssertEqual(s.spawnFailed(worker: 0), [.scheduleRestart(worker: 0, afterMillis: 100)])
        XCTAssertEqual(s.restartDue(worker: 0), [.spawn(worker: 0)])
        XCTAssertEqual(s.spawnFailed(worker: 0), [.scheduleRestart(worker: 0, afterMillis: 200)])
        XCTAssertEqual(s.exited(pid: 4242, status: exitedWith(78), nowMillis: 1), [], "not one of ours")
        XCTAssertFalse(s.isStopping)
    }

    func testExitCodesAreReadFromWaitStatuses() {
        XCTAssertEqual(WorkerSupervision.exitCode(exitedWith(78)), 78)
        XCTAssertEqual(WorkerSupervision.exitCode(exitedWith(0)), 0)
        XCTAssertNil(WorkerSupervision.exitCode(killedBy(SIGKILL)))
        XCTAssertEqual(WorkerSupervisor.describe(killedBy(SIGKILL)), "killed by signal 9")
        XCTAssertEqual(WorkerSupervisor.describe(exitedWith(3)), "exit code 3")
    }
}

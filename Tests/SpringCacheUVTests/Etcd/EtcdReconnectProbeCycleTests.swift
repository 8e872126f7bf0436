import XCTest

@testable import SpringCacheUV

/// `EtcdReconnectProbe`'s state alone, then the probe (and a registrar that waits on it) against `FakeEtcd` on
/// simulated time: probing starts on a failure, reports etcd's first answer once, and stops.
final class EtcdReconnectProbeCycleTests: XCTestCase {
    private var scheduler: ManualScheduler!
    private var etcd: FakeEtcd!
    private var probe: EtcdReconnectProbe?
    private var answers = 0

    override func setUp() {
        scheduler = ManualScheduler(nowMillis: 0)
        etcd = FakeEtcd(scheduler: scheduler)
    }

    override func tearDown() {
        probe?.close()
        probe = nil
        etcd.close()
        XCTAssertEqual(scheduler.armedTimers, 0, "a timer was left armed")
    }

    private func makeProbe(intervalMillis: UInt64 = 250) -> EtcdReconnectProbe {
        var settings = EtcdReconnectProbeSettings()
        settings.intervalMillis = intervalMillis
        let probe = EtcdReconnectProbe(client: etcd, scheduler: scheduler, settings: settings)
        probe.onAnswer = { [unowned self] in self.answers += 1 }
        self.probe = probe
        return probe
    }

    func testStateProbesOneAtATimeAndReportsTheFirstAnswerOnce() {
        var state = EtcdReconnectProbeState(settings: EtcdReconnectProbeSettings())
        XCTAssertEqual(state.handle(.start), [.armTimer(afterMillis: 250)])
        XCTAssertEqual(state.handle(.start), [], "already probing")
        XCTAssertEqual(state.handle(.timerFired), [.probe(timeoutMillis: 250)])
        XCTAssertEqual(state.handle(.timerFired), [], "one probe in flight at most")
        XCTAssertEqual(state.handle(.answered(etcdAnswered: false)), [.armTimer(afterMillis: 250)])
        XCTAssertEqual(state.handle(.timerFired), [.probe(timeoutMillis: 250)])
        XCTAssertEqual(state.handle(.answered(etcdAnswered: true)), [.reportAnswer])
        XCTAssertFalse(state.isProbing)
        XCTAssertEqual(state.handle(.timerFired), [])
        XCTAssertEqual(state.stats, EtcdReconnectProbeStats(probes: 2, recoveries: 1))
        XCTAssertEqual(state.handle(.start), [.armTimer(afterMillis: 250)], "a later failure probes again")
        XCTAssertEqual(state.handle(.timerFired), [.probe(timeoutMillis: 250)])
        XCTAssertEqual(state.handle(.stop), [.disarmTimer, .cancelProbe])
        XCTAssertEqual(state.handle(.answered(etcdAnswered: true)), [], "stopped: nothing reported")
        XCTAssertEqual(state.handle(.close), [.closeTimer])
        XCTAssertEqual(state.handle(.start), [], "closed for good")
        XCTAssertEqual(state.handle(.close), [])
    }

    func testProbesWhileEtcdIsDownAndReportsOnceWhenItIsBack() {
        let probe = makeProbe()
        etcd.mode = .down
        probe.start()
        XCTAssertTrue(probe.isProbing)
        XCTAssertEqual(etcd.calls.count, 0, "the first probe waits one interval")
        scheduler.advance(byMillis: 1_000)
        XCTAssertEqual(etcd.times("get"), [250, 500, 750, 1_000])
        XCTAssertEqual(answers, 0)
        XCTAssertTrue(probe.isProbing)

        etcd.comeBack(empty: false)
        scheduler.advance(byMillis: 250)
        XCTAssertEqual(answers, 1, "the first answer after etcd's return is reported")
        XCTAssertFalse(probe.isProbing, "one answer ends the probing")
        XCTAssertEqual(probe.stats, EtcdReconnectProbeStats(probes: 5, recoveries: 1))
        scheduler.advance(byMillis: 5_000)
        XCTAssertEqual(probe.stats.probes, 5, "no probe while nothing fails")
        XCTAssertEqual(answers, 1)
    }

    /// A hung etcd: each probe gives up after one interval, so probes stay one interval apart, one at a time.
    func testAHungEtcdIsProbedOneIntervalApart() {
        let probe = makeProbe()
        etcd.mode = .hung
        probe.start()
        scheduler.advance(byMillis: 2_000)
        XCTAssertEqual(etcd.times("get"), [250, 750, 1_250, 1_750], "timeout 250 + wait 250")
        XCTAssertEqual(etcd.mostInFlight, 1)
        XCTAssertEqual(answers, 0)
    }

    func testStopEndsProbingWithoutACallback() {
        let probe = makeProbe()
        probe.start()
        probe.stop()
        scheduler.advance(byMillis: 1_000)
        XCTAssertEqual(probe.stats.probes, 0)
        XCTAssertEqual(answers, 0)
        etcd.mode = .hung
        probe.start()
        scheduler.advance(byMillis: 250)
        XCTAssertEqual(etcd.inFlightCount, 1, "a probe in flight")
        etcd.mode = .up
        probe.close()
        XCTAssertEqual(etcd.inFlightCount, 0, "cancelled")
        scheduler.advance(byMillis: 1_000)
        XCTAssertEqual(answers, 0, "closed: no callback")
    }

    /// The registrar waits out a one-minute backoff after etcd died; the probe's answer makes it register at once.
    func testTheProbeEndsTheRegistrarsBackoffWhenEtcdIsBack() {
        var settings = EtcdRegistrarSettings()
        settings.initialBackoffMillis = 60_000
        settings.maxBackoffMillis = 60_000
        let entries = EtcdRegistrar.entries(name: "n1", peer: HostPort(host: "127.0.0.1", port: 8001), api: nil)
        let registrar = EtcdRegistrar(entries: entries, client: etcd, scheduler: scheduler, settings: settings)
        let probe = makeProbe()
        registrar.onFailure = { probe.start() }
        probe.onAnswer = { registrar.checkNow() }

        etcd.mode = .down
        registrar.start()
        scheduler.advance(byMillis: 1_000)
        XCTAssertEqual(registrar.stats.failures, 1)
        XCTAssertTrue(probe.isProbing)
        etcd.comeBack(empty: false)
        scheduler.advance(byMillis: 250)
        XCTAssertTrue(registrar.isRegistered, "registered long before the 60 s backoff ends")
        XCTAssertEqual(scheduler.nowMillis, 1_250)
        XCTAssertEqual(registrar.stats.failures, 1)
        XCTAssertEqual(etcd.value("n1"), "127.0.0.1:8001")
        var stopped = false
        registrar.stop { stopped = true }
        scheduler.runDue()
        XCTAssertTrue(stopped)
    }
}

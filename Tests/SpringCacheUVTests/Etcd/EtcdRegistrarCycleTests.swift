import XCTest

@testable import SpringCacheUV

/// `EtcdRegistrar` (the driver and its state) against `FakeEtcd` on simulated time: cadence, lease loss,
/// outages, backoff and stop, counted exactly, without a real etcd and without waiting on a clock.
final class EtcdRegistrarCycleTests: XCTestCase {
    private var scheduler: ManualScheduler!
    private var etcd: FakeEtcd!
    private var registrar: EtcdRegistrar?
    private var registrations = 0
    private var failures = 0

    static let entries = EtcdRegistrar.entries(name: "n1", peer: HostPort(host: "127.0.0.1", port: 8001),
                                               api: "127.0.0.1:9001")

    override func setUp() {
        scheduler = ManualScheduler(nowMillis: 0)
        etcd = FakeEtcd(scheduler: scheduler)
    }

    override func tearDown() {
        if let registrar {
            var stopped = false
            registrar.stop { stopped = true }
            scheduler.advance(byMillis: 5_000)
            XCTAssertTrue(stopped, "stop completed")
        }
        registrar = nil
        etcd.close()
        XCTAssertEqual(scheduler.armedTimers, 0, "a timer was left armed")
        etcd = nil
        scheduler = nil
    }

    private func makeRegistrar(ttl: Int) -> EtcdRegistrar {
        var settings = EtcdRegistrarSettings()
        settings.leaseTTLSeconds = ttl
        let registrar = EtcdRegistrar(entries: Self.entries, client: etcd, scheduler: scheduler, settings: settings)
        registrar.onRegistered = { [unowned self] in self.registrations += 1 }
        registrar.onFailure = { [unowned self] in self.failures += 1 }
        self.registrar = registrar
        return registrar
    }

    /// A registrar registered at once (etcd answers without delay).
    private func startRegistered(ttl: Int, file: StaticString = #filePath, line: UInt = #line) -> EtcdRegistrar {
        let registrar = makeRegistrar(ttl: ttl)
        registrar.start()
        scheduler.runDue()
        XCTAssertTrue(registrar.isRegistered, file: file, line: line)
        return registrar
    }

    /// The three keys, as springcache and `EtcdDiscovery` read them, all on `lease`.
    private func assertRegistered(on lease: Int64?, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(etcd.value("springcache/members/n1"),
                       #"{"name":"n1","peer":"127.0.0.1:8001","api":"127.0.0.1:9001"}"#, file: file, line: line)
        XCTAssertEqual(etcd.value("n1"), "127.0.0.1:8001", file: file, line: line)
        XCTAssertEqual(etcd.value("n1/127.0.0.1:8001"), #"{"Op":0,"Addr":"127.0.0.1:8001","Metadata":null}"#,
                       file: file, line: line)
        let leases = Set(["springcache/members/n1", "n1", "n1/127.0.0.1:8001"].map { etcd.lease(of: $0) })
        XCTAssertEqual(leases, [lease], "every key on the one lease", file: file, line: line)
    }

    /// Keepalives every TTL/3 = 666 ms: exactly 10 in 7 s (3.5 TTLs), the lease never lost, one call at a time.
    func testKeepaliveCadenceIsAThirdOfTheTTL() throws {
        let registrar = makeRegistrar(ttl: 2)
        registrar.start()
        XCTAssertEqual(etcd.calls.map(\.what), ["grant"], "the first call leaves at once")
        scheduler.runDue()
        XCTAssertTrue(registrar.isRegistered)
        XCTAssertEqual(registrations, 1)
        let lease = try XCTUnwrap(registrar.leaseID)
        assertRegistered(on: lease)

        scheduler.advance(byMillis: 7_000)
        XCTAssertEqual(etcd.times("keepalive"), (1...10).map { Int64($0) * 666 })
        XCTAssertEqual(registrar.stats, EtcdRegistrarStats(grants: 1, keepalives: 10))
        XCTAssertEqual(registrar.leaseID, lease)
        assertRegistered(on: lease)
        XCTAssertEqual(etcd.mostInFlight, 1)
        XCTAssertEqual(registrations, 1, "keepalives are not registrations")
    }

    /// A slow etcd (100 ms a call): the next keepalive is scheduled from the previous answer, never piled up.
    func testASlowEtcdNeverHasTwoKeepalivesInFlight() {
        etcd.latencyMillis = 100
        let registrar = makeRegistrar(ttl: 2)
        registrar.start()
        scheduler.advance(byMillis: 400)  // grant + 3 puts
        XCTAssertTrue(registrar.isRegistered)
        scheduler.advance(byMillis: 10 * 766)
        let keepalives = etcd.times("keepalive")
        XCTAssertEqual(keepalives.first, 400 + 666)
        XCTAssertEqual(keepalives.count, 10)
        XCTAssertEqual(Set(zip(keepalives.dropFirst(), keepalives).map { $0 - $1 }), [766], "666 ms after each answer")
        XCTAssertEqual(etcd.mostInFlight, 1)
        XCTAssertTrue(registrar.isRegistered)
    }

    /// The lease revoked by hand: the next keepalive finds it gone, a new lease is granted and every key put again.
    func testALostLeaseIsReplacedAndEveryKeyPutAgain() throws {
        let registrar = startRegistered(ttl: 3)
        let lease = try XCTUnwrap(registrar.leaseID)
        etcd.revokeByHand(lease)
        XCTAssertNil(etcd.value("n1"), "revoke deleted the keys")
        scheduler.advance(byMillis: 1_000)  // the keepalive at TTL/3
        XCTAssertTrue(registrar.isRegistered)
        let newLease = try XCTUnwrap(registrar.leaseID)
        XCTAssertNotEqual(newLease, lease)
        assertRegistered(on: newLease)
        XCTAssertEqual(registrar.stats, EtcdRegistrarStats(grants: 2, keepalives: 0, failures: 0, reRegistrations: 1,
                                                           leasesLost: 1))
        XCTAssertEqual(etcd.calls.suffix(5).map(\.what),
                       ["keepalive", "grant", "put springcache/members/n1", "put n1", "put n1/127.0.0.1:8001"])
        XCTAssertEqual(etcd.calls.last?.atMillis, 1_000, "re-registered within the keepalive's turn")
        XCTAssertEqual(registrations, 2)
    }

    /// etcd dies and comes back empty: keepalives retry after 200, 400, 800, 1600, 2000, 2000 ms; once etcd
    /// answers, the node is registered again on a new lease within the 2 s cap.
    func testAnOutageIsRetriedWithCappedBackoffAndAnEmptyEtcdGetsEveryKeyAgain() throws {
        let registrar = startRegistered(ttl: 10)
        let lease = try XCTUnwrap(registrar.leaseID)
        etcd.mode = .down
        scheduler.advance(byMillis: 3_333 + 200 + 400 + 800 + 1_600 + 2_000 + 2_000 + 10)
        let tries = etcd.times("keepalive")
        XCTAssertEqual(zip(tries.dropFirst(), tries).map { $0 - $1 }, [200, 400, 800, 1_600, 2_000, 2_000])
        XCTAssertFalse(registrar.isRegistered)
        XCTAssertEqual(registrar.stats.failures, 7)
        XCTAssertEqual(failures, 7, "onFailure after each failed call")

        etcd.comeBack(empty: true)
        let back = scheduler.nowMillis
        scheduler.advance(byMillis: 2_000)
        XCTAssertTrue(registrar.isRegistered)
        let reRegistered = try XCTUnwrap(etcd.times("put n1/").last)
        XCTAssertLessThanOrEqual(reRegistered - back, 2_000, "within the backoff's cap of etcd answering")
        XCTAssertNotEqual(registrar.leaseID, lease)
        assertRegistered(on: registrar.leaseID)
        XCTAssertEqual(registrar.stats.reRegistrations, 1)
        XCTAssertEqual(registrar.stats.leasesLost, 1, "the first keepalive after the outage found the lease gone")

        // The next failure starts from 200 ms again.
        etcd.failNext["keepalive"] = .unreachable(endpoint: etcd.currentEndpoint, message: "reset")
        let failedAt = reRegistered + 3_333
        scheduler.advance(byMillis: 4_000)
        XCTAssertTrue(etcd.times("keepalive").contains(failedAt + 200), "\(etcd.times("keepalive"))")
    }

    /// The same data (the lease survived): the retry's keepalive finds it alive; nothing is put again.
    func testAnOutageWithTheLeaseSurvivingKeepsTheLease() throws {
        let registrar = startRegistered(ttl: 10)
        let lease = try XCTUnwrap(registrar.leaseID)
        etcd.mode = .down
        scheduler.advance(byMillis: 4_000)
        XCTAssertFalse(registrar.isRegistered)
        let puts = etcd.count("put")
        etcd.comeBack(empty: false)
        scheduler.advance(byMillis: 2_000)
        XCTAssertTrue(registrar.isRegistered)
        XCTAssertEqual(registrar.leaseID, lease)
        XCTAssertEqual(etcd.count("put"), puts)
        XCTAssertEqual(registrar.stats.reRegistrations, 0)
        XCTAssertEqual(registrations, 2, "registered again (same lease) is reported")
    }

    func testRetriesUntilEtcdAnswersAtStart() {
        etcd.mode = .down
        let registrar = makeRegistrar(ttl: 5)
        registrar.start()
        scheduler.advance(byMillis: 1_500)
        XCTAssertEqual(etcd.times("grant"), [0, 200, 600, 1_400], "200, 400, 800 ms apart: backoff, not a busy loop")
        XCTAssertFalse(registrar.isRegistered)
        etcd.comeBack(empty: false)
        scheduler.advance(byMillis: 1_600)
        XCTAssertTrue(registrar.isRegistered)
        XCTAssertEqual(etcd.times("grant").last, 3_000)
        XCTAssertEqual(registrar.stats.reRegistrations, 0, "the first registration")
        assertRegistered(on: registrar.leaseID)
    }

    /// etcd restarted empty between two keepalives: `checkNow` finds the lease gone at once.
    func testCheckNowRegistersAgainAtOnceAfterAQuickEmptyRestart() {
        let registrar = startRegistered(ttl: 10)
        etcd.comeBack(empty: true)
        XCTAssertTrue(registrar.isRegistered, "nothing noticed yet")
        registrar.checkNow()
        scheduler.runDue()
        XCTAssertTrue(registrar.isRegistered)
        XCTAssertEqual(registrar.stats.reRegistrations, 1)
        XCTAssertEqual(registrar.stats.failures, 0)
        assertRegistered(on: registrar.leaseID)
        XCTAssertEqual(scheduler.nowMillis, 0, "no time passed")
    }

    func testStopRevokesTheLeaseSoTheKeysVanishAtOnce() throws {
        let registrar = startRegistered(ttl: 30)
        var stopped = 0
        registrar.stop { stopped += 1 }
        XCTAssertEqual(stopped, 0, "stop completes from a later callback")
        // The owner lets go at once: the registrar keeps itself alive until the revoke has answered.
        self.registrar = nil
        scheduler.runDue()
        XCTAssertEqual(stopped, 1)
        XCTAssertEqual(etcd.calls.last?.what, "revoke")
        XCTAssertNil(etcd.value("n1"), "keys gone at once, not after 30 s")
        XCTAssertTrue(etcd.leases.isEmpty)
        registrar.stop { stopped += 1 }
        XCTAssertEqual(stopped, 2, "stopping again completes at once")
        XCTAssertFalse(registrar.isRegistered)
        XCTAssertNil(registrar.leaseID)
    }

    func testStopWhileACallIsInFlightCancelsIt() {
        etcd.latencyMillis = 50
        let registrar = makeRegistrar(ttl: 10)
        registrar.start()
        scheduler.advance(byMillis: 60)  // granted; the first put in flight
        var stopped = false
        registrar.stop { stopped = true }
        scheduler.advance(byMillis: 50)
        XCTAssertTrue(stopped)
        XCTAssertEqual(etcd.calls.map(\.what), ["grant", "put springcache/members/n1", "revoke"])
        XCTAssertEqual(etcd.inFlightCount, 0)
        XCTAssertTrue(etcd.kvs.isEmpty)
        self.registrar = nil
    }

    /// A hung etcd: stop gives up after `revokeTimeoutMillis` (1 s) of loop time.
    func testStopWithEtcdHungIsBoundedByTheRevokeTimeout() {
        let registrar = startRegistered(ttl: 10)
        etcd.mode = .hung
        var stoppedAt: Int64?
        registrar.stop { stoppedAt = self.scheduler.nowMillis }
        scheduler.advance(byMillis: 5_000)
        XCTAssertEqual(stoppedAt, 1_000)
        self.registrar = nil
    }
}

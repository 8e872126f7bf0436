import Foundation
import XCTest

@testable import SpringCacheUV

/// EtcdRegistrar against a real etcd: registration on one lease, keepalive, recovery, graceful stop. These prove
/// the driver performs the state's actions with the real client; they assert outcomes with generous deadlines.
/// The timings (cadence, backoff sequence, the 2 s cap, the revoke's 1 s limit) are counted exactly on simulated
/// time in the unit tests (`EtcdRegistrarCycleTests`, `EtcdRegistrarStateTests`).
final class EtcdRegistrarTests: XCTestCase {
    private var etcd: EtcdTestServer!
    private var loop: EtcdTestLoop!
    private var client: EtcdClient!
    private var registrar: EtcdRegistrar?

    static let entries = EtcdRegistrar.entries(name: "n1", peer: HostPort(host: "127.0.0.1", port: 8001),
                                               api: "127.0.0.1:9001")

    override func setUpWithError() throws {
        etcd = try EtcdTestServer()
        loop = try EtcdTestLoop()
        client = try EtcdClient(endpoints: [etcd.endpoint], loop: loop.loop, curl: loop.curl)
    }

    override func tearDown() {
        if let registrar, let loop {
            var stopped = false
            registrar.stop { stopped = true }
            loop.run(upTo: 3) { stopped }
        }
        registrar = nil
        client?.close()
        client = nil
        loop = nil
        etcd?.shutdown()
        etcd = nil
    }

    private func makeRegistrar(ttl: Int) -> EtcdRegistrar {
        var settings = EtcdRegistrarSettings()
        settings.leaseTTLSeconds = ttl
        let registrar = EtcdRegistrar(entries: Self.entries, client: client, loop: loop.loop, settings: settings)
        self.registrar = registrar
        return registrar
    }

    private func stopAndFinish() {
        if let registrar {
            var stopped = false
            registrar.stop { stopped = true }
            XCTAssertTrue(loop.run(upTo: 3) { stopped })
        }
        registrar = nil
        XCTAssertEqual(loop.closeAll(client), 0, "uv_loop_close: a handle was left open")
        client = nil
    }

    /// The three keys, exactly as springcache and EtcdDiscovery read them.
    private func assertRegistered(file: StaticString = #filePath, line: UInt = #line) {
        let keys = etcd.allKeys()
        XCTAssertEqual(keys, [
            "springcache/members/n1": #"{"name":"n1","peer":"127.0.0.1:8001","api":"127.0.0.1:9001"}"#,
            "n1": "127.0.0.1:8001",
            "n1/127.0.0.1:8001": #"{"Op":0,"Addr":"127.0.0.1:8001","Metadata":null}"#,
        ], file: file, line: line)
    }

    /// The lease of every key (via a range of everything).
    private func leasesOfAllKeys() -> Set<Int64> {
        var result: Result<EtcdRangeResult, EtcdError>?
        client.range(prefix: []) { result = $0 }
        loop.run(upTo: 5) { result != nil }
        return Set((try? result?.get())?.kvs.map(\.lease) ?? [])
    }

    func testRegistersTheKeysOnOneLeaseAndKeepsItAlivePastSeveralTTLs() throws {
        let registrar = makeRegistrar(ttl: 2)
        XCTAssertFalse(registrar.isRegistered)
        registrar.start()
        XCTAssertTrue(loop.run(upTo: 5) { registrar.isRegistered })
        assertRegistered()
        let lease = try XCTUnwrap(registrar.leaseID)
        XCTAssertEqual(leasesOfAllKeys(), [lease], "all three keys on the one lease")

        loop.run(for: 7)  // 3.5 TTLs: only keepalives can have kept the 2 s lease
        assertRegistered()
        XCTAssertEqual(registrar.leaseID, lease)
        XCTAssertEqual(leasesOfAllKeys(), [lease])
        XCTAssertEqual(registrar.stats.grants, 1)
        XCTAssertGreaterThan(registrar.stats.keepalives, 0)
        XCTAssertEqual(registrar.stats.failures, 0)
        XCTAssertEqual(registrar.stats.reRegistrations, 0)
        stopAndFinish()
    }

    func testRegistersAgainAfterItsLeaseIsRevokedExternally() throws {
        let registrar = makeRegistrar(ttl: 3)
        registrar.start()
        XCTAssertTrue(loop.run(upTo: 5) { registrar.isRegistered })
        let lease = try XCTUnwrap(registrar.leaseID)
        let out = etcd.etcdctl(["lease", "revoke", String(lease, radix: 16)])
        XCTAssertTrue(out.contains("revoked"), out)
        XCTAssertEqual(etcd.allKeys(), [:], "revoke deleted the keys")
        XCTAssertTrue(loop.run(upTo: 10) { registrar.stats.reRegistrations == 1 && registrar.isRegistered },
                      "re-registered after the next keepalive")
        XCTAssertNotEqual(registrar.leaseID, lease)
        XCTAssertEqual(registrar.stats.leasesLost, 1)
        XCTAssertEqual(registrar.stats.grants, 2)
        assertRegistered()
        XCTAssertEqual(leasesOfAllKeys(), [try XCTUnwrap(registrar.leaseID)])
        stopAndFinish()
    }

    /// etcd dies and comes back EMPTY (its data directory lost): the registrar alone (no reconnect probe) is
    /// registered again on a new lease. (Within the backoff's 2 s cap: `EtcdRegistrarCycleTests`.)
    func testRegistersAgainAfterEtcdRestartsEmpty() throws {
        let registrar = makeRegistrar(ttl: 10)
        registrar.start()
        XCTAssertTrue(loop.run(upTo: 5) { registrar.isRegistered })
        let lease = registrar.leaseID

        etcd.stop()
        // Longer than TTL/3, so a keepalive meets the dead etcd and the retries begin.
        XCTAssertTrue(loop.run(upTo: 15) { registrar.stats.failures >= 2 })
        XCTAssertFalse(registrar.isRegistered)
        loop.run(for: 2.5)  // let the backoff reach its cap
        try etcd.start(fresh: true)
        XCTAssertEqual(etcd.allKeys(), [:])
        let answering = Date()  // wall time: the loop's cached time stood still while the test blocked
        XCTAssertTrue(loop.run(upTo: 20) { registrar.isRegistered })
        let took = Int(Date().timeIntervalSince(answering) * 1000)
        // A measured figure, not a bound: the bound is the unit tests' (simulated time).
        print("TIMING re-registered \(took) ms after an empty etcd answered (registrar alone, no probe)")
        XCTAssertNotEqual(registrar.leaseID, lease)
        XCTAssertEqual(registrar.stats.reRegistrations, 1)
        assertRegistered()
        stopAndFinish()
    }

    /// etcd restarts empty between two keepalives (60 s TTL: 20 s apart); `checkNow` finds the lease gone, long
    /// before the next keepalive would.
    func testCheckNowRegistersAgainAtOnceAfterAQuickEmptyRestart() throws {
        let registrar = makeRegistrar(ttl: 60)
        registrar.start()
        XCTAssertTrue(loop.run(upTo: 5) { registrar.isRegistered })
        etcd.stop()
        try etcd.start(fresh: true)
        XCTAssertTrue(registrar.isRegistered, "nothing noticed yet")
        registrar.checkNow()
        XCTAssertTrue(loop.run(upTo: 10) { registrar.stats.reRegistrations == 1 && registrar.isRegistered })
        XCTAssertEqual(registrar.stats.keepalives, 0, "no scheduled keepalive came first")
        XCTAssertEqual(registrar.stats.failures, 0)
        assertRegistered()
        stopAndFinish()
    }

    func testRetriesUntilEtcdAnswersAtStart() throws {
        etcd.stop()
        let registrar = makeRegistrar(ttl: 5)
        registrar.start()
        XCTAssertTrue(loop.run(upTo: 10) { registrar.stats.failures >= 2 }, "retried (backoff: the unit tests)")
        XCTAssertFalse(registrar.isRegistered)
        try etcd.start()
        XCTAssertTrue(loop.run(upTo: 15) { registrar.isRegistered })
        XCTAssertEqual(registrar.stats.reRegistrations, 0, "the first registration")
        assertRegistered()
        stopAndFinish()
    }

    func testStopRevokesTheLeaseSoTheKeysVanishAtOnce() throws {
        let registrar = makeRegistrar(ttl: 30)
        registrar.start()
        XCTAssertTrue(loop.run(upTo: 5) { registrar.isRegistered })
        assertRegistered()
        var stopped = false
        registrar.stop { stopped = true }
        XCTAssertFalse(stopped, "stop completes from a later callback")
        XCTAssertTrue(loop.run(upTo: 2) { stopped })
        XCTAssertFalse(registrar.isRegistered)
        XCTAssertNil(registrar.leaseID)
        XCTAssertEqual(etcd.allKeys(), [:], "keys gone at once, not after 30 s")
        // Stopping again completes at once; nothing else runs.
        var again = false
        registrar.stop { again = true }
        XCTAssertTrue(again)
        self.registrar = nil
        stopAndFinish()
    }

    /// A hung etcd does not hang a graceful stop. (Bounded by `revokeTimeoutMillis`: `EtcdRegistrarCycleTests`.)
    func testStopWithEtcdDownIsBoundedByTheRevokeTimeout() throws {
        let registrar = makeRegistrar(ttl: 10)
        registrar.start()
        XCTAssertTrue(loop.run(upTo: 5) { registrar.isRegistered })
        etcd.pause()
        defer { etcd.resume() }
        var stopped = false
        registrar.stop { stopped = true }
        XCTAssertTrue(loop.run(upTo: 10) { stopped }, "stop completed although etcd never answered")
        self.registrar = nil
        stopAndFinish()
    }
}

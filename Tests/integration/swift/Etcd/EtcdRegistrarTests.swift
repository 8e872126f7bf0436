import Foundation
import XCTest

@testable import SpringCacheUV

/// EtcdRegistrar against a real etcd: registration on one lease, keepalive, recovery, graceful stop.
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

        loop.run(for: 7)  // 3.5 TTLs
        assertRegistered()
        XCTAssertEqual(registrar.leaseID, lease)
        XCTAssertEqual(leasesOfAllKeys(), [lease])
        XCTAssertEqual(registrar.stats.grants, 1)
        // Every TTL/3 = 667 ms: about 10 in 7 s. The lower bound is loose because each keepalive is scheduled after
        // the previous answer, which a busy machine delays; the upper bound catches a registrar that hammers etcd.
        XCTAssertGreaterThanOrEqual(registrar.stats.keepalives, 5, "every TTL/3 = 667 ms")
        XCTAssertLessThanOrEqual(registrar.stats.keepalives, 12)
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
        XCTAssertTrue(loop.run(upTo: 3) { registrar.stats.reRegistrations == 1 && registrar.isRegistered },
                      "re-registered within TTL/3 plus a few calls")
        XCTAssertNotEqual(registrar.leaseID, lease)
        XCTAssertEqual(registrar.stats.leasesLost, 1)
        XCTAssertEqual(registrar.stats.grants, 2)
        assertRegistered()
        XCTAssertEqual(leasesOfAllKeys(), [try XCTUnwrap(registrar.leaseID)])
        stopAndFinish()
    }

    /// etcd dies and comes back EMPTY (its data directory lost): the registrar alone (no reconnect probe) is
    /// registered again within about 2 s of etcd answering (the backoff's cap), on a new lease.
    func testRegistersAgainWithinTwoSecondsAfterEtcdRestartsEmpty() throws {
        let registrar = makeRegistrar(ttl: 10)
        registrar.start()
        XCTAssertTrue(loop.run(upTo: 5) { registrar.isRegistered })
        let lease = registrar.leaseID

        etcd.stop()
        // Longer than TTL/3, so a keepalive meets the dead etcd and the retries begin.
        XCTAssertTrue(loop.run(upTo: 6) { registrar.stats.failures >= 2 })
        XCTAssertFalse(registrar.isRegistered)
        loop.run(for: 2.5)  // let the backoff reach its cap
        try etcd.start(fresh: true)
        XCTAssertEqual(etcd.allKeys(), [:])
        let answering = Date()  // wall time: the loop's cached time stood still while the test blocked
        XCTAssertTrue(loop.run(upTo: 5) { registrar.isRegistered })
        let took = Int(Date().timeIntervalSince(answering) * 1000)
        // The backoff's cap (2 s) plus a few calls; generous for a busy machine (a measured figure, printed).
        print("TIMING re-registered \(took) ms after an empty etcd answered (registrar alone, no probe)")
        XCTAssertLessThan(took, 4_500, "re-registered \(took) ms after etcd answered")
        XCTAssertNotEqual(registrar.leaseID, lease)
        XCTAssertEqual(registrar.stats.reRegistrations, 1)
        assertRegistered()
        stopAndFinish()
    }

    /// etcd restarts empty between two keepalives (10 s TTL: 3.3 s apart); `checkNow` finds the lease gone at once.
    func testCheckNowRegistersAgainAtOnceAfterAQuickEmptyRestart() throws {
        let registrar = makeRegistrar(ttl: 10)
        registrar.start()
        XCTAssertTrue(loop.run(upTo: 5) { registrar.isRegistered })
        etcd.stop()
        try etcd.start(fresh: true)
        XCTAssertTrue(registrar.isRegistered, "nothing noticed yet")
        let began = Date()  // wall time: the loop's cached time stood still while the test blocked in etcd.start
        registrar.checkNow()
        XCTAssertTrue(loop.run(upTo: 3) { registrar.stats.reRegistrations == 1 && registrar.isRegistered })
        XCTAssertLessThan(Date().timeIntervalSince(began), 1)
        XCTAssertEqual(registrar.stats.failures, 0)
        assertRegistered()
        stopAndFinish()
    }

    func testRetriesUntilEtcdAnswersAtStart() throws {
        etcd.stop()
        let registrar = makeRegistrar(ttl: 5)
        registrar.start()
        loop.run(for: 1.5)
        XCTAssertFalse(registrar.isRegistered)
        XCTAssertGreaterThanOrEqual(registrar.stats.failures, 3, "200, 400, 800 ms...")
        XCTAssertLessThanOrEqual(registrar.stats.failures, 5, "backoff, not a busy loop")
        try etcd.start()
        XCTAssertTrue(loop.run(upTo: 4) { registrar.isRegistered })
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

    func testStopWithEtcdDownIsBoundedByTheRevokeTimeout() throws {
        let registrar = makeRegistrar(ttl: 10)
        registrar.start()
        XCTAssertTrue(loop.run(upTo: 5) { registrar.isRegistered })
        etcd.pause()
        defer { etcd.resume() }
        let began = loop.nowMillis
        var stopped = false
        registrar.stop { stopped = true }
        XCTAssertTrue(loop.run(upTo: 3) { stopped })
        XCTAssertLessThan(loop.nowMillis - began, 1_500, "revoke limited by revokeTimeoutMillis (1 s)")
        self.registrar = nil
        stopAndFinish()
    }
}

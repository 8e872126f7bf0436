import Foundation
import XCTest

@testable import SpringCacheUV

/// EtcdReconnectProbe and the registrar's `checkNow` against a real etcd: after an outage the node follows etcd
/// again as soon as a probe is answered, not when a long backoff runs out. The backoffs here are a minute, so
/// only the probe can explain a recovery inside the (generous) deadlines.
final class EtcdReconnectProbeTests: XCTestCase {
    private var etcd: EtcdTestServer!
    private var loop: EtcdTestLoop!
    private var client: EtcdClient!
    private var probe: EtcdReconnectProbe?
    private var registrar: EtcdRegistrar?

    override func setUpWithError() throws {
        etcd = try EtcdTestServer()
        loop = try EtcdTestLoop()
        client = try EtcdClient(endpoints: [etcd.endpoint], loop: loop.loop, curl: loop.curl)
    }

    override func tearDown() {
        probe?.close()
        probe = nil
        if let registrar, let loop {
            var stopped = false
            registrar.stop { stopped = true }
            loop.run(upTo: 3) { stopped }
        }
        registrar = nil
        if let loop { XCTAssertEqual(loop.closeAll(client), 0, "uv_loop_close: a handle was left open") }
        client = nil
        loop = nil
        etcd?.shutdown()
        etcd = nil
    }

    private func makeProbe(intervalMillis: UInt64 = 100) -> EtcdReconnectProbe {
        var settings = EtcdReconnectProbeSettings()
        settings.intervalMillis = intervalMillis
        let probe = EtcdReconnectProbe(client: client, loop: loop.loop, settings: settings)
        self.probe = probe
        return probe
    }

    func testProbesWhileEtcdIsDownAndAnswersOnceWhenItIsBack() throws {
        let probe = makeProbe()
        var answers = 0
        probe.onAnswer = { answers += 1 }
        etcd.stop()
        probe.start()
        XCTAssertTrue(probe.isProbing)
        XCTAssertTrue(loop.run(upTo: 10) { probe.stats.probes >= 3 }, "probes keep going while etcd is down")
        XCTAssertEqual(answers, 0)
        XCTAssertTrue(probe.isProbing)

        try etcd.start()
        XCTAssertTrue(loop.run(upTo: 10) { answers == 1 }, "the first answer after etcd's return is reported")
        XCTAssertFalse(probe.isProbing, "one answer ends the probing")
        XCTAssertEqual(probe.stats.recoveries, 1)
        let sent = probe.stats.probes
        loop.run(for: 0.5)
        XCTAssertEqual(probe.stats.probes, sent, "no probe while nothing fails")
        XCTAssertEqual(answers, 1)
    }

    func testStopEndsProbingWithoutACallback() throws {
        let probe = makeProbe()
        var answers = 0
        probe.onAnswer = { answers += 1 }
        probe.start()
        probe.stop()
        loop.run(for: 0.5)
        XCTAssertEqual(probe.stats.probes, 0)
        XCTAssertEqual(answers, 0)
    }

    /// The registrar waits out a one-minute backoff after etcd died; the probe's answer makes it register at once.
    func testTheProbeEndsTheRegistrarsBackoffWhenEtcdIsBack() throws {
        var settings = EtcdRegistrarSettings()
        settings.leaseTTLSeconds = 10
        settings.initialBackoffMillis = 60_000
        settings.maxBackoffMillis = 60_000
        let entries = EtcdRegistrar.entries(name: "n1", peer: HostPort(host: "127.0.0.1", port: 8001), api: nil)
        let registrar = EtcdRegistrar(entries: entries, client: client, loop: loop.loop, settings: settings)
        self.registrar = registrar
        let probe = makeProbe()
        registrar.onFailure = { probe.start() }
        probe.onAnswer = { registrar.checkNow() }

        etcd.stop()
        registrar.start()
        XCTAssertTrue(loop.run(upTo: 10) { registrar.stats.failures == 1 && probe.isProbing })
        XCTAssertFalse(registrar.isRegistered)
        try etcd.start()
        XCTAssertTrue(loop.run(upTo: 10) { registrar.isRegistered },
                      "registered long before the 60 s backoff ends")
        XCTAssertEqual(registrar.stats.failures, 1)
        XCTAssertEqual(etcd.allKeys()["n1"], "127.0.0.1:8001")
    }
}

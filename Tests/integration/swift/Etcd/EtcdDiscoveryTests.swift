import Foundation
import XCTest

@testable import SpringCacheUV

/// EtcdDiscovery (with registrars as the members) against a real etcd.
final class EtcdDiscoveryTests: XCTestCase {
    private var etcd: EtcdTestServer!
    private var loop: EtcdTestLoop!
    private var client: EtcdClient!
    private var discovery: EtcdDiscovery?
    private var registrars: [EtcdRegistrar] = []

    /// What discovery reported, in order.
    private var snapshots: [[Member]] = []
    private var puts: [Member] = []
    private var deletes: [String] = []

    override func setUpWithError() throws {
        etcd = try EtcdTestServer()
        loop = try EtcdTestLoop()
        client = try EtcdClient(endpoints: [etcd.endpoint], loop: loop.loop, curl: loop.curl)
    }

    override func tearDown() {
        stopAll()
        client?.close()
        client = nil
        loop = nil
        etcd?.shutdown()
        etcd = nil
    }

    private func stopAll() {
        discovery?.stop()
        discovery = nil
        guard let loop else { return }
        var pending = registrars.count
        for registrar in registrars { registrar.stop { pending -= 1 } }
        loop.run(upTo: 3) { pending == 0 }
        registrars = []
    }

    private func finish() {
        stopAll()
        XCTAssertEqual(loop.closeAll(client), 0, "uv_loop_close: a handle was left open")
        client = nil
    }

    private func startDiscovery() -> EtcdDiscovery {
        let discovery = EtcdDiscovery(client: client, loop: loop.loop)
        discovery.onSnapshot = { [unowned self] in self.snapshots.append($0) }
        discovery.onPut = { [unowned self] in self.puts.append($0) }
        discovery.onDelete = { [unowned self] in self.deletes.append($0) }
        discovery.start()
        self.discovery = discovery
        return discovery
    }

    private func member(_ name: String, _ port: Int) -> Member {
        Member(name: name, peer: HostPort(host: "127.0.0.1", port: port), api: "127.0.0.1:\(port + 1000)")
    }

    @discardableResult
    private func register(_ member: Member, ttl: Int = 10) -> EtcdRegistrar {
        var settings = EtcdRegistrarSettings()
        settings.leaseTTLSeconds = ttl
        let registrar = EtcdRegistrar(entries: EtcdRegistrar.entries(name: member.name, peer: member.peer!,
                                                                     api: member.api),
                                      client: client, loop: loop.loop, settings: settings)
        registrar.start()
        registrars.append(registrar)
        XCTAssertTrue(loop.run(upTo: 5) { registrar.isRegistered }, "\(member.name) registered")
        return registrar
    }

    private func put(_ key: String, _ value: String) {
        var done = false
        client.put(key: Array(key.utf8), value: Array(value.utf8)) { result in
            XCTAssertNotNil(try? result.get(), "\(result)")
            done = true
        }
        XCTAssertTrue(loop.run(upTo: 5) { done })
    }

    func testSnapshotThenPutsAndDeletes() throws {
        let a = member("a", 8001), b = member("b", 8002)
        register(a)
        put("springcache/members/broken", "not json")
        let discovery = startDiscovery()
        XCTAssertTrue(loop.run(upTo: 5) { discovery.isWatching })
        XCTAssertEqual(snapshots, [[a]])
        XCTAssertEqual(discovery.stats.malformed, 1, "the broken record was skipped")

        let rb = register(b, ttl: 2)
        XCTAssertTrue(loop.run(upTo: 5) { self.puts.count == 1 })
        XCTAssertEqual(puts, [b])
        etcd.etcdctl(["del", "springcache/members/a"])
        XCTAssertTrue(loop.run(upTo: 5) { self.deletes.count == 1 })
        XCTAssertEqual(deletes, ["a"])
        // Graceful leave: b's lease is revoked, its record deleted at once.
        var stopped = false
        rb.stop { stopped = true }
        registrars.removeAll { $0 === rb }
        XCTAssertTrue(loop.run(upTo: 2) { stopped && self.deletes.count == 2 })
        XCTAssertEqual(deletes, ["a", "b"])
        // A malformed update is skipped, not delivered.
        put("springcache/members/c", #"{"name":"c"}"#)
        put("springcache/members/d", #"{"name":"d","peer":"127.0.0.1:8004"}"#)
        XCTAssertTrue(loop.run(upTo: 5) { self.puts.count == 2 })
        XCTAssertEqual(puts.last, Member(name: "d", peer: HostPort(host: "127.0.0.1", port: 8004), api: nil))
        XCTAssertEqual(discovery.stats.malformed, 2)
        XCTAssertEqual(snapshots.count, 1)
        finish()
    }

    /// A member whose node dies without stopping disappears when its lease expires.
    func testLeaseExpiryRemovesAMember() throws {
        // A node that registers and then "crashes": etcdctl puts the record on a 2 s lease nobody keeps alive.
        let granted = etcd.etcdctl(["lease", "grant", "2"])  // "lease 694d7a... granted with TTL(2s)"
        let lease = try XCTUnwrap(granted.split(separator: " ").dropFirst().first.map(String.init), granted)
        etcd.etcdctl(["put", "--lease=\(lease)", "springcache/members/a", #"{"name":"a","peer":"127.0.0.1:8001"}"#])
        let discovery = startDiscovery()
        XCTAssertTrue(loop.run(upTo: 5) { discovery.isWatching })
        XCTAssertEqual(snapshots, [[Member(name: "a", peer: HostPort(host: "127.0.0.1", port: 8001))]])
        XCTAssertTrue(loop.run(upTo: 6) { self.deletes == ["a"] }, "DELETE from lease expiry")
        XCTAssertTrue(discovery.isWatching)
        finish()
    }

    func testRecoversAfterEtcdRestarts() throws {
        let a = member("a", 8001), b = member("b", 8002)
        register(a)
        let discovery = startDiscovery()
        XCTAssertTrue(loop.run(upTo: 5) { discovery.isWatching })
        XCTAssertEqual(snapshots, [[a]])

        // Same data directory: the lease survived; a fresh snapshot, then the watch goes on.
        etcd.stop()
        XCTAssertTrue(loop.run(upTo: 3) { !discovery.isWatching })
        loop.run(for: 1)
        try etcd.start()
        XCTAssertTrue(loop.run(upTo: 5) { discovery.isWatching && self.snapshots.count == 2 })
        XCTAssertEqual(snapshots.last, [a])
        register(b)
        XCTAssertTrue(loop.run(upTo: 5) { self.puts == [b] })

        // An empty etcd: the snapshot is empty, then both registrars put their records again.
        etcd.stop()
        XCTAssertTrue(loop.run(upTo: 3) { !discovery.isWatching })
        loop.run(for: 4)  // > TTL/3: the registrars notice
        try etcd.start(fresh: true)
        XCTAssertTrue(loop.run(upTo: 8) {
            self.snapshots.count >= 3 && Set((self.snapshots.last ?? []).map(\.name) + self.puts.dropFirst().map(\.name)) == ["a", "b"]
        }, "snapshots \(snapshots), puts \(puts)")
        XCTAssertTrue(loop.run(upTo: 5) { discovery.isWatching })
        finish()
    }

    /// etcd stopped (SIGSTOP) for 3 s under a registrar and a discovery: the loop keeps its timing, and both
    /// recover after SIGCONT.
    func testStoppedEtcdDelaysNothingAndEverythingRecovers() throws {
        let a = member("a", 8001), b = member("b", 8002)
        let ra = register(a, ttl: 3)
        let discovery = startDiscovery()
        XCTAssertTrue(loop.run(upTo: 5) { discovery.isWatching })
        var ticks: [Int64] = []
        let ticker = LoopTimer(loop: loop.loop) { [loop] in ticks.append(loop!.nowMillis) }
        ticker.start(timeoutMillis: 20, repeatMillis: 20)

        etcd.pause()
        loop.run(for: 3)
        let gaps = zip(ticks.dropFirst(), ticks).map { $0 - $1 }
        // Generous: a loop blocked on etcd would stall for the whole 2 s call timeout, not a busy machine's hiccup.
        XCTAssertGreaterThan(ticks.count, 20)
        XCTAssertLessThan(gaps.max() ?? 0, 1_000, "a 20 ms ticker was delayed while etcd hung")
        XCTAssertGreaterThan(ra.stats.failures, 0, "keepalives timed out")
        etcd.resume()
        ticker.close()

        XCTAssertTrue(loop.run(upTo: 5) { ra.isRegistered }, "registered again")
        register(b)
        XCTAssertTrue(loop.run(upTo: 5) { self.puts.contains(b) }, "the watch sees new members")
        XCTAssertTrue(discovery.isWatching)
        finish()
    }

    func testLooksUpSpringcacheNames() throws {
        register(member("svc1", 8888))
        var found: Result<HostPort?, EtcdError>?
        EtcdDiscovery.lookupAddress(of: "svc1", client: client) { found = $0 }
        XCTAssertTrue(loop.run(upTo: 5) { found != nil })
        XCTAssertEqual(try found?.get(), HostPort(host: "127.0.0.1", port: 8888))
        var missing: Result<HostPort?, EtcdError>?
        EtcdDiscovery.lookupAddress(of: "svc2", client: client) { missing = $0 }
        XCTAssertTrue(loop.run(upTo: 5) { missing != nil })
        XCTAssertEqual(try missing?.get(), .some(nil))
        finish()
    }
}

import XCTest

@testable import SpringCacheUV

/// `EtcdDiscovery` (driver and state), with registrars as members, against `FakeEtcd` on simulated time.
final class EtcdDiscoveryCycleTests: XCTestCase {
    private var scheduler: ManualScheduler!
    private var etcd: FakeEtcd!
    private var discovery: EtcdDiscovery?
    private var registrars: [EtcdRegistrar] = []

    /// What discovery reported, in order.
    private var snapshots: [[Member]] = []
    private var puts: [Member] = []
    private var deletes: [String] = []

    override func setUp() {
        scheduler = ManualScheduler(nowMillis: 0)
        etcd = FakeEtcd(scheduler: scheduler)
        etcd.latencyMillis = 2
    }

    override func tearDown() {
        discovery?.stop()
        discovery = nil
        var pending = registrars.count
        for registrar in registrars { registrar.stop { pending -= 1 } }
        scheduler.advance(byMillis: 5_000)
        XCTAssertEqual(pending, 0)
        registrars = []
        etcd.close()
        XCTAssertEqual(scheduler.armedTimers, 0, "a timer was left armed")
    }

    private func startDiscovery() -> EtcdDiscovery {
        let discovery = EtcdDiscovery(client: etcd, scheduler: scheduler)
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
                                      client: etcd, scheduler: scheduler, settings: settings)
        registrar.start()
        registrars.append(registrar)
        scheduler.advance(byMillis: 20)
        XCTAssertTrue(registrar.isRegistered, "\(member.name) registered")
        return registrar
    }

    func testSnapshotThenPutsAndDeletes() {
        let a = member("a", 8001), b = member("b", 8002)
        register(a)
        etcd.putByHand("springcache/members/broken", "not json")
        let discovery = startDiscovery()
        scheduler.advance(byMillis: 10)
        XCTAssertTrue(discovery.isWatching)
        XCTAssertEqual(snapshots, [[a]])
        XCTAssertEqual(discovery.stats.malformed, 1, "the broken record was skipped")
        XCTAssertEqual(etcd.calls.last?.what, "watch springcache/members/ from \(etcd.revision + 1)")

        let rb = register(b, ttl: 2)
        XCTAssertEqual(puts, [b])
        etcd.deleteByHand("springcache/members/a")
        scheduler.advance(byMillis: 10)
        XCTAssertEqual(deletes, ["a"])
        // Graceful leave: b's lease is revoked, its record deleted at once.
        var stopped = false
        rb.stop { stopped = true }
        registrars.removeAll { $0 === rb }
        scheduler.advance(byMillis: 10)
        XCTAssertTrue(stopped)
        XCTAssertEqual(deletes, ["a", "b"])
        // A malformed update is skipped, not delivered.
        etcd.putByHand("springcache/members/c", #"{"name":"c"}"#)
        etcd.putByHand("springcache/members/d", #"{"name":"d","peer":"127.0.0.1:8004"}"#)
        scheduler.advance(byMillis: 10)
        XCTAssertEqual(puts.last, Member(name: "d", peer: HostPort(host: "127.0.0.1", port: 8004), api: nil))
        XCTAssertEqual(puts.count, 2)
        XCTAssertEqual(discovery.stats.malformed, 2)
        XCTAssertEqual(snapshots.count, 1)
    }

    /// A change that lands between the range's answer and the watch's creation is still delivered.
    func testAChangeBetweenTheRangeAndTheWatchIsNotMissed() {
        etcd.latencyMillis = 50
        _ = startDiscovery()
        scheduler.advance(byMillis: 60)  // range answered at 50; the watch is being created
        XCTAssertEqual(snapshots, [[]])
        etcd.putByHand("springcache/members/a", #"{"name":"a","peer":"127.0.0.1:8001"}"#)
        scheduler.advance(byMillis: 100)
        XCTAssertEqual(puts.map(\.name), ["a"])
    }

    /// A member whose node dies without stopping disappears when its lease expires.
    func testLeaseExpiryRemovesAMember() {
        let lease = etcd.grantByHand(ttlSeconds: 2)
        etcd.putByHand("springcache/members/a", #"{"name":"a","peer":"127.0.0.1:8001"}"#, lease: lease)
        let discovery = startDiscovery()
        scheduler.advance(byMillis: 10)
        XCTAssertEqual(snapshots, [[Member(name: "a", peer: HostPort(host: "127.0.0.1", port: 8001))]])
        scheduler.advance(byMillis: 1_980)
        XCTAssertEqual(deletes, [])
        scheduler.advance(byMillis: 20)
        XCTAssertEqual(deletes, ["a"], "DELETE from lease expiry")
        XCTAssertTrue(discovery.isWatching)
    }

    /// A compaction cancels the watch: a fresh range after 200 ms, and the watch restarts after its revision.
    func testACompactedWatchRestartsFromAFreshRange() {
        register(member("a", 8001))
        let discovery = startDiscovery()
        scheduler.advance(byMillis: 10)
        etcd.putByHand("x", "unrelated")  // moves the revision past the watch's start
        etcd.compactAndCancelWatches()
        let canceledAt = scheduler.nowMillis
        XCTAssertFalse(discovery.isWatching)
        XCTAssertEqual(discovery.stats.failures, 1)
        scheduler.advance(byMillis: 250)
        XCTAssertTrue(discovery.isWatching)
        XCTAssertEqual(etcd.times("range"), [20, canceledAt + 200])
        XCTAssertEqual(etcd.calls.last?.what, "watch springcache/members/ from \(etcd.revision + 1)")
        XCTAssertEqual(snapshots.count, 2)
        XCTAssertEqual(snapshots.last?.map(\.name), ["a"])
    }

    /// etcd restarts empty: the snapshot after the outage is empty, then the registrars put their records again.
    func testAnEmptyRestartIsFollowedByASnapshotAndTheMembersComingBack() {
        let a = member("a", 8001), b = member("b", 8002)
        register(a)
        let discovery = startDiscovery()
        scheduler.advance(byMillis: 10)
        register(b)
        XCTAssertEqual(puts, [b])

        etcd.mode = .down
        XCTAssertFalse(discovery.isWatching)
        scheduler.advance(byMillis: 4_000)  // > TTL/3: the registrars notice too
        XCTAssertGreaterThanOrEqual(discovery.stats.failures, 4)
        etcd.comeBack(empty: true)
        scheduler.advance(byMillis: 2_100)  // within every backoff's cap
        XCTAssertTrue(discovery.isWatching)
        XCTAssertEqual(snapshots.count, 2)
        let seen = Set((snapshots.last ?? []).map(\.name) + puts.dropFirst().map(\.name))
        XCTAssertEqual(seen, ["a", "b"], "snapshots \(snapshots), puts \(puts)")
        XCTAssertTrue(registrars.allSatisfy(\.isRegistered))
    }

    func testRetryNowReadsAtOnceInsteadOfAfterTheBackoff() {
        etcd.mode = .down
        let discovery = startDiscovery()
        scheduler.advance(byMillis: 700)  // failures at 2, 204, 606: the next retry waits 800 ms
        XCTAssertEqual(discovery.stats.failures, 3)
        etcd.comeBack(empty: false)
        discovery.retryNow()
        scheduler.advance(byMillis: 10)
        XCTAssertTrue(discovery.isWatching)
        XCTAssertEqual(etcd.times("range").last, 700)
    }

    /// Two puts arrive in one watch message; the owner stops discovery from the first one's callback.
    func testStopEndsEverythingAndNoCallbackRunsAfter() {
        etcd.latencyMillis = 50
        let discovery = startDiscovery()
        discovery.onPut = { [unowned self] member in
            self.puts.append(member)
            discovery.stop()
        }
        scheduler.advance(byMillis: 60)  // range answered at 50; the watch is being created
        etcd.putByHand("springcache/members/b", #"{"name":"b","peer":"127.0.0.1:8002"}"#)
        etcd.putByHand("springcache/members/c", #"{"name":"c","peer":"127.0.0.1:8003"}"#)
        scheduler.advance(byMillis: 100)  // created at 100, both events in one message
        XCTAssertEqual(puts.map(\.name), ["b"])
        XCTAssertEqual(discovery.stats.puts, 2, "the state saw both")
        XCTAssertEqual(etcd.openWatches, 0)
        XCTAssertFalse(discovery.isWatching)
    }

    func testLooksUpSpringcacheNames() {
        register(member("svc1", 8888))
        var found: Result<HostPort?, EtcdError>?
        EtcdDiscovery.lookupAddress(of: "svc1", client: etcd) { found = $0 }
        var missing: Result<HostPort?, EtcdError>?
        EtcdDiscovery.lookupAddress(of: "svc2", client: etcd) { missing = $0 }
        etcd.putByHand("svc3", "nohost")
        var malformed: Result<HostPort?, EtcdError>?
        EtcdDiscovery.lookupAddress(of: "svc3", client: etcd) { malformed = $0 }
        scheduler.advance(byMillis: 10)
        XCTAssertEqual(try found?.get(), HostPort(host: "127.0.0.1", port: 8888))
        XCTAssertEqual(try missing?.get(), .some(nil))
        guard case .failure(.malformedReply)? = malformed else { return XCTFail("\(String(describing: malformed))") }
    }
}

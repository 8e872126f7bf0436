import Foundation
import XCTest

@testable import SpringCacheUV

/// EtcdClient against a real etcd on a real loop.
final class EtcdClientTests: XCTestCase {
    private var etcd: EtcdTestServer!
    private var loop: EtcdTestLoop!
    private var client: EtcdClient!

    override func setUpWithError() throws {
        etcd = try EtcdTestServer()
        loop = try EtcdTestLoop()
        client = try EtcdClient(endpoints: [etcd.endpoint], loop: loop.loop, curl: loop.curl)
    }

    override func tearDown() {
        client?.close()
        client = nil
        loop = nil
        etcd?.shutdown()
        etcd = nil
    }

    private func finish() {
        XCTAssertEqual(loop.closeAll(client), 0, "uv_loop_close: a handle was left open")
        client = nil
    }

    /// Starts a call and runs the loop until its completion.
    private func wait<T>(_ start: (@escaping (Result<T, EtcdError>) -> Void) -> Void,
                         file: StaticString = #filePath, line: UInt = #line) -> Result<T, EtcdError>? {
        var result: Result<T, EtcdError>?
        start { result = $0 }
        XCTAssertNil(result, "completion ran inside the call", file: file, line: line)
        XCTAssertTrue(loop.run(upTo: 10) { result != nil }, "no completion", file: file, line: line)
        return result
    }

    private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    func testGrantPutRangeKeepAliveRevoke() throws {
        let lease = try XCTUnwrap(wait { self.client.grant(ttlSeconds: 10, completion: $0) }).get()
        XCTAssertEqual(lease.ttlSeconds, 10)
        XCTAssertGreaterThan(lease.id, 1 << 32, "etcd lease IDs are large: they travel as strings")

        let rev = try XCTUnwrap(wait { self.client.put(key: self.bytes("p/a"), value: [0, 255, 10], lease: lease.id,
                                                       completion: $0) }).get()
        _ = try XCTUnwrap(wait { self.client.put(key: self.bytes("p/b"), value: [], completion: $0) }).get()
        _ = try XCTUnwrap(wait { self.client.put(key: self.bytes("q"), value: self.bytes("x"), completion: $0) }).get()

        let range = try XCTUnwrap(wait { self.client.range(prefix: self.bytes("p/"), completion: $0) }).get()
        XCTAssertEqual(range.revision, rev + 2)
        XCTAssertEqual(range.kvs.map(\.key), [bytes("p/a"), bytes("p/b")])
        XCTAssertEqual(range.kvs.map(\.value), [[0, 255, 10], []])
        XCTAssertEqual(range.kvs.map(\.lease), [lease.id, 0])
        XCTAssertEqual(range.kvs[0].modRevision, rev)
        let one = try XCTUnwrap(wait { self.client.get(key: self.bytes("q"), completion: $0) }).get()
        XCTAssertEqual(one.kvs.map(\.value), [bytes("x")])
        let none = try XCTUnwrap(wait { self.client.range(prefix: self.bytes("zz/"), completion: $0) }).get()
        XCTAssertEqual(none.kvs, [])

        XCTAssertEqual(try XCTUnwrap(wait { self.client.keepAlive(lease: lease.id, completion: $0) }).get(), 10)
        _ = try XCTUnwrap(wait { self.client.revoke(lease: lease.id, completion: $0) }).get()
        let after = try XCTUnwrap(wait { self.client.range(prefix: self.bytes("p/"), completion: $0) }).get()
        XCTAssertEqual(after.kvs.map(\.key), [bytes("p/b")], "revoke deleted the leased key at once")
        // The lease is gone: keepalive says so with TTL 0; revoke and put fail with 404.
        XCTAssertEqual(try XCTUnwrap(wait { self.client.keepAlive(lease: lease.id, completion: $0) }).get(), 0)
        let revokeAgain = try XCTUnwrap(wait { self.client.revoke(lease: lease.id, completion: $0) })
        XCTAssertTrue((try? revokeAgain.get()) == nil && revokeAgain.errorValue?.isNotFound == true, "\(revokeAgain)")
        let putGone = try XCTUnwrap(wait { self.client.put(key: self.bytes("p/c"), value: [], lease: lease.id,
                                                           completion: $0) })
        XCTAssertEqual(putGone.errorValue?.isNotFound, true, "\(putGone)")
        XCTAssertEqual(client.inFlight, 0)
        finish()
    }

    func testCancelledCallNeverCompletes() {
        var called = false
        let handle = client.grant(ttlSeconds: 5) { _ in called = true }
        XCTAssertTrue(client.cancel(handle))
        XCTAssertFalse(client.cancel(handle))
        loop.run(for: 0.3)
        XCTAssertFalse(called)
        finish()
    }

    func testWatchSeesPutsAndDeletesIncludingLeaseExpiry() throws {
        let start = try XCTUnwrap(wait { self.client.range(prefix: self.bytes("w/"), completion: $0) }).get()
        var created = false
        var events: [EtcdEvent] = []
        var ended: EtcdError?
        client.watch(prefix: bytes("w/"), startRevision: start.revision + 1, onCreated: { created = true },
                     onEvents: { batch, _ in events += batch }, onEnd: { ended = $0 })
        XCTAssertTrue(loop.run(upTo: 5) { created })

        let lease = try XCTUnwrap(wait { self.client.grant(ttlSeconds: 2, completion: $0) }).get()
        _ = try XCTUnwrap(wait { self.client.put(key: self.bytes("w/leased"), value: self.bytes("1"), lease: lease.id,
                                                 completion: $0) }).get()
        _ = try XCTUnwrap(wait { self.client.put(key: self.bytes("w/plain"), value: self.bytes("2"), completion: $0) }).get()
        _ = try XCTUnwrap(wait { self.client.put(key: self.bytes("other"), value: self.bytes("3"), completion: $0) }).get()
        etcd.etcdctl(["del", "w/plain"])
        XCTAssertTrue(loop.run(upTo: 5) { events.count >= 3 })
        XCTAssertEqual(events.map(\.kind), [.put, .put, .delete])
        XCTAssertEqual(events.map(\.kv.key), [bytes("w/leased"), bytes("w/plain"), bytes("w/plain")])
        XCTAssertEqual(events[0].kv.value, bytes("1"))
        XCTAssertEqual(events[0].kv.lease, lease.id)

        // No keepalive: the 2 s lease expires and its key is deleted (etcd checks expiry about every 500 ms).
        let begin = Date()
        XCTAssertTrue(loop.run(upTo: 8) { events.count >= 4 }, "no DELETE from lease expiry")
        XCTAssertEqual(events.last?.kind, .delete)
        XCTAssertEqual(events.last?.kv.key, bytes("w/leased"))
        XCTAssertLessThan(Date().timeIntervalSince(begin), 6)
        XCTAssertNil(ended)
        finish()
    }

    func testWatchEndsWhenItsStartRevisionIsCompacted() throws {
        for i in 0..<5 {
            _ = try XCTUnwrap(wait { self.client.put(key: self.bytes("c/\(i)"), value: [], completion: $0) }).get()
        }
        let now = try XCTUnwrap(wait { self.client.range(prefix: self.bytes("c/"), completion: $0) }).get()
        etcd.etcdctl(["compact", String(now.revision)])
        var ended: EtcdError?
        client.watch(prefix: bytes("c/"), startRevision: 2, onEvents: { _, _ in XCTFail("events from a compacted watch") },
                     onEnd: { ended = $0 })
        XCTAssertTrue(loop.run(upTo: 5) { ended != nil })
        XCTAssertEqual(ended, .watchCanceled(endpoint: etcd.url, compactRevision: now.revision, reason: ""))
        XCTAssertEqual(client.inFlight, 0, "the canceled stream's transfer was cancelled")
        finish()
    }

    func testWatchEndsWhenEtcdStops() throws {
        var created = false
        var ended: EtcdError?
        client.watch(prefix: bytes("s/"), startRevision: 0, onCreated: { created = true },
                     onEvents: { _, _ in }, onEnd: { ended = $0 })
        XCTAssertTrue(loop.run(upTo: 5) { created })
        etcd.stop()
        XCTAssertTrue(loop.run(upTo: 5) { ended != nil })
        XCTAssertNotNil(ended)
        // A watch on a dead etcd ends too (connect refused).
        var endedAgain: EtcdError?
        client.watch(prefix: bytes("s/"), startRevision: 0, onEvents: { _, _ in }, onEnd: { endedAgain = $0 })
        XCTAssertTrue(loop.run(upTo: 5) { endedAgain != nil })
        XCTAssertEqual(endedAgain?.isTransportFailure, true, "\(String(describing: endedAgain))")
        finish()
    }

    func testFailsOverToTheNextEndpoint() throws {
        let dead = "127.0.0.1:\(try EtcdTestServer.freePort())"
        client.close()
        client = try EtcdClient(endpoints: [dead, etcd.endpoint], loop: loop.loop, curl: loop.curl)
        XCTAssertEqual(client.currentEndpoint, "http://\(dead)")
        let first = try XCTUnwrap(wait { self.client.grant(ttlSeconds: 5, completion: $0) })
        XCTAssertEqual(first.errorValue?.isTransportFailure, true, "\(first)")
        XCTAssertEqual(client.currentEndpoint, etcd.url)
        let lease = try XCTUnwrap(wait { self.client.grant(ttlSeconds: 5, completion: $0) }).get()
        XCTAssertGreaterThan(lease.id, 0)
        XCTAssertEqual(client.stats.endpointRotations, 1)
        finish()
    }

    /// etcd stopped (SIGSTOP) for 3 s: calls time out after their limit, the loop keeps running on time, and
    /// calls work again once etcd resumes.
    func testStoppedEtcdTimesCallsOutWithoutDelayingTheLoop() throws {
        var ticks: [Int64] = []
        let ticker = LoopTimer(loop: loop.loop) { [loop] in ticks.append(loop!.nowMillis) }
        ticker.start(timeoutMillis: 50, repeatMillis: 50)

        etcd.pause()
        let began = loop.nowMillis
        var results: [Result<Int64, EtcdError>] = []
        for i in 0..<5 {
            client.put(key: bytes("t/\(i)"), value: [], completion: { results.append($0) })
        }
        var watchEnd: EtcdError?
        client.watch(prefix: bytes("t/"), startRevision: 0, onEvents: { _, _ in }, onEnd: { watchEnd = $0 })
        XCTAssertTrue(loop.run(upTo: 5) { results.count == 5 && watchEnd != nil })
        let elapsed = loop.nowMillis - began
        XCTAssertGreaterThanOrEqual(elapsed, 1_900)
        XCTAssertLessThan(elapsed, 3_600)
        for result in results {
            guard case .failure(.timedOut) = result else { return XCTFail("\(result)") }
        }
        guard case .timedOut = watchEnd else { return XCTFail("watch: \(String(describing: watchEnd))") }
        loop.run(for: Double(max(0, 3_000 - (loop.nowMillis - began))) / 1000)
        let gaps = zip(ticks.dropFirst(), ticks).map { $0 - $1 }
        XCTAssertGreaterThan(ticks.count, 40, "the ticker kept ticking")
        XCTAssertLessThan(gaps.max() ?? 0, 250, "a 50 ms ticker was delayed while etcd hung")

        ticker.close()
        etcd.resume()
        let rev = try XCTUnwrap(wait { self.client.put(key: self.bytes("t/after"), value: [], completion: $0) })
        XCTAssertNotNil(try? rev.get(), "\(rev)")
        finish()
    }
}

extension Result {
    var errorValue: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}

import XCTest

@testable import SpringCacheUV

/// `EtcdDiscoveryState` alone: events in, actions out — no driver, no etcd, no time.
final class EtcdDiscoveryStateTests: XCTestCase {
    private let endpoint = "http://e:1"

    private func kv(_ name: String, port: Int, revision: Int64) -> EtcdKeyValue {
        EtcdKeyValue(key: Array("springcache/members/\(name)".utf8),
                     value: Array(#"{"name":"\#(name)","peer":"127.0.0.1:\#(port)"}"#.utf8),
                     createRevision: revision, modRevision: revision, version: 1)
    }

    private func member(_ name: String, port: Int) -> Member {
        Member(name: name, peer: HostPort(host: "127.0.0.1", port: port))
    }

    /// The watch starts right after the range's revision, and after every failure a fresh range decides the
    /// next start: a compacted watch, a broken stream and an error each restart the cycle.
    func testTheWatchStartsAfterTheRangesRevisionEachTimeTheCycleRestarts() {
        var state = EtcdDiscoveryState(settings: EtcdDiscoverySettings())
        XCTAssertEqual(state.handle(.start), [.range])
        let first = EtcdRangeResult(revision: 7, kvs: [kv("a", port: 1, revision: 5)])
        XCTAssertEqual(state.handle(.rangeAnswered(.success(first))),
                       [.watch(fromRevision: 8), .report(.snapshot([member("a", port: 1)], revision: 7))])
        XCTAssertEqual(state.handle(.watchCreated), [.report(.watching)])
        XCTAssertTrue(state.isWatching)

        let endings: [(EtcdError, rangeRevision: Int64)] = [
            (.watchCanceled(endpoint: endpoint, compactRevision: 9, reason: ""), 12),
            (.streamEnded(endpoint: endpoint), 20),
            (.unreachable(endpoint: endpoint, message: "reset"), 21),
        ]
        for (error, revision) in endings {
            XCTAssertEqual(state.handle(.watchEnded(error)),
                           [.armTimer(afterMillis: 200), .report(.failed(call: "watch", error, retryInMillis: 200))],
                           "\(error)")
            XCTAssertFalse(state.isWatching)
            XCTAssertEqual(state.handle(.timerFired), [.range])
            XCTAssertEqual(state.handle(.rangeAnswered(.success(EtcdRangeResult(revision: revision, kvs: [])))),
                           [.watch(fromRevision: revision + 1), .report(.snapshot([], revision: revision))])
            XCTAssertEqual(state.handle(.watchCreated), [.report(.watching)], "created: the backoff is reset")
        }
        XCTAssertEqual(state.stats.snapshots, 4)
        XCTAssertEqual(state.stats.failures, 3)
    }

    /// Failures of the range double the wait (200 → 2000 ms); a created watch resets it.
    func testRangeFailuresBackOffUntilAWatchIsCreated() {
        var state = EtcdDiscoveryState(settings: EtcdDiscoverySettings())
        _ = state.handle(.start)
        let down = EtcdError.unreachable(endpoint: endpoint, message: "refused")
        var waits: [Int64] = []
        for _ in 0..<6 {
            guard case .armTimer(let wait)? = state.handle(.rangeAnswered(.failure(down))).first else {
                return XCTFail("no retry armed")
            }
            waits.append(wait)
            XCTAssertEqual(state.handle(.timerFired), [.range])
        }
        XCTAssertEqual(waits, [200, 400, 800, 1_600, 2_000, 2_000])
        _ = state.handle(.rangeAnswered(.success(EtcdRangeResult(revision: 3, kvs: []))))
        XCTAssertEqual(state.backoff.nextMillis, 2_000, "a range alone does not prove the watch works")
        _ = state.handle(.watchCreated)
        XCTAssertEqual(state.backoff.nextMillis, 200)
    }

    func testEventsBecomePutsAndDeletesAndMalformedRecordsAreSkipped() {
        var state = EtcdDiscoveryState(settings: EtcdDiscoverySettings())
        _ = state.handle(.start)
        _ = state.handle(.rangeAnswered(.success(EtcdRangeResult(revision: 1, kvs: []))))
        var broken = kv("c", port: 3, revision: 4)
        broken.value = Array(#"{"name":"c"}"#.utf8)
        let events = [
            EtcdEvent(kind: .put, kv: kv("b", port: 2, revision: 2)),
            EtcdEvent(kind: .delete, kv: EtcdKeyValue(key: Array("springcache/members/a".utf8), value: [],
                                                      modRevision: 3)),
            EtcdEvent(kind: .put, kv: broken),
            EtcdEvent(kind: .delete, kv: EtcdKeyValue(key: Array("springcache/members/".utf8), value: [])),
        ]
        XCTAssertEqual(state.handle(.watchEvents(events)), [
            .report(.put(member("b", port: 2))),
            .report(.delete("a")),
            .report(.skipped(key: broken.key, problem: "value has no peer address")),
        ])
        XCTAssertEqual(state.stats.puts, 1)
        XCTAssertEqual(state.stats.deletes, 1)
        XCTAssertEqual(state.stats.malformed, 1)
    }

    func testRetryNowSkipsTheBackoffOnlyWhileARetryWaits() {
        var state = EtcdDiscoveryState(settings: EtcdDiscoverySettings())
        XCTAssertEqual(state.handle(.retryNow), [], "not started")
        _ = state.handle(.start)
        XCTAssertEqual(state.handle(.retryNow), [], "the range is in flight")
        _ = state.handle(.rangeAnswered(.failure(.streamEnded(endpoint: endpoint))))
        _ = state.handle(.timerFired)
        _ = state.handle(.rangeAnswered(.failure(.streamEnded(endpoint: endpoint))))
        XCTAssertEqual(state.backoff.nextMillis, 800)
        XCTAssertEqual(state.handle(.retryNow), [.disarmTimer, .range])
        XCTAssertEqual(state.backoff.nextMillis, 200)
        _ = state.handle(.rangeAnswered(.success(EtcdRangeResult(revision: 3, kvs: []))))
        XCTAssertEqual(state.handle(.retryNow), [], "a watch is open")
    }

    func testStopCancelsWhatIsOpenAndIgnoresEverythingAfter() {
        var state = EtcdDiscoveryState(settings: EtcdDiscoverySettings())
        _ = state.handle(.start)
        _ = state.handle(.rangeAnswered(.success(EtcdRangeResult(revision: 3, kvs: []))))
        XCTAssertEqual(state.handle(.stop), [.cancelWatch, .closeTimer])
        XCTAssertEqual(state.handle(.stop), [])
        XCTAssertEqual(state.handle(.watchEvents([EtcdEvent(kind: .put, kv: kv("b", port: 2, revision: 4))])), [])
        XCTAssertEqual(state.handle(.timerFired), [])
        XCTAssertEqual(state.handle(.retryNow), [])
        var ranging = EtcdDiscoveryState(settings: EtcdDiscoverySettings())
        _ = ranging.handle(.start)
        XCTAssertEqual(ranging.handle(.stop), [.cancelRange, .closeTimer])
        XCTAssertEqual(EtcdDiscoveryState(settings: EtcdDiscoverySettings()).phase, .idle)
    }
}

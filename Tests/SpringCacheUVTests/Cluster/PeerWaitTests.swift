import XCTest
@testable import SpringCacheUV

/// springcache's start-up contract for `--peer a,b,c` with etcd: serve once every name is known, give up at
/// `--peer-wait`, look springcache nodes up under their own key meanwhile — without etcd and without waiting.
final class PeerWaitTests: XCTestCase {
    func testTheValueWaitsLooksUpAndGivesUpAtTheDeadline() {
        var known: Set<String> = []
        let isKnown: (String) -> Bool = { known.contains($0) }
        var wait = PeerWait(awaited: ["b", "c"], startMillis: 1_000, limitMillis: 1_200, checkIntervalMillis: 500)
        XCTAssertEqual(wait.start(nowMillis: 1_000, known: isKnown), [.checkAgain(afterMillis: 500)])
        XCTAssertEqual(wait.check(nowMillis: 1_500, known: isKnown),
                       [.lookUp("b"), .lookUp("c"), .checkAgain(afterMillis: 500)])
        wait.lookupFinished("b")
        known.insert("c")
        XCTAssertEqual(wait.membersChanged(known: isKnown), [])
        // The last check comes at the deadline, not an interval later.
        XCTAssertEqual(wait.check(nowMillis: 2_000, known: isKnown), [.lookUp("b"), .checkAgain(afterMillis: 200)])
        XCTAssertEqual(wait.check(nowMillis: 2_200, known: isKnown), [.gaveUp(missing: ["b"])])
        XCTAssertTrue(wait.isFinished)
        known.insert("b")
        XCTAssertEqual(wait.membersChanged(known: isKnown), [], "after the verdict, nothing")
    }

    func testTheValueIsReadyAsSoonAsEveryNameIsKnown() {
        var known: Set<String> = ["b"]
        let isKnown: (String) -> Bool = { known.contains($0) }
        var wait = PeerWait(awaited: ["b", "c"], startMillis: 0, limitMillis: 30_000, checkIntervalMillis: 500)
        _ = wait.start(nowMillis: 0, known: isKnown)
        known.insert("c")
        XCTAssertEqual(wait.membersChanged(known: isKnown), [.ready])
        XCTAssertEqual(wait.check(nowMillis: 500, known: isKnown), [])
        var nothingAwaited = PeerWait(awaited: [], startMillis: 0, limitMillis: 0, checkIntervalMillis: 500)
        XCTAssertEqual(nothingAwaited.start(nowMillis: 0, known: { _ in false }), [.ready])
    }

    // MARK: the driver, on a ManualScheduler

    private final class Harness {
        let scheduler = ManualScheduler(nowMillis: 0)
        var known: Set<String> = []
        var lookups: [String] = []
        var pendingLookups: [String: () -> Void] = [:]
        var verdicts: [[String]] = []
        var waiter: PeerWaiter!

        init(awaited: [String], limitMillis: Int64) {
            waiter = PeerWaiter(
                awaited: awaited, limitMillis: limitMillis, scheduler: scheduler,
                known: { [unowned self] in self.known.contains($0) },
                lookUp: { [unowned self] name, done in
                    self.lookups.append(name)
                    self.pendingLookups[name] = done
                },
                finish: { [unowned self] in self.verdicts.append($0) })
        }

        /// etcd answers the lookup of `name` (found or not).
        func finishLookup(_ name: String) {
            pendingLookups.removeValue(forKey: name)!()
        }
    }

    func testWithEtcdDownTheWaitGivesUpAtPeerWaitAndNotBefore() {
        let h = Harness(awaited: ["b", "c"], limitMillis: 2_000)
        h.waiter.start()
        h.scheduler.advance(byMillis: 499)
        XCTAssertEqual(h.lookups, [], "discovery's first snapshot gets an interval before any lookup")
        h.scheduler.advance(byMillis: 1)
        XCTAssertEqual(h.lookups, ["b", "c"])
        // etcd is down: the lookups fail; each is tried again at the next check, one at a time per name.
        h.finishLookup("b")
        h.scheduler.advance(byMillis: 500)
        XCTAssertEqual(h.lookups, ["b", "c", "b"])
        h.finishLookup("b")
        h.finishLookup("c")
        h.scheduler.advance(byMillis: 999)
        XCTAssertEqual(h.verdicts, [])
        h.scheduler.advance(byMillis: 1)
        XCTAssertEqual(h.verdicts, [["b", "c"]], "gives up at exactly --peer-wait, naming the missing peers")
        XCTAssertTrue(h.waiter.isFinished)
        h.scheduler.advance(byMillis: 60_000)
        XCTAssertEqual(h.verdicts.count, 1)
        XCTAssertEqual(h.scheduler.armedTimers, 0)
    }

    func testTheWaitEndsWhenTheLastNameRegisters() {
        let h = Harness(awaited: ["b", "c"], limitMillis: 30_000)
        h.waiter.start()
        h.known.insert("b")
        h.waiter.membersChanged()
        XCTAssertEqual(h.verdicts, [])
        h.scheduler.advance(byMillis: 500)
        XCTAssertEqual(h.lookups, ["c"], "only the missing name is looked up")
        h.known.insert("c")
        h.waiter.membersChanged()
        XCTAssertEqual(h.verdicts, [[]])
        XCTAssertEqual(h.scheduler.armedTimers, 0)
        // The lookup still in flight finishing later changes nothing.
        h.finishLookup("c")
        h.scheduler.advance(byMillis: 30_000)
        XCTAssertEqual(h.verdicts, [[]])
    }

    func testNothingAwaitedIsReadyAtOnceWithoutATimer() {
        let h = Harness(awaited: [], limitMillis: 30_000)
        h.waiter.start()
        XCTAssertEqual(h.verdicts, [[]])
        XCTAssertEqual(h.scheduler.armedTimers, 0)
    }

    func testAWaitCancelledByAStopNeverFinishes() {
        let h = Harness(awaited: ["b"], limitMillis: 1_000)
        h.waiter.start()
        h.scheduler.advance(byMillis: 500)
        h.waiter.cancel()
        h.scheduler.advance(byMillis: 5_000)
        XCTAssertEqual(h.verdicts, [])
        XCTAssertEqual(h.scheduler.armedTimers, 0)
        XCTAssertEqual(h.lookups, ["b"])
    }
}

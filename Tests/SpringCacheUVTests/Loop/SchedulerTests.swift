import XCTest
@testable import SpringCacheUV

final class SchedulerTests: XCTestCase {
    func testManualSchedulerFiresDueTimersInOrderAtTheirDueTime() {
        let s = ManualScheduler(nowMillis: 1_000)
        var seen: [(String, Int64)] = []
        let a = s.makeTimer { seen.append(("a", s.nowMillis)) }
        let b = s.makeTimer { seen.append(("b", s.nowMillis)) }
        a.arm(afterMillis: 300)
        b.arm(afterMillis: 100)
        s.advance(byMillis: 200)
        XCTAssertEqual(seen.map { $0.0 }, ["b"])
        XCTAssertEqual(seen.map { $0.1 }, [1_100])
        XCTAssertEqual(s.nowMillis, 1_200)
        s.advance(byMillis: 1_000)
        XCTAssertEqual(seen.map { $0.0 }, ["b", "a"])
        XCTAssertEqual(seen.last?.1, 1_300)
        XCTAssertEqual(s.armedTimers, 0)
        a.close()
        b.close()
    }

    func testRepeatingTimerAndTimerArmedFromACallback() {
        let s = ManualScheduler(nowMillis: 0)
        var ticks: [Int64] = []
        var chained: [Int64] = []
        let repeating = s.makeTimer { ticks.append(s.nowMillis) }
        var follow: SchedulerTimer!
        follow = s.makeTimer { chained.append(s.nowMillis) }
        let starter = s.makeTimer { follow.arm(afterMillis: 50) }
        repeating.arm(afterMillis: 250, repeatMillis: 250)
        starter.arm(afterMillis: 10)
        s.advance(byMillis: 1_000)
        XCTAssertEqual(ticks, [250, 500, 750, 1_000])
        XCTAssertEqual(chained, [60], "a timer armed by a callback fires within the same step")
        repeating.disarm()
        s.advance(byMillis: 1_000)
        XCTAssertEqual(ticks.count, 4)
        for t in [repeating, follow!, starter] { t.close() }
    }

    func testClosedTimerNeverFiresAndRearmReplaces() {
        let s = ManualScheduler(nowMillis: 0)
        var fired = 0
        let t = s.makeTimer { fired += 1 }
        t.arm(afterMillis: 100)
        t.arm(afterMillis: 500)
        s.advance(byMillis: 200)
        XCTAssertEqual(fired, 0, "re-arming replaces the earlier schedule")
        t.close()
        s.advance(byMillis: 1_000)
        XCTAssertEqual(fired, 0)
        XCTAssertEqual(s.armedTimers, 0)
    }

    final class Item: DeadlineTracked {
        let name: String
        var expiresAtMillis: Int64
        var deadlineSlot = -1
        init(_ name: String, _ at: Int64) { self.name = name; expiresAtMillis = at }
    }

    func testDeadlineTimerExpiresEarliestFirstAndSkipsRemoved() {
        let s = ManualScheduler(nowMillis: 0)
        var expired: [String] = []
        let timer = DeadlineTimer<Item>(scheduler: s) { expired.append($0.name) }
        let a = Item("a", 300), b = Item("b", 100), c = Item("c", 200)
        timer.insert(a)
        timer.insert(b)
        timer.insert(c)
        timer.remove(c)
        s.advance(byMillis: 150)
        XCTAssertEqual(expired, ["b"])
        s.advance(byMillis: 1_000)
        XCTAssertEqual(expired, ["b", "a"])
        XCTAssertTrue(timer.isEmpty)
        let d = Item("d", s.nowMillis + 10)
        timer.insert(d)
        XCTAssertEqual(timer.close().map { $0.name }, ["d"])
        s.advance(byMillis: 100)
        XCTAssertEqual(expired, ["b", "a"], "nothing fires after close")
    }

    final class Conn: SlottedConnection {
        var slot = -1
    }

    func testConnectionSetLimitAndSwapRemove() {
        var set = ConnectionSet<Conn>(limit: 3)
        let cs = (0..<3).map { _ in Conn() }
        for c in cs { XCTAssertFalse(set.isFull); set.add(c) }
        XCTAssertTrue(set.isFull)
        XCTAssertTrue(set.remove(cs[0]))
        XCTAssertFalse(set.remove(cs[0]), "removing twice is a no-op")
        XCTAssertEqual(set.count, 2)
        XCTAssertEqual(cs[0].slot, -1)
        XCTAssertTrue(set.all.contains { $0 === cs[2] } && set.all.contains { $0 === cs[1] })
        var visited = 0
        set.forEachAllowingRemoval { c in visited += 1; set.remove(c) }
        XCTAssertEqual(visited, 2)
        XCTAssertTrue(set.isEmpty)
    }
}

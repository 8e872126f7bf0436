import XCTest
@testable import SpringCacheUV

/// The loop turn's write budget for clients not yet seen to read: spent within a turn, fresh in the next, and off
/// at 0.
final class TurnWriteBudgetTests: XCTestCase {
    func testTheBudgetIsSpentWithinATurnAndRenewedByTheNext() {
        var budget = TurnWriteBudget(limit: 1000)
        XCTAssertFalse(budget.isSpent(now: 10))
        budget.spend(600, now: 10)
        XCTAssertFalse(budget.isSpent(now: 10))
        budget.spend(400, now: 10)
        XCTAssertTrue(budget.isSpent(now: 10), "1000 of 1000 bytes written in this turn")
        XCTAssertFalse(budget.isSpent(now: 11), "the loop's time moved: a new turn")
        XCTAssertEqual(budget.spent, 0)
    }

    func testANewTurnStartsWhenTheLoopSaysSoEvenWithinOneMillisecond() {
        var budget = TurnWriteBudget(limit: 100)
        budget.spend(5000, now: 7)
        XCTAssertTrue(budget.isSpent(now: 7))
        budget.startTurn(now: 7)
        XCTAssertFalse(budget.isSpent(now: 7))
        budget.spend(100, now: 7)
        XCTAssertTrue(budget.isSpent(now: 7))
    }

    func testZeroMeansNoBudget() {
        var budget = TurnWriteBudget(limit: 0)
        budget.spend(1 << 30, now: 1)
        XCTAssertFalse(budget.isSpent(now: 1))
    }
}

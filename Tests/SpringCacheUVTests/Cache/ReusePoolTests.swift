import XCTest
@testable import SpringCacheUV

/// `ReusePool`: an object comes back out only when nothing but the pool holds it, and the pool is bounded.
final class ReusePoolTests: XCTestCase {
    private final class Thing {}

    func testAnObjectGivenBackIsTakenAgainWhenNothingElseHoldsIt() {
        var pool = ReusePool<Thing>(limit: 4)
        XCTAssertNil(pool.take(), "an empty pool has nothing")
        var thing: Thing? = Thing()
        let id = ObjectIdentifier(thing!)
        pool.giveBack(thing!)
        thing = nil
        XCTAssertEqual(pool.take().map(ObjectIdentifier.init), id)
        XCTAssertEqual(pool.count, 0)
    }

    func testAnObjectStillHeldElsewhereIsNeverTakenAndLeavesThePool() {
        var pool = ReusePool<Thing>(limit: 4)
        let heldByALateCompletion = Thing()
        pool.giveBack(heldByALateCompletion)
        XCTAssertNil(pool.take(), "a held object must not be reused")
        XCTAssertEqual(pool.count, 0, "dropped, not kept to be checked again")
    }

    func testThePoolKeepsAtMostItsLimit() {
        var pool = ReusePool<Thing>(limit: 2)
        for _ in 0..<5 { pool.giveBack(Thing()) }
        XCTAssertEqual(pool.count, 2)
    }
}

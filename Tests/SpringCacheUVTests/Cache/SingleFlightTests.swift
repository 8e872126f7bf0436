import XCTest
@testable import SpringCacheUV

final class SingleFlightTests: XCTestCase {
    private typealias Flights = SingleFlight<String, (Int) -> Void, String>

    func testTheFirstCallerStartsTheCallAndTheOthersWaitForItsOneResult() throws {
        let flights = Flights()
        var answers: [String] = []
        let call = try XCTUnwrap(flights.join("k", [{ answers.append("a\($0)") }]), "the first caller starts it")
        XCTAssertNil(flights.join("k", [{ answers.append("b\($0)") }]), "the second joins")
        XCTAssertNil(flights.join("k", [{ answers.append("c\($0)") }, { answers.append("d\($0)") }]))
        XCTAssertNotNil(flights.join("other", [{ _ in }]), "another key is another call")
        XCTAssertEqual(flights.count, 2)

        let waiters = try XCTUnwrap(flights.land("k", call))
        XCTAssertEqual(flights.count, 1, "landing forgets the call")
        XCTAssertNil(flights["k"])
        for waiter in waiters { waiter(7) }
        XCTAssertEqual(answers, ["a7", "b7", "c7", "d7"], "every waiter once, in the order they came")
    }

    func testACallLandsOnceAndAWaiterAskingAgainStartsAFreshOne() throws {
        let flights = Flights()
        let first = try XCTUnwrap(flights.join("k", []))
        var again: Flights.Call?
        let waiters = try XCTUnwrap(flights.land("k", first))
        XCTAssertTrue(waiters.isEmpty)
        again = flights.join("k", [{ _ in }])
        XCTAssertNotNil(again, "after landing, the key has no call in flight: look again, start afresh")
        XCTAssertNil(flights.land("k", first), "a second answer of the same call is refused")
        XCTAssertTrue(flights["k"] === again, "and does not forget the newer call")
    }

    func testANoteLeftOnACallInFlightIsThereWhenItLands() throws {
        let flights = Flights()
        let call = try XCTUnwrap(flights.join("k", []))
        XCTAssertNil(call.note)
        flights["k"]?.note = "set while loading"
        flights["absent"]?.note = "nobody to tell"
        XCTAssertNil(flights["absent"])
        _ = flights.land("k", call)
        XCTAssertEqual(call.note, "set while loading")
        flights["k"]?.note = "after landing"
        XCTAssertEqual(call.note, "set while loading", "a landed call is no longer reachable by key")
    }
}

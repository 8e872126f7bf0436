import XCTest
@testable import SpringCacheUV

final class MembershipTests: XCTestCase {
    func testAddressedAndPlainEntries() throws {
        let m = try StaticMembership.parse(["a=127.0.0.1:8001", "b=[::1]:8002", "c"], selfName: "a")
        XCTAssertEqual(m.members, [
            Member(name: "a", peer: HostPort(host: "127.0.0.1", port: 8001)),
            Member(name: "b", peer: HostPort(host: "::1", port: 8002)),
            Member(name: "c", peer: nil),
        ])
        XCTAssertEqual(m.unresolvedNames, ["c"])
    }

    func testMalformedEntriesAreRefusedWithTheExpectedForm() {
        let cases: [[String]] = [
            ["a=127.0.0.1"], ["a=127.0.0.1:"], ["=127.0.0.1:80"], ["a=127.0.0.1:99999"], ["a=127.0.0.1:0"],
            ["a=127.0.0.1:80", "a=127.0.0.1:81"], ["127.0.0.1:8001"], ["b=127.0.0.1:80"],
        ]
        for entries in cases {
            XCTAssertThrowsError(try StaticMembership.parse(entries, selfName: "a"), "\(entries)") { error in
                XCTAssertTrue("\(error)".contains("--peer"), "\(error)")
            }
        }
    }

    func testEmptyListIsASingleNode() throws {
        XCTAssertEqual(try StaticMembership.parse([], selfName: "a").members, [])
    }
}

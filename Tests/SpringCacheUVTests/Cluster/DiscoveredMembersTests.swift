import XCTest
@testable import SpringCacheUV

/// What a node makes of etcd's member records: joins and leaves said once, `--peer`'s rule, static entries,
/// springcache nodes' own keys and `/setpeer` — without etcd.
final class DiscoveredMembersTests: XCTestCase {
    private func member(_ name: String, _ host: String = "10.0.0.1", port: Int = 8888) -> Member {
        Member(name: name, peer: HostPort(host: host, port: port))
    }

    private func view(_ peers: [String], onlyListed: Bool = true) throws -> DiscoveredMembers {
        DiscoveredMembers(selfName: "a", statics: try StaticMembership.parse(peers, selfName: "a"),
                          onlyListed: onlyListed)
    }

    private func names(_ list: [Member]) -> [String] { list.map(\.name).sorted() }

    func testJoinsAndLeavesAreReportedOnceEach() throws {
        var d = try view([])
        XCTAssertEqual(d.replaceAll(with: [member("a"), member("b"), member("c")]),
                       .init(joined: [member("b"), member("c")]), "this node's own record is not a member joining")
        // A snapshot after a broken watch repeats what is known: only the differences are news.
        XCTAssertEqual(d.replaceAll(with: [member("b"), member("d")]), .init(joined: [member("d")], left: ["c"]))
        XCTAssertEqual(d.put(member("b")), .init(), "a keepalive re-put is not a join")
        XCTAssertEqual(d.put(member("b", "10.0.0.9")), .init(), "nor is a move")
        XCTAssertEqual(d.registered["b"]?.peer?.host, "10.0.0.9")
        XCTAssertEqual(d.put(member("e")), .init(joined: [member("e")]))
        XCTAssertEqual(d.delete("e"), .init(left: ["e"]))
        XCTAssertEqual(d.delete("e"), .init(), "a delete of an unknown name is nothing")
        XCTAssertEqual(d.put(member("a")), .init())
        XCTAssertEqual(names(d.members(including: member("a"))), ["a", "b", "d"])
    }

    func testAPeerListAdmitsOnlyItsNamesAndThoseSetpeerAdds() throws {
        var d = try view(["a", "b", "c"])
        _ = d.replaceAll(with: [member("b"), member("svc4")])
        XCTAssertEqual(names(d.members(including: nil)), ["b"], "svc4 registered in the same etcd: not a member")
        d.nameBySetpeer("svc4")
        XCTAssertEqual(names(d.members(including: nil)), ["b", "svc4"])
        // A worker (its --peer list rewritten without its siblings) admits every record under the prefix.
        var worker = try view(["a", "b"], onlyListed: false)
        _ = worker.replaceAll(with: [member("b"), member("a-1"), member("svc4")])
        XCTAssertEqual(names(worker.members(including: nil)), ["a-1", "b", "svc4"])
    }

    func testStaticEntriesStayWhateverEtcdSays() throws {
        var d = try view(["a=127.0.0.1:8001", "b=127.0.0.1:8002", "c"])
        XCTAssertEqual(names(d.members(including: nil)), ["b"])
        _ = d.replaceAll(with: [member("c")])
        XCTAssertEqual(names(d.members(including: nil)), ["b", "c"])
        _ = d.replaceAll(with: [])
        XCTAssertEqual(d.delete("b"), .init())
        XCTAssertEqual(d.members(including: nil), [Member(name: "b", peer: HostPort(host: "127.0.0.1", port: 8002))])
    }

    func testASpringcacheNodesOwnKeyCountsUntilItRegistersARecordOfOurs() throws {
        var d = try view(["a", "svc2"])
        XCTAssertTrue(d.foundSpringcacheAddress(of: "svc2", HostPort(host: "10.0.0.2", port: 8888)))
        XCTAssertEqual(d.members(including: nil), [member("svc2", "10.0.0.2")])
        // Our record says more (the API address) and wins; the springcache key found later is ignored.
        let record = Member(name: "svc2", peer: HostPort(host: "10.0.0.3", port: 8888), api: "10.0.0.3:9999")
        XCTAssertEqual(d.put(record), .init(joined: [record]))
        XCTAssertEqual(d.members(including: nil), [record])
        XCTAssertFalse(d.foundSpringcacheAddress(of: "svc2", HostPort(host: "10.0.0.2", port: 8888)))
        XCTAssertEqual(d.members(including: nil), [record])
    }
}

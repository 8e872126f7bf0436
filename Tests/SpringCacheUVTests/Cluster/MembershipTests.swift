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

/// springcache's membership rule: with `--peer`, the members are exactly its names (anything else registered
/// in the same etcd stays out); without it, everything under the cluster's prefix.
final class MembershipFilterTests: XCTestCase {
    private let discovered = ["svc1", "svc2", "svc4"].map {
        Member(name: $0, peer: HostPort(host: "10.0.0.1", port: 8888))
    }

    func testAPeerListAdmitsExactlyItsNames() throws {
        let cases: [([String], Set<String>, [String])] = [
            (["svc1", "svc2"], [], ["svc1", "svc2"]),
            (["svc1", "svc2=10.0.0.2:8888"], [], ["svc1", "svc2"]),
            (["svc1"], [], ["svc1"]),
            (["svc1", "svc2"], ["svc4"], ["svc1", "svc2", "svc4"]),   // named by /setpeer
            ([], [], ["svc1", "svc2", "svc4"]),                     // no --peer: the whole prefix
        ]
        for (peers, extra, expected) in cases {
            let statics = try StaticMembership.parse(peers, selfName: "svc1")
            XCTAssertEqual(statics.admitted(discovered, alsoNamed: extra).map(\.name), expected, "\(peers) \(extra)")
        }
    }

    func testTheDefaultClusterKeepsTheExistingPrefix() {
        var config = NodeConfig()
        XCTAssertEqual(config.membersPrefix, "springcache/members/")
        XCTAssertEqual(config.membersPrefix, EtcdRegistrar.membersPrefix)
        config.clusterName = "blue"
        XCTAssertEqual(config.membersPrefix, "blue/members/")
        let entries = EtcdRegistrar.entries(name: "a", peer: HostPort(host: "10.0.0.1", port: 8888), api: nil,
                                            membersPrefix: config.membersPrefix)
        XCTAssertEqual(entries.map { String(decoding: $0.key, as: UTF8.self) },
                       ["blue/members/a", "a", "a/10.0.0.1:8888"], "springcache's own keys do not move")
    }
}

/// What a node advertises as its own peer address (DESIGN, "Addresses").
final class SelfAddressTests: XCTestCase {
    func testTheAdvertisedAddressIsNeverWildcardOrLoopbackWhenOneIsKnown() throws {
        // (--peer entries, IP_ADDRESS, API host, expected peer address)
        let cases: [([String], String?, String, String)] = [
            ([], "10.0.0.2", "0.0.0.0", "10.0.0.2:8888"),                     // IP_ADDRESS, even if not local
            ([], nil, "127.0.0.1", "127.0.0.1:8888"),                        // nothing better known
            (["a=127.0.0.1:8001"], "10.0.0.2", "127.0.0.1", "10.0.0.2:8001"),  // loopback listed: advertise wins
            (["a=0.0.0.0:8001"], "10.0.0.2", "127.0.0.1", "10.0.0.2:8001"),
            (["a=10.0.0.9:8001"], "10.0.0.2", "127.0.0.1", "10.0.0.9:8001"),   // a real listed address stays
            (["a=127.0.0.1:8001"], nil, "127.0.0.1", "127.0.0.1:8001"),
        ]
        for (peers, advertise, apiHost, expected) in cases {
            var config = NodeConfig()
            config.name = "a"
            config.peers = peers
            config.advertiseHost = advertise
            config.api = HostPort(host: apiHost, port: 9999)
            let statics = try StaticMembership.parse(peers, selfName: "a")
            XCTAssertEqual(Node.selfMember(config: config, statics: statics).peer?.description, expected,
                           "\(peers) \(advertise ?? "-") \(apiHost)")
        }
    }
}

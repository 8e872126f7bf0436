import XCTest

@testable import SpringCacheUV

/// The mapping of REAL gateway replies (etcd 3.4.23 from Debian, captured with curl) into values, members and
/// events; and the request bodies and keys we send.
final class EtcdGatewayTests: XCTestCase {
    static let header = #"{"cluster_id":"15118495548433857066","member_id":"13668033151171901709","revision":"6","raft_term":"2"}"#

    /// `curl -sN -X POST $E/v3/watch -d '{"create_request":{"key":B64("springcache/members/"),...}}'` while a
    /// member n1 registered on a 2 s lease, n2 was put without value and deleted, and n1's lease expired.
    static let watchLines = [
        #"{"result":{"header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709","revision":"1","raft_term":"2"},"created":true}}"#,
        #"{"result":{"header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709","revision":"2","raft_term":"2"},"events":[{"kv":{"key":"c3ByaW5nY2FjaGUvbWVtYmVycy9uMQ==","create_revision":"2","mod_revision":"2","version":"1","value":"eyJuYW1lIjoibjEiLCJwZWVyIjoiMTI3LjAuMC4xOjgwMDEiLCJhcGkiOiIxMjcuMC4wLjE6OTAwMSJ9","lease":"4111120238050749198"}}]}}"#,
        #"{"result":{"header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709","revision":"3","raft_term":"2"},"events":[{"kv":{"key":"c3ByaW5nY2FjaGUvbWVtYmVycy9uMg==","create_revision":"3","mod_revision":"3","version":"1"}}]}}"#,
        #"{"result":{"header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709","revision":"4","raft_term":"2"},"events":[{"type":"DELETE","kv":{"key":"c3ByaW5nY2FjaGUvbWVtYmVycy9uMg==","mod_revision":"4"}}]}}"#,
        #"{"result":{"header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709","revision":"5","raft_term":"2"},"events":[{"type":"DELETE","kv":{"key":"c3ByaW5nY2FjaGUvbWVtYmVycy9uMQ==","mod_revision":"5"}}]}}"#,
    ]

    /// A watch started at a compacted revision: created, then canceled (the stream stays open).
    static let compactedLines = [
        #"{"result":{"header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709","revision":"5","raft_term":"2"},"created":true}}"#,
        #"{"result":{"header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709","raft_term":"2"},"canceled":true,"compact_revision":"4"}}"#,
    ]

    static let n1Value = Array(#"{"name":"n1","peer":"127.0.0.1:8001","api":"127.0.0.1:9001"}"#.utf8)
    static let prefix = Array("springcache/members/".utf8)

    func testGrantReply() throws {
        let reply = try JSONValue.parse(#"{"header":\#(Self.header),"ID":"4111120238050749207","TTL":"10"}"#)
        XCTAssertEqual(try EtcdGateway.parseGrant(reply), EtcdLease(id: 4111120238050749207, ttlSeconds: 10))
        XCTAssertThrowsError(try EtcdGateway.parseGrant(try JSONValue.parse(#"{"header":\#(Self.header)}"#)))
        XCTAssertThrowsError(try EtcdGateway.parseGrant(try JSONValue.parse(#"{"ID":"x1","TTL":"10"}"#)))
    }

    func testKeepAliveReplies() throws {
        let alive = #"{"result":{"header":\#(Self.header),"ID":"4111120238050749207","TTL":"10"}}"#
        XCTAssertEqual(try EtcdGateway.parseKeepAlive(try JSONValue.parse(alive)), 10)
        // An expired or unknown lease: 200 with no TTL.
        let gone = #"{"result":{"header":\#(Self.header),"ID":"4111120238050749198"}}"#
        XCTAssertEqual(try EtcdGateway.parseKeepAlive(try JSONValue.parse(gone)), 0)
        XCTAssertThrowsError(try EtcdGateway.parseKeepAlive(try JSONValue.parse(#"{"header":{}}"#)))
    }

    func testRangeReplies() throws {
        let reply = #"{"header":\#(Self.header),"kvs":[{"key":"c3ByaW5nY2FjaGUvbWVtYmVycy9uMQ==","create_revision":"2","mod_revision":"2","version":"1","value":"eyJuYW1lIjoibjEiLCJwZWVyIjoiMTI3LjAuMC4xOjgwMDEiLCJhcGkiOiIxMjcuMC4wLjE6OTAwMSJ9","lease":"4111120238050749198"},{"key":"c3ByaW5nY2FjaGUvbWVtYmVycy9uMg==","create_revision":"3","mod_revision":"3","version":"1"}],"count":"2"}"#
        let range = try EtcdGateway.parseRange(try JSONValue.parse(reply))
        XCTAssertEqual(range.revision, 6)
        XCTAssertEqual(range.kvs, [
            EtcdKeyValue(key: Array("springcache/members/n1".utf8), value: Self.n1Value, lease: 4111120238050749198,
                         createRevision: 2, modRevision: 2, version: 1),
            EtcdKeyValue(key: Array("springcache/members/n2".utf8), value: [], lease: 0, createRevision: 3,
                         modRevision: 3, version: 1),
        ])
        let empty = try EtcdGateway.parseRange(try JSONValue.parse(#"{"header":\#(Self.header)}"#))
        XCTAssertEqual(empty, EtcdRangeResult(revision: 6, kvs: []))
        XCTAssertThrowsError(try EtcdGateway.parseRange(try JSONValue.parse(#"{"kvs":[{"key":"!!"}]}"#)))
        XCTAssertThrowsError(try EtcdGateway.parseRange(try JSONValue.parse(#"{"kvs":{}}"#)))
    }

    func testWatchLines() throws {
        let messages = try Self.watchLines.map { try EtcdGateway.parseWatchLine(Array($0.utf8)) }
        let n1 = Array("springcache/members/n1".utf8), n2 = Array("springcache/members/n2".utf8)
        XCTAssertEqual(messages, [
            .created(revision: 1),
            .events(revision: 2, [EtcdEvent(kind: .put, kv: EtcdKeyValue(key: n1, value: Self.n1Value,
                                                                          lease: 4111120238050749198, createRevision: 2,
                                                                          modRevision: 2, version: 1))]),
            .events(revision: 3, [EtcdEvent(kind: .put, kv: EtcdKeyValue(key: n2, value: [], createRevision: 3,
                                                                          modRevision: 3, version: 1))]),
            .events(revision: 4, [EtcdEvent(kind: .delete, kv: EtcdKeyValue(key: n2, value: [], modRevision: 4))]),
            .events(revision: 5, [EtcdEvent(kind: .delete, kv: EtcdKeyValue(key: n1, value: [], modRevision: 5))]),
        ])
        let compacted = try Self.compactedLines.map { try EtcdGateway.parseWatchLine(Array($0.utf8)) }
        XCTAssertEqual(compacted, [.created(revision: 5), .canceled(compactRevision: 4, reason: "")])
        let failed = #"{"error":{"grpc_code":14,"http_code":503,"message":"transport is closing","http_status":"Service Unavailable"}}"#
        XCTAssertEqual(try EtcdGateway.parseWatchLine(Array(failed.utf8)), .failed("transport is closing"))
        for bad in ["{", "[]", #"{"result":{"events":[{"type":"PATCH","kv":{"key":"YQ=="}}]}}"#,
                    #"{"result":{"events":[{}]}}"#, #"{"other":1}"#] {
            XCTAssertThrowsError(try EtcdGateway.parseWatchLine(Array(bad.utf8)), bad)
        }
    }

    func testEventsBecomeMembers() throws {
        guard case .events(_, let events) = try EtcdGateway.parseWatchLine(Array(Self.watchLines[1].utf8)) else {
            return XCTFail("no events")
        }
        let member = try EtcdDiscovery.member(key: events[0].kv.key, value: events[0].kv.value, prefix: Self.prefix).get()
        XCTAssertEqual(member, Member(name: "n1", peer: HostPort(host: "127.0.0.1", port: 8001), api: "127.0.0.1:9001"))
        guard case .events(_, let deletes) = try EtcdGateway.parseWatchLine(Array(Self.watchLines[4].utf8)) else {
            return XCTFail("no events")
        }
        XCTAssertEqual(EtcdDiscovery.name(fromKey: deletes[0].kv.key, prefix: Self.prefix), "n1")
    }

    func testMalformedMemberRecordsAreSkipped() {
        let key = Array("springcache/members/a".utf8)
        let cases: [(String, [UInt8])] = [
            ("not json", Array("not json".utf8)),  // real value "bm90IGpzb24=" put with curl
            ("empty", []),
            ("array", Array("[]".utf8)),
            ("no peer", Array(#"{"name":"a"}"#.utf8)),
            ("bad peer", Array(#"{"name":"a","peer":"nohost"}"#.utf8)),
            ("other name", Array(#"{"name":"b","peer":"h:1"}"#.utf8)),
            ("api not a string", Array(#"{"name":"a","peer":"h:1","api":5}"#.utf8)),
        ]
        for (what, value) in cases {
            if case .success(let m) = EtcdDiscovery.member(key: key, value: value, prefix: Self.prefix) {
                XCTFail("\(what) accepted as \(m)")
            }
        }
        XCTAssertNil(EtcdDiscovery.name(fromKey: Array("springcache/members/".utf8), prefix: Self.prefix))
        XCTAssertNil(EtcdDiscovery.name(fromKey: Array("other/a".utf8), prefix: Self.prefix))
        let minimal = EtcdDiscovery.member(key: key, value: Array(#"{"peer":"[::1]:80"}"#.utf8), prefix: Self.prefix)
        XCTAssertEqual(try minimal.get(), Member(name: "a", peer: HostPort(host: "::1", port: 80), api: nil))
    }

    func testRequestBodies() throws {
        XCTAssertEqual(String(decoding: EtcdGateway.grantBody(ttlSeconds: 10), as: UTF8.self), #"{"TTL":"10"}"#)
        XCTAssertEqual(String(decoding: EtcdGateway.putBody(key: Array("a".utf8), value: Array("x".utf8),
                                                            lease: 4111120238050749207), as: UTF8.self),
                       #"{"key":"YQ==","value":"eA==","lease":"4111120238050749207"}"#)
        XCTAssertEqual(String(decoding: EtcdGateway.putBody(key: Array("a".utf8), value: [], lease: 0), as: UTF8.self),
                       #"{"key":"YQ==","value":""}"#)
        XCTAssertEqual(String(decoding: EtcdGateway.leaseBody(id: -5), as: UTF8.self), #"{"ID":"-5"}"#)
        XCTAssertEqual(String(decoding: EtcdGateway.watchBody(key: Self.prefix, rangeEnd: EtcdGateway.prefixRangeEnd(Self.prefix),
                                                              startRevision: 7), as: UTF8.self),
                       #"{"create_request":{"key":"c3ByaW5nY2FjaGUvbWVtYmVycy8=","range_end":"c3ByaW5nY2FjaGUvbWVtYmVyczA=","start_revision":"7"}}"#)
    }

    func testPrefixRangeEnd() {
        XCTAssertEqual(EtcdGateway.prefixRangeEnd(Array("springcache/nodes/".utf8)), Array("springcache/nodes0".utf8))
        XCTAssertEqual(EtcdGateway.prefixRangeEnd([0x61, 0xFF, 0xFF]), [0x62])
        XCTAssertEqual(EtcdGateway.prefixRangeEnd([0xFF]), [0])
        XCTAssertEqual(EtcdGateway.prefixRangeEnd([]), [0])
    }

    func testRegisteredEntries() {
        let entries = EtcdRegistrar.entries(name: "svc1", peer: HostPort(host: "10.0.0.165", port: 8888),
                                            api: "10.0.0.165:9999")
        let text = entries.map { (String(decoding: $0.key, as: UTF8.self), String(decoding: $0.value, as: UTF8.self)) }
        XCTAssertEqual(text.map(\.0), ["springcache/members/svc1", "svc1", "svc1/10.0.0.165:8888"])
        XCTAssertEqual(text.map(\.1), [#"{"name":"svc1","peer":"10.0.0.165:8888","api":"10.0.0.165:9999"}"#,
                                       "10.0.0.165:8888",
                                       #"{"Op":0,"Addr":"10.0.0.165:8888","Metadata":null}"#])
        // What we register, discovery reads back.
        XCTAssertEqual(try EtcdDiscovery.member(key: entries[0].key, value: entries[0].value, prefix: Self.prefix).get(),
                       Member(name: "svc1", peer: HostPort(host: "10.0.0.165", port: 8888), api: "10.0.0.165:9999"))
    }

    func testEndpointsAndErrors() throws {
        XCTAssertEqual(try EtcdClient.parseEndpoints(["a:2379", " http://b:1/ ", ""]), ["http://a:2379", "http://b:1"])
        for bad in [[], [""], ["a"], ["a:0"], ["https://a:1"], ["a:b"]] {
            XCTAssertThrowsError(try EtcdClient.parseEndpoints(bad), "\(bad)")
        }
        let notFound = #"{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":5}"#
        let result = EtcdClient.interpret(.response(status: 404, body: Array(notFound.utf8)), endpoint: "http://e:1",
                                          parse: EtcdGateway.parsePut)
        XCTAssertEqual(result, .failure(.httpStatus(endpoint: "http://e:1", status: 404,
                                                    message: "etcdserver: requested lease not found")))
        XCTAssertTrue(EtcdError.httpStatus(endpoint: "", status: 404, message: "").isNotFound)
        let garbage = EtcdClient.interpret(.response(status: 200, body: Array("<html>".utf8)), endpoint: "http://e:1",
                                           parse: EtcdGateway.parsePut)
        guard case .failure(.malformedReply(_, let message)) = garbage else { return XCTFail("\(garbage)") }
        XCTAssertTrue(message.contains("<html>"), message)
        let refused = EtcdClient.interpret(.failed(CurlFailure(kind: .connectFailed, message: "refused")),
                                           endpoint: "http://e:1", parse: EtcdGateway.parsePut)
        XCTAssertEqual(refused, .failure(.unreachable(endpoint: "http://e:1", message: "refused")))
    }
}

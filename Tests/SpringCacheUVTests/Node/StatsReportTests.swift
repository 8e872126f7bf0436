import Foundation
import XCTest
@testable import SpringCacheUV

/// /api/stats, /metrics and /api/peers rendered from a `NodeStats` value: no loop, no socket.
final class StatsReportTests: XCTestCase {
    private func json(_ body: (inout ByteBuffer) -> Void) throws -> [String: Any] {
        let text = renderedText(body)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], text)
    }

    /// The keys of the top-level object in the order written (JSONSerialization forgets the order).
    private func topLevelKeys(_ text: String) -> [String] {
        var keys: [String] = []
        var depth = 0
        var i = text.startIndex
        while i < text.endIndex {
            let c = text[i]
            if c == "{" || c == "[" { depth += 1 }
            if c == "}" || c == "]" { depth -= 1 }
            if c == "\"" {
                let start = text.index(after: i)
                let end = text[start...].firstIndex(of: "\"")!
                if depth == 1, text[text.index(after: end)] == ":" { keys.append(String(text[start..<end])) }
                i = end
            }
            i = text.index(after: i)
        }
        return keys
    }

    private func sampleStats(clustered: Bool) -> NodeStats {
        var config = NodeConfig()
        config.name = "n1"
        config.workerIndex = 2
        var group = GroupStats()
        group.gets = 10
        group.hits = 7
        group.hotHits = 2
        group.misses = 3
        group.loadsInFlight = 1
        group.main.items = 5
        group.main.bytes = 500
        group.main.capacityBytes = 1000
        group.hot.items = 1
        group.hot.capacityBytes = 100
        group.peerFetches = 4
        var s = NodeStats(config: config, group: group)
        s.uptimeMillis = 61_500
        s.openConnections = 3
        s.connections.accepted = 9
        s.connections.timeouts = 1
        var server = GRPCServerStats()
        server.calls = 12
        server.answers[GRPCStatus.ok.rawValue] = 10
        server.answers[GRPCStatus.notFound.rawValue] = 2
        server.deadlineExceeded = 1
        server.bufferedBytes = 77
        server.headerListViolations = 4
        server.openConnections = 5
        s.peerServer = server
        var etcd = EtcdMembershipStats()
        etcd.registered = true
        etcd.client.calls = 40
        etcd.client.endpointRotations = 2
        etcd.registrar.grants = 1
        etcd.registrar.reRegistrations = 3
        etcd.discovery.snapshots = 2
        etcd.discovery.puts = 5
        etcd.discovery.deletes = 1
        etcd.probe.probes = 6
        etcd.probe.recoveries = 1
        s.etcd = etcd
        if clustered {
            var cluster = ClusterReport(selfName: "n1", members: [
                .init(name: "n1", api: nil, peer: "10.0.0.1:8888", up: true, share: 0.5),
                .init(name: "n2", api: "10.0.0.2:9999", peer: "10.0.0.2:8888", up: true, share: 0.5),
                .init(name: "n3", api: nil, peer: "10.0.0.3:8888", up: false, share: 0),
            ])
            cluster.stats.peerCalls = 8
            var client = GRPCClientStats()
            client.calls = 8
            client.succeeded = 6
            client.failures[GRPCStatus.unavailable.rawValue] = 2
            client.connectAttempts = 3
            client.reconnects = 1
            client.inFlight = 2
            cluster.clients = ["n2": client, "n3": GRPCClientStats()]
            s.cluster = cluster
        }
        return s
    }

    func testStatsKeepTheirKeysInOrderAndAddThePeerPortAndEtcdAfterThem() throws {
        let stats = sampleStats(clustered: true)
        let text = renderedText { StatsReport.writeJSON(into: &$0, stats) }
        // The keys springcache-uv has always written, in their order; new ones only after them.
        XCTAssertEqual(topLevelKeys(text), [
            "name", "worker", "pid", "group", "uptime_seconds", "version", "rss_bytes", "open_fds", "config",
            "gets", "hits", "hot_hits", "misses", "loads", "load_errors", "load_not_found", "negative_hits",
            "stale_served", "sets", "deletes", "loads_in_flight", "caches", "cluster", "http",
            "peer_server", "peer_clients", "etcd",
        ])
        let j = try json { StatsReport.writeJSON(into: &$0, stats) }
        XCTAssertEqual(j["name"] as? String, "n1")
        XCTAssertEqual(j["worker"] as? Int, 2)
        XCTAssertEqual(j["uptime_seconds"] as? Int, 61)
        XCTAssertEqual(j["loads_in_flight"] as? Int, 1)
        let caches = try XCTUnwrap(j["caches"] as? [String: [String: Int]])
        XCTAssertEqual(caches["main"], ["items": 5, "bytes": 500, "capacity_bytes": 1000, "evictions": 0,
                                        "expirations": 0, "pinned_bytes": 0])
        XCTAssertEqual(caches["hot"]?["capacity_bytes"], 100)
        let cluster = try XCTUnwrap(j["cluster"] as? [String: Int])
        XCTAssertEqual(cluster["members"], 3)
        XCTAssertEqual(cluster["members_down"], 1)
        XCTAssertEqual(cluster["peer_fetches"], 4)
        let http = try XCTUnwrap(j["http"] as? [String: Int])
        XCTAssertEqual(http["connections_open"], 3)
        XCTAssertEqual(http["connections_accepted"], 9)

        let server = try XCTUnwrap(j["peer_server"] as? [String: Any])
        XCTAssertEqual(server["calls"] as? Int, 12)
        XCTAssertEqual(server["answers"] as? [String: Int], ["OK": 10, "NOT_FOUND": 2])
        XCTAssertEqual(server["deadline_exceeded"] as? Int, 1)
        XCTAssertEqual(server["buffered_bytes"] as? Int, 77)
        XCTAssertEqual(server["header_list_violations"] as? Int, 4)
        XCTAssertEqual(server["connections_open"] as? Int, 5)
        let clients = try XCTUnwrap(j["peer_clients"] as? [String: [String: Any]])
        XCTAssertEqual(Set(clients.keys), ["n2", "n3"])
        XCTAssertEqual(clients["n2"]?["calls"] as? Int, 8)
        XCTAssertEqual(clients["n2"]?["failures"] as? [String: Int], ["UNAVAILABLE": 2])
        XCTAssertEqual(clients["n2"]?["in_flight"] as? Int, 2)
        let etcd = try XCTUnwrap(j["etcd"] as? [String: Any])
        XCTAssertEqual(etcd["registered"] as? Bool, true)
        XCTAssertEqual(etcd["watching"] as? Bool, false)
        XCTAssertEqual(etcd["calls"] as? Int, 40)
        XCTAssertEqual(etcd["endpoint_rotations"] as? Int, 2)
        XCTAssertEqual(etcd["reregistrations"] as? Int, 3)
        XCTAssertEqual(etcd["member_puts"] as? Int, 5)
        XCTAssertEqual(etcd["reconnect_recoveries"] as? Int, 1)
    }

    func testASingleNodeWithoutPeerPortOrEtcdHasNoneOfTheirKeys() throws {
        var stats = sampleStats(clustered: false)
        stats.peerServer = nil
        stats.etcd = nil
        let j = try json { StatsReport.writeJSON(into: &$0, stats) }
        for key in ["cluster", "peer_server", "peer_clients", "etcd"] { XCTAssertNil(j[key], key) }
        XCTAssertNotNil(j["http"])
    }

    func testMetricsCarryThePeerPortClientsAndEtcdUnderTheNodesLabels() {
        let text = renderedText { StatsReport.writePrometheus(into: &$0, sampleStats(clustered: true)) }
        let expected = [
            #"springcache_cache_items{node="n1",worker="2",cache="main"} 5"#,
            #"springcache_cache_capacity_bytes{node="n1",worker="2",cache="hot"} 100"#,
            #"springcache_loads_in_flight{node="n1",worker="2"} 1"#,
            #"springcache_uptime_seconds{node="n1",worker="2"} 61"#,
            #"springcache_cluster_members_down{node="n1",worker="2"} 1"#,
            #"springcache_peer_up{node="n1",worker="2",peer="n3"} 0"#,
            #"springcache_etcd_registered{node="n1",worker="2"} 1"#,
            #"springcache_etcd_watch_events_total{node="n1",worker="2"} 6"#,
            #"springcache_etcd_reregistrations_total{node="n1",worker="2"} 3"#,
            #"springcache_etcd_calls_total{node="n1",worker="2"} 40"#,
            #"springcache_etcd_endpoint_rotations_total{node="n1",worker="2"} 2"#,
            #"springcache_etcd_reconnect_probes_total{node="n1",worker="2"} 6"#,
            #"springcache_grpc_server_calls_total{node="n1",worker="2"} 12"#,
            #"springcache_grpc_server_answers_total{node="n1",worker="2",code="OK"} 10"#,
            #"springcache_grpc_server_answers_total{node="n1",worker="2",code="NOT_FOUND"} 2"#,
            #"springcache_grpc_server_deadline_exceeded_total{node="n1",worker="2"} 1"#,
            #"springcache_grpc_server_buffered_bytes{node="n1",worker="2"} 77"#,
            #"springcache_grpc_server_header_list_violations_total{node="n1",worker="2"} 4"#,
            #"springcache_grpc_server_connections_open{node="n1",worker="2"} 5"#,
            #"springcache_grpc_client_calls_total{node="n1",worker="2",peer="n2"} 8"#,
            #"springcache_grpc_client_calls_total{node="n1",worker="2",peer="n3"} 0"#,
            #"springcache_grpc_client_failures_total{node="n1",worker="2",peer="n2",code="UNAVAILABLE"} 2"#,
            #"springcache_grpc_client_reconnects_total{node="n1",worker="2",peer="n2"} 1"#,
            #"springcache_grpc_client_in_flight{node="n1",worker="2",peer="n2"} 2"#,
        ]
        let lines = Set(text.split(separator: "\n").map(String.init))
        for line in expected { XCTAssertTrue(lines.contains(line), "missing: \(line)") }
        XCTAssertFalse(text.contains(#"code="CANCELLED""#), "codes never seen are left out")
        // Every family is announced once, before its samples.
        var announced = Set<String>()
        for line in text.split(separator: "\n") where line.hasPrefix("# TYPE ") {
            let name = String(line.split(separator: " ")[2])
            XCTAssertTrue(announced.insert(name).inserted, "family \(name) announced twice")
        }
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let name = String(line.prefix { $0 != "{" && $0 != " " })
            let family = ["_bucket", "_sum", "_count"].reduce(name) { n, suffix in
                n.hasSuffix(suffix) && announced.contains(String(n.dropLast(suffix.count)))
                    ? String(n.dropLast(suffix.count)) : n
            }
            XCTAssertTrue(announced.contains(family), "sample of an unannounced family: \(line)")
        }
    }

    func testASingleNodeHasNoPeerOrEtcdFamilies() {
        var stats = sampleStats(clustered: false)
        stats.peerServer = nil
        stats.etcd = nil
        let text = renderedText { StatsReport.writePrometheus(into: &$0, stats) }
        for prefix in ["springcache_grpc_", "springcache_etcd_", "springcache_peer_", "springcache_cluster_"] {
            XCTAssertFalse(text.contains(prefix), prefix)
        }
        XCTAssertTrue(text.contains("springcache_gets_total"))
    }

    func testPeersListEveryMemberWithItsStateAndThisNodesAPIAddress() throws {
        let cluster = sampleStats(clustered: true).cluster
        let j = try json {
            StatsReport.writePeersJSON(into: &$0, selfName: "n1", selfAPI: "10.0.0.1:9999", cluster: cluster)
        }
        XCTAssertEqual(j["self"] as? String, "n1")
        let members = try XCTUnwrap(j["members"] as? [[String: Any]])
        XCTAssertEqual(members.map { $0["name"] as? String }, ["n1", "n2", "n3"])
        XCTAssertEqual(members[0]["api"] as? String, "10.0.0.1:9999")
        XCTAssertEqual(members[0]["self"] as? Bool, true)
        XCTAssertEqual(members[1]["api"] as? String, "10.0.0.2:9999")
        XCTAssertTrue(members[2]["api"] is NSNull)
        XCTAssertEqual(members[2]["state"] as? String, "down")
        XCTAssertEqual(members[2]["share"] as? Double, 0)

        let alone = try json {
            StatsReport.writePeersJSON(into: &$0, selfName: "solo", selfAPI: "127.0.0.1:9999", cluster: nil)
        }
        let only = try XCTUnwrap((alone["members"] as? [[String: Any]])?.first)
        XCTAssertEqual(only["name"] as? String, "solo")
        XCTAssertEqual(only["share"] as? Double, 1)
        XCTAssertTrue(only["peer"] is NSNull)
    }

    func testGroupStatsCarryBothCachesGauges() {
        let clock = ManualClock(nowMillis: 1_000)
        let config = CacheConfig(cacheBytes: 1 << 20, hotBytes: 1 << 16, jitterMillis: 0)
        let group = Group(name: "g", config: config, clock: clock, random: FastRandom(), loader: DemoOrigin())
        group.set(key: "a", value: Array("1".utf8), ttlMillis: nil, hot: false)
        group.set(key: "b", value: Array("22".utf8), ttlMillis: nil, hot: true)
        let s = group.stats
        XCTAssertEqual(s.main.items, 1)
        XCTAssertEqual(s.hot.items, 1)
        XCTAssertEqual(s.main.capacityBytes, 1 << 20)
        XCTAssertEqual(s.hot.capacityBytes, 1 << 16)
        XCTAssertEqual(s.main.bytes, group.mainBytes)
        XCTAssertGreaterThan(s.hot.bytes, 2)
        XCTAssertEqual(s.loadsInFlight, 0)
    }
}

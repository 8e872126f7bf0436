#if canImport(Glibc)
import Glibc
#endif

/// A node's numbers at one moment: who the node is, and each subsystem's own stats snapshot, copied out.
///
/// Why a value assembled here rather than a renderer that reaches into every subsystem: each room exports
/// its plain stats struct and knows nothing of the pages; `Node` (which wires everything) gathers them
/// (`Node.stats(requests:)`), and `StatsReport` renders /api/stats, /metrics and /api/peers from this value alone,
/// so the pages are unit-tested without a loop or a socket.
struct NodeStats {
    var name: String
    var workerIndex: Int?
    var pid: Int = Int(getpid())
    var uptimeMillis: Int64 = 0
    /// The configuration as the node runs it (the `config` object of /api/stats, the origin timeout).
    var config: NodeConfig
    var process = ProcessMetrics()
    var group: GroupStats
    var requests = RequestStats()
    var connections = ConnectionStats()
    var openConnections = 0
    var cluster: ClusterReport?
    /// The peer port's server, when this node listens for peers.
    var peerServer: GRPCServerStats?
    var etcd: EtcdMembershipStats?
    /// The HTTP origin's counters, when the origin is one.
    var origin: OriginStats?
    /// Failed access-log writes, when there is an access log.
    var accessLogWriteErrors: UInt64?

    init(config: NodeConfig, group: GroupStats) {
        self.config = config
        name = config.name
        workerIndex = config.workerIndex
        self.group = group
    }
}

/// The cluster as the pages show it: members (with their addresses, state and share of the ring), the
/// cluster's call counters, and each peer client's transport counters.
struct ClusterReport {
    struct Member: Equatable {
        var name: String
        var api: String?
        var peer: String?
        var up: Bool
        var share: Double
    }

    var selfName: String
    /// Every member, this node included, sorted by name.
    var members: [Member]
    var stats = ClusterStats()
    var perPeer: [String: PeerCallStats] = [:]
    /// The gRPC client of each peer that has one now (a client replaced after an address change starts at 0).
    var clients: [String: GRPCClientStats] = [:]

    var membersDown: Int { members.filter { !$0.up }.count }

    init(selfName: String, members: [Member]) {
        self.selfName = selfName
        self.members = members
    }

    init(_ cluster: Cluster) {
        selfName = cluster.selfName
        members = cluster.members.keys.sorted().map { name in
            let m = cluster.members[name]!
            let up = !cluster.down.contains(name)
            return Member(name: name, api: m.api, peer: m.peer?.description, up: up,
                          share: up ? cluster.ring.share(of: name) : 0)
        }
        stats = cluster.stats
        perPeer = cluster.perPeer
        clients = cluster.clientStats
    }
}

/// etcd membership's state and the counters of its four parts (client, registrar, discovery, reconnect probe).
struct EtcdMembershipStats {
    /// This node's keys are on a live lease.
    var registered = false
    /// The watch on the members prefix is established.
    var watching = false
    var client = EtcdClientStats()
    var registrar = EtcdRegistrarStats()
    var discovery = EtcdDiscoveryStats()
    var probe = EtcdReconnectProbeStats()
}

extension Node {
    /// Every subsystem's snapshot, now, with the API's request counters as the API passed them.
    func stats(requests: RequestStats) -> NodeStats {
        var s = NodeStats(config: config, group: group.stats)
        s.uptimeMillis = loop.clock.nowMillis - startedAtMillis
        s.process = ProcessMetrics.current(startTimeSeconds: processStartTime)
        s.requests = requests
        s.connections = server.stats
        s.openConnections = server.openConnections
        s.cluster = cluster.map(ClusterReport.init)
        s.peerServer = peerServer?.stats
        s.etcd = etcd?.stats
        s.origin = httpOrigin?.stats
        s.accessLogWriteErrors = accessLog?.writeErrors
        return s
    }

    /// The JSON of `GET /api/stats`.
    func writeStatsJSON(into out: inout ByteBuffer, requests: RequestStats) {
        StatsReport.writeJSON(into: &out, stats(requests: requests))
    }

    /// The Prometheus text of `GET /metrics` (the API port's and the metrics listener's).
    func writeMetrics(into out: inout ByteBuffer, requests: RequestStats) {
        StatsReport.writePrometheus(into: &out, stats(requests: requests))
    }

    /// The JSON of `GET /api/peers`.
    func writePeersJSON(into out: inout ByteBuffer) {
        let host = config.advertiseHost ?? config.api.host
        let selfAPI = HostPort(host: host, port: server.boundPort).description
        StatsReport.writePeersJSON(into: &out, selfName: config.name, selfAPI: selfAPI,
                                   cluster: cluster.map(ClusterReport.init))
    }
}

/// Renders a node's numbers: /api/stats (JSON) and /metrics (Prometheus) read the same `NodeStats`.
///
/// Names and keys are kept as springcache-uv has always written them (dashboards and scripts read them);
/// new numbers get new names, never a changed old one.
enum StatsReport {
    /// The request counters with the server's connection counters folded in.
    static func merged(_ requests: RequestStats, _ connections: ConnectionStats, open: Int) -> RequestStats {
        var r = requests
        r.connectionsAccepted = connections.accepted
        r.connectionsClosed = connections.closed
        r.connectionsRejected = connections.rejected
        r.currentConnections = open
        r.bytesIn = connections.bytesIn
        r.bytesOut = connections.bytesOut
        r.parseErrors = connections.parseErrors
        return r
    }

    static func cacheValues(_ s: GroupStats) -> [CacheMetricValues] {
        [
            CacheMetricValues(name: "main", items: s.main.items, bytes: s.main.bytes,
                              hits: s.hits - s.hotHits, misses: s.misses, loads: s.loads, loadErrors: s.loadErrors,
                              evictions: s.main.evictions, expirations: s.main.expirations),
            CacheMetricValues(name: "hot", items: s.hot.items, bytes: s.hot.bytes, hits: s.hotHits,
                              misses: 0, loads: 0, loadErrors: 0,
                              evictions: s.hot.evictions, expirations: s.hot.expirations),
        ]
    }

    // MARK: /metrics

    static func writePrometheus(into out: inout ByteBuffer, _ n: NodeStats) {
        let s = n.group
        var labels = [PrometheusLabel("node", n.name)]
        if let w = n.workerIndex { labels.append(PrometheusLabel("worker", w)) }
        PrometheusWriter.write(into: &out, constantLabels: labels) { p in
            p.caches(cacheValues(s))
            p.counter("springcache_gets_total", help: "Lookups of the group (hits, negative hits and misses).",
                      value: s.gets)
            p.counter("springcache_load_not_found_total", help: "Origin loads that answered 'not found'.",
                      value: s.loadNotFound)
            p.counter("springcache_negative_hits_total", help: "Lookups answered 'not found' from the negative cache.",
                      value: s.negativeHits)
            p.counter("springcache_stale_served_total", help: "Expired values served because a reload failed.",
                      value: s.staleServed)
            p.counter("springcache_sets_total", help: "Values stored through the API.", value: s.sets)
            p.counter("springcache_deletes_total", help: "Deletes through the API.", value: s.deletes)
            p.gauge("springcache_loads_in_flight", help: "Origin loads under way now.", value: s.loadsInFlight)
            p.requestStats(merged(n.requests, n.connections, open: n.openConnections))
            p.counter("springcache_http_timeouts_total", help: "Requests not received within the header timeout.",
                      value: n.connections.timeouts)
            p.counter("springcache_http_backpressure_pauses_total",
                      help: "Times a connection's reading stopped because its answers were not being read.",
                      value: n.connections.backpressurePauses)
            p.gauge("springcache_uptime_seconds", help: "Seconds since the node started.",
                    value: Int(n.uptimeMillis / 1000))
            p.family("springcache_cache_capacity_bytes", .gauge,
                     help: "The byte bound of the cache (--cache-bytes, --hot-bytes).")
            p.sample("springcache_cache_capacity_bytes", labels: [PrometheusLabel("cache", "main")],
                     value: s.main.capacityBytes)
            p.sample("springcache_cache_capacity_bytes", labels: [PrometheusLabel("cache", "hot")],
                     value: s.hot.capacityBytes)
            if let cluster = n.cluster { clusterMetrics(&p, cluster, s) }
            nodeMetrics(&p, n)
            if let server = n.peerServer { peerServerMetrics(&p, server) }
            if let clients = n.cluster?.clients, !clients.isEmpty { peerClientMetrics(&p, clients) }
        }
    }

    private static func clusterMetrics(_ p: inout PrometheusWriter, _ cluster: ClusterReport, _ s: GroupStats) {
        let c = cluster.stats
        p.gauge("springcache_cluster_members", help: "Members known, this node included.", value: cluster.members.count)
        p.gauge("springcache_cluster_members_down", help: "Members dropped after a failed call, not yet re-admitted.",
                value: cluster.membersDown)
        p.counter("springcache_peer_calls_total", help: "gRPC calls made to peers.", value: c.peerCalls)
        p.counter("springcache_peer_failures_total",
                  help: "Peer calls that failed in transport (refused, reset, deadline).", value: c.peerFailures)
        p.counter("springcache_peer_drops_total", help: "Times a peer was dropped from the ring.", value: c.drops)
        p.counter("springcache_peer_readmissions_total", help: "Times a dropped peer was re-admitted.",
                  value: c.readmissions)
        p.counter("springcache_invalidations_sent_total", help: "Invalidate calls sent to other members.",
                  value: c.invalidationsSent)
        p.family("springcache_peer_call_duration_seconds", .histogram, help: "Time from a peer call to its answer.")
        p.histogram("springcache_peer_call_duration_seconds", c.callLatency)
        let peers = cluster.perPeer.keys.sorted()
        p.family("springcache_peer_requests_total", .counter, help: "gRPC calls made to each peer.")
        for name in peers {
            p.sample("springcache_peer_requests_total", labels: [PrometheusLabel("peer", name)],
                     value: cluster.perPeer[name]!.calls)
        }
        p.family("springcache_peer_request_failures_total", .counter,
                 help: "Calls to each peer that failed in transport (refused, reset, deadline).")
        for name in peers {
            p.sample("springcache_peer_request_failures_total", labels: [PrometheusLabel("peer", name)],
                     value: cluster.perPeer[name]!.failures)
        }
        p.family("springcache_peer_request_duration_seconds", .histogram,
                 help: "Time from a call to each peer to its answer.")
        for name in peers {
            p.histogram("springcache_peer_request_duration_seconds", labels: [PrometheusLabel("peer", name)],
                        cluster.perPeer[name]!.latency)
        }
        p.family("springcache_peer_up", .gauge, help: "1 while the member is on this node's ring, 0 while dropped.")
        for m in cluster.members where m.name != cluster.selfName {
            p.sample("springcache_peer_up", labels: [PrometheusLabel("peer", m.name)], value: m.up ? 1 : 0)
        }
        p.counter("springcache_peer_fetches_total", help: "Misses fetched from their owner.", value: s.peerFetches)
        p.counter("springcache_peer_fetch_errors_total", help: "Fetches from an owner that failed.",
                  value: s.peerFetchErrors)
        p.counter("springcache_fallback_loads_total", help: "Keys loaded here because their owner failed.",
                  value: s.fallbackLoads)
        p.counter("springcache_hot_copies_total", help: "Values fetched from their owner kept as hot copies.",
                  value: s.hotCopies)
        p.counter("springcache_forwarded_sets_total", help: "Sets sent to the key's owner.", value: s.forwardedSets)
        p.counter("springcache_forwarded_deletes_total", help: "Deletes sent to the key's owner.",
                  value: s.forwardedDeletes)
    }

    /// The node's own families: process, build, origin, access log, etcd.
    private static func nodeMetrics(_ p: inout PrometheusWriter, _ n: NodeStats) {
        p.process(n.process)
        p.family("springcache_build_info", .gauge, help: "Always 1; the labels say which build runs.")
        p.sample("springcache_build_info", labels: [PrometheusLabel("version", BuildInfo.version),
                                                     PrometheusLabel("swift", BuildInfo.swiftVersion)], value: 1)
        p.gauge("springcache_origin_timeout_seconds", help: "The origin timeout (--origin-timeout).",
                value: Int(n.config.originTimeoutMillis / 1000))
        if let origin = n.origin {
            p.family("springcache_origin_requests_total", .counter,
                     help: "Origin loads by outcome (ok, not_found, unreachable, timeout, bad_status, …).")
            for outcome in OriginOutcome.allCases {
                p.sample("springcache_origin_requests_total", labels: [PrometheusLabel("outcome", outcome.label)],
                         value: origin.outcomes[outcome.rawValue])
            }
            p.family("springcache_origin_request_duration_seconds", .histogram,
                     help: "Time from starting an origin load to its outcome.")
            p.histogram("springcache_origin_request_duration_seconds", origin.latency)
        }
        if let errors = n.accessLogWriteErrors {
            p.counter("springcache_access_log_write_errors_total", help: "Access-log writes that failed.",
                      value: errors)
        }
        if let etcd = n.etcd { etcdMetrics(&p, etcd) }
    }

    private static func etcdMetrics(_ p: inout PrometheusWriter, _ e: EtcdMembershipStats) {
        p.gauge("springcache_etcd_registered", help: "1 while this node's keys are on a live etcd lease.",
                value: e.registered ? 1 : 0)
        p.gauge("springcache_etcd_watching", help: "1 while the watch on the members prefix is established.",
                value: e.watching ? 1 : 0)
        for c in etcdCounters where c.metric != nil { p.counter(c.metric!, help: c.help, value: e[keyPath: c.value]) }
        p.counter("springcache_etcd_watch_events_total", help: "Member puts and deletes seen on the watch.",
                  value: e.discovery.puts + e.discovery.deletes)
    }

    /// The peer port's server (gRPC): connections, calls, answers by status, limits that refused work.
    private static func peerServerMetrics(_ p: inout PrometheusWriter, _ g: GRPCServerStats) {
        for c in peerServerCounters { p.counter(c.metric!, help: c.help, value: g[keyPath: c.value]) }
        p.family("springcache_grpc_server_answers_total", .counter, help: "Answers sent, by grpc-status.")
        for (code, n) in g.answers.enumerated() where n > 0 {
            p.sample("springcache_grpc_server_answers_total",
                     labels: [PrometheusLabel("code", GRPCStatus(rawValue: code).name)], value: n)
        }
        p.gauge("springcache_grpc_server_buffered_bytes", help: "Bytes held now by peer streams and their output.",
                value: g.bufferedBytes)
        p.gauge("springcache_grpc_server_connections_open", help: "Peer connections open now.",
                value: g.openConnections)
        p.gauge("springcache_grpc_server_connections_unauthenticated",
                help: "Peer connections open now that have not authenticated yet.", value: g.unauthenticatedConnections)
    }

    /// Each peer's gRPC client: its calls and their failures by status, and its connection's life.
    private static func peerClientMetrics(_ p: inout PrometheusWriter, _ clients: [String: GRPCClientStats]) {
        let peers = clients.keys.sorted()
        for c in peerClientCounters {
            p.family(c.metric!, .counter, help: c.help)
            for peer in peers {
                p.sample(c.metric!, labels: [PrometheusLabel("peer", peer)], value: clients[peer]![keyPath: c.value])
            }
        }
        p.family("springcache_grpc_client_failures_total", .counter,
                 help: "Calls to each peer that did not end OK, by grpc-status (transport failures included).")
        for peer in peers {
            for (code, n) in clients[peer]!.failures.enumerated() where n > 0 {
                p.sample("springcache_grpc_client_failures_total",
                         labels: [PrometheusLabel("peer", peer),
                                  PrometheusLabel("code", GRPCStatus(rawValue: code).name)], value: n)
            }
        }
        p.family("springcache_grpc_client_in_flight", .gauge, help: "Calls to each peer under way now.")
        for peer in peers {
            p.sample("springcache_grpc_client_in_flight", labels: [PrometheusLabel("peer", peer)],
                     value: clients[peer]!.inFlight)
        }
    }

    // MARK: The counters both pages show

    /// One counter as both pages show it: its /api/stats key, its /metrics family (nil: JSON only, e.g. a
    /// part of a family that sums several) and help, and where to read it.
    struct Counter<Stats> {
        let key: StaticString
        let metric: StaticString?
        let help: StaticString
        let value: KeyPath<Stats, UInt64>

        init(_ key: StaticString, _ metric: StaticString?, _ help: StaticString, _ value: KeyPath<Stats, UInt64>) {
            self.key = key
            self.metric = metric
            self.help = help
            self.value = value
        }
    }

    static let peerServerCounters: [Counter<GRPCServerStats>] = [
        Counter("connections_accepted", "springcache_grpc_server_connections_accepted_total",
                "Peer connections accepted.", \.connectionsAccepted),
        Counter("connections_rejected", "springcache_grpc_server_connections_rejected_total",
                "Peer connections refused because the connection limit was reached.", \.connectionsRejected),
        Counter("connections_closed", "springcache_grpc_server_connections_closed_total", "Peer connections closed.",
                \.connectionsClosed),
        Counter("protocol_errors", "springcache_grpc_server_protocol_errors_total",
                "Peer connections closed because their input was not valid HTTP/2.", \.protocolErrors),
        Counter("header_list_violations", "springcache_grpc_server_header_list_violations_total",
                "Peer connections closed for a header list over the advertised limit.", \.headerListViolations),
        Counter("calls", "springcache_grpc_server_calls_total", "Complete unary calls handed to the service.",
                \.calls),
        Counter("deadline_exceeded", "springcache_grpc_server_deadline_exceeded_total",
                "Calls whose deadline passed before the service answered.", \.deadlineExceeded),
        Counter("cancelled", "springcache_grpc_server_cancelled_total",
                "Calls whose stream or connection closed before the service answered.", \.cancelled),
        Counter("bytes_in", "springcache_grpc_server_received_bytes_total", "Bytes read from peer connections.",
                \.bytesIn),
        Counter("bytes_out", "springcache_grpc_server_sent_bytes_total", "Bytes written to peer connections.",
                \.bytesOut),
        Counter("buffer_refusals", "springcache_grpc_server_buffer_refusals_total",
                "Requests or answers refused because a connection or the process held its byte bound.",
                \.bufferRefusals),
        Counter("stream_timeouts", "springcache_grpc_server_stream_timeouts_total",
                "Streams ended by the stream timeout.", \.streamTimeouts),
        Counter("connection_timeouts", "springcache_grpc_server_connection_timeouts_total",
                "Peer connections closed for a handshake, PING or read timeout.", \.connectionTimeouts),
        Counter("unauthenticated_evictions", "springcache_grpc_server_unauthenticated_evictions_total",
                "Unauthenticated peer connections closed to make room for a new one.", \.unauthenticatedEvictions),
        Counter("unauthenticated_requests", "springcache_grpc_server_unauthenticated_requests_total",
                "Peer requests refused for a missing or wrong peer token.", \.unauthenticatedRequests),
    ]

    static let peerClientCounters: [Counter<GRPCClientStats>] = [
        Counter("calls", "springcache_grpc_client_calls_total", "Calls started by the client of each peer.", \.calls),
        Counter("succeeded", "springcache_grpc_client_succeeded_total", "Calls to each peer answered OK.",
                \.succeeded),
        Counter("connect_attempts", "springcache_grpc_client_connect_attempts_total",
                "Connection attempts to each peer.", \.connectAttempts),
        Counter("connect_failures", "springcache_grpc_client_connect_failures_total",
                "Connection attempts to each peer that failed.", \.connectFailures),
        Counter("connections", "springcache_grpc_client_connections_total", "Connections to each peer established.",
                \.connections),
        Counter("reconnects", "springcache_grpc_client_reconnects_total",
                "Connections to each peer established after the first.", \.reconnects),
        Counter("connections_lost", "springcache_grpc_client_connections_lost_total",
                "Established connections to each peer that failed (reset, EOF, protocol error, GOAWAY).",
                \.connectionsLost),
    ]

    /// The first six families are the ones /metrics has always had, in their order.
    static let etcdCounters: [Counter<EtcdMembershipStats>] = [
        Counter("lease_grants", "springcache_etcd_lease_grants_total", "etcd leases granted to this node.",
                \.registrar.grants),
        Counter("keepalives", "springcache_etcd_keepalives_total", "Lease keepalives answered.",
                \.registrar.keepalives),
        Counter("leases_lost", "springcache_etcd_leases_lost_total", "Leases found gone and replaced.",
                \.registrar.leasesLost),
        Counter("registration_failures", "springcache_etcd_registration_failures_total",
                "Failed registration or keepalive calls.", \.registrar.failures),
        Counter("watch_failures", "springcache_etcd_watch_failures_total",
                "Failed range or watch calls on the members prefix.", \.discovery.failures),
        Counter("reregistrations", "springcache_etcd_reregistrations_total",
                "Times the keys were put again on a new lease after the first registration.",
                \.registrar.reRegistrations),
        Counter("member_snapshots", "springcache_etcd_member_snapshots_total",
                "Ranges of the members prefix read whole.", \.discovery.snapshots),
        Counter("member_puts", nil, "", \.discovery.puts),
        Counter("member_deletes", nil, "", \.discovery.deletes),
        Counter("malformed_members", "springcache_etcd_malformed_members_total",
                "Member records that could not be read.", \.discovery.malformed),
        Counter("calls", "springcache_etcd_calls_total", "Calls made to etcd's gateway.", \.client.calls),
        Counter("call_failures", "springcache_etcd_call_failures_total", "Calls to etcd that failed.",
                \.client.failures),
        Counter("endpoint_rotations", "springcache_etcd_endpoint_rotations_total",
                "Times the client moved to the next --etcd endpoint after a transport failure.",
                \.client.endpointRotations),
        Counter("watches_started", "springcache_etcd_watches_started_total", "Watches started on etcd.",
                \.client.watchesStarted),
        Counter("reconnect_probes", "springcache_etcd_reconnect_probes_total",
                "Probes sent while etcd was unreachable.", \.probe.probes),
        Counter("reconnect_recoveries", "springcache_etcd_reconnect_recoveries_total",
                "Times a probe found etcd answering again.", \.probe.recoveries),
    ]

    // MARK: /api/stats

    static func writeJSON(into out: inout ByteBuffer, _ n: NodeStats) {
        let s = n.group
        let r = merged(n.requests, n.connections, open: n.openConnections)
        JSONWriter.write(into: &out) { j in
            j.object { j in
                j.field("name", n.name)
                j.key("worker")
                if let w = n.workerIndex { j.value(w) } else { j.null() }
                j.field("pid", n.pid)
                j.field("group", n.config.group)
                j.field("uptime_seconds", Int(n.uptimeMillis / 1000))
                nodeFields(&j, n)
                j.field("gets", s.gets)
                j.field("hits", s.hits)
                j.field("hot_hits", s.hotHits)
                j.field("misses", s.misses)
                j.field("loads", s.loads)
                j.field("load_errors", s.loadErrors)
                j.field("load_not_found", s.loadNotFound)
                j.field("negative_hits", s.negativeHits)
                j.field("stale_served", s.staleServed)
                j.field("sets", s.sets)
                j.field("deletes", s.deletes)
                j.field("loads_in_flight", s.loadsInFlight)
                j.key("caches")
                j.object { j in
                    for (name, c) in [("main", s.main), ("hot", s.hot)] {
                        j.key(name)
                        j.object { j in
                            j.field("items", c.items)
                            j.field("bytes", c.bytes)
                            j.field("capacity_bytes", c.capacityBytes)
                            j.field("pinned_bytes", c.pinnedBytes)
                            j.field("evictions", c.evictions)
                            j.field("expirations", c.expirations)
                        }
                    }
                }
                if let cluster = n.cluster {
                    let c = cluster.stats
                    j.key("cluster")
                    j.object { j in
                        j.field("members", cluster.members.count)
                        j.field("members_down", cluster.membersDown)
                        j.field("peer_calls", c.peerCalls)
                        j.field("peer_failures", c.peerFailures)
                        j.field("drops", c.drops)
                        j.field("readmissions", c.readmissions)
                        j.field("peer_fetches", s.peerFetches)
                        j.field("peer_fetch_errors", s.peerFetchErrors)
                        j.field("fallback_loads", s.fallbackLoads)
                        j.field("hot_copies", s.hotCopies)
                        j.field("forwarded_sets", s.forwardedSets)
                        j.field("forwarded_deletes", s.forwardedDeletes)
                        j.field("invalidations_sent", c.invalidationsSent)
                    }
                }
                j.key("http")
                j.object { j in
                    j.field("requests", r.totalRequests)
                    j.field("connections_open", r.currentConnections)
                    j.field("connections_accepted", r.connectionsAccepted)
                    j.field("connections_rejected", r.connectionsRejected)
                    j.field("parse_errors", r.parseErrors)
                    j.field("timeouts", n.connections.timeouts)
                    j.field("bytes_in", r.bytesIn)
                    j.field("bytes_out", r.bytesOut)
                }
                // Added after the keys above (which stay as they were): the peer port and etcd.
                if let g = n.peerServer { peerServerJSON(&j, g) }
                if let clients = n.cluster?.clients, !clients.isEmpty { peerClientsJSON(&j, clients) }
                if let e = n.etcd { etcdJSON(&j, e) }
            }
        }
    }

    /// The node's own fields: version, RSS, open descriptors, the configuration it runs with.
    private static func nodeFields(_ j: inout JSONWriter, _ n: NodeStats) {
        let config = n.config
        j.field("version", BuildInfo.version)
        j.field("rss_bytes", n.process.residentBytes)
        j.field("open_fds", n.process.openFDs)
        j.key("config")
        j.object { j in
            j.field("api", config.api.description)
            j.field("peer_port", config.peerPort)
            j.key("metrics")
            if let m = config.metrics { j.value(m.description) } else { j.null() }
            j.field("origin", config.origin)
            j.field("origin_timeout", ValueParsing.formatDuration(config.originTimeoutMillis))
            j.field("cache_bytes", config.cache.cacheBytes)
            j.field("hot_bytes", config.cache.hotBytes)
            j.field("ttl", ValueParsing.formatDuration(config.cache.ttlMillis))
            j.field("jitter", ValueParsing.formatDuration(config.cache.jitterMillis))
            j.field("sliding", config.cache.sliding)
            j.field("etcd", config.etcdEndpoints.joined(separator: ","))
            j.field("auth", config.authToken != nil)
            j.field("access_log", config.accessLogPath != nil)
        }
    }

    /// `answers` and `failures` objects: grpc-status name → count, the codes seen only.
    private static func statusCounts(_ j: inout JSONWriter, _ key: StaticString, _ counts: [UInt64]) {
        j.key(key)
        j.object { j in
            for (code, n) in counts.enumerated() where n > 0 {
                j.key(GRPCStatus(rawValue: code).name)
                j.value(n)
            }
        }
    }

    private static func peerServerJSON(_ j: inout JSONWriter, _ g: GRPCServerStats) {
        j.key("peer_server")
        j.object { j in
            for c in peerServerCounters { j.field(c.key, g[keyPath: c.value]) }
            statusCounts(&j, "answers", g.answers)
            j.field("buffered_bytes", g.bufferedBytes)
            j.field("connections_open", g.openConnections)
            j.field("connections_unauthenticated", g.unauthenticatedConnections)
        }
    }

    private static func peerClientsJSON(_ j: inout JSONWriter, _ clients: [String: GRPCClientStats]) {
        j.key("peer_clients")
        j.object { j in
            for peer in clients.keys.sorted() {
                let stats = clients[peer]!
                j.key(peer)
                j.object { j in
                    for c in peerClientCounters { j.field(c.key, stats[keyPath: c.value]) }
                    statusCounts(&j, "failures", stats.failures)
                    j.field("in_flight", stats.inFlight)
                }
            }
        }
    }

    private static func etcdJSON(_ j: inout JSONWriter, _ e: EtcdMembershipStats) {
        j.key("etcd")
        j.object { j in
            j.field("registered", e.registered)
            j.field("watching", e.watching)
            for c in etcdCounters { j.field(c.key, e[keyPath: c.value]) }
        }
    }

    // MARK: /api/peers

    /// The membership as /api/peers shows it: each member's name, addresses, state and share of the ring.
    /// `selfAPI` is the address this node's API is reached at (the advertised host and the bound port).
    static func writePeersJSON(into out: inout ByteBuffer, selfName: String, selfAPI: String, cluster: ClusterReport?) {
        JSONWriter.write(into: &out) { j in
            j.object { j in
                j.field("self", selfName)
                j.key("members")
                j.array { j in
                    guard let cluster else {
                        j.object { j in
                            j.field("name", selfName)
                            j.field("api", selfAPI)
                            j.key("peer")
                            j.null()
                            j.field("state", "up")
                            j.field("share", 1.0)
                            j.field("self", true)
                        }
                        return
                    }
                    for m in cluster.members {
                        let isSelf = m.name == cluster.selfName
                        j.object { j in
                            j.field("name", m.name)
                            j.key("api")
                            if isSelf { j.value(selfAPI) } else if let api = m.api { j.value(api) } else { j.null() }
                            j.key("peer")
                            if let p = m.peer { j.value(p) } else { j.null() }
                            j.field("state", m.up ? "up" : "down")
                            j.field("share", m.share)
                            j.field("self", isSelf)
                        }
                    }
                }
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

// Metrics/: counters each subsystem owns, and their rendering for /api/stats (JSON) and /metrics (Prometheus).

/// Renders a node's counters; /api/stats and /metrics read the same numbers.
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

    static func cacheValues(_ group: Group) -> [CacheMetricValues] {
        let s = group.stats
        return [
            CacheMetricValues(name: "main", items: group.mainItems, bytes: group.mainBytes,
                              hits: s.hits - s.hotHits, misses: s.misses, loads: s.loads, loadErrors: s.loadErrors,
                              evictions: s.main.evictions, expirations: s.main.expirations),
            CacheMetricValues(name: "hot", items: group.hotItems, bytes: group.hotBytes, hits: s.hotHits,
                              misses: 0, loads: 0, loadErrors: 0,
                              evictions: s.hot.evictions, expirations: s.hot.expirations),
        ]
    }

    static func writePrometheus(into out: inout ByteBuffer, node: NodeConfig, group: Group, requests: RequestStats,
                                connections: ConnectionStats, openConnections: Int, uptimeMillis: Int64,
                                cluster: Cluster?, extra: ((inout PrometheusWriter) -> Void)? = nil) {
        let s = group.stats
        var labels = [PrometheusLabel("node", node.name)]
        if let w = node.workerIndex { labels.append(PrometheusLabel("worker", w)) }
        PrometheusWriter.write(into: &out, constantLabels: labels) { p in
            p.caches(cacheValues(group))
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
            p.gauge("springcache_loads_in_flight", help: "Origin loads under way now.", value: group.loadsInFlight)
            p.requestStats(merged(requests, connections, open: openConnections))
            p.counter("springcache_http_timeouts_total", help: "Requests not received within the header timeout.",
                      value: connections.timeouts)
            p.counter("springcache_http_backpressure_pauses_total",
                      help: "Times a connection's reading stopped because its answers were not being read.",
                      value: connections.backpressurePauses)
            p.gauge("springcache_uptime_seconds", help: "Seconds since the node started.", value: Int(uptimeMillis / 1000))
            p.family("springcache_cache_capacity_bytes", .gauge,
                     help: "The byte bound of the cache (--cache-bytes, --hot-bytes).")
            p.sample("springcache_cache_capacity_bytes", labels: [PrometheusLabel("cache", "main")],
                     value: group.mainCapacityBytes)
            p.sample("springcache_cache_capacity_bytes", labels: [PrometheusLabel("cache", "hot")],
                     value: group.hotCapacityBytes)
            if let cluster { clusterMetrics(&p, cluster, s) }
            extra?(&p)
        }
    }

    private static func clusterMetrics(_ p: inout PrometheusWriter, _ cluster: Cluster, _ s: GroupStats) {
        let c = cluster.stats
        p.gauge("springcache_cluster_members", help: "Members known, this node included.", value: cluster.members.count)
        p.gauge("springcache_cluster_members_down", help: "Members dropped after a failed call, not yet re-admitted.",
                value: cluster.down.count)
        p.counter("springcache_peer_calls_total", help: "gRPC calls made to peers.", value: c.peerCalls)
        p.counter("springcache_peer_failures_total", help: "Peer calls that failed in transport (refused, reset, deadline).",
                  value: c.peerFailures)
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
        for name in cluster.members.keys.sorted() where name != cluster.selfName {
            p.sample("springcache_peer_up", labels: [PrometheusLabel("peer", name)],
                     value: cluster.down.contains(name) ? 0 : 1)
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

    static func writeJSON(into out: inout ByteBuffer, node: NodeConfig, group: Group, requests: RequestStats,
                          connections: ConnectionStats, openConnections: Int, uptimeMillis: Int64, cluster: Cluster?,
                          extra: ((inout JSONWriter) -> Void)? = nil) {
        let s = group.stats
        let r = merged(requests, connections, open: openConnections)
        JSONWriter.write(into: &out) { j in
            j.object { j in
                j.field("name", node.name)
                j.key("worker")
                if let w = node.workerIndex { j.value(w) } else { j.null() }
                j.field("pid", Int(getpid()))
                j.field("group", group.name)
                j.field("uptime_seconds", Int(uptimeMillis / 1000))
                extra?(&j)
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
                j.field("loads_in_flight", group.loadsInFlight)
                j.key("caches")
                j.object { j in
                    for c in cacheValues(group) {
                        j.key(c.name)
                        j.object { j in
                            j.field("items", c.items)
                            j.field("bytes", c.bytes)
                            j.field("capacity_bytes", c.name == "main" ? group.mainCapacityBytes
                                                                     : group.hotCapacityBytes)
                            j.field("evictions", c.evictions)
                            j.field("expirations", c.expirations)
                        }
                    }
                }
                if let cluster {
                    let c = cluster.stats
                    j.key("cluster")
                    j.object { j in
                        j.field("members", cluster.members.count)
                        j.field("members_down", cluster.down.count)
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
                    j.field("timeouts", connections.timeouts)
                    j.field("bytes_in", r.bytesIn)
                    j.field("bytes_out", r.bytesOut)
                }
            }
        }
    }

    /// The membership as /api/peers shows it: each member's name, addresses, state and share of the ring.
    static func writePeersJSON(into out: inout ByteBuffer, node: NodeConfig, apiPort: Int, cluster: Cluster?) {
        let host = node.advertiseHost ?? node.api.host
        let selfAPI = HostPort(host: host, port: apiPort).description
        JSONWriter.write(into: &out) { j in
            j.object { j in
                j.field("self", node.name)
                j.key("members")
                j.array { j in
                    guard let cluster else {
                        j.object { j in
                            j.field("name", node.name)
                            j.field("api", selfAPI)
                            j.key("peer")
                            j.null()
                            j.field("state", "up")
                            j.field("share", 1.0)
                            j.field("self", true)
                        }
                        return
                    }
                    for name in cluster.members.keys.sorted() {
                        let m = cluster.members[name]!
                        let isSelf = name == cluster.selfName
                        let up = !cluster.down.contains(name)
                        j.object { j in
                            j.field("name", name)
                            j.key("api")
                            if isSelf { j.value(selfAPI) } else if let api = m.api { j.value(api) } else { j.null() }
                            j.key("peer")
                            if let p = m.peer { j.value(p.description) } else { j.null() }
                            j.field("state", up ? "up" : "down")
                            j.field("share", up ? cluster.ring.share(of: name) : 0.0)
                            j.field("self", isSelf)
                        }
                    }
                }
            }
        }
    }
}

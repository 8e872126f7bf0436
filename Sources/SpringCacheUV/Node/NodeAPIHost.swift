/// The node's side of the API's seam (`APIHost`): the reports of `/api/stats`, `/metrics` and `/api/peers`,
/// assembled from the node's configuration, group, cluster and HTTP server, and what `/setpeer` does to the
/// cluster and to etcd.
final class NodeAPIHost: APIHost {
    let config: NodeConfig
    let clock: Clock
    let group: Group
    let cluster: Cluster?
    /// The API's server: its connection counters and the port it bound. Set once it exists.
    weak var server: HTTPServer?
    /// With etcd: where `/setpeer` looks up a name that is not a member here.
    weak var membership: EtcdMembership?
    /// Families the node adds to /metrics (process, build, origin, etcd), inside the node's constant labels.
    var extraMetrics: ((inout PrometheusWriter) -> Void)?
    /// Fields the node adds to /api/stats (version, configuration, RSS).
    var extraStats: ((inout JSONWriter) -> Void)?
    private let startedAtMillis: Int64

    init(config: NodeConfig, clock: Clock, group: Group, cluster: Cluster?) {
        self.config = config
        self.clock = clock
        self.group = group
        self.cluster = cluster
        startedAtMillis = clock.nowMillis
    }

    private var uptimeMillis: Int64 { clock.nowMillis - startedAtMillis }

    func writeStatsJSON(into out: inout ByteBuffer, requests: RequestStats) {
        StatsReport.writeJSON(into: &out, node: config, group: group, requests: requests,
                              connections: server?.stats ?? ConnectionStats(),
                              openConnections: server?.openConnections ?? 0, uptimeMillis: uptimeMillis,
                              cluster: cluster, extra: extraStats)
    }

    func writeMetrics(into out: inout ByteBuffer, requests: RequestStats) {
        StatsReport.writePrometheus(into: &out, node: config, group: group, requests: requests,
                                    connections: server?.stats ?? ConnectionStats(),
                                    openConnections: server?.openConnections ?? 0, uptimeMillis: uptimeMillis,
                                    cluster: cluster, extra: extraMetrics)
    }

    func writePeersJSON(into out: inout ByteBuffer) {
        StatsReport.writePeersJSON(into: &out, node: config, apiPort: server?.boundPort ?? config.api.port,
                                   cluster: cluster)
    }

    func readmit(peer name: String) -> Bool {
        cluster?.readmit(name) ?? (name == config.name)
    }

    var resolvesPeers: Bool { membership != nil }

    func resolvePeer(_ name: String, completion: @escaping (Bool) -> Void) {
        guard let membership else { return completion(false) }
        membership.resolve(name, completion: completion)
    }
}

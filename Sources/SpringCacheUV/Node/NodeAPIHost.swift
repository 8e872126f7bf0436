/// The node's side of the API's seam (`APIHost`): the reports of `/api/stats`, `/metrics` and `/api/peers`
/// (rendered by `Node`'s `StatsReport` from each subsystem's snapshot), and what `/setpeer` does to the
/// cluster and to etcd.
final class NodeAPIHost: APIHost {
    let config: NodeConfig
    let cluster: Cluster?
    /// The node whose reports these are; weak because the node owns the API that owns this host.
    weak var node: Node?
    /// With etcd: where `/setpeer` looks up a name that is not a member here.
    weak var membership: EtcdMembership?

    init(config: NodeConfig, cluster: Cluster?) {
        self.config = config
        self.cluster = cluster
    }

    func writeStatsJSON(into out: inout ByteBuffer, requests: RequestStats) {
        node?.writeStatsJSON(into: &out, requests: requests)
    }

    func writeMetrics(into out: inout ByteBuffer, requests: RequestStats) {
        node?.writeMetrics(into: &out, requests: requests)
    }

    func writePeersJSON(into out: inout ByteBuffer) {
        node?.writePeersJSON(into: &out)
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

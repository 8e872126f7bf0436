/// What the API needs from the node around it beyond the cache group: the node's reports and what `/setpeer`
/// does to the membership.
///
/// Why a seam: HTTP/ must not depend on the rooms that wire it (Node/, Cluster/, Etcd/; DESIGN "Layout"), so
/// the handler is given this instead of the node's configuration and cluster. `Node` implements it
/// (`NodeAPIHost`); unit tests give a recording one.
public protocol APIHost: AnyObject {
    /// Writes the JSON document of `GET /api/stats`; `requests` are the API's own counters.
    func writeStatsJSON(into out: inout ByteBuffer, requests: RequestStats)
    /// Writes the Prometheus page of `GET /metrics` (also served by the metrics listener, `--metrics`).
    func writeMetrics(into out: inout ByteBuffer, requests: RequestStats)
    /// Writes the JSON document of `GET /api/peers`.
    func writePeersJSON(into out: inout ByteBuffer)
    /// springcache's `/setpeer`: re-admits the member `name` if it was dropped. True when `name` is a member
    /// known here (this node included), false when it is not.
    func readmit(peer name: String) -> Bool
    /// Whether a name not known here can be looked up elsewhere (etcd); false for a static or single node.
    var resolvesPeers: Bool { get }
    /// Looks `name` up (in etcd) and adds it to the members when found; `completion` runs once, with whether
    /// it was found. Only called when `resolvesPeers`.
    func resolvePeer(_ name: String, completion: @escaping (Bool) -> Void)
}

/// The API's settings, taken from the node's configuration by `Node`.
public struct APISettings {
    /// The bearer token mutating routes require (`--auth-token-file`); nil lets every client write.
    public var authToken: [UInt8]?
    /// The buffer request parameters are decoded into starts this large; it grows on demand, never shrinks.
    public var scratchCapacity = 8 << 10

    public init(authToken: [UInt8]? = nil) {
        self.authToken = authToken
    }
}

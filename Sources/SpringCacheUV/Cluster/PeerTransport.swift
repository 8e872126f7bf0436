/// How `Cluster` reaches its peers: unary gRPC calls by peer name. The production transport keeps one
/// `GRPCClient` (one HTTP/2 connection) per peer; unit tests put in one that records the calls and completes
/// them when told, so the cluster's drop/probe/re-admit handling is tested without sockets.
///
/// Contract (GRPCClient's): `completion` runs exactly once, from the loop, never inside `unary`.
protocol PeerTransport: AnyObject {
    /// Starts one unary call to `peer` at `address`; `message` is the request without the gRPC prefix, copied
    /// before this returns.
    func unary(peer: String, address: HostPort, path: String, message: UnsafeRawBufferPointer, timeoutMillis: Int,
               metadata: [(String, String)], completion: @escaping (GRPCResult) -> Void)
    /// Lets go of what the transport holds for `peer` (it left, or its address changed); its calls in flight
    /// fail.
    func forget(_ peer: String)
    /// Ends every connection; calls in flight fail with CANCELLED.
    func close()
    /// Each peer connection's counters, by peer name (for /metrics and /api/stats).
    var clientStats: [String: GRPCClientStats] { get }
}

/// The production `PeerTransport`: a `GRPCClient` per peer, made on its first call.
final class GRPCPeerTransport: PeerTransport {
    private let loop: EventLoop
    private let settings: GRPCClientSettings
    private var clients: [String: GRPCClient] = [:]

    /// A client replaced after an address change starts again at 0.
    var clientStats: [String: GRPCClientStats] { clients.mapValues(\.stats) }

    init(loop: EventLoop, settings: GRPCClientSettings) {
        self.loop = loop
        self.settings = settings
    }

    func unary(peer: String, address: HostPort, path: String, message: UnsafeRawBufferPointer, timeoutMillis: Int,
               metadata: [(String, String)], completion: @escaping (GRPCResult) -> Void) {
        let client: GRPCClient
        if let known = clients[peer], known.target == address {
            client = known
        } else {
            clients[peer]?.close()
            client = GRPCClient(loop: loop, target: address, settings: settings)
            clients[peer] = client
        }
        client.unary(path: path, message: message, timeoutMillis: timeoutMillis, metadata: metadata,
                     completion: completion)
    }

    func forget(_ peer: String) {
        clients.removeValue(forKey: peer)?.close()
    }

    func close() {
        for client in clients.values { client.close() }
        clients.removeAll()
    }
}

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
    /// `unary` through `handle`, the transport's connection to `peer` that the caller keeps between calls (nil
    /// at first; the transport fills it in and replaces it when it no longer serves `address`), so that a call
    /// need not look the peer up by name (issue 11).
    func unary(handle: inout AnyObject?, peer: String, address: HostPort, path: String,
               message: UnsafeRawBufferPointer, timeoutMillis: Int, metadata: [(String, String)],
               completion: @escaping (GRPCResult) -> Void)
    /// Lets go of what the transport holds for `peer` (it left, or its address changed); its calls in flight
    /// fail.
    func forget(_ peer: String)
    /// Ends every connection; calls in flight fail with CANCELLED.
    func close()
    /// Each peer connection's counters, by peer name (for /metrics and /api/stats).
    var clientStats: [String: GRPCClientStats] { get }
}

extension PeerTransport {
    /// A transport without handles looks the peer up on every call.
    func unary(handle: inout AnyObject?, peer: String, address: HostPort, path: String,
               message: UnsafeRawBufferPointer, timeoutMillis: Int, metadata: [(String, String)],
               completion: @escaping (GRPCResult) -> Void) {
        unary(peer: peer, address: address, path: path, message: message, timeoutMillis: timeoutMillis,
              metadata: metadata, completion: completion)
    }
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
        client(for: peer, at: address).unary(path: path, message: message, timeoutMillis: timeoutMillis,
                                             metadata: metadata, completion: completion)
    }

    func unary(handle: inout AnyObject?, peer: String, address: HostPort, path: String,
               message: UnsafeRawBufferPointer, timeoutMillis: Int, metadata: [(String, String)],
               completion: @escaping (GRPCResult) -> Void) {
        let client: GRPCClient
        // A kept client serves while it is open and at the address: `forget` and `close` close it.
        if let kept = handle as? GRPCClient, !kept.isClosed, kept.target == address {
            client = kept
        } else {
            client = self.client(for: peer, at: address)
            handle = client
        }
        client.unary(path: path, message: message, timeoutMillis: timeoutMillis, metadata: metadata,
                     completion: completion)
    }

    /// The client of `peer` at `address`, made (and one at an old address closed) when needed.
    private func client(for peer: String, at address: HostPort) -> GRPCClient {
        if let known = clients[peer], known.target == address { return known }
        clients[peer]?.close()
        let client = GRPCClient(loop: loop, target: address, settings: settings)
        clients[peer] = client
        return client
    }

    func forget(_ peer: String) {
        clients.removeValue(forKey: peer)?.close()
    }

    func close() {
        for client in clients.values { client.close() }
        clients.removeAll()
    }
}

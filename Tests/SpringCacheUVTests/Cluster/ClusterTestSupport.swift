import Logging
@testable import SpringCacheUV

/// A `PeerTransport` that sends nothing: it records every call, and the test completes each one with the
/// result it chooses — later, as the real transport does.
final class RecordingPeerTransport: PeerTransport {
    struct Call {
        let peer: String
        let address: HostPort
        let path: String
        let message: [UInt8]
        let timeoutMillis: Int
        let metadata: [(String, String)]
        let completion: (GRPCResult) -> Void
    }

    /// Calls not completed yet, oldest first.
    private(set) var pending: [Call] = []
    /// Every call ever started, oldest first.
    private(set) var started: [(peer: String, path: String)] = []
    /// Peers the cluster let go of (left, or moved), in order.
    private(set) var forgotten: [String] = []
    private(set) var isClosed = false

    func unary(peer: String, address: HostPort, path: String, message: UnsafeRawBufferPointer, timeoutMillis: Int,
               metadata: [(String, String)], completion: @escaping (GRPCResult) -> Void) {
        started.append((peer, path))
        pending.append(Call(peer: peer, address: address, path: path, message: Array(message),
                            timeoutMillis: timeoutMillis, metadata: metadata, completion: completion))
    }

    func forget(_ peer: String) { forgotten.append(peer) }

    /// The recording transport has no connections, so no counters.
    var clientStats: [String: GRPCClientStats] { [:] }

    func close() { isClosed = true }

    /// Pending calls to `peer` (on `path`, if given).
    func pending(to peer: String, path: String? = nil) -> [Call] {
        pending.filter { $0.peer == peer && (path == nil || $0.path == path) }
    }

    /// Completes the oldest pending call to `peer` (on `path`, if given) with `result`.
    func complete(_ peer: String, path: String? = nil, with result: GRPCResult) {
        guard let i = pending.firstIndex(where: { $0.peer == peer && (path == nil || $0.path == path) }) else {
            preconditionFailure("RecordingPeerTransport: no pending call to \(peer) \(path ?? "")")
        }
        pending.remove(at: i).completion(result)
    }
}

/// A cluster of `a` (this node), `b` and `c`, driven by a `ManualScheduler` and a `RecordingPeerTransport`.
struct ClusterFixture {
    let scheduler = ManualScheduler()
    let transport = RecordingPeerTransport()
    let cluster: Cluster

    static let members = [
        Member(name: "a", peer: HostPort(host: "10.0.0.1", port: 8001)),
        Member(name: "b", peer: HostPort(host: "10.0.0.2", port: 8002)),
        Member(name: "c", peer: HostPort(host: "10.0.0.3", port: 8003)),
    ]

    init(settings: ClusterSettings = ClusterSettings(), members: [Member] = ClusterFixture.members) {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        cluster = Cluster(selfMember: members[0], scheduler: scheduler, transport: transport, settings: settings,
                          logger: logger)
        cluster.setMembers(members)
    }

    /// A key that `name` owns while every member is up.
    func key(ownedBy name: String) -> CacheKey {
        for i in 0..<10_000 {
            let key = CacheKey("key-\(i)")
            if cluster.ring.ownerName(of: key.description) == name { return key }
        }
        preconditionFailure("no key owned by \(name)")
    }
}

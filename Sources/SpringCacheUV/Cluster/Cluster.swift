import CLibUV
import Logging

/// Settings of the cluster layer; every bound and period is named here.
public struct ClusterSettings {
    /// A peer call that takes longer fails with DEADLINE_EXCEEDED (springcache's 2 s).
    public var peerTimeoutMillis = 2_000
    /// How often a dropped peer is probed to see whether it answers again.
    public var probeIntervalMillis: UInt64 = 1_000
    /// Invalidations get a quarter of the peer timeout: the owner answers a forwarded set only after them,
    /// so a black-holed member must not eat the caller's whole deadline (the caller would drop the owner).
    public var invalidateTimeoutMillis: Int { max(50, peerTimeoutMillis / 4) }
    /// Sent as `authorization: Bearer <token>` on every peer call, with `--peer-token-file`.
    public var peerToken: [UInt8]?
    /// Which ring maps keys to members (`--ring`).
    public var ringKind = RingKind.rendezvous
    /// The group this node serves: the only group ever sent to a peer, probes included, because a springcache
    /// peer crashes on a group it does not serve.
    public var group = "scores"
    /// Largest message sent or accepted on a peer call (see `NodeConfig.maxPeerMessageBytes`).
    public var maxMessageBytes = 4 << 20

    public init() {}
}

/// Counters of the cluster layer, read by /api/stats and /metrics.
public struct ClusterStats {
    public var peerCalls: UInt64 = 0
    public var peerFailures: UInt64 = 0
    public var drops: UInt64 = 0
    public var readmissions: UInt64 = 0
    public var invalidationsSent: UInt64 = 0
    /// Time from sending a peer call to its answer or failure.
    public var callLatency = LatencyHistogram()
}

/// Counters of the calls to one peer (the `peer` label of the per-peer families on /metrics).
public struct PeerCallStats {
    public var calls: UInt64 = 0
    public var failures: UInt64 = 0
    public var latency = LatencyHistogram()
}

/// The cluster as one node sees it: the members, which of them are reachable, the hash ring over those,
/// and one gRPC client per peer. Implements `PeerRouter` for the group.
///
/// Failure handling (springcache's, and better): a peer whose call fails in transport (refused, reset,
/// deadline) is dropped from the local ring at once, so its keys are served by loading locally; it is
/// probed every `probeIntervalMillis` and re-admitted as soon as it answers and is still a member, or by
/// hand through `/setpeer`. A gRPC answer such as NOT_FOUND is an answer, not a failure.
public final class Cluster: PeerRouter {
    public let selfName: String
    let loop: EventLoop
    private(set) var settings: ClusterSettings
    let logger: Logger
    public private(set) var stats = ClusterStats()
    /// The same counters per peer name; a member that leaves keeps its entry (its counters stay monotonic).
    public private(set) var perPeer: [String: PeerCallStats] = [:]

    /// Every known member, this node included, by name.
    public private(set) var members: [String: Member] = [:]
    /// Members dropped after a failed call; not on the ring until re-admitted.
    public private(set) var down: Set<String> = []
    /// The ring over the members that are up.
    public private(set) var ring: MemberRing
    /// Peers that answered a Delete or Invalidate with UNIMPLEMENTED (springcache speaks only Get and Set):
    /// deletes go to them as already-expired Sets, and they are not sent invalidations.
    public private(set) var getSetOnly: Set<String> = []
    /// Hosts that several members share, last reported (springcache's ring cannot tell them apart).
    private var reportedSharedHosts: [String] = []
    /// The ring over every member with an address, dropped ones included: who owns a key for writes.
    private var memberRing: MemberRing
    private var clients: [String: GRPCClient] = [:]
    private var probeTimer: LoopTimer?
    private var probing: Set<String> = []
    private var closed = false
    /// Each peer client's counters, by member name (a client replaced after an address change starts at 0).
    public var clientStats: [String: GRPCClientStats] { clients.mapValues(\.stats) }
    /// Called after the ring changed, with the members that came back (re-admitted after a drop). The node
    /// then drops entries it no longer owns and tells those members to drop their copies.
    public var onRingChange: ((_ readmitted: [String]) -> Void)?

    /// Replaces the token sent on peer calls (SIGHUP re-reads `--peer-token-file`); the next call carries it.
    public func setPeerToken(_ token: [UInt8]?) {
        settings.peerToken = token
    }

    public init(selfMember: Member, loop: EventLoop, settings: ClusterSettings, logger: Logger) {
        selfName = selfMember.name
        self.loop = loop
        self.settings = settings
        self.logger = logger
        members[selfMember.name] = selfMember
        ring = MemberRing(kind: settings.ringKind, members: [selfMember])
        memberRing = ring
        let timer = LoopTimer(loop: loop) { [unowned self] in self.probeDownPeers() }
        timer.start(timeoutMillis: settings.probeIntervalMillis, repeatMillis: settings.probeIntervalMillis)
        probeTimer = timer
    }

    // MARK: membership

    /// Replaces the member list (static configuration, or what etcd says). This node always stays.
    public func setMembers(_ list: [Member]) {
        var next: [String: Member] = [:]
        for m in list { next[m.name] = m }
        next[selfName] = next[selfName] ?? members[selfName]
        for (name, old) in members where name != selfName {
            if next[name] == nil || next[name]?.peer != old.peer {
                clients.removeValue(forKey: name)?.close()
                getSetOnly.remove(name)
            }
        }
        members = next
        down = down.filter { next[$0] != nil }
        rebuildRing()
    }

    /// Adds or updates one member (an etcd PUT).
    public func upsert(_ member: Member) {
        var list = Array(members.values)
        list.removeAll { $0.name == member.name }
        list.append(member)
        setMembers(list)
    }

    /// Removes one member (an etcd DELETE); this node is never removed.
    public func remove(name: String) {
        guard name != selfName else { return }
        setMembers(members.values.filter { $0.name != name })
    }

    /// springcache's `/setpeer`: re-admits a dropped member. False if no member has that name.
    @discardableResult
    public func readmit(_ name: String) -> Bool {
        guard members[name] != nil else { return false }
        if down.remove(name) != nil {
            stats.readmissions += 1
            logger.info("peer \(name) re-admitted to the ring")
            rebuildRing(readmitted: [name])
        }
        return true
    }

    private func drop(_ name: String, reason: String) {
        guard name != selfName, members[name] != nil, !down.contains(name) else { return }
        down.insert(name)
        stats.drops += 1
        logger.warning("peer \(name) dropped from the ring: \(reason)")
        rebuildRing()
    }

    private func rebuildRing(readmitted: [String] = []) {
        // A member without a peer address cannot be asked, so it owns nothing until it has one.
        let up = members.values.filter { $0.name == selfName || ($0.peer != nil && !down.contains($0.name)) }
        let next = MemberRing(kind: settings.ringKind, members: up)
        if settings.ringKind == .springcache { reportSharedHosts(up) }
        let gained = next.members.contains { !ring.contains($0) }
        ring = next
        memberRing = down.isEmpty ? next : MemberRing(kind: settings.ringKind, members: members.values.filter {
            $0.name == selfName || $0.peer != nil
        })
        if gained || !readmitted.isEmpty { onRingChange?(readmitted) }
    }

    /// With springcache's ring, members on one IP are one member to springcache: say so once per change (the
    /// node refuses to start that way; this catches members that joined through etcd).
    private func reportSharedHosts(_ up: [Member]) {
        let shared = SpringcacheRing.sharedHosts(up.map { (name: $0.name, host: $0.peer?.host ?? "") })
        let described = shared.map { "\($0.host): \($0.names.joined(separator: ","))" }
        guard described != reportedSharedHosts else { return }
        reportedSharedHosts = described
        if !described.isEmpty {
            let list = described.joined(separator: "; ")
            let what = "--ring springcache keys members by IP, and these members share one"
            logger.error("\(what): \(list); only the last of each (by name) owns keys")
        }
    }

    /// Tells a member that missed invalidations (it was cut off) to drop every copy it holds of keys it does
    /// not own: an Invalidate with an empty key.
    public func tellToDropCopies(_ name: String, group: String) {
        guard name != selfName, !getSetOnly.contains(name) else { return }
        call(PeerID(name), path: PeerService.invalidatePath, message: DeleteRequest(group: group, key: "").encoded(),
             timeoutMillis: settings.invalidateTimeoutMillis) { _ in }
    }

    /// Asks each dropped peer for the empty key of our group: any gRPC answer proves it is back.
    ///
    /// Why our group and not an empty one: a springcache peer crashes on a group it does not serve. The empty
    /// key is refused at once by both implementations (ours with NOT_FOUND), so a probe never loads anything.
    private func probeDownPeers() {
        for name in down where !probing.contains(name) {
            guard let client = client(for: name) else { continue }
            probing.insert(name)
            let probe = GetRequest(group: settings.group, key: "").encoded()
            client.unary(path: PeerService.getPath, message: probe, timeoutMillis: settings.peerTimeoutMillis,
                         metadata: metadata) { [weak self] result in
                guard let self, !self.closed else { return }
                self.probing.remove(name)
                switch result {
                case .success:
                    self.readmit(name)
                case .failure(let error) where !Cluster.makesPeerUnusable(error):
                    self.readmit(name)
                case .failure:
                    break
                }
            }
        }
    }

    // MARK: PeerRouter

    public func owner(of key: CacheKey) -> PeerID? {
        guard ring.count > 1, let name = key.withBytes({ ring.ownerName(of: $0) }), name != selfName else {
            return nil
        }
        return PeerID(name)
    }

    public func unreachableOwner(of key: CacheKey) -> PeerID? {
        guard !down.isEmpty, let name = key.withBytes({ memberRing.ownerName(of: $0) }) else { return nil }
        return down.contains(name) ? PeerID(name) : nil
    }

    private var metadata: [(String, String)] {
        guard let token = settings.peerToken else { return [] }
        return [("authorization", "Bearer " + String(decoding: token, as: UTF8.self))]
    }

    private func client(for name: String) -> GRPCClient? {
        if let c = clients[name] { return c }
        guard !closed, let member = members[name], let address = member.peer else { return nil }
        var clientSettings = GRPCClientSettings()
        clientSettings.maxMessageBytes = settings.maxMessageBytes
        let c = GRPCClient(loop: loop, target: address, settings: clientSettings)
        clients[name] = c
        return c
    }

    /// Whether a failed call means the peer cannot be used: a transport failure on our side (refused, lost,
    /// our deadline passed with no answer, a broken response), or the peer refusing our credentials.
    ///
    /// Any other status the peer sent is an answer from a live peer and drops nothing: DEADLINE_EXCEEDED or
    /// UNAVAILABLE from an owner whose origin is slow or down, NOT_FOUND, or UNKNOWN (what a springcache (Go)
    /// peer returns for its own errors). Dropping such a peer would make every ring flap with the origin.
    static func makesPeerUnusable(_ error: GRPCCallError) -> Bool {
        if error.fromPeer { return error.status == .unauthenticated || error.status == .permissionDenied }
        // Why not RESOURCE_EXHAUSTED: on our side it means a message over our own limit — the request the
        // caller made was too large, or the peer's answer was — so the peer is alive; dropping it for a
        // client's oversized value made every read of its keys miss (issue 10, finding 6).
        let s = error.status
        return s == .unavailable || s == .deadlineExceeded || s == .cancelled || s == .internal
            || s == .unimplemented
    }

    /// Runs one call to `peer`; transport failures drop it before `completion` sees them.
    private func call(_ peer: PeerID, path: String, message: [UInt8], timeoutMillis: Int? = nil,
                      completion: @escaping (Result<[UInt8], GRPCCallError>) -> Void) {
        stats.peerCalls += 1
        perPeer[peer.name, default: PeerCallStats()].calls += 1
        guard let client = client(for: peer.name) else {
            completion(.failure(GRPCCallError(status: .unavailable, message: "peer \(peer) has no known address")))
            return
        }
        let start = uv_hrtime()
        client.unary(path: path, message: message, timeoutMillis: timeoutMillis ?? settings.peerTimeoutMillis,
                     metadata: metadata) { [weak self] result in
            let took = uv_hrtime() &- start
            self?.stats.callLatency.observe(nanoseconds: took)
            self?.perPeer[peer.name]?.latency.observe(nanoseconds: took)
            if case .failure(let error) = result, Cluster.makesPeerUnusable(error) {
                self?.stats.peerFailures += 1
                self?.perPeer[peer.name]?.failures += 1
                let why = error.fromPeer ? "it refused our credentials (\(error.status): \(error.message)); "
                    + "check --peer-token-file on both sides" : "\(error.status): \(error.message)"
                self?.drop(peer.name, reason: why)
            }
            completion(result)
        }
    }

    public func fetch(from peer: PeerID, group: String, key: CacheKey,
                      completion: @escaping (PeerFetchResult) -> Void) {
        call(peer, path: PeerService.getPath, message: GetRequest(group: group, key: key).encoded()) { result in
            switch result {
            case .success(let bytes):
                do {
                    let response = try GetResponse.decode(bytes)
                    completion(.value(response.value, expiresAtMillis: response.expireMillis))
                } catch {
                    completion(.failed("peer \(peer) sent a malformed GetResponse: \(error)"))
                }
            case .failure(let error) where error.status == .notFound || Cluster.isSpringcacheNotFound(error):
                completion(.notFound)
            case .failure(let error):
                completion(.failed("peer \(peer): \(error.status): \(error.message)"))
            }
        }
    }

    public func store(at peer: PeerID, group: String, key: CacheKey, value: [UInt8], expireUnixSeconds: Int64,
                      hot: Bool, completion: @escaping (PeerCallResult) -> Void) {
        let request = SetRequest(group: group, key: key, value: value, expireSeconds: expireUnixSeconds, isHot: hot)
        call(peer, path: PeerService.setPath, message: request.encoded()) { result in
            completion(Cluster.okResult(result, peer: peer, decode: { try SetResponse.decode($0).ok }))
        }
    }

    /// springcache's answer to a Get its origin cannot fill: UNKNOWN with the message `<key> not exist`.
    static func isSpringcacheNotFound(_ error: GRPCCallError) -> Bool {
        error.fromPeer && error.status == .unknown && error.message.hasSuffix(" not exist")
    }

    /// An expiry in unix seconds that is past on every peer, however skewed its clock: a Set carrying it makes
    /// the owner drop the key (springcache stores it as already expired; we drop it).
    public static let expiredUnixSeconds: Int64 = 1

    public func remove(at peer: PeerID, group: String, key: CacheKey, completion: @escaping (PeerCallResult) -> Void) {
        guard !getSetOnly.contains(peer.name) else {
            removeByExpiredSet(at: peer, group: group, key: key, completion: completion)
            return
        }
        call(peer, path: PeerService.deletePath, message: DeleteRequest(group: group, key: key).encoded()) { result in
            if case .failure(let error) = result, error.fromPeer, error.status == .unimplemented {
                // springcache has no Delete: a Set that has already expired is the one way to make it drop the
                // value (DESIGN, "Ring and membership").
                self.markGetSetOnly(peer.name)
                self.removeByExpiredSet(at: peer, group: group, key: key, completion: completion)
                return
            }
            completion(Cluster.okResult(result, peer: peer, decode: { try DeleteResponse.decode($0).ok }))
        }
    }

    private func removeByExpiredSet(at peer: PeerID, group: String, key: CacheKey,
                                    completion: @escaping (PeerCallResult) -> Void) {
        store(at: peer, group: group, key: key, value: [], expireUnixSeconds: Cluster.expiredUnixSeconds, hot: false,
              completion: completion)
    }

    private func markGetSetOnly(_ name: String) {
        guard members[name] != nil, getSetOnly.insert(name).inserted else { return }
        logger.info("peer \(name) has no Delete/Invalidate (a springcache node): deletes go to it as expired Sets")
    }

    private static func okResult(_ result: Result<[UInt8], GRPCCallError>, peer: PeerID,
                                 decode: ([UInt8]) throws -> Bool) -> PeerCallResult {
        switch result {
        case .success(let bytes):
            guard let ok = try? decode(bytes) else { return .failed("peer \(peer) sent a malformed answer") }
            return .done(ok)
        case .failure(let error):
            return .failed("peer \(peer): \(error.status): \(error.message)")
        }
    }

    public func invalidate(group: String, key: CacheKey, completion: @escaping () -> Void) {
        let message = DeleteRequest(group: group, key: key).encoded()
        let others = ring.members.filter { $0 != selfName && !getSetOnly.contains($0) }
        var pending = others.count
        guard pending > 0 else {
            completion()
            return
        }
        for name in others {
            stats.invalidationsSent += 1
            call(PeerID(name), path: PeerService.invalidatePath, message: message,
                 timeoutMillis: settings.invalidateTimeoutMillis) { result in
                if case .failure(let error) = result, error.fromPeer, error.status == .unimplemented {
                    self.markGetSetOnly(name)
                }
                pending -= 1
                if pending == 0 { completion() }
            }
        }
    }

    // MARK: lifecycle

    public func close() {
        guard !closed else { return }
        closed = true
        probeTimer?.close()
        probeTimer = nil
        for c in clients.values { c.close() }
        clients.removeAll()
    }
}

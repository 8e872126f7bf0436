import CLibUV
import Logging

/// Settings of the cluster layer; every bound and period is named here.
public struct ClusterSettings {
    /// A peer call that takes longer fails with DEADLINE_EXCEEDED (springcache's 2 s).
    public var peerTimeoutMillis = 2_000
    /// How often a dropped peer is probed to see whether it answers again.
    public var probeIntervalMillis: Int64 = 1_000
    /// Failed calls in a row that drop a peer from the ring: 1, springcache's, drops it at the first.
    public var failuresToDrop = 1
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
    /// HTTP/2 settings of the peer clients (`NodeConfig.peerHTTP2`: windows sized for `maxMessageBytes`).
    public var http2 = HTTP2Settings()

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
/// and the transport to each peer. Implements `PeerRouter` for the group.
///
/// Failure handling (springcache's, and better) is decided by a `PeerHealth` value — which failures count,
/// when a peer is dropped, when it is probed, when it comes back; this class is its driver: it feeds it the
/// outcome of every call, performs its actions (rebuilds the ring, sends probes through the transport, arms
/// the probe timer on the scheduler), and keeps the counters.
public final class Cluster: PeerRouter {
    public let selfName: String
    private(set) var settings: ClusterSettings
    let logger: Logger
    public private(set) var stats = ClusterStats()
    /// The same counters per peer name; a member that leaves keeps its entry (its counters stay monotonic).
    public var perPeer: [String: PeerCallStats] { perPeerCounters.mapValues(\.stats) }
    /// Why boxed: counting a call through a dictionary of structs (`dict[name]?.x += 1`) allocated on every
    /// remote hit; a box is looked up and then changed in place.
    private final class PeerCounters {
        var stats = PeerCallStats()
    }
    private var perPeerCounters: [String: PeerCounters] = [:]

    /// One peer as a call needs it: its address and counters, found once per remote hit through the ring
    /// (`owner(of:)` hands it out in the `PeerID`) instead of by name in three dictionaries (issue 11).
    private final class PeerRecord {
        let name: String
        let address: HostPort
        /// The peer's counters, shared with `perPeerCounters`; made on the first call (`perPeer` lists only
        /// peers that were called).
        var counters: PeerCounters?
        /// False once the member left or moved: an ID that still carries this record (an owner looked up before
        /// the change) is then looked up by name again, and a call still in flight is not fed to the failure
        /// handling (it says nothing about the member where it is now).
        var isCurrent = true
        /// The transport's connection to the peer, kept so that a call skips the transport's lookup by name.
        var connection: AnyObject?

        init(name: String, address: HostPort) {
            self.name = name
            self.address = address
        }
    }
    /// The current record of every peer with an address, by name (this node has none).
    private var records: [String: PeerRecord] = [:]
    /// The records of `ring.members`, index for index (nil for this node).
    private var ringRecords: [PeerRecord?] = [nil]
    /// Finished call objects kept for reuse. Why 256: one is in use per peer call in flight, and a node rarely has
    /// more in flight at the end of a turn than its HTTP connections; past that a call allocates its object
    /// (about 100 bytes), as before pooling.
    static let startedCallPoolLimit = 256
    private var startedCalls = ReusePool<StartedCall>(limit: Cluster.startedCallPoolLimit)
    /// Idle call objects kept for reuse now (for tests).
    var idleStartedCalls: Int { startedCalls.count }
    /// Where a Get request is encoded before it is copied into the call.
    private var requestScratch = ByteBuffer(capacity: 256)

    /// Every known member, this node included, by name.
    public private(set) var members: [String: Member] = [:]
    /// Members dropped after failed calls; not on the ring until re-admitted.
    public var down: Set<String> { health.down }
    /// The ring over the members that are up.
    public private(set) var ring: MemberRing
    /// Peers that answered a Delete or Invalidate with UNIMPLEMENTED (springcache speaks only Get and Set):
    /// deletes go to them as already-expired Sets, and they are not sent invalidations.
    public private(set) var getSetOnly: Set<String> = []
    /// Hosts that several members share, last reported (springcache's ring cannot tell them apart).
    private var reportedSharedHosts: [String] = []
    /// The ring over every member with an address, dropped ones included: who owns a key for writes.
    private var memberRing: MemberRing
    private var health: PeerHealth
    private let transport: PeerTransport
    private let scheduler: Scheduler
    /// Made when a peer first goes down; armed only while one is.
    private var probeTimer: SchedulerTimer?
    /// Completions known at once, run on a later turn (PeerRouter's promise).
    private let deferred: DeferredCompletions
    private var closed = false
    /// Each peer client's counters, by member name (a client replaced after an address change starts at 0).
    public var clientStats: [String: GRPCClientStats] { transport.clientStats }
    /// Called after the ring changed, with the members that came back (re-admitted after a drop). The node
    /// then drops entries it no longer owns and tells those members to drop their copies.
    public var onRingChange: ((_ readmitted: [String]) -> Void)?

    /// Replaces the token sent on peer calls (SIGHUP re-reads `--peer-token-file`); the next call carries it.
    public func setPeerToken(_ token: [UInt8]?) {
        settings.peerToken = token
    }

    /// A cluster on `loop`: gRPC clients to the peers, probes on the loop's timers.
    public convenience init(selfMember: Member, loop: EventLoop, settings: ClusterSettings, logger: Logger) {
        var clientSettings = GRPCClientSettings()
        clientSettings.maxMessageBytes = settings.maxMessageBytes
        clientSettings.http2 = settings.http2
        self.init(selfMember: selfMember, scheduler: loop.scheduler,
                  transport: GRPCPeerTransport(loop: loop, settings: clientSettings), settings: settings,
                  logger: logger)
    }

    /// A cluster whose timers come from `scheduler` and whose calls go through `transport` (tests give a
    /// `ManualScheduler` and a recording transport).
    init(selfMember: Member, scheduler: Scheduler, transport: PeerTransport, settings: ClusterSettings,
         logger: Logger) {
        selfName = selfMember.name
        self.settings = settings
        self.logger = logger
        self.transport = transport
        members[selfMember.name] = selfMember
        ring = MemberRing(kind: settings.ringKind, members: [selfMember])
        memberRing = ring
        health = PeerHealth(selfName: selfMember.name, settings: PeerHealth.Settings(
            failuresToDrop: settings.failuresToDrop, probeIntervalMillis: settings.probeIntervalMillis))
        self.scheduler = scheduler
        deferred = DeferredCompletions(scheduler: scheduler)
    }

    deinit {
        precondition(closed, "Cluster released without close()")
    }

    // MARK: membership

    /// Replaces the member list (static configuration, or what etcd says). This node always stays.
    public func setMembers(_ list: [Member]) {
        var next: [String: Member] = [:]
        for m in list { next[m.name] = m }
        next[selfName] = next[selfName] ?? members[selfName]
        for (name, old) in members where name != selfName {
            if next[name] == nil || next[name]?.peer != old.peer {
                transport.forget(name)
                getSetOnly.remove(name)
            }
        }
        members = next
        updateRecords()
        perform(health.membersChanged(Set(next.keys)))
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
        perform(health.readmitRequested(name))
        return true
    }

    /// Performs what the failure handling decided; the ring is rebuilt once, after every drop and re-admission.
    private func perform(_ actions: [PeerHealth.Action], reason: @autoclosure () -> String = "") {
        var readmitted: [String] = []
        var changed = false
        for action in actions {
            switch action {
            case .drop(let name):
                stats.drops += 1
                logger.warning("peer \(name) dropped from the ring: \(reason())")
                changed = true
            case .readmit(let name):
                stats.readmissions += 1
                logger.info("peer \(name) re-admitted to the ring")
                readmitted.append(name)
                changed = true
            case .probe(let name):
                probe(name)
            case .startProbeTimer(let every):
                // Unowned: `close()` closes the timer, and a Cluster is always closed before it is released.
                let timer = probeTimer ?? scheduler.makeTimer { [unowned self] in
                    self.perform(self.health.probeTimerFired())
                }
                probeTimer = timer
                timer.arm(afterMillis: every, repeatMillis: every)
            case .stopProbeTimer:
                probeTimer?.disarm()
            }
        }
        if changed { rebuildRing(readmitted: readmitted) }
    }

    /// Keeps a record per peer with an address: the same record while its address stays, a new one (and the
    /// old one retired) when it moves, none once it leaves.
    private func updateRecords() {
        var next: [String: PeerRecord] = [:]
        for (name, member) in members where name != selfName {
            guard let address = member.peer else { continue }
            if let known = records[name], known.address == address {
                next[name] = known
            } else {
                next[name] = PeerRecord(name: name, address: address)
            }
        }
        for (name, old) in records where next[name] !== old { old.isCurrent = false }
        records = next
    }

    /// The current record for `peer`: the one it carries when still current, else the one by its name.
    @inline(__always)
    private func record(for peer: PeerID) -> PeerRecord? {
        if let carried = peer.route as? PeerRecord, carried.isCurrent { return carried }
        return records[peer.name]
    }

    private func rebuildRing(readmitted: [String] = []) {
        let down = health.down
        // A member without a peer address cannot be asked, so it owns nothing until it has one.
        let up = members.values.filter { $0.name == selfName || ($0.peer != nil && !down.contains($0.name)) }
        let next = MemberRing(kind: settings.ringKind, members: up)
        if settings.ringKind == .springcache { reportSharedHosts(up) }
        let gained = next.members.contains { !ring.contains($0) }
        ring = next
        ringRecords = next.members.map { records[$0] }
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

    /// Asks a dropped peer for the empty key of our group: any gRPC answer proves it is back.
    ///
    /// Why our group and not an empty one: a springcache peer crashes on a group it does not serve. The empty
    /// key is refused at once by both implementations (ours with NOT_FOUND), so a probe never loads anything.
    private func probe(_ name: String) {
        guard !closed, let address = members[name]?.peer else {
            perform(health.probeFinished(name, .failure(GRPCCallError(status: .unavailable, message: "no address"))))
            return
        }
        let probe = GetRequest(group: settings.group, key: "").encoded()
        probe.withUnsafeBytes { probe in
            transport.unary(peer: name, address: address, path: PeerService.getPath, message: probe,
                            timeoutMillis: settings.peerTimeoutMillis, metadata: metadata) { [weak self] result in
                guard let self, !self.closed else { return }
                self.perform(self.health.probeFinished(name, result))
            }
        }
    }

    // MARK: PeerRouter

    public func owner(of key: CacheKey) -> PeerID? {
        guard ringRecords.count > 1, let index = key.withBytes({ ring.ownerIndex(of: $0) }) else { return nil }
        // nil for this node (and a member without an address, which the ring never holds).
        guard let record = ringRecords[index] else { return nil }
        return PeerID(record.name, route: record)
    }

    public func unreachableOwner(of key: CacheKey) -> PeerID? {
        guard !down.isEmpty, let name = key.withBytes({ memberRing.ownerName(of: $0) }) else { return nil }
        return down.contains(name) ? PeerID(name) : nil
    }

    private var metadata: [(String, String)] {
        guard let token = settings.peerToken else { return [] }
        return [("authorization", "Bearer " + String(decoding: token, as: UTF8.self))]
    }

    /// Runs one call to `peer`; its outcome goes to the failure handling (which may drop the peer) before
    /// `completion` sees it.
    private func call(_ peer: PeerID, path: String, message: [UInt8], timeoutMillis: Int? = nil,
                      completion: @escaping (GRPCResult) -> Void) {
        message.withUnsafeBytes {
            call(peer, path: path, message: $0, timeoutMillis: timeoutMillis, reply: .result(completion))
        }
    }

    /// Who gets a call's outcome. Why a value and not a closure wrapping the caller's: a remote hit's
    /// completion is then carried as it is, not boxed once more per call (issue 11's allocation budget).
    private enum CallReply {
        case result((GRPCResult) -> Void)
        case fetch(PeerID, (PeerFetchResult) -> Void)

        func deliver(_ result: GRPCResult) {
            switch self {
            case .result(let completion): completion(result)
            case .fetch(let peer, let completion): completion(Cluster.fetchResult(result, from: peer))
            }
        }
    }

    /// `message` is copied before this returns.
    private func call(_ peer: PeerID, path: String, message: UnsafeRawBufferPointer, timeoutMillis: Int?,
                      reply: CallReply) {
        stats.peerCalls += 1
        let record = record(for: peer)
        let counters: PeerCounters
        if let known = record?.counters {
            counters = known
        } else {
            counters = self.counters(of: peer.name)
            record?.counters = counters
        }
        counters.stats.calls += 1
        guard !closed, let record else {
            let why = closed ? "the cluster is closed" : "peer \(peer) has no known address"
            deferred.complete(reply.deliver, with: .failure(GRPCCallError(status: .unavailable, message: why)))
            return
        }
        let started = startedCalls.take() ?? StartedCall()
        started.start(cluster: self, peer: record, reply: reply)
        // Captures one object and nothing else: such a closure costs no allocation of its own.
        transport.unary(handle: &record.connection, peer: record.name, address: record.address, path: path,
                        message: message, timeoutMillis: timeoutMillis ?? settings.peerTimeoutMillis,
                        metadata: metadata) { result in started.finished(result) }
    }

    /// A call in flight and what its outcome is for: one object per call instead of a closure context and what
    /// it captured (issue 11, a remote hit's allocations). Reused through `startedCalls` once nothing else holds it.
    private final class StartedCall {
        /// Weak: calls failed by `close()` complete after the cluster may be gone.
        weak var cluster: Cluster?
        /// nil while idle.
        var peer: PeerRecord?
        /// nil when the call is not in use: a late second completion then reaches nothing.
        var reply: CallReply?
        var startNanos: UInt64 = 0

        func start(cluster: Cluster, peer: PeerRecord, reply: CallReply) {
            self.cluster = cluster
            self.peer = peer
            self.reply = reply
            startNanos = uv_hrtime()
        }

        func finished(_ result: GRPCResult) {
            guard let reply, let peer else { return }
            // Let go of the caller's completion first: an idle call must not keep the caller's objects alive
            // (they are pooled too, and reused only when nothing else holds them).
            self.reply = nil
            self.peer = nil
            guard let cluster else {
                reply.deliver(result)
                return
            }
            cluster.finished(peer, result, nanoseconds: uv_hrtime() &- startNanos)
            reply.deliver(result)
            cluster.startedCalls.giveBack(self)
        }
    }

    /// The counters of the peer called `name`, made on its first call; they outlive its records.
    private func counters(of name: String) -> PeerCounters {
        if let known = perPeerCounters[name] { return known }
        let counters = PeerCounters()
        perPeerCounters[name] = counters
        return counters
    }

    /// Counts a finished call and feeds its outcome to the failure handling.
    private func finished(_ peer: PeerRecord, _ result: GRPCResult, nanoseconds took: UInt64) {
        stats.callLatency.observe(nanoseconds: took)
        let name = peer.name
        let counters = peer.counters
        counters?.stats.latency.observe(nanoseconds: took)
        // Why only calls to the member's current address: moving a member ends the connection to its old one,
        // which fails the calls on it (CANCELLED, on our side); that says nothing about the member where it is.
        guard peer.isCurrent else { return }
        switch result {
        case .success:
            perform(health.callSucceeded(name))
        case .failure(let error):
            if PeerHealth.verdict(on: error) == .peerFailed {
                stats.peerFailures += 1
                counters?.stats.failures += 1
            }
            guard !closed else { return }
            perform(health.callFailed(name, error), reason: Cluster.dropReason(error))
        }
    }

    /// Why a failed call dropped its peer, for the log.
    private static func dropReason(_ error: GRPCCallError) -> String {
        guard error.fromPeer else { return "\(error.status): \(error.message)" }
        return "it refused our credentials (\(error.status): \(error.message)); check --peer-token-file on both sides"
    }

    public func fetch(from peer: PeerID, group: String, key: CacheKey,
                      completion: @escaping (PeerFetchResult) -> Void) {
        // Encoded in a buffer kept for it (`encoded()` would allocate a buffer and then the array); the call
        // copies it into its own kept buffer.
        requestScratch.count = 0
        GetRequest(group: group, key: key).encode(into: &requestScratch)
        call(peer, path: PeerService.getPath, message: requestScratch.readable, timeoutMillis: nil,
             reply: .fetch(peer, completion))
    }

    /// What a Get's outcome means for the group.
    private static func fetchResult(_ result: GRPCResult, from peer: PeerID) -> PeerFetchResult {
        switch result {
        case .success(let bytes):
            do {
                let response = try GetResponse.decode(bytes)
                return .value(response.value, expiresAtMillis: response.expireMillis)
            } catch {
                return .failed("peer \(peer) sent a malformed GetResponse: \(error)")
            }
        case .failure(let error) where error.status == .notFound || Cluster.isSpringcacheNotFound(error):
            return .notFound
        case .failure(let error):
            return .failed("peer \(peer): \(error.status): \(error.message)")
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
            deferred.complete(completion)
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

    /// Ends probing and closes every peer connection; calls in flight complete with CANCELLED, and calls made
    /// after this complete (on a later turn) with UNAVAILABLE.
    public func close() {
        guard !closed else { return }
        closed = true
        probeTimer?.close()
        probeTimer = nil
        transport.close()
        deferred.close()
    }
}

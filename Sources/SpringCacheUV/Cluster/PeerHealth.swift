/// The cluster's failure handling as a value: which peers are dropped from the ring, which are being probed,
/// and how many calls in a row each has failed. Events in (a call's outcome, a probe's, the probe timer, the
/// member list, `/setpeer`), actions out; `Cluster` performs them (rebuilds the ring, sends probes, arms the
/// probe timer). No I/O and no clock: unit-tested by feeding events.
///
/// The rules (springcache's, and better; DESIGN, "Ring and membership"):
/// - Only the peer's own failures count: refused, reset, our deadline passing with no answer, a broken answer,
///   or the peer refusing our credentials. A status the peer sent is an answer from a live peer, and an error
///   that is the caller's (a message over our own size limit) says nothing about the peer (issue 10).
/// - `failuresToDrop` failures in a row drop the peer (1, springcache's: at once); any answer resets the count.
/// - While any peer is down the probe timer runs every `probeIntervalMillis`; each tick probes every dropped
///   peer that has no probe in flight. A probe that gets any answer re-admits the peer.
/// - `/setpeer` re-admits a dropped peer by hand. A member that leaves is forgotten, dropped or not: if it
///   comes back it starts afresh, up.
struct PeerHealth {
    struct Settings: Equatable {
        /// Failed calls in a row that drop a peer from the ring.
        var failuresToDrop = 1
        /// How often dropped peers are probed.
        var probeIntervalMillis: Int64 = 1_000
    }

    /// What a failed call says about the peer it went to.
    enum Verdict: Equatable {
        /// The peer answered (with an error status): it is alive.
        case answered
        /// The peer cannot be used: transport failure, our deadline, a broken answer, refused credentials.
        case peerFailed
        /// Says nothing about the peer: the call failed on our side for a reason of its own (the caller's
        /// request was over our message limit, or an answer had no gRPC status). Neither counts nor resets.
        case callerError
    }

    /// What the driver must do, in order.
    enum Action: Equatable {
        /// Take the peer off the ring (its keys are loaded locally until it is back).
        case drop(String)
        /// Put the peer back on the ring.
        case readmit(String)
        /// Send the peer one probe and report the outcome with `probeFinished`.
        case probe(String)
        /// Arm the probe timer to fire every `everyMillis` (a peer went down while none was).
        case startProbeTimer(everyMillis: Int64)
        /// Disarm the probe timer (no peer is down any more).
        case stopProbeTimer
    }

    let selfName: String
    let settings: Settings
    /// The other members, by name; only they can be dropped.
    private(set) var members: Set<String> = []
    /// Dropped peers: not on the ring until re-admitted.
    private(set) var down: Set<String> = []
    /// Dropped peers with a probe in flight (at most one each).
    private(set) var probing: Set<String> = []
    /// Failed calls in a row, for peers still up; absent = none.
    private var failuresInARow: [String: Int] = [:]

    init(selfName: String, settings: Settings = Settings()) {
        precondition(settings.failuresToDrop >= 1 && settings.probeIntervalMillis > 0, "invalid PeerHealth settings")
        self.selfName = selfName
        self.settings = settings
    }

    /// Whether a failed call means the peer cannot be used, or what else it means.
    ///
    /// Any status the peer sent is an answer and drops nothing — DEADLINE_EXCEEDED or UNAVAILABLE from an owner
    /// whose origin is slow or down, NOT_FOUND, or UNKNOWN (what a springcache (Go) peer returns for its own
    /// errors): dropping such a peer would make every ring flap with the origin. Except refused credentials:
    /// a peer we may not call is as unusable as a dead one, and the log must say why.
    static func verdict(on error: GRPCCallError) -> Verdict {
        if error.fromPeer {
            return error.status == .unauthenticated || error.status == .permissionDenied ? .peerFailed : .answered
        }
        // Why not RESOURCE_EXHAUSTED: on our side it means a message over our own limit — the request the
        // caller made was too large, or the peer's answer was — so the peer is alive; dropping it for a
        // client's oversized value made every read of its keys miss (issue 10, finding 6).
        let s = error.status
        if s == .unavailable || s == .deadlineExceeded || s == .cancelled || s == .internal || s == .unimplemented {
            return .peerFailed
        }
        return .callerError
    }

    // MARK: events

    /// The member list changed (static configuration, etcd): departed members are forgotten.
    mutating func membersChanged(_ names: Set<String>) -> [Action] {
        members = names
        members.remove(selfName)
        let wasDown = !down.isEmpty
        down.formIntersection(members)
        probing.formIntersection(members)
        failuresInARow = failuresInARow.filter { members.contains($0.key) }
        return wasDown && down.isEmpty ? [.stopProbeTimer] : []
    }

    /// A call to `peer` got its answer (a response message, or a status the peer sent).
    mutating func callSucceeded(_ peer: String) -> [Action] {
        failuresInARow.removeValue(forKey: peer)
        return []
    }

    /// A call to `peer` failed with `error`.
    mutating func callFailed(_ peer: String, _ error: GRPCCallError) -> [Action] {
        switch PeerHealth.verdict(on: error) {
        case .answered:
            return callSucceeded(peer)
        case .callerError:
            return []
        case .peerFailed:
            guard members.contains(peer), !down.contains(peer) else { return [] }
            let failures = failuresInARow[peer, default: 0] + 1
            guard failures >= settings.failuresToDrop else {
                failuresInARow[peer] = failures
                return []
            }
            failuresInARow.removeValue(forKey: peer)
            let first = down.isEmpty
            down.insert(peer)
            return first ? [.drop(peer), .startProbeTimer(everyMillis: settings.probeIntervalMillis)] : [.drop(peer)]
        }
    }

    /// The probe timer fired: probe every dropped peer that has no probe in flight, in name order.
    mutating func probeTimerFired() -> [Action] {
        var actions: [Action] = []
        for peer in down.sorted() where probing.insert(peer).inserted {
            actions.append(.probe(peer))
        }
        return actions
    }

    /// A probe of `peer` finished. Any answer from the peer re-admits it; a failure leaves it down until the
    /// next tick.
    mutating func probeFinished(_ peer: String, _ result: GRPCResult) -> [Action] {
        guard probing.remove(peer) != nil else { return [] }
        if case .failure(let error) = result, PeerHealth.verdict(on: error) == .peerFailed { return [] }
        return readmit(peer)
    }

    /// springcache's `/setpeer`: re-admits `peer` if it is dropped (nothing to do if it is up).
    mutating func readmitRequested(_ peer: String) -> [Action] {
        readmit(peer)
    }

    private mutating func readmit(_ peer: String) -> [Action] {
        guard down.remove(peer) != nil else { return [] }
        probing.remove(peer)
        return down.isEmpty ? [.readmit(peer), .stopProbeTimer] : [.readmit(peer)]
    }

    /// Failed calls in a row `peer` has made so far (0 once it answers or is dropped).
    func failuresInARow(of peer: String) -> Int { failuresInARow[peer, default: 0] }
}

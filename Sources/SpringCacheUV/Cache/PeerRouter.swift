/// The seam between a `Group` and the cluster (groupcache's PeerPicker): who owns a key, and how to ask
/// that owner. The Cluster layer implements it over the hash ring and gRPC; a single node has none.
///
/// Contract: every completion is called exactly once, on the loop, never before the call returns. A
/// router that sees a peer fail (refused, reset, deadline) drops it from its ring before completing with
/// `.failed`, so the group's fallback to a local load does not pick the same dead peer again.
public protocol PeerRouter: AnyObject {
    /// The member that owns `key`, or nil when this node does (or has no peers).
    func owner(of key: CacheKey) -> PeerID?
    /// The member that owns `key` among all members, dropped ones included, when it is dropped now (its
    /// calls failed); nil when the owner is reachable or is this node. Writes for such a key are refused.
    func unreachableOwner(of key: CacheKey) -> PeerID?
    /// Asks `peer` for the value of `key` (gRPC Get). The peer answers from its cache or its origin and
    /// never forwards the request again.
    func fetch(from peer: PeerID, group: String, key: CacheKey, completion: @escaping (PeerFetchResult) -> Void)
    /// Stores a value at its owner (gRPC Set). `expireUnixSeconds` 0 = the owner's default TTL.
    func store(at peer: PeerID, group: String, key: CacheKey, value: [UInt8], expireUnixSeconds: Int64,
               hot: Bool, completion: @escaping (PeerCallResult) -> Void)
    /// Deletes a key at its owner (gRPC Delete); the owner then invalidates everyone's copies.
    func remove(at peer: PeerID, group: String, key: CacheKey, completion: @escaping (PeerCallResult) -> Void)
    /// Tells every other member to drop its copies of `key`. Best effort: `completion` runs once every
    /// member has answered or failed (bounded by the peer timeout), so a write can be acknowledged only
    /// after the copies that would contradict it are gone.
    func invalidate(group: String, key: CacheKey, completion: @escaping () -> Void)
}

/// A member of the cluster as the router knows it (its name on the ring).
///
/// `route` is the router's own record of the member, given out by `owner(of:)` so that a call to that owner
/// need not look the member up by name again (issue 11: String-keyed lookups were a tenth of a remote hit);
/// the group only carries it back. Two IDs are equal when their names are. Why `@unchecked Sendable`: the
/// record is only ever touched on the loop that made it.
public struct PeerID: Hashable, @unchecked Sendable, CustomStringConvertible {
    public let name: String
    public let route: AnyObject?
    public init(_ name: String) {
        self.name = name
        route = nil
    }
    public init(_ name: String, route: AnyObject) {
        self.name = name
        self.route = route
    }
    public var description: String { name }
    public static func == (a: PeerID, b: PeerID) -> Bool { a.name == b.name }
    public func hash(into hasher: inout Hasher) { hasher.combine(name) }
}

/// What an owner answered to a fetch.
public enum PeerFetchResult: Equatable {
    /// The value and when the owner's entry expires (unix ms; 0 if the owner did not say).
    case value([UInt8], expiresAtMillis: Int64)
    case notFound
    /// The call failed (unreachable, deadline, error status); the message says why.
    case failed(String)
}

/// What a write through `Group` came to: `done(true)` when something was stored or removed, or refused
/// because the key's owner cannot be reached.
public enum WriteOutcome: Equatable {
    case done(Bool)
    case ownerUnreachable(PeerID)
    /// The owner is reachable but answered with an error (e.g. a springcache peer refusing a key that is
    /// not valid UTF-8): nothing was changed there.
    case ownerFailed(String)
}

/// What an owner answered to a store or remove: `done(true)` when something was stored or removed.
public enum PeerCallResult: Equatable {
    case done(Bool)
    case failed(String)
}

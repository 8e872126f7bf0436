@testable import SpringCacheUV

/// An in-memory cluster for `Group` routing tests (the seam, like `CacheTestLoader`): the test names each
/// key's owner, every call is recorded, and every call waits until the test completes it with a chosen
/// result — as the real router does, nothing ever completes inside the call.
final class CacheTestRouter: PeerRouter {
    /// One call the group made, in order.
    enum Call: Equatable, CustomStringConvertible {
        case fetch(peer: String, group: String, key: String)
        case store(peer: String, group: String, key: String, value: [UInt8], expireUnixSeconds: Int64, hot: Bool)
        case remove(peer: String, group: String, key: String)
        case invalidate(group: String, key: String)

        var description: String {
            switch self {
            case .fetch(let peer, let group, let key): return "fetch(\(peer), \(group)/\(key))"
            case .store(let peer, let group, let key, let value, let expire, let hot):
                return "store(\(peer), \(group)/\(key), \(value.count) bytes, expire \(expire), hot \(hot))"
            case .remove(let peer, let group, let key): return "remove(\(peer), \(group)/\(key))"
            case .invalidate(let group, let key): return "invalidate(\(group)/\(key))"
            }
        }
    }

    /// Owners by key; a key not listed is owned by `defaultOwner` (nil = this node).
    var owners: [String: PeerID?] = [:]
    var defaultOwner: PeerID?
    private(set) var calls: [Call] = []
    /// Keys asked about through `owner(of:)`, in order.
    private(set) var ownerLookups: [String] = []

    private var pendingFetches: [String: [(PeerFetchResult) -> Void]] = [:]
    private var pendingStores: [String: [(PeerCallResult) -> Void]] = [:]
    private var pendingRemoves: [String: [(PeerCallResult) -> Void]] = [:]
    private var pendingInvalidations: [String: [() -> Void]] = [:]

    init(defaultOwner: PeerID? = nil) { self.defaultOwner = defaultOwner }

    // MARK: PeerRouter

    /// Keys whose owner (among all members) is dropped now: writes for them are refused.
    var unreachable: [String: PeerID] = [:]

    func unreachableOwner(of key: CacheKey) -> PeerID? { unreachable[key.description] }

    func owner(of key: CacheKey) -> PeerID? {
        let key = key.description
        ownerLookups.append(key)
        if let listed = owners[key] { return listed }
        return defaultOwner
    }

    func fetch(from peer: PeerID, group: String, key: CacheKey, completion: @escaping (PeerFetchResult) -> Void) {
        let key = key.description
        calls.append(.fetch(peer: peer.name, group: group, key: key))
        pendingFetches[key, default: []].append(completion)
    }

    func store(at peer: PeerID, group: String, key: CacheKey, value: [UInt8], expireUnixSeconds: Int64,
               hot: Bool, completion: @escaping (PeerCallResult) -> Void) {
        let key = key.description
        calls.append(.store(peer: peer.name, group: group, key: key, value: value,
                            expireUnixSeconds: expireUnixSeconds, hot: hot))
        pendingStores[key, default: []].append(completion)
    }

    func remove(at peer: PeerID, group: String, key: CacheKey, completion: @escaping (PeerCallResult) -> Void) {
        let key = key.description
        calls.append(.remove(peer: peer.name, group: group, key: key))
        pendingRemoves[key, default: []].append(completion)
    }

    func invalidate(group: String, key: CacheKey, completion: @escaping () -> Void) {
        let key = key.description
        calls.append(.invalidate(group: group, key: key))
        pendingInvalidations[key, default: []].append(completion)
    }

    // MARK: Inspection

    var fetchCount: Int { calls.filter { if case .fetch = $0 { return true } else { return false } }.count }
    func fetches(of key: String) -> Int {
        calls.filter { if case .fetch(_, _, key) = $0 { return true } else { return false } }.count
    }
    var pendingFetchCount: Int { pendingFetches.values.map(\.count).reduce(0, +) }
    var pendingStoreCount: Int { pendingStores.values.map(\.count).reduce(0, +) }
    var pendingRemoveCount: Int { pendingRemoves.values.map(\.count).reduce(0, +) }
    var pendingInvalidationCount: Int { pendingInvalidations.values.map(\.count).reduce(0, +) }
    var pendingCount: Int { pendingFetchCount + pendingStoreCount + pendingRemoveCount + pendingInvalidationCount }

    // MARK: Completing calls

    /// Completes the oldest pending fetch of `key` with `result`.
    func completeFetch(_ key: String, with result: PeerFetchResult) {
        Self.takeOldest(&pendingFetches, key, "fetch")(result)
    }

    /// Takes the oldest pending fetch of `key` out of the queue and gives its completion to the test, which may
    /// call it more than once (a router that answers twice, or late).
    func takeFetch(_ key: String) -> (PeerFetchResult) -> Void {
        Self.takeOldest(&pendingFetches, key, "fetch")
    }

    /// Completes the oldest pending store of `key` with `result`.
    func completeStore(_ key: String, with result: PeerCallResult) {
        Self.takeOldest(&pendingStores, key, "store")(result)
    }

    /// Completes the oldest pending remove of `key` with `result`.
    func completeRemove(_ key: String, with result: PeerCallResult) {
        Self.takeOldest(&pendingRemoves, key, "remove")(result)
    }

    /// Completes the oldest pending invalidation of `key`.
    func completeInvalidate(_ key: String) {
        Self.takeOldest(&pendingInvalidations, key, "invalidate")()
    }

    private static func takeOldest<C>(_ pending: inout [String: [C]], _ key: String, _ what: String) -> C {
        guard var queue = pending[key], !queue.isEmpty else {
            preconditionFailure("CacheTestRouter: no pending \(what) for \(key)")
        }
        let completion = queue.removeFirst()
        pending[key] = queue.isEmpty ? nil : queue
        return completion
    }
}

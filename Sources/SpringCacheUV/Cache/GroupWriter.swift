/// Writes to a group's keys where they live (sets and deletes from the API): forwarded to the key's owner
/// when that is another member, else stored here and then every other member's copies invalidated; refused
/// when the owner is unreachable.
///
/// Why apart from `Group`: the group keeps one node's cache (lookup, expiry, negative caching, serve stale,
/// hot copies, single-flight) and knows the cluster only for reads; this type is the write policy across the
/// cluster, built on the group's local `set`/`delete` and its `PeerRouter`. Get one from `Group.writer`.
///
/// Single-threaded: every call, and every router completion, happens on the owning loop.
public struct GroupWriter {
    public let group: Group

    public init(group: Group) {
        self.group = group
    }

    /// Stores a value where it belongs: at the key's owner when that is another member (hot == false),
    /// else here. `completion(false)` when the value cannot be stored (larger than the cache, or its owner is
    /// unreachable). A value stored by its owner makes the other members drop their copies.
    public func store(key: CacheKey, value: [UInt8], ttlMillis: Int64?, hot toHot: Bool,
                      completion: @escaping (Bool) -> Void) {
        write(key: key, value: value, ttlMillis: ttlMillis, hot: toHot) { completion($0 == .done(true)) }
    }

    /// The same, telling an unreachable owner apart (the API answers 503 for it).
    ///
    /// Why a write whose owner is unreachable is refused (issue 10, finding 7): storing it here and answering
    /// `done` made a promise the cluster could not keep — when the owner came back it still held the old
    /// value, this node dropped its copy (it no longer owned the key), and reads returned the old value. A
    /// read may fall back to the origin; a write has no such truth to fall back to. So the owner is judged by
    /// every member (`PeerRouter.unreachableOwner`), dropped or not, and the client is told to retry.
    public func write(key: CacheKey, value: [UInt8], ttlMillis: Int64?, hot toHot: Bool,
                      outcome: @escaping (WriteOutcome) -> Void) {
        if !toHot, let router = group.router, let down = router.unreachableOwner(of: key) {
            group.counters.writesRefused += 1
            outcome(.ownerUnreachable(down))
            return
        }
        guard !toHot, let router = group.router, let owner = router.owner(of: key) else {
            let stored = group.set(key: key, value: value, ttlMillis: ttlMillis, hot: toHot)
            // Invalidate even when the value was refused: `set` removed the old one, which copies must not outlive.
            guard !toHot, let router = group.router else {
                outcome(.done(stored))
                return
            }
            router.invalidate(group: group.name, key: key) { outcome(.done(stored)) }
            return
        }
        group.counters.forwardedSets += 1
        let now = group.clock.nowMillis
        // A fetch of the key in flight read the owner before this write: its waiters, and gets that join it
        // after the write is acknowledged, must see the new value (read-your-writes through this node).
        let expiresAt = now + (ttlMillis ?? group.config.ttlMillis)
        group.dropLocalCopies(key: key, newValue: .value(value, expiresAtMillis: expiresAt,
                                                   etag: LRUCache.valueHash(value), stale: false))
        // Why always an absolute expiry: springcache stores whatever `expire` arrives, so 0 (our old "the
        // owner's default") meant 1970 to it and the value was gone at once. The default TTL is ours to apply.
        let ttl = ttlMillis.flatMap { $0 > 0 ? $0 : nil } ?? group.config.ttlMillis
        let expireSeconds = (now + ttl + 999) / 1000
        router.store(at: owner, group: group.name, key: key, value: value, expireUnixSeconds: expireSeconds,
                     hot: false) { result in
            switch result {
            case .done(let stored):
                outcome(.done(stored))
            case .failed(let why):
                // Not stored anywhere: fetches in flight must not answer with it.
                group.clearFetchNote(key: key)
                group.counters.writesRefused += 1
                outcome(self.failedWrite(at: owner, key: key, why))
            }
        }
    }

    /// Deletes a key where it lives: at its owner when that is another member (which then invalidates every
    /// copy), and here. `completion(true)` when something was removed anywhere.
    ///
    /// A delete is "done" only when the owner confirmed it: a copy removed here while the owner did not answer
    /// is no delete, since the owner still serves the value to everyone else (a springcache owner kept serving
    /// it) — see `erase`, whose outcome tells the two apart.
    public func remove(key: CacheKey, completion: @escaping (Bool) -> Void) {
        erase(key: key) { completion($0 == .done(true)) }
    }

    /// The same, telling an unreachable owner apart: a delete it did not see would be undone when it returns,
    /// so it is refused like a store (see `write(key:value:ttlMillis:hot:outcome:)`).
    public func erase(key: CacheKey, outcome: @escaping (WriteOutcome) -> Void) {
        if let router = group.router, let down = router.unreachableOwner(of: key) {
            group.counters.writesRefused += 1
            outcome(.ownerUnreachable(down))
            return
        }
        guard let router = group.router, let owner = router.owner(of: key) else {
            let removed = group.delete(key: key)
            guard let router = group.router else {
                outcome(.done(removed))
                return
            }
            router.invalidate(group: group.name, key: key) { outcome(.done(removed)) }
            return
        }
        group.counters.forwardedDeletes += 1
        let removedHere = group.delete(key: key)
        router.remove(at: owner, group: group.name, key: key) { result in
            switch result {
            case .done(let removed): outcome(.done(removed || removedHere))
            case .failed(let why):
                group.counters.writesRefused += 1
                outcome(self.failedWrite(at: owner, key: key, why))
            }
        }
    }

    /// A write the owner did not take: unreachable if the router dropped it for the failure (a transport
    /// failure), else the owner's own error.
    private func failedWrite(at owner: PeerID, key: CacheKey, _ why: String) -> WriteOutcome {
        group.router?.unreachableOwner(of: key) != nil ? .ownerUnreachable(owner) : .ownerFailed(why)
    }
}

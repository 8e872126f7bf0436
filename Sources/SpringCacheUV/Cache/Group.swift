// Cache/: the read-through cache of one node, without I/O: LRU, expiry, Group, single-flight, writes, seams.

/// A read-only view of a fresh cached value, valid only inside the `withFreshValue` body.
public struct CachedValueView {
    public let value: UnsafeRawBufferPointer
    /// Unix milliseconds at which the value stops being fresh (after any sliding renewal of this hit).
    public let expiresAtMillis: Int64
    /// `LRUCache.valueHash` of the value.
    public let etag: UInt64
    /// Where the value lives, for `pin()`. Unowned and unsafe because a view lives only inside the
    /// `withFreshValue` body, where the cache surely exists, and a hit must not pay for reference counting.
    unowned(unsafe) let cache: LRUCache
    let slot: Int32

    /// Keeps `value`'s bytes valid after the body returns, whatever happens to the entry, until the pin is
    /// released (dropped). For writing a large value to a socket without copying it.
    public func pin() -> ValuePin { ValuePin(cache, slot) }
}

/// A cached value's bytes kept alive for a write that reads them after the lookup (`CachedValueView.pin()`):
/// the entry may be replaced, deleted, expired or evicted meanwhile; its block is freed when the last pin goes.
public final class ValuePin {
    /// Strong, so that the cache (and the block) outlives every write that reads from it.
    private let cache: LRUCache
    private let block: UnsafeMutableRawPointer
    /// The pinned value.
    public let value: UnsafeRawBufferPointer

    init(_ cache: LRUCache, _ slot: Int32) {
        self.cache = cache
        value = cache.value(at: slot)
        block = cache.pin(slot)
    }

    deinit { cache.unpin(block) }
}

/// The answer to one `Group.get`.
public enum GetOutcome: Equatable {
    /// The value; `stale` means it expired and is served only because its reload failed (serve stale).
    case value([UInt8], expiresAtMillis: Int64, etag: UInt64, stale: Bool)
    /// The origin has no such key (possibly remembered by negative caching).
    case notFound
    /// The load failed and nothing usable was cached.
    case failure(LoadError)
}

/// One named cache namespace with read-through semantics: a main and a hot LRU cache in front of an origin.
///
/// Semantics are DESIGN.md's "Cache semantics" table: lookup main then hot; TTL plus jitter; sliding or
/// absolute expiry; single-flight loads; sets and deletes that win over a load in flight; negative caching;
/// serve stale within a grace period. Expiry is lazy on lookup with `sweep()` as a periodic backstop. Loads and
/// fetches go through two `SingleFlight` tables; writes that must reach a key's owner or invalidate other
/// members' copies go through `GroupWriter` (`writer`), built on this type's local `set` and `delete`.
///
/// Invariant: a key lives in at most one of the two caches. Storing into one removes it from the other,
/// so the main-then-hot lookup order can never surface an older value that the newer one should hide.
///
/// Single-threaded: every call, and every loader completion, happens on the owning loop.
public final class Group {
    public let name: String
    public let config: CacheConfig

    let clock: Clock
    private let random: RandomSource
    private let loader: OriginLoader
    private let main: LRUCache
    private let hot: LRUCache
    private typealias Flights = SingleFlight<CacheKey, Waiter, Override>
    /// A caller of `get` waiting for a load or fetch: its completion, in a struct (see `SingleFlight`).
    struct Waiter {
        let answer: (GetOutcome) -> Void
    }
    /// Origin loads in flight (single-flight per key).
    private let loads = Flights()
    /// Fetches from owners in flight, apart from origin loads: a node answering a peer's Get loads locally
    /// and must never wait behind its own fetch from that peer (rings that disagree would deadlock).
    private let fetches = Flights()
    /// Counted here and by `GroupWriter`; `stats` is the snapshot.
    var counters = GroupStats()

    /// The cluster: who owns a key and how to reach it. nil for a single node.
    public weak var router: PeerRouter?

    /// Sets and deletes that go where the key lives (forwarded, or here and then invalidated elsewhere).
    public var writer: GroupWriter { GroupWriter(group: self) }

    /// What a set or delete of a key did while a load or fetch of it was in flight (the call's note).
    enum Override {
        /// The key was set; waiters get this value and the load's result is dropped.
        case set(GetOutcome)
        /// The key was deleted (or a set was refused); waiters get the load's result, which is not stored.
        case deleted
    }

    /// Where a lookup found the key and whether the entry is fresh (else stale: expired within the grace).
    private struct Found {
        let slot: Int32
        let fresh: Bool
    }

    public init(name: String, config: CacheConfig, clock: Clock, random: RandomSource, loader: OriginLoader) {
        self.name = name
        self.config = config
        self.clock = clock
        self.random = random
        self.loader = loader
        // One seed for both caches, so one key hash probes both (see LRUCache.hash).
        let seed = UInt64.random(in: 0...UInt64.max)
        main = LRUCache(capacityBytes: max(0, config.cacheBytes), hashSeed: seed)
        hot = LRUCache(capacityBytes: max(0, config.hotBytes), hashSeed: seed)
    }

    // MARK: Read-only state

    /// This group's snapshot: its counters, both caches' stats, and the loads and fetches in flight.
    public var stats: GroupStats {
        var result = counters
        result.main = main.stats
        result.hot = hot.stats
        result.loadsInFlight = loadsInFlight
        result.fetchesInFlight = fetchesInFlight
        return result
    }

    public var mainItems: Int { main.count }
    public var mainBytes: Int { main.bytes }
    public var mainCapacityBytes: Int { main.capacityBytes }
    public var hotItems: Int { hot.count }
    public var hotBytes: Int { hot.bytes }
    public var hotCapacityBytes: Int { hot.capacityBytes }
    /// Bytes of values whose entry is gone but which writes still send (`CachedValueView.pin()`); not counted
    /// in `mainBytes` or `hotBytes`, bounded by the queued-answer bounds of the writes that hold them.
    public var pinnedOrphanBytes: Int { main.orphanedBytes + hot.orphanedBytes }
    /// Blocks pinned by writes now, whether their entry is still cached or not.
    public var pinnedBlocks: Int { main.pinnedBlocks + hot.pinnedBlocks }
    /// Keys with an origin load in flight.
    public var loadsInFlight: Int { loads.count }
    /// Keys with a fetch from their owner in flight.
    public var fetchesInFlight: Int { fetches.count }

    // MARK: Lookups

    /// Hot path, no allocation: if the key has a fresh positive entry (main cache first, then hot cache),
    /// counts a get and a hit, applies sliding renewal and an LRU touch, and returns `body`'s result.
    ///
    /// Otherwise returns nil, counts nothing (the caller falls back to `get`, which counts the get) and
    /// touches nothing except lazily removing a dead entry (expired beyond the stale grace). Negative
    /// entries give nil too: reporting "not found" is the slow path's job. The view points into the cache,
    /// so `body` must copy what it needs and must not call back into this group.
    public func withFreshValue<R>(forKey key: UnsafeRawBufferPointer, _ body: (CachedValueView) -> R) -> R? {
        let now = clock.nowMillis
        let hash = main.hash(key)
        if let found = probe(main, key, hash: hash, now: now) {
            // By the one-cache invariant, whatever main holds decides; a stale or negative entry needs get.
            guard found.fresh, !main.flags(at: found.slot).contains(.negative) else { return nil }
            counters.gets += 1
            counters.hits += 1
            recordHit(main, found.slot, now: now)
            return body(view(main, found.slot))
        }
        if let found = probe(hot, key, hash: hash, now: now) {
            guard found.fresh, !hot.flags(at: found.slot).contains(.negative) else { return nil }
            counters.gets += 1
            counters.hits += 1
            counters.hotHits += 1
            recordHit(hot, found.slot, now: now)
            return body(view(hot, found.slot))
        }
        return nil
    }

    /// Full read-through get. `completion` is called exactly once, possibly before `get` returns.
    ///
    /// A fresh entry answers at once; otherwise the get joins the key's load in flight or starts one.
    ///
    /// With a router and `forward` (the default), a miss for a key owned by another member is fetched from
    /// that owner; if the owner fails, the key is loaded locally (springcache's fallback). `forward` is false
    /// when answering a peer's Get: that node never forwards again, so disagreeing rings cannot loop.
    public func get(key: CacheKey, forward: Bool = true, completion: @escaping (GetOutcome) -> Void) {
        counters.gets += 1
        if let outcome = answerFromCache(key) {
            completion(outcome)
            return
        }
        counters.misses += 1
        if forward, let router, let owner = router.owner(of: key) {
            fetchRemote(key: key, from: owner, router: router, completion: completion)
            return
        }
        loadLocally(key: key, waiters: Flights.Waiters(one: Waiter(answer: completion)))
    }

    /// Joins the key's origin load in flight or starts one (single-flight).
    private func loadLocally(key: CacheKey, waiters: Flights.Waiters) {
        guard let call = loads.join(key, waiters) else { return }
        counters.loads += 1
        // The group stays alive while a load is in flight: the closure holds it until the loader answers,
        // because every waiter must be called exactly once.
        loader.load(group: name, key: key) { result in
            self.land(key: key, call: call, result: result)
        }
    }

    /// Joins the key's fetch from its owner in flight or starts one (single-flight across the cluster:
    /// the owner's own single-flight then protects the origin).
    private func fetchRemote(key: CacheKey, from owner: PeerID, router: PeerRouter,
                             completion: @escaping (GetOutcome) -> Void) {
        guard let call = fetches.join(key, Flights.Waiters(one: Waiter(answer: completion)),
                                      newCall: { newFetchCall(key: key) }) else { return }
        counters.peerFetches += 1
        // Captures one object and nothing else: such a closure costs no allocation of its own.
        router.fetch(from: owner, group: name, key: key) { result in call.land(result) }
    }

    /// A fetch object for `key`: an idle one when the pool has one that nothing else holds, else a new one.
    private func newFetchCall(key: CacheKey) -> FetchCall {
        guard let call = fetchCallPool.take() else { return FetchCall(group: self, key: key) }
        call.resetForReuse()
        call.group = self
        call.key = key
        return call
    }

    /// A fetch in flight: its single-flight call with what landing it needs, so that the router's completion
    /// captures only this object (issue 11: the closure's context was one more allocation per remote hit).
    /// Reused through `fetchCallPool` once it has landed and nothing else holds it.
    private final class FetchCall: Flights.Call {
        /// Strong while in flight: the group stays alive, every waiter must be answered. nil while idle in the
        /// pool (the group holds the pool: a strong reference there would be a cycle).
        var group: Group?
        var key: CacheKey

        init(group: Group, key: CacheKey) {
            self.group = group
            self.key = key
        }

        func land(_ result: PeerFetchResult) {
            // A router that answers twice reaches the landed call, whose group is gone: nothing happens.
            guard let group else { return }
            group.landRemote(key: key, call: self, result: result)
            self.group = nil
            key = CacheKey([])
            group.fetchCallPool.giveBack(self)
        }
    }

    /// Landed fetch objects kept for reuse. Why 256: one is in use per key being fetched, and a node rarely has
    /// more keys in flight to their owners at the end of a turn than HTTP connections; past that a fetch
    /// allocates its object, as before pooling.
    static let fetchCallPoolLimit = 256
    private var fetchCallPool = ReusePool<FetchCall>(limit: Group.fetchCallPoolLimit)
    /// Idle fetch objects kept for reuse now (for tests).
    var idleFetchCalls: Int { fetchCallPool.count }

    private func landRemote(key: CacheKey, call: Flights.Call,
                            result: PeerFetchResult) {
        guard let waiters = fetches.land(key, call) else {
            assertionFailure("PeerRouter answered twice for key \(key) of group \(name)")
            return
        }
        if case .failed = result { counters.peerFetchErrors += 1 }
        if case .set(let outcome)? = call.note {
            // A set through this node landed while the fetch was in flight: it is newer than the fetch.
            for waiter in waiters { waiter.answer(outcome) }
            return
        }
        let now = clock.nowMillis
        let answer: GetOutcome
        switch result {
        case .failed:
            // The owner is unreachable (the router has dropped it from the ring): serve the key by
            // loading it here, springcache's behaviour. The origin's single-flight still applies.
            counters.fallbackLoads += 1
            loadLocally(key: key, waiters: waiters)
            return
        case .notFound:
            answer = .notFound
        case .value(let value, let ownerExpiry):
            // A copy never outlives the owner's entry; an owner that did not say (springcache) bounds it
            // by our own TTL.
            let expiresAt = ownerExpiry > 0 ? min(ownerExpiry, now + config.ttlMillis) : now + config.ttlMillis
            if call.note == nil, expiresAt > now, shouldCopyHot() {
                if storeHotCopy(key: key, value: value, expiresAtMillis: expiresAt) { counters.hotCopies += 1 }
            }
            answer = .value(value, expiresAtMillis: max(expiresAt, now), etag: LRUCache.valueHash(value), stale: false)
        }
        for waiter in waiters { waiter.answer(answer) }
    }

    /// Whether a value fetched from its owner becomes a local hot copy: groupcache's chance, 1 in
    /// `hotCopyOneIn`, so keys fetched often (the popular ones) soon get a copy and rare ones do not
    /// crowd the hot cache.
    private func shouldCopyHot() -> Bool {
        switch config.hotCopyOneIn {
        case ...0: return false
        case 1: return true
        default: return random.next(below: UInt64(config.hotCopyOneIn)) == 0
        }
    }

    /// After the membership changed: drops what this node may no longer serve as the truth. Main-cache
    /// entries of keys another member owns now (loaded or set here while their owner was unreachable, or
    /// before it joined) would hide the owner's newer value; with `allCopies`, hot copies go too (the node
    /// may have missed invalidations while it was cut off). Returns how many entries were dropped.
    @discardableResult
    public func dropEntriesOwnedElsewhere(allCopies: Bool) -> Int {
        guard let router else { return 0 }
        var dropped = main.removeAll { slot in
            router.owner(of: CacheKey(main.key(at: slot))) != nil
        }
        if allCopies {
            // Copies of other members' values only: values set here with hot=true are this node's own.
            dropped += hot.removeAll { slot in hot.flags(at: slot).contains(.fixedExpiry) }
        }
        counters.ownershipDrops += UInt64(dropped)
        return dropped
    }

    /// Drops this node's copies of a key that changed elsewhere (an owner's invalidation, or a set
    /// forwarded from here); a fetch in flight for it will not make a copy.
    func dropLocalCopies(key: CacheKey, newValue: GetOutcome?) {
        let keyCopy = key
        keyCopy.withBytes { rawKey in
            remove(rawKey, from: main)
            remove(rawKey, from: hot)
        }
        fetches[key]?.note = newValue.map { .set($0) } ?? .deleted
    }

    /// Forgets what a write noted on the key's fetch in flight: the write failed, so the fetch's answer stands.
    func clearFetchNote(key: CacheKey) {
        fetches[key]?.note = nil
    }

    // MARK: Mutations

    /// Stores a value (springcache's /api/set and PUT). `ttlMillis` nil (or ≤ 0) means the default TTL, plus
    /// jitter; an explicit TTL is honoured as given, without jitter. `hot == true` stores into the hot cache
    /// only (springcache's meaning), else into the main cache. Returns false if the value cannot be stored
    /// (larger than the cache); the key then holds no value at all.
    @discardableResult
    public func set(key: CacheKey, value: [UInt8], ttlMillis: Int64?, hot toHot: Bool) -> Bool {
        counters.sets += 1
        let now = clock.nowMillis
        // Why ≤ 0 is the default: springcache's `expire=0` means "the default TTL", and a non-positive
        // TTL could only store an entry that is dead on arrival.
        // Why no jitter on an explicit TTL: the client asked for that lifetime (`PUT ?ttl=60` must answer
        // max-age=60, not 60 plus up to 3 minutes); jitter exists to spread keys filled together with the
        // default TTL, which is what loads and default-TTL sets are.
        let explicit = ttlMillis.flatMap { $0 > 0 ? $0 : nil }
        let (expiresAt, window) = expiry(ttl: explicit ?? config.ttlMillis, now: now, jitter: explicit == nil)
        let etag = LRUCache.valueHash(value)
        let target = toHot ? hot : main
        let other = toHot ? main : hot
        let keyCopy = key
        let stored = keyCopy.withBytes { rawKey -> Bool in
            remove(rawKey, from: other)
            return value.withUnsafeBytes {
                target.insert(key: rawKey, value: $0, expiresAt: expiresAt, window: window, valueHash: etag)
            }
        }
        // Why the set wins: a load (or fetch) in flight may have read the old value before this write;
        // storing its result later would silently overwrite newer data (springcache lost such sets).
        let override: Override = stored
            ? .set(.value(value, expiresAtMillis: expiresAt, etag: etag, stale: false))
            : .deleted
        loads[key]?.note = override
        fetches[key]?.note = override
        return stored
    }

    /// Stores a copy of a value owned by another node into the hot cache, expiring exactly at
    /// `expiresAtMillis` (the owner's expiry): hits never extend it, so a copy never outlives its original.
    @discardableResult
    public func storeHotCopy(key: CacheKey, value: [UInt8], expiresAtMillis: Int64) -> Bool {
        let now = clock.nowMillis
        guard expiresAtMillis > now else { return false }
        let keyCopy = key
        return keyCopy.withBytes { rawKey -> Bool in
            remove(rawKey, from: main)
            return value.withUnsafeBytes {
                hot.insert(key: rawKey, value: $0, expiresAt: expiresAtMillis,
                           window: UInt32(clamping: expiresAtMillis - now), flags: .fixedExpiry)
            }
        }
    }

    /// Removes the key from the main and hot caches, negative entry included. Returns whether something
    /// was removed. A load in flight for the key will not store its result.
    @discardableResult
    public func delete(key: CacheKey) -> Bool {
        counters.deletes += 1
        let keyCopy = key
        let removed = keyCopy.withBytes { rawKey -> Bool in
            // A remembered "not found" is dropped too, but it was no value: it does not count as removed.
            let fromMain = removeValue(rawKey, from: main)
            let fromHot = removeValue(rawKey, from: hot)
            return fromMain || fromHot
        }
        // Why: the load may have read the value before the delete reached the origin; storing it would
        // resurrect deleted data. Its waiters still get what it loaded.
        loads[key]?.note = .deleted
        fetches[key]?.note = .deleted
        return removed
    }

    /// Periodic backstop sweep of both caches (called from a loop timer); returns how many entries it removed.
    @discardableResult
    public func sweep() -> Int {
        let now = clock.nowMillis
        return main.sweep(now: now, graceMillis: config.staleGraceMillis, budget: config.sweepBudget)
            + hot.sweep(now: now, graceMillis: config.staleGraceMillis, budget: config.sweepBudget)
    }

    // MARK: Internals

    /// Finds the key in `cache`; lazily removes it (counted as an expiration) if it is dead.
    @inline(__always)
    private func probe(_ cache: LRUCache, _ key: UnsafeRawBufferPointer, hash: UInt64, now: Int64) -> Found? {
        guard let slot = cache.find(key: key, hash: hash) else { return nil }
        if now < cache.expiresAt(at: slot) { return Found(slot: slot, fresh: true) }
        if cache.isDead(slot, now: now, graceMillis: config.staleGraceMillis) {
            cache.expire(slot)
            return nil
        }
        return Found(slot: slot, fresh: false)
    }

    /// Sliding renewal (unless off, or the entry's expiry is fixed) and an LRU touch for a fresh hit.
    @inline(__always)
    private func recordHit(_ cache: LRUCache, _ slot: Int32, now: Int64) {
        let flags = cache.flags(at: slot)
        if config.sliding && !flags.contains(.fixedExpiry) && !flags.contains(.negative) {
            cache.renew(slot, now: now)
        }
        cache.touch(slot)
    }

    @inline(__always)
    private func view(_ cache: LRUCache, _ slot: Int32) -> CachedValueView {
        CachedValueView(value: cache.value(at: slot), expiresAtMillis: cache.expiresAt(at: slot),
                        etag: cache.valueHash(at: slot), cache: cache, slot: slot)
    }

    private func outcome(_ cache: LRUCache, _ slot: Int32, stale: Bool) -> GetOutcome {
        .value(Array(cache.value(at: slot)), expiresAtMillis: cache.expiresAt(at: slot),
               etag: cache.valueHash(at: slot), stale: stale)
    }

    /// The slow path's cache answer: a fresh value (a hit), a fresh negative entry (a negative hit), or
    /// nil when a load is needed (nothing there, or only a stale entry).
    private func answerFromCache(_ key: CacheKey) -> GetOutcome? {
        let now = clock.nowMillis
        let keyCopy = key
        return keyCopy.withBytes { rawKey -> GetOutcome? in
            let hash = main.hash(rawKey)
            // By the one-cache invariant, whatever main holds decides; only a key absent there is looked up in hot.
            if let found = probe(main, rawKey, hash: hash, now: now) {
                return freshAnswer(main, found, now: now)
            }
            if let found = probe(hot, rawKey, hash: hash, now: now) {
                return freshAnswer(hot, found, now: now)
            }
            return nil
        }
    }

    /// A hit or negative hit for a found entry (counted), or nil if it is stale and needs a load.
    private func freshAnswer(_ cache: LRUCache, _ found: Found, now: Int64) -> GetOutcome? {
        guard found.fresh else { return nil }
        if cache.flags(at: found.slot).contains(.negative) {
            // Why no renewal: a storm of lookups must not keep "not found" alive after the key appears at
            // the origin; the negative window stays absolute.
            counters.negativeHits += 1
            cache.touch(found.slot)
            return .notFound
        }
        counters.hits += 1
        if cache === hot { counters.hotHits += 1 }
        recordHit(cache, found.slot, now: now)
        return outcome(cache, found.slot, stale: false)
    }

    /// Completes a flight with the loader's result: stores it (unless a set or delete overrode it) and
    /// answers every waiter with one outcome.
    private func land(key: CacheKey, call: Flights.Call, result: LoadResult) {
        // The call is forgotten before anyone is answered (see `SingleFlight.land`).
        guard let waiters = loads.land(key, call) else {
            assertionFailure("OriginLoader answered twice for key \(key) of group \(name)")
            return
        }
        switch result {
        case .value: break
        case .notFound: counters.loadNotFound += 1
        case .failure: counters.loadErrors += 1
        }

        let now = clock.nowMillis
        let answer: GetOutcome
        var servedStale = false
        switch call.note {
        case .set(let setOutcome)?:
            answer = setOutcome
        case .deleted?:
            answer = unstoredOutcome(result, now: now)
        case nil:
            (answer, servedStale) = store(key: key, result: result, now: now)
        }

        for waiter in waiters {
            if servedStale { counters.staleServed += 1 }
            waiter.answer(answer)
        }
    }

    /// The outcome of a load whose result is not stored (a delete overrode it).
    private func unstoredOutcome(_ result: LoadResult, now: Int64) -> GetOutcome {
        switch result {
        case .value(let value):
            return .value(value, expiresAtMillis: now + config.ttlMillis, etag: LRUCache.valueHash(value),
                          stale: false)
        case .notFound:
            return .notFound
        case .failure(let error):
            return .failure(error)
        }
    }

    /// Stores a load's result and returns the waiters' outcome and whether it is a stale value.
    private func store(key: CacheKey, result: LoadResult, now: Int64) -> (GetOutcome, Bool) {
        let keyCopy = key
        return keyCopy.withBytes { rawKey -> (GetOutcome, Bool) in
            switch result {
            case .value(let value):
                let (expiresAt, window) = expiry(ttl: config.ttlMillis, now: now)
                let etag = LRUCache.valueHash(value)
                remove(rawKey, from: hot)
                // Replaces any stale entry. A value too large to cache is still the answer to this get.
                _ = value.withUnsafeBytes {
                    main.insert(key: rawKey, value: $0, expiresAt: expiresAt, window: window, valueHash: etag)
                }
                return (.value(value, expiresAtMillis: expiresAt, etag: etag, stale: false), false)

            case .notFound:
                remove(rawKey, from: main)
                remove(rawKey, from: hot)
                if config.negativeTTLMillis > 0 {
                    // Why: a storm of lookups for a missing key then costs one origin call per window.
                    // No jitter: the window is short and meant to be exact.
                    let window = min(config.negativeTTLMillis, Group.maxWindowMillis)
                    main.insert(key: rawKey, value: UnsafeRawBufferPointer(start: nil, count: 0),
                                expiresAt: now + window, window: UInt32(window), flags: .negative)
                }
                return (.notFound, false)

            case .failure(let error):
                // Failures are never cached, so the next get loads again. Serve stale: an entry expired
                // less than the grace ago answers instead of the error (DESIGN: "serve stale").
                let hash = main.hash(rawKey)
                for cache in [main, hot] {
                    guard let found = probe(cache, rawKey, hash: hash, now: now),
                          !cache.flags(at: found.slot).contains(.negative) else { continue }
                    // Fresh only if a hot copy arrived during the load; usually this is the stale entry.
                    return (outcome(cache, found.slot, stale: !found.fresh), !found.fresh)
                }
                return (.failure(error), false)
            }
        }
    }

    /// Removes the key from `cache` if present; returns whether it held a value (not a negative entry).
    private func removeValue(_ key: UnsafeRawBufferPointer, from cache: LRUCache) -> Bool {
        guard let slot = cache.find(key: key) else { return false }
        let wasValue = !cache.flags(at: slot).contains(.negative)
        cache.remove(slot)
        return wasValue
    }

    /// Removes the key from `cache` if present; returns whether it was.
    @discardableResult
    private func remove(_ key: UnsafeRawBufferPointer, from cache: LRUCache) -> Bool {
        guard let slot = cache.find(key: key) else { return false }
        cache.remove(slot)
        return true
    }

    /// The longest TTL window an entry can have (~49.7 days, the entry's `UInt32` window), far above the
    /// API's 3-day maximum; capping keeps absurd configured or requested TTLs from overflowing.
    private static let maxWindowMillis = Int64(UInt32.max)

    /// An expiry `ttl` (plus jitter unless told not to) from now, and the window a sliding renewal grants.
    private func expiry(ttl: Int64, now: Int64, jitter withJitter: Bool = true) -> (expiresAt: Int64, window: UInt32) {
        // Jitter is uniform in [0, jitterMillis) so keys filled together do not expire together.
        let jitter = withJitter && config.jitterMillis > 0
            ? Int64(random.next(below: UInt64(config.jitterMillis))) : 0
        let cap = Group.maxWindowMillis
        let window = min(min(ttl, cap) + min(jitter, cap), cap)
        return (now + window, UInt32(window))
    }
}

/// The limits and expiry policy of one `Group`; defaults are springcache's (see DESIGN.md, "Cache semantics").
public struct CacheConfig: Equatable, Sendable {
    /// Bound of the main cache (keys this node owns): key + value + `LRUCache.perEntryOverhead` per entry.
    public var cacheBytes: Int
    /// Bound of the hot cache (values set with `hot=true`, copies of popular keys owned elsewhere).
    public var hotBytes: Int
    /// TTL of loaded values and of sets without an explicit TTL; springcache uses 30 s.
    public var ttlMillis: Int64
    /// A random extra in [0, jitterMillis) added to every expiry so keys filled together do not expire
    /// together; springcache's 3 minutes. Tests use 0.
    public var jitterMillis: Int64
    /// A hit restarts the entry's TTL window (springcache's behaviour); false = absolute expiry.
    public var sliding: Bool
    /// How long "the origin has no such key" is remembered; 0 disables negative caching.
    public var negativeTTLMillis: Int64
    /// How long after expiry an entry may still be served, marked stale, when its reload fails; 0 = off.
    public var staleGraceMillis: Int64
    /// Slots each cache examines per `Group.sweep()` call.
    public var sweepBudget: Int
    /// A value fetched from its owner becomes a hot copy with probability 1 in this (groupcache's 10);
    /// 1 = always, 0 = never.
    public var hotCopyOneIn: Int = 10

    public init(cacheBytes: Int = 64 << 20,
                hotBytes: Int = 8 << 20,
                ttlMillis: Int64 = 30_000,
                jitterMillis: Int64 = 180_000,
                sliding: Bool = true,
                negativeTTLMillis: Int64 = 5_000,
                staleGraceMillis: Int64 = 0,
                sweepBudget: Int = 1_000) {
        self.cacheBytes = cacheBytes
        self.hotBytes = hotBytes
        self.ttlMillis = ttlMillis
        self.jitterMillis = jitterMillis
        self.sliding = sliding
        self.negativeTTLMillis = negativeTTLMillis
        self.staleGraceMillis = staleGraceMillis
        self.sweepBudget = sweepBudget
    }
}

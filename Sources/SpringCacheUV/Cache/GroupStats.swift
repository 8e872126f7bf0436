/// Counters and gauges of one `Group` (its snapshot), read by `/api/stats` and `/metrics`.
///
/// Every answered get is exactly one of a hit, a negative hit or a miss: `gets == hits + negativeHits + misses`.
public struct GroupStats: Equatable, Sendable {
    /// Lookups answered: fresh hits from `withFreshValue` plus every `get`.
    public var gets: UInt64 = 0
    /// Fresh positive hits, from either cache.
    public var hits: UInt64 = 0
    /// The part of `hits` found in the hot cache.
    public var hotHits: UInt64 = 0
    /// Gets that found nothing fresh and so started or joined a load.
    public var misses: UInt64 = 0
    /// Origin loads started (one per single-flight).
    public var loads: UInt64 = 0
    /// Loads that ended in `.failure`.
    public var loadErrors: UInt64 = 0
    /// Loads that ended in `.notFound`.
    public var loadNotFound: UInt64 = 0
    /// Gets answered "not found" from a negative entry, without a load.
    public var negativeHits: UInt64 = 0
    /// Waiters answered with an expired value because the reload failed (serve stale).
    public var staleServed: UInt64 = 0
    /// Misses fetched from the key's owner (one per single-flight), and those that failed.
    public var peerFetches: UInt64 = 0
    public var peerFetchErrors: UInt64 = 0
    /// Keys loaded here because their owner could not be reached.
    public var fallbackLoads: UInt64 = 0
    /// Values fetched from an owner that became hot copies here.
    public var hotCopies: UInt64 = 0
    /// Sets and deletes sent to the key's owner.
    public var forwardedSets: UInt64 = 0
    public var forwardedDeletes: UInt64 = 0
    /// Sets and deletes refused because the key's owner was unreachable (answered 503, nothing changed).
    public var writesRefused: UInt64 = 0
    /// Entries dropped because the membership changed and another member owns their keys now.
    public var ownershipDrops: UInt64 = 0
    public var sets: UInt64 = 0
    public var deletes: UInt64 = 0
    /// Keys with an origin load in flight now (a gauge).
    public var loadsInFlight = 0
    /// Keys with a fetch from their owner in flight now (a gauge).
    public var fetchesInFlight = 0
    /// The main cache's evictions, expirations, items, bytes and capacity.
    public var main = LRUCacheStats()
    /// The hot cache's evictions, expirations, items, bytes and capacity.
    public var hot = LRUCacheStats()

    public init() {}
}

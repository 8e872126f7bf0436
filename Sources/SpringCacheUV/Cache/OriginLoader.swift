// The seam between a `Group` and where a miss is filled from (groupcache's Getter). It lives here, with its
// user: `Origin/` implements it (`DemoOrigin`, `HTTPOrigin`), and nothing in `Cache/` knows those.

/// Why a load failed, as the API reports it: `unavailable` → 502, `timedOut` → 504.
public enum LoadError: Error, Equatable, Sendable {
    case unavailable(String)
    case timedOut(String)

    public var message: String {
        switch self {
        case .unavailable(let m), .timedOut(let m): return m
        }
    }
}

/// The outcome of one origin load.
public enum LoadResult: Equatable {
    case value([UInt8])
    case notFound
    case failure(LoadError)
}

/// Fills a miss for one key of one group.
///
/// Contract: `completion` is called exactly once, on the loop thread. It may be called before `load`
/// returns (the demo store answers at once); callers must cope with that.
public protocol OriginLoader: AnyObject {
    func load(group: String, key: CacheKey, completion: @escaping (LoadResult) -> Void)
}

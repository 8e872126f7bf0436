@testable import SpringCacheUV

// Test seams for Cache/ tests. Names carry a `CacheTest` prefix so they cannot collide with helpers of
// other folders in the same test target.

/// An in-memory origin: answers at once from `store` (synchronous mode) or holds each load until the
/// test calls `complete` (deferred mode).
final class CacheTestLoader: OriginLoader {
    var synchronous: Bool
    /// What a synchronous load answers; keys not present answer `.notFound`.
    var store: [String: LoadResult] = [:]
    /// Every load call, in order: (group, key).
    private(set) var calls: [(group: String, key: String)] = []
    private var pending: [String: [(LoadResult) -> Void]] = [:]

    init(synchronous: Bool = false, store: [String: LoadResult] = [:]) {
        self.synchronous = synchronous
        self.store = store
    }

    var loadCount: Int { calls.count }
    func loads(of key: String) -> Int { calls.filter { $0.key == key }.count }
    func pendingCount(_ key: String) -> Int { pending[key]?.count ?? 0 }

    func load(group: String, key: CacheKey, completion: @escaping (LoadResult) -> Void) {
        let key = key.description
        calls.append((group, key))
        if synchronous {
            completion(store[key] ?? .notFound)
        } else {
            pending[key, default: []].append(completion)
        }
    }

    /// Completes the oldest pending load of `key` with `result`.
    func complete(_ key: String, with result: LoadResult) {
        guard var queue = pending[key], !queue.isEmpty else {
            preconditionFailure("no pending load for \(key)")
        }
        let completion = queue.removeFirst()
        pending[key] = queue.isEmpty ? nil : queue
        completion(result)
    }
}

/// A random source that returns the values a test queued, in order (each must be below the bound asked).
final class CacheTestRandom: RandomSource {
    var queued: [UInt64]
    private(set) var bounds: [UInt64] = []

    init(_ values: [UInt64] = []) { queued = values }

    func next(below upperBound: UInt64) -> UInt64 {
        bounds.append(upperBound)
        precondition(!queued.isEmpty, "CacheTestRandom: no value queued")
        let value = queued.removeFirst()
        precondition(value < upperBound, "CacheTestRandom: queued \(value) not below \(upperBound)")
        return value
    }
}

/// Collects the outcomes of gets.
final class CacheTestOutcomes {
    private(set) var all: [GetOutcome] = []
    func callback() -> (GetOutcome) -> Void { { self.all.append($0) } }
    var last: GetOutcome? { all.last }
}

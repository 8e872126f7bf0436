/// Capped exponential backoff between retries of etcd calls: `initialMillis`, then doubled after each further
/// failure up to `maxMillis`; `reset` once etcd answers, so the next failure starts from a short wait again.
///
/// Why capped doubling: a node must not hammer an etcd that is down (200, 400, 800 ms… spread the load of a
/// whole fleet retrying), yet must notice its return soon (the cap bounds the wait after it answers again).
public struct EtcdBackoff: Equatable {
    public let initialMillis: Int64
    public let maxMillis: Int64
    /// The wait the next failure will get.
    public private(set) var nextMillis: Int64

    public init(initialMillis: Int64, maxMillis: Int64) {
        precondition(initialMillis > 0 && maxMillis >= initialMillis, "backoff needs 0 < initial <= max")
        self.initialMillis = initialMillis
        self.maxMillis = maxMillis
        nextMillis = initialMillis
    }

    /// The wait before the retry of the failure that just happened; the one after it doubles (up to the cap).
    public mutating func next() -> Int64 {
        let delay = nextMillis
        nextMillis = min(nextMillis * 2, maxMillis)
        return delay
    }

    public mutating func reset() {
        nextMillis = initialMillis
    }
}

// Loop/: the uv loop, timers, TCP, write batching, signals — and the clock everything else is given.

/// A source of time in milliseconds since the Unix epoch that never goes backwards.
///
/// Why injected: expiry, negative caching, stale grace and timeouts are all decided against `nowMillis`,
/// so tests move a `ManualClock` instead of sleeping (memcached's `debugtime` habit). In production
/// `LoopClock` reads libuv's cached loop time, so one loop turn sees one instant and reading it costs nothing.
public protocol Clock: AnyObject {
    var nowMillis: Int64 { get }
}

/// A clock that moves only when told to; for tests.
public final class ManualClock: Clock {
    public var nowMillis: Int64

    public init(nowMillis: Int64 = 1_700_000_000_000) {
        self.nowMillis = nowMillis
    }

    public func advance(byMillis delta: Int64) {
        precondition(delta >= 0, "ManualClock cannot go backwards")
        nowMillis += delta
    }
}

/// A source of random numbers for jitter and sampling, injectable so tests are deterministic.
public protocol RandomSource: AnyObject {
    /// A uniformly distributed value in 0..<upperBound; upperBound > 0.
    func next(below upperBound: UInt64) -> UInt64
}

/// xorshift64* seeded from the system generator: fast, allocation-free, good enough for jitter.
public final class FastRandom: RandomSource {
    private var state: UInt64

    public init(seed: UInt64? = nil) {
        var s = seed ?? UInt64.random(in: 1...UInt64.max)
        if s == 0 { s = 0x9E37_79B9_7F4A_7C15 }
        state = s
    }

    public func next(below upperBound: UInt64) -> UInt64 {
        precondition(upperBound > 0)
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        let r = state &* 0x2545_F491_4F6C_DD1D
        return r % upperBound
    }
}

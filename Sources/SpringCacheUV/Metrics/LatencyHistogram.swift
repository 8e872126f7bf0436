// Metrics/: plain stats structs, and the Prometheus and JSON writers that /metrics and /api/stats render with.

/// A latency histogram with fixed buckets from 10 µs to 120 s (plus +Inf), as Prometheus exposes it.
///
/// Why fixed buckets: observing is a short scan and an increment, with no allocation and no configuration to
/// get wrong. The bounds start at 10 µs because a local hit is served in tens of microseconds (a first bucket
/// of 100 µs would make its median pure interpolation), and end at 120 s, beyond the longest `--origin-timeout`
/// accepted (60 s), so a load that runs into its timeout still lands in a finite bucket. The 2 ms bound is
/// the p99 target of local hits and of peer calls, so the page says directly whether it is met. Counts are
/// kept per bucket and made cumulative only when rendered.
public struct LatencyHistogram: Equatable {
    /// The upper bounds of the finite buckets in nanoseconds; a last bucket (+Inf) catches the rest.
    public static let upperBoundsNanos: [UInt64] = [
        10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000,
        25_000_000, 50_000_000, 100_000_000, 250_000_000, 500_000_000, 1_000_000_000, 2_500_000_000,
        5_000_000_000, 10_000_000_000, 30_000_000_000, 60_000_000_000, 120_000_000_000,
    ]
    /// The same bounds in seconds, as written in the `le` label; the last is "+Inf".
    public static let upperBoundLabels: [StaticString] = [
        "0.00001", "0.000025", "0.00005", "0.0001", "0.00025", "0.0005", "0.001", "0.002", "0.005", "0.01",
        "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "120", "+Inf",
    ]
    /// The largest bound in milliseconds: a timeout beyond it would put its slow answers in +Inf only.
    public static let largestBoundMillis: Int64 = 120_000

    /// Observations per bucket (not cumulative); the last element counts those above every finite bound.
    public private(set) var bucketCounts: [UInt64]
    public private(set) var count: UInt64 = 0
    public private(set) var sumNanos: UInt64 = 0

    public init() {
        bucketCounts = [UInt64](repeating: 0, count: LatencyHistogram.upperBoundLabels.count)
    }

    /// Records one duration. Allocation-free: the bucket array is owned uniquely and updated in place.
    public mutating func observe(nanoseconds: UInt64) {
        let bounds = LatencyHistogram.upperBoundsNanos
        var i = 0
        while i < bounds.count && nanoseconds > bounds[i] { i += 1 }
        bucketCounts[i] &+= 1
        count &+= 1
        sumNanos &+= nanoseconds
    }

    /// The number of observations at or below the bound of bucket `index` (Prometheus' cumulative counts).
    public func cumulativeCount(throughBucket index: Int) -> UInt64 {
        var total: UInt64 = 0
        for i in 0...index { total &+= bucketCounts[i] }
        return total
    }

    /// The sum of all observations in seconds.
    public var sumSeconds: Double { Double(sumNanos) / 1_000_000_000 }
}

#if canImport(Glibc)
import Glibc
#endif

/// Byte comparisons against ASCII literals and other bytes: the one implementation the parsers, routers and
/// header readers share (HTTP/1.1 methods and paths, HTTP/2 header names, ETags).
extension UnsafeRawBufferPointer {
    /// Whether these bytes equal `literal` exactly.
    @inline(__always)
    public func equals(_ literal: StaticString) -> Bool {
        count == literal.utf8CodeUnitCount && (count == 0 || memcmp(baseAddress!, literal.utf8Start, count) == 0)
    }

    /// Whether these bytes start with `literal`.
    @inline(__always)
    public func starts(with literal: StaticString) -> Bool {
        let n = literal.utf8CodeUnitCount
        return count >= n && (n == 0 || memcmp(baseAddress!, literal.utf8Start, n) == 0)
    }

    /// Whether these bytes equal `other` exactly.
    @inline(__always)
    public func equals(_ other: UnsafeRawBufferPointer) -> Bool {
        count == other.count && (count == 0 || memcmp(baseAddress!, other.baseAddress!, count) == 0)
    }
}

/// Comparison of secrets (bearer tokens of the API and the peer port).
public enum ConstantTime {
    /// Whether `a` equals `b`, in time that depends only on the lengths, so a token cannot be guessed byte by
    /// byte from how long a refusal takes.
    public static func equals(_ a: UnsafeRawBufferPointer, _ b: [UInt8]) -> Bool {
        var diff = UInt8(a.count == b.count ? 0 : 1)
        let n = Swift.max(a.count, b.count)
        for i in 0..<n {
            let x = i < a.count ? a[i] : 0
            let y = i < b.count ? b[i] : 0xFF
            diff |= x ^ y
        }
        return diff == 0
    }
}

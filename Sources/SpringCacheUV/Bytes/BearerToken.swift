// Bytes/: byte helpers every subsystem may use and that use nothing (a leaf, as groupcache's are).

/// `Authorization: Bearer <token>` checks shared by the HTTP API and the peer port.
public enum BearerToken {
    /// Whether `header` (an `Authorization` value) carries exactly `token` in the Bearer scheme.
    ///
    /// The scheme name is case-insensitive and separated from the credentials by one or more spaces
    /// (RFC 9110 §11.1, §11.4), so `BEARER t` and `bearer  t` are the same as `Bearer t`. The token itself is
    /// compared exactly, in time that does not depend on where it differs.
    public static func matches(_ header: UnsafeRawBufferPointer, token: [UInt8]) -> Bool {
        let scheme: StaticString = "bearer"
        let n = scheme.utf8CodeUnitCount
        guard header.count > n else { return false }
        for i in 0..<n where header[i] | 0x20 != scheme.utf8Start[i] { return false }
        var start = n
        while start < header.count && header[start] == UInt8(ascii: " ") { start += 1 }
        guard start > n, start < header.count else { return false }
        return constantTimeEquals(UnsafeRawBufferPointer(rebasing: header[start...]), token)
    }

    /// Compares in time that depends only on the lengths, so the token cannot be guessed byte by byte.
    public static func constantTimeEquals(_ a: UnsafeRawBufferPointer, _ b: [UInt8]) -> Bool {
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

// Bytes/: byte helpers every subsystem may use and that use nothing (a leaf, as groupcache's are).

/// `Authorization: Bearer <token>` checks shared by the HTTP API and the peer port.
public enum BearerToken {
    /// Whether `header` (an `Authorization` value) carries exactly `token` in the Bearer scheme.
    ///
    /// The scheme name is case-insensitive (RFC 9110 §11.1), so `BEARER t` and `bearer t` are the same as
    /// `Bearer t`. Exactly one space follows it: RFC 9110 allows more, but a second space is kept as part of
    /// the credentials, so `Bearer  t` is refused like any other near miss (docs/reliability.md). The token
    /// itself is compared exactly, in time that does not depend on where it differs.
    public static func matches(_ header: UnsafeRawBufferPointer, token: [UInt8]) -> Bool {
        let scheme: StaticString = "bearer"
        let n = scheme.utf8CodeUnitCount
        guard header.count > n else { return false }
        for i in 0..<n where header[i] | 0x20 != scheme.utf8Start[i] { return false }
        guard header[n] == UInt8(ascii: " ") else { return false }
        return ConstantTime.equals(UnsafeRawBufferPointer(rebasing: header[(n + 1)...]), token)
    }
}

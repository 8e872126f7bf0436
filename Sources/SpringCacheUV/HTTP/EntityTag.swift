
/// The entity tag of a raw value (`ETag` on `GET /v1/cache/...`) and the `If-None-Match` check against it.
///
/// A value's tag is the 64-bit hash the cache keeps with it, written as 16 lowercase hex digits in quotes and
/// used as a strong validator (RFC 9110 §8.8.3): two different values under one key share a tag only by a
/// hash collision.
enum EntityTag {
    /// `"` + 16 hex digits + `"`.
    static let byteCount = 18

    /// Writes the quoted tag of `etag` into the first `byteCount` bytes of `bytes`.
    static func format(_ etag: UInt64, into bytes: UnsafeMutableRawBufferPointer) {
        bytes[0] = UInt8(ascii: "\"")
        for i in 0..<16 {
            bytes[1 + i] = Hex.lower(UInt8(truncatingIfNeeded: etag >> UInt64(60 - 4 * i)) & 0xF)
        }
        bytes[byteCount - 1] = UInt8(ascii: "\"")
    }

    /// Runs `body` with the quoted tag of `etag`, kept on the stack (the hot path allocates nothing).
    static func withQuoted<R>(_ etag: UInt64, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        var storage = (UInt64(0), UInt64(0), UInt8(0), UInt8(0))  // 18 bytes
        return withUnsafeMutableBytes(of: &storage) { bytes in
            format(etag, into: bytes)
            return body(UnsafeRawBufferPointer(rebasing: bytes[0..<byteCount]))
        }
    }

    /// RFC 9110 §13.1.2: whether an `If-None-Match` value (`*` or a list of entity tags, compared weakly, so
    /// `W/"x"` matches `"x"`) names `etag`, in which case a GET is answered 304 Not Modified.
    static func matches(_ header: UnsafeRawBufferPointer, _ etag: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        let n = header.count
        while i < n {
            while i < n && (header[i] == UInt8(ascii: " ") || header[i] == UInt8(ascii: ",")) { i += 1 }
            if i < n && header[i] == UInt8(ascii: "*") { return true }
            if i + 1 < n && header[i] == UInt8(ascii: "W") && header[i + 1] == UInt8(ascii: "/") { i += 2 }
            var j = i
            while j < n && header[j] != UInt8(ascii: ",") { j += 1 }
            var end = j
            while end > i && header[end - 1] == UInt8(ascii: " ") { end -= 1 }
            if UnsafeRawBufferPointer(rebasing: header[i..<end]).equals(etag) {
                return true
            }
            i = j + 1
        }
        return false
    }
}

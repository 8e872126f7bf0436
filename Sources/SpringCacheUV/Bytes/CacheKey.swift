/// A cache key: a byte string, compared and hashed byte by byte, end to end (API, cache, ring, single-flight,
/// peer messages, origin).
///
/// Why not `String`: decoding turns every invalid UTF-8 sequence into U+FFFD, so `secret%80` and `secret%FF`
/// were one key, and Swift compares strings by canonical equivalence, so `%C3%A9` (é) and `e%CC%81` (e + a
/// combining accent) were one key too. Distinct bytes must be distinct keys.
public struct CacheKey: Hashable, Sendable, ExpressibleByStringInterpolation, CustomStringConvertible {
    public let bytes: [UInt8]

    public init(_ bytes: [UInt8]) { self.bytes = bytes }
    public init(_ bytes: UnsafeRawBufferPointer) { self.bytes = Array(bytes) }
    /// The key made of the string's UTF-8 bytes.
    public init(_ string: String) { bytes = Array(string.utf8) }
    public init(stringLiteral value: String) { self.init(value) }
    public init(stringInterpolation: DefaultStringInterpolation) { self.init(String(stringInterpolation: stringInterpolation)) }

    public var count: Int { bytes.count }
    public var isEmpty: Bool { bytes.isEmpty }

    /// For messages and logs: printable ASCII as it is, every other byte (and `%`) as `%XX`, so two different
    /// keys never read the same (not even canonically equivalent Unicode, which prints alike).
    public var description: String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        for b in bytes {
            if b > 0x20 && b < 0x7F && b != UInt8(ascii: "%") {
                out.append(b)
            } else {
                out += [UInt8(ascii: "%"), Hex.upper(b >> 4), Hex.upper(b & 0x0F)]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try bytes.withUnsafeBytes(body)
    }
}

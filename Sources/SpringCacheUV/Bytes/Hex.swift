/// Hexadecimal digits and their values: the one table every encoder (percent-escapes, ETags, JSON `\u00XX`,
/// MD5 digests, key descriptions) and decoder uses.
public enum Hex {
    /// Uppercase digits, as RFC 3986 §2.1 recommends for percent-escapes.
    public static let upperDigits: StaticString = "0123456789ABCDEF"
    /// Lowercase digits (ETags, JSON escapes, MD5 digests as springcache's ring hashes them).
    public static let lowerDigits: StaticString = "0123456789abcdef"

    /// The uppercase digit of `nibble` (0…15).
    @inline(__always)
    public static func upper(_ nibble: UInt8) -> UInt8 {
        upperDigits.utf8Start[Int(nibble & 0x0F)]
    }

    /// The lowercase digit of `nibble` (0…15).
    @inline(__always)
    public static func lower(_ nibble: UInt8) -> UInt8 {
        lowerDigits.utf8Start[Int(nibble & 0x0F)]
    }

    /// The value of one hex digit, either case; nil for anything else.
    @inline(__always)
    public static func value(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c &- UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c &- UInt8(ascii: "a") &+ 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c &- UInt8(ascii: "A") &+ 10
        default: return nil
        }
    }
}

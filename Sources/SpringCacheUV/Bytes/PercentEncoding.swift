/// Percent-encoding (RFC 3986 §2.1: a byte as `%` and two hex digits), both ways, for every place that
/// speaks it: origin URLs built from keys, form and path decoding of the API, gRPC's `grpc-message`.
///
/// Decoding writes into memory the caller provides and never allocates, so the API's hot path (a query's
/// `key=`) can use it; encoding builds a `String` (origin URLs and status messages are not on the hot path).
public enum PercentEncoding {
    /// Which bytes an encoder keeps as they are; every other byte becomes `%XX` with uppercase hex.
    public enum Kept {
        /// RFC 3986 §2.3's unreserved characters, ALPHA DIGIT - . _ ~ (what a URL path or query may hold
        /// without changing its structure).
        case unreserved
        /// Printable ASCII 0x20…0x7E except `%` (gRPC PROTOCOL-HTTP2.md, "Status-Message").
        case printableASCII
    }

    /// What a decoder does with a `%` not followed by two hex digits.
    public enum Malformed {
        /// Stop and report where it is (forms and paths: a key that silently differs from what the client
        /// meant would be stored under the wrong name; Go's parser rejects it too).
        case reject
        /// Keep it as it is (gRPC asks receivers to decode `grpc-message` leniently).
        case keep
    }

    /// The outcome of `decode`.
    public enum Decoded: Equatable {
        /// This many bytes were written.
        case count(Int)
        /// The malformed escape at this offset of the input (with `Malformed.reject`).
        case malformed(at: Int)
    }

    /// Whether `c` is one of RFC 3986's unreserved characters.
    @inline(__always)
    public static func isUnreserved(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
             UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    @inline(__always)
    static func keeps(_ kept: Kept, _ c: UInt8) -> Bool {
        switch kept {
        case .unreserved: return isUnreserved(c)
        case .printableASCII: return c >= 0x20 && c <= 0x7E && c != UInt8(ascii: "%")
        }
    }

    /// `bytes` with every byte that `kept` does not keep written as `%XX`.
    ///
    /// Why `.unreserved` is the default: the result goes into origin URL templates, and encoding every reserved
    /// character means a key can never change the URL's structure (a '/', '?' or '#' in a key stays inside it).
    public static func encoded<S: Sequence>(_ bytes: S, keeping kept: Kept = .unreserved) -> String
    where S.Element == UInt8 {
        var result = ""
        result.reserveCapacity(bytes.underestimatedCount)
        for c in bytes {
            if keeps(kept, c) {
                result.unicodeScalars.append(Unicode.Scalar(c))
            } else {
                result.unicodeScalars.append("%")
                result.unicodeScalars.append(Unicode.Scalar(Hex.upper(c >> 4)))
                result.unicodeScalars.append(Unicode.Scalar(Hex.upper(c & 0x0F)))
            }
        }
        return result
    }

    /// Whether `encoded(bytes, keeping:)` would differ from `bytes` (lets a caller skip the copy).
    public static func needsEncoding<S: Sequence>(_ bytes: S, keeping kept: Kept) -> Bool where S.Element == UInt8 {
        bytes.contains { !keeps(kept, $0) }
    }

    /// Decodes `input` into `out`, which must have room for `input.count` bytes (decoding never grows).
    ///
    /// With `plusIsSpace`, '+' decodes to a space (forms, per the WHATWG urlencoded parser); elsewhere '+' is
    /// an ordinary character (RFC 3986 §3.3).
    @inline(__always)
    public static func decode(_ input: UnsafeRawBufferPointer, plusIsSpace: Bool, malformed: Malformed,
                              into out: UnsafeMutablePointer<UInt8>) -> Decoded {
        let n = input.count
        var i = 0
        var written = 0
        while i < n {
            let c = input[i]
            if c == UInt8(ascii: "%") {
                if i + 2 < n, let hi = Hex.value(input[i + 1]), let lo = Hex.value(input[i + 2]) {
                    out[written] = hi << 4 | lo
                    written += 1
                    i += 3
                    continue
                }
                if malformed == .reject { return .malformed(at: i) }
                out[written] = c
            } else {
                out[written] = plusIsSpace && c == UInt8(ascii: "+") ? UInt8(ascii: " ") : c
            }
            written += 1
            i += 1
        }
        return .count(written)
    }

    /// The decoded bytes of `input`, or nil when it holds a malformed escape and `malformed` is `.reject`.
    public static func decoded(_ input: UnsafeRawBufferPointer, plusIsSpace: Bool = false,
                               malformed: Malformed = .reject) -> [UInt8]? {
        guard input.count > 0 else { return [] }
        var failed = false
        let result = [UInt8](unsafeUninitializedCapacity: input.count) { buffer, initialized in
            switch decode(input, plusIsSpace: plusIsSpace, malformed: malformed, into: buffer.baseAddress!) {
            case .count(let n): initialized = n
            case .malformed: failed = true; initialized = 0
            }
        }
        return failed ? nil : result
    }
}

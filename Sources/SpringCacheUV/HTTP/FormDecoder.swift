/// The outcome of looking up one field of a form or query string.
public enum FormField: Equatable {
    /// No field has that name.
    case absent
    /// The field's percent-decoded value: a range in the scratch buffer it was decoded into. Ranges stay valid
    /// while the scratch is only appended to, so several fields can be decoded into one scratch.
    case value(Range<Int>)
    /// The field is present but its value cannot be decoded; the message names the field and the problem.
    case malformed(String)
}

/// Decoding and encoding of `application/x-www-form-urlencoded` forms, query strings and path segments,
/// without allocating: input is the request's own bytes, output goes into a caller-provided scratch buffer.
///
/// Forms follow the WHATWG URL standard's urlencoded parser, which is what browsers, curl and Go's
/// `url.ParseQuery` (springcache's) produce and read: fields separated by '&', '+' for a space, `%XX` escapes.
public enum FormDecoder {
    /// Finds the first field called `name` in `form` and appends its decoded value to `scratch`.
    ///
    /// Why first-wins: it is what Go's `Request.FormValue` returns, so springcache clients that repeat a field
    /// get the same answer. Field names are compared after decoding them, so `ke%79=v` is the field `key`. A
    /// field without '=' has an empty value. Why a bad escape is an error rather than passed through (as the
    /// WHATWG parser does): a key that silently differs from what the client meant would be stored under the
    /// wrong name; Go's parser rejects it too.
    public static func field(_ name: StaticString, in form: UnsafeRawBufferPointer,
                             into scratch: inout ByteBuffer) -> FormField {
        guard let base = form.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return .absent }
        let end = form.count
        var start = 0
        while start < end {
            var fieldEnd = start
            while fieldEnd < end, base[fieldEnd] != UInt8(ascii: "&") { fieldEnd += 1 }
            var eq = start
            while eq < fieldEnd, base[eq] != UInt8(ascii: "=") { eq += 1 }
            if fieldEnd > start, nameMatches(name, base, start..<eq) {
                let valueStart = min(eq + 1, fieldEnd)
                let mark = scratch.count
                if let bad = decode(base, valueStart..<fieldEnd, plusIsSpace: true, into: &scratch) {
                    scratch.count = mark
                    let escape = HTTPBytes.text(base, bad..<min(bad + 3, fieldEnd))
                    return .malformed("form field \"\(name)\" has a malformed percent-escape \"\(escape)\"")
                }
                return .value(mark..<scratch.count)
            }
            start = fieldEnd + 1
        }
        return .absent
    }

    /// Appends the percent-decoded bytes of one path segment to `scratch` and returns their range, or nil
    /// when the segment holds a malformed escape.
    ///
    /// Why '+' stays '+': in a path it is an ordinary character (RFC 3986 §3.3); only forms use it for space.
    /// `%2F` decodes to '/', which is how a key containing '/' travels in `/v1/cache/{group}/{key}`, so split
    /// the path on raw '/' first and decode each segment after.
    public static func decodePathSegment(_ segment: UnsafeRawBufferPointer,
                                         into scratch: inout ByteBuffer) -> Range<Int>? {
        let mark = scratch.count
        guard let base = segment.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return mark..<mark }
        if decode(base, 0..<segment.count, plusIsSpace: false, into: &scratch) != nil {
            scratch.count = mark
            return nil
        }
        return mark..<scratch.count
    }

    /// Appends `bytes` percent-encoded for use in a URL path or query: RFC 3986 unreserved characters
    /// (ALPHA DIGIT - . _ ~) stay, every other byte becomes `%XX` with uppercase hex (RFC 3986 §2.1, §2.3).
    ///
    /// Why so strict: the result is put into an origin URL template, and encoding every reserved character
    /// means a key can never change the URL's structure (a '/', '?' or '#' in a key stays inside the key).
    public static func appendPercentEncoded(_ bytes: UnsafeRawBufferPointer, to out: inout ByteBuffer) {
        out.reserve(bytes.count)
        for c in bytes {
            if isUnreserved(c) {
                out.append(c)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(hexDigits[Int(c >> 4)])
                out.append(hexDigits[Int(c & 0x0F)])
            }
        }
    }

    /// `string`'s UTF-8 bytes percent-encoded as `appendPercentEncoded` does; for building origin URLs.
    public static func percentEncoded(_ string: String) -> String {
        percentEncoded(bytes: string.utf8)
    }

    /// The same for any bytes (a key need not be UTF-8).
    public static func percentEncoded<S: Sequence>(bytes: S) -> String where S.Element == UInt8 {
        var result = ""
        result.reserveCapacity(bytes.underestimatedCount)
        for c in bytes {
            if isUnreserved(c) {
                result.unicodeScalars.append(Unicode.Scalar(c))
            } else {
                result.unicodeScalars.append("%")
                result.unicodeScalars.append(Unicode.Scalar(hexDigits[Int(c >> 4)]))
                result.unicodeScalars.append(Unicode.Scalar(hexDigits[Int(c & 0x0F)]))
            }
        }
        return result
    }

    // MARK: - Internals

    private static let hexDigits: [UInt8] = Array("0123456789ABCDEF".utf8)

    @inline(__always)
    private static func isUnreserved(_ c: UInt8) -> Bool {
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
    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// Appends the decoded bytes of `r` to `out`; returns the offset of the first malformed escape, or nil.
    private static func decode(_ base: UnsafePointer<UInt8>, _ r: Range<Int>, plusIsSpace: Bool,
                               into out: inout ByteBuffer) -> Int? {
        out.reserve(r.count)
        var i = r.lowerBound
        while i < r.upperBound {
            let c = base[i]
            if c == UInt8(ascii: "%") {
                guard i + 2 < r.upperBound, let hi = hexValue(base[i + 1]), let lo = hexValue(base[i + 2]) else {
                    return i
                }
                out.append(hi << 4 | lo)
                i += 3
            } else {
                out.append(plusIsSpace && c == UInt8(ascii: "+") ? UInt8(ascii: " ") : c)
                i += 1
            }
        }
        return nil
    }

    /// Whether the form-encoded name in `r` decodes to exactly `name`; a malformed name matches nothing.
    private static func nameMatches(_ name: StaticString, _ base: UnsafePointer<UInt8>, _ r: Range<Int>) -> Bool {
        let want = name.utf8Start
        let wantCount = name.utf8CodeUnitCount
        var matched = 0
        var i = r.lowerBound
        while i < r.upperBound {
            var c = base[i]
            if c == UInt8(ascii: "%") {
                guard i + 2 < r.upperBound, let hi = hexValue(base[i + 1]), let lo = hexValue(base[i + 2]) else {
                    return false
                }
                c = hi << 4 | lo
                i += 3
            } else {
                if c == UInt8(ascii: "+") { c = UInt8(ascii: " ") }
                i += 1
            }
            guard matched < wantCount, want[matched] == c else { return false }
            matched += 1
        }
        return matched == wantCount
    }
}

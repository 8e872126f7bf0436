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

/// Decoding of `application/x-www-form-urlencoded` forms, query strings and path segments, without
/// allocating: input is the request's own bytes, output goes into a caller-provided scratch buffer.
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

    // MARK: - Internals

    /// Appends the decoded bytes of `r` to `out`; returns the offset of the first malformed escape, or nil.
    @inline(__always)
    private static func decode(_ base: UnsafePointer<UInt8>, _ r: Range<Int>, plusIsSpace: Bool,
                               into out: inout ByteBuffer) -> Int? {
        out.reserve(r.count)
        let input = UnsafeRawBufferPointer(start: base + r.lowerBound, count: r.count)
        switch PercentEncoding.decode(input, plusIsSpace: plusIsSpace, malformed: .reject, into: out.base + out.count) {
        case .count(let n):
            out.count += n
            return nil
        case .malformed(let offset):
            return r.lowerBound + offset
        }
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
                guard i + 2 < r.upperBound, let hi = Hex.value(base[i + 1]), let lo = Hex.value(base[i + 2]) else {
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

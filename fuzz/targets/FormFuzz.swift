// fuzz/: FormDecoder (Sources/SpringCacheUV/HTTP/FormDecoder.swift) and the HTTPBytes helpers against small
// reference implementations written here from the specs, plus percent-encoding round trips.
//
// Input: one selector byte, then the payload. The payload is used as a form/query string, as a path (split
// on '/', each segment decoded), and as raw bytes to percent-encode and decode again.

/// WHATWG urlencoded decoding of one name or value, strict about '%' as FormDecoder documents: nil when an
/// escape is malformed.
func referenceDecode(_ bytes: ArraySlice<UInt8>, plusIsSpace: Bool) -> [UInt8]? {
    var out: [UInt8] = []
    var i = bytes.startIndex
    func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }
    while i < bytes.endIndex {
        let c = bytes[i]
        if c == UInt8(ascii: "%") {
            guard i + 2 < bytes.endIndex, let hi = hexValue(bytes[i + 1]), let lo = hexValue(bytes[i + 2]) else {
                return nil
            }
            out.append(hi << 4 | lo)
            i += 3
        } else {
            out.append(plusIsSpace && c == UInt8(ascii: "+") ? UInt8(ascii: " ") : c)
            i += 1
        }
    }
    return out
}

enum ReferenceField: Equatable {
    case absent, value([UInt8]), malformed
}

/// The form's fields as the reference reads them: decoded name (nil when malformed) and decoded value.
func referenceFields(_ form: [UInt8]) -> [(name: [UInt8]?, value: [UInt8]?)] {
    form.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true).map { field in
        let eq = field.firstIndex(of: UInt8(ascii: "=")) ?? field.endIndex
        let valueStart = eq < field.endIndex ? eq + 1 : eq
        return (referenceDecode(field[field.startIndex..<eq], plusIsSpace: true),
                referenceDecode(field[valueStart..<field.endIndex], plusIsSpace: true))
    }
}

/// The first field whose decoded name is `name` (a field with a malformed name matches nothing).
func referenceField(_ name: [UInt8], in fields: [(name: [UInt8]?, value: [UInt8]?)]) -> ReferenceField {
    guard let field = fields.first(where: { $0.name == name }) else { return .absent }
    return field.value.map { .value($0) } ?? .malformed
}

func decodedField(_ index: Int, _ form: UnsafeRawBufferPointer, _ scratch: inout ByteBuffer) -> FormField {
    switch index {
    case 0: return FormDecoder.field("key", in: form, into: &scratch)
    case 1: return FormDecoder.field("value", in: form, into: &scratch)
    case 2: return FormDecoder.field("expire", in: form, into: &scratch)
    case 3: return FormDecoder.field("hot", in: form, into: &scratch)
    case 4: return FormDecoder.field("peer", in: form, into: &scratch)
    case 5: return FormDecoder.field("a b", in: form, into: &scratch)   // a name that needs '+' or %20
    case 6: return FormDecoder.field("", in: form, into: &scratch)      // the empty name
    default: return FormDecoder.field("ttl", in: form, into: &scratch)
    }
}

let fieldNames = ["key", "value", "expire", "hot", "peer", "a b", "", "ttl"]
let fieldNameBytes = fieldNames.map { Array($0.utf8) }

func checkForm(_ form: UnsafeRawBufferPointer, selector: UInt8) {
    let formArray = Array(form)
    let reference = referenceFields(formArray)
    var scratch = ByteBuffer(capacity: 16)
    defer { scratch.deallocate() }
    // Pre-fill the scratch so ranges must be relative to its start, as several fields share one scratch.
    let prefill = Int(selector >> 4)
    for i in 0..<prefill { scratch.append(UInt8(truncatingIfNeeded: i)) }
    for index in 0..<fieldNames.count {
        let before = scratch.count
        let got = decodedField(index, form, &scratch)
        let want = referenceField(fieldNameBytes[index], in: reference)
        switch (got, want) {
        case (.absent, .absent):
            fuzzCheck(scratch.count == before, "absent field grew the scratch")
        case (.value(let r), .value(let bytes)):
            fuzzCheck(r.lowerBound == before && r.upperBound == scratch.count, "range \(r) vs scratch \(before)")
            let decoded = Array(UnsafeRawBufferPointer(rebasing: scratch.readable[r]))
            fuzzCheck(decoded == bytes, "field \(fieldNames[index]): \(hex(decoded)) vs \(hex(bytes))")
        case (.malformed(let message), .malformed):
            fuzzCheck(scratch.count == before, "malformed field left bytes in the scratch")
            fuzzCheck(message.contains(fieldNames[index]), "message does not name the field: \(message)")
        default:
            fuzzFail("field \(fieldNames[index]) in \(hex(formArray)): got \(got), reference \(want)")
        }
    }
}

func checkPath(_ path: UnsafeRawBufferPointer) {
    var scratch = ByteBuffer(capacity: 16)
    defer { scratch.deallocate() }
    let array = Array(path)
    for segment in array.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
        let before = scratch.count
        let got = withExactCopy(Array(segment)) { FormDecoder.decodePathSegment($0, into: &scratch) }
        let want = referenceDecode(segment, plusIsSpace: false)
        if let want = want {
            guard let r = got else { fuzzFail("segment \(hex(Array(segment))) rejected") }
            fuzzCheck(r == before..<scratch.count, "segment range \(r)")
            fuzzCheck(Array(UnsafeRawBufferPointer(rebasing: scratch.readable[r])) == want, "segment decode")
        } else {
            fuzzCheck(got == nil && scratch.count == before, "malformed segment \(hex(Array(segment))) accepted")
        }
    }
}

func isUnreservedByte(_ c: UInt8) -> Bool {
    (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x2D || c == 0x2E
        || c == 0x5F || c == 0x7E
}

func checkPercentRoundTrip(_ raw: UnsafeRawBufferPointer) {
    var encoded = ByteBuffer(capacity: 16)
    defer { encoded.deallocate() }
    FormDecoder.appendPercentEncoded(raw, to: &encoded)
    let enc = Array(encoded.readable)
    // Only unreserved characters and %XX with uppercase hex.
    var i = 0
    while i < enc.count {
        if enc[i] == UInt8(ascii: "%") {
            fuzzCheck(i + 2 < enc.count, "dangling % in encoding")
            for c in enc[(i + 1)...(i + 2)] {
                fuzzCheck((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46), "escape digit \(c)")
            }
            i += 3
        } else {
            fuzzCheck(isUnreservedByte(enc[i]), "reserved byte \(enc[i]) left unencoded")
            i += 1
        }
    }
    // Decoding as a path segment and as a form value gives the bytes back.
    var scratch = ByteBuffer(capacity: 16)
    defer { scratch.deallocate() }
    guard let r = withExactCopy(enc, { FormDecoder.decodePathSegment($0, into: &scratch) }) else {
        fuzzFail("own encoding rejected: \(hex(enc))")
    }
    fuzzCheck(Array(UnsafeRawBufferPointer(rebasing: scratch.readable[r])) == Array(raw), "path round trip")
    let form = Array("x=1&key=".utf8) + enc + Array("&key=2".utf8)
    scratch.count = 0
    switch withExactCopy(form, { FormDecoder.field("key", in: $0, into: &scratch) }) {
    case .value(let r):
        fuzzCheck(Array(UnsafeRawBufferPointer(rebasing: scratch.readable[r])) == Array(raw), "form round trip")
    default:
        fuzzFail("form round trip lost the key")
    }
    // The String form agrees for valid UTF-8.
    if let s = String(validating: Array(raw), as: UTF8.self) {
        fuzzCheck(Array(FormDecoder.percentEncoded(s).utf8) == enc, "percentEncoded(String) differs")
    }
}

func checkHTTPBytes(_ raw: UnsafeRawBufferPointer) {
    guard let base = raw.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
    let all = 0..<raw.count
    let t = HTTPBytes.trimmed(base, all)
    var lo = 0, hi = raw.count
    while lo < hi, raw[lo] == 0x20 || raw[lo] == 0x09 { lo += 1 }
    while hi > lo, raw[hi - 1] == 0x20 || raw[hi - 1] == 0x09 { hi -= 1 }
    fuzzCheck(t == lo..<hi, "trimmed \(t) vs \(lo..<hi)")
    let lower = raw.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
    for word in ["content-length", "host", "chunked", "close", "keep-alive", "100-continue"] {
        let w: StaticString
        switch word {
        case "content-length": w = "content-length"
        case "host": w = "host"
        case "chunked": w = "chunked"
        case "close": w = "close"
        case "keep-alive": w = "keep-alive"
        default: w = "100-continue"
        }
        fuzzCheck(HTTPBytes.equalsIgnoringCase(base, all, w) == (lower == Array(word.utf8)), "equalsIgnoringCase")
    }
    let text = HTTPBytes.text(base, all)
    fuzzCheck(text.utf8.count <= 64 * 3 + 3, "text too long")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzForm(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let selector = input.byte()
    let payload = exactCopy(input.rest)
    defer { payload.deallocate() }
    let bytes = UnsafeRawBufferPointer(payload)
    checkForm(bytes, selector: selector)
    checkPath(bytes)
    checkPercentRoundTrip(bytes)
    checkHTTPBytes(bytes)
    return 0
}

// fuzz/: the etcd gateway's pure pieces (Sources/SpringCacheUV/Etcd/JSON.swift, WatchStreamSplitter.swift,
// Base64.swift) and the project's JSONWriter (Metrics/JSONWriter.swift).
//
// Input: a parameter byte (line limit), two split seeds, then the payload. The payload is
// - a watch stream body: split into lines whole, at two data-derived points, and in data-derived chunks of
//   1-8 bytes, each compared with a reference split (lines end at LF, a CR before it is dropped, empty lines
//   skipped, over-long lines are an error), and every complete line (or the whole payload) parsed as JSON;
// - a JSON text: when it parses, it is written again through JSONWriter and must parse to the same value;
//   any string written through JSONWriter must parse back to itself;
// - base64 text (decode; when accepted, encode gives the same text back) and bytes (encode, decode back).

struct SplitOutcome: Equatable {
    var lines: [[UInt8]] = []
    var failed = false
}

func referenceSplit(_ payload: [UInt8], maxLine: Int) -> SplitOutcome {
    var out = SplitOutcome()
    let segments = payload.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
    for segment in segments {
        if segment.count > maxLine {
            out.failed = true
            return out
        }
        var line = Array(segment)
        if line.last == UInt8(ascii: "\r") { line.removeLast() }
        if !line.isEmpty { out.lines.append(line) }
    }
    return out
}

func splitDelivered(_ payload: [UInt8], cuts: [Int], maxLine: Int) -> SplitOutcome {
    var splitter = WatchStreamSplitter(maxLineBytes: maxLine)
    var out = SplitOutcome()
    var position = 0
    for end in cuts + [payload.count] where end >= position {
        do {
            out.lines += try splitter.append(Array(payload[position..<end]))
        } catch is WatchStreamSplitter.LineTooLong {
            out.failed = true
            return out
        } catch {
            fuzzFail("unexpected error \(error)")
        }
        position = end
        fuzzCheck(splitter.pendingByteCount <= maxLine, "pending \(splitter.pendingByteCount) over \(maxLine)")
    }
    if let last = splitter.finish() { out.lines.append(last) }
    fuzzCheck(splitter.pendingByteCount == 0, "finish left bytes pending")
    return out
}

/// Writes a parsed value back out through the project's JSONWriter.
func writeJSON(_ value: JSONValue, _ json: inout JSONWriter) {
    switch value {
    case .null: json.null()
    case .bool(let b): json.value(b)
    case .number(let text):
        if let i = Int64(text) { json.value(Int(i)) } else { json.value(Double(text) ?? .nan) }
    case .string(let s): json.value(s)
    case .array(let elements): json.array { json in for e in elements { writeJSON(e, &json) } }
    case .object(let members):
        json.object { json in
            for (name, member) in members {
                json.key(name)
                writeJSON(member, &json)
            }
        }
    }
}

/// Equality after a trip through JSONWriter: numbers compare by value, and a number too large for a Double
/// comes back as null (JSONWriter's rule for non-finite numbers).
func sameJSON(_ a: JSONValue, _ b: JSONValue) -> Bool {
    switch (a, b) {
    case (.number(let x), .number(let y)):
        if let i = Int64(x) { return Int64(y) == i }
        return Double(x) == Double(y)
    case (.number(let x), .null):
        return !(Double(x) ?? .nan).isFinite
    case (.array(let x), .array(let y)):
        return x.count == y.count && zip(x, y).allSatisfy { sameJSON($0, $1) }
    case (.object(let x), .object(let y)):
        return x.count == y.count && x.allSatisfy { name, v in y[name].map { sameJSON(v, $0) } ?? false }
    default:
        return a == b
    }
}

func written(_ body: (inout JSONWriter) -> Void) -> [UInt8] {
    var out = ByteBuffer(capacity: 64)
    defer { out.deallocate() }
    JSONWriter.write(into: &out, body)
    return Array(out.readable)
}

func checkJSON(_ text: [UInt8]) {
    let value: JSONValue
    do {
        value = try JSONValue.parse(text)
    } catch let error as JSONParseError {
        fuzzCheck(error.offset >= 0 && error.offset <= text.count, "error offset \(error.offset) of \(text.count)")
        return
    } catch {
        fuzzFail("unexpected error type \(error)")
    }
    let again = written { writeJSON(value, &$0) }
    do {
        let reparsed = try JSONValue.parse(again)
        fuzzCheck(sameJSON(value, reparsed), "JSONWriter round trip of \(hex(text)) gave \(hex(again))")
    } catch {
        fuzzFail("JSONWriter wrote invalid JSON \(hex(again)) for \(hex(text)): \(error)")
    }
}

func checkJSONStrings(_ payload: [UInt8]) {
    // Any bytes as a string value must give valid JSON. Valid UTF-8 comes back unchanged; invalid bytes become
    // U+FFFD (JSONWriter replaces each bad byte, String(decoding:) each maximal bad subpart, so only the
    // valid case is compared exactly).
    let text = written { json in
        json.array { json in payload.withUnsafeBytes { json.value(bytes: $0) } }
    }
    do {
        let parsed = try JSONValue.parse(text)
        if let string = String(validating: payload, as: UTF8.self) {
            fuzzCheck(parsed == .array([.string(string)]), "string round trip for \(hex(payload))")
        } else {
            fuzzCheck(parsed[0]?.stringValue != nil, "string value expected for \(hex(payload))")
        }
    } catch {
        fuzzFail("JSONWriter string \(hex(text)) does not parse: \(error)")
    }
}

func checkBase64(_ payload: [UInt8]) {
    if let decoded = Base64.decode(bytes: payload) {
        fuzzCheck(Base64.encodeToBytes(decoded) == payload, "base64 accepted non-canonical \(hex(payload))")
    }
    let encoded = Base64.encodeToBytes(payload)
    fuzzCheck(encoded.count == (payload.count + 2) / 3 * 4, "base64 length")
    fuzzCheck(Base64.decode(bytes: encoded) == payload, "base64 round trip of \(hex(payload))")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEtcd(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let params = input.byte()
    let seedA = input.uint16()
    let seedB = input.uint16()
    let payload = Array(input.rest)
    let limits = [WatchStreamSplitter.defaultMaxLineBytes, 0, 1, 2, 8, 32, 200, 1000]
    let maxLine = limits[Int(params & 7)]

    let reference = referenceSplit(payload, maxLine: maxLine)
    let n = payload.count
    let a = n == 0 ? 0 : seedA % (n + 1)
    let b = n == 0 ? 0 : seedB % (n + 1)
    // Chunks of 1 to 8 bytes chosen by seedB (byte at a time costs an allocation per byte; this is as good).
    var chunks: [Int] = []
    var at = 0
    var state = UInt32(seedB) | 1
    while at < n {
        state = state &* 1_103_515_245 &+ 12345
        at += 1 + Int(state >> 16 & 7)
        if at < n { chunks.append(at) }
    }
    for cuts in [[], [min(a, b), max(a, b)], chunks] {
        let got = splitDelivered(payload, cuts: cuts, maxLine: maxLine)
        if reference.failed {
            // Lines completed before the over-long one may or may not have been handed out, depending on
            // whether they arrived in an earlier chunk; the error itself must come.
            fuzzCheck(got.failed, "cuts \(cuts): over-long line accepted")
            fuzzCheck(got.lines.count <= reference.lines.count
                      && Array(reference.lines.prefix(got.lines.count)) == got.lines, "cuts \(cuts): lines differ")
        } else {
            fuzzCheck(got == reference, "cuts \(cuts): \(got) vs reference \(reference)")
        }
    }
    for line in reference.lines.prefix(8) { checkJSON(line) }
    checkJSON(payload)
    checkJSONStrings(payload)
    checkBase64(payload)
    return 0
}

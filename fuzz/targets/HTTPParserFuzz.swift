// fuzz/: differential fuzzer for HTTPParser (Sources/SpringCacheUV/HTTP/HTTPParser.swift).
//
// The input is a parameter prefix (limits, a split point, a chunk pattern) and then a byte stream as one
// connection would receive it. The stream is driven through the parser the way HTTPConnection does (all bytes
// of the current request each time more arrive, reset() after each request, pipelined requests follow) in
// four deliveries: whole, split at one data-derived point, one byte at a time, and data-derived chunk sizes.
// All four must produce the same requests (head, body, consumed), the same error and the same final state,
// and every range the parser returns must lie within the bytes it was given.

/// What one delivery of the stream produced.
struct HTTPEvent: Equatable {
    var head: HTTPRequestHead?
    var body: [UInt8] = []
    var consumed = 0
    var error: HTTPParseError?
}

struct HTTPOutcome: Equatable {
    var events: [HTTPEvent] = []
    /// Bytes held for an incomplete request when the stream ended (nil after an error).
    var pendingAtEnd: Int?
}

func httpLimits(_ b: UInt8) -> HTTPLimits {
    // Small limits make 413/414/431 and the empty-line bound reachable in small inputs.
    let heads = [8192, 16, 24, 32, 48, 64, 100, 128]
    let bodies = [1 << 20, 0, 1, 7, 16, 100, 1000, Int.max]
    return HTTPLimits(maxHeadBytes: heads[Int(b & 7)], maxBodyBytes: bodies[Int(b >> 3 & 7)])
}

func checkRange(_ r: Range<Int>?, within bound: Range<Int>, _ what: String) {
    guard let r = r else { return }
    fuzzCheck(r.lowerBound >= bound.lowerBound && r.upperBound <= bound.upperBound,
              "\(what) \(r) outside \(bound)")
}

/// Checks what parse returned against the bytes it was given and the limits.
func checkRequest(_ head: HTTPRequestHead, body: Range<Int>, consumed: Int, bytes: UnsafeRawBufferPointer,
                  limits: HTTPLimits) {
    fuzzCheck(head.headLength > 0 && head.headLength <= bytes.count, "headLength \(head.headLength) of \(bytes.count)")
    fuzzCheck(head.contentLength >= 0 && head.contentLength <= limits.maxBodyBytes,
              "contentLength \(head.contentLength) over limit \(limits.maxBodyBytes)")
    fuzzCheck(body == head.headLength..<(head.headLength + head.contentLength), "body \(body) vs head")
    fuzzCheck(consumed == body.upperBound && consumed <= bytes.count, "consumed \(consumed) of \(bytes.count)")
    // Empty lines before the request line and the head itself are each bounded by maxHeadBytes.
    fuzzCheck(head.headLength <= 2 * limits.maxHeadBytes, "headLength \(head.headLength) over twice the limit")
    let headRange = 0..<head.headLength
    checkRange(head.path, within: headRange, "path")
    checkRange(head.query, within: headRange, "query")
    checkRange(head.authorization, within: headRange, "authorization")
    checkRange(head.ifNoneMatch, within: headRange, "ifNoneMatch")
    checkRange(head.contentType, within: headRange, "contentType")
    // The head ends with an empty line; the head's bytes hold no bare CR and no NUL.
    fuzzCheck(bytes[head.headLength - 1] == UInt8(ascii: "\n"), "head does not end with LF")
    // Path and query come from the request target: no spaces or control characters.
    for r in [head.path, head.query ?? 0..<0] {
        for i in r {
            let c = bytes[i]
            fuzzCheck(c > 0x20 && c != 0x7F, "target byte \(c) in \(r)")
        }
    }
    if let q = head.query {
        fuzzCheck(q.lowerBound >= head.path.upperBound + 1 && bytes[q.lowerBound - 1] == UInt8(ascii: "?"),
                  "query \(q) not after '?'")
        fuzzCheck(!head.path.contains(where: { bytes[$0] == UInt8(ascii: "?") }), "'?' inside path")
    }
    for r in [head.authorization, head.ifNoneMatch, head.contentType] {
        guard let r = r, !r.isEmpty else { continue }
        for i in [r.lowerBound, r.upperBound - 1] {
            fuzzCheck(bytes[i] != UInt8(ascii: " ") && bytes[i] != 0x09, "header value not trimmed \(r)")
        }
    }
    if head.isHTTP10 { fuzzCheck(!head.expectContinue, "expectContinue in HTTP/1.0") }
    // The method matches the request line's first token (after the empty lines).
    var start = 0
    while start < bytes.count, bytes[start] == UInt8(ascii: "\r") || bytes[start] == UInt8(ascii: "\n") {
        start += 1
    }
    let names: [(HTTPMethod, String)] = [(.get, "GET "), (.head, "HEAD "), (.post, "POST "), (.put, "PUT "),
                                         (.delete, "DELETE "), (.options, "OPTIONS ")]
    var expected = HTTPMethod.other
    for (m, name) in names {
        let u = Array(name.utf8)
        if bytes.count - start >= u.count && (0..<u.count).allSatisfy({ bytes[start + $0] == u[$0] }) {
            expected = m
        }
    }
    fuzzCheck(head.method == expected, "method \(head.method) but expected \(expected)")
}

/// Delivers `stream` in chunks ending at `cuts` (ascending offsets; the end is implied) the way HTTPConnection
/// does, and records what came out.
func driveHTTP(_ stream: UnsafeRawBufferPointer, cuts: [Int], limits: HTTPLimits) -> HTTPOutcome {
    var outcome = HTTPOutcome()
    var parser = HTTPParser(limits: limits)
    var delivered = DeliveredStream(stream)
    defer { delivered.deallocate() }
    var requestStart = 0               // where the current request starts in the stream
    var continues = 0                  // sendContinue answers for the current request
    for end in cuts + [stream.count] where end > delivered.received {
        delivered.receive(upTo: end)
        while requestStart < delivered.received {
            let bytes = delivered.bytes(from: requestStart)
            let result = parser.parse(bytes)
            switch result {
            case .needMore(let sendContinue):
                if sendContinue { continues += 1 }
                fuzzCheck(continues <= 1, "sendContinue more than once for one request")
            case .request(let head, let body, let consumed):
                checkRequest(head, body: body, consumed: consumed, bytes: bytes, limits: limits)
                if continues > 0 { fuzzCheck(head.expectContinue, "sendContinue without Expect") }
                outcome.events.append(HTTPEvent(head: head, body: Array(bytes[body]), consumed: consumed))
                requestStart += consumed
                parser.reset()
                continues = 0
                continue
            case .error(let error):
                fuzzCheck([400, 411, 413, 414, 431, 501, 505].contains(error.status), "status \(error.status)")
                fuzzCheck(!error.reason.isEmpty, "error without a reason")
                // A failed parser keeps failing the same way.
                let again = parser.parse(bytes)
                fuzzCheck(again == .error(error), "failed parser answered \(again) after \(error)")
                outcome.events.append(HTTPEvent(error: error))
                return outcome
            }
            break
        }
    }
    outcome.pendingAtEnd = stream.count - requestStart
    return outcome
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTPParser(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let limits = httpLimits(input.byte())
    let splitSeed = input.uint16()
    let chunkSeed = input.byte()
    let stream = input.rest
    let n = stream.count

    let whole = driveHTTP(stream, cuts: [], limits: limits)

    let split = n == 0 ? 0 : splitSeed % (n + 1)
    let halves = driveHTTP(stream, cuts: [split], limits: limits)
    fuzzCheck(halves == whole, "split at \(split) differs:\n\(halves)\nwhole:\n\(whole)")

    let bytewise = driveHTTP(stream, cuts: Array(0..<n), limits: limits)
    fuzzCheck(bytewise == whole, "byte-at-a-time differs:\n\(bytewise)\nwhole:\n\(whole)")

    // Chunks whose sizes cycle through 1...16, chosen by chunkSeed.
    var cuts: [Int] = []
    var at = 0
    var s = UInt32(chunkSeed) | 1
    while at < n {
        s = s &* 1_103_515_245 &+ 12345
        at += 1 + Int(s >> 16 & 15)
        if at < n { cuts.append(at) }
    }
    let chunked = driveHTTP(stream, cuts: cuts, limits: limits)
    fuzzCheck(chunked == whole, "chunks \(cuts) differ:\n\(chunked)\nwhole:\n\(whole)")
    return 0
}

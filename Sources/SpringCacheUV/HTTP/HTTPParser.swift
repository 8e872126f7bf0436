// HTTP/: the HTTP/1.1 API — request parser, form decoding, response writer, router and handlers.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The size limits an `HTTPParser` enforces on one request; named settings so none is a bare number in code.
public struct HTTPLimits: Equatable {
    /// Most bytes the request line plus the header section may take, counting every line terminator and the
    /// empty line that ends the head. A request line alone over it is answered 414, a longer head 431
    /// (RFC 9112 §3, RFC 6585 §5). Empty lines before the request line are bounded by it separately.
    public var maxHeadBytes = 8192
    /// Most bytes a request body may declare in `Content-Length`; more is answered 413 as soon as the head is
    /// parsed, before any of the body is read.
    public var maxBodyBytes = 1 << 20

    public init(maxHeadBytes: Int = 8192, maxBodyBytes: Int = 1 << 20) {
        self.maxHeadBytes = maxHeadBytes
        self.maxBodyBytes = maxBodyBytes
    }
}

/// A request method; the names are case-sensitive (RFC 9110 §9.1), so `get` is `.other`.
public enum HTTPMethod: UInt8 {
    case get, head, post, put, delete, options, other
}

/// The parsed head of one request; every range is a byte offset relative to the start of the request.
///
/// The start of the request is where the bytes handed to `HTTPParser.parse` begin, which is before any
/// empty lines the client sent ahead of the request line; so `headLength` counts those lines too and the body
/// always starts at `headLength`.
public struct HTTPRequestHead: Equatable {
    public var method: HTTPMethod
    /// The request target up to '?' or its end, still percent-encoded. For an absolute-form target
    /// (`http://host/path`) only the path part; it is empty when such a target has no path (which means "/").
    public var path: Range<Int>
    /// The query after '?', without the '?'; nil when the target has no '?'.
    public var query: Range<Int>?
    public var isHTTP10: Bool
    /// Whether the connection stays open after the response: HTTP/1.1 unless `Connection: close`,
    /// HTTP/1.0 only with `Connection: keep-alive` (RFC 9112 §9.3).
    public var keepAlive: Bool
    /// The declared body size; 0 when there is no `Content-Length`.
    public var contentLength: Int
    /// Whether an HTTP/1.1 client sent `Expect: 100-continue` (ignored for HTTP/1.0, RFC 9110 §10.1.1).
    public var expectContinue: Bool
    /// The `Authorization` value with surrounding whitespace removed.
    public var authorization: Range<Int>?
    /// The first `If-None-Match` value with surrounding whitespace removed.
    public var ifNoneMatch: Range<Int>?
    /// The first `Content-Type` value with surrounding whitespace removed.
    public var contentType: Range<Int>?
    /// Bytes from the request start through the empty line ending the head: where the body starts.
    public var headLength: Int

    public init(method: HTTPMethod = .other, path: Range<Int> = 0..<0, query: Range<Int>? = nil,
                isHTTP10: Bool = false, keepAlive: Bool = true, contentLength: Int = 0,
                expectContinue: Bool = false, authorization: Range<Int>? = nil, ifNoneMatch: Range<Int>? = nil,
                contentType: Range<Int>? = nil, headLength: Int = 0) {
        self.method = method
        self.path = path
        self.query = query
        self.isHTTP10 = isHTTP10
        self.keepAlive = keepAlive
        self.contentLength = contentLength
        self.expectContinue = expectContinue
        self.authorization = authorization
        self.ifNoneMatch = ifNoneMatch
        self.contentType = contentType
        self.headLength = headLength
    }
}

/// Why a request cannot be served: the status to answer with and a sentence for the client.
public struct HTTPParseError: Error, Equatable {
    public let status: Int
    /// Clear English naming the problem; it is sent to the client as the body of the error response.
    public let reason: String

    public init(status: Int, reason: String) {
        self.status = status
        self.reason = reason
    }
}

/// What `HTTPParser.parse` found in the bytes it was given.
public enum HTTPParseResult: Equatable {
    /// The request is not complete yet. `sendContinue` is true exactly once per request: when the head is
    /// complete, it carries `Expect: 100-continue` and the body has not fully arrived, so the connection
    /// should write `100 Continue` (RFC 9110 §10.1.1).
    case needMore(sendContinue: Bool)
    /// A whole request: its head, its body range, and how many bytes it takes (`headLength + contentLength`).
    case request(HTTPRequestHead, body: Range<Int>, consumed: Int)
    /// The request is broken or too large; the connection answers `status` and closes.
    case error(HTTPParseError)
}

/// An incremental HTTP/1.1 request parser (RFC 9112) that works on the connection's own bytes.
///
/// The connection calls `parse` with all the bytes it holds from the start of the current request each time
/// more arrive; the parser remembers where the last complete line ended and how far it has searched, so every
/// byte is looked at about once no matter how the request is split. It never copies or allocates on success:
/// the head describes the request as ranges into those bytes. After a request has been consumed the
/// connection calls `reset()` and hands over the bytes that follow it (pipelining).
///
/// Policy, with the reasons:
/// - Line ends are CRLF; a bare LF is accepted too, as RFC 9112 §2.2 allows, because lenient clients and
///   hand-typed requests (`nc`) send it and, as an origin server with no proxy behind us, there is no
///   second parser that could frame the message differently. A bare CR anywhere is a 400 (RFC 9112 §2.2).
/// - Empty lines before the request line are skipped (RFC 9112 §2.2), at most `maxHeadBytes` of them.
/// - Line folding (obs-fold), and with it whitespace before the first header, is a 400 (RFC 9112 §5.2).
/// - Whitespace between a field name and its colon is a 400 (RFC 9112 §5.1).
/// - `Transfer-Encoding` is not implemented: `chunked` is answered 411 so the client retries with
///   `Content-Length` (RFC 9110 §15.5.12); any other coding 501 (RFC 9112 §6.1); in HTTP/1.0 it is a 400
///   because the framing is faulty (RFC 9112 §6.1).
/// - `Content-Length` must be one header of digits only; a repeat, even of the same value, is a 400: the
///   leniency RFC 9110 §8.6 permits buys nothing and repeated lengths are a request-smuggling pattern.
/// - HTTP/1.1 requires exactly one `Host` (RFC 9112 §3.2); a repeated `Authorization` is a 400 because which
///   credential applies would be a guess.
/// - HTTP/1.x versions above 1.1 are served as 1.1 (RFC 9110 §6.2); other major versions get 505.
/// - Request targets may carry bytes above 0x7F (raw UTF-8 keys from `curl`), as springcache accepted them;
///   control characters, spaces and DEL are a 400.
public struct HTTPParser {
    private enum Phase {
        case requestLine   // before the request line (skipping empty lines) or inside it
        case headers       // after the request line, before the empty line that ends the head
        case body          // head complete; waiting for contentLength bytes after headLength
        case done          // returned .request; waiting for reset()
        case failed        // returned .error; every later call returns it again
    }

    public let limits: HTTPLimits

    private var phase = Phase.requestLine
    /// Start of the first line not yet processed; every byte before it has been parsed.
    private var lineStart = 0
    /// Where the search for the next LF resumes: bytes in lineStart..<searchFrom hold no LF.
    private var searchFrom = 0
    /// Start of the request line (after skipped empty lines); head limits are measured from here.
    private var requestLineStart = 0
    private var head = HTTPRequestHead()
    private var sawHost = false
    private var sawContentLength = false
    private var sawConnectionClose = false
    private var sawConnectionKeepAlive = false
    private var continueSignalled = false
    private var failure: HTTPParseError?

    public init(limits: HTTPLimits = HTTPLimits()) {
        self.limits = limits
    }

    /// Forgets the last request, so the next `parse` starts a new one; call it after consuming a request.
    public mutating func reset() {
        phase = .requestLine
        lineStart = 0
        searchFrom = 0
        requestLineStart = 0
        head = HTTPRequestHead()
        sawHost = false
        sawContentLength = false
        sawConnectionClose = false
        sawConnectionKeepAlive = false
        continueSignalled = false
        failure = nil
    }

    /// Parses as much of the request as `bytes` holds; `bytes` must start at the start of the request and
    /// must begin with the same bytes as in earlier calls since the last `reset()`.
    public mutating func parse(_ bytes: UnsafeRawBufferPointer) -> HTTPParseResult {
        switch phase {
        case .failed:
            return .error(failure!)
        case .body, .done:
            return bodyResult(bytes.count)
        case .requestLine, .headers:
            break
        }
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else {
            return .needMore(sendContinue: false)
        }
        let count = bytes.count
        while true {
            guard let lf = findLF(base, from: searchFrom, to: count) else {
                searchFrom = count
                if let error = partialLineError(count) { return fail(error) }
                return .needMore(sendContinue: false)
            }
            searchFrom = lf + 1
            var end = lf
            if end > lineStart && base[end - 1] == UInt8(ascii: "\r") { end -= 1 }
            let start = lineStart
            lineStart = lf + 1
            if let error = processLine(base, start..<end, lineEnd: lf + 1) { return fail(error) }
            if phase == .body { return bodyResult(count) }
        }
    }

    // MARK: - Lines

    private func findLF(_ base: UnsafePointer<UInt8>, from: Int, to: Int) -> Int? {
        guard from < to else { return nil }
        guard let hit = memchr(base + from, Int32(UInt8(ascii: "\n")), to - from) else { return nil }
        return UnsafeRawPointer(hit) - UnsafeRawPointer(base)
    }

    /// Rejects a line that has not ended yet once it can no longer fit the limits, instead of buffering more.
    private func partialLineError(_ count: Int) -> HTTPParseError? {
        switch phase {
        case .requestLine:
            // Any LF still to come makes the request line at least count - requestLineStart + 1 bytes long.
            if lineStart == requestLineStart, count - requestLineStart >= limits.maxHeadBytes {
                return requestLineTooLong()
            }
        case .headers:
            if count - requestLineStart >= limits.maxHeadBytes { return headersTooLarge() }
        default:
            break
        }
        return nil
    }

    private mutating func processLine(_ base: UnsafePointer<UInt8>, _ line: Range<Int>,
                                      lineEnd: Int) -> HTTPParseError? {
        switch phase {
        case .requestLine:
            if line.isEmpty {
                // RFC 9112 §2.2: ignore empty lines before the request line, but not without bound.
                if lineEnd > limits.maxHeadBytes {
                    return HTTPParseError(status: 400, reason: "more than \(limits.maxHeadBytes) bytes of empty "
                                          + "lines before the request line")
                }
                requestLineStart = lineEnd
                return nil
            }
            if lineEnd - requestLineStart > limits.maxHeadBytes { return requestLineTooLong() }
            if let error = parseRequestLine(base, line) { return error }
            phase = .headers
            return nil
        case .headers:
            if lineEnd - requestLineStart > limits.maxHeadBytes { return headersTooLarge() }
            if line.isEmpty {
                head.headLength = lineEnd
                return finishHead()
            }
            return parseHeaderLine(base, line)
        default:
            preconditionFailure("HTTPParser.processLine in phase \(phase)")
        }
    }

    private func requestLineTooLong() -> HTTPParseError {
        HTTPParseError(status: 414, reason: "request line longer than \(limits.maxHeadBytes) bytes")
    }

    private func headersTooLarge() -> HTTPParseError {
        HTTPParseError(status: 431, reason: "request headers larger than \(limits.maxHeadBytes) bytes")
    }

    private mutating func fail(_ error: HTTPParseError) -> HTTPParseResult {
        phase = .failed
        failure = error
        return .error(error)
    }

    // MARK: - Request line (RFC 9112 §3)

    private mutating func parseRequestLine(_ base: UnsafePointer<UInt8>, _ line: Range<Int>) -> HTTPParseError? {
        // method SP request-target SP HTTP-version, single spaces: the strict grammar, so that there is one
        // reading of where the target ends.
        var i = line.lowerBound
        while i < line.upperBound, HTTPBytes.isTokenChar(base[i]) { i += 1 }
        let methodEnd = i
        guard methodEnd > line.lowerBound, i < line.upperBound, base[i] == UInt8(ascii: " ") else {
            return malformedRequestLine(base, line)
        }
        head.method = method(base, line.lowerBound..<methodEnd)
        i += 1
        let targetStart = i
        while i < line.upperBound, base[i] != UInt8(ascii: " ") {
            let c = base[i]
            if c < 0x21 || c == 0x7F {
                return HTTPParseError(status: 400, reason: "request target contains a control character")
            }
            i += 1
        }
        let targetEnd = i
        guard targetEnd > targetStart, i < line.upperBound else { return malformedRequestLine(base, line) }
        i += 1
        if let error = parseVersion(base, i..<line.upperBound) { return error }
        return parseTarget(base, targetStart..<targetEnd)
    }

    private func malformedRequestLine(_ base: UnsafePointer<UInt8>, _ line: Range<Int>) -> HTTPParseError {
        for i in line where base[i] < 0x20 && base[i] != 0x09 || base[i] == 0x7F {
            if base[i] == UInt8(ascii: "\r") {
                return HTTPParseError(status: 400, reason: "bare CR in the request line")
            }
            return HTTPParseError(status: 400, reason: "malformed request line: it contains a control character")
        }
        return HTTPParseError(status: 400, reason: "malformed request line: expected \"METHOD /target HTTP/1.1\"")
    }

    private func method(_ base: UnsafePointer<UInt8>, _ r: Range<Int>) -> HTTPMethod {
        if HTTPBytes.equals(base, r, "GET") { return .get }
        if HTTPBytes.equals(base, r, "POST") { return .post }
        if HTTPBytes.equals(base, r, "PUT") { return .put }
        if HTTPBytes.equals(base, r, "DELETE") { return .delete }
        if HTTPBytes.equals(base, r, "HEAD") { return .head }
        if HTTPBytes.equals(base, r, "OPTIONS") { return .options }
        return .other
    }

    private mutating func parseVersion(_ base: UnsafePointer<UInt8>, _ r: Range<Int>) -> HTTPParseError? {
        // HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive (RFC 9112 §2.3).
        let p = r.lowerBound
        guard r.count == 8, HTTPBytes.equals(base, p..<p + 5, "HTTP/"), HTTPBytes.isDigit(base[p + 5]),
              base[p + 6] == UInt8(ascii: "."), HTTPBytes.isDigit(base[p + 7]) else {
            if r.contains(where: { base[$0] == UInt8(ascii: "\r") }) {
                return HTTPParseError(status: 400, reason: "bare CR in the request line")
            }
            return HTTPParseError(status: 400, reason: "malformed HTTP version in the request line; "
                                  + "expected HTTP/1.1 or HTTP/1.0")
        }
        let major = base[p + 5] - UInt8(ascii: "0")
        let minor = base[p + 7] - UInt8(ascii: "0")
        guard major == 1 else {
            return HTTPParseError(status: 505, reason: "HTTP version \(major).\(minor) is not supported; "
                                  + "use HTTP/1.1 or HTTP/1.0")
        }
        head.isHTTP10 = minor == 0
        return nil
    }

    private mutating func parseTarget(_ base: UnsafePointer<UInt8>, _ r: Range<Int>) -> HTTPParseError? {
        var pathStart = r.lowerBound
        let first = base[r.lowerBound]
        if first == UInt8(ascii: "/") {
            // origin-form, the usual case.
        } else if r.count == 1 && first == UInt8(ascii: "*") {
            // asterisk-form, only meaningful for OPTIONS; the router answers it.
        } else if let afterScheme = absoluteFormAuthorityStart(base, r) {
            // absolute-form: RFC 9112 §3.2.2 says a server MUST accept it; the path is what follows the authority.
            pathStart = afterScheme
            while pathStart < r.upperBound, base[pathStart] != UInt8(ascii: "/"),
                  base[pathStart] != UInt8(ascii: "?") {
                pathStart += 1
            }
        } else {
            return HTTPParseError(status: 400, reason: "request target must start with '/'")
        }
        var q = pathStart
        while q < r.upperBound, base[q] != UInt8(ascii: "?") { q += 1 }
        head.path = pathStart..<q
        head.query = q < r.upperBound ? (q + 1)..<r.upperBound : nil
        return nil
    }

    private func absoluteFormAuthorityStart(_ base: UnsafePointer<UInt8>, _ r: Range<Int>) -> Int? {
        let p = r.lowerBound
        if r.count >= 7, HTTPBytes.equalsIgnoringCase(base, p..<p + 7, "http://") { return p + 7 }
        if r.count >= 8, HTTPBytes.equalsIgnoringCase(base, p..<p + 8, "https://") { return p + 8 }
        return nil
    }

    // MARK: - Header fields (RFC 9112 §5, RFC 9110 §5)

    private mutating func parseHeaderLine(_ base: UnsafePointer<UInt8>, _ line: Range<Int>) -> HTTPParseError? {
        let first = base[line.lowerBound]
        if first == UInt8(ascii: " ") || first == 0x09 {
            return HTTPParseError(status: 400, reason: "header line starts with whitespace (obsolete line "
                                  + "folding is not accepted)")
        }
        var i = line.lowerBound
        while i < line.upperBound, HTTPBytes.isTokenChar(base[i]) { i += 1 }
        let name = line.lowerBound..<i
        guard i < line.upperBound, base[i] == UInt8(ascii: ":") else {
            if i < line.upperBound, base[i] == UInt8(ascii: " ") || base[i] == 0x09 {
                return HTTPParseError(status: 400, reason: "whitespace between a header name and its colon")
            }
            if i < line.upperBound, base[i] == UInt8(ascii: "\r") {
                return HTTPParseError(status: 400, reason: "bare CR in a header line")
            }
            if i == line.upperBound {
                return HTTPParseError(status: 400, reason: "header line without a colon")
            }
            return HTTPParseError(status: 400, reason: "invalid character in a header name")
        }
        guard !name.isEmpty else { return HTTPParseError(status: 400, reason: "header line with an empty name") }
        i += 1
        // field-value = *( field-vchar / SP / HTAB / obs-text ); anything else is a control character.
        for j in i..<line.upperBound {
            let c = base[j]
            if (c < 0x20 && c != 0x09) || c == 0x7F {
                if c == UInt8(ascii: "\r") {
                    return HTTPParseError(status: 400, reason: "bare CR in a header value")
                }
                return HTTPParseError(status: 400, reason: "control character in a header value")
            }
        }
        let value = HTTPBytes.trimmed(base, i..<line.upperBound)
        return headerField(base, name: name, value: value)
    }

    private mutating func headerField(_ base: UnsafePointer<UInt8>, name: Range<Int>,
                                      value: Range<Int>) -> HTTPParseError? {
        // Dispatch on length first so most headers are skipped after one comparison.
        switch name.count {
        case 4:
            if HTTPBytes.equalsIgnoringCase(base, name, "host") {
                if sawHost { return HTTPParseError(status: 400, reason: "more than one Host header") }
                sawHost = true
            }
        case 6:
            if HTTPBytes.equalsIgnoringCase(base, name, "expect") {
                if HTTPBytes.equalsIgnoringCase(base, value, "100-continue") { head.expectContinue = true }
            }
        case 10:
            if HTTPBytes.equalsIgnoringCase(base, name, "connection") { connectionOptions(base, value) }
        case 12:
            if HTTPBytes.equalsIgnoringCase(base, name, "content-type") {
                if head.contentType == nil { head.contentType = value }
            }
        case 13:
            if HTTPBytes.equalsIgnoringCase(base, name, "authorization") {
                if head.authorization != nil {
                    return HTTPParseError(status: 400, reason: "more than one Authorization header")
                }
                head.authorization = value
            } else if HTTPBytes.equalsIgnoringCase(base, name, "if-none-match") {
                if head.ifNoneMatch == nil { head.ifNoneMatch = value }
            }
        case 14:
            if HTTPBytes.equalsIgnoringCase(base, name, "content-length") { return contentLength(base, value) }
        case 17:
            if HTTPBytes.equalsIgnoringCase(base, name, "transfer-encoding") { return transferEncoding(base, value) }
        default:
            break
        }
        return nil
    }

    private mutating func contentLength(_ base: UnsafePointer<UInt8>, _ value: Range<Int>) -> HTTPParseError? {
        if sawContentLength { return HTTPParseError(status: 400, reason: "more than one Content-Length header") }
        sawContentLength = true
        guard !value.isEmpty else { return HTTPParseError(status: 400, reason: "empty Content-Length header") }
        var n = 0
        for i in value {
            let c = base[i]
            guard HTTPBytes.isDigit(c) else {
                return HTTPParseError(status: 400, reason: "invalid Content-Length \"\(HTTPBytes.text(base, value))\"; "
                                      + "expected a decimal number of bytes")
            }
            // Saturate instead of overflowing: anything this large is over the body limit anyway.
            n = n > (Int.max - 9) / 10 ? Int.max : n * 10 + Int(c - UInt8(ascii: "0"))
        }
        head.contentLength = n
        return nil
    }

    private func transferEncoding(_ base: UnsafePointer<UInt8>, _ value: Range<Int>) -> HTTPParseError? {
        if head.isHTTP10 {
            return HTTPParseError(status: 400, reason: "Transfer-Encoding is not allowed in an HTTP/1.0 request")
        }
        var found = false
        forEachListElement(base, value) { element in
            if HTTPBytes.equalsIgnoringCase(base, element, "chunked") { found = true }
        }
        if found {
            return HTTPParseError(status: 411, reason: "Transfer-Encoding is not supported; send Content-Length")
        }
        let coding = HTTPBytes.text(base, value)
        return HTTPParseError(status: 501,
                              reason: "Transfer-Encoding \"\(coding)\" is not implemented; send Content-Length")
    }

    private mutating func connectionOptions(_ base: UnsafePointer<UInt8>, _ value: Range<Int>) {
        forEachListElement(base, value) { option in
            if HTTPBytes.equalsIgnoringCase(base, option, "close") { sawConnectionClose = true }
            if HTTPBytes.equalsIgnoringCase(base, option, "keep-alive") { sawConnectionKeepAlive = true }
        }
    }

    /// Calls `body` with each trimmed, non-empty element of a comma-separated list (RFC 9110 §5.6.1).
    private func forEachListElement(_ base: UnsafePointer<UInt8>, _ value: Range<Int>,
                                    _ body: (Range<Int>) -> Void) {
        var start = value.lowerBound
        var i = start
        while i <= value.upperBound {
            if i == value.upperBound || base[i] == UInt8(ascii: ",") {
                let element = HTTPBytes.trimmed(base, start..<i)
                if !element.isEmpty { body(element) }
                start = i + 1
            }
            i += 1
        }
    }

    private mutating func finishHead() -> HTTPParseError? {
        if !head.isHTTP10 && !sawHost {
            return HTTPParseError(status: 400, reason: "missing Host header (required in HTTP/1.1)")
        }
        if head.contentLength > limits.maxBodyBytes {
            return HTTPParseError(status: 413, reason: "body of \(head.contentLength) bytes exceeds the "
                                  + "\(limits.maxBodyBytes)-byte limit")
        }
        // RFC 9112 §9.3: "close" always wins; HTTP/1.0 persists only when the client asked for it.
        if sawConnectionClose {
            head.keepAlive = false
        } else {
            head.keepAlive = head.isHTTP10 ? sawConnectionKeepAlive : true
        }
        // RFC 9110 §10.1.1: a server MUST ignore a 100-continue expectation in an HTTP/1.0 request.
        if head.isHTTP10 { head.expectContinue = false }
        phase = .body
        return nil
    }

    private mutating func bodyResult(_ available: Int) -> HTTPParseResult {
        let end = head.headLength + head.contentLength
        if available >= end {
            phase = .done
            return .request(head, body: head.headLength..<end, consumed: end)
        }
        if head.expectContinue && !continueSignalled && available == head.headLength {
            continueSignalled = true
            return .needMore(sendContinue: true)
        }
        // Once any of the body has arrived the client has stopped waiting; a late 100 would only confuse it.
        continueSignalled = true
        return .needMore(sendContinue: false)
    }
}

// MARK: - Byte helpers

/// Byte-level helpers shared by the HTTP parser and decoders; a namespace so the names stay local.
enum HTTPBytes {
    /// tchar from RFC 9110 §5.6.2: the characters allowed in methods and field names.
    @inline(__always)
    static func isTokenChar(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
             UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
             UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    @inline(__always)
    static func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }

    /// The range without leading and trailing spaces and tabs (OWS, RFC 9110 §5.6.3).
    static func trimmed(_ base: UnsafePointer<UInt8>, _ r: Range<Int>) -> Range<Int> {
        var lo = r.lowerBound
        var hi = r.upperBound
        while lo < hi, base[lo] == UInt8(ascii: " ") || base[lo] == 0x09 { lo += 1 }
        while hi > lo, base[hi - 1] == UInt8(ascii: " ") || base[hi - 1] == 0x09 { hi -= 1 }
        return lo..<hi
    }

    @inline(__always)
    static func equals(_ base: UnsafePointer<UInt8>, _ r: Range<Int>, _ s: StaticString) -> Bool {
        UnsafeRawBufferPointer(start: base + r.lowerBound, count: r.count).equals(s)
    }

    /// Compares ASCII case-insensitively with `lowercase`, which must be lowercase.
    static func equalsIgnoringCase(_ base: UnsafePointer<UInt8>, _ r: Range<Int>, _ lowercase: StaticString) -> Bool {
        guard r.count == lowercase.utf8CodeUnitCount else { return false }
        let s = lowercase.utf8Start
        for i in 0..<r.count {
            var c = base[r.lowerBound + i]
            if c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z") { c |= 0x20 }
            if c != s[i] { return false }
        }
        return true
    }

    /// The bytes as a String for an error message (error path only: this allocates), cut to 64 bytes.
    static func text(_ base: UnsafePointer<UInt8>, _ r: Range<Int>) -> String {
        let shown = r.lowerBound..<min(r.upperBound, r.lowerBound + 64)
        let s = String(decoding: UnsafeBufferPointer(start: base + shown.lowerBound, count: shown.count), as: UTF8.self)
        return shown.count < r.count ? s + "…" : s
    }
}

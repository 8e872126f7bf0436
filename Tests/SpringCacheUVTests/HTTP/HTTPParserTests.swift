import XCTest
@testable import SpringCacheUV

/// A parsed request with its ranges resolved to strings, so expectations read like the request.
private struct Resolved: Equatable {
    var method: HTTPMethod
    var path: String
    var query: String?
    var isHTTP10 = false
    var keepAlive = true
    var expectContinue = false
    var authorization: String?
    var ifNoneMatch: String?
    var contentType: String?
    var body = ""
}

private func resolve(_ bytes: [UInt8], _ head: HTTPRequestHead, body: Range<Int>) -> Resolved {
    func s(_ r: Range<Int>) -> String { String(decoding: bytes[r], as: UTF8.self) }
    return Resolved(method: head.method, path: s(head.path), query: head.query.map(s), isHTTP10: head.isHTTP10,
                    keepAlive: head.keepAlive, expectContinue: head.expectContinue,
                    authorization: head.authorization.map(s), ifNoneMatch: head.ifNoneMatch.map(s),
                    contentType: head.contentType.map(s), body: s(body))
}

private func parseWhole(_ bytes: [UInt8], limits: HTTPLimits = HTTPLimits()) -> HTTPParseResult {
    var parser = HTTPParser(limits: limits)
    return bytes.withUnsafeBytes { parser.parse($0) }
}

/// Feeds growing prefixes of `bytes`, one more byte each call, as a connection receiving one byte per read
/// would; returns every result.
private func parseByteAtATime(_ bytes: [UInt8], limits: HTTPLimits = HTTPLimits()) -> [HTTPParseResult] {
    var parser = HTTPParser(limits: limits)
    var results: [HTTPParseResult] = []
    for n in 1...bytes.count {
        let r = bytes.withUnsafeBytes { parser.parse(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        results.append(r)
        if case .needMore = r { continue }
        break
    }
    return results
}

private func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

final class HTTPParserTests: XCTestCase {
    private let goodCases: [(name: String, request: String, expected: Resolved)] = [
        ("GET with query", "GET /api/get?key=Tom HTTP/1.1\r\nHost: localhost:9999\r\n\r\n",
         Resolved(method: .get, path: "/api/get", query: "key=Tom")),
        ("POST with body", "POST /api/set HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            + "Content-Length: 19\r\n\r\nkey=Tom&value=630&x",
         Resolved(method: .post, path: "/api/set", contentType: "application/x-www-form-urlencoded",
                  body: "key=Tom&value=630&x")),
        ("HTTP/1.0 closes by default", "GET /healthz HTTP/1.0\r\n\r\n",
         Resolved(method: .get, path: "/healthz", isHTTP10: true, keepAlive: false)),
        ("HTTP/1.0 keep-alive", "GET /healthz HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
         Resolved(method: .get, path: "/healthz", isHTTP10: true, keepAlive: true)),
        ("HTTP/1.1 close", "GET / HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n",
         Resolved(method: .get, path: "/", keepAlive: false)),
        ("HTTP/1.1 close in a list", "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, CLOSE\r\n\r\n",
         Resolved(method: .get, path: "/", keepAlive: false)),
        ("HTTP/1.0 ignores Expect", "PUT /v1/cache/g/k HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nv",
         Resolved(method: .put, path: "/v1/cache/g/k", isHTTP10: true, keepAlive: false, body: "v")),
        ("header names are case-insensitive, values trimmed",
         "DELETE /v1/cache/g/k?x HTTP/1.1\r\nHOST: h\r\nAUTHORIZATION:  \tBearer abc \t\r\n"
            + "If-None-Match: \"e1\"\r\ncontent-LENGTH: 2\r\n\r\nab",
         Resolved(method: .delete, path: "/v1/cache/g/k", query: "x", authorization: "Bearer abc",
                  ifNoneMatch: "\"e1\"", body: "ab")),
        ("empty query", "GET /a? HTTP/1.1\r\nHost: h\r\n\r\n", Resolved(method: .get, path: "/a", query: "")),
        ("bare LF line ends", "GET /x HTTP/1.1\nHost: h\n\n", Resolved(method: .get, path: "/x")),
        ("leading empty lines", "\r\n\r\n\nGET /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
         Resolved(method: .get, path: "/x", body: "abc")),
        ("absolute-form", "GET http://example.com:9999/api/get?key=Sam HTTP/1.1\r\nHost: example.com\r\n\r\n",
         Resolved(method: .get, path: "/api/get", query: "key=Sam")),
        ("absolute-form without path", "OPTIONS http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n",
         Resolved(method: .options, path: "")),
        ("asterisk-form", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", Resolved(method: .options, path: "*")),
        ("HEAD", "HEAD /v1/cache/g/k HTTP/1.1\r\nHost: h\r\n\r\n", Resolved(method: .head, path: "/v1/cache/g/k")),
        ("methods are case-sensitive", "get / HTTP/1.1\r\nHost: h\r\n\r\n", Resolved(method: .other, path: "/")),
        ("HTTP/1.2 is served as 1.1", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", Resolved(method: .get, path: "/")),
        ("raw UTF-8 in the target", "GET /api/get?key=ключ HTTP/1.1\r\nHost: h\r\n\r\n",
         Resolved(method: .get, path: "/api/get", query: "key=ключ")),
        ("obs-text in a value", "GET / HTTP/1.1\r\nHost: h\r\nX-Note: caf\u{e9}\r\n\r\n",
         Resolved(method: .get, path: "/")),
        ("empty header value", "GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\n\r\n", Resolved(method: .get, path: "/")),
        ("Content-Length with leading zeros", "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 002\r\n\r\nok",
         Resolved(method: .post, path: "/p", body: "ok")),
    ]

    func testGoodRequestsWholeAndByteAtATimeAgree() {
        for c in goodCases {
            let b = bytes(c.request)
            let whole = parseWhole(b)
            guard case .request(let head, let body, let consumed) = whole else {
                XCTFail("\(c.name): expected a request, got \(whole)")
                continue
            }
            XCTAssertEqual(resolve(b, head, body: body), c.expected, c.name)
            XCTAssertEqual(consumed, b.count, c.name)
            XCTAssertEqual(consumed, head.headLength + head.contentLength, c.name)

            let steps = parseByteAtATime(b)
            XCTAssertEqual(steps.last, whole, "\(c.name): byte-at-a-time differs")
            XCTAssertEqual(steps.count, b.count, "\(c.name): finished before the last byte")
            for step in steps.dropLast() {
                XCTAssertEqual(step, .needMore(sendContinue: false), c.name)
            }
        }
    }

    func testPipelinedRequestsParseConsumeReset() {
        let batch = bytes("GET /api/get?key=Tom HTTP/1.1\r\nHost: h\r\n\r\n"
            + "POST /api/set HTTP/1.1\r\nHost: h\r\nContent-Length: 17\r\n\r\nkey=Sam&value=567"
            + "\r\nGET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
            + "GET /partial HT")
        var parser = HTTPParser()
        var offset = 0
        var seen: [Resolved] = []
        while true {
            let rest = Array(batch[offset...])
            let result = rest.withUnsafeBytes { parser.parse($0) }
            guard case .request(let head, let body, let consumed) = result else {
                XCTAssertEqual(result, .needMore(sendContinue: false))
                break
            }
            seen.append(resolve(rest, head, body: body))
            offset += consumed
            parser.reset()
        }
        XCTAssertEqual(seen, [
            Resolved(method: .get, path: "/api/get", query: "key=Tom"),
            Resolved(method: .post, path: "/api/set", body: "key=Sam&value=567"),
            Resolved(method: .get, path: "/healthz", keepAlive: false),
        ])
        XCTAssertEqual(String(decoding: batch[offset...], as: UTF8.self), "GET /partial HT")
    }

    func testParseAgainAfterCompletionReturnsTheSameRequest() {
        let b = bytes("GET / HTTP/1.1\r\nHost: h\r\n\r\nGET")
        var parser = HTTPParser()
        let first = b.withUnsafeBytes { parser.parse($0) }
        let second = b.withUnsafeBytes { parser.parse($0) }
        XCTAssertEqual(first, second)
        guard case .request(_, _, let consumed) = first else { return XCTFail("\(first)") }
        XCTAssertEqual(consumed, b.count - 3)
    }

    func testExpectContinueSignalledOnce() {
        let head = "PUT /v1/cache/g/k HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n"
        let full = bytes(head + "hello")
        var parser = HTTPParser()
        let headOnly = Array(full[0..<head.utf8.count])
        XCTAssertEqual(headOnly.withUnsafeBytes { parser.parse($0) }, .needMore(sendContinue: true))
        XCTAssertEqual(headOnly.withUnsafeBytes { parser.parse($0) }, .needMore(sendContinue: false))
        let partial = Array(full[0..<head.utf8.count + 2])
        XCTAssertEqual(partial.withUnsafeBytes { parser.parse($0) }, .needMore(sendContinue: false))
        guard case .request(let h, let body, _) = full.withUnsafeBytes({ parser.parse($0) }) else {
            return XCTFail("no request")
        }
        XCTAssertTrue(h.expectContinue)
        XCTAssertEqual(resolve(full, h, body: body).body, "hello")

        // Byte at a time: exactly one sendContinue, right after the head.
        let steps = parseByteAtATime(full)
        XCTAssertEqual(steps.filter { $0 == .needMore(sendContinue: true) }.count, 1)
        XCTAssertEqual(steps[head.utf8.count - 1], .needMore(sendContinue: true))

        // Body already there with the head: nothing to signal.
        XCTAssertNotEqual(parseByteAtATime(full).count, 0)
        if case .request = parseWhole(full) {} else { XCTFail("whole request with Expect should parse") }

        // No body: no 100 Continue either.
        let empty = bytes("POST /p HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n")
        if case .request = parseWhole(empty) {} else { XCTFail("bodiless Expect request should parse") }
    }

    func testLeadingEmptyLinesOffsets() {
        let b = bytes("\r\n\r\nPOST /a?b=c HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nxyGET")
        guard case .request(let head, let body, let consumed) = parseWhole(b) else { return XCTFail() }
        XCTAssertEqual(head.path, 9..<11)
        XCTAssertEqual(head.headLength, b.count - 5)
        XCTAssertEqual(body, b.count - 5..<b.count - 3)
        XCTAssertEqual(consumed, b.count - 3)
    }

    // MARK: - Limits at their boundaries

    private func status(_ result: HTTPParseResult) -> Int? {
        switch result {
        case .request: return 200
        case .needMore: return nil
        case .error(let e): return e.status
        }
    }

    func testHeadLimitBoundary() {
        let limits = HTTPLimits(maxHeadBytes: 64, maxBodyBytes: 10)
        func request(headBytes: Int) -> [UInt8] {
            // "GET / HTTP/1.0\r\n" (16) + "X: " (3) + pad + "\r\n\r\n" (4)
            bytes("GET / HTTP/1.0\r\nX: " + String(repeating: "a", count: headBytes - 23) + "\r\n\r\n")
        }
        XCTAssertEqual(request(headBytes: 64).count, 64)
        XCTAssertEqual(status(parseWhole(request(headBytes: 64), limits: limits)), 200)
        XCTAssertEqual(status(parseWhole(request(headBytes: 65), limits: limits)), 431)
        XCTAssertEqual(status(parseByteAtATime(request(headBytes: 64), limits: limits).last!), 200)
        XCTAssertEqual(status(parseByteAtATime(request(headBytes: 65), limits: limits).last!), 431)
        // Rejected as soon as the limit is reached, before the head ends.
        let steps = parseByteAtATime(bytes("GET / HTTP/1.0\r\nX: " + String(repeating: "a", count: 200)),
                                     limits: limits)
        XCTAssertEqual(steps.count, 64)
        XCTAssertEqual(status(steps.last!), 431)
        if case .error(let e) = steps.last! {
            XCTAssertEqual(e.reason, "request headers larger than 64 bytes")
        }
    }

    func testRequestLineLimitBoundary() {
        let limits = HTTPLimits(maxHeadBytes: 64, maxBodyBytes: 10)
        func line(_ length: Int) -> String {   // "GET /" + pad + " HTTP/1.0\r\n" = length bytes
            "GET /" + String(repeating: "p", count: length - 16) + " HTTP/1.0\r\n"
        }
        XCTAssertEqual(line(62).utf8.count, 62)
        XCTAssertEqual(status(parseWhole(bytes(line(62) + "\r\n"), limits: limits)), 200)
        // A 64-byte request line fits on its own; the head it starts cannot, so that is a header-size problem.
        XCTAssertEqual(status(parseWhole(bytes(line(64) + "\r\n"), limits: limits)), 431)
        XCTAssertEqual(status(parseWhole(bytes(line(65) + "\r\n"), limits: limits)), 414)
        XCTAssertEqual(status(parseByteAtATime(bytes(line(65) + "\r\n"), limits: limits).last!), 414)
        // Rejected while the line is still arriving.
        let steps = parseByteAtATime(bytes("GET /" + String(repeating: "p", count: 500)), limits: limits)
        XCTAssertEqual(steps.count, 64)
        if case .error(let e) = steps.last! {
            XCTAssertEqual(e, HTTPParseError(status: 414, reason: "request line longer than 64 bytes"))
        } else {
            XCTFail("\(steps.last!)")
        }
    }

    func testDefaultHeadLimit() {
        let pad = String(repeating: "a", count: 8192 - 23)
        XCTAssertEqual(status(parseWhole(bytes("GET / HTTP/1.0\r\nX: " + pad + "\r\n\r\n"))), 200)
        XCTAssertEqual(status(parseWhole(bytes("GET / HTTP/1.0\r\nX: " + pad + "a\r\n\r\n"))), 431)
    }

    func testBodyLimitBoundary() {
        let limits = HTTPLimits(maxHeadBytes: 8192, maxBodyBytes: 10)
        let atLimit = "PUT /k HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n"
        XCTAssertEqual(status(parseWhole(bytes(atLimit + "0123456789"), limits: limits)), 200)
        // 413 is decided from the head alone, before any body arrives.
        let over = parseWhole(bytes("PUT /k HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n"), limits: limits)
        XCTAssertEqual(over, .error(HTTPParseError(status: 413, reason: "body of 11 bytes exceeds the 10-byte limit")))
        let huge = parseWhole(bytes("PUT /k HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n"))
        XCTAssertEqual(status(huge), 413)
        if case .error(let e) = parseWhole(bytes("PUT /k HTTP/1.1\r\nHost: h\r\nContent-Length: 1048577\r\n\r\n")) {
            XCTAssertEqual(e.reason, "body of 1048577 bytes exceeds the 1048576-byte limit")
        } else {
            XCTFail("default body limit not enforced")
        }
    }

    func testLeadingEmptyLinesLimit() {
        let limits = HTTPLimits(maxHeadBytes: 64, maxBodyBytes: 10)
        let request = "GET / HTTP/1.0\r\n\r\n"
        XCTAssertEqual(status(parseWhole(bytes(String(repeating: "\r\n", count: 32) + request), limits: limits)), 200)
        XCTAssertEqual(status(parseWhole(bytes(String(repeating: "\r\n", count: 33) + request), limits: limits)), 400)
    }

    // MARK: - Malformed requests

    private let malformed: [(request: String, status: Int, reason: String?)] = [
        ("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "malformed request line: expected \"METHOD /target HTTP/1.1\""),
        ("GET / HTTP/1.1 x\r\nHost: h\r\n\r\n", 400, nil),
        ("GET /\r\nHost: h\r\n\r\n", 400, nil),
        ("GET\r\n\r\n", 400, nil),
        (" GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400, nil),
        ("G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400, nil),
        ("GET / http/1.1\r\nHost: h\r\n\r\n", 400, "malformed HTTP version in the request line; "
            + "expected HTTP/1.1 or HTTP/1.0"),
        ("GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400, nil),
        ("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505, "HTTP version 2.0 is not supported; use HTTP/1.1 or HTTP/1.0"),
        ("GET / HTTP/0.9\r\n\r\n", 505, nil),
        ("GET api HTTP/1.1\r\nHost: h\r\n\r\n", 400, "request target must start with '/'"),
        ("GET /a\u{7f}b HTTP/1.1\r\nHost: h\r\n\r\n", 400, "request target contains a control character"),
        ("GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n", 400, nil),
        ("GET / HTTP/1.1\rHost: h\r\n\r\n", 400, "bare CR in the request line"),
        ("GET / HTTP/1.1\r\n\r\n", 400, "missing Host header (required in HTTP/1.1)"),
        ("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400, "more than one Host header"),
        ("GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n", 400,
         "header line starts with whitespace (obsolete line folding is not accepted)"),
        ("GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400, nil),
        ("GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400, "whitespace between a header name and its colon"),
        ("GET / HTTP/1.1\r\nHost: h\r\nX(Y: 1\r\n\r\n", 400, "invalid character in a header name"),
        ("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400, "header line without a colon"),
        ("GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n", 400, "header line with an empty name"),
        ("GET / HTTP/1.1\r\nHost: h\r\nX: a\u{1}b\r\n\r\n", 400, "control character in a header value"),
        ("GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 400, "bare CR in a header value"),
        ("GET / HTTP/1.1\r\nHost: h\r\nX: a\u{0}\r\n\r\n", 400, nil),
        ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n", 400,
         "invalid Content-Length \"abc\"; expected a decimal number of bytes"),
        ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400, nil),
        ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 1\r\n\r\n", 400, nil),
        ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\n", 400, nil),
        ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", 400, "empty Content-Length header"),
        ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400,
         "more than one Content-Length header"),
        ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\nx", 400, nil),
        ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", 411,
         "Transfer-Encoding is not supported; send Content-Length"),
        ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n", 411, nil),
        ("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 411, nil),
        ("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501,
         "Transfer-Encoding \"gzip\" is not implemented; send Content-Length"),
        ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
         "Transfer-Encoding is not allowed in an HTTP/1.0 request"),
        ("GET / HTTP/1.1\r\nHost: h\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n", 400,
         "more than one Authorization header"),
    ]

    func testMalformedRequests() {
        for c in malformed {
            let b = bytes(c.request)
            let whole = parseWhole(b)
            guard case .error(let e) = whole else {
                XCTFail("\(c.request.debugDescription): expected \(c.status), got \(whole)")
                continue
            }
            XCTAssertEqual(e.status, c.status, c.request.debugDescription)
            if let reason = c.reason { XCTAssertEqual(e.reason, reason, c.request.debugDescription) }
            XCTAssertEqual(parseByteAtATime(b).last, whole, "byte-at-a-time: \(c.request.debugDescription)")
        }
    }

    func testErrorIsSticky() {
        var parser = HTTPParser()
        let b = bytes("GET / HTTP/3.0\r\n")
        let first = b.withUnsafeBytes { parser.parse($0) }
        XCTAssertEqual(status(first), 505)
        XCTAssertEqual(b.withUnsafeBytes { parser.parse($0) }, first)
        parser.reset()
        let good = bytes("GET / HTTP/1.0\r\n\r\n")
        XCTAssertEqual(status(good.withUnsafeBytes { parser.parse($0) }), 200)
    }

    func testEmptyInputNeedsMore() {
        var parser = HTTPParser()
        XCTAssertEqual(parser.parse(UnsafeRawBufferPointer(start: nil, count: 0)), .needMore(sendContinue: false))
    }
}

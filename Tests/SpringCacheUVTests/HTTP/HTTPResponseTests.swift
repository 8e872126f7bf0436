import XCTest
@testable import SpringCacheUV

final class HTTPResponseTests: XCTestCase {
    private let date = HTTPDate(unixSeconds: 784_111_777)
    private let dateLine = "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"

    private func render(_ body: (inout ByteBuffer) -> Void) -> String {
        var out = ByteBuffer(capacity: 16)
        body(&out)
        return String(decoding: out.readable, as: UTF8.self)
    }

    func testDateFormatting() {
        let cases: [(Int64, String)] = [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (1_700_000_000, "Tue, 14 Nov 2023 22:13:20 GMT"),
            (1_709_251_199, "Thu, 29 Feb 2024 23:59:59 GMT"),
            (4_102_444_800, "Fri, 01 Jan 2100 00:00:00 GMT"),
            (-1, "Wed, 31 Dec 1969 23:59:59 GMT"),
        ]
        for (seconds, expected) in cases {
            XCTAssertEqual(HTTPDate(unixSeconds: seconds).string, expected, "\(seconds)")
            XCTAssertEqual(expected.utf8.count, HTTPDate.length)
        }
    }

    func testDateUpdatesOnlyOnANewSecond() {
        var d = HTTPDate(unixSeconds: 0)
        d.update(unixSeconds: 0)
        XCTAssertEqual(d.string, "Thu, 01 Jan 1970 00:00:00 GMT")
        d.update(unixSeconds: 784_111_777)
        XCTAssertEqual(d.string, "Sun, 06 Nov 1994 08:49:37 GMT")
        XCTAssertEqual(d.unixSeconds, 784_111_777)
    }

    func testValueResponseGolden() {
        let text = render { out in
            Array("630".utf8).withUnsafeBytes {
                HTTPResponse.appendValue(to: &out, value: $0, framing: HTTPResponseFraming(), date: date)
            }
        }
        XCTAssertEqual(text, "HTTP/1.1 200 OK\r\nServer: springcache-uv\r\n" + dateLine
            + "Content-Length: 10\r\nContent-Type: application/octet-stream\r\n\r\nvalue=630\n")
    }

    func testHeadResponseKeepsLengthWithoutBody() {
        let text = render { out in
            Array("630".utf8).withUnsafeBytes {
                HTTPResponse.appendValue(to: &out, value: $0, framing: HTTPResponseFraming(omitBody: true), date: date)
            }
        }
        XCTAssertEqual(text, "HTTP/1.1 200 OK\r\nServer: springcache-uv\r\n" + dateLine
            + "Content-Length: 10\r\nContent-Type: application/octet-stream\r\n\r\n")
    }

    func testErrorResponseClosesAndSaysWhy() {
        let error = HTTPParseError(status: 431, reason: "request headers larger than 8192 bytes")
        let text = render { HTTPResponse.appendError(to: &$0, error, framing: HTTPResponseFraming(), date: date) }
        XCTAssertEqual(text, "HTTP/1.1 431 Request Header Fields Too Large\r\nServer: springcache-uv\r\n" + dateLine
            + "Content-Length: 39\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
            + "request headers larger than 8192 bytes\n")
    }

    func testHTTP10KeepAliveAndExtraHeaders() {
        let text = render { out in
            HTTPResponse.append(to: &out, status: 200, contentType: HTTPResponse.textPlain, body: "done\n",
                                framing: HTTPResponseFraming(keepAlive: true, isHTTP10: true), date: date) { h in
                HTTPResponse.appendHeader(to: &h, name: "Cache-Control", value: "no-store")
                HTTPResponse.appendHeader(to: &h, name: "Age", decimal: 42)
                Array("\"a\r\nSet-Cookie: x\"".utf8).withUnsafeBytes {
                    HTTPResponse.appendHeader(to: &h, name: "ETag", value: $0)
                }
            }
        }
        XCTAssertEqual(text, "HTTP/1.1 200 OK\r\nServer: springcache-uv\r\n" + dateLine
            + "Content-Length: 5\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: keep-alive\r\n"
            + "Cache-Control: no-store\r\nAge: 42\r\nETag: \"a  Set-Cookie: x\"\r\n\r\ndone\n")
    }

    func testNoContentAndNotModifiedHaveNoLengthOrBody() {
        for status in [204, 304] {
            let text = render { out in
                HTTPResponse.append(to: &out, status: status, contentType: HTTPResponse.textPlain, body: "ignored",
                                    framing: HTTPResponseFraming(), date: date)
            }
            XCTAssertEqual(text, "HTTP/1.1 \(status) \(HTTPResponse.reasonPhrase(status))\r\nServer: springcache-uv\r\n"
                + dateLine + "\r\n")
        }
    }

    func testContinueAndReasonPhrases() {
        XCTAssertEqual(render { HTTPResponse.appendContinue(to: &$0) }, "HTTP/1.1 100 Continue\r\n\r\n")
        let phrases: [Int: String] = [
            200: "OK", 204: "No Content", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
            411: "Length Required", 413: "Content Too Large", 414: "URI Too Long",
            431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
            505: "HTTP Version Not Supported",
        ]
        for (status, phrase) in phrases {
            XCTAssertEqual("\(HTTPResponse.reasonPhrase(status))", phrase)
        }
    }

    func testResponsesAppendAfterEachOther() {
        let text = render { out in
            HTTPResponse.appendText(to: &out, status: 404, message: "no such key",
                                    framing: HTTPResponseFraming(), date: date)
            HTTPResponse.appendText(to: &out, status: 405, message: "use GET", framing: HTTPResponseFraming(),
                                    date: date) { h in
                HTTPResponse.appendHeader(to: &h, name: "Allow", value: "GET, HEAD")
            }
        }
        XCTAssertEqual(text, "HTTP/1.1 404 Not Found\r\nServer: springcache-uv\r\n" + dateLine
            + "Content-Length: 12\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nno such key\n"
            + "HTTP/1.1 405 Method Not Allowed\r\nServer: springcache-uv\r\n" + dateLine
            + "Content-Length: 8\r\nContent-Type: text/plain; charset=utf-8\r\nAllow: GET, HEAD\r\n\r\nuse GET\n")
    }

    func testFramingFromRequest() {
        let head = HTTPRequestHead(method: .head, isHTTP10: true, keepAlive: false)
        XCTAssertEqual(HTTPResponseFraming(request: head),
                       HTTPResponseFraming(keepAlive: false, isHTTP10: true, omitBody: true))
    }
}

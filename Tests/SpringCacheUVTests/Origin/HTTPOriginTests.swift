import Foundation
import XCTest

@testable import SpringCacheUV

/// HTTPOrigin against a real HTTP server (python3) through CurlMulti on a real uv loop.
final class HTTPOriginTests: XCTestCase {
    private var server: CurlTestServer!
    private var loop: CurlTestLoop!
    private var multi: CurlMulti!

    override func setUpWithError() throws {
        server = try CurlTestServer()
        loop = CurlTestLoop()
        multi = CurlMulti(loop: loop.loop)
    }

    override func tearDown() {
        if let loop, let multi {
            XCTAssertEqual(loop.closeAll(multi), 0, "uv_loop_close: a handle was left open")
        }
        multi = nil
        loop = nil
        server?.stop()
        server = nil
    }

    private func load(_ origin: HTTPOrigin, group: String = "scores", _ key: String) -> LoadResult? {
        var result: LoadResult?
        origin.load(group: group, key: key) { result = $0 }
        loop.run(upTo: 10) { result != nil }
        return result
    }

    func testReplyMapping() throws {
        let origin = try HTTPOrigin(urlTemplate: server.base + "/k/{key}", multi: multi)
        let cases: [(key: String, expected: LoadResult)] = [
            ("Tom", .value(Array("630".utf8))),
            ("missing", .notFound),
            ("err", .failure(.unavailable("origin answered 503 for key \"err\""))),
        ]
        for c in cases {
            XCTAssertEqual(load(origin, c.key), c.expected, c.key)
        }
    }

    func testTimeoutIsTimedOutWithinTimeoutAndSlack() throws {
        let origin = try HTTPOrigin(urlTemplate: server.base + "/k/{key}", multi: multi, timeoutMillis: 500)
        let started = Date()
        XCTAssertEqual(load(origin, "slow"), .failure(.timedOut("origin timed out (no answer within 500 ms)")))
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertGreaterThanOrEqual(elapsed, 0.45)
        XCTAssertLessThan(elapsed, 1.5)
    }

    func testDefaultTimeoutMessage() throws {
        let origin = try HTTPOrigin(urlTemplate: server.base + "/k/{key}", multi: multi)
        XCTAssertEqual(origin.timeoutMillis, 2000)
        XCTAssertEqual(load(origin, "slow"), .failure(.timedOut("origin timed out (no answer within 2000 ms)")))
    }

    func testConnectionRefusedIsUnavailable() throws {
        let port = CurlTestServer.closedPort()
        let origin = try HTTPOrigin(urlTemplate: "http://127.0.0.1:\(port)/k/{key}", multi: multi)
        guard case .failure(.unavailable(let message)) = load(origin, "Tom") else {
            return XCTFail("expected .unavailable")
        }
        XCTAssertTrue(message == "origin unreachable for key \"Tom\"" && !message.contains("127.0.0.1"), message)
    }

    func testKeyAndGroupArePercentEncodedOnTheWire() throws {
        let origin = try HTTPOrigin(urlTemplate: server.base + "/echo/{group}/{key}", multi: multi)
        let group = "my group"
        let key = "a b/ç?&"
        guard case .value(let body) = load(origin, group: group, key) else { return XCTFail("expected a value") }
        let lines = String(decoding: body, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        XCTAssertEqual(lines.map(String.init), ["my%20group", "a%20b%2F%C3%A7%3F%26", group, key])
    }

    func testHundredsOfConcurrentLoads() throws {
        let origin = try HTTPOrigin(urlTemplate: server.base + "/n/{key}", multi: multi, timeoutMillis: 20_000)
        let count = 300
        var results = [LoadResult?](repeating: nil, count: count)
        var done = 0
        for i in 0..<count {
            origin.load(group: "scores", key: "key\(i)") { result in
                XCTAssertNil(results[i], "completion ran twice")
                results[i] = result
                done += 1
            }
        }
        XCTAssertEqual(done, 0, "a load completed inside load()")
        XCTAssertTrue(loop.run(upTo: 30) { done == count }, "only \(done) of \(count) loads completed")
        for i in 0..<count {
            XCTAssertEqual(results[i], .value(Array("key\(i)".utf8)))
        }
    }

    func testTemplateValidation() {
        let bad: [(String, String)] = [
            ("ftp://h/{key}", "must start with http:// or https://"),
            ("h:80/{key}", "must start with http:// or https://"),
            ("http:///{key}", "has no host"),
            ("http://h/values", "must contain {key}"),
        ]
        for (template, expected) in bad {
            XCTAssertThrowsError(try HTTPOrigin(urlTemplate: template, multi: multi), template) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(template): \(error)")
            }
        }
        XCTAssertNoThrow(try HTTPOrigin(urlTemplate: "HTTPS://h:8443/v/{group}/{key}?raw=1", multi: multi))
    }

    func testTemplateExpansion() throws {
        let template = try URLTemplate("http://h:1/{group}/x/{key}/{key}")
        XCTAssertEqual(template.expand(group: "g", key: "k 1"), "http://h:1/g/x/k%201/k%201")
        let cases: [(String, String)] = [
            ("AZaz09-._~", "AZaz09-._~"),
            ("a b", "a%20b"),
            ("/?#[]@!$&'()*+,;=%", "%2F%3F%23%5B%5D%40%21%24%26%27%28%29%2A%2B%2C%3B%3D%25"),
            ("ç", "%C3%A7"),
            ("", ""),
        ]
        for (raw, encoded) in cases {
            let template = try URLTemplate("http://h:1/{group}/{key}")
            XCTAssertEqual(template.expand(group: raw, key: raw), "http://h:1/\(encoded)/\(encoded)", raw)
        }
    }

    func testReplyMappingOfFailures() {
        let cases: [(CurlOutcome, LoadResult)] = [
            (.failed(CurlFailure(kind: .timedOut, message: "x")),
             .failure(.timedOut("origin timed out (no answer within 2000 ms)"))),
            (.failed(CurlFailure(kind: .other, message: "Recv failure: Connection reset by peer")),
             .failure(.unavailable("origin request for key \"k\" failed"))),
            (.response(status: 500, body: []), .failure(.unavailable("origin answered 500 for key \"k\""))),
            (.response(status: 204, body: []), .failure(.unavailable("origin answered 204 for key \"k\""))),
        ]
        for (outcome, expected) in cases {
            XCTAssertEqual(HTTPOrigin.result(of: outcome, key: "k", timeoutMillis: 2000).0, expected)
        }
    }
}

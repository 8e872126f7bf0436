import XCTest
@testable import SpringCacheUV

// APIHandler driven without sockets: requests are parsed by the real parser, answered into a real
// ResponseWriter, against a real Group (real LRU, ManualClock) and a recording APIHost.

/// The node's side of the API, as a test sets it up: members, an optional etcd look-up held until the test
/// completes it, and reports that say which request counters they were given.
final class APITestHost: APIHost {
    var members: Set<String> = ["self"]
    /// Names `/setpeer` re-admitted, in order.
    private(set) var readmitted: [String] = []
    /// Whether names can be looked up elsewhere (etcd).
    var resolvesPeers = false
    /// Look-ups asked for and not yet completed.
    private(set) var pendingResolves: [(name: String, completion: (Bool) -> Void)] = []

    func writeStatsJSON(into out: inout ByteBuffer, requests: RequestStats) {
        out.append("{\"requests\":\(requests.totalRequests)}")
    }

    func writeMetrics(into out: inout ByteBuffer, requests: RequestStats) {
        out.append("test_requests_total \(requests.totalRequests)\n")
    }

    func writePeersJSON(into out: inout ByteBuffer) {
        out.append("{\"members\":[\(members.sorted().map { "\"\($0)\"" }.joined(separator: ","))]}")
    }

    func readmit(peer name: String) -> Bool {
        guard members.contains(name) else { return false }
        readmitted.append(name)
        return true
    }

    func resolvePeer(_ name: String, completion: @escaping (Bool) -> Void) {
        pendingResolves.append((name, completion))
    }

    func completeResolve(found: Bool) {
        let (name, completion) = pendingResolves.removeFirst()
        if found { members.insert(name) }
        completion(found)
    }
}

/// One parsed response.
struct APITestResponse {
    let status: Int
    /// Header names lower-cased; the last value of a repeated name.
    let headers: [String: String]
    let body: String

    var contentType: String? { headers["content-type"] }
}

final class APIHandlerTests: XCTestCase {
    private var clock: ManualClock!
    private var loader: CacheTestLoader!
    private var group: Group!
    private var host: APITestHost!
    private var api: APIHandler!
    private var writer: ResponseWriter!
    /// How often a deferred answer was finished through the writer.
    private var finishedDeferred = 0

    override func setUp() {
        super.setUp()
        clock = ManualClock()
        loader = CacheTestLoader()
        makeGroup(CacheConfig(jitterMillis: 0, sliding: false))
        host = APITestHost()
        api = APIHandler(settings: APISettings(), clock: clock, group: group, host: host)
        writer = ResponseWriter(collectingInto: ResponseBuffer()) { [unowned self] in self.finishedDeferred += 1 }
    }

    private func makeGroup(_ config: CacheConfig) {
        group = Group(name: "scores", config: config, clock: clock, random: FastRandom(seed: 1), loader: loader)
    }

    // MARK: driving the handler

    /// Parses `raw` (one whole request) and hands it to the handler.
    @discardableResult
    private func send(_ raw: String, keepAlive: Bool = true) -> HTTPHandling {
        let bytes = Array(raw.utf8)
        return bytes.withUnsafeBytes { b in
            var parser = HTTPParser()
            guard case .request(let head, _, _) = parser.parse(b) else {
                XCTFail("not a whole request: \(raw)")
                return .done
            }
            let request = HTTPRequest(head: head, bytes: b, keepAlive: keepAlive && head.keepAlive, startNanos: 0)
            return api.handle(request, writer: writer)
        }
    }

    private func request(_ method: String, _ target: String, headers: [String] = [], body: String? = nil) -> String {
        var lines = ["\(method) \(target) HTTP/1.1", "Host: test"] + headers
        if let body { lines.append("Content-Length: \(body.utf8.count)") }
        return lines.joined(separator: "\r\n") + "\r\n\r\n" + (body ?? "")
    }

    private func form(_ target: String, _ body: String, headers: [String] = []) -> String {
        request("POST", target, headers: ["Content-Type: application/x-www-form-urlencoded"] + headers, body: body)
    }

    /// Sends a request that must be answered at once, and returns the answer.
    private func answer(_ raw: String, file: StaticString = #filePath, line: UInt = #line) -> APITestResponse {
        XCTAssertEqual(send(raw), .done, "expected an answer at once", file: file, line: line)
        return takeResponse(headOnly: raw.hasPrefix("HEAD "), file: file, line: line)
    }

    private func get(_ target: String, headers: [String] = []) -> APITestResponse {
        answer(request("GET", target, headers: headers))
    }

    /// Takes the one whole response the writer holds; `headOnly` for the answer to a HEAD request.
    private func takeResponse(headOnly: Bool = false, file: StaticString = #filePath,
                              line: UInt = #line) -> APITestResponse {
        let text = String(decoding: writer.bytes.readable, as: UTF8.self)
        writer.bytes.count = 0
        guard let end = text.range(of: "\r\n\r\n") else {
            XCTFail("no whole response in \(text.debugDescription)", file: file, line: line)
            return APITestResponse(status: 0, headers: [:], body: "")
        }
        var lines = text[..<end.lowerBound].components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ")
        var headers: [String: String] = [:]
        for l in lines {
            let colon = l.firstIndex(of: ":")!
            headers[l[..<colon].lowercased()] = l[l.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let body = String(text[end.upperBound...])
        let status = Int(statusLine[1])!
        if let length = headers["content-length"].flatMap(Int.init), !headOnly, !HTTPResponse.hasNoBody(status) {
            XCTAssertEqual(body.utf8.count, length, "body length", file: file, line: line)
        }
        return APITestResponse(status: status, headers: headers, body: body)
    }

    private func store(_ key: String, _ value: String) {
        XCTAssertTrue(group.set(key: CacheKey(key), value: Array(value.utf8), ttlMillis: nil, hot: false))
    }

    private func count(_ route: APIRoute, _ status: Int) -> UInt64 {
        api.requestStats.requests(route: route, status: status)
    }

    // MARK: springcache's /api/get

    func testGetHitAnswersSpringcachesValueLine() {
        store("Tom", "630")
        let r = get("/api/get?key=Tom")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.contentType, "application/octet-stream")
        XCTAssertEqual(r.body, "value=630\n")
        XCTAssertEqual(count(.get, 200), 1)
        XCTAssertEqual(loader.loadCount, 0, "a hit must not load")
    }

    func testGetHeadAnswersTheHeadOnly() {
        store("Tom", "630")
        let r = answer(request("HEAD", "/api/get?key=Tom"))
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.headers["content-length"], "10")
        XCTAssertEqual(r.body, "")
    }

    func testGetDecodesTheKeyExactly() {
        store("a b&c", "1")
        XCTAssertEqual(get("/api/get?key=a+b%26c").body, "value=1\n")
        XCTAssertEqual(get("/api/get?key=a%20b%26c").body, "value=1\n")
    }

    func testGetParameterErrors() {
        let cases: [(String, String)] = [
            ("/api/get", "missing parameter \"key\"\n"),
            ("/api/get?other=1", "missing parameter \"key\"\n"),
            ("/api/get?key=", "parameter \"key\" must not be empty\n"),
            ("/api/get?key=%zz", "form field \"key\" has a malformed percent-escape \"%zz\"\n"),
        ]
        for (target, message) in cases {
            let r = get(target)
            XCTAssertEqual(r.status, 400, target)
            XCTAssertEqual(r.body, message, target)
        }
        XCTAssertEqual(count(.get, 400), UInt64(cases.count))
    }

    func testGetMissIsAnsweredWhenTheLoadLandsThroughTheWriterItKept() {
        XCTAssertEqual(send(request("GET", "/api/get?key=Tom")), .deferred)
        XCTAssertEqual(writer.bytes.count, 0, "nothing is written before the load lands")
        // Another request on the same connection meanwhile reuses the scratch; the deferred answer must not care.
        store("Sam", "567")
        XCTAssertEqual(get("/api/get?key=Sam").body, "value=567\n")
        loader.complete("Tom", with: .value(Array("630".utf8)))
        XCTAssertEqual(finishedDeferred, 1)
        let r = takeResponse()
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.body, "value=630\n")
        XCTAssertEqual(count(.get, 200), 2)
        XCTAssertEqual(get("/api/get?key=Tom").body, "value=630\n", "the loaded value is cached")
        XCTAssertEqual(loader.loadCount, 1)
    }

    func testGetThatLoadsSynchronouslyIsAnsweredAtOnce() {
        loader.synchronous = true
        loader.store["Jack"] = .value(Array("589".utf8))
        let r = get("/api/get?key=Jack")
        XCTAssertEqual(r.body, "value=589\n")
        XCTAssertEqual(finishedDeferred, 0, "an answer written inside handle is not also finished later")
    }

    func testGetMissAnswers() {
        loader.synchronous = true
        loader.store["slow"] = .failure(.timedOut("origin did not answer within 2s"))
        loader.store["down"] = .failure(.unavailable("origin refused the connection"))
        let cases: [(String, Int, String)] = [
            ("nobody", 404, "key \"nobody\" not found in group \"scores\"\n"),
            ("slow", 504, "origin did not answer within 2s\n"),
            ("down", 502, "origin refused the connection\n"),
        ]
        for (key, status, body) in cases {
            let r = get("/api/get?key=\(key)")
            XCTAssertEqual(r.status, status, key)
            XCTAssertEqual(r.body, body, key)
            XCTAssertEqual(count(.get, status), 1, key)
        }
    }

    func testStaleValueCarriesAWarning() {
        makeGroup(CacheConfig(ttlMillis: 1_000, jitterMillis: 0, staleGraceMillis: 60_000))
        api = APIHandler(settings: APISettings(), clock: clock, group: group, host: host)
        store("Tom", "630")
        clock.advance(byMillis: 2_000)
        XCTAssertEqual(send(request("GET", "/api/get?key=Tom")), .deferred)
        loader.complete("Tom", with: .failure(.unavailable("origin down")))
        let r = takeResponse()
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.body, "value=630\n")
        XCTAssertEqual(r.headers["warning"], "110 - \"Response is Stale\"")
    }

    // MARK: springcache's /api/set and our /api/delete

    func testSetStoresAndAnswersDone() {
        loader.synchronous = true
        let r = answer(form("/api/set", "key=Tom&value=700&expire=2&hot=false"))
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.body, "done\n")
        XCTAssertEqual(get("/api/get?key=Tom").body, "value=700\n")
        clock.advance(byMillis: 2 * 60_000 + 1)
        XCTAssertEqual(get("/api/get?key=Tom").status, 404, "expire=2 keeps the value two minutes")
    }

    func testSetReadsTheQueryWhenTheBodyLacksAField() {
        // Go's FormValue (springcache's): the body first, then the query string.
        XCTAssertEqual(answer(form("/api/set?key=Tom&value=1", "value=2")).status, 200)
        XCTAssertEqual(get("/api/get?key=Tom").body, "value=2\n")
    }

    func testSetParameterErrors() {
        let cases: [(String, String)] = [
            ("value=1", "missing parameter \"key\""),
            ("key=&value=1", "parameter \"key\" must not be empty"),
            ("key=Tom", "missing form field \"value\""),
            ("key=Tom&value=%4", "form field \"value\" has a malformed percent-escape \"%4\""),
            ("key=Tom&value=1&expire=4321", "expire must be whole minutes from 0 to 4320 (3 days; 0 = the default "
                + "TTL), got \"4321\""),
            ("key=Tom&value=1&expire=-1", "expire must be whole minutes from 0 to 4320 (3 days; 0 = the default "
                + "TTL), got \"-1\""),
            ("key=Tom&value=1&hot=yes", "hot must be true, false or empty, got \"yes\""),
        ]
        for (body, message) in cases {
            let r = answer(form("/api/set", body))
            XCTAssertEqual(r.status, 400, body)
            XCTAssertEqual(r.body, message + "\n", body)
        }
        XCTAssertEqual(count(.set, 400), UInt64(cases.count))
        XCTAssertEqual(group.stats.sets, 0)
    }

    func testSetOfAValueThatDoesNotFitIs413() {
        makeGroup(CacheConfig(cacheBytes: 1024, hotBytes: 512, jitterMillis: 0))
        api = APIHandler(settings: APISettings(), clock: clock, group: group, host: host)
        let big = String(repeating: "x", count: 2048)
        let r = answer(form("/api/set", "key=big&value=\(big)"))
        XCTAssertEqual(r.status, 413)
        XCTAssertEqual(r.body, "value of 2048 bytes does not fit in the main cache\n")
        XCTAssertEqual(answer(form("/api/set", "key=big&value=\(big)&hot=true")).body,
                       "value of 2048 bytes does not fit in the hot cache\n")
    }

    func testDeleteAnswersDeletedThenNotCached() {
        store("Tom", "630")
        let r = answer(form("/api/delete", "key=Tom"))
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.body, "deleted\n")
        let again = answer(form("/api/delete", "key=Tom"))
        XCTAssertEqual(again.status, 404)
        XCTAssertEqual(again.body, "key \"Tom\" was not cached\n")
        XCTAssertEqual(answer(form("/api/delete", "")).status, 400)
    }

    func testWritesTheOwnerDidNotTakeAreRefused() {
        let router = CacheTestRouter(defaultOwner: PeerID("b"))
        group.router = router
        router.unreachable["Tom"] = PeerID("b")
        let r = answer(form("/api/set", "key=Tom&value=1"))
        XCTAssertEqual(r.status, 503)
        XCTAssertEqual(r.body, "the owner of this key, node b, is unreachable: nothing was stored; retry once it is "
                       + "back\n")
        let d = answer(request("DELETE", "/v1/cache/scores/Tom"))
        XCTAssertEqual(d.status, 503)
        XCTAssertTrue(d.body.contains("nothing was deleted"), d.body)

        XCTAssertEqual(send(form("/api/set", "key=Sam&value=1")), .deferred)
        router.completeStore("Sam", with: .failed("key is not valid UTF-8"))
        XCTAssertEqual(finishedDeferred, 1)
        let refused = takeResponse()
        XCTAssertEqual(refused.status, 502)
        XCTAssertEqual(refused.body, "the owner of this key refused it: key is not valid UTF-8; nothing was stored\n")
    }

    // MARK: /v1/cache/{group}/{key}

    func testPutThenGetWithValidators() {
        let put = answer(request("PUT", "/v1/cache/scores/a%2Fb?ttl=90", body: "raw\u{1}bytes"))
        XCTAssertEqual(put.status, 204)
        XCTAssertEqual(put.body, "")
        let r = get("/v1/cache/scores/a%2Fb")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.body, "raw\u{1}bytes")
        XCTAssertEqual(r.contentType, "application/octet-stream")
        XCTAssertEqual(r.headers["cache-control"], "max-age=90")
        let etag = try! XCTUnwrap(r.headers["etag"])
        XCTAssertTrue(etag.hasPrefix("\"") && etag.hasSuffix("\"") && etag.count == 18, etag)
        XCTAssertEqual(get("/api/get?key=a%2Fb").body, "value=raw\u{1}bytes\n", "one key, two routes")
        clock.advance(byMillis: 30_500)
        XCTAssertEqual(get("/v1/cache/scores/a%2Fb").headers["cache-control"], "max-age=59")
    }

    func testIfNoneMatch() {
        _ = answer(request("PUT", "/v1/cache/scores/k", body: "v1"))
        let etag = get("/v1/cache/scores/k").headers["etag"]!
        let cases: [(String, Int)] = [
            (etag, 304),
            ("W/\(etag)", 304),
            ("\"0000000000000000\", \(etag)", 304),
            ("*", 304),
            ("\"0000000000000000\"", 200),
            (String(etag.dropLast()), 200),
        ]
        for (header, status) in cases {
            let r = get("/v1/cache/scores/k", headers: ["If-None-Match: \(header)"])
            XCTAssertEqual(r.status, status, header)
            XCTAssertEqual(r.headers["etag"], etag, header)
            XCTAssertEqual(r.body, status == 304 ? "" : "v1", header)
        }
        _ = answer(request("PUT", "/v1/cache/scores/k", body: "v2"))
        XCTAssertEqual(get("/v1/cache/scores/k", headers: ["If-None-Match: \(etag)"]).status, 200,
                       "a new value has a new tag")
    }

    func testIfNoneMatchOnALoadedValueAfterTheRequestBytesAreGone() {
        loader.synchronous = true
        loader.store["k"] = .value(Array("v".utf8))
        let etag = get("/v1/cache/scores/k").headers["etag"]!
        XCTAssertEqual(answer(form("/api/delete", "key=k")).status, 200)
        loader.synchronous = false
        XCTAssertEqual(send(request("GET", "/v1/cache/scores/k", headers: ["If-None-Match: \(etag)"])), .deferred)
        loader.complete("k", with: .value(Array("v".utf8)))
        XCTAssertEqual(takeResponse().status, 304)
    }

    func testV1DeleteAnswers204Then404() {
        _ = answer(request("PUT", "/v1/cache/scores/k", body: "v"))
        XCTAssertEqual(answer(request("DELETE", "/v1/cache/scores/k")).status, 204)
        let r = answer(request("DELETE", "/v1/cache/scores/k"))
        XCTAssertEqual(r.status, 404)
        XCTAssertEqual(r.body, "key \"k\" was not cached\n")
        XCTAssertEqual(count(.v1Delete, 204), 1)
        XCTAssertEqual(count(.v1Delete, 404), 1)
    }

    func testV1PathAndParameterErrors() {
        let cases: [(String, String, Int, String)] = [
            ("GET", "/v1/cache/scores", 404, "expected /v1/cache/{group}/{key}"),
            ("GET", "/v1/cache/other/k", 404, "no such group \"other\""),
            ("GET", "/v1/cache/sc%zzores/k", 400, "the group in the path has a malformed percent-escape"),
            ("GET", "/v1/cache/scores/%2", 400, "the key in the path has a malformed percent-escape"),
            ("GET", "/v1/cache/scores/", 400, "the key in /v1/cache/{group}/{key} must not be empty"),
            ("PUT", "/v1/cache/scores/k?ttl=259201", 400, "ttl must be whole seconds from 0 to 259200 (3 days; 0 = "
                + "the default TTL), got \"259201\""),
            ("PUT", "/v1/cache/scores/k?ttl=", 400, "ttl must be whole seconds from 0 to 259200 (3 days; 0 = the "
                + "default TTL), got \"\""),
            ("PUT", "/v1/cache/scores/k?hot=1", 400, "hot must be true, false or empty, got \"1\""),
            ("DELETE", "/v1/cache/nope/k", 404, "no such group \"nope\""),
        ]
        for (method, target, status, message) in cases {
            let r = answer(request(method, target, body: method == "PUT" ? "v" : nil))
            XCTAssertEqual(r.status, status, "\(method) \(target)")
            XCTAssertEqual(r.body, message + "\n", "\(method) \(target)")
        }
        XCTAssertEqual(count(.v1Put, 400), 3, "counted as the route the method chose")
        XCTAssertEqual(count(.v1Delete, 404), 1)
        XCTAssertEqual(group.stats.sets, 0)
    }

    func testPutToTheHotCache() {
        XCTAssertEqual(answer(request("PUT", "/v1/cache/scores/k?hot=true&ttl=0", body: "v")).status, 204)
        XCTAssertEqual(group.hotItems, 1)
        XCTAssertEqual(group.mainItems, 0)
    }

    // MARK: the route table

    func testWrongMethodIs405WithAllow() {
        let cases: [(String, String, String, APIRoute)] = [
            ("POST", "/api/get?key=Tom", "GET, HEAD", .get),
            ("DELETE", "/api/get", "GET, HEAD", .get),
            ("GET", "/api/set", "POST", .set),
            ("PUT", "/api/delete", "POST", .delete),
            ("POST", "/v1/cache/scores/Tom", "GET, HEAD, PUT, DELETE", .v1Get),
            ("POST", "/healthz", "GET, HEAD", .healthz),
            ("DELETE", "/api/stats", "GET, HEAD", .stats),
            ("PUT", "/metrics", "GET, HEAD", .metrics),
            ("POST", "/api/peers", "GET, HEAD", .peers),
            ("GET", "/setpeer?peer=self", "POST", .setpeer),
            ("OPTIONS", "/api/get", "GET, HEAD", .get),
        ]
        for (method, target, allow, route) in cases {
            let r = answer(request(method, target, body: method == "POST" || method == "PUT" ? "" : nil))
            XCTAssertEqual(r.status, 405, "\(method) \(target)")
            XCTAssertEqual(r.headers["allow"], allow, "\(method) \(target)")
            XCTAssertEqual(r.body, "method not allowed; use \(allow)\n", "\(method) \(target)")
            XCTAssertGreaterThan(count(route, 405), 0, "\(method) \(target) counted as \(route)")
        }
        XCTAssertEqual(count(.v1Get, 405), 1)
        XCTAssertEqual(count(.get, 405), 3)
    }

    func testUnknownPathIs404() {
        for target in ["/", "/nope", "/api", "/api/gets?key=Tom", "/v1/cache", "/api/get/", "/API/GET?key=Tom"] {
            let r = get(target)
            XCTAssertEqual(r.status, 404, target)
            XCTAssertTrue(r.body.hasPrefix("no such route: "), target)
        }
        XCTAssertEqual(count(.other, 404), 7)
    }

    func testHealthz() {
        let r = get("/healthz")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.body, "ok\n")
        XCTAssertEqual(r.contentType, "text/plain; charset=utf-8")
    }

    // MARK: auth

    private func authenticated(_ token: String) {
        api = APIHandler(settings: APISettings(authToken: Array(token.utf8)), clock: clock, group: group, host: host)
    }

    func testMutatingRoutesRequireTheBearerToken() {
        authenticated("s3cret")
        let writes = [
            form("/api/set", "key=Tom&value=1"),
            form("/api/delete", "key=Tom"),
            form("/setpeer", "peer=self"),
            request("PUT", "/v1/cache/scores/Tom", body: "1"),
            request("DELETE", "/v1/cache/scores/Tom"),
        ]
        for raw in writes {
            let r = answer(raw)
            XCTAssertEqual(r.status, 401, raw)
            XCTAssertEqual(r.headers["www-authenticate"], "Bearer", raw)
            XCTAssertEqual(r.body, "this route requires the header \"Authorization: Bearer <token>\"\n")
        }
        XCTAssertEqual(group.stats.sets, 0)
        XCTAssertEqual(host.readmitted, [])
        store("Tom", "630")
        XCTAssertEqual(get("/api/get?key=Tom").status, 200, "reads need no token")
        XCTAssertEqual(get("/v1/cache/scores/Tom").status, 200, "reads need no token")
        XCTAssertEqual(get("/api/stats").status, 200, "reads need no token")
    }

    func testBearerSchemeIsCaseInsensitiveAndTheTokenExact() {
        authenticated("s3cret")
        let cases: [(String, Int)] = [
            ("Bearer s3cret", 200),
            ("BEARER s3cret", 200),
            ("bearer s3cret", 200),
            ("Bearer s3cre", 401),
            ("Bearer s3cret2", 401),
            ("Bearer S3CRET", 401),
            ("Bearer  s3cret", 401),
            ("Basic s3cret", 401),
            ("s3cret", 401),
        ]
        for (header, status) in cases {
            let r = answer(form("/api/set", "key=Tom&value=1", headers: ["Authorization: \(header)"]))
            XCTAssertEqual(r.status, status, header)
        }
        XCTAssertEqual(count(.set, 200), 3)
        XCTAssertEqual(count(.set, 401), 6)
    }

    func testAReplacedTokenTakesEffectAtOnce() {
        authenticated("old")
        api.authToken = Array("new".utf8)
        XCTAssertEqual(answer(form("/api/delete", "key=Tom", headers: ["Authorization: Bearer old"])).status, 401)
        XCTAssertEqual(answer(form("/api/delete", "key=Tom", headers: ["Authorization: Bearer new"])).status, 404)
    }

    // MARK: /setpeer, /api/peers, /api/stats, /metrics

    func testSetPeerReadmitsAKnownMember() {
        host.members = ["self", "b"]
        let r = answer(form("/setpeer", "peer=b"))
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.body, "set peer b successful\n")
        XCTAssertEqual(r.contentType, "application/octet-stream")
        XCTAssertEqual(host.readmitted, ["b"])
    }

    func testSetPeerOfAnUnknownNameWithoutEtcdIs404() {
        let r = answer(form("/setpeer", "peer=zed"))
        XCTAssertEqual(r.status, 404)
        XCTAssertEqual(r.body, "no member named \"zed\"\n")
        XCTAssertEqual(answer(form("/setpeer", "name=zed")).status, 400)
    }

    func testSetPeerLooksAnUnknownNameUpAndAnswersLater() {
        host.resolvesPeers = true
        XCTAssertEqual(send(form("/setpeer", "peer=c")), .deferred)
        XCTAssertEqual(send(form("/setpeer", "peer=d")), .deferred)
        XCTAssertEqual(host.pendingResolves.map(\.name), ["c", "d"])
        host.completeResolve(found: true)
        XCTAssertEqual(takeResponse().body, "set peer c successful\n")
        host.completeResolve(found: false)
        let r = takeResponse()
        XCTAssertEqual(r.status, 404)
        XCTAssertEqual(r.body, "no member named \"d\", here or in etcd\n")
        XCTAssertEqual(finishedDeferred, 2)
        XCTAssertEqual(count(.setpeer, 200), 1)
        XCTAssertEqual(count(.setpeer, 404), 1)
    }

    func testReportsComeFromTheHostWithTheAPIsCounters() {
        store("Tom", "630")
        _ = get("/api/get?key=Tom")
        _ = get("/nope")
        let stats = get("/api/stats")
        XCTAssertEqual(stats.status, 200)
        XCTAssertEqual(stats.contentType, "application/json")
        XCTAssertEqual(stats.body, "{\"requests\":2}")
        let metrics = get("/metrics")
        XCTAssertEqual(metrics.contentType, "text/plain; version=0.0.4; charset=utf-8")
        XCTAssertEqual(metrics.body, "test_requests_total 3\n")
        host.members = ["a", "self"]
        let peers = get("/api/peers")
        XCTAssertEqual(peers.contentType, "application/json")
        XCTAssertEqual(peers.body, "{\"members\":[\"a\",\"self\"]}")
        XCTAssertEqual(count(.stats, 200), 1)
        XCTAssertEqual(count(.metrics, 200), 1)
        XCTAssertEqual(count(.peers, 200), 1)
    }

    // MARK: framing and errors the connection reports

    func testAnswersFollowTheConnectionsFraming() {
        store("Tom", "630")
        XCTAssertEqual(answer(request("GET", "/api/get?key=Tom", headers: ["Connection: close"])).headers["connection"],
                       "close")
        let old = answer("GET /api/get?key=Tom HTTP/1.0\r\n\r\n")
        XCTAssertEqual(old.status, 200)
        XCTAssertEqual(old.headers["connection"], "close")
    }

    func testWriteErrorClosesAndIsCounted() {
        api.writeError(status: 408, reason: "request not received in time", into: writer)
        let r = takeResponse()
        XCTAssertEqual(r.status, 408)
        XCTAssertEqual(r.body, "request not received in time\n")
        XCTAssertEqual(r.headers["connection"], "close")
        XCTAssertEqual(count(.other, 408), 1)
    }
}

/// The metrics listener's handler: the node's /metrics page and /healthz, and nothing of the cache.
final class MetricsEndpointTests: XCTestCase {
    private let clock = ManualClock()
    private let output = ResponseBuffer()
    private var endpoint: MetricsEndpoint!
    private var api: APIHandler!

    override func setUp() {
        super.setUp()
        let group = Group(name: "scores", config: CacheConfig(jitterMillis: 0), clock: clock,
                          random: FastRandom(seed: 1), loader: CacheTestLoader())
        api = APIHandler(settings: APISettings(), clock: clock, group: group, host: APITestHost())
        endpoint = MetricsEndpoint(api: api, clock: clock)
    }

    /// Sends one request line and returns the status line, the Allow header (if any) and the body.
    private func send(_ method: String, _ target: String) -> (status: String, allow: String?, body: String) {
        let writer = ResponseWriter(collectingInto: output) { XCTFail("the metrics port never defers") }
        let raw = Array("\(method) \(target) HTTP/1.1\r\nHost: t\r\n\r\n".utf8)
        let handling: HTTPHandling = raw.withUnsafeBytes { b in
            var parser = HTTPParser()
            guard case .request(let head, _, _) = parser.parse(b) else { fatalError("unparsable test request") }
            return endpoint.handle(HTTPRequest(head: head, bytes: b, keepAlive: true, startNanos: 0), writer: writer)
        }
        XCTAssertEqual(handling, .done)
        let text = String(decoding: output.bytes.readable, as: UTF8.self)
        output.bytes.count = 0
        let parts = text.components(separatedBy: "\r\n\r\n")
        let lines = parts[0].components(separatedBy: "\r\n")
        let allow = lines.first { $0.hasPrefix("Allow: ") }.map { String($0.dropFirst(7)) }
        return (lines[0], allow, parts.dropFirst().joined(separator: "\r\n\r\n"))
    }

    func testServesTheNodesMetricsPageAndHealthz() {
        let metrics = send("GET", "/metrics")
        XCTAssertEqual(metrics.status, "HTTP/1.1 200 OK")
        XCTAssertEqual(metrics.body, "test_requests_total 0\n", "the page the API's host writes")
        XCTAssertEqual(send("GET", "/healthz").body, "ok\n")
        XCTAssertEqual(send("HEAD", "/metrics").body, "")
    }

    func testServesNothingElse() {
        let cases: [(String, String, String, String?)] = [
            ("GET", "/api/get?key=Tom", "HTTP/1.1 404 Not Found", nil),
            ("GET", "/api/stats", "HTTP/1.1 404 Not Found", nil),
            ("POST", "/metrics", "HTTP/1.1 405 Method Not Allowed", "GET, HEAD"),
            ("DELETE", "/healthz", "HTTP/1.1 405 Method Not Allowed", "GET, HEAD"),
        ]
        for (method, target, status, allow) in cases {
            let r = send(method, target)
            XCTAssertEqual(r.status, status, "\(method) \(target)")
            XCTAssertEqual(r.allow, allow, "\(method) \(target)")
        }
        XCTAssertEqual(send("GET", "/api/get").body, "the metrics port serves only /metrics and /healthz\n")
        XCTAssertEqual(api.requestStats.totalRequests, 0, "the metrics port's answers are not the API's requests")
    }
}

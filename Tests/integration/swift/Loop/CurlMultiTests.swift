import CLibUV
import Foundation
import XCTest

@testable import SpringCacheUV

/// CurlMulti against a real HTTP server (python3) on a real uv loop.
final class CurlMultiTests: XCTestCase {
    private var server: CurlTestServer!
    private var loop: CurlTestLoop!
    private var multi: CurlMulti?

    override func setUpWithError() throws {
        server = try CurlTestServer()
        loop = CurlTestLoop()
    }

    override func tearDown() {
        // Close whatever a failed test left, and always kill the server.
        if let loop, let multi {
            var closed = false
            multi.close { closed = true }
            loop.run(upTo: 5) { closed }
        }
        multi = nil
        server?.stop()
        server = nil
        loop = nil
    }

    private func makeMulti(_ settings: CurlMulti.Settings = CurlMulti.Settings()) -> CurlMulti {
        let multi = CurlMulti(loop: loop.loop, settings: settings)
        self.multi = multi
        return multi
    }

    /// Closes the multi and checks that the loop then closes cleanly.
    private func finish() {
        XCTAssertEqual(loop.closeAll(multi), 0, "uv_loop_close: a handle was left open")
        multi = nil
    }

    private func fetch(_ multi: CurlMulti, _ request: CurlRequest) -> CurlOutcome? {
        var outcome: CurlOutcome?
        multi.perform(request) { outcome = $0 }
        XCTAssertNil(outcome, "completion ran inside perform")
        loop.run(upTo: 10) { outcome != nil }
        return outcome
    }

    func testStatusAndBodyArePassedThrough() {
        let multi = makeMulti()
        let cases: [(path: String, status: Int, body: String)] = [
            ("/k/Tom", 200, "630"),
            ("/k/missing", 404, "no such key"),
            ("/k/err", 503, "down"),
        ]
        for c in cases {
            let outcome = fetch(multi, CurlRequest(url: server.base + c.path))
            XCTAssertEqual(outcome, .response(status: c.status, body: Array(c.body.utf8)), c.path)
        }
        XCTAssertEqual(multi.inFlight, 0)
        finish()
    }

    func testMethodsAndBodies() {
        let multi = makeMulti()
        let big = String(repeating: "b", count: 5000)  // over 1 KiB: must not wait for 100-continue
        let cases: [(CurlMethod, String?, String)] = [
            (.get, nil, "GET "),
            (.post, "hello", "POST hello"),
            (.post, nil, "POST "),
            (.post, big, "POST " + big),
            (.put, "v", "PUT v"),
            (.delete, nil, "DELETE "),
        ]
        for (method, body, expected) in cases {
            let started = Date()
            let outcome = fetch(multi, CurlRequest(url: server.base + "/method", method: method,
                                                   body: body.map { Array($0.utf8) },
                                                   headers: ["Content-Type: text/plain"]))
            XCTAssertEqual(outcome, .response(status: 200, body: Array(expected.utf8)), "\(method)")
            XCTAssertLessThan(Date().timeIntervalSince(started), 0.9, "\(method) waited (Expect: 100-continue?)")
        }
        finish()
    }

    func testTimeoutFailsWithTimedOutInTime() {
        let multi = makeMulti()
        let started = Date()
        let outcome = fetch(multi, CurlRequest(url: server.base + "/k/slow", timeoutMillis: 500))
        let elapsed = Date().timeIntervalSince(started)
        guard case .failed(let failure) = outcome else {
            return XCTFail("expected a failure, got \(String(describing: outcome))")
        }
        XCTAssertEqual(failure.kind, .timedOut)
        XCTAssertGreaterThanOrEqual(elapsed, 0.45)
        XCTAssertLessThan(elapsed, 1.5)
        finish()
    }

    func testConnectionRefusedIsConnectFailed() {
        let multi = makeMulti()
        let port = CurlTestServer.closedPort()
        let outcome = fetch(multi, CurlRequest(url: "http://127.0.0.1:\(port)/k/Tom"))
        guard case .failed(let failure) = outcome else {
            return XCTFail("expected a failure, got \(String(describing: outcome))")
        }
        XCTAssertEqual(failure.kind, .connectFailed)
        XCTAssertTrue(failure.message.contains("\(port)"), failure.message)
        finish()
    }

    func testUnsupportedSchemeFailsFromTheLoop() {
        let multi = makeMulti()
        let outcome = fetch(multi, CurlRequest(url: "file:///etc/passwd"))
        guard case .failed(let failure) = outcome else {
            return XCTFail("expected a failure, got \(String(describing: outcome))")
        }
        XCTAssertEqual(failure.kind, .other)
        finish()
    }

    func testThreeHundredConcurrentTransfers() {
        var settings = CurlMulti.Settings()
        settings.maxHostConnections = 64  // fewer than the transfers: curl must queue the rest
        let multi = makeMulti(settings)
        let count = 300
        var results = [CurlOutcome?](repeating: nil, count: count)
        var completions = 0
        for i in 0..<count {
            multi.perform(CurlRequest(url: server.base + "/n/\(i)", timeoutMillis: 20_000)) { outcome in
                results[i] = outcome
                completions += 1
            }
        }
        XCTAssertEqual(multi.inFlight, count)
        XCTAssertTrue(loop.run(upTo: 30) { completions == count }, "only \(completions) of \(count) completed")
        for i in 0..<count {
            XCTAssertEqual(results[i], .response(status: 200, body: Array("\(i)".utf8)), "transfer \(i)")
        }
        XCTAssertEqual(completions, count)
        XCTAssertEqual(multi.inFlight, 0)
        finish()
    }

    func testStreamingDeliversChunksInOrderBeforeCompletion() {
        let multi = makeMulti()
        var chunks: [[UInt8]] = []
        var outcome: CurlOutcome?
        var chunksWhenCompleted = -1
        multi.perform(CurlRequest(url: server.base + "/stream", method: .post, body: Array("zero".utf8),
                                  timeoutMillis: 0),
                      onData: { chunk in
                          XCTAssertNil(outcome, "data after completion")
                          chunks.append(chunk)
                      },
                      completion: { result in
                          outcome = result
                          chunksWhenCompleted = chunks.count
                      })
        XCTAssertTrue(loop.run(upTo: 10) { outcome != nil })
        XCTAssertEqual(outcome, .response(status: 200, body: []))
        XCTAssertEqual(String(decoding: chunks.joined(), as: UTF8.self), "zeroonetwothree")
        // The server pauses 200 ms between chunks, so they arrive (and are delivered) one by one.
        XCTAssertGreaterThanOrEqual(chunks.count, 3, "chunks were not delivered as they arrived")
        XCTAssertEqual(chunksWhenCompleted, chunks.count)
        finish()
    }

    func testCancelledTransferNeverCompletes() {
        let multi = makeMulti()
        var slowCompleted = false
        var fastOutcome: CurlOutcome?
        let slow = multi.perform(CurlRequest(url: server.base + "/k/slow")) { _ in slowCompleted = true }
        multi.perform(CurlRequest(url: server.base + "/k/Tom")) { fastOutcome = $0 }
        // Cancel the slow one from the fast one's completion (a user callback, as callers will).
        XCTAssertTrue(loop.run(upTo: 5) { fastOutcome != nil })
        XCTAssertEqual(multi.inFlight, 1)
        XCTAssertTrue(multi.cancel(slow))
        XCTAssertFalse(multi.cancel(slow), "a second cancel finds nothing")
        XCTAssertEqual(multi.inFlight, 0)
        // Wait past the server's 3 s reply: the cancelled transfer must stay silent.
        var waited = false
        loop.after(millis: 3500) { waited = true }
        loop.run(upTo: 6) { waited }
        XCTAssertFalse(slowCompleted)
        finish()
    }

    func testCancelStreamFromItsOwnOnData() {
        let multi = makeMulti()
        var chunks = 0
        var completed = false
        var handle: CurlTransferHandle?
        handle = multi.perform(CurlRequest(url: server.base + "/stream", method: .post, timeoutMillis: 0),
                               onData: { _ in
                                   chunks += 1
                                   XCTAssertTrue(multi.cancel(handle!))
                               },
                               completion: { _ in completed = true })
        XCTAssertTrue(loop.run(upTo: 5) { chunks > 0 })
        var waited = false
        loop.after(millis: 1000) { waited = true }
        loop.run(upTo: 3) { waited }
        XCTAssertEqual(chunks, 1)
        XCTAssertFalse(completed)
        XCTAssertEqual(multi.inFlight, 0)
        finish()
    }

    func testResponseSizeBound() {
        var settings = CurlMulti.Settings()
        settings.maxResponseBytes = 1000
        let multi = makeMulti(settings)
        XCTAssertEqual(fetch(multi, CurlRequest(url: server.base + "/big/1000")),
                       .response(status: 200, body: [UInt8](repeating: UInt8(ascii: "x"), count: 1000)))
        let outcome = fetch(multi, CurlRequest(url: server.base + "/big/100000"))
        guard case .failed(let failure) = outcome else {
            return XCTFail("expected a failure, got \(String(describing: outcome))")
        }
        XCTAssertEqual(failure.kind, .responseTooLarge)
        XCTAssertTrue(failure.message.contains("1000 bytes"), failure.message)
        finish()
    }

    func testDefaultResponseBoundAbortsOversizedValue() {
        let multi = makeMulti()
        let outcome = fetch(multi, CurlRequest(url: server.base + "/big/\(3 << 20)"))
        guard case .failed(let failure) = outcome else {
            return XCTFail("expected a failure, got \(String(describing: outcome))")
        }
        XCTAssertEqual(failure.kind, .responseTooLarge)
        finish()
    }

    func testCloseCancelsEverythingAndClosesAllHandles() {
        let multi = makeMulti()
        var completions = 0
        for _ in 0..<20 {
            multi.perform(CurlRequest(url: server.base + "/k/slow")) { _ in completions += 1 }
        }
        multi.perform(CurlRequest(url: server.base + "/stream", timeoutMillis: 0), onData: { _ in }) { _ in
            completions += 1
        }
        // Let them connect, so poll handles are live when close comes.
        var waited = false
        loop.after(millis: 300) { waited = true }
        loop.run(upTo: 3) { waited }
        XCTAssertEqual(multi.inFlight, 21)
        var closed = false
        multi.close { closed = true }
        XCTAssertEqual(multi.inFlight, 0)
        // perform after close starts nothing and never completes.
        multi.perform(CurlRequest(url: server.base + "/k/Tom")) { _ in completions += 1 }
        XCTAssertTrue(loop.run(upTo: 5) { closed })
        XCTAssertEqual(completions, 0)
        var closedAgain = false
        multi.close { closedAgain = true }
        XCTAssertTrue(closedAgain)
        finish()
    }

    func testCloseFromACompletion() {
        let multi = makeMulti()
        var closed = false
        var outcomes = 0
        for _ in 0..<3 {
            multi.perform(CurlRequest(url: server.base + "/k/Tom")) { _ in
                outcomes += 1
                multi.close { closed = true }
            }
        }
        XCTAssertTrue(loop.run(upTo: 5) { closed })
        XCTAssertEqual(outcomes, 1, "transfers cancelled by close must not complete")
        finish()
    }

    func testFDReuseAcrossManySequentialConnections() {
        // Each request on a fresh connection (Connection: close) makes curl REMOVE a socket and then open a
        // new one, usually with the same fd number, before the old poll handle's close callback has run.
        let multi = makeMulti()
        var remaining = 50
        var failures: [CurlOutcome] = []
        func next() {
            multi.perform(CurlRequest(url: server.base + "/k/Tom", headers: ["Connection: close"])) { outcome in
                if outcome != .response(status: 200, body: Array("630".utf8)) { failures.append(outcome) }
                remaining -= 1
                if remaining > 0 { next() }
            }
        }
        next()
        XCTAssertTrue(loop.run(upTo: 20) { remaining == 0 })
        XCTAssertEqual(failures, [])
        finish()
    }
}

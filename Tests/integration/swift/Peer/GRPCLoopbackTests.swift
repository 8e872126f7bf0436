import Foundation
import XCTest

@testable import SpringCacheUV

/// Our client against our server, on one real loop.
final class GRPCLoopbackTests: XCTestCase {
    static let getPath = "/springcachepb.SpringCache/Get"

    private var loop: GRPCTestLoop!
    private var handler: GRPCTestHandler!
    private var server: GRPCServer!
    private var client: GRPCClient!

    override func setUpWithError() throws {
        loop = try GRPCTestLoop()
        handler = GRPCTestHandler(loop: loop)
        server = GRPCServer(loop: loop.loop, handler: handler)
        try server.start(address: HostPort(host: "127.0.0.1", port: 0))
        client = GRPCClient(loop: loop.loop, target: HostPort(host: "127.0.0.1", port: server.boundPort))
    }

    override func tearDown() {
        client?.close()
        var closed = server == nil
        server?.close { closed = true }
        if let loop {
            XCTAssertTrue(loop.run(upTo: 5) { closed }, "server did not close")
            XCTAssertEqual(loop.finish(), 0, "uv_loop_close: handles left open")
        }
        client = nil
        server = nil
        handler = nil
        loop = nil
    }

    /// Starts one call and runs the loop until it completes.
    private func call(_ message: [UInt8], timeoutMillis: Int = 2000, metadata: [(String, String)] = [],
                      upTo seconds: Double = 10) -> GRPCResult? {
        var result: GRPCResult?
        client.unary(path: Self.getPath, message: message, timeoutMillis: timeoutMillis, metadata: metadata) {
            result = $0
        }
        XCTAssertNil(result, "completion ran inside unary")
        loop.run(upTo: seconds) { result != nil }
        return result
    }

    func testEchoRoundTrip() throws {
        let result = call(Array("hello".utf8), metadata: [("Authorization", "Bearer s3cret")])
        XCTAssertEqual(try result?.get(), Array("hello".utf8))
        XCTAssertEqual(handler.paths, [Self.getPath])
        XCTAssertEqual(handler.authorizations, ["Bearer s3cret"])
        // A second call reuses the connection.
        XCTAssertEqual(try call([]).flatMap { try $0.get() }, [])
        XCTAssertEqual(client.stats.connections, 1)
        XCTAssertEqual(client.stats.succeeded, 2)
        XCTAssertEqual(server.stats.calls, 2)
        XCTAssertEqual(server.stats.answers[0], 2)
    }

    func testOneMebibyteMessage() throws {
        var message = [UInt8](repeating: 0, count: 1 << 20)
        for i in message.indices { message[i] = UInt8(truncatingIfNeeded: i &* 31 &+ i >> 11) }
        let result = call(message, timeoutMillis: 5000)
        XCTAssertEqual(try result?.get(), message)
    }

    func testFiveHundredConcurrentCallsOnOneConnection() throws {
        let n = 500
        var results = [GRPCResult?](repeating: nil, count: n)
        var done = 0
        let start = Date()
        for i in 0..<n {
            let message = Array("req-\(i)".utf8) + [UInt8](repeating: UInt8(i & 0xFF), count: i)
            client.unary(path: Self.getPath, message: message, timeoutMillis: 10_000) {
                results[i] = $0
                done += 1
            }
        }
        XCTAssertTrue(loop.run(upTo: 20) { done == n })
        let elapsed = Date().timeIntervalSince(start)
        for i in 0..<n {
            XCTAssertEqual(try results[i]?.get(), Array("req-\(i)".utf8) + [UInt8](repeating: UInt8(i & 0xFF), count: i))
        }
        XCTAssertEqual(client.stats.connections, 1)
        XCTAssertEqual(server.stats.connectionsAccepted, 1)
        print("500 concurrent unary calls on one connection: \(Int(elapsed * 1000)) ms "
              + "(\(Int(Double(n) / elapsed)) calls/s)")
    }

    func testCallsMadeInOneLoopIterationLeaveInOneWrite() throws {
        XCTAssertEqual(try call(Array("warm".utf8)).flatMap { try $0.get() }, Array("warm".utf8))
        let before = client.outputBatches
        let n = 50
        var done = 0
        for i in 0..<n {
            client.unary(path: Self.getPath, message: Array("c\(i)".utf8), timeoutMillis: 10_000) { result in
                XCTAssertEqual(try? result.get(), Array("c\(i)".utf8))
                done += 1
            }
        }
        XCTAssertEqual(client.outputBatches, before, "nothing is written inside unary")
        XCTAssertTrue(loop.run(upTo: 20) { done == n })
        // One write for the 50 requests (a flush per call would make 50); at most one more for HTTP/2's own
        // housekeeping (a WINDOW_UPDATE or an ACK).
        XCTAssertLessThanOrEqual(client.outputBatches - before, 2)
        XCTAssertEqual(client.stats.connections, 1)
    }

    func testHandlerAnsweringLater() throws {
        let result = call(Array("later:150".utf8))
        XCTAssertEqual(try result?.get(), Array("later:150".utf8))
    }

    func testNotFoundWithPercentEncodedMessage() {
        let result = call(Array("notfound".utf8))
        guard case .failure(let error)? = result else { return XCTFail("expected failure, got \(String(describing: result))") }
        XCTAssertEqual(error.status, .notFound)
        XCTAssertEqual(error.message, GRPCTestHandler.notFoundMessage)
        XCTAssertEqual(server.stats.answers[GRPCStatus.notFound.rawValue], 1)
    }

    func testDeadlineWhenHandlerNeverAnswers() {
        let start = loop.nowMillis
        let result = call(Array("never".utf8), timeoutMillis: 300)
        let elapsed = loop.nowMillis - start
        guard case .failure(let error)? = result else { return XCTFail("expected failure") }
        XCTAssertEqual(error.status, .deadlineExceeded)
        XCTAssertGreaterThanOrEqual(elapsed, 290)
        XCTAssertLessThan(elapsed, 300 + 250, "deadline enforced late")
        // The server saw the deadline too (its own timer or the client's RST_STREAM): the call is cancelled.
        XCTAssertTrue(loop.run(upTo: 2) { self.handler.neverAnswered.first?.isCancelled == true })
        XCTAssertEqual(handler.neverAnswered.count, 1)
        // A late answer is dropped without harm, and the connection still serves.
        handler.neverAnswered.first?.respond(message: [1])
        XCTAssertEqual(try call(Array("after".utf8))?.get(), Array("after".utf8))
    }

    func testConnectionRefusedAndBackoff() throws {
        // A port with nothing listening: bind one, note it, close it.
        let probe = try TCPListener(loop: loop.loop, address: HostPort(host: "127.0.0.1", port: 0), reusePort: false,
                                    backlog: 1) { _ in }
        let deadPort = probe.boundPort
        probe.close()
        var settings = GRPCClientSettings()
        settings.initialBackoffMillis = 300
        let dead = GRPCClient(loop: loop.loop, target: HostPort(host: "127.0.0.1", port: deadPort), settings: settings)
        defer { dead.close() }
        var first: GRPCResult?
        let start = loop.nowMillis
        dead.unary(path: Self.getPath, message: [1], timeoutMillis: 2000) { first = $0 }
        XCTAssertTrue(loop.run(upTo: 2) { first != nil })
        guard case .failure(let e1)? = first else { return XCTFail("expected failure") }
        XCTAssertEqual(e1.status, .unavailable)
        XCTAssertLessThan(loop.nowMillis - start, 500, "refusal should be quick")
        // During backoff: fails fast without a connect attempt.
        var second: GRPCResult?
        dead.unary(path: Self.getPath, message: [1], timeoutMillis: 2000) { second = $0 }
        XCTAssertTrue(loop.run(upTo: 1) { second != nil })
        guard case .failure(let e2)? = second else { return XCTFail("expected failure") }
        XCTAssertEqual(e2.status, .unavailable)
        XCTAssertTrue(e2.message.contains("unreachable; retrying in"), e2.message)
        XCTAssertEqual(dead.stats.connectAttempts, 1)
        // After the backoff a new attempt is made (and fails again; the backoff doubles).
        loop.run(upTo: 0.4) { false }
        var third: GRPCResult?
        dead.unary(path: Self.getPath, message: [1], timeoutMillis: 2000) { third = $0 }
        XCTAssertTrue(loop.run(upTo: 2) { third != nil })
        XCTAssertEqual(dead.stats.connectAttempts, 2)
        guard case .failure(let e3)? = third else { return XCTFail("expected failure") }
        XCTAssertTrue(e3.message.contains("retrying in 600 ms"), e3.message)
    }

    func testServerCloseFailsInFlightCalls() throws {
        // One call that will never be answered is in flight when the server closes: the client's call fails
        // UNAVAILABLE at once (GOAWAY, then the connection closes after the grace period).
        var settings = GRPCServerSettings()
        settings.shutdownGraceMillis = 100
        let other = GRPCServer(loop: loop.loop, settings: settings, handler: handler)
        try other.start(address: HostPort(host: "127.0.0.1", port: 0))
        let c = GRPCClient(loop: loop.loop, target: HostPort(host: "127.0.0.1", port: other.boundPort))
        defer { c.close() }
        var result: GRPCResult?
        c.unary(path: Self.getPath, message: Array("never".utf8), timeoutMillis: 5000) { result = $0 }
        XCTAssertTrue(loop.run(upTo: 2) { self.handler.neverAnswered.count == 1 })
        var closed = false
        other.close { closed = true }
        let start = loop.nowMillis
        XCTAssertTrue(loop.run(upTo: 3) { closed && result != nil })
        XCTAssertLessThan(loop.nowMillis - start, 1000)
        guard case .failure(let error)? = result else { return XCTFail("expected failure") }
        XCTAssertEqual(error.status, .unavailable, error.message)
        XCTAssertTrue(handler.neverAnswered[0].isCancelled)
    }

    func testCloseCancelsInFlightCalls() {
        var result: GRPCResult?
        client.unary(path: Self.getPath, message: Array("never".utf8), timeoutMillis: 5000) { result = $0 }
        XCTAssertTrue(loop.run(upTo: 2) { self.handler.neverAnswered.count == 1 })
        client.close()
        XCTAssertNil(result, "completion ran inside close")
        XCTAssertTrue(loop.run(upTo: 1) { result != nil })
        guard case .failure(let error)? = result else { return XCTFail("expected failure") }
        XCTAssertEqual(error.status, .cancelled)
        // And the server sees the stream go away.
        XCTAssertTrue(loop.run(upTo: 2) { self.handler.neverAnswered[0].isCancelled })
        var late: GRPCResult?
        client.unary(path: Self.getPath, message: [1], timeoutMillis: 100) { late = $0 }
        XCTAssertNil(late)
        XCTAssertTrue(loop.run(upTo: 1) { late != nil })
    }

    func testResponseOverClientLimitIsResourceExhausted() {
        var settings = GRPCClientSettings()
        settings.maxMessageBytes = 1000
        let small = GRPCClient(loop: loop.loop, target: HostPort(host: "127.0.0.1", port: server.boundPort),
                               settings: settings)
        defer { small.close() }
        var ok: GRPCResult?
        small.unary(path: Self.getPath, message: Array("big:1000".utf8), timeoutMillis: 2000) { ok = $0 }
        XCTAssertTrue(loop.run(upTo: 2) { ok != nil })
        XCTAssertEqual(try ok?.get().count, 1000)
        var big: GRPCResult?
        small.unary(path: Self.getPath, message: Array("big:1001".utf8), timeoutMillis: 2000) { big = $0 }
        XCTAssertTrue(loop.run(upTo: 2) { big != nil })
        guard case .failure(let error)? = big else { return XCTFail("expected failure") }
        XCTAssertEqual(error.status, .resourceExhausted)
        // A request over the limit is refused before it is sent.
        var request: GRPCResult?
        small.unary(path: Self.getPath, message: [UInt8](repeating: 1, count: 1001), timeoutMillis: 2000) { request = $0 }
        XCTAssertTrue(loop.run(upTo: 2) { request != nil })
        guard case .failure(let e2)? = request else { return XCTFail("expected failure") }
        XCTAssertEqual(e2.status, .resourceExhausted)
        // The connection is still good.
        var again: GRPCResult?
        small.unary(path: Self.getPath, message: [1, 2], timeoutMillis: 2000) { again = $0 }
        XCTAssertTrue(loop.run(upTo: 2) { again != nil })
        XCTAssertEqual(try again?.get(), [1, 2])
    }

    func testConnectionsOverTheLimitAreClosed() throws {
        var settings = GRPCServerSettings()
        settings.maxConnections = 1
        let limited = GRPCServer(loop: loop.loop, settings: settings, handler: handler)
        try limited.start(address: HostPort(host: "127.0.0.1", port: 0))
        let target = HostPort(host: "127.0.0.1", port: limited.boundPort)
        let first = GRPCClient(loop: loop.loop, target: target)
        let second = GRPCClient(loop: loop.loop, target: target)
        defer {
            first.close()
            second.close()
            var closed = false
            limited.close { closed = true }
            XCTAssertTrue(loop.run(upTo: 3) { closed })
        }
        var r1: GRPCResult?
        first.unary(path: Self.getPath, message: [1], timeoutMillis: 2000) { r1 = $0 }
        XCTAssertTrue(loop.run(upTo: 2) { r1 != nil })
        XCTAssertEqual(try r1?.get(), [1])
        var r2: GRPCResult?
        second.unary(path: Self.getPath, message: [2], timeoutMillis: 2000) { r2 = $0 }
        XCTAssertTrue(loop.run(upTo: 2) { r2 != nil })
        guard case .failure(let error)? = r2 else { return XCTFail("expected failure") }
        XCTAssertEqual(error.status, .unavailable, error.message)
        XCTAssertEqual(limited.stats.connectionsRejected, 1)
        // Dropped before the handshake: counted as a failed attempt, so the next call backs off.
        var r3: GRPCResult?
        second.unary(path: Self.getPath, message: [3], timeoutMillis: 2000) { r3 = $0 }
        XCTAssertTrue(loop.run(upTo: 2) { r3 != nil })
        guard case .failure(let e3)? = r3 else { return XCTFail("expected failure") }
        XCTAssertTrue(e3.message.contains("unreachable; retrying in"), e3.message)
        XCTAssertEqual(second.stats.connectAttempts, 1)
    }
}

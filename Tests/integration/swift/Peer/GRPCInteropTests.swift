import Foundation
import XCTest

@testable import SpringCacheUV

/// Python grpcio (generic handlers and raw-bytes channels, no generated stubs) against our server, and our
/// client against a Python grpcio server.
final class GRPCInteropTests: XCTestCase {
    static let getPath = "/springcachepb.SpringCache/Get"

    private var loop: GRPCTestLoop!
    private var handler: GRPCTestHandler!
    private var server: GRPCServer?
    private var client: GRPCClient?
    private var pythonServers: [PythonGRPCServer] = []

    override func setUpWithError() throws {
        loop = try GRPCTestLoop()
        handler = GRPCTestHandler(loop: loop)
    }

    override func tearDown() {
        for p in pythonServers { p.kill() }
        pythonServers = []
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

    private func startServer() throws -> Int {
        let s = GRPCServer(loop: loop.loop, handler: handler)
        try s.start(address: HostPort(host: "127.0.0.1", port: 0))
        server = s
        return s.boundPort
    }

    private func startPython(port: Int = 0) throws -> PythonGRPCServer {
        let p = try PythonGRPCServer(port: port)
        pythonServers.append(p)
        return p
    }

    private func call(_ c: GRPCClient, _ message: [UInt8], timeoutMillis: Int = 3000) -> GRPCResult? {
        var result: GRPCResult?
        c.unary(path: Self.getPath, message: message, timeoutMillis: timeoutMillis) { result = $0 }
        loop.run(upTo: Double(timeoutMillis) / 1000 + 5) { result != nil }
        return result
    }

    // MARK: Python client → our server

    func testPythonClientUnary() throws {
        let port = try startServer()
        let out = try runPythonClient(loop, port: port, ["unary"])
        XCTAssertEqual(out["ok"] as? String, "hello from python")
        XCTAssertEqual(handler.paths, [Self.getPath])
    }

    func testPythonClientSeesNotFoundWithDetails() throws {
        let port = try startServer()
        let out = try runPythonClient(loop, port: port, ["notfound"])
        XCTAssertEqual(out["code"] as? String, "NOT_FOUND")
        XCTAssertEqual(out["details"] as? String, GRPCTestHandler.notFoundMessage)
    }

    func testPythonClientFiveHundredConcurrentCalls() throws {
        let port = try startServer()
        let out = try runPythonClient(loop, port: port, ["concurrent", "500"])
        XCTAssertEqual(out["good"] as? Int, 500)
        XCTAssertEqual(server?.stats.connectionsAccepted, 1, "one channel, one connection")
        XCTAssertEqual(server?.stats.calls, 500)
        if let elapsed = out["elapsed"] as? Double { print("python: 500 concurrent calls in \(Int(elapsed * 1000)) ms") }
    }

    func testPythonClientTimeoutIsHonoured() throws {
        let port = try startServer()
        let out = try runPythonClient(loop, port: port, ["timeout"])
        XCTAssertEqual(out["code"] as? String, "DEADLINE_EXCEEDED")
        XCTAssertLessThan(out["elapsed"] as? Double ?? 99, 1.5)
        // The server received grpc-timeout and dropped the call (its timer or the client's RST_STREAM).
        XCTAssertTrue(loop.run(upTo: 2) { self.handler.neverAnswered.first?.isCancelled == true })
        XCTAssertNotNil(handler.neverAnswered.first?.deadlineMillis)
    }

    func testGarbageIsClosedAndServerKeepsServing() throws {
        let port = try startServer()
        let out = try runPythonClient(loop, port: port, ["garbage"])
        XCTAssertEqual(out["garbage"] as? [String], ["closed", "closed", "closed"])
        XCTAssertEqual((out["after"] as? [String: Any])?["ok"] as? String, "still serving")
        XCTAssertGreaterThanOrEqual(server?.stats.protocolErrors ?? 0, 3)
        XCTAssertTrue(loop.run(upTo: 2) { self.server?.openConnections == 0 })
    }

    /// Runs nghttp (nghttp2-client, a second HTTP/2 implementation that is not ours) with a raw request
    /// body and returns its verbose output (frames and headers, trailers included).
    private func nghttp(port: Int, body: [UInt8], headers: [String]) throws -> String {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/nghttp") else {
            throw XCTSkip("nghttp not installed")
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("grpc-body-\(getpid()).bin")
        try Data(body).write(to: file)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/nghttp")
        p.arguments = ["-v", "-d", file.path] + headers.flatMap { ["-H", $0] }
            + ["http://127.0.0.1:\(port)\(Self.getPath)"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        XCTAssertTrue(loop.run(upTo: 5) { !p.isRunning })
        return String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    private func framed(_ message: String, flag: UInt8 = 0) -> [UInt8] {
        let m = Array(message.utf8)
        return [flag, 0, 0, UInt8(m.count >> 8), UInt8(m.count & 0xFF)] + m
    }

    func testServerDeadlineWithoutClientCancel() throws {
        // nghttp sends grpc-timeout but never cancels on its own: the DEADLINE_EXCEEDED trailers come from
        // our server's deadline timer.
        let port = try startServer()
        let start = loop.nowMillis
        let text = try nghttp(port: port, body: framed("never"),
                              headers: ["content-type: application/grpc", "te: trailers", "grpc-timeout: 200m"])
        XCTAssertTrue(text.contains("grpc-status: 4"), text)
        XCTAssertLessThan(loop.nowMillis - start, 2000)
        XCTAssertEqual(server?.stats.deadlineExceeded, 1)
        XCTAssertEqual(handler.neverAnswered.first?.isCancelled, true)
    }

    func testServerRejectsMalformedRequests() throws {
        let port = try startServer()
        let grpc = ["content-type: application/grpc", "te: trailers"]
        let cases: [(String, [UInt8], [String], [String])] = [
            ("wrong content-type", framed("x"), ["content-type: text/plain", "te: trailers"], [":status: 415"]),
            ("compressed flag without grpc-encoding", framed("x", flag: 1), grpc, [":status: 200", "grpc-status: 13"]),
            ("compressed with unsupported encoding", framed("x", flag: 1), grpc + ["grpc-encoding: gzip"],
             ["grpc-status: 12"]),
            ("two messages on a unary call", framed("a") + framed("b"), grpc, ["grpc-status: 12"]),
            ("no message", [], grpc, ["grpc-status: 12"]),
            ("truncated message", Array(framed("abc").dropLast()), grpc, ["grpc-status: 13"]),
            ("message over the limit", [0, 0x7F, 0xFF, 0xFF, 0xFF, 1, 2, 3], grpc, ["grpc-status: 8"]),
            ("malformed grpc-timeout", framed("x"), grpc + ["grpc-timeout: 123456789m"], ["grpc-status: 13"]),
            ("valid, as a control", framed("ok"), grpc + ["grpc-timeout: 1S"], ["grpc-status: 0"]),
        ]
        for (name, body, headers, expected) in cases {
            let text = try nghttp(port: port, body: body, headers: headers)
            for e in expected { XCTAssertTrue(text.contains(e), "\(name): expected '\(e)' in\n\(text)") }
        }
        XCTAssertEqual(handler.paths, [Self.getPath], "only the valid request reached the handler")
        XCTAssertEqual(server?.stats.calls, 1)
    }

    func testPythonClientMessageOverLimit() throws {
        let port = try startServer()
        let out = try runPythonClient(loop, port: port, ["toolarge"])
        XCTAssertEqual(out["code"] as? String, "RESOURCE_EXHAUSTED", "\(out)")
        XCTAssertEqual((out["after"] as? [String: Any])?["ok"] as? String, "small", "\(out)")
    }

    // MARK: our client → Python server

    func testRoundTripToPythonServer() throws {
        let python = try startPython()
        let c = GRPCClient(loop: loop.loop, target: HostPort(host: "127.0.0.1", port: python.port))
        client = c
        XCTAssertEqual(try call(c, Array("hello python".utf8))?.get(), Array("hello python".utf8))
        let big = [UInt8](repeating: 0xA5, count: 1 << 20)
        XCTAssertEqual(try call(c, big)?.get(), big)
    }

    func testPythonAbortNotFound() throws {
        let python = try startPython()
        let c = GRPCClient(loop: loop.loop, target: HostPort(host: "127.0.0.1", port: python.port))
        client = c
        let result = call(c, Array("notfound".utf8))
        guard case .failure(let error)? = result else { return XCTFail("expected failure, got \(String(describing: result))") }
        XCTAssertEqual(error.status, .notFound)
        XCTAssertEqual(error.message, "no such key: Tom 100%")
    }

    func testPythonSleepingPastOurTimeout() throws {
        let python = try startPython()
        let c = GRPCClient(loop: loop.loop, target: HostPort(host: "127.0.0.1", port: python.port))
        client = c
        _ = call(c, Array("warm-up".utf8))  // connect first, so only the call is timed
        let start = loop.nowMillis
        let result = call(c, Array("sleep:2000".utf8), timeoutMillis: 300)
        guard case .failure(let error)? = result else { return XCTFail("expected failure") }
        XCTAssertEqual(error.status, .deadlineExceeded)
        XCTAssertLessThan(loop.nowMillis - start, 300 + 250)
        // The connection survives the cancelled stream.
        XCTAssertEqual(try call(c, Array("after".utf8))?.get(), Array("after".utf8))
    }

    func testKillingPythonFailsInFlightCallsPromptlyThenReconnects() throws {
        let python = try startPython()
        let port = python.port
        let c = GRPCClient(loop: loop.loop, target: HostPort(host: "127.0.0.1", port: port))
        client = c
        XCTAssertEqual(try call(c, Array("warm-up".utf8))?.get(), Array("warm-up".utf8))
        var results: [GRPCResult] = []
        for _ in 0..<5 {
            c.unary(path: Self.getPath, message: Array("sleep:5000".utf8), timeoutMillis: 10_000) { results.append($0) }
        }
        loop.run(upTo: 0.3) { false }  // the calls are now in flight in Python's handler
        XCTAssertTrue(results.isEmpty)
        let start = loop.nowMillis
        python.kill()
        XCTAssertTrue(loop.run(upTo: 5) { results.count == 5 })
        XCTAssertLessThan(loop.nowMillis - start, 1000, "in-flight calls must fail at once, not at their deadline")
        for r in results {
            guard case .failure(let error) = r else { return XCTFail("expected failure") }
            XCTAssertEqual(error.status, .unavailable, error.message)
        }
        XCTAssertFalse(c.isConnected)

        // Restart on the same port: a later call succeeds after reconnecting (retrying through backoff).
        _ = try startPython(port: port)
        var answer: [UInt8]?
        var attempts = 0
        let until = loop.nowMillis + 8000
        while answer == nil && loop.nowMillis < until {
            attempts += 1
            if case .success(let bytes)? = call(c, Array("back".utf8)) {
                answer = bytes
            } else {
                loop.run(upTo: 0.1) { false }
            }
        }
        XCTAssertEqual(answer, Array("back".utf8), "after \(attempts) attempts")
        XCTAssertEqual(c.stats.reconnects, 1)
    }
}

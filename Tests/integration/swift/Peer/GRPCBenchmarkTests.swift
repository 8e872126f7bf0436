import Foundation
import XCTest

@testable import SpringCacheUV

/// Throughput on one connection; runs only with GRPC_BENCH=1 (numbers, not assertions, are the point).
final class GRPCBenchmarkTests: XCTestCase {
    func testSustainedThroughputOnOneConnection() throws {
        guard ProcessInfo.processInfo.environment["GRPC_BENCH"] == "1" else { throw XCTSkip("set GRPC_BENCH=1") }
        let loop = try GRPCTestLoop()
        let handler = GRPCTestHandler(loop: loop)
        let server = GRPCServer(loop: loop.loop, handler: handler)
        try server.start(address: HostPort(host: "127.0.0.1", port: 0))
        let client = GRPCClient(loop: loop.loop, target: HostPort(host: "127.0.0.1", port: server.boundPort))
        let total = 200_000
        let window = 500
        let message = [UInt8](repeating: 0x61, count: 100)
        var started = 0
        var done = 0
        var failed = 0
        func startOne() {
            started += 1
            client.unary(path: "/springcachepb.SpringCache/Get", message: message, timeoutMillis: 10_000) { result in
                done += 1
                if case .failure = result { failed += 1 }
                if started < total { startOne() }
            }
        }
        let t0 = Date()
        for _ in 0..<window { startOne() }
        XCTAssertTrue(loop.run(upTo: 120) { done == total })
        let elapsed = Date().timeIntervalSince(t0)
        XCTAssertEqual(failed, 0)
        print("ours→ours: \(total) calls, \(window) in flight, 100 B: \(Int(Double(total) / elapsed)) calls/s")

        // h2load (nghttp2-client) as an external load generator against the same server.
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/h2load") {
            let body = FileManager.default.temporaryDirectory.appendingPathComponent("grpc-bench-\(getpid()).bin")
            try Data([0, 0, 0, 0, 100] + message).write(to: body)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/h2load")
            p.arguments = ["-n", "200000", "-c", "1", "-m", "500", "-d", body.path,
                           "-H", "content-type: application/grpc", "-H", "te: trailers",
                           "http://127.0.0.1:\(server.boundPort)/springcachepb.SpringCache/Get"]
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            XCTAssertTrue(loop.run(upTo: 120) { !p.isRunning })
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            for line in text.split(separator: "\n") where line.hasPrefix("finished in") || line.hasPrefix("requests:") {
                print("h2load→ours: \(line)")
            }
        }
        client.close()
        var closed = false
        server.close { closed = true }
        XCTAssertTrue(loop.run(upTo: 5) { closed })
        XCTAssertEqual(loop.finish(), 0)
    }
}

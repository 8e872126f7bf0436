import CLibUV
import Foundation
import XCTest

@testable import SpringCacheUV

/// A real etcd (Debian's etcd 3.4) for tests: one member on 127.0.0.1 with free ports and a temporary data
/// directory. It can be stopped, restarted (same or fresh data dir), paused (SIGSTOP) and resumed; `shutdown`
/// kills it and removes the data directory (call it from tearDown, so it also happens when a test fails).
final class EtcdTestServer {
    let clientPort: Int
    let peerPort: Int
    let dataDir: String
    private var process: Process?
    private var paused = false

    var endpoint: String { "127.0.0.1:\(clientPort)" }
    var url: String { "http://\(endpoint)" }

    init() throws {
        clientPort = try EtcdTestServer.freePort()
        peerPort = try EtcdTestServer.freePort()
        dataDir = NSTemporaryDirectory() + "etcd-test-\(getpid())-\(UUID().uuidString)"
        try start()
    }

    /// Starts etcd and waits until it answers; `fresh` wipes the data directory first (an empty etcd).
    func start(fresh: Bool = false) throws {
        precondition(process == nil, "etcd already running")
        if fresh { try? FileManager.default.removeItem(atPath: dataDir) }
        let p = Process()
        // setpriv execs etcd (same pid) with a parent-death signal, so a crashed test run leaves no etcd behind.
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        let client = "http://127.0.0.1:\(clientPort)", peer = "http://127.0.0.1:\(peerPort)"
        p.arguments = ["--pdeathsig", "KILL", "/usr/bin/etcd", "--data-dir", dataDir, "--listen-client-urls", client, "--advertise-client-urls", client,
                       "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                       "--initial-cluster", "default=\(peer)", "--log-level", "error"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        process = p
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            if !p.isRunning { throw NSError(domain: "etcd exited at start (status \(p.terminationStatus))", code: 1) }
            if isHealthy() { return }
            usleep(100_000)
        }
        throw NSError(domain: "etcd did not become healthy on \(client)", code: 2)
    }

    /// Kills etcd (SIGKILL: a crash, nothing flushed beyond what etcd already synced) and waits for it.
    func stop() {
        guard let p = process else { return }
        if paused { kill(p.processIdentifier, SIGCONT); paused = false }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        process = nil
    }

    func pause() {
        guard let p = process, !paused else { return }
        kill(p.processIdentifier, SIGSTOP)
        paused = true
    }

    func resume() {
        guard let p = process, paused else { return }
        kill(p.processIdentifier, SIGCONT)
        paused = false
    }

    func shutdown() {
        stop()
        try? FileManager.default.removeItem(atPath: dataDir)
    }

    private func isHealthy() -> Bool {
        let out = EtcdTestServer.run("/usr/bin/curl", ["-s", "-m", "1", "\(url)/health"])
        return out.contains("\"health\":\"true\"")
    }

    /// Runs `etcdctl --endpoints ENDPOINT ARGS...` (API v3) and returns its standard output.
    @discardableResult
    func etcdctl(_ args: [String]) -> String {
        EtcdTestServer.run("/usr/bin/etcdctl", ["--endpoints", endpoint, "--command-timeout=3s"] + args,
                           environment: ["ETCDCTL_API": "3"])
    }

    /// Every key and value, as `etcdctl get --prefix ""` prints them (key line, value line).
    func allKeys() -> [String: String] {
        let lines = etcdctl(["get", "--prefix", ""]).split(separator: "\n", omittingEmptySubsequences: false)
        var result: [String: String] = [:]
        var i = 0
        while i + 1 < lines.count {
            result[String(lines[i])] = String(lines[i + 1])
            i += 2
        }
        return result
    }

    static func run(_ path: String, _ args: [String], environment: [String: String] = [:]) -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return "" }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    /// A port nothing listens on right now (bound to 0, read back, released).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw NSError(domain: "socket", code: Int(errno)) }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { p -> Int32 in
                guard bind(fd, p, len) == 0 else { return -1 }
                return getsockname(fd, p, &len)
            }
        }
        guard rc == 0 else { throw NSError(domain: "bind", code: Int(errno)) }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}

/// The shared test loop with a `CurlMulti` for etcd tests: at the end it closes the client and the multi and
/// reports `uv_loop_close`.
final class EtcdTestLoop: TestLoop {
    let curl: CurlMulti

    init() throws {
        let loop = try EventLoop()
        curl = CurlMulti(loop: loop.uv)
        super.init(loop: loop)
    }

    deinit {
        // A failed test left the multi open: close it before the shared loop walks the other handles closed.
        if !isClosed { curl.close() }
    }

    /// Closes the client and the multi, runs until every handle is closed, and returns `uv_loop_close`.
    func closeAll(_ client: EtcdClient?) -> Int32 {
        client?.close()
        var closed = false
        curl.close { closed = true }
        XCTAssertTrue(run(upTo: 5) { closed }, "CurlMulti.close did not complete")
        return finish()
    }
}

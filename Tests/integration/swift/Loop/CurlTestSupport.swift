import CLibUV
import Foundation
import XCTest

@testable import SpringCacheUV

/// A test-owned uv loop: runs until a condition holds (or a deadline passes), and at the end checks that
/// every handle was closed (`uv_loop_close == 0`, libuv's own test habit).
final class CurlTestLoop {
    let loop: UnsafeMutablePointer<uv_loop_t>
    private var isClosed = false

    init() {
        loop = .allocate(capacity: 1)
        precondition(uv_loop_init(loop) == 0)
    }

    deinit {
        if !isClosed {
            // A failed test left handles open: walk them closed so the memory can go.
            uv_walk(loop, { handle, _ in
                if let handle, uv_is_closing(handle) == 0 { uv_close(handle, nil) }
            }, nil)
            uv_run(loop, UV_RUN_DEFAULT)
            uv_loop_close(loop)
        }
        loop.deallocate()
    }

    var now: UInt64 { uv_now(loop) }

    /// Runs the loop until `done()` holds; false if `seconds` passed first (the loop stays usable).
    ///
    /// A prepare handle checks `done()` before each poll and stops the loop, so a condition met in a timer
    /// callback does not leave UV_RUN_ONCE blocked in epoll until the next timer.
    @discardableResult
    func run(upTo seconds: Double, until done: () -> Bool) -> Bool {
        final class Watch {
            let done: () -> Bool
            var expired = false
            init(_ done: @escaping () -> Bool) { self.done = done }
        }
        return withoutActuallyEscaping(done) { done in
            let watch = Watch(done)
            let context = Unmanaged.passUnretained(watch).toOpaque()
            let watchdog = UnsafeMutablePointer<uv_timer_t>.allocate(capacity: 1)
            let prepare = UnsafeMutablePointer<uv_prepare_t>.allocate(capacity: 1)
            uv_timer_init(loop, watchdog)
            uv_prepare_init(loop, prepare)
            sc_uv_handle_set_data(watchdog, context)
            sc_uv_handle_set_data(prepare, context)
            uv_timer_start(watchdog, { timer in
                Unmanaged<Watch>.fromOpaque(sc_uv_handle_get_data(timer)!).takeUnretainedValue().expired = true
            }, UInt64(seconds * 1000), 0)
            uv_prepare_start(prepare) { prepare in
                let watch = Unmanaged<Watch>.fromOpaque(sc_uv_handle_get_data(prepare)!).takeUnretainedValue()
                if watch.expired || watch.done() { uv_stop(prepare!.pointee.loop) }
            }
            while !watch.done() && !watch.expired {
                uv_run(loop, UV_RUN_ONCE)
            }
            uv_timer_stop(watchdog)
            uv_prepare_stop(prepare)
            uv_close(UnsafeMutableRawPointer(watchdog).assumingMemoryBound(to: uv_handle_t.self)) { handle in
                UnsafeMutableRawPointer(handle!).assumingMemoryBound(to: uv_timer_t.self).deallocate()
            }
            uv_close(UnsafeMutableRawPointer(prepare).assumingMemoryBound(to: uv_handle_t.self)) { handle in
                UnsafeMutableRawPointer(handle!).assumingMemoryBound(to: uv_prepare_t.self).deallocate()
            }
            uv_run(loop, UV_RUN_NOWAIT)
            return watch.done()
        }
    }

    /// Calls `body` from a uv timer callback after `millis`.
    func after(millis: UInt64, _ body: @escaping () -> Void) {
        final class Box { let body: () -> Void; init(_ body: @escaping () -> Void) { self.body = body } }
        let timer = UnsafeMutablePointer<uv_timer_t>.allocate(capacity: 1)
        uv_timer_init(loop, timer)
        sc_uv_handle_set_data(timer, Unmanaged.passRetained(Box(body)).toOpaque())
        uv_timer_start(timer, { timer in
            guard let timer else { return }
            Unmanaged<Box>.fromOpaque(sc_uv_handle_get_data(timer)!).takeUnretainedValue().body()
            uv_close(UnsafeMutableRawPointer(timer).assumingMemoryBound(to: uv_handle_t.self)) { handle in
                guard let handle else { return }
                Unmanaged<Box>.fromOpaque(sc_uv_handle_get_data(handle)!).release()
                UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_timer_t.self).deallocate()
            }
        }, millis, 0)
    }

    /// Closes `multi`, runs until all its handles are closed, and returns `uv_loop_close`.
    func closeAll(_ multi: CurlMulti?) -> Int32 {
        if let multi {
            var closed = false
            multi.close { closed = true }
            XCTAssertTrue(run(upTo: 5) { closed }, "CurlMulti.close did not complete")
        }
        uv_run(loop, UV_RUN_DEFAULT)
        let rc = uv_loop_close(loop)
        if rc == 0 { isClosed = true }
        return rc
    }
}

/// A real HTTP origin for tests: python3's ThreadingHTTPServer on 127.0.0.1, port 0.
final class CurlTestServer {
    static let script = #"""
import sys, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
from urllib.parse import unquote_to_bytes

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args): pass

    def reply(self, code, body):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self): self.route(b"")
    def do_PUT(self): self.do_POST()
    def do_DELETE(self): self.route(b"")
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.route(self.rfile.read(n))

    def route(self, body):
        p = self.path
        try:
            if p == "/k/Tom": self.reply(200, b"630")
            elif p == "/k/missing": self.reply(404, b"no such key")
            elif p == "/k/err": self.reply(503, b"down")
            elif p == "/k/slow":
                time.sleep(3)
                self.reply(200, b"late")
            elif p.startswith("/echo/"):
                group, key = p[len("/echo/"):].split("/")
                self.reply(200, b"\n".join([group.encode(), key.encode(),
                                            unquote_to_bytes(group), unquote_to_bytes(key)]))
            elif p.startswith("/n/"): self.reply(200, p[3:].encode())
            elif p.startswith("/big/"): self.reply(200, b"x" * int(p[5:]))
            elif p == "/method": self.reply(200, self.command.encode() + b" " + body)
            elif p == "/stream":
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for chunk in [body, b"one", b"two", b"three"]:
                    if chunk:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                        time.sleep(0.2)
                self.wfile.write(b"0\r\n\r\n")
            else: self.reply(404, b"unknown path")
        except (BrokenPipeError, ConnectionResetError):
            pass

class Server(ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True
    def handle_error(self, request, client_address): pass

server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""#

    let process = Process()
    let port: Int

    init() throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", CurlTestServer.script]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        var line = Data()
        let handle = output.fileHandleForReading
        while !line.contains(UInt8(ascii: "\n")) {
            let data = handle.availableData
            if data.isEmpty { break }
            line.append(data)
        }
        let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let port = Int(text) else {
            process.terminate()
            throw NSError(domain: "CurlTestServer", code: 1,
                          userInfo: [NSLocalizedDescriptionKey: "python3 server did not print a port: \(text)"])
        }
        self.port = port
    }

    var base: String { "http://127.0.0.1:\(port)" }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    deinit { stop() }

    /// A TCP port on 127.0.0.1 with nothing listening (bound, then closed): connections are refused.
    static func closedPort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &addr) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                _ = bind(fd, sa, len)
                _ = getsockname(fd, sa, &len)
            }
        }
        close(fd)
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}

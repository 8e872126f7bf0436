import CLibUV
import Foundation
import XCTest

@testable import SpringCacheUV

/// The gRPC tests' loop is the shared one.
typealias GRPCTestLoop = TestLoop

/// The handler our test servers run. Behaviour is chosen by the request message:
/// `notfound` → NOT_FOUND with a message that needs percent-encoding; `later:N` → echo after N ms;
/// `big:N` → N bytes; `never` → never answered (kept, so tests can see it cancelled); anything else → echo.
final class GRPCTestHandler: GRPCServiceHandler {
    static let notFoundMessage = "no such key: “Tom” 100%\nsecond line"
    let loop: GRPCTestLoop
    var calls: [GRPCServerCall] = []
    var neverAnswered: [GRPCServerCall] = []
    var paths: Set<String> = []
    var authorizations: [String] = []

    init(loop: GRPCTestLoop) { self.loop = loop }

    func handle(_ call: GRPCServerCall) {
        paths.insert(call.path)
        if let a = call.authorization { authorizations.append(a) }
        let text = String(decoding: call.message.prefix(64), as: UTF8.self)
        if text == "notfound" {
            call.fail(status: .notFound, message: GRPCTestHandler.notFoundMessage)
        } else if text.hasPrefix("later:"), let ms = UInt64(text.dropFirst(6)) {
            loop.after(millis: ms) { call.respond(message: call.message) }
        } else if text.hasPrefix("big:"), let n = Int(text.dropFirst(4)) {
            call.respond(message: [UInt8](repeating: 0x42, count: n))
        } else if text == "never" {
            neverAnswered.append(call)
        } else {
            call.respond(message: call.message)
        }
    }
}

/// Python grpcio as the implementation that is not ours: a generic handler / channel with raw bytes,
/// no generated stubs.
enum GRPCPython {
    static let serverScript = #"""
import sys, time, grpc
from concurrent import futures

def get(request, context):
    if request == b"notfound":
        context.abort(grpc.StatusCode.NOT_FOUND, "no such key: Tom 100%")
    if request.startswith(b"sleep:"):
        time.sleep(int(request[6:]) / 1000.0)
    return request

port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
server = grpc.server(futures.ThreadPoolExecutor(max_workers=64),
                     options=[("grpc.max_receive_message_length", 8 << 20),
                              ("grpc.max_send_message_length", 8 << 20),
                              ("grpc.so_reuseport", 0)])
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
    "springcachepb.SpringCache", {"Get": grpc.unary_unary_rpc_method_handler(get)}),))
bound = server.add_insecure_port("127.0.0.1:%d" % port)
server.start()
print(bound, flush=True)
server.wait_for_termination()
"""#

    static let clientScript = #"""
import sys, time, os, socket, json, grpc

port = int(sys.argv[1]); mode = sys.argv[2]
target = "127.0.0.1:%d" % port
channel = grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0),
                                                 ("grpc.max_receive_message_length", 8 << 20)])
get = channel.unary_unary("/springcachepb.SpringCache/Get")
out = {}

def call(payload, timeout=5):
    try:
        return {"ok": get(payload, timeout=timeout).decode("latin-1")}
    except grpc.RpcError as e:
        return {"code": e.code().name, "details": e.details()}

if mode == "unary":
    out = call(b"hello from python")
elif mode == "notfound":
    out = call(b"notfound")
elif mode == "timeout":
    start = time.time()
    out = call(b"never", timeout=0.3)
    out["elapsed"] = time.time() - start
elif mode == "concurrent":
    n = int(sys.argv[3])
    start = time.time()
    fs = [get.future(b"req-%d" % i, timeout=10) for i in range(n)]
    good = sum(1 for i, f in enumerate(fs) if f.result() == b"req-%d" % i)
    out = {"good": good, "elapsed": time.time() - start}
elif mode == "toolarge":
    out = call(b"x" * ((4 << 20) + 10))
    out["after"] = call(b"small")
elif mode == "garbage":
    results = []
    for payload in [os.urandom(4096), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(512)]:
        s = socket.create_connection(("127.0.0.1", port))
        s.settimeout(3)
        try:
            s.sendall(payload)
            while True:
                data = s.recv(65536)
                if not data:
                    results.append("closed")
                    break
        except socket.timeout:
            results.append("open")
        except ConnectionResetError:
            results.append("closed")
        s.close()
    out = {"garbage": results, "after": call(b"still serving")}
print(json.dumps(out), flush=True)
"""#

    static func scriptURL(_ name: String, _ text: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("springcache-\(name)-\(getpid()).py")
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    static func process(_ script: URL, _ args: [String]) -> (Process, Pipe) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", script.path] + args
        var env = ProcessInfo.processInfo.environment
        for key in ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"] {
            env.removeValue(forKey: key)
        }
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        return (p, out)
    }
}

/// A Python grpcio server subprocess; `stop()` kills it (tests call it in tearDown, also on failure).
final class PythonGRPCServer {
    let process: Process
    let port: Int

    init(port: Int = 0) throws {
        let script = try GRPCPython.scriptURL("server", GRPCPython.serverScript)
        let (p, out) = GRPCPython.process(script, [String(port)])
        try p.run()
        process = p
        // The first line is the bound port (blocking read: the loop is not running yet).
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        guard let text = String(data: line, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines),
              let bound = Int(text), bound > 0 else {
            p.terminate()
            throw ConfigError("python grpc server did not start: '\(String(decoding: line, as: UTF8.self))'")
        }
        self.port = bound
    }

    /// SIGKILL: the kernel closes its sockets at once, as when a peer process dies.
    func kill() {
        if process.isRunning {
            Foundation.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

/// Runs the Python client script while the loop serves it; returns its JSON answer.
func runPythonClient(_ loop: GRPCTestLoop, port: Int, _ args: [String], upTo seconds: Double = 30)
    throws -> [String: Any] {
    let script = try GRPCPython.scriptURL("client", GRPCPython.clientScript)
    let (p, out) = GRPCPython.process(script, [String(port)] + args)
    try p.run()
    let finished = loop.run(upTo: seconds) { !p.isRunning }
    if !finished {
        p.terminate()
        throw ConfigError("python client \(args) did not finish in \(seconds) s")
    }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    guard let json = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
        throw ConfigError("python client printed '\(String(decoding: data, as: UTF8.self))'")
    }
    return json
}

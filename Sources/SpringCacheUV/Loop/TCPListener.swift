import CLibUV
#if canImport(Glibc)
import Glibc
#endif

/// A host and port as given on the command line: `HOST:PORT` or `[IPv6]:PORT`.
public struct HostPort: Equatable, CustomStringConvertible, Sendable {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT`; the error names `flag` and says what form is expected.
    public static func parse(_ text: String, flag: String = "address") throws -> HostPort {
        let bad = ConfigError("\(flag) expects HOST:PORT with a port from 0 to 65535 (e.g. 127.0.0.1:9999 or "
                              + "[::1]:9999), got '\(text)'")
        var host: Substring
        var portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw bad }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw bad }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw bad }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else { throw bad }
        return HostPort(host: String(host), port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// A configuration value that does not parse; the message says what is expected.
public struct ConfigError: Error, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}

/// A listening TCP socket on the loop. New connections are accepted into fresh `uv_tcp_t` handles and
/// handed to `onConnection`, which then owns them.
public final class TCPListener {
    private let handle: UnsafeMutablePointer<uv_tcp_t>
    private let loop: EventLoop
    private var onConnection: ((UnsafeMutablePointer<uv_tcp_t>) -> Void)?
    private var closed = false
    public private(set) var boundPort: Int = 0

    /// Binds and listens. With `reusePort`, SO_REUSEPORT is set before bind so several worker
    /// processes share the port and the kernel spreads connections among them.
    public init(loop: EventLoop, address: HostPort, reusePort: Bool, backlog: Int32,
                onConnection: @escaping (UnsafeMutablePointer<uv_tcp_t>) -> Void) throws {
        self.loop = loop
        self.onConnection = onConnection
        handle = .allocate(capacity: 1)
        uv_tcp_init(loop.uv, handle)
        sc_uv_handle_set_data(handle, Unmanaged.passRetained(self).toOpaque())

        do {
            var storage = sockaddr_storage()
            try withUnsafeMutableBytes(of: &storage) { raw in
                let sa = raw.baseAddress!
                if address.host.contains(":") {
                    try UVError.check(uv_ip6_addr(address.host, Int32(address.port),
                                                  sa.assumingMemoryBound(to: sockaddr_in6.self)),
                                      "bad IPv6 address \(address.host)")
                } else {
                    try UVError.check(uv_ip4_addr(address.host, Int32(address.port),
                                                  sa.assumingMemoryBound(to: sockaddr_in.self)),
                                      "bad IPv4 address \(address.host)")
                }
                let fd = sc_bind_socket(sa.assumingMemoryBound(to: sockaddr.self), reusePort ? 1 : 0)
                try UVError.check(fd, "bind \(address)")
                let status = uv_tcp_open(handle, fd)
                if status < 0 {
                    Glibc.close(fd)
                    throw UVError(status, "uv_tcp_open \(address)")
                }
            }
            try UVError.check(uv_listen(stream, backlog) { server, status in
                let listener = Unmanaged<TCPListener>.fromOpaque(sc_uv_handle_get_data(server!)!)
                    .takeUnretainedValue()
                listener.accept(status: status)
            }, "listen \(address)")
            var name = sockaddr_storage()
            var len = Int32(MemoryLayout<sockaddr_storage>.size)
            withUnsafeMutablePointer(to: &name) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                    if uv_tcp_getsockname(handle, sa, &len) == 0 {
                        if sa.pointee.sa_family == sa_family_t(AF_INET6) {
                            sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                                boundPort = Int(UInt16(bigEndian: $0.pointee.sin6_port))
                            }
                        } else {
                            sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                                boundPort = Int(UInt16(bigEndian: $0.pointee.sin_port))
                            }
                        }
                    }
                }
            }
        } catch {
            close()
            throw error
        }
    }

    private var stream: UnsafeMutablePointer<uv_stream_t> {
        UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_stream_t.self)
    }

    private func accept(status: Int32) {
        guard status >= 0, !closed, let onConnection else { return }
        let client = UnsafeMutablePointer<uv_tcp_t>.allocate(capacity: 1)
        uv_tcp_init(loop.uv, client)
        let clientStream = UnsafeMutableRawPointer(client).assumingMemoryBound(to: uv_stream_t.self)
        if uv_accept(stream, clientStream) < 0 {
            uv_close(UnsafeMutableRawPointer(client).assumingMemoryBound(to: uv_handle_t.self)) { h in
                UnsafeMutableRawPointer(h!).assumingMemoryBound(to: uv_tcp_t.self).deallocate()
            }
            return
        }
        onConnection(client)
    }

    /// Stops accepting; the port is released when libuv closes the handle.
    public func close() {
        guard !closed else { return }
        closed = true
        onConnection = nil
        uv_close(UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)) { h in
            Unmanaged<TCPListener>.fromOpaque(sc_uv_handle_get_data(h!)!).release()
        }
    }

    deinit {
        precondition(closed, "TCPListener released without close()")
        handle.deallocate()
    }
}

/// Limits the bytes the kernel holds unsent on a connected TCP handle to about `bytes` (TCP_NOTSENT_LOWAT):
/// past it a write takes no more (at most one more segment), and the rest stays with the caller's write queue.
/// Bytes sent and waiting for the peer's acknowledgement are not counted, so a client that reads keeps its
/// throughput. Returns false if the kernel refused (then its own send-buffer sizing applies).
@discardableResult
func tcpLimitUnsentBytes(_ tcp: UnsafeMutablePointer<uv_tcp_t>, _ bytes: Int) -> Bool {
    var fd: uv_os_fd_t = -1
    guard uv_fileno(UnsafeMutableRawPointer(tcp).assumingMemoryBound(to: uv_handle_t.self), &fd) == 0 else {
        return false
    }
    var value = Int32(clamping: bytes)
    return setsockopt(fd, Int32(IPPROTO_TCP), TCP_NOTSENT_LOWAT, &value, socklen_t(MemoryLayout<Int32>.size)) == 0
}

/// The remote address of a connected TCP handle as `HOST:PORT` (`[HOST]:PORT` for IPv6), or "?" if unknown.
func tcpPeerAddress(_ tcp: UnsafeMutablePointer<uv_tcp_t>) -> String {
    var storage = sockaddr_storage()
    var len = Int32(MemoryLayout<sockaddr_storage>.size)
    return withUnsafeMutablePointer(to: &storage) { p -> String in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa -> String in
            guard uv_tcp_getpeername(tcp, sa, &len) == 0 else { return "?" }
            var name = [CChar](repeating: 0, count: 64)
            if sa.pointee.sa_family == sa_family_t(AF_INET6) {
                return sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                    uv_ip6_name($0, &name, name.count)
                    return "[\(String(cString: name))]:\(UInt16(bigEndian: $0.pointee.sin6_port))"
                }
            }
            return sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                uv_ip4_name($0, &name, name.count)
                return "\(String(cString: name)):\(UInt16(bigEndian: $0.pointee.sin_port))"
            }
        }
    }
}

import CLibUV
#if canImport(Glibc)
import Glibc
#endif

/// The access log (`--access-log FILE|-`): one line per answered request in the Common Log Format, with the
/// time taken appended (as nginx's `$request_time`):
///
///     127.0.0.1 - - [30/Nov/2026:03:22:40 +0000] "GET /api/get?key=Tom HTTP/1.1" 200 42 0.000061
///
/// The size is that of the whole response (head and body). Lines are collected in a buffer and written when it
/// holds `flushBytes` or when `flush()` is called (the node does so every second and at stop), so the cost per
/// request is formatting one line, not a system call. Off by default: measured in bench/results.
public final class AccessLog {
    /// Lines are written once this many bytes are waiting.
    public static let flushBytes = 64 << 10
    /// The longest request line written; longer ones are cut (the log must not grow with what clients send).
    public static let maxRequestLineBytes = 1024

    private let fd: Int32
    private let ownsFD: Bool
    private var pending = ByteBuffer(capacity: AccessLog.flushBytes + 4096)
    private var cachedSecond: Int64 = -1
    private var cachedDate = ""
    public private(set) var writeErrors: UInt64 = 0

    /// Opens `path` for appending, or uses standard output for "-".
    public init(path: String) throws {
        if path == "-" {
            fd = STDOUT_FILENO
            ownsFD = false
        } else {
            fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                throw ConfigError("--access-log: cannot open '\(path)': \(String(cString: strerror(errno)))")
            }
            ownsFD = true
        }
    }

    /// Appends one line. `requestLine` is the request's first line as received (without CRLF).
    func record(remote: String, unixMillis: Int64, requestLine: UnsafeRawBufferPointer, status: Int,
                responseBytes: Int, seconds: Double) {
        pending.append(remote)
        pending.append(" - - [")
        let second = unixMillis / 1000
        if second != cachedSecond {
            cachedSecond = second
            cachedDate = AccessLog.commonLogDate(unixSeconds: second)
        }
        pending.append(cachedDate)
        pending.append("] \"")
        for c in requestLine.prefix(AccessLog.maxRequestLineBytes) {
            // Quotes, backslashes and control bytes are escaped, so a client cannot forge a line or a field.
            if c < 0x20 || c >= 0x7f || c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") {
                pending.append("\\x")
                pending.append(Hex.lower(c >> 4))
                pending.append(Hex.lower(c & 0x0F))
            } else {
                pending.append(c)
            }
        }
        pending.append("\" ")
        pending.appendDecimal(status)
        pending.append(UInt8(ascii: " "))
        pending.appendDecimal(responseBytes)
        pending.append(UInt8(ascii: " "))
        let micros = Int(seconds * 1_000_000)
        pending.appendDecimal(micros / 1_000_000)
        pending.append(UInt8(ascii: "."))
        let fraction = micros % 1_000_000
        var scale = 100_000
        while scale > 0 {
            pending.append(UInt8(ascii: "0") + UInt8(fraction / scale % 10))
            scale /= 10
        }
        pending.append(UInt8(ascii: "\n"))
        if pending.count >= AccessLog.flushBytes { flush() }
    }

    /// Writes what is waiting. A failed write drops those lines and is counted, never retried forever.
    public func flush() {
        var offset = 0
        let bytes = pending.readable
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                writeErrors += 1
                break
            }
            offset += n
        }
        pending.count = 0
    }

    /// Writes what is waiting and closes the file.
    public func close() {
        flush()
        if ownsFD { Glibc.close(fd) }
    }

    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// `30/Nov/2026:03:22:40 +0000` (the Common Log Format's date, in UTC).
    static func commonLogDate(unixSeconds: Int64) -> String {
        var seconds = time_t(unixSeconds)
        var t = tm()
        gmtime_r(&seconds, &t)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(two(t.tm_mday))/\(months[Int(t.tm_mon)])/\(t.tm_year + 1900):\(two(t.tm_hour)):\(two(t.tm_min)):"
            + "\(two(t.tm_sec)) +0000"
    }
}

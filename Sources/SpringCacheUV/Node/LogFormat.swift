import Logging
#if canImport(Glibc)
import Glibc
#endif

/// How log lines are written (`--log-format`).
public enum LogFormat: String, CaseIterable {
    /// `2026-11-30T03:22:40.123Z info pid=4242 node=a message key=value`
    case text
    /// One JSON object per line: `{"ts":"…","level":"info","pid":4242,"node":"a","msg":"…", …metadata}`.
    case json
}

/// A swift-log handler writing one line per event to a `FILE*` (stderr by default): UTC timestamps with
/// milliseconds, the level, the process id and the node's name on every line, as text or JSON.
///
/// Why our own handler rather than swift-log's `StreamLogHandler`: that one prints whole seconds in local time,
/// no pid and a label that varies by call site; an operator correlating workers and peers needs milliseconds,
/// a pid and the node's name on every line, and a log shipper wants JSON. Each line is formatted into one
/// string and written with one `fwrite`, so lines from one process never interleave.
public struct NodeLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let node: String
    let format: LogFormat

    public init(node: String, format: LogFormat, level: Logger.Level) {
        self.node = node
        self.format = format
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let explicit = event.metadata { all.merge(explicit) { $1 } }
        let text = NodeLogHandler.format(format, timestamp: NodeLogHandler.timestamp(), level: event.level,
                                         pid: Int(getpid()), node: node, message: "\(event.message)", metadata: all)
        fputs(text, stderr)
        fflush(stderr)
    }

    /// One formatted line, newline included; pure so that tests can check both formats.
    public static func format(_ format: LogFormat, timestamp: String, level: Logger.Level, pid: Int, node: String,
                              message: String, metadata: Logger.Metadata) -> String {
        let keys = metadata.keys.sorted()
        switch format {
        case .text:
            var line = "\(timestamp) \(level) pid=\(pid) node=\(node) \(message)"
            for key in keys { line += " \(key)=\(metadata[key]!)" }
            return line + "\n"
        case .json:
            var line = "{\"ts\":\(jsonString(timestamp)),\"level\":\(jsonString(level.rawValue)),\"pid\":\(pid),"
                + "\"node\":\(jsonString(node)),\"msg\":\(jsonString(message))"
            for key in keys where !["ts", "level", "pid", "node", "msg"].contains(key) {
                line += ",\(jsonString(key)):\(jsonString("\(metadata[key]!)"))"
            }
            return line + "}\n"
        }
    }

    /// The current time as RFC 3339 UTC with milliseconds, e.g. `2026-11-30T03:22:40.123Z`.
    public static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return timestamp(unixMillis: Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000)
    }

    public static func timestamp(unixMillis: Int64) -> String {
        var seconds = time_t(unixMillis / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let millis = Int(unixMillis % 1000)
        let ms = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):"
            + "\(two(parts.tm_min)):\(two(parts.tm_sec)).\(ms)Z"
    }

    /// A JSON string literal (RFC 8259 §7): quotes, backslash and control characters escaped.
    public static func jsonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

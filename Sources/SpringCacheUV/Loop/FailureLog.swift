/// A rate limiter for repeated failure messages: the first failure of a kind in an interval is logged with its
/// cause; the rest are counted and summed up in one line when the interval ends.
///
/// Why: an origin that is down fails every miss, thousands a second; one line per failure would bury every
/// other line and cost more than the request. One line with the cause, then one summary per interval, tells
/// the operator what is wrong and how often, in constant log volume. Pure logic: time comes in as `now`.
public struct FailureLog {
    /// How long after a logged failure the same kind is only counted.
    public let intervalMillis: Int64

    private struct Window {
        var startedAt: Int64
        var suppressed = 0
        var lastCause = ""
    }

    private var windows: [String: Window] = [:]

    public init(intervalMillis: Int64) {
        self.intervalMillis = intervalMillis
    }

    /// Records one failure; returns the line to log now, or nil when it only counts toward the summary.
    public mutating func record(kind: String, cause: String, now: Int64) -> String? {
        if var window = windows[kind], now - window.startedAt < intervalMillis {
            window.suppressed += 1
            window.lastCause = cause
            windows[kind] = window
            return nil
        }
        var line = cause
        if let old = windows[kind], old.suppressed > 0 { line += " (\(summaryTail(old)))" }
        windows[kind] = Window(startedAt: now)
        return line
    }

    /// The summaries of intervals that ended by `now` with failures counted but not logged.
    public mutating func flush(now: Int64) -> [String] {
        summaries(now: now, all: false)
    }

    /// The summaries of every interval, ended or not, and a fresh start: for when the failures stopped
    /// (etcd answers again), so the count is told now rather than with the next failure.
    public mutating func drain(now: Int64) -> [String] {
        summaries(now: now, all: true)
    }

    private mutating func summaries(now: Int64, all: Bool) -> [String] {
        var lines: [String] = []
        for kind in windows.keys.sorted() {
            guard let window = windows[kind], all || now - window.startedAt >= intervalMillis else { continue }
            if window.suppressed > 0 {
                lines.append("\(kind): \(window.suppressed) more in the last "
                             + "\(ValueParsing.formatDuration(now - window.startedAt)); last: \(window.lastCause)")
            }
            windows[kind] = nil
        }
        return lines
    }

    private func summaryTail(_ window: Window) -> String {
        "and \(window.suppressed) more like it before"
    }
}

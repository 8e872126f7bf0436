/// Protocol abuse seen on the API and peer ports, told to the log at most once per kind and interval.
///
/// Why rate-limited: a flood is thousands of events a second; one line per kind per interval, with the
/// address of the latest offender and how many events were folded into it, is enough to see who and what,
/// and cannot itself become the flood (writing the log must not cost more than the attack does).
public final class AbuseLog {
    public enum Kind: String, CaseIterable {
        /// A header block whose decoded size passed the advertised limit (an HPACK bomb).
        case headerList = "header-list-too-large"
        /// nghttp2 refused the input (bad frames, CONTINUATION/PING/SETTINGS/RST floods, flow-control errors).
        case http2Protocol = "http2-protocol-error"
        /// A request or answer refused because the connection's or the process's buffer bound was reached.
        case bufferFull = "buffer-full"
        /// A stream that outlived `--peer-stream-timeout` (a request never finished, an answer never taken).
        case streamTimeout = "stream-timeout"
        /// No preface and SETTINGS in time, silence after a PING, or output left unread.
        case connectionTimeout = "connection-timeout"
        /// Too many connections that have not authenticated; the oldest was closed.
        case unauthenticatedFlood = "unauthenticated-connections"
        /// A peer request without the peer token.
        case unauthenticated = "unauthenticated-request"
        /// An HTTP request that could not be parsed, or was not received within the header timeout.
        case httpMalformed = "http-malformed-request"
        case httpTimeout = "http-request-timeout"
        /// An HTTP client whose unread answers reached its or the process's output bound.
        case httpUnreadAnswers = "http-unread-answers"
    }

    /// Where lines go (the node's logger); nil = nowhere (tests, embedded use).
    public var sink: ((String) -> Void)?
    public let intervalMillis: Int64
    private var lastLogged: [Kind: Int64] = [:]
    private var folded: [Kind: Int] = [:]
    /// Events of each kind since start, logged or folded.
    public private(set) var counts: [Kind: UInt64] = [:]

    public init(intervalMillis: Int64 = 10_000, sink: ((String) -> Void)? = nil) {
        self.intervalMillis = intervalMillis
        self.sink = sink
    }

    /// Counts one event; writes a line unless one of this kind was written less than an interval ago.
    public func report(_ kind: Kind, peer: @autoclosure () -> String, _ detail: @autoclosure () -> String, now: Int64) {
        counts[kind, default: 0] += 1
        if let last = lastLogged[kind], now - last < intervalMillis {
            folded[kind, default: 0] += 1
            return
        }
        let more = folded[kind] ?? 0
        lastLogged[kind] = now
        folded[kind] = 0
        let suffix = more > 0 ? " (and \(more) more of this kind since the last report)" : ""
        sink?("abuse \(kind.rawValue) from \(peer()): \(detail())\(suffix)")
    }
}

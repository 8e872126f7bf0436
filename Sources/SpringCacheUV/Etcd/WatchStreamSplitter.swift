/// Splits the body of an etcd gateway watch stream into its lines, as the bytes arrive.
///
/// Why lines: the gateway (grpc-gateway's streaming marshaller) writes one JSON object per watch response,
/// each followed by `\n`; the bytes reach us in chunks that ignore those boundaries, so a partial line is kept
/// until its newline comes. A `\r` before the newline is dropped and empty lines are skipped. Pure: no I/O.
public struct WatchStreamSplitter {
    /// The longest line accepted by default. A watch response carries at most a few events of small
    /// member records, but one event may hold a 1 MiB value base64-encoded; beyond this bound the stream
    /// is not what we think it is.
    public static let defaultMaxLineBytes = 4 << 20

    public struct LineTooLong: Error, Equatable, CustomStringConvertible {
        public var limit: Int
        public var description: String { "watch stream line longer than \(limit) bytes" }
    }

    public let maxLineBytes: Int
    /// The start of a line whose newline has not arrived yet.
    private var partial: [UInt8] = []

    public init(maxLineBytes: Int = WatchStreamSplitter.defaultMaxLineBytes) {
        self.maxLineBytes = maxLineBytes
    }

    /// Bytes held back waiting for their newline.
    public var pendingByteCount: Int { partial.count }

    /// Takes the next chunk and returns every line it completes, in order, without their line endings.
    public mutating func append(_ chunk: [UInt8]) throws -> [[UInt8]] {
        var lines: [[UInt8]] = []
        var start = 0
        while let newline = chunk[start...].firstIndex(of: UInt8(ascii: "\n")) {
            partial.append(contentsOf: chunk[start..<newline])
            try checkLength()
            if partial.last == UInt8(ascii: "\r") { partial.removeLast() }
            if !partial.isEmpty { lines.append(partial) }
            partial = []
            start = newline + 1
        }
        partial.append(contentsOf: chunk[start...])
        try checkLength()
        return lines
    }

    /// At the end of the stream: the last line if it had no newline (nil when nothing is left).
    public mutating func finish() -> [UInt8]? {
        defer { partial = [] }
        if partial.last == UInt8(ascii: "\r") { partial.removeLast() }
        return partial.isEmpty ? nil : partial
    }

    private func checkLength() throws {
        if partial.count > maxLineBytes { throw LineTooLong(limit: maxLineBytes) }
    }
}

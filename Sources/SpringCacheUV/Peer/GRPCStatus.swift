/// A gRPC status code, as carried in `grpc-status` (gRPC doc/statuscodes.md).
///
/// A struct rather than an enum so that a code this build does not know (from a newer peer) still round-trips.
public struct GRPCStatus: RawRepresentable, Hashable, CustomStringConvertible, Sendable {
    public let rawValue: Int

    public init(rawValue: Int) { self.rawValue = rawValue }

    public static let ok = GRPCStatus(rawValue: 0)
    public static let cancelled = GRPCStatus(rawValue: 1)
    public static let unknown = GRPCStatus(rawValue: 2)
    public static let invalidArgument = GRPCStatus(rawValue: 3)
    public static let deadlineExceeded = GRPCStatus(rawValue: 4)
    public static let notFound = GRPCStatus(rawValue: 5)
    public static let alreadyExists = GRPCStatus(rawValue: 6)
    public static let permissionDenied = GRPCStatus(rawValue: 7)
    public static let resourceExhausted = GRPCStatus(rawValue: 8)
    public static let failedPrecondition = GRPCStatus(rawValue: 9)
    public static let aborted = GRPCStatus(rawValue: 10)
    public static let outOfRange = GRPCStatus(rawValue: 11)
    public static let unimplemented = GRPCStatus(rawValue: 12)
    public static let `internal` = GRPCStatus(rawValue: 13)
    public static let unavailable = GRPCStatus(rawValue: 14)
    public static let dataLoss = GRPCStatus(rawValue: 15)
    public static let unauthenticated = GRPCStatus(rawValue: 16)

    /// How many codes the spec defines; stats arrays are this long (unknown codes count as UNKNOWN).
    public static let definedCount = 17

    private static let names = [
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
        "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
        "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
    ]

    /// The spec's upper-case name, e.g. `NOT_FOUND`.
    public var name: String {
        rawValue >= 0 && rawValue < GRPCStatus.names.count ? GRPCStatus.names[rawValue] : "CODE_\(rawValue)"
    }

    public var description: String { name }

    /// Index into a stats array of `definedCount` entries.
    var statsIndex: Int { rawValue >= 0 && rawValue < GRPCStatus.definedCount ? rawValue : 2 }

    /// The status a client reports for a response that has an HTTP status but no `grpc-status`
    /// (gRPC doc/http-grpc-status-mapping.md). Only used when no gRPC status is available.
    public static func fromHTTPStatus(_ status: Int) -> GRPCStatus {
        switch status {
        case 400: return .internal
        case 401: return .unauthenticated
        case 403: return .permissionDenied
        case 404: return .unimplemented
        case 429, 502, 503, 504: return .unavailable
        default: return .unknown
        }
    }
}

/// A failed call: the status and the message (already percent-decoded) that came with it.
public struct GRPCCallError: Error, Equatable, CustomStringConvertible, Sendable {
    public let status: GRPCStatus
    public let message: String
    /// Whether the status came from the peer (its `grpc-status`), rather than from this side: a refused
    /// connection, a lost one, or our own deadline passing with no answer. A peer that answers is alive,
    /// whatever it answered.
    public let fromPeer: Bool

    public init(status: GRPCStatus, message: String, fromPeer: Bool = false) {
        self.status = status
        self.message = message
        self.fromPeer = fromPeer
    }

    public var description: String { "\(status.name): \(message)" }
}

/// The outcome of a unary call: the response message bytes, or why there are none.
public typealias GRPCResult = Result<[UInt8], GRPCCallError>

/// Percent-encoding of `grpc-message` (gRPC PROTOCOL-HTTP2.md, "Status-Message"): the UTF-8 bytes of the
/// message, with every byte outside printable ASCII 0x20…0x7E, and `%` itself, written as `%XX`.
enum GRPCStatusMessage {
    static func encode(_ message: String) -> String {
        guard PercentEncoding.needsEncoding(message.utf8, keeping: .printableASCII) else { return message }
        return PercentEncoding.encoded(message.utf8, keeping: .printableASCII)
    }

    /// Decodes leniently, as the spec asks: a `%` not followed by two hex digits is kept as it is, and
    /// bytes that are not valid UTF-8 become U+FFFD.
    static func decode(_ bytes: UnsafeRawBufferPointer) -> String {
        guard bytes.contains(UInt8(ascii: "%")),
              let out = PercentEncoding.decoded(bytes, malformed: .keep) else {
            return String(decoding: bytes, as: UTF8.self)
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ text: String) -> String {
        var text = text
        return text.withUTF8 { decode(UnsafeRawBufferPointer($0)) }
    }
}

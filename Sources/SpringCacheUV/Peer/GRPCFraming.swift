/// gRPC's Length-Prefixed-Message framing and `grpc-timeout` values (gRPC PROTOCOL-HTTP2.md).
///
/// Pure logic: no sockets, no nghttp2; both the server and the client feed DATA payloads through it.

/// Why a decoded stream of messages must stop, and the status each side reports for it.
enum GRPCFramingFailure: Equatable {
    /// Compressed-Flag 1 without a `grpc-encoding` header: a protocol error (INTERNAL).
    case compressedWithoutEncoding
    /// Compressed-Flag 1 with an encoding we do not implement (we accept `identity` only).
    case compressionUnsupported
    /// Compressed-Flag other than 0 or 1.
    case invalidFlag(UInt8)
    /// A message longer than the configured limit (RESOURCE_EXHAUSTED on both sides, statuscodes.md).
    case tooLarge(length: Int, limit: Int)
    /// More messages than the method takes (a unary call takes one): a cardinality violation.
    case tooManyMessages(limit: Int)
    /// END_STREAM inside a message or its prefix.
    case truncated

    /// The status a server answers with when a request fails this way.
    var serverStatus: GRPCStatus {
        switch self {
        case .compressedWithoutEncoding, .invalidFlag, .truncated: return .internal
        case .compressionUnsupported, .tooManyMessages: return .unimplemented
        case .tooLarge: return .resourceExhausted
        }
    }

    /// The status a client reports when a response fails this way.
    var clientStatus: GRPCStatus {
        switch self {
        case .compressedWithoutEncoding, .invalidFlag, .truncated, .compressionUnsupported: return .internal
        case .tooManyMessages: return .unimplemented
        case .tooLarge: return .resourceExhausted
        }
    }

    var message: String {
        switch self {
        case .compressedWithoutEncoding: return "message has the compressed flag set but no grpc-encoding was sent"
        case .compressionUnsupported: return "compressed messages are not supported (grpc-accept-encoding: identity)"
        case .invalidFlag(let flag): return "invalid compressed flag \(flag) in message prefix"
        case .tooLarge(let length, let limit): return "message of \(length) bytes exceeds the limit of \(limit) bytes"
        case .tooManyMessages(let limit): return "more than \(limit) message(s) on a unary call"
        case .truncated: return "stream ended inside a message"
        }
    }
}

/// Reassembles Length-Prefixed-Messages (1 byte compressed flag, 4 bytes big-endian length, message)
/// from DATA payloads that may split them anywhere.
struct GRPCMessageDecoder {
    let maxMessageBytes: Int
    let maxMessages: Int
    /// Whether the peer sent a `grpc-encoding` other than `identity`: decides how a set flag is reported
    /// (a server sets it again for each stream that reuses the decoder).
    var encodingDeclared: Bool

    /// The first complete message, and any after it: kept apart so that a unary stream's one message costs
    /// no array of arrays (an allocation per call on the peer path).
    private(set) var firstMessage: [UInt8]?
    private var laterMessages: [[UInt8]] = []
    private(set) var messageCount = 0
    /// Every complete message (tests and cold paths; it builds an array).
    var messages: [[UInt8]] { firstMessage.map { [$0] + laterMessages } ?? [] }
    private var prefixFill = 0
    private var flag: UInt8 = 0
    private var length = 0
    private var current: [UInt8] = []
    private var inMessage = false

    /// Most bytes reserved for a message before its bytes arrive. Why a cap: the length prefix is the peer's
    /// claim, and reserving all of it up front would let a 5-byte prefix per stream pin up to
    /// `maxMessageBytes` each; once this much of the message has really come in, the rest is reserved at once.
    static let maxInitialReserve = 64 << 10

    /// Bytes the message being reassembled has reserved (tests check the claim alone reserves little).
    var reservedBytes: Int { current.capacity }

    init(maxMessageBytes: Int, maxMessages: Int, encodingDeclared: Bool = false) {
        self.maxMessageBytes = maxMessageBytes
        self.maxMessages = maxMessages
        self.encodingDeclared = encodingDeclared
    }

    /// Consumes `bytes`; complete messages are appended to `messages`. A failure ends the stream: the
    /// decoder must not be fed again.
    mutating func feed(_ bytes: UnsafeRawBufferPointer) -> GRPCFramingFailure? {
        var i = 0
        let n = bytes.count
        while i < n {
            if inMessage {
                let take = min(length - current.count, n - i)
                let arrived = current.count + take
                if arrived > current.capacity && arrived >= GRPCMessageDecoder.maxInitialReserve {
                    // `maxInitialReserve` bytes are really here: grow once to the whole message instead of
                    // doubling (a 4 MiB answer copied its first 2 MiB again and faulted in twice the pages).
                    current.reserveCapacity(length)
                }
                current.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[i..<(i + take)]))
                i += take
                if current.count == length { completeMessage() }
                continue
            }
            if prefixFill == 0 && messageCount >= maxMessages { return .tooManyMessages(limit: maxMessages) }
            let b = bytes[i]
            i += 1
            if prefixFill == 0 {
                flag = b
                length = 0
            } else {
                length = length << 8 | Int(b)
            }
            prefixFill += 1
            guard prefixFill == GRPCMessageDecoder.prefixBytes else { continue }
            prefixFill = 0
            if flag == 1 { return encodingDeclared ? .compressionUnsupported : .compressedWithoutEncoding }
            if flag != 0 { return .invalidFlag(flag) }
            if length > maxMessageBytes { return .tooLarge(length: length, limit: maxMessageBytes) }
            inMessage = true
            current.removeAll(keepingCapacity: true)  // a buffer kept by `restart`, else empty
            current.reserveCapacity(min(length, GRPCMessageDecoder.maxInitialReserve))
            if length == 0 { completeMessage() }
        }
        return nil
    }

    /// Largest message buffer `restart` keeps for the next stream's message. Why this small: a client keeps as
    /// many idle calls as it once had in flight, each with a request and an answer buffer, so a burst of large
    /// calls must not stay pinned; Get requests and small values fit.
    static let keptBufferBytes = 1 << 10

    /// Makes the decoder ready for a new stream, with the same limits. The first message's buffer is kept
    /// for the next message when it is at most `keptBufferBytes`: a reused client call (`GRPCClientCall`)
    /// then receives its answer without an allocation once whoever read the last answer has let it go.
    mutating func restart() {
        var buffer = firstMessage ?? current
        firstMessage = nil
        current = []
        laterMessages = []
        if buffer.capacity <= GRPCMessageDecoder.keptBufferBytes {
            buffer.removeAll(keepingCapacity: true)
            current = buffer
        }
        messageCount = 0
        prefixFill = 0
        flag = 0
        length = 0
        inMessage = false
    }

    /// Called at END_STREAM: fails if the stream stopped inside a message.
    func finish() -> GRPCFramingFailure? {
        inMessage || prefixFill > 0 ? .truncated : nil
    }

    private mutating func completeMessage() {
        if messageCount == 0 { firstMessage = current } else { laterMessages.append(current) }
        messageCount += 1
        current = []
        inMessage = false
    }

    /// The bytes a gRPC Length-Prefixed-Message adds to its message: the compressed flag and a 4-byte length.
    static let prefixBytes = 5

    /// The 5-byte prefix of an uncompressed message of `length` bytes, byte `index` of it.
    @inline(__always)
    static func prefixByte(_ index: Int, length: Int) -> UInt8 {
        index == 0 ? 0 : UInt8(truncatingIfNeeded: length >> (8 * (4 - index)))
    }
}

/// `grpc-timeout` (PROTOCOL-HTTP2.md): `TimeoutValue TimeoutUnit`, a positive integer of at most 8 ASCII
/// digits and one of `H M S m u n`.
enum GRPCTimeout {
    /// Milliseconds, rounded up so a sub-millisecond timeout is not treated as none; nil if malformed.
    static func parse(_ bytes: UnsafeRawBufferPointer) -> Int64? {
        guard bytes.count >= 2, bytes.count <= 9 else { return nil }
        var value: Int64 = 0
        for i in 0..<(bytes.count - 1) {
            let c = bytes[i]
            guard c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int64(c - UInt8(ascii: "0"))
        }
        switch bytes[bytes.count - 1] {
        case UInt8(ascii: "H"): return value * 3_600_000
        case UInt8(ascii: "M"): return value * 60_000
        case UInt8(ascii: "S"): return value * 1000
        case UInt8(ascii: "m"): return value
        case UInt8(ascii: "u"): return (value + 999) / 1000
        case UInt8(ascii: "n"): return (value + 999_999) / 1_000_000
        default: return nil
        }
    }

    static func parse(_ text: String) -> Int64? {
        var text = text
        return text.withUTF8 { parse(UnsafeRawBufferPointer($0)) }
    }

    /// The header value for a timeout in milliseconds: `m` while it fits in 8 digits, then coarser units
    /// rounded up (a deadline must never be shortened by encoding it).
    static func encode(millis: Int64) -> String {
        let limit: Int64 = 99_999_999
        let m = max(millis, 0)
        if m <= limit { return "\(m)m" }
        let seconds = dividedRoundingUp(m, 1000)
        if seconds <= limit { return "\(seconds)S" }
        let minutes = dividedRoundingUp(seconds, 60)
        if minutes <= limit { return "\(minutes)M" }
        return "\(min(dividedRoundingUp(minutes, 60), limit))H"
    }

    /// `value / divisor` rounded up, for a non-negative value; `(value + divisor - 1) / divisor` would overflow
    /// near `Int64.max`.
    private static func dividedRoundingUp(_ value: Int64, _ divisor: Int64) -> Int64 {
        value / divisor + (value % divisor == 0 ? 0 : 1)
    }
}

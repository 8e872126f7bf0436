/// The six messages of the peer protocol (proto/springcachepb.proto), encoded and decoded by hand.
///
/// Proto3 semantics, as Go's and Python's protobuf implement them:
/// - fields holding their default value (empty, 0, false) are not encoded;
/// - fields are written in field-number order, so our bytes equal protoc-generated code's bytes
///   (checked against golden vectors in Tests/SpringCacheUVTests/Peer/ProtoGoldenTests.swift);
/// - on decode the last occurrence of a field wins (scalars and strings/bytes alike), fields may come in any
///   order, and unknown fields of every non-group wire type are skipped.
///
/// Group names are `String` (proto3 requires valid UTF-8; the decoder checks it). Keys are `CacheKey`, bytes:
/// the `string key` field carries them unchanged and the decoder does not require UTF-8, because a key is a
/// byte string end to end (two keys that differ in any byte are different keys). A springcache (Go) peer
/// refuses a key that is not valid UTF-8 with a status, which never drops it (docs/reliability.md).
/// Values are `[UInt8]`. Decoding allocates only the message's own strings and arrays.

/// A message of the peer protocol: its encoded size, its encoding, and its decoder.
public protocol ProtoMessage: Equatable {
    /// Bytes `encode(into:)` will append (for the gRPC length prefix, written before the message).
    var encodedSize: Int { get }
    /// Appends the message's proto3 encoding.
    func encode(into buffer: inout ByteBuffer)
    /// Decodes one whole message; throws `ProtoDecodeError` on malformed input (never traps).
    static func decode(_ bytes: UnsafeRawBufferPointer) throws -> Self
}

extension ProtoMessage {
    /// The encoding as a new array (tests and cold paths; the hot path uses `encode(into:)`).
    public func encoded() -> [UInt8] {
        var buffer = ByteBuffer(capacity: encodedSize)
        encode(into: &buffer)
        return Array(buffer.readable)
    }

    public static func decode(_ bytes: [UInt8]) throws -> Self {
        try bytes.withUnsafeBytes { try decode($0) }
    }
}

@inline(__always)
private func utf8Count(_ s: String) -> Int { s.utf8.count }

// MARK: - Get

/// A message whose fields are `string group = 1; string key = 2;` (GetRequest and DeleteRequest): one
/// encoder and decoder for both, with errors that name the message.
public protocol GroupKeyMessage: ProtoMessage {
    static var messageName: String { get }
    var group: String { get set }
    var key: CacheKey { get set }
    init(group: String, key: CacheKey)
}

extension GroupKeyMessage {
    public var encodedSize: Int {
        ProtoWriter.sizeOfBytesField(1, count: utf8Count(group))
            + ProtoWriter.sizeOfBytesField(2, count: key.count)
    }

    public func encode(into buffer: inout ByteBuffer) {
        buffer.reserve(encodedSize)
        ProtoWriter.appendStringField(1, group, to: &buffer)
        ProtoWriter.appendBytesField(2, key.bytes, to: &buffer)
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer) throws -> Self {
        var message = Self(group: "", key: "")
        var reader = ProtoReader(bytes)
        while let (field, wireType) = try reader.nextTag() {
            switch field {
            case 1:
                try reader.expect(.lengthDelimited, got: wireType, in: messageName)
                message.group = try reader.readString(in: messageName)
            case 2:
                try reader.expect(.lengthDelimited, got: wireType, in: messageName)
                message.key = CacheKey(try reader.readBytes())
            default:
                try reader.skip(wireType)
            }
        }
        return message
    }
}

/// Asks the owner of `key` in `group` for its value.
public struct GetRequest: GroupKeyMessage, Sendable {
    public static let messageName = "GetRequest"
    /// Field 1: the cache group's name.
    public var group: String
    /// Field 2: the key.
    public var key: CacheKey

    public init(group: String = "", key: CacheKey = "") {
        self.group = group
        self.key = key
    }
}

/// The owner's answer to a `GetRequest`.
public struct GetResponse: ProtoMessage, Sendable {
    /// Field 1: the value's bytes.
    public var value: [UInt8]
    /// Field 2 (new): when the owner's entry expires, unix milliseconds; 0 = unknown (e.g. springcache).
    public var expireMillis: Int64

    public init(value: [UInt8] = [], expireMillis: Int64 = 0) {
        self.value = value
        self.expireMillis = expireMillis
    }

    public var encodedSize: Int {
        ProtoWriter.sizeOfBytesField(1, count: value.count)
            + ProtoWriter.sizeOfVarintField(2, UInt64(bitPattern: expireMillis))
    }

    public func encode(into buffer: inout ByteBuffer) {
        buffer.reserve(encodedSize)
        ProtoWriter.appendBytesField(1, value, to: &buffer)
        ProtoWriter.appendVarintField(2, UInt64(bitPattern: expireMillis), to: &buffer)
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer) throws -> GetResponse {
        var message = GetResponse()
        var reader = ProtoReader(bytes)
        while let (field, wireType) = try reader.nextTag() {
            switch field {
            case 1:
                try reader.expect(.lengthDelimited, got: wireType, in: "GetResponse")
                message.value = try reader.readBytes()
            case 2:
                try reader.expect(.varint, got: wireType, in: "GetResponse")
                message.expireMillis = Int64(bitPattern: try reader.readVarint())
            default:
                try reader.skip(wireType)
            }
        }
        return message
    }
}

// MARK: - Set

/// Stores a value at the owner (springcache's Set).
public struct SetRequest: ProtoMessage, Sendable {
    /// Field 1: the cache group's name.
    public var group: String
    /// Field 2: the key.
    public var key: CacheKey
    /// Field 3: the value's bytes.
    public var value: [UInt8]
    /// Field 4: the absolute expiry time in unix SECONDS (springcache's meaning); 0 = the owner's default TTL.
    public var expireSeconds: Int64
    /// Field 5: store in the hot cache instead of the main cache.
    public var isHot: Bool

    public init(group: String = "", key: CacheKey = "", value: [UInt8] = [], expireSeconds: Int64 = 0,
                isHot: Bool = false) {
        self.group = group
        self.key = key
        self.value = value
        self.expireSeconds = expireSeconds
        self.isHot = isHot
    }

    public var encodedSize: Int {
        ProtoWriter.sizeOfBytesField(1, count: utf8Count(group))
            + ProtoWriter.sizeOfBytesField(2, count: key.count)
            + ProtoWriter.sizeOfBytesField(3, count: value.count)
            + ProtoWriter.sizeOfVarintField(4, UInt64(bitPattern: expireSeconds))
            + ProtoWriter.sizeOfVarintField(5, isHot ? 1 : 0)
    }

    public func encode(into buffer: inout ByteBuffer) {
        buffer.reserve(encodedSize)
        ProtoWriter.appendStringField(1, group, to: &buffer)
        ProtoWriter.appendBytesField(2, key.bytes, to: &buffer)
        ProtoWriter.appendBytesField(3, value, to: &buffer)
        ProtoWriter.appendVarintField(4, UInt64(bitPattern: expireSeconds), to: &buffer)
        ProtoWriter.appendVarintField(5, isHot ? 1 : 0, to: &buffer)
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer) throws -> SetRequest {
        var message = SetRequest()
        var reader = ProtoReader(bytes)
        while let (field, wireType) = try reader.nextTag() {
            switch field {
            case 1:
                try reader.expect(.lengthDelimited, got: wireType, in: "SetRequest")
                message.group = try reader.readString(in: "SetRequest")
            case 2:
                try reader.expect(.lengthDelimited, got: wireType, in: "SetRequest")
                message.key = CacheKey(try reader.readBytes())
            case 3:
                try reader.expect(.lengthDelimited, got: wireType, in: "SetRequest")
                message.value = try reader.readBytes()
            case 4:
                try reader.expect(.varint, got: wireType, in: "SetRequest")
                message.expireSeconds = Int64(bitPattern: try reader.readVarint())
            case 5:
                try reader.expect(.varint, got: wireType, in: "SetRequest")
                message.isHot = try reader.readVarint() != 0   // any non-zero varint is true, as in Go
            default:
                try reader.skip(wireType)
            }
        }
        return message
    }
}

/// A message whose only field is `bool ok = 1;` (SetResponse and DeleteResponse).
public protocol OKMessage: ProtoMessage {
    static var messageName: String { get }
    var ok: Bool { get }
    init(ok: Bool)
}

extension OKMessage {
    public var encodedSize: Int { ProtoWriter.sizeOfVarintField(1, ok ? 1 : 0) }

    public func encode(into buffer: inout ByteBuffer) {
        ProtoWriter.appendVarintField(1, ok ? 1 : 0, to: &buffer)
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer) throws -> Self {
        var ok = false
        var reader = ProtoReader(bytes)
        while let (field, wireType) = try reader.nextTag() {
            if field == 1 {
                try reader.expect(.varint, got: wireType, in: messageName)
                ok = try reader.readVarint() != 0
            } else {
                try reader.skip(wireType)
            }
        }
        return Self(ok: ok)
    }
}

/// The owner's answer to a `SetRequest`.
public struct SetResponse: OKMessage, Sendable {
    public static let messageName = "SetResponse"
    /// Field 1: the value was stored.
    public var ok: Bool

    public init(ok: Bool = false) {
        self.ok = ok
    }
}

// MARK: - Delete

/// Removes a key at the owner (new; springcache has no Delete); also the message of Invalidate.
public struct DeleteRequest: GroupKeyMessage, Sendable {
    public static let messageName = "DeleteRequest"
    /// Field 1: the cache group's name.
    public var group: String
    /// Field 2: the key.
    public var key: CacheKey

    public init(group: String = "", key: CacheKey = "") {
        self.group = group
        self.key = key
    }
}

/// The owner's answer to a `DeleteRequest` (and to an Invalidate).
public struct DeleteResponse: OKMessage, Sendable {
    public static let messageName = "DeleteResponse"
    /// Field 1: a value was removed (false: there was none; the key is gone either way).
    public var ok: Bool

    public init(ok: Bool = false) {
        self.ok = ok
    }
}

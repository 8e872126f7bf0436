/// The protobuf binary wire format (proto3), written by hand: varints, tags, length-delimited fields,
/// skipping of unknown fields, and strict UTF-8 checking for `string` fields.
///
/// Spec: https://protobuf.dev/programming-guides/encoding/. Why by hand: the peer protocol has six tiny
/// messages (proto/springcachepb.proto); a generated-code dependency would cost more than this file.
/// Nothing here does I/O or allocates: readers walk an `UnsafeRawBufferPointer`, writers append to a
/// `ByteBuffer`.

/// The wire type in the low three bits of a field's tag.
public enum ProtoWireType: UInt8, Sendable {
    case varint = 0
    case fixed64 = 1
    case lengthDelimited = 2
    case startGroup = 3
    case endGroup = 4
    case fixed32 = 5

    var name: String {
        switch self {
        case .varint: return "varint"
        case .fixed64: return "fixed64"
        case .lengthDelimited: return "length-delimited"
        case .startGroup: return "start-group"
        case .endGroup: return "end-group"
        case .fixed32: return "fixed32"
        }
    }
}

/// Why a message could not be decoded, and at which byte offset of the input.
public struct ProtoDecodeError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Kind: Equatable, Sendable {
        /// The input ended inside a varint (a tag, a varint field or a length).
        case truncatedVarint
        /// A varint had more than 10 bytes, or its 10th byte carried bits beyond 64.
        case varintOverflow
        /// A length-delimited or fixed-width field extends past the end of the input.
        case truncatedField(field: Int)
        /// A tag with field number 0 or above 2^29-1.
        case invalidFieldNumber(UInt64)
        /// Wire type 6 or 7.
        case invalidWireType(field: Int, wireType: UInt8)
        /// Wire type 3 or 4 (proto2 groups), which proto3 messages never contain.
        case groupNotSupported(field: Int)
        /// A known field arrived with a wire type other than its declared one.
        case wrongWireType(message: String, field: Int, expected: ProtoWireType, got: ProtoWireType)
        /// A `string` field holds bytes that are not valid UTF-8.
        case invalidUTF8(message: String, field: Int)
    }

    public var kind: Kind
    /// Offset into the input of the tag or byte where the problem starts.
    public var offset: Int

    public init(_ kind: Kind, offset: Int) {
        self.kind = kind
        self.offset = offset
    }

    public var description: String {
        let what: String
        switch kind {
        case .truncatedVarint:
            what = "truncated varint"
        case .varintOverflow:
            what = "varint longer than 10 bytes or beyond 64 bits"
        case .truncatedField(let field):
            what = "field \(field) extends past the end of the message"
        case .invalidFieldNumber(let number):
            what = "invalid field number \(number) (must be 1...536870911)"
        case .invalidWireType(let field, let wireType):
            what = "field \(field) has invalid wire type \(wireType)"
        case .groupNotSupported(let field):
            what = "field \(field) uses the group wire type, which proto3 does not support"
        case .wrongWireType(let message, let field, let expected, let got):
            what = "\(message) field \(field) must have wire type \(expected.name), got \(got.name)"
        case .invalidUTF8(let message, let field):
            what = "\(message) field \(field) is a string but is not valid UTF-8"
        }
        return "protobuf decode error at byte \(offset): \(what)"
    }
}

// MARK: - Writing

/// Helpers that append wire-format pieces to a `ByteBuffer` and compute their sizes.
public enum ProtoWriter {
    /// Bytes a varint of `value` takes (1...10).
    @inline(__always)
    public static func varintSize(_ value: UInt64) -> Int {
        // 1 byte per started group of 7 significant bits; 0 still takes one byte.
        let bits = 64 - (value | 1).leadingZeroBitCount
        return (bits + 6) / 7
    }

    @inline(__always)
    public static func appendVarint(_ value: UInt64, to buffer: inout ByteBuffer) {
        var v = value
        while v >= 0x80 {
            buffer.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        buffer.append(UInt8(truncatingIfNeeded: v))
    }

    @inline(__always)
    static func tag(_ field: Int, _ wireType: ProtoWireType) -> UInt64 {
        UInt64(field) << 3 | UInt64(wireType.rawValue)
    }

    // Field sizes, 0 for the proto3 default (which is not encoded).

    @inline(__always)
    static func sizeOfVarintField(_ field: Int, _ value: UInt64) -> Int {
        value == 0 ? 0 : varintSize(tag(field, .varint)) + varintSize(value)
    }

    @inline(__always)
    static func sizeOfBytesField(_ field: Int, count: Int) -> Int {
        count == 0 ? 0 : varintSize(tag(field, .lengthDelimited)) + varintSize(UInt64(count)) + count
    }

    // Field writers; each skips the proto3 default value.

    static func appendVarintField(_ field: Int, _ value: UInt64, to buffer: inout ByteBuffer) {
        guard value != 0 else { return }
        appendVarint(tag(field, .varint), to: &buffer)
        appendVarint(value, to: &buffer)
    }

    static func appendBytesField(_ field: Int, _ bytes: UnsafeRawBufferPointer, to buffer: inout ByteBuffer) {
        guard bytes.count != 0 else { return }
        appendVarint(tag(field, .lengthDelimited), to: &buffer)
        appendVarint(UInt64(bytes.count), to: &buffer)
        buffer.append(bytes)
    }

    static func appendBytesField(_ field: Int, _ bytes: [UInt8], to buffer: inout ByteBuffer) {
        bytes.withUnsafeBytes { appendBytesField(field, $0, to: &buffer) }
    }

    static func appendStringField(_ field: Int, _ string: String, to buffer: inout ByteBuffer) {
        var string = string
        string.withUTF8 { appendBytesField(field, UnsafeRawBufferPointer($0), to: &buffer) }
    }
}

// MARK: - Reading

/// A forward-only cursor over one encoded message.
///
/// Usage: `while let (field, wireType) = try reader.nextTag() { switch field { ... } }`, where each case
/// reads its value with the matching `read…` call (after `expect`ing its wire type) and the default case
/// calls `skip(wireType)`.
public struct ProtoReader {
    public let bytes: UnsafeRawBufferPointer
    public private(set) var offset: Int = 0
    /// Offset of the tag most recently returned by `nextTag`, for error messages.
    private var tagOffset: Int = 0
    private var field: Int = 0

    public init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    /// The next field's number and wire type, or nil at the end of the message.
    ///
    /// Throws on a field number outside 1...2^29-1, on wire types 6 and 7, and on groups (wire types 3
    /// and 4). Why reject groups: proto3 has none and neither springcache nor we ever send one; Go's and
    /// Python's (upb) parsers would skip a well-formed group as an unknown field, which needs nesting logic
    /// that could only ever run on hostile input.
    public mutating func nextTag() throws -> (field: Int, wireType: ProtoWireType)? {
        guard offset < bytes.count else { return nil }
        tagOffset = offset
        let tag = try readVarint()
        let number = tag >> 3
        guard number >= 1, number <= 536_870_911 else {
            throw ProtoDecodeError(.invalidFieldNumber(number), offset: tagOffset)
        }
        field = Int(number)
        let rawType = UInt8(truncatingIfNeeded: tag & 7)
        guard let wireType = ProtoWireType(rawValue: rawType) else {
            throw ProtoDecodeError(.invalidWireType(field: field, wireType: rawType), offset: tagOffset)
        }
        if wireType == .startGroup || wireType == .endGroup {
            throw ProtoDecodeError(.groupNotSupported(field: field), offset: tagOffset)
        }
        return (field, wireType)
    }

    /// Throws `wrongWireType` unless the current field (just returned by `nextTag`) has wire type `expected`.
    ///
    /// Why strict: Go's and C++'s protobuf treat a known field with the wrong wire type as an unknown field
    /// and skip it; we reject it instead, because no correct peer (springcache or ours) ever sends one,
    /// and silently reading a "missing" key would be worse than a clear error.
    @inline(__always)
    public func expect(_ expected: ProtoWireType, got: ProtoWireType, in message: String) throws {
        guard got == expected else {
            throw ProtoDecodeError(.wrongWireType(message: message, field: field, expected: expected, got: got),
                                   offset: tagOffset)
        }
    }

    /// Reads a base-128 varint (at most 10 bytes; a 10th byte may only carry bit 63, as in Go's protowire).
    public mutating func readVarint() throws -> UInt64 {
        let start = offset
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard offset < bytes.count else {
                throw ProtoDecodeError(.truncatedVarint, offset: start)
            }
            let byte = bytes[offset]
            offset += 1
            if shift == 63 {
                // The 10th byte: only its lowest bit fits in 64 bits, and it must end the varint.
                guard byte <= 1 else { throw ProtoDecodeError(.varintOverflow, offset: start) }
                return result | UInt64(byte) << 63
            }
            result |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return result }
            shift += 7
        }
    }

    /// Reads a length-delimited field's payload; the view points into the input.
    public mutating func readLengthDelimited() throws -> UnsafeRawBufferPointer {
        let length = try readVarint()
        guard length <= UInt64(bytes.count - offset) else {
            throw ProtoDecodeError(.truncatedField(field: field), offset: tagOffset)
        }
        let start = offset
        offset += Int(length)
        return UnsafeRawBufferPointer(rebasing: bytes[start..<offset])
    }

    /// Reads a `string` field: the payload must be valid UTF-8 (proto3 rule; Go and upb reject it too).
    public mutating func readString(in message: String) throws -> String {
        let payload = try readLengthDelimited()
        guard UTF8Validation.isValid(payload) else {
            throw ProtoDecodeError(.invalidUTF8(message: message, field: field), offset: tagOffset)
        }
        return String(decoding: payload, as: UTF8.self)
    }

    /// Reads a `bytes` field into a new array (the message's own storage).
    public mutating func readBytes() throws -> [UInt8] {
        Array(try readLengthDelimited())
    }

    /// Skips the current field's value, whatever its (non-group) wire type.
    public mutating func skip(_ wireType: ProtoWireType) throws {
        switch wireType {
        case .varint:
            _ = try readVarint()
        case .fixed64:
            try skipFixed(8)
        case .fixed32:
            try skipFixed(4)
        case .lengthDelimited:
            _ = try readLengthDelimited()
        case .startGroup, .endGroup:
            // nextTag never returns these.
            throw ProtoDecodeError(.groupNotSupported(field: field), offset: tagOffset)
        }
    }

    private mutating func skipFixed(_ width: Int) throws {
        guard bytes.count - offset >= width else {
            throw ProtoDecodeError(.truncatedField(field: field), offset: tagOffset)
        }
        offset += width
    }
}

/// Strict UTF-8 validation (Unicode 15, table 3-7): no overlong forms, no surrogates, nothing above U+10FFFF.
public enum UTF8Validation {
    public static func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        let n = bytes.count
        while i < n {
            let b0 = bytes[i]
            if b0 < 0x80 { i += 1; continue }
            // (second byte's allowed range, number of continuation bytes)
            let low: UInt8, high: UInt8, extra: Int
            switch b0 {
            case 0xC2...0xDF: (low, high, extra) = (0x80, 0xBF, 1)
            case 0xE0: (low, high, extra) = (0xA0, 0xBF, 2)
            case 0xE1...0xEC, 0xEE...0xEF: (low, high, extra) = (0x80, 0xBF, 2)
            case 0xED: (low, high, extra) = (0x80, 0x9F, 2)   // excludes surrogates U+D800...U+DFFF
            case 0xF0: (low, high, extra) = (0x90, 0xBF, 3)
            case 0xF1...0xF3: (low, high, extra) = (0x80, 0xBF, 3)
            case 0xF4: (low, high, extra) = (0x80, 0x8F, 3)   // caps at U+10FFFF
            default: return false                               // continuation byte, C0, C1, F5...FF
            }
            guard n - i > extra else { return false }
            let b1 = bytes[i + 1]
            guard b1 >= low, b1 <= high else { return false }
            var k = 2
            while k <= extra {
                guard bytes[i + k] & 0xC0 == 0x80 else { return false }
                k += 1
            }
            i += extra + 1
        }
        return true
    }
}

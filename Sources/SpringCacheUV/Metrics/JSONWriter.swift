/// A small streaming JSON writer (RFC 8259) that appends objects, arrays and scalars to a `ByteBuffer`.
///
/// Use it through `write(into:_:)`; nesting follows the closures, and commas are placed automatically:
/// ```
/// JSONWriter.write(into: &out) { json in
///     json.object { json in
///         json.field("name", "node-1")
///         json.key("members")
///         json.array { json in json.value("a"); json.value("b") }
///     }
/// }
/// ```
/// Strings are escaped as RFC 8259 §7 requires (quote, backslash, control characters); bytes that are not
/// valid UTF-8 become U+FFFD, so the output is always valid JSON even for binary keys.
public struct JSONWriter {
    /// The caller's buffer, borrowed for the duration of `write(into:)`.
    private let out: UnsafeMutablePointer<ByteBuffer>
    private var buffer: ByteBuffer {
        _read { yield out.pointee }
        nonmutating _modify { yield &out.pointee }
    }
    /// Whether the next value or key in the current container needs a comma before it.
    private var needsComma = false
    /// Whether a key was just written, so the next value follows it directly.
    private var afterKey = false

    private init(out: UnsafeMutablePointer<ByteBuffer>) {
        self.out = out
    }

    /// Runs `body` with a writer that appends to `out`.
    public static func write(into out: inout ByteBuffer, _ body: (inout JSONWriter) -> Void) {
        withUnsafeMutablePointer(to: &out) { p in
            var writer = JSONWriter(out: p)
            body(&writer)
        }
    }

    public mutating func object(_ body: (inout JSONWriter) -> Void) {
        container(open: UInt8(ascii: "{"), close: UInt8(ascii: "}"), body)
    }

    public mutating func array(_ body: (inout JSONWriter) -> Void) {
        container(open: UInt8(ascii: "["), close: UInt8(ascii: "]"), body)
    }

    /// Writes an object key; a value must follow.
    public mutating func key(_ name: StaticString) {
        key(UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
    }

    public mutating func key(_ name: String) {
        var name = name
        name.withUTF8 { key(UnsafeRawBufferPointer($0)) }
    }

    public mutating func key(_ bytes: UnsafeRawBufferPointer) {
        precondition(!afterKey, "JSONWriter: a key must be followed by a value")
        if needsComma { buffer.append(UInt8(ascii: ",")) }
        appendString(bytes)
        buffer.append(UInt8(ascii: ":"))
        afterKey = true
    }

    public mutating func value(_ s: StaticString) {
        value(bytes: UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    public mutating func value(_ s: String) {
        var s = s
        s.withUTF8 { value(bytes: UnsafeRawBufferPointer($0)) }
    }

    /// Writes bytes as a JSON string.
    public mutating func value(bytes: UnsafeRawBufferPointer) {
        beginValue()
        appendString(bytes)
    }

    public mutating func value(_ n: Int) {
        beginValue()
        buffer.appendDecimal(n)
    }

    public mutating func value(_ n: UInt64) {
        beginValue()
        buffer.appendDecimal(n)
    }

    /// Writes a number; NaN and infinities, which JSON cannot express, are written as `null`.
    public mutating func value(_ x: Double) {
        beginValue()
        if !x.isFinite {
            buffer.append("null")
        } else if x == x.rounded(), abs(x) < 1e15 {
            buffer.appendDecimal(Int(x))
        } else {
            buffer.append(x.description)   // Swift's shortest round-trip form is valid JSON ("1e-05", "0.25")
        }
    }

    public mutating func value(_ b: Bool) {
        beginValue()
        buffer.append(b ? "true" : "false")
    }

    public mutating func null() {
        beginValue()
        buffer.append("null")
    }

    // Key-and-value shorthands.
    public mutating func field(_ name: StaticString, _ v: StaticString) { key(name); value(v) }
    public mutating func field(_ name: StaticString, _ v: String) { key(name); value(v) }
    public mutating func field(_ name: StaticString, _ v: Int) { key(name); value(v) }
    public mutating func field(_ name: StaticString, _ v: UInt64) { key(name); value(v) }
    public mutating func field(_ name: StaticString, _ v: Double) { key(name); value(v) }
    public mutating func field(_ name: StaticString, _ v: Bool) { key(name); value(v) }

    // MARK: - Internals

    private mutating func beginValue() {
        if afterKey {
            afterKey = false
        } else if needsComma {
            buffer.append(UInt8(ascii: ","))
        }
        needsComma = true
    }

    private mutating func container(open: UInt8, close: UInt8, _ body: (inout JSONWriter) -> Void) {
        beginValue()
        buffer.append(open)
        needsComma = false
        body(&self)
        precondition(!afterKey, "JSONWriter: a key must be followed by a value")
        buffer.append(close)
        needsComma = true
    }

    private mutating func appendString(_ bytes: UnsafeRawBufferPointer) {
        buffer.reserve(bytes.count + 2)
        buffer.append(UInt8(ascii: "\""))
        var i = 0
        let n = bytes.count
        while i < n {
            let c = bytes[i]
            if c < 0x80 {
                switch c {
                case UInt8(ascii: "\""): buffer.append("\\\"")
                case UInt8(ascii: "\\"): buffer.append("\\\\")
                case UInt8(ascii: "\n"): buffer.append("\\n")
                case UInt8(ascii: "\r"): buffer.append("\\r")
                case UInt8(ascii: "\t"): buffer.append("\\t")
                case 0x08: buffer.append("\\b")
                case 0x0C: buffer.append("\\f")
                case 0..<0x20:
                    buffer.append("\\u00")
                    buffer.append(Hex.lower(c >> 4))
                    buffer.append(Hex.lower(c & 0x0F))
                default: buffer.append(c)
                }
                i += 1
                continue
            }
            let length = JSONWriter.validUTF8SequenceLength(bytes, at: i)
            if length == 0 {
                buffer.append("\u{FFFD}")
                i += 1
            } else {
                buffer.append(UnsafeRawBufferPointer(rebasing: bytes[i..<i + length]))
                i += length
            }
        }
        buffer.append(UInt8(ascii: "\""))
    }

    /// The length of the well-formed UTF-8 sequence starting at `i` (Unicode Table 3-7), or 0 if there is none.
    static func validUTF8SequenceLength(_ b: UnsafeRawBufferPointer, at i: Int) -> Int {
        let c0 = b[i]
        func cont(_ j: Int, _ lo: UInt8 = 0x80, _ hi: UInt8 = 0xBF) -> Bool {
            j < b.count && b[j] >= lo && b[j] <= hi
        }
        switch c0 {
        case 0xC2...0xDF:
            return cont(i + 1) ? 2 : 0
        case 0xE0:
            return cont(i + 1, 0xA0) && cont(i + 2) ? 3 : 0
        case 0xE1...0xEC, 0xEE...0xEF:
            return cont(i + 1) && cont(i + 2) ? 3 : 0
        case 0xED:
            return cont(i + 1, 0x80, 0x9F) && cont(i + 2) ? 3 : 0
        case 0xF0:
            return cont(i + 1, 0x90) && cont(i + 2) && cont(i + 3) ? 4 : 0
        case 0xF1...0xF3:
            return cont(i + 1) && cont(i + 2) && cont(i + 3) ? 4 : 0
        case 0xF4:
            return cont(i + 1, 0x80, 0x8F) && cont(i + 2) && cont(i + 3) ? 4 : 0
        default:
            return 0
        }
    }
}

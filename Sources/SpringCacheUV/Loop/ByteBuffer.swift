/// A growable byte buffer with a stable base address between growths; the unit of reading and writing.
///
/// Why not `[UInt8]`: appends here never check uniqueness or trigger copy-on-write, and the storage can
/// be handed to `uv_write` as is. The owner must not grow a buffer while a write from it is in flight.
///
/// Why non-copyable: the buffer owns malloc'd memory, so a copy would alias it and the first to free it
/// would leave the other dangling. As a `~Copyable` value it has exactly one owner, frees its storage when
/// that owner lets go of it, and moves (`consume`, `take`) instead of being copied.
public struct ByteBuffer: ~Copyable {
    public private(set) var base: UnsafeMutablePointer<UInt8>
    public private(set) var capacity: Int
    public var count: Int = 0

    public init(capacity: Int = 4096) {
        self.capacity = max(capacity, 16)
        base = .allocate(capacity: self.capacity)
    }

    deinit {
        base.deallocate()
    }

    /// Replaces the storage with a fresh one of `capacity` bytes, freeing the old; for giving back memory a
    /// large answer made the buffer grow to.
    public mutating func shrink(to capacity: Int) {
        self = ByteBuffer(capacity: capacity)
    }

    public var isEmpty: Bool { count == 0 }
    public var readable: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    public mutating func reserve(_ extra: Int) {
        let need = count + extra
        if need <= capacity { return }
        var newCapacity = capacity * 2
        while newCapacity < need { newCapacity *= 2 }
        let newBase = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        newBase.update(from: base, count: count)
        base.deallocate()
        base = newBase
        capacity = newCapacity
    }

    @inline(__always)
    public mutating func append(_ byte: UInt8) {
        if count == capacity { reserve(1) }
        base[count] = byte
        count += 1
    }

    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        reserve(bytes.count)
        UnsafeMutableRawPointer(base + count).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        count += bytes.count
    }

    public mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    public mutating func append(_ s: StaticString) {
        append(UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    public mutating func append(_ s: String) {
        var s = s
        s.withUTF8 { append(UnsafeRawBufferPointer($0)) }
    }

    /// Appends the decimal digits of `value` without allocating.
    public mutating func appendDecimal(_ value: Int) {
        if value < 0 {
            append(UInt8(ascii: "-"))
            appendDecimal(UInt64(value.magnitude))
        } else {
            appendDecimal(UInt64(value))
        }
    }

    public mutating func appendDecimal(_ value: UInt64) {
        reserve(20)
        if value == 0 { base[count] = UInt8(ascii: "0"); count += 1; return }
        var v = value
        var digits = 0
        var t = v
        while t > 0 { digits += 1; t /= 10 }
        var i = count + digits - 1
        while v > 0 {
            base[i] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: v % 10)
            v /= 10
            i -= 1
        }
        count += digits
    }

    /// Drops the first `n` bytes, moving the rest to the front.
    public mutating func discardFront(_ n: Int) {
        precondition(n <= count)
        if n == count { count = 0; return }
        UnsafeMutableRawPointer(base).copyMemory(from: base + n, byteCount: count - n)
        count -= n
    }
}

extension Optional where Wrapped == ByteBuffer {
    /// The bytes held, 0 when there is no buffer; read without consuming the optional.
    public var byteCount: Int {
        switch self {
        case .some(let buffer): return buffer.count
        case .none: return 0
        }
    }

    /// The storage size, 0 when there is no buffer.
    public var byteCapacity: Int {
        switch self {
        case .some(let buffer): return buffer.capacity
        case .none: return 0
        }
    }

    /// Where the bytes start; nil when there is no buffer.
    public var bytesBase: UnsafeMutablePointer<UInt8>? {
        switch self {
        case .some(let buffer): return buffer.base
        case .none: return nil
        }
    }
}

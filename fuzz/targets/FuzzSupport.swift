// fuzz/: helpers shared by every libFuzzer target (compiled into each target's binary, not into the library).

#if canImport(Glibc)
import Glibc
#endif

/// Fails the run with a message libFuzzer records next to the crashing input; `precondition` would lose the
/// message in an optimised build.
@inline(never)
func fuzzFail(_ message: String, file: StaticString = #file, line: UInt = #line) -> Never {
    fputs("FUZZ CHECK FAILED at \(file):\(line): \(message)\n", stderr)
    abort()
}

@inline(__always)
func fuzzCheck(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
               file: StaticString = #file, line: UInt = #line) {
    if !condition() { fuzzFail(message(), file: file, line: line) }
}

/// Reads parameters off the front of the input, then leaves the rest as the payload; every read has a default
/// when the input is exhausted, so every input is usable.
struct FuzzInput {
    let bytes: UnsafeRawBufferPointer
    private(set) var offset = 0

    init(_ data: UnsafePointer<UInt8>, _ size: Int) {
        bytes = UnsafeRawBufferPointer(start: data, count: size)
    }

    mutating func byte() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func uint16() -> Int { Int(byte()) << 8 | Int(byte()) }

    /// The bytes not read yet.
    var rest: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: bytes[min(offset, bytes.count)...]) }
}

/// A copy of `bytes` in an allocation of exactly its size, so AddressSanitizer catches a read one past the end
/// (an `Array` usually has spare capacity after its last element). The caller deallocates it.
func exactCopy(_ bytes: UnsafeRawBufferPointer) -> UnsafeMutableRawBufferPointer {
    let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 0), alignment: 1)
    if bytes.count > 0 { copy.copyMemory(from: bytes) }
    return copy
}

/// Runs `body` over an exact-size copy of `bytes`.
func withExactCopy<R>(_ bytes: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    let copy = exactCopy(bytes)
    defer { copy.deallocate() }
    return try body(UnsafeRawBufferPointer(copy))
}

func withExactCopy<R>(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    try bytes.withUnsafeBytes { try withExactCopy($0, body) }
}

func hex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
    return String(decoding: out, as: UTF8.self)
}

// AddressSanitizer's manual poisoning (sanitizer/asan_interface.h): marks bytes a parser has not been given
// yet as unaddressable, so a read past what it was handed is reported even though the memory is allocated.
@_silgen_name("__asan_poison_memory_region")
func asanPoison(_ address: UnsafeRawPointer?, _ size: Int)
@_silgen_name("__asan_unpoison_memory_region")
func asanUnpoison(_ address: UnsafeRawPointer?, _ size: Int)

/// An exact-size copy of a stream whose bytes become readable as they are "received".
struct DeliveredStream {
    let storage: UnsafeMutableRawBufferPointer
    private(set) var received = 0

    init(_ bytes: UnsafeRawBufferPointer) {
        storage = exactCopy(bytes)
        asanPoison(storage.baseAddress, storage.count)
    }

    mutating func receive(upTo end: Int) {
        precondition(end >= received && end <= storage.count)
        asanUnpoison(storage.baseAddress.map { $0 + received }, end - received)
        received = end
    }

    /// The received bytes from `start`.
    func bytes(from start: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(storage)[start..<received])
    }

    func deallocate() {
        asanUnpoison(storage.baseAddress, storage.count)
        storage.deallocate()
    }
}

// fuzz/: ByteBuffer (Sources/SpringCacheUV/Loop/ByteBuffer.swift) driven by a sequence of operations taken
// from the input and compared after each one with a plain [UInt8] model.

#if canImport(Glibc)
import Glibc
#endif

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzByteBuffer(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    var buffer = ByteBuffer(capacity: Int(input.byte()))
    defer { buffer.deallocate() }
    var model: [UInt8] = []
    var steps = 0
    while input.offset < input.bytes.count {
        let op = input.byte()
        switch op % 8 {
        case 0:
            let b = input.byte()
            buffer.append(b)
            model.append(b)
        case 1:
            // Append the next n input bytes (exact-size copy so an over-read of the source is caught).
            let n = min(Int(input.byte()), input.bytes.count - input.offset)
            let chunk = UnsafeRawBufferPointer(rebasing: input.bytes[input.offset..<(input.offset + n)])
            withExactCopy(chunk) { buffer.append($0) }
            model.append(contentsOf: chunk)
            for _ in 0..<n { _ = input.byte() }
        case 2:
            var v: UInt64 = 0
            for _ in 0..<8 { v = v << 8 | UInt64(input.byte()) }
            let signed = Int(truncatingIfNeeded: v)
            buffer.appendDecimal(signed)
            model.append(contentsOf: Array(String(signed).utf8))
        case 3:
            var v: UInt64 = 0
            for _ in 0..<Int(input.byte() % 9) { v = v << 8 | UInt64(input.byte()) }
            buffer.appendDecimal(v)
            model.append(contentsOf: Array(String(v).utf8))
        case 4:
            let n = model.isEmpty ? 0 : Int(input.byte()) % (model.count + 1)
            buffer.discardFront(n)
            model.removeFirst(n)
        case 5:
            buffer.reserve(Int(input.byte()) * 7)
            fuzzCheck(buffer.capacity >= buffer.count, "capacity below count")
        case 6:
            let s = String(decoding: [input.byte(), input.byte()], as: UTF8.self)
            buffer.append(s)
            model.append(contentsOf: Array(s.utf8))
        default:
            buffer.append("HTTP/1.1 200 OK\r\n" as StaticString)
            model.append(contentsOf: Array("HTTP/1.1 200 OK\r\n".utf8))
        }
        fuzzCheck(buffer.count == model.count && buffer.count <= buffer.capacity, "count \(buffer.count)")
        // The last bytes after every step (where appends land), everything every 16 steps and at the end:
        // comparing all of it each time made the run quadratic.
        let tail = min(model.count, 32)
        fuzzCheck(memcmp(buffer.base + buffer.count - tail, Array(model.suffix(tail)), tail) == 0,
                  "last bytes differ after op \(op % 8)")
        steps += 1
        if steps % 16 == 0 { fuzzCheck(Array(buffer.readable) == model, "contents differ after op \(op % 8)") }
    }
    fuzzCheck(Array(buffer.readable) == model, "contents differ at the end")
    return 0
}

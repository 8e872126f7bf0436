// fuzz/: gRPC Length-Prefixed-Message reassembly, grpc-timeout and grpc-message encoding
// (Sources/SpringCacheUV/Peer/GRPCFraming.swift, GRPCStatus.swift).
//
// Input: a parameter byte (limits), two split seeds, then the DATA bytes of one stream. The stream is fed to
// GRPCMessageDecoder whole, split at two data-derived points, and one byte at a time; each delivery must give
// the same messages and the same failure as a reference reading of the stream written here from
// PROTOCOL-HTTP2.md. The same bytes feed grpc-timeout parsing (against a reference) and the grpc-message
// percent-encoding round trip.

struct FramingOutcome: Equatable {
    var messages: [[UInt8]] = []
    var failure: GRPCFramingFailure?
    /// What finish() says at END_STREAM when no failure came first.
    var finish: GRPCFramingFailure?
}

func referenceFraming(_ b: UnsafeRawBufferPointer, maxBytes: Int, maxMessages: Int,
                      encodingDeclared: Bool) -> FramingOutcome {
    var out = FramingOutcome()
    var pos = 0
    while pos < b.count {
        if out.messages.count >= maxMessages {
            out.failure = .tooManyMessages(limit: maxMessages)
            return out
        }
        guard b.count - pos >= 5 else {
            out.finish = .truncated
            return out
        }
        let flag = b[pos]
        let length = Int(b[pos + 1]) << 24 | Int(b[pos + 2]) << 16 | Int(b[pos + 3]) << 8 | Int(b[pos + 4])
        pos += 5
        if flag == 1 {
            out.failure = encodingDeclared ? .compressionUnsupported : .compressedWithoutEncoding
            return out
        }
        if flag != 0 {
            out.failure = .invalidFlag(flag)
            return out
        }
        if length > maxBytes {
            out.failure = .tooLarge(length: length, limit: maxBytes)
            return out
        }
        guard b.count - pos >= length else {
            out.finish = .truncated
            return out
        }
        out.messages.append(Array(UnsafeRawBufferPointer(rebasing: b[pos..<(pos + length)])))
        pos += length
    }
    return out
}

func feedFraming(_ stream: UnsafeRawBufferPointer, cuts: [Int], maxBytes: Int, maxMessages: Int,
                 encodingDeclared: Bool) -> FramingOutcome {
    var decoder = GRPCMessageDecoder(maxMessageBytes: maxBytes, maxMessages: maxMessages,
                                     encodingDeclared: encodingDeclared)
    var out = FramingOutcome()
    // One copy of the stream whose bytes after the current DATA payload are poisoned, so reading past a
    // payload is caught without an allocation per payload.
    var delivered = DeliveredStream(stream)
    defer { delivered.deallocate() }
    var position = 0
    for end in cuts + [stream.count] where end >= position {
        delivered.receive(upTo: end)
        let failure = decoder.feed(delivered.bytes(from: position))
        position = end
        if let failure = failure {
            out.failure = failure
            out.messages = decoder.messages
            return out
        }
    }
    out.messages = decoder.messages
    out.finish = decoder.finish()
    return out
}

/// grpc-timeout as PROTOCOL-HTTP2.md defines it: 1 to 8 ASCII digits, then one of H M S m u n; milliseconds
/// rounded up.
func referenceTimeout(_ b: [UInt8]) -> Int64? {
    guard b.count >= 2, b.count <= 9 else { return nil }
    var value: Int64 = 0
    for c in b.dropLast() {
        guard c >= 0x30 && c <= 0x39 else { return nil }
        value = value * 10 + Int64(c - 0x30)
    }
    switch b.last! {
    case UInt8(ascii: "H"): return value * 3_600_000
    case UInt8(ascii: "M"): return value * 60_000
    case UInt8(ascii: "S"): return value * 1000
    case UInt8(ascii: "m"): return value
    case UInt8(ascii: "u"): return value / 1000 + (value % 1000 == 0 ? 0 : 1)
    case UInt8(ascii: "n"): return value / 1_000_000 + (value % 1_000_000 == 0 ? 0 : 1)
    default: return nil
    }
}

func checkTimeouts(_ b: UnsafeRawBufferPointer) {
    // Every prefix of up to 10 bytes of the stream as a header value.
    for k in 0...min(b.count, 10) {
        let value = Array(UnsafeRawBufferPointer(rebasing: b[0..<k]))
        let got = withExactCopy(value) { GRPCTimeout.parse($0) }
        fuzzCheck(got == referenceTimeout(value), "grpc-timeout \(hex(value)): \(String(describing: got))")
    }
    // encode never shortens a deadline, stays within 8 digits, and parses back.
    guard b.count >= 8 else { return }
    var v: UInt64 = 0
    for k in 0..<8 { v = v << 8 | UInt64(b[k]) }
    let millis = Int64(bitPattern: v) >> Int64(b[7] % 64)
    let text = GRPCTimeout.encode(millis: millis)
    fuzzCheck(text.utf8.count >= 2 && text.utf8.count <= 9, "encode(\(millis)) = \(text)")
    guard let back = GRPCTimeout.parse(text) else { fuzzFail("encode(\(millis)) = \(text) does not parse") }
    let wanted = max(millis, 0)
    fuzzCheck(back >= min(wanted, 99_999_999 * 3_600_000), "encode(\(millis)) = \(text) shortens it to \(back)")
    if wanted <= 99_999_999 { fuzzCheck(back == wanted, "encode(\(millis)) = \(text) is not exact") }
}

func checkStatusMessage(_ b: UnsafeRawBufferPointer) {
    // Decoding arbitrary bytes never traps; encoding a string yields printable ASCII that decodes back.
    _ = withExactCopy(b) { GRPCStatusMessage.decode($0) }
    let s = String(decoding: b, as: UTF8.self)
    let encoded = GRPCStatusMessage.encode(s)
    for c in encoded.utf8 { fuzzCheck(c >= 0x20 && c <= 0x7E, "grpc-message byte \(c) not printable") }
    fuzzCheck(GRPCStatusMessage.decode(encoded) == s, "grpc-message round trip for \(hex(Array(b)))")
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGRPCFraming(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let params = input.byte()
    let seedA = input.uint16()
    let seedB = input.uint16()
    let stream = input.rest
    let limits = [0, 1, 5, 16, 100, 1 << 22, Int(UInt32.max) - 1, Int.max]
    let maxBytes = limits[Int(params & 7)]
    let maxMessages = 1 + Int(params >> 3 & 3)
    let encodingDeclared = params & 0x20 != 0

    let reference = referenceFraming(stream, maxBytes: maxBytes, maxMessages: maxMessages,
                                     encodingDeclared: encodingDeclared)
    let n = stream.count
    let a = n == 0 ? 0 : seedA % (n + 1)
    let b = n == 0 ? 0 : seedB % (n + 1)
    let deliveries: [(String, [Int])] = [("whole", []), ("split", [min(a, b), max(a, b)]),
                                         ("bytewise", Array(0..<n)), ("empty payloads", [0, 0, n, n])]
    for (name, cuts) in deliveries {
        let got = feedFraming(stream, cuts: cuts, maxBytes: maxBytes, maxMessages: maxMessages,
                              encodingDeclared: encodingDeclared)
        fuzzCheck(got == reference, "\(name) \(cuts): \(got) vs reference \(reference)")
    }
    checkTimeouts(stream)
    checkStatusMessage(stream)
    return 0
}

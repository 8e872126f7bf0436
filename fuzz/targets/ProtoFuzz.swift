// fuzz/: the protobuf decoder (Sources/SpringCacheUV/Peer/ProtoWire.swift, ProtoMessages.swift).
//
// The whole input is decoded as each of the six messages. A decode either throws ProtoDecodeError with an
// offset inside the input, or returns a message whose encoding is canonical: encode(decode(x)) has the size
// `encodedSize` promised, decodes to the same message, and encodes to the same bytes again. Strict UTF-8
// validation is compared with the standard library's validating String initialiser, and varints written
// from the input's bytes must read back.

func roundTrip<M: ProtoMessage>(_ type: M.Type, _ bytes: UnsafeRawBufferPointer) -> Bool {
    let message: M
    do {
        message = try M.decode(bytes)
    } catch let error as ProtoDecodeError {
        fuzzCheck(error.offset >= 0 && error.offset <= bytes.count, "\(M.self): error offset \(error.offset)")
        fuzzCheck(!error.description.isEmpty, "empty description")
        return false
    } catch {
        fuzzFail("\(M.self): unexpected error type \(error)")
    }
    let encoded = message.encoded()
    fuzzCheck(encoded.count == message.encodedSize, "\(M.self): encodedSize \(message.encodedSize) vs \(encoded.count)")
    fuzzCheck(encoded.count <= bytes.count, "\(M.self): canonical encoding longer than the input")
    let again: M
    do {
        again = try withExactCopy(encoded) { try M.decode($0) }
    } catch {
        fuzzFail("\(M.self): own encoding \(hex(encoded)) does not decode: \(error)")
    }
    fuzzCheck(again == message, "\(M.self): re-decode differs for \(hex(encoded))")
    fuzzCheck(again.encoded() == encoded, "\(M.self): encoding not stable")
    return true
}

/// Walks the input as a generic message: every field is skipped, offsets only grow and stay in bounds.
func walk(_ bytes: UnsafeRawBufferPointer) {
    var reader = ProtoReader(bytes)
    var last = 0
    do {
        while let (field, wireType) = try reader.nextTag() {
            fuzzCheck(field >= 1 && field <= 536_870_911, "field \(field)")
            try reader.skip(wireType)
            fuzzCheck(reader.offset > last && reader.offset <= bytes.count, "skip offset \(reader.offset)")
            last = reader.offset
        }
        fuzzCheck(reader.offset == bytes.count, "walk ended at \(reader.offset) of \(bytes.count)")
    } catch let error as ProtoDecodeError {
        fuzzCheck(error.offset >= 0 && error.offset <= bytes.count, "walk error offset \(error.offset)")
    } catch {
        fuzzFail("unexpected error \(error)")
    }
}

func checkVarints(_ bytes: UnsafeRawBufferPointer) {
    var i = 0
    while i + 8 <= bytes.count {
        var v: UInt64 = 0
        for k in 0..<8 { v = v << 8 | UInt64(bytes[i + k]) }
        // Vary the magnitude so every varint length occurs.
        v >>= UInt64(bytes[i] % 64)
        var buffer = ByteBuffer(capacity: 16)
        ProtoWriter.appendVarint(v, to: &buffer)
        fuzzCheck(buffer.count == ProtoWriter.varintSize(v), "varintSize(\(v)) \(ProtoWriter.varintSize(v))")
        let back = withExactCopy(buffer.readable) { raw -> UInt64? in
            var reader = ProtoReader(raw)
            return try? reader.readVarint()
        }
        buffer.deallocate()
        fuzzCheck(back == v, "varint \(v) read back as \(String(describing: back))")
        i += 8
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzProto(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let copy = exactCopy(UnsafeRawBufferPointer(start: data, count: size))
    defer { copy.deallocate() }
    let bytes = UnsafeRawBufferPointer(copy)
    _ = roundTrip(GetRequest.self, bytes)
    _ = roundTrip(GetResponse.self, bytes)
    _ = roundTrip(SetRequest.self, bytes)
    _ = roundTrip(SetResponse.self, bytes)
    _ = roundTrip(DeleteRequest.self, bytes)
    _ = roundTrip(DeleteResponse.self, bytes)
    walk(bytes)
    let valid = String(validating: bytes, as: UTF8.self) != nil
    fuzzCheck(UTF8Validation.isValid(bytes) == valid, "UTF8Validation says \(!valid) for \(hex(Array(bytes)))")
    checkVarints(bytes)
    return 0
}

import XCTest
@testable import SpringCacheUV

// Support for the generated ProtoGoldenVectors.swift (Tests/golden/make_golden.py).

struct ProtoGolden {
    let name: String
    let message: any ProtoMessage
    let hex: String
}

struct ProtoGoldenDigest {
    let name: String
    let message: any ProtoMessage
    let count: Int
    let fnv1a64: UInt64
    let prefixHex: String
}

struct ProtoGoldenForeign {
    let name: String
    let message: any ProtoMessage
    let inputHex: String
    let canonicalHex: String
}

/// Bytes from hex; whitespace (as in multi-line literals) is ignored.
func protoGoldenBytes(_ hex: String) -> [UInt8] {
    let digits = hex.unicodeScalars.filter { !$0.properties.isWhitespace }.map { UInt8(ascii: $0) }
    precondition(digits.count % 2 == 0, "odd hex")
    func nibble(_ c: UInt8) -> UInt8 {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: preconditionFailure("bad hex digit")
        }
    }
    return stride(from: 0, to: digits.count, by: 2).map { nibble(digits[$0]) << 4 | nibble(digits[$0 + 1]) }
}

/// The value generator shared with make_golden.py's `pattern`.
func protoGoldenPattern(count: Int, multiplier: Int, offset: Int) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* multiplier &+ offset) }
}

private func hex(_ bytes: [UInt8]) -> String {
    bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
}

private func fnv1a64(_ bytes: [UInt8]) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in bytes {
        h ^= UInt64(b)
        h = h &* 0x100_0000_01B3
    }
    return h
}

/// Encodes `message` with `encode(into:)`, checking `encodedSize` on the way.
private func encode<M: ProtoMessage>(_ message: M, file: StaticString = #filePath, line: UInt = #line) -> [UInt8] {
    var buffer = ByteBuffer(capacity: 16)
    buffer.append(UInt8(0xEE))   // a prefix, as the gRPC framer leaves: encode must append, not overwrite
    encode(message, into: &buffer)
    let bytes = Array(buffer.readable.dropFirst())
    XCTAssertEqual(bytes.count, message.encodedSize, "encodedSize", file: file, line: line)
    XCTAssertEqual(bytes, message.encoded(), "encoded()", file: file, line: line)
    return bytes
}

private func encode<M: ProtoMessage>(_ message: M, into buffer: inout ByteBuffer) {
    message.encode(into: &buffer)
}

/// Decodes `bytes` as the type of `like` and compares with it.
private func checkDecode<M: ProtoMessage>(_ bytes: [UInt8], equals expected: M, _ name: String,
                                          file: StaticString = #filePath, line: UInt = #line) {
    do {
        let decoded = try M.decode(bytes)
        XCTAssertEqual(decoded, expected, name, file: file, line: line)
    } catch {
        XCTFail("\(name): \(error)", file: file, line: line)
    }
}

private func decodeError<M: ProtoMessage>(_ type: M.Type, _ bytes: [UInt8]) -> ProtoDecodeError? {
    do {
        _ = try M.decode(bytes)
        return nil
    } catch let error as ProtoDecodeError {
        return error
    } catch {
        XCTFail("unexpected error type \(error)")
        return nil
    }
}

final class ProtoCodecTests: XCTestCase {
    func testGoldenVectorsEncode() {
        XCTAssertGreaterThan(protoGoldenVectors.count, 30)
        for vector in protoGoldenVectors {
            func check<M: ProtoMessage>(_ message: M) {
                XCTAssertEqual(hex(encode(message)), hex(protoGoldenBytes(vector.hex)), vector.name)
            }
            check(vector.message)
        }
    }

    func testGoldenVectorsDecode() {
        for vector in protoGoldenVectors {
            func check<M: ProtoMessage>(_ message: M) {
                checkDecode(protoGoldenBytes(vector.hex), equals: message, vector.name)
            }
            check(vector.message)
        }
    }

    func testGoldenDigestsOfLargeMessages() {
        for vector in protoGoldenDigests {
            func check<M: ProtoMessage>(_ message: M) {
                let bytes = encode(message)
                XCTAssertEqual(bytes.count, vector.count, vector.name)
                XCTAssertEqual(hex(Array(bytes.prefix(32))), vector.prefixHex, vector.name)
                XCTAssertEqual(fnv1a64(bytes), vector.fnv1a64, vector.name)
                checkDecode(bytes, equals: message, vector.name)
            }
            check(vector.message)
        }
    }

    /// Unknown fields of every wire type, fields out of order, repeats (last wins), odd but legal encodings:
    /// we must read them as Python's protobuf does, and re-encode them canonically.
    func testForeignInputsDecodeLikeProtobuf() {
        XCTAssertGreaterThan(protoGoldenForeign.count, 20)
        for vector in protoGoldenForeign {
            func check<M: ProtoMessage>(_ message: M) {
                checkDecode(protoGoldenBytes(vector.inputHex), equals: message, vector.name)
                XCTAssertEqual(hex(encode(message)), hex(protoGoldenBytes(vector.canonicalHex)), vector.name)
            }
            check(vector.message)
        }
    }

    // MARK: Malformed input

    private struct Malformed {
        let name: String
        let decode: ([UInt8]) -> ProtoDecodeError?
        let hex: String
        let kind: ProtoDecodeError.Kind
        let offset: Int
    }

    private static func as_<M: ProtoMessage>(_ type: M.Type) -> ([UInt8]) -> ProtoDecodeError? {
        { decodeError(type, $0) }
    }

    func testMalformedInputsThrowClearErrors() {
        let getRequest = Self.as_(GetRequest.self)
        let getResponse = Self.as_(GetResponse.self)
        let setRequest = Self.as_(SetRequest.self)
        let setResponse = Self.as_(SetResponse.self)
        let deleteRequest = Self.as_(DeleteRequest.self)
        let deleteResponse = Self.as_(DeleteResponse.self)
        let cases: [Malformed] = [
            Malformed(name: "tag truncated", decode: getRequest, hex: "80", kind: .truncatedVarint, offset: 0),
            Malformed(name: "tag truncated after a field", decode: getRequest, hex: "0a0161 92",
                      kind: .truncatedVarint, offset: 3),
            Malformed(name: "varint value missing", decode: getResponse, hex: "10", kind: .truncatedVarint, offset: 1),
            Malformed(name: "varint value truncated", decode: getResponse, hex: "10 ffff",
                      kind: .truncatedVarint, offset: 1),
            Malformed(name: "varint of 11 bytes", decode: getResponse, hex: "10 ffffffffffffffffff8001",
                      kind: .varintOverflow, offset: 1),
            Malformed(name: "10th varint byte beyond 64 bits", decode: setRequest, hex: "20 ffffffffffffffffff02",
                      kind: .varintOverflow, offset: 1),
            Malformed(name: "bool varint of 11 bytes", decode: setResponse, hex: "08 8080808080808080808000",
                      kind: .varintOverflow, offset: 1),
            Malformed(name: "length past the end", decode: getRequest, hex: "0a 05 6162",
                      kind: .truncatedField(field: 1), offset: 0),
            Malformed(name: "length past the end (bytes)", decode: getResponse, hex: "0a 01",
                      kind: .truncatedField(field: 1), offset: 0),
            Malformed(name: "huge length", decode: setRequest, hex: "1a ffffffffffffffff7f 00",
                      kind: .truncatedField(field: 3), offset: 0),
            Malformed(name: "length is max uint64", decode: setRequest, hex: "1a ffffffffffffffffff01",
                      kind: .truncatedField(field: 3), offset: 0),
            Malformed(name: "length truncated", decode: getRequest, hex: "12 80", kind: .truncatedVarint, offset: 1),
            Malformed(name: "unknown length-delimited past the end", decode: getRequest, hex: "0a0161 3a 02 00",
                      kind: .truncatedField(field: 7), offset: 3),
            Malformed(name: "unknown fixed32 truncated", decode: setResponse, hex: "15 010203",
                      kind: .truncatedField(field: 2), offset: 0),
            Malformed(name: "unknown fixed64 truncated", decode: deleteResponse, hex: "0801 11 01020304050607",
                      kind: .truncatedField(field: 2), offset: 2),
            Malformed(name: "unknown varint truncated", decode: deleteRequest, hex: "18 ff",
                      kind: .truncatedVarint, offset: 1),
            Malformed(name: "group start, known field", decode: getRequest, hex: "0b 0c",
                      kind: .groupNotSupported(field: 1), offset: 0),
            Malformed(name: "group start, unknown field", decode: getRequest, hex: "33 08 01 34",
                      kind: .groupNotSupported(field: 6), offset: 0),
            Malformed(name: "group end", decode: setResponse, hex: "0801 0c",
                      kind: .groupNotSupported(field: 1), offset: 2),
            Malformed(name: "wire type 6", decode: getResponse, hex: "0e",
                      kind: .invalidWireType(field: 1, wireType: 6), offset: 0),
            Malformed(name: "wire type 7", decode: getResponse, hex: "0a00 7f",
                      kind: .invalidWireType(field: 15, wireType: 7), offset: 2),
            Malformed(name: "field number 0", decode: getRequest, hex: "00", kind: .invalidFieldNumber(0), offset: 0),
            Malformed(name: "field number 0, length-delimited", decode: getRequest, hex: "02 00",
                      kind: .invalidFieldNumber(0), offset: 0),
            Malformed(name: "field number 2^29", decode: getRequest, hex: "8080808010 00",
                      kind: .invalidFieldNumber(1 << 29), offset: 0),
            Malformed(name: "string field as varint", decode: getRequest, hex: "08 01",
                      kind: .wrongWireType(message: "GetRequest", field: 1, expected: .lengthDelimited, got: .varint),
                      offset: 0),
            Malformed(name: "key as fixed32", decode: deleteRequest, hex: "15 01020304",
                      kind: .wrongWireType(message: "DeleteRequest", field: 2, expected: .lengthDelimited,
                                           got: .fixed32), offset: 0),
            Malformed(name: "bytes field as fixed64", decode: getResponse, hex: "09 0102030405060708",
                      kind: .wrongWireType(message: "GetResponse", field: 1, expected: .lengthDelimited,
                                           got: .fixed64), offset: 0),
            Malformed(name: "int64 as length-delimited", decode: getResponse, hex: "12 00",
                      kind: .wrongWireType(message: "GetResponse", field: 2, expected: .varint,
                                           got: .lengthDelimited), offset: 0),
            Malformed(name: "bool as fixed32", decode: setRequest, hex: "2d 01000000",
                      kind: .wrongWireType(message: "SetRequest", field: 5, expected: .varint, got: .fixed32),
                      offset: 0),
            Malformed(name: "ok as length-delimited", decode: setResponse, hex: "0a 00",
                      kind: .wrongWireType(message: "SetResponse", field: 1, expected: .varint,
                                           got: .lengthDelimited), offset: 0),
            Malformed(name: "invalid UTF-8: lone 0xFF", decode: getRequest, hex: "0a01ff",
                      kind: .invalidUTF8(message: "GetRequest", field: 1), offset: 0),
            Malformed(name: "invalid UTF-8: lone continuation", decode: getRequest, hex: "1201 61 0a 02 61 80",
                      kind: .invalidUTF8(message: "GetRequest", field: 1), offset: 3),
            Malformed(name: "invalid UTF-8: overlong NUL", decode: setRequest, hex: "0a 02 c080",
                      kind: .invalidUTF8(message: "SetRequest", field: 1), offset: 0),
            Malformed(name: "invalid UTF-8: overlong 3-byte", decode: setRequest, hex: "0a 03 e08080",
                      kind: .invalidUTF8(message: "SetRequest", field: 1), offset: 0),
            Malformed(name: "invalid UTF-8: surrogate", decode: deleteRequest, hex: "0a 03 eda080",
                      kind: .invalidUTF8(message: "DeleteRequest", field: 1), offset: 0),
            Malformed(name: "invalid UTF-8: above U+10FFFF", decode: deleteRequest, hex: "0a 04 f4908080",
                      kind: .invalidUTF8(message: "DeleteRequest", field: 1), offset: 0),
            Malformed(name: "invalid UTF-8: truncated sequence", decode: getRequest, hex: "0a 02 e282",
                      kind: .invalidUTF8(message: "GetRequest", field: 1), offset: 0),
        ]
        for malformed in cases {
            guard let error = malformed.decode(protoGoldenBytes(malformed.hex)) else {
                XCTFail("\(malformed.name): decoded without error")
                continue
            }
            XCTAssertEqual(error.kind, malformed.kind, malformed.name)
            XCTAssertEqual(error.offset, malformed.offset, malformed.name)
            XCTAssertTrue(error.description.hasPrefix("protobuf decode error at byte"), error.description)
        }
    }


    func testKeysAreBytesThatNeedNotBeUTF8() {
        // The key field is `string` in the .proto, but a key is a byte string end to end (issue 10, finding 4):
        // invalid UTF-8 is carried unchanged, and keys differing in any byte stay different.
        for raw in [[0x80], [0xFF], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0x61, 0x00, 0x62], [0xE2, 0x82]] as [[UInt8]] {
            let key = CacheKey(raw)
            XCTAssertEqual(try GetRequest.decode(GetRequest(group: "g", key: key).encoded()).key, key)
            XCTAssertEqual(try DeleteRequest.decode(DeleteRequest(group: "g", key: key).encoded()).key, key)
            let set = SetRequest(group: "g", key: key, value: [1], expireSeconds: 5, isHot: true)
            XCTAssertEqual(try SetRequest.decode(set.encoded()), set)
        }
        XCTAssertNotEqual(CacheKey([0x80]), CacheKey([0xFF]))
        XCTAssertNotEqual(CacheKey("\u{E9}"), CacheKey("e\u{301}"), "canonically equivalent strings are different keys")
    }

    func testErrorMessagesNameTheProblem() {
        let error = decodeError(GetResponse.self, protoGoldenBytes("12 00"))
        XCTAssertEqual(error?.description,
                       "protobuf decode error at byte 0: GetResponse field 2 must have wire type varint, "
                           + "got length-delimited")
        XCTAssertEqual(decodeError(GetRequest.self, protoGoldenBytes("0a01ff"))?.description,
                       "protobuf decode error at byte 0: GetRequest field 1 is a string but is not valid UTF-8")
        XCTAssertEqual(decodeError(GetRequest.self, protoGoldenBytes("0b"))?.description,
                       "protobuf decode error at byte 0: field 1 uses the group wire type, "
                           + "which proto3 does not support")
    }

    // MARK: Varints and UTF-8

    func testVarintSizes() {
        let cases: [(UInt64, Int)] = [
            (0, 1), (1, 1), (127, 1), (128, 2), (16_383, 2), (16_384, 3), (UInt64(UInt32.max), 5),
            (1 << 56 - 1, 8), (1 << 56, 9), (1 << 63 - 1, 9), (1 << 63, 10), (UInt64.max, 10),
        ]
        for (value, size) in cases {
            XCTAssertEqual(ProtoWriter.varintSize(value), size, "\(value)")
            var buffer = ByteBuffer(capacity: 16)
            ProtoWriter.appendVarint(value, to: &buffer)
            XCTAssertEqual(buffer.count, size, "\(value)")
            var reader = ProtoReader(buffer.readable)
            XCTAssertEqual(try reader.readVarint(), value)
            XCTAssertEqual(reader.offset, size)
        }
    }

    /// Our validator must agree with the standard library's own decoding on all short sequences.
    func testUTF8ValidationAgreesWithStandardLibrary() {
        func stdlibValid(_ bytes: [UInt8]) -> Bool {
            var iterator = bytes.makeIterator()
            var decoder = UTF8()
            while true {
                switch decoder.decode(&iterator) {
                case .scalarValue: continue
                case .emptyInput: return true
                case .error: return false
                }
            }
        }
        var checked = 0
        var random = SystemRandomNumberGenerator()
        // Every 1- and 2-byte sequence, then random 3- and 4-byte sequences biased to the interesting leads.
        var inputs: [[UInt8]] = (0...255).map { [UInt8($0)] }
        for a in 0...255 { for b in 0...255 { inputs.append([UInt8(a), UInt8(b)]) } }
        for _ in 0..<200_000 {
            let length = Int.random(in: 3...5, using: &random)
            inputs.append((0..<length).map { i in
                i == 0 ? UInt8.random(in: 0xC0...0xFF, using: &random) : UInt8.random(in: 0x70...0xC5, using: &random)
            })
        }
        for input in inputs {
            let ours = input.withUnsafeBytes { UTF8Validation.isValid($0) }
            XCTAssertEqual(ours, stdlibValid(input), "\(input)")
            checked += 1
        }
        XCTAssertEqual(checked, inputs.count)
    }

    // MARK: Randomized

    private func randomString<G: RandomNumberGenerator>(_ random: inout G) -> String {
        let alphabet: [Character] = ["a", "Z", "0", " ", "\u{0}", "é", "鍵", "🔑", "ü", "/"]
        let length = Int.random(in: 0...(Bool.random(using: &random) ? 5 : 300), using: &random)
        return String((0..<length).map { _ in alphabet.randomElement(using: &random)! })
    }

    private func randomBytes<G: RandomNumberGenerator>(_ random: inout G) -> [UInt8] {
        let length = Int.random(in: 0...(Bool.random(using: &random) ? 4 : 20_000), using: &random)
        return (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
    }

    private func randomInt64<G: RandomNumberGenerator>(_ random: inout G) -> Int64 {
        switch Int.random(in: 0..<4, using: &random) {
        case 0: return 0
        case 1: return Int64.random(in: -200...200, using: &random)
        case 2: return Int64(bitPattern: random.next())
        default: return [Int64.min, Int64.max, -1, 1 << 35].randomElement(using: &random)!
        }
    }

    func testRandomizedRoundTrip() throws {
        var random = SystemRandomNumberGenerator()
        for _ in 0..<500 {
            let set = SetRequest(group: randomString(&random), key: randomString(&random),
                                 value: randomBytes(&random), expireSeconds: randomInt64(&random),
                                 isHot: Bool.random(using: &random))
            XCTAssertEqual(try SetRequest.decode(encode(set)), set)
            let get = GetRequest(group: randomString(&random), key: randomString(&random))
            XCTAssertEqual(try GetRequest.decode(encode(get)), get)
            let delete = DeleteRequest(group: randomString(&random), key: randomString(&random))
            XCTAssertEqual(try DeleteRequest.decode(encode(delete)), delete)
            let response = GetResponse(value: randomBytes(&random), expireMillis: randomInt64(&random))
            XCTAssertEqual(try GetResponse.decode(encode(response)), response)
            let ok = Bool.random(using: &random)
            XCTAssertEqual(try SetResponse.decode(encode(SetResponse(ok: ok))).ok, ok)
            XCTAssertEqual(try DeleteResponse.decode(encode(DeleteResponse(ok: ok))).ok, ok)
        }
    }

    /// Truncated, bit-flipped and random inputs either decode or throw; nothing traps.
    func testMutatedInputsNeverCrash() {
        var random = SystemRandomNumberGenerator()
        var thrown = 0
        var decoded = 0
        func attempt(_ bytes: [UInt8]) {
            for decode in [{ _ = try SetRequest.decode($0) }, { _ = try GetResponse.decode($0) },
                           { _ = try GetRequest.decode($0) }, { _ = try SetResponse.decode($0) }]
                as [([UInt8]) throws -> Void] {
                do { try decode(bytes); decoded += 1 } catch is ProtoDecodeError { thrown += 1 } catch {
                    XCTFail("unexpected error \(error)")
                }
            }
        }
        let seeds = protoGoldenVectors.map { protoGoldenBytes($0.hex) }
            + protoGoldenForeign.map { protoGoldenBytes($0.inputHex) }
        for seed in seeds where !seed.isEmpty {
            for cut in 0..<seed.count { attempt(Array(seed.prefix(cut))) }
            for _ in 0..<200 {
                var mutated = seed
                for _ in 0..<Int.random(in: 1...3, using: &random) {
                    let i = Int.random(in: 0..<mutated.count, using: &random)
                    mutated[i] ^= UInt8(1) << UInt8.random(in: 0...7, using: &random)
                }
                attempt(mutated)
            }
        }
        for _ in 0..<5_000 {
            attempt((0..<Int.random(in: 0...24, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) })
        }
        XCTAssertGreaterThan(thrown, 0)
        XCTAssertGreaterThan(decoded, 0)
    }
}

import XCTest
@testable import SpringCacheUV

final class FormDecoderTests: XCTestCase {
    private enum Expect: Equatable {
        case absent
        case value(String)
        case malformed(String)
    }

    private func lookup(_ name: StaticString, _ form: String) -> Expect {
        var scratch = ByteBuffer(capacity: 16)
        scratch.append("junk")   // decoded values land after whatever the scratch already holds
        let result = Array(form.utf8).withUnsafeBytes { FormDecoder.field(name, in: $0, into: &scratch) }
        switch result {
        case .absent:
            XCTAssertEqual(scratch.count, 4)
            return .absent
        case .malformed(let m):
            XCTAssertEqual(scratch.count, 4, "a failed decode must not leave bytes behind")
            return .malformed(m)
        case .value(let r):
            XCTAssertEqual(r.lowerBound, 4)
            return .value(String(decoding: UnsafeRawBufferPointer(rebasing: scratch.readable[r]), as: UTF8.self))
        }
    }

    func testFieldTable() {
        let cases: [(form: String, name: StaticString, expected: Expect)] = [
            ("key=Tom&value=630", "key", .value("Tom")),
            ("key=Tom&value=630", "value", .value("630")),
            ("key=Tom&value=630", "expire", .absent),
            ("key=a+b%20c", "key", .value("a b c")),
            ("key=%2Fa%2fb%3D%26", "key", .value("/a/b=&")),
            ("key=%E2%9C%93", "key", .value("✓")),
            ("key=", "key", .value("")),
            ("key", "key", .value("")),
            ("hot&key=k", "hot", .value("")),
            ("key=first&key=second", "key", .value("first")),
            ("keys=x&key=y", "key", .value("y")),
            ("k=x&ke=y", "key", .absent),
            ("&&key=v&&", "key", .value("v")),
            ("ke%79=v", "key", .value("v")),
            ("a+b=v", "a b", .value("v")),
            ("value=a=b", "value", .value("a=b")),
            ("", "key", .absent),
            ("key=%G1", "key", .malformed("form field \"key\" has a malformed percent-escape \"%G1\"")),
            ("key=ab%4", "key", .malformed("form field \"key\" has a malformed percent-escape \"%4\"")),
            ("key=%", "key", .malformed("form field \"key\" has a malformed percent-escape \"%\"")),
            ("value=%zz&key=ok", "key", .value("ok")),   // another field's bad escape is not this field's problem
            ("k%ZZ=1&key=2", "key", .value("2")),
        ]
        for c in cases {
            XCTAssertEqual(lookup(c.name, c.form), c.expected, "\(c.form) [\(c.name)]")
        }
    }

    func testSeveralFieldsIntoOneScratch() {
        var scratch = ByteBuffer(capacity: 16)
        let form = Array("key=Jack&value=5%2B89+x&expire=10&hot=true".utf8)
        var ranges: [Range<Int>] = []
        form.withUnsafeBytes { f in
            for name: StaticString in ["key", "value", "expire", "hot"] {
                if case .value(let r) = FormDecoder.field(name, in: f, into: &scratch) { ranges.append(r) }
            }
        }
        let values = ranges.map { String(decoding: UnsafeRawBufferPointer(rebasing: scratch.readable[$0]),
                                         as: UTF8.self) }
        XCTAssertEqual(values, ["Jack", "5+89 x", "10", "true"])
    }

    func testPathSegmentDecoding() {
        let cases: [(String, String?)] = [
            ("plain", "plain"),
            ("a%2Fb", "a/b"),
            ("a+b", "a+b"),
            ("%20x%7e", " x~"),
            ("", ""),
            ("%", nil),
            ("a%2", nil),
            ("%xy", nil),
        ]
        for (input, expected) in cases {
            var scratch = ByteBuffer(capacity: 16)
            let r = Array(input.utf8).withUnsafeBytes { FormDecoder.decodePathSegment($0, into: &scratch) }
            let got = r.map { String(decoding: UnsafeRawBufferPointer(rebasing: scratch.readable[$0]), as: UTF8.self) }
            XCTAssertEqual(got, expected, input)
            if expected == nil { XCTAssertEqual(scratch.count, 0) }
        }
    }

    func testAnEncodedKeyRoundTripsThroughThePathDecoder() {
        var scratch = ByteBuffer(capacity: 16)
        let key = "a/b c+d%"
        let encoded = Array(PercentEncoding.encoded(key.utf8).utf8)
        let r = encoded.withUnsafeBytes { FormDecoder.decodePathSegment($0, into: &scratch) }!
        XCTAssertEqual(String(decoding: UnsafeRawBufferPointer(rebasing: scratch.readable[r]), as: UTF8.self), key)
    }
}

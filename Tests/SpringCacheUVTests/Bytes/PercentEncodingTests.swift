import XCTest
@testable import SpringCacheUV

final class PercentEncodingTests: XCTestCase {
    func testUnreservedBytesStayAndEveryOtherBecomesUppercaseHex() {
        let cases: [([UInt8], String)] = [
            (Array("Tom".utf8), "Tom"),
            (Array("AZaz09-._~".utf8), "AZaz09-._~"),
            (Array("a b/c?d#e&f=g+h%".utf8), "a%20b%2Fc%3Fd%23e%26f%3Dg%2Bh%25"),
            (Array("ключ".utf8), "%D0%BA%D0%BB%D1%8E%D1%87"),
            ([0x00, 0x7F, 0x80, 0xFF], "%00%7F%80%FF"),
            ([], ""),
        ]
        for (input, expected) in cases {
            XCTAssertEqual(PercentEncoding.encoded(input), expected, "\(input)")
            XCTAssertEqual(PercentEncoding.needsEncoding(input, keeping: .unreserved),
                           Array(expected.utf8) != input, "\(input)")
        }
    }

    func testPrintableASCIIKeepsSpacesAndPunctuationButNotPercent() {
        XCTAssertEqual(PercentEncoding.encoded(Array("no such key: \"k\"/1".utf8), keeping: .printableASCII),
                       "no such key: \"k\"/1")
        XCTAssertEqual(PercentEncoding.encoded(Array("50% caf\u{E9}\n".utf8), keeping: .printableASCII),
                       "50%25 caf%C3%A9%0A")
        XCTAssertFalse(PercentEncoding.needsEncoding(Array("plain text".utf8), keeping: .printableASCII))
        XCTAssertTrue(PercentEncoding.needsEncoding(Array("100%".utf8), keeping: .printableASCII))
    }

    func testDecodingEitherCaseAndPlusOnlyInForms() {
        let cases: [(String, Bool, [UInt8]?)] = [
            ("a%20b", false, Array("a b".utf8)),
            ("%c3%A9", false, [0xC3, 0xA9]),
            ("a+b", false, Array("a+b".utf8)),
            ("a+b", true, Array("a b".utf8)),
            ("%2B", true, Array("+".utf8)),
            ("%00%ff", false, [0x00, 0xFF]),
            ("", false, []),
            ("100%", false, nil),
            ("%4", false, nil),
            ("%zz", false, nil),
            ("a%2", false, nil),
        ]
        for (input, plus, expected) in cases {
            let got = Array(input.utf8).withUnsafeBytes { PercentEncoding.decoded($0, plusIsSpace: plus) }
            XCTAssertEqual(got, expected, "\(input) plusIsSpace=\(plus)")
        }
    }

    func testRejectReportsTheOffsetOfTheFirstBadEscapeAndKeepPassesItThrough() {
        let input = Array("ok%41%zz%4".utf8)
        var out = [UInt8](repeating: 0, count: input.count)
        let rejected = input.withUnsafeBytes { raw in
            out.withUnsafeMutableBufferPointer {
                PercentEncoding.decode(raw, plusIsSpace: false, malformed: .reject, into: $0.baseAddress!)
            }
        }
        XCTAssertEqual(rejected, .malformed(at: 5))
        let kept = input.withUnsafeBytes { PercentEncoding.decoded($0, malformed: .keep) }
        XCTAssertEqual(kept.map { String(decoding: $0, as: UTF8.self) }, "okA%zz%4")
    }

    func testEveryByteRoundTrips() {
        let all = (0...255).map { UInt8($0) }
        let encoded = Array(PercentEncoding.encoded(all).utf8)
        XCTAssertTrue(encoded.allSatisfy { PercentEncoding.isUnreserved($0) || $0 == UInt8(ascii: "%") })
        XCTAssertEqual(encoded.withUnsafeBytes { PercentEncoding.decoded($0) }, all)
        let status = Array(PercentEncoding.encoded(all, keeping: .printableASCII).utf8)
        XCTAssertEqual(status.withUnsafeBytes { PercentEncoding.decoded($0, malformed: .keep) }, all)
    }
}

final class HexTests: XCTestCase {
    func testDigitsAndValuesAgree() {
        for n in UInt8(0)...15 {
            XCTAssertEqual(Hex.value(Hex.upper(n)), n)
            XCTAssertEqual(Hex.value(Hex.lower(n)), n)
        }
        XCTAssertEqual(String(decoding: (0...15).map { Hex.upper(UInt8($0)) }, as: UTF8.self), "0123456789ABCDEF")
        XCTAssertEqual(String(decoding: (0...15).map { Hex.lower(UInt8($0)) }, as: UTF8.self), "0123456789abcdef")
        XCTAssertEqual(Hex.upper(0x1A), Hex.upper(0x0A), "only the low nibble counts")
    }

    func testOnlyHexDigitsHaveValues() {
        let digits = Set("0123456789abcdefABCDEF".utf8)
        for c in UInt8(0)...255 where !digits.contains(c) {
            XCTAssertNil(Hex.value(c), "byte \(c)")
        }
    }
}

final class ByteCompareTests: XCTestCase {
    private func bytes(_ s: String, _ body: (UnsafeRawBufferPointer) -> Bool) -> Bool {
        Array(s.utf8).withUnsafeBytes(body)
    }

    func testEqualsAndStartsWithLiterals() {
        XCTAssertTrue(bytes("GET") { $0.equals("GET") })
        XCTAssertFalse(bytes("GET") { $0.equals("GETS") })
        XCTAssertFalse(bytes("GETS") { $0.equals("GET") })
        XCTAssertFalse(bytes("get") { $0.equals("GET") }, "case matters")
        XCTAssertTrue(bytes("") { $0.equals("") })
        XCTAssertTrue(UnsafeRawBufferPointer(start: nil, count: 0).equals(""))
        XCTAssertTrue(bytes("application/grpc+proto") { $0.starts(with: "application/grpc") })
        XCTAssertFalse(bytes("application/grp") { $0.starts(with: "application/grpc") })
        XCTAssertTrue(bytes("x") { $0.starts(with: "") })
        XCTAssertTrue(UnsafeRawBufferPointer(start: nil, count: 0).starts(with: ""))
    }

    func testEqualsOtherBytes() {
        XCTAssertTrue(bytes("\"00ff\"") { a in bytes("\"00ff\"") { a.equals($0) } })
        XCTAssertFalse(bytes("\"00ff\"") { a in bytes("\"00fe\"") { a.equals($0) } })
        XCTAssertFalse(bytes("ab") { a in bytes("abc") { a.equals($0) } })
        XCTAssertTrue(UnsafeRawBufferPointer(start: nil, count: 0).equals(UnsafeRawBufferPointer(start: nil, count: 0)))
    }

    func testConstantTimeEqualsIsExact() {
        let token = Array("s3cret".utf8)
        let cases: [(String, Bool)] = [("s3cret", true), ("s3cre", false), ("s3crett", false), ("S3cret", false),
                                       ("", false), ("s3cre\u{0}", false)]
        for (candidate, expected) in cases {
            XCTAssertEqual(bytes(candidate) { ConstantTime.equals($0, token) }, expected, candidate)
        }
        XCTAssertTrue(ConstantTime.equals(UnsafeRawBufferPointer(start: nil, count: 0), []))
    }
}

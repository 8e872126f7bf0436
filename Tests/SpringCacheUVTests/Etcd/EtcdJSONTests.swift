import XCTest

@testable import SpringCacheUV

final class EtcdJSONTests: XCTestCase {
    func testValidDocuments() throws {
        let cases: [(String, JSONValue)] = [
            ("null", .null),
            (" true ", .bool(true)),
            ("false", .bool(false)),
            ("0", .number("0")),
            ("-0", .number("-0")),
            ("12345678901234567890", .number("12345678901234567890")),
            ("-1.5e+10", .number("-1.5e+10")),
            ("2E-3", .number("2E-3")),
            ("\"\"", .string("")),
            ("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", .string("a\"b\\c/d\u{8}\u{C}\n\r\t")),
            ("\"\\u0041\\u00e9\\u20AC\"", .string("Aé€")),
            ("\"\\ud83d\\ude00\"", .string("😀")),
            ("\"héllo 😀\"", .string("héllo 😀")),
            ("\"\\u0000\"", .string("\u{0}")),
            ("[]", .array([])),
            ("[1, [2, []], {}]", .array([.number("1"), .array([.number("2"), .array([])]), .object([:])])),
            ("{\"a\":1,\"b\":{\"c\":[true,null]}}",
             .object(["a": .number("1"), "b": .object(["c": .array([.bool(true), .null])])])),
            ("{\"a\":1,\"a\":2}", .object(["a": .number("2")])),
            ("\n\t\r {}\n", .object([:])),
        ]
        for (text, expected) in cases {
            XCTAssertEqual(try JSONValue.parse(text), expected, text)
        }
    }

    func testInvalidDocuments() {
        let cases: [(String, Int)] = [  // text, offset of the error
            ("", 0),
            ("   ", 3),
            ("nul", 0),
            ("tru e", 0),
            ("[1,]", 3),
            ("[1 2]", 3),
            ("{\"a\" 1}", 5),
            ("{\"a\":1,}", 7),
            ("{a:1}", 1),
            ("01", 1),
            ("-", 1),
            ("1.", 2),
            ("1e", 2),
            ("+1", 0),
            (".5", 0),
            ("\"abc", 4),
            ("\"a\u{1}b\"", 2),
            ("\"\\x\"", 2),
            ("\"\\u12G4\"", 5),
            ("\"\\ud800\"", 7),
            ("\"\\ud800\\u0041\"", 13),
            ("\"\\udc00\"", 7),
            ("[1] [2]", 4),
            ("{} x", 3),
            ("NaN", 0),
            ("[", 1),
            ("{\"a\":[1}", 7),
        ]
        for (text, offset) in cases {
            XCTAssertThrowsError(try JSONValue.parse(text), text) { error in
                XCTAssertEqual((error as? JSONParseError)?.offset, offset, "\(text): \(error)")
            }
        }
    }

    func testInvalidUTF8IsRejected() {
        for bytes: [UInt8] in [[0x22, 0xFF, 0x22], [0x22, 0xC3, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22]] {
            XCTAssertThrowsError(try JSONValue.parse(bytes), "\(bytes)")
        }
    }

    func testDepthIsBounded() {
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        XCTAssertThrowsError(try JSONValue.parse(deep)) { error in
            XCTAssertTrue("\(error)".contains("nesting"), "\(error)")
        }
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        XCTAssertNoThrow(try JSONValue.parse(ok))
        XCTAssertThrowsError(try JSONValue.parse(String(repeating: "[", count: 100_000)))
        XCTAssertThrowsError(try JSONValue.parse("[[1]]", maxDepth: 1))
    }

    func testAccessors() throws {
        let value = try JSONValue.parse(#"{"s":"x","n":"7","i":7,"big":9223372036854775807,"f":1.5,"b":true,"a":[1,2],"z":null}"#)
        XCTAssertEqual(value["s"]?.stringValue, "x")
        XCTAssertEqual(value["i"]?.int64Value, 7)
        XCTAssertEqual(value["big"]?.int64Value, Int64.max)
        XCTAssertNil(value["f"]?.int64Value)
        XCTAssertEqual(value["f"]?.doubleValue, 1.5)
        XCTAssertNil(value["n"]?.int64Value, "a string is not a number")
        XCTAssertEqual(value["b"]?.boolValue, true)
        XCTAssertEqual(value["a"]?[1], .number("2"))
        XCTAssertNil(value["a"]?[2])
        XCTAssertEqual(value["z"]?.isNull, true)
        XCTAssertNil(value["missing"])
        XCTAssertNil(value["s"]?["x"])
    }
}

import Foundation
import XCTest

@testable import SpringCacheUV

final class EtcdBase64Tests: XCTestCase {
    func testRFC4648Vectors() {
        let vectors = [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="),
                       ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy"),
                       ("springcache/members/", "c3ByaW5nY2FjaGUvbWVtYmVycy8=")]
        for (plain, encoded) in vectors {
            XCTAssertEqual(Base64.encode(plain), encoded)
            XCTAssertEqual(Base64.decode(encoded), Array(plain.utf8))
        }
    }

    func testRoundTripsAgainstFoundation() {
        var generator = SystemRandomNumberGenerator()
        for length in 0..<300 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let encoded = Base64.encode(bytes)
            XCTAssertEqual(encoded, Data(bytes).base64EncodedString(), "length \(length)")
            XCTAssertEqual(Base64.decode(encoded), bytes, "length \(length)")
        }
    }

    func testBadInputIsRejected() {
        for bad in ["Zg", "Zg=", "Z===", "Zm9v\n", " Zm9v", "Zm9v====", "Zg==Zg==", "Zm=v", "Zh==", "Zm9=",
                    "Zm-v", "Zm_v", "=Zm9", "Zm9\u{e9}"] {
            XCTAssertNil(Base64.decode(bad), bad)
        }
    }
}

import XCTest
@testable import SpringCacheUV

/// The owner's allocation-free reading of a GetRequest (`PeerService.groupAndKey`, its hot path for fresh
/// hits) must agree with the full decoder (`GetRequest.decode`): same group and key, or nil where the decoder
/// refuses the message (the slow path then says why).
final class PeerServiceGetTests: XCTestCase {
    func testGroupAndKeyAgreesWithTheDecoder() {
        let g = Array("grp".utf8), t = Array("Tom".utf8)
        let cases: [(String, [UInt8], (String, String)?)] = [
            ("group then key", [0x0A, 3] + g + [0x12, 3] + t, ("grp", "Tom")),
            ("key then group", [0x12, 3] + t + [0x0A, 3] + g, ("grp", "Tom")),
            ("a repeated field: the last wins", [0x12, 1, 0x61, 0x12, 1, 0x62, 0x0A, 3] + g, ("grp", "b")),
            ("unknown fields skipped", [0x18, 5, 0x0A, 3] + g + [0x22, 1, 0x7A, 0x12, 3] + t, ("grp", "Tom")),
            ("nothing: both empty", [], ("", "")),
            ("group as a varint", [0x08, 1, 0x12, 3] + t, nil),
            ("key as a fixed32", [0x0A, 3] + g + [0x15, 1, 2, 3, 4], nil),
            ("truncated field", [0x0A, 5] + g, nil),
            ("truncated tag", [0x0A, 3] + g + [0x92], nil),
        ]
        for (name, message, expected) in cases {
            let decoded = try? GetRequest.decode(message)
            let read = message.withUnsafeBytes { bytes in
                PeerService.groupAndKey(bytes).map { (String(decoding: $0.0, as: UTF8.self),
                                                      String(decoding: $0.1, as: UTF8.self)) }
            }
            XCTAssertEqual(read?.0, expected?.0, name)
            XCTAssertEqual(read?.1, expected?.1, name)
            XCTAssertEqual(decoded.map { $0.group }, expected?.0, "the decoder, \(name)")
            XCTAssertEqual(decoded.map { String(decoding: $0.key.bytes, as: UTF8.self) }, expected?.1,
                           "the decoder, \(name)")
        }
    }
}

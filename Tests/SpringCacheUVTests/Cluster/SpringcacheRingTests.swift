import XCTest
@testable import SpringCacheUV

/// springcache's ring, bit for bit (reference/springcache-compat.md, "Its ring"), against vectors from an
/// independent Python implementation (Tests/golden/make_springcache_ring_vectors.py): MD5 and FNV-1 of the
/// points, negative points, owners of keys that wrap around past the last point, several IPs.
final class SpringcacheRingTests: XCTestCase {
    private func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    func testMD5AndFNV1MatchIndependentVectors() {
        for (input, md5, fnv1) in springcacheHashVectors {
            XCTAssertEqual(hex(MD5.digest(Array(input.utf8))), md5, "md5 \(input)")
            XCTAssertEqual(String(decoding: MD5.lowercaseHex(Array(input.utf8)), as: UTF8.self), md5, input)
            Array(input.utf8).withUnsafeBytes { XCTAssertEqual(SpringcacheRing.fnv1_64($0), fnv1, "fnv1 \(input)") }
        }
        // MD5 across its padding boundaries (55, 56, 64 bytes), against the RFC 1321 test suite's last vector.
        let digits = "12345678901234567890123456789012345678901234567890123456789012345678901234567890"
        XCTAssertEqual(hex(MD5.digest(Array(digits.utf8))), "57edf4a22be3c955ac49da2e2107b67a")
        XCTAssertEqual(hex(MD5.digest(Array("abc".utf8))), "900150983cd24fb0d6963f7d28e17f72")
    }

    func testPointsMatchIndependentVectorsIncludingNegativeOnes() {
        var negatives = 0
        for (ip, points) in springcachePointVectors {
            XCTAssertEqual(points.count, SpringcacheRing.replicas)
            for (replica, expected) in points.enumerated() {
                XCTAssertEqual(SpringcacheRing.point(replica: replica, host: ip), expected, "\(ip) point \(replica)")
                if expected < 0 { negatives += 1 }
            }
        }
        XCTAssertGreaterThan(negatives, 0, "the vectors must cover negative points (signed comparison)")
    }

    func testOwnersMatchIndependentVectorsIncludingWrapAround() {
        for (members, keys) in springcacheOwnerVectors {
            let ring = SpringcacheRing(members: members.map { (name: $0.key, host: $0.value) })
            let memberRing = MemberRing(kind: .springcache, members: members.map {
                Member(name: $0.key, peer: HostPort(host: $0.value, port: 8888))
            })
            for (key, hash, owner) in keys {
                let label = "\(members) key \(key)"
                Array(key.utf8).withUnsafeBytes { raw in
                    XCTAssertEqual(SpringcacheRing.keyHash(raw), hash, label)
                    XCTAssertEqual(ring.owner(of: raw).map { ring.members[$0] }, owner, label)
                }
                XCTAssertEqual(memberRing.ownerName(of: key), owner, label)
                XCTAssertEqual(memberRing.ownerName(of: Array(key.utf8)), owner, label)
            }
        }
    }

    /// The ring is keyed by IP: names and ports do not move keys; the member on the same IP takes them over.
    func testIdentityIsTheIPNotTheNameOrPort() {
        let a = MemberRing(kind: .springcache, members: [
            Member(name: "svc1", peer: HostPort(host: "10.0.0.1", port: 8888)),
            Member(name: "svc2", peer: HostPort(host: "10.0.0.2", port: 8888)),
        ])
        let b = MemberRing(kind: .springcache, members: [
            Member(name: "x", peer: HostPort(host: "10.0.0.1", port: 9001)),
            Member(name: "y", peer: HostPort(host: "10.0.0.2", port: 9002)),
        ])
        let rename = ["svc1": "x", "svc2": "y"]
        for i in 0..<2_000 {
            let key = "k\(i * 7919)"
            XCTAssertEqual(a.ownerName(of: key).flatMap { rename[$0] }, b.ownerName(of: key), key)
        }
    }

    func testSharesSumToOneAndEmptyRingOwnsNothing() {
        let ring = SpringcacheRing(members: [("a", "10.0.0.1"), ("b", "10.0.0.2"), ("c", "192.168.1.10")])
        let total = ring.members.map(ring.share(of:)).reduce(0, +)
        XCTAssertEqual(total, 1.0, accuracy: 1e-9)
        XCTAssertEqual(ring.share(of: "nobody"), 0)
        XCTAssertEqual(SpringcacheRing(members: [("a", "10.0.0.1")]).share(of: "a"), 1.0, accuracy: 1e-9)
        XCTAssertNil(SpringcacheRing(members: []).owner(of: UnsafeRawBufferPointer(start: nil, count: 0)))
    }

    func testMembersSharingAnIPAreFound() {
        let shared = SpringcacheRing.sharedHosts([("a-0", "10.0.0.1"), ("a-1", "10.0.0.1"), ("b", "10.0.0.2")])
        XCTAssertEqual(shared.map(\.host), ["10.0.0.1"])
        XCTAssertEqual(shared.first?.names, ["a-0", "a-1"])
        XCTAssertTrue(SpringcacheRing.sharedHosts([("a", "10.0.0.1"), ("b", "10.0.0.2")]).isEmpty)
    }

    /// The default ring is unchanged: a MemberRing of kind rendezvous answers what HashRing answers.
    func testDefaultRingIsTheRendezvousRing() {
        let names = ["node-a", "node-b", "node-c"]
        let members = names.map { Member(name: $0, peer: HostPort(host: "127.0.0.1", port: 1)) }
        let ring = MemberRing(kind: .rendezvous, members: members)
        let plain = HashRing(members: names)
        for i in 0..<1_000 {
            XCTAssertEqual(ring.ownerName(of: "key-\(i)"), plain.ownerName(of: "key-\(i)"))
        }
        XCTAssertEqual(ring.share(of: "node-a"), 1.0 / 3.0, accuracy: 1e-12)
    }
}

import Foundation
import XCTest
@testable import SpringCacheUV

/// The keys "key-0" … "key-999999", spelled once into one flat buffer (building them again for each of the
/// dozen rings the balance test asks about took most of its time in a debug build); views into it, no allocation.
private struct HashRingTestKeys {
    static let count = 1_000_000
    private static let spelled: (bytes: [UInt8], ends: [Int]) = {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count * 10)
        var ends: [Int] = []
        ends.reserveCapacity(count)
        for i in 0..<count {
            bytes.append(contentsOf: "key-\(i)".utf8)
            ends.append(bytes.count)
        }
        return (bytes, ends)
    }()

    func withKey<R>(_ i: Int, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        let start = i == 0 ? 0 : Self.spelled.ends[i - 1]
        return Self.spelled.bytes.withUnsafeBytes { all in
            body(UnsafeRawBufferPointer(rebasing: all[start..<Self.spelled.ends[i]]))
        }
    }

    /// The owner name of every key, as an index into `ring.members`.
    func owners(_ ring: HashRing) -> [Int] {
        var result = [Int](repeating: -1, count: Self.count)
        Self.spelled.bytes.withUnsafeBytes { all in
            var start = 0
            for i in 0..<Self.count {
                let end = Self.spelled.ends[i]
                result[i] = ring.owner(of: UnsafeRawBufferPointer(rebasing: all[start..<end]))!
                start = end
            }
        }
        return result
    }
}

/// groupcache's test hash, "easier to reason about": the decimal number the bytes spell.
private func integerHash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
    bytes.reduce(0) { $0 &* 10 &+ UInt64($1 &- UInt8(ascii: "0")) }
}

private func nodeNames(_ n: Int) -> [String] { (1...n).map { "node-\($0)" } }

final class HashRingTests: XCTestCase {
    // MARK: Fixed hash, fixed owners

    func testHashMatchesIndependentVectors() {
        for (input, fnv, hash) in ringHashVectors {
            Array(input.utf8).withUnsafeBytes { bytes in
                XCTAssertEqual(RingHash.fnv1a64(bytes), fnv, "fnv1a64 \(input)")
                XCTAssertEqual(RingHash.hash(bytes), hash, "hash \(input)")
            }
            XCTAssertEqual(RingHash.hash(input), hash)
        }
        for (input, output) in ringFmixVectors {
            XCTAssertEqual(RingHash.fmix64(input), output)
        }
    }

    /// Owners must be the same in every process on every machine: pinned by vectors from Python.
    func testOwnersMatchIndependentVectors() {
        for (members, expectations) in ringOwnerVectors {
            let ring = HashRing(members: members)
            let shuffled = HashRing(members: members.reversed() + members)   // order and duplicates don't matter
            XCTAssertEqual(ring.members, members.sorted())
            XCTAssertEqual(shuffled.members, ring.members)
            for (key, owner) in expectations {
                XCTAssertEqual(ring.ownerName(of: key), owner, "\(key) on \(members)")
                XCTAssertEqual(shuffled.ownerName(of: key), owner, "\(key) on shuffled \(members)")
            }
        }
    }

    // MARK: API

    func testEmptyAndSingleMember() {
        let empty = HashRing(members: [String]())
        XCTAssertTrue(empty.isEmpty)
        XCTAssertNil(empty.owner(of: "k"))
        XCTAssertNil(empty.ownerName(of: "k"))
        XCTAssertEqual(empty.share(of: "a"), 0)

        let one = HashRing(members: ["solo"])
        for key in ["", "a", "Tom", "ключ"] {
            XCTAssertEqual(one.owner(of: key), 0)
        }
        XCTAssertEqual(one.share(of: "solo"), 1)
    }

    func testMembershipChanges() {
        let ring = HashRing(members: ["b", "c", "a"])
        XCTAssertEqual(ring.members, ["a", "b", "c"])
        XCTAssertEqual(ring.index(of: "c"), 2)
        XCTAssertNil(ring.index(of: "d"))
        XCTAssertEqual(ring.adding("d").members, ["a", "b", "c", "d"])
        XCTAssertEqual(ring.adding("a").members, ["a", "b", "c"])
        XCTAssertEqual(ring.removing("b").members, ["a", "c"])
        XCTAssertEqual(ring.removing("zz").members, ["a", "b", "c"])
        XCTAssertEqual(ring.removing("a").removing("b").removing("c").count, 0)
        XCTAssertEqual(ring.share(of: "b"), 1.0 / 3.0)
        XCTAssertEqual(ring.share(of: "d"), 0)
        let total = ring.members.map { ring.share(of: $0) }.reduce(0, +)
        XCTAssertEqual(total, 1, accuracy: 1e-12)
    }

    func testStringAndByteKeysAgree() {
        let ring = HashRing(members: nodeNames(5))
        for key in ["", "Tom", "key-17", "ключ-🔑"] {
            var bytes = Array(key.utf8)
            let raw = bytes.withUnsafeMutableBytes { ring.owner(of: UnsafeRawBufferPointer($0)) }
            XCTAssertEqual(ring.owner(of: key), raw, key)
        }
    }

    /// With an integer hash the rule can be checked by hand: the owner is the member with the highest
    /// `score(keyHash, hash(name))`, and a key whose hash equals a member's seed scores 0 (fmix64(0) == 0),
    /// the lowest possible, so that member never owns it while another member exists.
    func testIntegerHashSeam() {
        let ring = HashRing(members: ["6", "4", "2"], hash: integerHash)
        XCTAssertEqual(ring.members, ["2", "4", "6"])
        for key in 0..<1_000 {
            let keyHash = UInt64(key)
            let scores = ring.members.map { HashRing.score(keyHash: keyHash, memberSeed: UInt64($0)!) }
            let expected = scores.indices.max { scores[$0] < scores[$1] }!
            XCTAssertEqual(ring.owner(of: String(key)), expected, "key \(key)")
        }
        XCTAssertEqual(HashRing.score(keyHash: 4, memberSeed: 4), 0)
        XCTAssertNotEqual(ring.ownerName(of: "4"), "4")
        XCTAssertNotEqual(ring.ownerName(of: "2"), "2")

        // Names that hash alike ("02" and "2") tie on every key; the smaller name wins, deterministically.
        let tied = HashRing(members: ["2", "02"], hash: integerHash)
        for key in 0..<100 {
            XCTAssertEqual(tied.ownerName(of: String(key)), "02")
        }
    }

    // MARK: Balance and movement over 1,000,000 keys

    func testBalanceAndMinimalMovement() {
        let keys = HashRingTestKeys()
        var report: [String] = []
        for n in [2, 3, 8, 16] {
            let ring = HashRing(members: nodeNames(n))
            let owners = keys.owners(ring)

            // Balance: the most loaded member holds at most 1.05x the mean.
            var load = [Int](repeating: 0, count: n)
            for owner in owners { load[owner] += 1 }
            let mean = Double(HashRingTestKeys.count) / Double(n)
            let maxRatio = Double(load.max()!) / mean
            let minRatio = Double(load.min()!) / mean
            XCTAssertLessThanOrEqual(maxRatio, 1.05, "N=\(n) loads \(load)")

            // Adding one member: every moved key moves TO it, and about 1/(N+1) of keys move.
            let grown = ring.adding("node-new")
            let newIndex = grown.index(of: "node-new")!
            let grownOwners = keys.owners(grown)
            var movedIn = 0
            var strays = 0
            for i in 0..<HashRingTestKeys.count {
                let before = ring.members[owners[i]]
                let after = grown.members[grownOwners[i]]
                if before != after {
                    movedIn += 1
                    if grownOwners[i] != newIndex { strays += 1 }
                }
            }
            XCTAssertEqual(strays, 0, "N=\(n): keys moved between old members on add")
            let addFraction = Double(movedIn) / Double(HashRingTestKeys.count)
            XCTAssertEqual(addFraction * Double(n + 1), 1, accuracy: 0.05, "N=\(n) add moved \(addFraction)")

            // Removing one member: exactly its keys move, about 1/N of keys.
            let removed = "node-\(n / 2 + 1)"
            let shrunk = ring.removing(removed)
            var movedOut = 0
            strays = 0
            if !shrunk.isEmpty {
                let shrunkOwners = keys.owners(shrunk)
                for i in 0..<HashRingTestKeys.count {
                    let before = ring.members[owners[i]]
                    if before != shrunk.members[shrunkOwners[i]] {
                        movedOut += 1
                        if before != removed { strays += 1 }
                    } else if before == removed {
                        strays += 1   // impossible: the removed member cannot still own a key
                    }
                }
            }
            XCTAssertEqual(strays, 0, "N=\(n): keys moved between surviving members on remove")
            XCTAssertEqual(movedOut, load[ring.index(of: removed)!], "N=\(n): exactly the removed member's keys")
            let removeFraction = Double(movedOut) / Double(HashRingTestKeys.count)
            XCTAssertEqual(removeFraction * Double(n), 1, accuracy: 0.05, "N=\(n) remove moved \(removeFraction)")

            report.append(String(format: "N=%2d max/mean %.4f min/mean %.4f | add moves %.3f%% (1/%d = %.3f%%) "
                                     + "| remove moves %.3f%% (1/%d = %.3f%%)",
                                 n, maxRatio, minRatio, addFraction * 100, n + 1, 100.0 / Double(n + 1),
                                 removeFraction * 100, n, 100.0 / Double(n)))
        }
        print("HashRing over \(HashRingTestKeys.count) keys:\n" + report.joined(separator: "\n"))
    }

    /// Worker names differ only in a suffix (`NAME-i`); they must balance as well as unrelated names.
    func testSimilarWorkerNamesBalance() {
        let keys = HashRingTestKeys()
        let ring = HashRing(members: (0..<8).map { "cache-host-\($0)" })
        var load = [Int](repeating: 0, count: ring.count)
        for i in 0..<200_000 { load[keys.withKey(i) { ring.owner(of: $0)! }] += 1 }
        let mean = 200_000.0 / Double(ring.count)
        XCTAssertLessThanOrEqual(Double(load.max()!) / mean, 1.05, "\(load)")
    }

    // MARK: Speed

    func testLookupSpeedFor16Members() {
        let ring = HashRing(members: nodeNames(16))
        // Pre-built keys, so only lookups are timed.
        let keyCount = 4_096
        var flat: [UInt8] = []
        var ends: [Int] = []
        for i in 0..<keyCount {
            flat += Array("user:\(i * 7919)".utf8)
            ends.append(flat.count)
        }
        let rounds = 100
        var checksum = 0
        let start = DispatchTime.now().uptimeNanoseconds
        flat.withUnsafeBytes { raw in
            for _ in 0..<rounds {
                var from = 0
                for end in ends {
                    checksum &+= ring.owner(of: UnsafeRawBufferPointer(rebasing: raw[from..<end]))!
                    from = end
                }
            }
        }
        let elapsed = DispatchTime.now().uptimeNanoseconds - start
        let perLookup = Double(elapsed) / Double(rounds * keyCount)
        #if DEBUG
        let build = "debug"
        #else
        let build = "release"
        #endif
        print(String(format: "HashRing lookup, 16 members: %.1f ns (%@ build, checksum %d)", perLookup, build,
                     checksum))
        // Loose bound so a busy machine does not make the test flaky; the target is 200 ns in release.
        XCTAssertLessThan(perLookup, 2_000)
    }
}

/// springcache's own ring (its `consistenthash` package), bit for bit, for clusters in which springcache and
/// springcache-uv nodes serve one keyspace (`--ring springcache`; reference/springcache-compat.md, "Its ring").
///
/// - A member's identity is its IP, the host of its peer address, never its name or port: two members on one
///   IP are one member to springcache, which is why the node refuses to start that way.
/// - Each member has `replicas` (50) points: `fnv1_64(lowercase hex(md5(decimal(i) + IP)))`, FNV-1 (multiply,
///   then xor), read as a signed 64-bit integer; the points are sorted as signed integers.
/// - A key's owner is the member of the first point >= `signed(fnv1_64(key bytes))`, wrapping to the first
///   point past the end. On an exact point collision the member added later wins; members are added in name
///   order, so every node that knows the same members agrees.
///
/// Golden vectors from an independent Python implementation pin all of it
/// (Tests/golden/make_springcache_ring_vectors.py). Lookups allocate nothing: one FNV-1 pass and a binary search.
public struct SpringcacheRing {
    /// springcache's `replicas` (its main.go passes 50 to `consistenthash.New`).
    public static let replicas = 50

    /// The member names, sorted and unique; `owner(of:)` returns an index into this array.
    public let members: [String]
    /// The host each member is hashed by, parallel to `members`.
    public let hosts: [String]
    /// The points, sorted as signed integers, without duplicates.
    private let points: [Int64]
    /// The member index owning each point, parallel to `points`.
    private let pointOwners: [Int]

    /// `members`: (name, host) pairs; a name given twice keeps its last host.
    public init(members list: [(name: String, host: String)]) {
        var hostOf: [String: String] = [:]
        for m in list { hostOf[m.name] = m.host }
        members = hostOf.keys.sorted()
        hosts = members.map { hostOf[$0]! }
        // Why a dictionary first: a later member overwrites a colliding point, as springcache's hashMap does.
        var ownerOf: [Int64: Int] = [:]
        for (index, host) in hosts.enumerated() {
            for replica in 0..<SpringcacheRing.replicas {
                ownerOf[SpringcacheRing.point(replica: replica, host: host)] = index
            }
        }
        points = ownerOf.keys.sorted()
        pointOwners = points.map { ownerOf[$0]! }
    }

    public var count: Int { members.count }
    public var isEmpty: Bool { members.isEmpty }

    /// 64-bit FNV-1 (http://www.isthe.com/chongo/tech/comp/fnv/): multiply, then xor; not FNV-1a.
    @inline(__always)
    public static func fnv1_64(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h = RingHash.fnvOffsetBasis
        for byte in bytes {
            h = h &* RingHash.fnvPrime
            h ^= UInt64(byte)
        }
        return h
    }

    /// The signed hash springcache compares (its `int(hash)`: values >= 2^63 are negative).
    @inline(__always)
    public static func keyHash(_ bytes: UnsafeRawBufferPointer) -> Int64 {
        Int64(bitPattern: fnv1_64(bytes))
    }

    /// Point `replica` of a member hashed by `host`.
    public static func point(replica: Int, host: String) -> Int64 {
        let hex = MD5.lowercaseHex(Array(String(replica).utf8) + Array(host.utf8))
        return hex.withUnsafeBytes { keyHash($0) }
    }

    /// The index in `members` of the owner of `key`, or nil when the ring is empty. Allocates nothing.
    public func owner(of key: UnsafeRawBufferPointer) -> Int? {
        guard !points.isEmpty else { return nil }
        let h = SpringcacheRing.keyHash(key)
        // Go's sort.Search: the first point >= h.
        var low = 0
        var high = points.count
        while low < high {
            let mid = (low + high) / 2
            if points[mid] < h { low = mid + 1 } else { high = mid }
        }
        return pointOwners[low == points.count ? 0 : low]
    }

    /// The fraction of the 64-bit hash space `member` owns: the arcs that end at its points.
    public func share(of member: String) -> Double {
        guard let index = members.firstIndex(of: member), !points.isEmpty else { return 0 }
        var owned = 0.0
        for (i, p) in points.enumerated() where pointOwners[i] == index {
            // The arc (previous point, p]; the first point's arc wraps around from the last one.
            let previous = i == 0 ? points[points.count - 1] : points[i - 1]
            let arc = UInt64(bitPattern: p &- previous)
            owned += points.count == 1 ? 18_446_744_073_709_551_616.0 : Double(arc)
        }
        return owned / 18_446_744_073_709_551_616.0
    }

    /// Hosts shared by more than one of `members` (springcache would see them as one member), with their names.
    public static func sharedHosts(_ members: [(name: String, host: String)]) -> [(host: String, names: [String])] {
        var byHost: [String: Set<String>] = [:]
        for m in members { byHost[m.host, default: []].insert(m.name) }
        return byHost.filter { $0.value.count > 1 }.map { (host: $0.key, names: $0.value.sorted()) }
            .sorted { $0.host < $1.host }
    }
}

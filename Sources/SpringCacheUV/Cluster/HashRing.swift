/// Consistent hashing of keys to member nodes, keyed by node NAME (never by address).
///
/// Why names: springcache hashed peers by IP, so two nodes on one host collided; a worker's name
/// (`NAME-i`) is unique in the cluster and survives an address change (DESIGN.md "Ring and membership").
///
/// Why rendezvous (highest-random-weight) hashing and not a ring of virtual nodes: for each key we hash
/// the key once, then give every member the score `fmix64(keyHash ^ seed(member))` and pick the highest.
/// - Balance: each member's score is an independent-looking uniform draw per key, so each owns 1/N of the
///   keys up to sampling noise (over 1M keys the most loaded of 16 nodes holds ~1.01x the mean). A classic
///   ring needs ~1000 virtual nodes per member to get within 1.05x, and a big sorted array to search.
/// - Minimal movement, exactly: adding a member changes a key's owner only if the new member outscores
///   the old owner (the key moves TO the new member); removing one moves only the keys it owned. No other
///   key ever moves, by construction, not merely on average.
/// - Cost: N multiply-xorshift rounds per lookup (16 members: ~16 x 2 ns) plus one key hash; membership
///   changes, which are rare, just recompute N seeds.
/// The trade is O(N) per lookup, which is cheaper than a binary search over 16 x 1000 vnodes at the
/// cluster sizes a cache of this kind runs (tens of nodes).
///
/// Determinism: every node must agree on owners, so nothing here is random or per-process; the default
/// hash is `RingHash.hash` (FNV-1a 64 + fmix64), fixed and tested against vectors from an independent
/// Python implementation (Tests/golden/make_ring_vectors.py). `members` is kept sorted and free of
/// duplicates, so the index `owner(of:)` returns does not depend on the order members were given in, and
/// exact score ties (possible only when two names hash alike) go to the member whose name sorts first.
public struct HashRing {
    /// Hashes key bytes, and member names, to 64 bits. Pluggable so tests can use an integer hash that is
    /// "easier to reason about" (groupcache's consistenthash tests); production uses `RingHash.hash`.
    public typealias Hash = (UnsafeRawBufferPointer) -> UInt64

    /// The member names, sorted and unique; `owner(of:)` returns an index into this array.
    public let members: [String]
    /// `hash(name)` of each member, parallel to `members`.
    private let seeds: [UInt64]
    private let hash: Hash

    public init<S: Sequence>(members: S, hash: @escaping Hash = RingHash.hash) where S.Element == String {
        var unique = Array(Set(members))
        unique.sort()
        self.members = unique
        self.hash = hash
        self.seeds = unique.map { name in
            var name = name
            return name.withUTF8 { hash(UnsafeRawBufferPointer($0)) }
        }
    }

    public var count: Int { members.count }
    public var isEmpty: Bool { members.isEmpty }

    /// The index of `member` in `members`, or nil.
    public func index(of member: String) -> Int? {
        // Binary search: `members` is sorted.
        var low = 0
        var high = members.count
        while low < high {
            let mid = (low + high) / 2
            if members[mid] < member { low = mid + 1 } else { high = mid }
        }
        return low < members.count && members[low] == member ? low : nil
    }

    public func contains(_ member: String) -> Bool { index(of: member) != nil }

    /// The score of a member for a key: `fmix64(keyHash ^ memberSeed)`; the highest score owns the key.
    ///
    /// fmix64 is a bijection, so distinct seeds never tie; xor-then-mix makes each member's score a fresh
    /// pseudo-random draw from one key hash, so the key need not be hashed N times.
    @inline(__always)
    public static func score(keyHash: UInt64, memberSeed: UInt64) -> UInt64 {
        RingHash.fmix64(keyHash ^ memberSeed)
    }

    /// The index in `members` of the owner of `key`, or nil when the ring is empty. Allocates nothing.
    public func owner(of key: UnsafeRawBufferPointer) -> Int? {
        guard !seeds.isEmpty else { return nil }
        let keyHash = hash(key)
        return seeds.withUnsafeBufferPointer { seeds -> Int in
            var best = 0
            var bestScore = HashRing.score(keyHash: keyHash, memberSeed: seeds[0])
            var i = 1
            while i < seeds.count {
                let score = HashRing.score(keyHash: keyHash, memberSeed: seeds[i])
                // Strictly greater: on an exact tie the earlier (smaller) name keeps the key.
                if score > bestScore {
                    best = i
                    bestScore = score
                }
                i += 1
            }
            return best
        }
    }

    /// The owner of the key's UTF-8 bytes (same answer as the raw-bytes form).
    public func owner(of key: String) -> Int? {
        var key = key
        return key.withUTF8 { owner(of: UnsafeRawBufferPointer($0)) }
    }

    /// The owner's name, or nil when the ring is empty.
    public func ownerName(of key: String) -> String? {
        owner(of: key).map { members[$0] }
    }

    /// A ring with `member` added (membership changes are rare; lookups are what must be fast).
    public func adding(_ member: String) -> HashRing {
        contains(member) ? self : HashRing(members: members + [member], hash: hash)
    }

    /// A ring without `member`.
    public func removing(_ member: String) -> HashRing {
        guard let i = index(of: member) else { return self }
        var rest = members
        rest.remove(at: i)
        return HashRing(members: rest, hash: hash)
    }

    /// The fraction of the key space `member` owns, for /api/peers: 1/N for a member, 0 otherwise.
    ///
    /// Why exact 1/N and not a measurement: under rendezvous hashing every member's score is drawn the
    /// same way, so each wins a key with the same probability; the tests measure the realized shares
    /// over 1M keys and find them within a few per mille of 1/N.
    public func share(of member: String) -> Double {
        contains(member) ? 1.0 / Double(members.count) : 0
    }
}

/// The fixed 64-bit hash of the ring: FNV-1a 64 over the bytes, then murmur3's fmix64 finalizer.
///
/// Why this pair: FNV-1a is tiny, byte-oriented and identical everywhere (no seed, no endianness or word
/// size dependence), but its output is weak in the high bits for short, similar keys ("key-1", "key-2");
/// fmix64 (MurmurHash3's 64-bit finalizer) gives full avalanche. Changing either changes every owner in
/// a mixed-version cluster: keep them, and keep Tests/golden/make_ring_vectors.py in step.
public enum RingHash {
    public static let fnvOffsetBasis: UInt64 = 0xCBF2_9CE4_8422_2325
    public static let fnvPrime: UInt64 = 0x0000_0100_0000_01B3

    /// FNV-1a 64 (http://www.isthe.com/chongo/tech/comp/fnv/).
    @inline(__always)
    public static func fnv1a64(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h = fnvOffsetBasis
        for byte in bytes {
            h ^= UInt64(byte)
            h = h &* fnvPrime
        }
        return h
    }

    /// MurmurHash3's fmix64: a bijective 64-bit finalizer with full avalanche.
    @inline(__always)
    public static func fmix64(_ x: UInt64) -> UInt64 {
        var k = x
        k ^= k >> 33
        k = k &* 0xFF51_AFD7_ED55_8CCD
        k ^= k >> 33
        k = k &* 0xC4CE_B9FE_1A85_EC53
        k ^= k >> 33
        return k
    }

    /// `fmix64(fnv1a64(bytes))`: the ring's default hash for keys and member names.
    @inline(__always)
    public static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        fmix64(fnv1a64(bytes))
    }

    public static func hash(_ string: String) -> UInt64 {
        var string = string
        return string.withUTF8 { hash(UnsafeRawBufferPointer($0)) }
    }
}

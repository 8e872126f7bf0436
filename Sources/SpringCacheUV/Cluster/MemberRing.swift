/// Which ring maps keys to members (`--ring`).
public enum RingKind: String, CaseIterable, Sendable {
    /// Rendezvous hashing keyed by member name (`HashRing`): the default.
    case rendezvous
    /// springcache's ring keyed by member IP (`SpringcacheRing`): for clusters with springcache nodes in them.
    case springcache
}

/// The ring a `Cluster` routes with: one of the two kinds over the same members, with one interface.
///
/// Key lookups take the key's bytes (keys are byte strings on the wire); the `String` forms forward `utf8`.
public struct MemberRing {
    private enum Storage {
        case rendezvous(HashRing)
        case springcache(SpringcacheRing)
    }

    private let storage: Storage
    public let kind: RingKind

    /// A ring of `kind` over `members`; a springcache ring hashes each member by its peer address's host.
    public init(kind: RingKind, members: [Member]) {
        self.kind = kind
        switch kind {
        case .rendezvous:
            storage = .rendezvous(HashRing(members: members.map(\.name)))
        case .springcache:
            storage = .springcache(SpringcacheRing(members: members.map { (name: $0.name, host: $0.peer?.host ?? "") }))
        }
    }

    /// The member names, sorted and unique.
    public var members: [String] {
        switch storage {
        case .rendezvous(let ring): return ring.members
        case .springcache(let ring): return ring.members
        }
    }

    public var count: Int { members.count }

    public func contains(_ name: String) -> Bool {
        switch storage {
        case .rendezvous(let ring): return ring.contains(name)
        case .springcache(let ring): return ring.members.contains(name)
        }
    }

    /// The owner's name for the key's bytes, or nil when the ring is empty. Allocates nothing.
    public func ownerName(of key: UnsafeRawBufferPointer) -> String? {
        switch storage {
        case .rendezvous(let ring): return ring.owner(of: key).map { ring.members[$0] }
        case .springcache(let ring): return ring.owner(of: key).map { ring.members[$0] }
        }
    }

    /// The owner's index in `members` for the key's bytes, or nil when the ring is empty. Allocates nothing.
    public func ownerIndex(of key: UnsafeRawBufferPointer) -> Int? {
        switch storage {
        case .rendezvous(let ring): return ring.owner(of: key)
        case .springcache(let ring): return ring.owner(of: key)
        }
    }

    /// The owner's name for a key given as bytes.
    public func ownerName<Key: Collection>(of key: Key) -> String? where Key.Element == UInt8 {
        if let name = key.withContiguousStorageIfAvailable({ ownerName(of: UnsafeRawBufferPointer($0)) }) {
            return name
        }
        return Array(key).withUnsafeBytes { ownerName(of: $0) }
    }

    /// The owner's name for the key's UTF-8 bytes.
    public func ownerName(of key: String) -> String? {
        var key = key
        return key.withUTF8 { ownerName(of: UnsafeRawBufferPointer($0)) }
    }

    /// The fraction of the key space `name` owns (for /api/peers).
    public func share(of name: String) -> Double {
        switch storage {
        case .rendezvous(let ring): return ring.share(of: name)
        case .springcache(let ring): return ring.share(of: name)
        }
    }
}

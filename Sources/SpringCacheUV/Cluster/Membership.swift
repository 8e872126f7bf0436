// Cluster/: the hash ring, membership, peer picking and failure handling.

/// One member of the cluster as configured or discovered: its name (its identity on the ring) and where
/// its peer (gRPC) port is. The API address is known only when the member registered it (etcd).
public struct Member: Equatable, Sendable {
    public var name: String
    public var peer: HostPort?
    public var api: String?

    public init(name: String, peer: HostPort?, api: String? = nil) {
        self.name = name
        self.peer = peer
        self.api = api
    }
}

/// springcache's `--peer` list, parsed: `NAME=HOST:PORT` entries carry their address; plain names
/// (springcache's own form, `--peer svc1,svc2`) are names to look up in etcd.
public struct StaticMembership: Equatable {
    public var members: [Member]

    /// The members discovered in etcd that belong to the cluster: with a `--peer` list, exactly the names on
    /// it (springcache's rule: a node started `--peer svc4` elsewhere in the same etcd is not a member here);
    /// without one, every member discovered under the cluster's prefix. `alsoNamed`: names added by hand
    /// (springcache's `/setpeer` adds the peer it names).
    public func admitted(_ discovered: [Member], alsoNamed extra: Set<String> = []) -> [Member] {
        guard !members.isEmpty else { return discovered }
        let listed = Set(members.map(\.name)).union(extra)
        return discovered.filter { listed.contains($0.name) }
    }

    /// The names that still need an address from etcd.
    public var unresolvedNames: [String] { members.filter { $0.peer == nil }.map(\.name) }

    /// Parses the entries of `--peer`; `selfName` must be among them (springcache's rule), and names are unique.
    public static func parse(_ entries: [String], selfName: String) throws -> StaticMembership {
        let form = "expected NAME=HOST:PORT (e.g. a=127.0.0.1:8001) or a plain NAME to look up in etcd"
        var members: [Member] = []
        var seen = Set<String>()
        for entry in entries {
            let member: Member
            if let eq = entry.firstIndex(of: "=") {
                let name = String(entry[..<eq])
                let address = String(entry[entry.index(after: eq)...])
                guard !name.isEmpty else { throw ConfigError("--peer entry '\(entry)' has no name: \(form)") }
                let peer: HostPort
                do {
                    peer = try HostPort.parse(address, flag: "--peer entry '\(entry)'")
                } catch {
                    throw ConfigError("\(error): \(form)")
                }
                guard peer.port > 0 else { throw ConfigError("--peer entry '\(entry)' needs a port above 0: \(form)") }
                member = Member(name: name, peer: peer)
            } else {
                guard !entry.contains(":") && !entry.contains("/") && !entry.contains(" ") else {
                    throw ConfigError("--peer entry '\(entry)' is not a name: \(form)")
                }
                member = Member(name: entry, peer: nil)
            }
            guard seen.insert(member.name).inserted else {
                throw ConfigError("--peer names '\(member.name)' twice")
            }
            members.append(member)
        }
        guard members.isEmpty || seen.contains(selfName) else {
            throw ConfigError("--peer must include this node's --name '\(selfName)' (springcache's rule: "
                              + "the list names every cache node, this one included): \(form)")
        }
        return StaticMembership(members: members)
    }
}

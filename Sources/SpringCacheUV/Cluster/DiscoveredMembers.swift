/// The members a node learns through etcd, as a value: the records members register under the cluster's
/// prefix, springcache nodes' addresses found under their own key, `--peer`'s static entries and the names
/// `/setpeer` added. It says who joined and who left (each logged once), and composes the member list the
/// cluster is given. No I/O: `EtcdMembership` feeds it what discovery and lookups report.
struct DiscoveredMembers {
    /// Who joined and who left with one change, for the log.
    struct Change: Equatable {
        var joined: [Member] = []
        var left: [String] = []
    }

    let selfName: String
    /// `--peer` as given, when only its names (and those `/setpeer` adds) may be members — springcache's rule;
    /// nil when every member registered under the prefix is one (no `--peer`, or a worker: see `init`).
    let admitted: StaticMembership?
    /// `--peer NAME=HOST:PORT` entries other than this node: members whatever etcd says.
    let staticMembers: [Member]
    /// Records registered under the prefix, by name (this node's own never among them).
    private(set) var registered: [String: Member] = [:]
    /// Addresses found under springcache's own key `NAME`, for names that registered no record of ours.
    private var springcacheAddresses: [String: HostPort] = [:]
    /// Names `/setpeer` added although `--peer` does not list them (springcache adds what /setpeer names).
    private var namedBySetpeer: Set<String> = []

    /// `onlyListed`: whether `--peer`'s names are the whole membership. Why not for workers: a worker's
    /// `--peer` list is rewritten without its siblings (NAME-i register in etcd), so workers keep every
    /// member of the cluster's prefix.
    init(selfName: String, statics: StaticMembership, onlyListed: Bool) {
        self.selfName = selfName
        admitted = onlyListed ? statics : nil
        staticMembers = statics.members.filter { $0.peer != nil && $0.name != selfName }
    }

    /// A fresh range of the prefix (at start, and after a broken watch) replaces every record.
    mutating func replaceAll(with members: [Member]) -> Change {
        let before = registered
        registered = [:]
        for m in members where m.name != selfName { registered[m.name] = m }
        // A snapshot after a broken watch repeats the known members: only the differences are news.
        let joined = registered.values.filter { before[$0.name] == nil }.sorted { $0.name < $1.name }
        let left = before.keys.filter { registered[$0] == nil }.sorted()
        return Change(joined: joined, left: left)
    }

    /// A record was put (a join, a keepalive re-put, or a moved member).
    mutating func put(_ member: Member) -> Change {
        guard member.name != selfName else { return Change() }
        let isNew = registered.updateValue(member, forKey: member.name) == nil
        return isNew ? Change(joined: [member]) : Change()
    }

    /// A record was deleted (its lease ended or it was revoked).
    mutating func delete(_ name: String) -> Change {
        registered.removeValue(forKey: name) == nil ? Change() : Change(left: [name])
    }

    /// A springcache node's own key `NAME` → `HOST:PORT` was found. False (and ignored) when the member
    /// registered a record of ours, which says more (its API address) and wins.
    mutating func foundSpringcacheAddress(of name: String, _ address: HostPort) -> Bool {
        guard registered[name] == nil else { return false }
        springcacheAddresses[name] = address
        return true
    }

    /// `/setpeer` named `name`: it is admitted from now on, listed with `--peer` or not.
    mutating func nameBySetpeer(_ name: String) {
        namedBySetpeer.insert(name)
    }

    /// The member list for the cluster: the static entries, the admitted members found in etcd, and `me`.
    func members(including me: Member?) -> [Member] {
        var found = Array(registered.values)
        for (name, address) in springcacheAddresses where registered[name] == nil {
            found.append(Member(name: name, peer: address))
        }
        found.sort { $0.name < $1.name }
        var list = staticMembers + (admitted?.admitted(found, alsoNamed: namedBySetpeer) ?? found)
        if let me { list.append(me) }
        return list
    }
}

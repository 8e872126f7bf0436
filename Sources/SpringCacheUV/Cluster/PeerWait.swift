/// springcache's start-up contract for `--peer a,b,c` with etcd, as a value: the node serves once every
/// listed name is a member with an address, or gives up when `--peer-wait` has passed. Meanwhile missing
/// names are also looked up under springcache's own key (`NAME` → `HOST:PORT`), which a springcache node
/// writes instead of ours and which the watch on our prefix never shows.
///
/// etcd failing at start changes nothing here: lookups that fail are tried again at the next check, and the
/// node gives up at the deadline like any other wait (nothing waits for etcd when no name is awaited: the
/// node serves at once with its static members and registers when etcd answers). No I/O and no clock: events
/// carry the time; `PeerWaiter` drives it with a scheduler timer.
struct PeerWait: Equatable {
    /// What the driver must do.
    enum Action: Equatable {
        /// Every awaited name is known: serve.
        case ready
        /// `--peer-wait` passed with these names still unknown: start-up fails.
        case gaveUp(missing: [String])
        /// Look this name up under springcache's own key; report with `lookupFinished`.
        case lookUp(String)
        /// Check again after this long (the check interval, or what is left of the wait if less).
        case checkAgain(afterMillis: Int64)
    }

    /// The names to wait for (this node's own name is never among them).
    let awaited: [String]
    /// When the wait gives up (unix ms).
    let deadlineMillis: Int64
    /// How often missing names are looked up again.
    let checkIntervalMillis: Int64
    /// Whether the wait has ended (ready or given up); later events do nothing.
    private(set) var isFinished = false
    private var lookingUp: Set<String> = []

    init(awaited: [String], startMillis: Int64, limitMillis: Int64, checkIntervalMillis: Int64) {
        precondition(checkIntervalMillis > 0, "PeerWait needs a positive check interval")
        self.awaited = awaited
        deadlineMillis = startMillis + max(0, limitMillis)
        self.checkIntervalMillis = checkIntervalMillis
    }

    /// The awaited names not known yet, in the order given.
    func missing(known: (String) -> Bool) -> [String] {
        awaited.filter { !known($0) }
    }

    /// The wait begins: ready at once when nothing is missing, else the first check one interval later
    /// (discovery's first snapshot usually settles it before any lookup is needed).
    mutating func start(nowMillis: Int64, known: (String) -> Bool) -> [Action] {
        if let done = finishIfKnown(known) { return done }
        return [.checkAgain(afterMillis: max(0, min(checkIntervalMillis, deadlineMillis - nowMillis)))]
    }

    /// The member list changed: ready if that completed it.
    mutating func membersChanged(known: (String) -> Bool) -> [Action] {
        finishIfKnown(known) ?? []
    }

    /// The check timer fired: ready, given up, or look the missing names up (one lookup per name at a time).
    mutating func check(nowMillis: Int64, known: (String) -> Bool) -> [Action] {
        guard !isFinished else { return [] }
        if let done = finishIfKnown(known) { return done }
        let missing = missing(known: known)
        if nowMillis >= deadlineMillis {
            isFinished = true
            return [.gaveUp(missing: missing)]
        }
        var actions: [Action] = []
        for name in missing where lookingUp.insert(name).inserted {
            actions.append(.lookUp(name))
        }
        actions.append(.checkAgain(afterMillis: min(checkIntervalMillis, deadlineMillis - nowMillis)))
        return actions
    }

    /// A lookup of `name` finished (found or not: what it found reaches the member list separately).
    mutating func lookupFinished(_ name: String) {
        lookingUp.remove(name)
    }

    /// Ends the wait without a verdict (the node stops while waiting).
    mutating func cancel() {
        isFinished = true
    }

    private mutating func finishIfKnown(_ known: (String) -> Bool) -> [Action]? {
        guard !isFinished, missing(known: known).isEmpty else { return nil }
        isFinished = true
        return [.ready]
    }
}

/// A connection a `ConnectionSet` can hold: it remembers its own slot for O(1) removal.
public protocol SlottedConnection: AnyObject {
    /// The connection's index in its set; -1 while it is in none. Only the set writes it.
    var slot: Int { get set }
}

/// The open connections of one server and the limit on how many there may be: the accept-and-limit piece
/// the HTTP and gRPC servers share.
///
/// Why a swap-remove array and not a dictionary: connections come and go at high rates, and the servers'
/// periodic deadline scans walk all of them; an array with a slot per connection makes adding, removing and
/// scanning cheap and allocation-free once grown.
public struct ConnectionSet<C: SlottedConnection> {
    /// The most connections held at once (`--max-connections`, `--peer-max-connections`).
    public let limit: Int
    public private(set) var all: [C] = []

    public init(limit: Int) {
        precondition(limit > 0, "a connection limit must be positive")
        self.limit = limit
        all.reserveCapacity(min(limit, 1024))
    }

    public var count: Int { all.count }
    public var isEmpty: Bool { all.isEmpty }
    public var isFull: Bool { all.count >= limit }

    /// Adds a connection; the caller has checked `isFull`.
    public mutating func add(_ connection: C) {
        precondition(connection.slot < 0, "connection already in a set")
        connection.slot = all.count
        all.append(connection)
    }

    /// Removes `connection` in O(1) (the last one takes its slot). False if it was not in the set.
    @discardableResult
    public mutating func remove(_ connection: C) -> Bool {
        let i = connection.slot
        guard i >= 0, i < all.count, all[i] === connection else { return false }
        let last = all.removeLast()
        if i < all.count {
            all[i] = last
            last.slot = i
        }
        connection.slot = -1
        return true
    }

    public func forEach(_ body: (C) -> Void) {
        for c in all { body(c) }
    }

    /// Calls `body` for each connection, which may remove that connection (or any other) from the set
    /// meanwhile; every connection present throughout is visited once.
    public func forEachAllowingRemoval(_ body: (C) -> Void) {
        // Iterating a copy: removal swaps the last connection into the freed slot, which an index walk over
        // the live array would skip. The copy is taken only by periodic scans, never per request.
        let snapshot = all
        for c in snapshot where c.slot >= 0 { body(c) }
    }
}

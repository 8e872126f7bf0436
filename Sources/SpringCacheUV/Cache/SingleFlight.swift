/// Calls in flight, at most one per key, and the callers waiting for each (groupcache's `singleflight`):
/// concurrent requests for one key cost one call, and all of them get its one result.
///
/// The table does not run the work; its owner does: `join` says whether a call must be started, and the
/// owner calls `land` exactly once when that call ends, then answers the waiters it gets back. A `Note` is
/// what the owner records on a call while it is in flight (`Group`: a set or delete of the key that
/// landed meanwhile, so the call's late result must not overwrite it).
///
/// A `Waiter` is whatever the owner answers a caller through. Why not a closure type built from a result type:
/// a closure kept in a generic class is stored re-abstracted, through a thunk allocated per waiter (issue 11,
/// a remote hit's allocations); a closure inside a plain struct of the owner's (`Group.Waiter`) is kept as is.
///
/// Single-threaded: every call happens on the owning loop.
public final class SingleFlight<Key: Hashable, Waiter, Note> {

    /// The callers waiting for one call. Why not an array: nearly every call has one waiter, and an array
    /// was an allocation per remote hit (issue 11); the first waiter is kept inline, an array only for more.
    public struct Waiters: Sequence {
        fileprivate var first: Waiter?
        fileprivate var rest: [Waiter] = []

        public init() {}

        public init(one waiter: Waiter) {
            first = waiter
        }

        public init(_ waiters: [Waiter]) {
            first = waiters.first
            rest = Array(waiters.dropFirst())
        }

        public var isEmpty: Bool { first == nil }
        public var count: Int { first == nil ? 0 : 1 + rest.count }

        public mutating func append(_ waiter: Waiter) {
            if first == nil { first = waiter } else { rest.append(waiter) }
        }

        public mutating func append(contentsOf other: Waiters) {
            guard let head = other.first else { return }
            append(head)
            rest.append(contentsOf: other.rest)
        }

        public func makeIterator() -> Iterator { Iterator(waiters: self) }

        public struct Iterator: IteratorProtocol {
            fileprivate let waiters: Waiters
            fileprivate var index = 0

            public mutating func next() -> Waiter? {
                defer { index += 1 }
                if index == 0 { return waiters.first }
                return index <= waiters.rest.count ? waiters.rest[index - 1] : nil
            }
        }
    }

    /// One call in flight and the callers waiting for it. An owner may subclass it to keep what landing the call
    /// needs (`Group.FetchCall`), and start calls of its subclass with `join(_:_:newCall:)`.
    public class Call {
        fileprivate var waiters = Waiters()
        /// What happened to the key while the call was in flight; nil when nothing did.
        public var note: Note?
        fileprivate var landed = false

        public init() {}

        /// Makes a landed call ready to be started again (a pooled call, `ReusePool`): no waiters, no note.
        public func resetForReuse() {
            precondition(landed && waiters.isEmpty, "a call reused before it landed")
            landed = false
            note = nil
        }
    }

    private var calls: [Key: Call] = [:]

    public init() {}

    /// Keys with a call in flight.
    public var count: Int { calls.count }

    /// The call in flight for `key`, if any (to leave a note on it).
    public subscript(key: Key) -> Call? { calls[key] }

    /// Adds `waiters` to the call in flight for `key` and returns nil; when there is none, records a new call
    /// with them and returns it: the caller must then start the work and `land` the call when it ends.
    public func join(_ key: Key, _ waiters: Waiters) -> Call? {
        join(key, waiters, newCall: Call.init)
    }

    /// `join`, with the new call (when one is needed) made by `newCall`.
    public func join<C: Call>(_ key: Key, _ waiters: Waiters, newCall: () -> C) -> C? {
        if let call = calls[key] {
            call.waiters.append(contentsOf: waiters)
            return nil
        }
        let call = newCall()
        call.waiters = waiters
        calls[key] = call
        return call
    }

    /// `join` with a list of waiters.
    public func join(_ key: Key, _ waiters: [Waiter]) -> Call? {
        join(key, Waiters(waiters))
    }

    /// Ends `call`, started for `key`, and returns its waiters for the caller to answer; nil when it has
    /// landed before (the work answered twice, a bug the caller reports).
    ///
    /// Why the call is forgotten before anyone is answered: a waiter may ask for the same key again; it must
    /// look in the cache (groupcache's "look again"), not join a call that has already ended.
    public func land(_ key: Key, _ call: Call) -> Waiters? {
        guard !call.landed else { return nil }
        call.landed = true
        if calls[key] === call { calls[key] = nil }
        let waiters = call.waiters
        call.waiters = Waiters()
        return waiters
    }
}

/// Calls in flight, at most one per key, and the callers waiting for each (groupcache's `singleflight`):
/// concurrent requests for one key cost one call, and all of them get its one result.
///
/// The table does not run the work; its owner does: `join` says whether a call must be started, and the
/// owner calls `land` exactly once when that call ends, then answers the waiters it gets back. A `Note` is
/// what the owner records on a call while it is in flight (`Group`: a set or delete of the key that
/// landed meanwhile, so the call's late result must not overwrite it).
///
/// Single-threaded: every call happens on the owning loop.
public final class SingleFlight<Key: Hashable, Result, Note> {
    public typealias Waiter = (Result) -> Void

    /// One call in flight and the callers waiting for it.
    public final class Call {
        fileprivate var waiters: [Waiter]
        /// What happened to the key while the call was in flight; nil when nothing did.
        public var note: Note?
        fileprivate var landed = false

        fileprivate init(waiters: [Waiter]) {
            self.waiters = waiters
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
    public func join(_ key: Key, _ waiters: [Waiter]) -> Call? {
        if let call = calls[key] {
            call.waiters.append(contentsOf: waiters)
            return nil
        }
        let call = Call(waiters: waiters)
        calls[key] = call
        return call
    }

    /// Ends `call`, started for `key`, and returns its waiters for the caller to answer; nil when it has
    /// landed before (the work answered twice, a bug the caller reports).
    ///
    /// Why the call is forgotten before anyone is answered: a waiter may ask for the same key again; it must
    /// look in the cache (groupcache's "look again"), not join a call that has already ended.
    public func land(_ key: Key, _ call: Call) -> [Waiter]? {
        guard !call.landed else { return nil }
        call.landed = true
        if calls[key] === call { calls[key] = nil }
        let waiters = call.waiters
        call.waiters = []
        return waiters
    }
}

/// A bounded free list of per-request objects (a fetch in flight, a peer call, a pending read), so that a steady
/// stream of remote hits reuses them instead of allocating each anew (issue 11: ≤ 4 allocations per remote hit).
///
/// The rule that keeps reuse safe: an object is handed out again only when the pool's reference is the only one
/// left (`isKnownUniquelyReferenced`). An object is given back when its use ends, usually from inside the
/// completion closure that captured it; while that closure (or anything else: a late completion, a timer) still
/// holds it, it is not reused, so a late completion can only ever reach the finished use, never the next one.
/// An object found still referenced is dropped from the pool (it is freed when its last holder lets go) rather
/// than waited for: taking is O(1), and the pool refills as uses end.
///
/// The owner resets what the object holds when giving it back (so an idle object pins no writer, value or
/// closure) and sets it up again when taking it. Single-threaded: used on the owning loop only.
struct ReusePool<Object: AnyObject> {
    private var free: [Object] = []
    /// At most this many idle objects are kept: a pool is memory that stays after a burst.
    let limit: Int

    init(limit: Int) {
        self.limit = max(0, limit)
    }

    /// Idle objects kept now.
    var count: Int { free.count }

    /// An idle object that nothing else references, or nil (the caller then makes a new one).
    @inline(__always)
    mutating func take() -> Object? {
        guard !free.isEmpty else { return nil }
        let last = free.count - 1
        if isKnownUniquelyReferenced(&free[last]) { return free.removeLast() }
        // Still held (a closure that may yet run): never reuse it; it is freed when its holder lets go.
        free.removeLast()
        return nil
    }

    /// Gives back an object whose use has ended (possibly still referenced by the closure that is running it);
    /// kept only under `limit`.
    @inline(__always)
    mutating func giveBack(_ object: Object) {
        if free.count < limit { free.append(object) }
    }
}

/// Counters one `LRUCache` keeps about entries it dropped on its own.
public struct LRUCacheStats: Equatable, Sendable {
    /// Entries removed to make room for an insert.
    public var evictions: UInt64 = 0
    /// Entries removed because they expired (by `expire(_:)` on lookup or by `sweep`).
    public var expirations: UInt64 = 0
    /// Entries held now (a gauge).
    public var items = 0
    /// Bytes charged now: key + value + `LRUCache.perEntryOverhead` per entry (a gauge).
    public var bytes = 0
    /// The bound of `bytes`.
    public var capacityBytes = 0

    public init() {}
}

/// Per-entry flag bits stored with each `LRUCache` entry.
public struct LRUEntryFlags: OptionSet, Equatable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// The entry records "the origin has no such key" (negative caching); its value is empty.
    public static let negative = LRUEntryFlags(rawValue: 1 << 0)
    /// The entry's expiry must not be extended by sliding renewal (e.g. a copy bounded by its owner's TTL).
    public static let fixedExpiry = LRUEntryFlags(rawValue: 1 << 1)
}

/// A least-recently-used cache of byte keys to byte values, bounded by an honest byte count.
///
/// Layout (memcached's `items.c` in miniature): entries live in one manually managed array indexed by
/// `Int32` slot, linked into an intrusive doubly linked LRU list by `prev`/`next` slots, and found through
/// an open-addressing hash table (power-of-two, linear probing, backward-shift deletion) whose buckets
/// hold a 32-bit hash tag and the slot. Each entry's key and value share ONE malloc'd block. Free slots
/// are chained through `next`.
///
/// Why this shape and not `Dictionary<[UInt8], …>`: lookups must work straight from the HTTP parser's
/// scratch buffer (`find(key: UnsafeRawBufferPointer)`) without allocating, and the per-entry overhead
/// must stay below 100 bytes at a million entries (see `perEntryOverhead`).
///
/// Expiry policy is the caller's: the cache stores `expiresAt` and `window` and offers `renew`,
/// `expire` and `sweep`, but a lookup returns expired entries too, so the caller can decide about stale
/// grace. Every removal — eviction, expiry, replacement, delete — unlinks the entry from the list and the
/// table, gives back its bytes and frees its memory.
///
/// Single-threaded: a cache belongs to one loop. Slots are valid only until the next mutating call.
public final class LRUCache {
    /// Bytes charged per entry on top of its key and value.
    ///
    /// Measured, not guessed: `LRUCacheMemoryTests.testPerEntryOverheadAtOneMillionEntries` inserts 1M
    /// entries with 8-byte keys and 8-byte values and divides the RSS growth (/proc/self/statm) by the
    /// entry count: 91 bytes beyond key and value on x86-64 Linux/glibc (a 56-byte slot, 16 bytes of hash
    /// table at 1M entries in 2M buckets, 16 bytes of malloc chunk header and rounding, a little slack).
    /// Rounded up to 96 so that other table loads and malloc rounding for other sizes stay covered.
    public static let perEntryOverhead = 96

    /// No slot; the end of a list.
    @usableFromInline static let none: Int32 = -1

    /// One slot of the entry array. 56 bytes.
    @usableFromInline struct Entry {
        /// Key bytes followed by value bytes; nil when the slot is free.
        var storage: UnsafeMutableRawPointer?
        var keyHash: UInt64
        var valueHash: UInt64
        var expiresAt: Int64
        var prev: Int32
        /// The next slot toward the LRU tail; for a free slot, the next free slot.
        var next: Int32
        var keyLength: UInt32
        var valueLength: UInt32
        var window: UInt32
        var flags: UInt8
    }

    /// The sum of key + value + `perEntryOverhead` over all entries never exceeds this.
    public let capacityBytes: Int
    /// The number of entries.
    public private(set) var count = 0
    /// Bytes charged for the current entries: key + value + `perEntryOverhead` each.
    public private(set) var bytes = 0
    /// The counters and the gauges (items, bytes, capacity) as one snapshot.
    public var stats: LRUCacheStats {
        var s = counters
        s.items = count
        s.bytes = bytes
        s.capacityBytes = capacityBytes
        return s
    }
    private var counters = LRUCacheStats()
    /// The seed of the key hash; `hash(_:)` of one cache is valid for `find(key:hash:)` of another cache
    /// only if both have the same seed.
    public let hashSeed: UInt64

    private var entries: UnsafeMutablePointer<Entry>
    private var entryCapacity: Int
    /// Slots 0..<slotHighWater have been used at least once; beyond it, never.
    private var slotHighWater = 0
    private var freeHead: Int32 = LRUCache.none
    /// Most recently used.
    private var head: Int32 = LRUCache.none
    /// Least recently used: the next eviction victim.
    private var tail: Int32 = LRUCache.none

    /// Buckets: 0 = empty, else (tag << 32) | (slot + 1), tag = the high 32 bits of the key hash.
    private var table: UnsafeMutablePointer<UInt64>
    private var tableMask: Int
    private var sweepCursor = 0

    private static let initialSlots = 16
    private static let initialBuckets = 16

    /// Why a fixed seed for value hashes: the value hash is the HTTP ETag, and every node serving the
    /// same bytes should answer the same ETag, across restarts too.
    private static let valueHashSeed: UInt64 = 0x5370_7269_6E67_4361

    /// Creates an empty cache that holds at most `capacityBytes` (entries charged as documented above).
    ///
    /// `hashSeed` defaults to a random value so that keys chosen by clients cannot be crafted to collide
    /// in the table (hash flooding); tests pass a fixed seed to be reproducible.
    public init(capacityBytes: Int, hashSeed: UInt64 = UInt64.random(in: 0...UInt64.max)) {
        precondition(capacityBytes >= 0)
        self.capacityBytes = capacityBytes
        self.hashSeed = hashSeed
        entryCapacity = LRUCache.initialSlots
        entries = .allocate(capacity: entryCapacity)
        table = .allocate(capacity: LRUCache.initialBuckets)
        table.initialize(repeating: 0, count: LRUCache.initialBuckets)
        tableMask = LRUCache.initialBuckets - 1
    }

    deinit {
        freeAllStorage()
        entries.deallocate()
        table.deallocate()
    }

    // MARK: Hashing

    /// The key hash this cache uses; pass it to `find(key:hash:)` to probe several caches with one hash.
    @inline(__always)
    public func hash(_ key: UnsafeRawBufferPointer) -> UInt64 {
        LRUCache.hashBytes(key, seed: hashSeed)
    }

    /// The 64-bit hash of a value as stored with each entry; stable across processes (used as ETag).
    public static func valueHash(_ value: UnsafeRawBufferPointer) -> UInt64 {
        hashBytes(value, seed: valueHashSeed)
    }

    public static func valueHash(_ value: [UInt8]) -> UInt64 {
        value.withUnsafeBytes { valueHash($0) }
    }

    @inline(__always)
    private static func mix(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let product = a.multipliedFullWidth(by: b)
        return product.high ^ product.low
    }

    /// A wyhash-style 64-bit hash: 16 bytes per round through a 64×64→128-bit multiply-and-fold.
    static func hashBytes(_ bytes: UnsafeRawBufferPointer, seed: UInt64) -> UInt64 {
        let p0: UInt64 = 0xA076_1D64_78BD_642F
        let p1: UInt64 = 0xE703_7ED1_A0B4_28DB
        let p2: UInt64 = 0x8EBC_6AF0_9C88_C6E3
        let p3: UInt64 = 0x5899_65CC_7537_4CC3
        let n = bytes.count
        var h = mix(seed ^ p0, UInt64(truncatingIfNeeded: n) ^ p1)
        var i = 0
        while i + 16 <= n {
            let a = bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            let b = bytes.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self)
            h = mix(a ^ p1, b ^ h)
            i += 16
        }
        var a: UInt64 = 0
        var b: UInt64 = 0
        if n - i >= 8 {
            a = bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            i += 8
        }
        var shift: UInt64 = 0
        while i < n {
            b |= UInt64(bytes[i]) << shift
            shift += 8
            i += 1
        }
        h = mix(a ^ p2, b ^ h ^ p3)
        return mix(h ^ p0, UInt64(truncatingIfNeeded: n) ^ p2)
    }

    // MARK: Lookup

    /// The slot holding `key`, expired or not; allocates nothing.
    @inline(__always)
    public func find(key: UnsafeRawBufferPointer) -> Int32? {
        find(key: key, hash: hash(key))
    }

    /// The slot holding `key`, given `hash == self.hash(key)`.
    public func find(key: UnsafeRawBufferPointer, hash: UInt64) -> Int32? {
        let tag = hash >> 32
        var i = Int(truncatingIfNeeded: hash) & tableMask
        while true {
            let bucket = table[i]
            if bucket == 0 { return nil }
            if bucket >> 32 == tag {
                let slot = Int32(truncatingIfNeeded: bucket & 0xFFFF_FFFF) - 1
                if entries[Int(slot)].keyHash == hash && keyEquals(slot, key) { return slot }
            }
            i = (i + 1) & tableMask
        }
    }

    private func keyEquals(_ slot: Int32, _ key: UnsafeRawBufferPointer) -> Bool {
        let entry = entries[Int(slot)]
        let n = key.count
        guard Int(entry.keyLength) == n else { return false }
        let stored = UnsafeRawBufferPointer(start: entry.storage, count: n)
        var i = 0
        while i + 8 <= n {
            if stored.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                != key.loadUnaligned(fromByteOffset: i, as: UInt64.self) { return false }
            i += 8
        }
        while i < n {
            if stored[i] != key[i] { return false }
            i += 1
        }
        return true
    }

    // MARK: Slot accessors (valid until the next mutating call)

    public func key(at slot: Int32) -> UnsafeRawBufferPointer {
        let entry = entries[checked(slot)]
        return UnsafeRawBufferPointer(start: entry.storage, count: Int(entry.keyLength))
    }

    public func value(at slot: Int32) -> UnsafeRawBufferPointer {
        let entry = entries[checked(slot)]
        return UnsafeRawBufferPointer(start: entry.storage! + Int(entry.keyLength), count: Int(entry.valueLength))
    }

    /// Unix milliseconds at which the entry stops being fresh.
    public func expiresAt(at slot: Int32) -> Int64 { entries[checked(slot)].expiresAt }

    /// The entry's TTL window in milliseconds (jitter included), the span a sliding renewal grants.
    public func window(at slot: Int32) -> UInt32 { entries[checked(slot)].window }

    /// The hash of the entry's value (`LRUCache.valueHash`), used as its ETag.
    public func valueHash(at slot: Int32) -> UInt64 { entries[checked(slot)].valueHash }

    public func flags(at slot: Int32) -> LRUEntryFlags { LRUEntryFlags(rawValue: entries[checked(slot)].flags) }

    @inline(__always)
    private func checked(_ slot: Int32) -> Int {
        let i = Int(slot)
        precondition(i >= 0 && i < slotHighWater && entries[i].storage != nil, "LRUCache: stale or bad slot")
        return i
    }

    // MARK: Recency and expiry

    /// Marks the entry most recently used.
    public func touch(_ slot: Int32) {
        _ = checked(slot)
        guard head != slot else { return }
        unlink(slot)
        linkAtHead(slot)
    }

    /// Sliding expiry: the entry now expires one window after `now`.
    public func renew(_ slot: Int32, now: Int64) {
        let i = checked(slot)
        entries[i].expiresAt = now + Int64(entries[i].window)
    }

    /// Sets the entry's expiry directly (e.g. to bound a copy by its owner's remaining TTL).
    public func setExpiresAt(_ slot: Int32, _ expiresAt: Int64) {
        entries[checked(slot)].expiresAt = expiresAt
    }

    /// Whether the entry is past its expiry by at least `graceMillis` (negative entries get no grace).
    ///
    /// Why no grace for negative entries: grace exists to serve an old *value* while the origin is down;
    /// an old "not found" is worth nothing once its short window is over.
    public func isDead(_ slot: Int32, now: Int64, graceMillis: Int64) -> Bool {
        let entry = entries[checked(slot)]
        let grace = LRUEntryFlags(rawValue: entry.flags).contains(.negative) ? 0 : graceMillis
        return now >= entry.expiresAt && now - entry.expiresAt >= grace
    }

    // MARK: Insert and remove

    /// Stores `key` → `value`, replacing any entry for the key, evicting least recently used entries
    /// until the new one fits. Returns false, storing nothing, if the entry alone exceeds `capacityBytes`.
    /// `valueHash`, if given, must be `LRUCache.valueHash(value)` (saves hashing the value twice).
    ///
    /// Why a refused insert still removes the old entry: the caller meant to replace it, and serving the
    /// value it tried to overwrite would be wrong, while forgetting is always allowed for a cache.
    @discardableResult
    public func insert(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, expiresAt: Int64,
                       window: UInt32, flags: LRUEntryFlags = [], valueHash: UInt64? = nil) -> Bool {
        let keyHash = hash(key)
        if let old = find(key: key, hash: keyHash) { remove(old) }
        let cost = key.count + value.count + LRUCache.perEntryOverhead
        guard cost <= capacityBytes, key.count <= Int(UInt32.max), value.count <= Int(UInt32.max) else {
            return false
        }
        while bytes + cost > capacityBytes && tail != LRUCache.none {
            remove(tail)
            counters.evictions += 1
        }

        let storage = UnsafeMutableRawPointer.allocate(byteCount: max(1, key.count + value.count), alignment: 1)
        if key.count > 0 { storage.copyMemory(from: key.baseAddress!, byteCount: key.count) }
        if value.count > 0 { (storage + key.count).copyMemory(from: value.baseAddress!, byteCount: value.count) }

        let slot = allocateSlot()
        entries[Int(slot)] = Entry(
            storage: storage, keyHash: keyHash, valueHash: valueHash ?? LRUCache.valueHash(value),
            expiresAt: expiresAt, prev: LRUCache.none, next: LRUCache.none, keyLength: UInt32(key.count),
            valueLength: UInt32(value.count), window: window, flags: flags.rawValue)
        linkAtHead(slot)
        // Why grow before inserting: keeps the load at most 3/4, so probe sequences stay short and
        // the table always has an empty bucket to stop a probe.
        if (count + 1) * 4 > (tableMask + 1) * 3 { growTable() }
        tableInsert(slot, hash: keyHash)
        count += 1
        bytes += cost
        return true
    }

    /// Removes the entry: unlinks it, frees its memory, gives back its bytes.
    public func remove(_ slot: Int32) {
        let i = checked(slot)
        tableRemove(slot)
        unlink(slot)
        let entry = entries[i]
        bytes -= Int(entry.keyLength) + Int(entry.valueLength) + LRUCache.perEntryOverhead
        count -= 1
        entry.storage!.deallocate()
        entries[i].storage = nil
        entries[i].next = freeHead
        freeHead = slot
    }

    /// Removes an expired entry and counts it as an expiration.
    public func expire(_ slot: Int32) {
        remove(slot)
        counters.expirations += 1
    }

    /// Removes every entry and gives back the memory of the slot array and table.
    public func removeAll() {
        freeAllStorage()
        entries.deallocate()
        table.deallocate()
        entryCapacity = LRUCache.initialSlots
        entries = .allocate(capacity: entryCapacity)
        table = .allocate(capacity: LRUCache.initialBuckets)
        table.initialize(repeating: 0, count: LRUCache.initialBuckets)
        tableMask = LRUCache.initialBuckets - 1
        slotHighWater = 0
        freeHead = LRUCache.none
        head = LRUCache.none
        tail = LRUCache.none
        sweepCursor = 0
        count = 0
        bytes = 0
    }

    /// Examines at most `budget` slots, continuing where the previous sweep stopped, and removes entries
    /// expired at least `graceMillis` ago. Returns how many it removed.
    ///
    /// Why a budget and a rotating cursor: this is the backstop to lazy expiry (memcached's crawler,
    /// Redis's active expire cycle); it runs from a loop timer and must never stall the loop, yet over
    /// successive calls it reaches every slot, so entries nobody asks for again still give their memory back.
    @discardableResult
    public func sweep(now: Int64, graceMillis: Int64, budget: Int) -> Int {
        let toExamine = min(budget, slotHighWater)
        var removed = 0
        var examined = 0
        while examined < toExamine {
            if sweepCursor >= slotHighWater { sweepCursor = 0 }
            let slot = Int32(sweepCursor)
            sweepCursor += 1
            examined += 1
            if entries[Int(slot)].storage != nil && isDead(slot, now: now, graceMillis: graceMillis) {
                expire(slot)
                removed += 1
            }
        }
        return removed
    }

    /// Removes every entry whose slot `shouldRemove` names (read it with `key(at:)`, `flags(at:)`…); returns
    /// how many. O(entries): for rare events (a membership change), not for the request path.
    @discardableResult
    public func removeAll(where shouldRemove: (Int32) -> Bool) -> Int {
        var removed = 0
        for i in 0..<slotHighWater where entries[i].storage != nil {
            let slot = Int32(i)
            if shouldRemove(slot) {
                remove(slot)
                removed += 1
            }
        }
        return removed
    }

    // MARK: Slots and LRU list

    private func allocateSlot() -> Int32 {
        if freeHead != LRUCache.none {
            let slot = freeHead
            freeHead = entries[Int(slot)].next
            return slot
        }
        if slotHighWater == entryCapacity {
            precondition(entryCapacity < Int(Int32.max) / 2, "LRUCache: too many entries")
            let newCapacity = entryCapacity * 2
            let grown = UnsafeMutablePointer<Entry>.allocate(capacity: newCapacity)
            grown.moveInitialize(from: entries, count: slotHighWater)
            entries.deallocate()
            entries = grown
            entryCapacity = newCapacity
        }
        let slot = Int32(slotHighWater)
        slotHighWater += 1
        return slot
    }

    private func unlink(_ slot: Int32) {
        let entry = entries[Int(slot)]
        if entry.prev != LRUCache.none { entries[Int(entry.prev)].next = entry.next } else { head = entry.next }
        if entry.next != LRUCache.none { entries[Int(entry.next)].prev = entry.prev } else { tail = entry.prev }
        entries[Int(slot)].prev = LRUCache.none
        entries[Int(slot)].next = LRUCache.none
    }

    private func linkAtHead(_ slot: Int32) {
        entries[Int(slot)].prev = LRUCache.none
        entries[Int(slot)].next = head
        if head != LRUCache.none { entries[Int(head)].prev = slot } else { tail = slot }
        head = slot
    }

    private func freeAllStorage() {
        for i in 0..<slotHighWater {
            entries[i].storage?.deallocate()
            entries[i].storage = nil
        }
    }

    // MARK: Hash table

    private func tableInsert(_ slot: Int32, hash: UInt64) {
        var i = Int(truncatingIfNeeded: hash) & tableMask
        while table[i] != 0 { i = (i + 1) & tableMask }
        table[i] = (hash >> 32) << 32 | UInt64(UInt32(slot) + 1)
    }

    /// Deletes the slot's bucket by backward shift, so no tombstones accumulate and probes stay short.
    private func tableRemove(_ slot: Int32) {
        let wanted = UInt64(UInt32(slot) + 1)
        var hole = Int(truncatingIfNeeded: entries[Int(slot)].keyHash) & tableMask
        while table[hole] & 0xFFFF_FFFF != wanted {
            precondition(table[hole] != 0, "LRUCache: slot missing from table")
            hole = (hole + 1) & tableMask
        }
        var j = (hole + 1) & tableMask
        while table[j] != 0 {
            let other = Int(table[j] & 0xFFFF_FFFF) - 1
            let home = Int(truncatingIfNeeded: entries[other].keyHash) & tableMask
            // The bucket at j may move back into the hole if its home is not cyclically in (hole, j].
            if (j - home) & tableMask >= (j - hole) & tableMask {
                table[hole] = table[j]
                hole = j
            }
            j = (j + 1) & tableMask
        }
        table[hole] = 0
    }

    private func growTable() {
        let oldTable = table
        let oldCount = tableMask + 1
        let newCount = oldCount * 2
        table = .allocate(capacity: newCount)
        table.initialize(repeating: 0, count: newCount)
        tableMask = newCount - 1
        for i in 0..<oldCount where oldTable[i] != 0 {
            let slot = Int(oldTable[i] & 0xFFFF_FFFF) - 1
            var j = Int(truncatingIfNeeded: entries[slot].keyHash) & tableMask
            while table[j] != 0 { j = (j + 1) & tableMask }
            table[j] = oldTable[i]
        }
        oldTable.deallocate()
    }

    // MARK: Test and debugging support

    /// Checks every structural invariant (list, table, free list, byte count); for tests. O(n).
    func checkInvariants() -> String? {
        var seen = 0
        var computedBytes = 0
        var previous = LRUCache.none
        var slot = head
        while slot != LRUCache.none {
            let entry = entries[Int(slot)]
            guard entry.storage != nil else { return "free slot \(slot) in LRU list" }
            guard entry.prev == previous else { return "slot \(slot) prev \(entry.prev) != \(previous)" }
            let k = UnsafeRawBufferPointer(start: entry.storage, count: Int(entry.keyLength))
            guard find(key: k) == slot else { return "slot \(slot) not found through table" }
            computedBytes += Int(entry.keyLength) + Int(entry.valueLength) + LRUCache.perEntryOverhead
            seen += 1
            guard seen <= count else { return "LRU list longer than count" }
            previous = slot
            slot = entry.next
        }
        guard previous == tail else { return "tail \(tail) != last listed \(previous)" }
        guard seen == count else { return "list has \(seen) entries, count \(count)" }
        guard computedBytes == bytes else { return "bytes \(bytes) != computed \(computedBytes)" }
        var buckets = 0
        for i in 0...tableMask where table[i] != 0 { buckets += 1 }
        guard buckets == count else { return "table has \(buckets) buckets, count \(count)" }
        var free = 0
        var f = freeHead
        while f != LRUCache.none {
            guard entries[Int(f)].storage == nil else { return "used slot \(f) on free list" }
            free += 1
            f = entries[Int(f)].next
        }
        guard free + count == slotHighWater else { return "free \(free) + count \(count) != \(slotHighWater)" }
        return nil
    }

    /// Keys from most to least recently used; for tests.
    func keysInRecencyOrder() -> [[UInt8]] {
        var result: [[UInt8]] = []
        var slot = head
        while slot != LRUCache.none {
            result.append(Array(key(at: slot)))
            slot = entries[Int(slot)].next
        }
        return result
    }
}

extension LRUCache {
    /// Convenience lookup for tests and slow paths.
    public func find(key: [UInt8]) -> Int32? {
        key.withUnsafeBytes { find(key: $0) }
    }

    /// Convenience lookup by the key's UTF-8 bytes.
    public func find(key: String) -> Int32? {
        var key = key
        return key.withUTF8 { find(key: UnsafeRawBufferPointer($0)) }
    }

    @discardableResult
    public func insert(key: [UInt8], value: [UInt8], expiresAt: Int64, window: UInt32,
                       flags: LRUEntryFlags = []) -> Bool {
        key.withUnsafeBytes { k in
            value.withUnsafeBytes { v in insert(key: k, value: v, expiresAt: expiresAt, window: window, flags: flags) }
        }
    }

    @discardableResult
    public func insert(key: String, value: [UInt8], expiresAt: Int64, window: UInt32,
                       flags: LRUEntryFlags = []) -> Bool {
        insert(key: Array(key.utf8), value: value, expiresAt: expiresAt, window: window, flags: flags)
    }
}

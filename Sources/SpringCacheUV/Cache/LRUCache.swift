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
    /// Bytes of blocks whose entry is gone but which writes still send (not in `bytes`; see `LRUCache.pin`).
    public var pinnedBytes = 0

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
/// Layout (memcached's `items.c` in miniature; the per-entry bytes are tabled in docs/memory.md): entries
/// live in one manually managed array of 40-byte `Entry` headers indexed by `Int32` slot, linked into an
/// intrusive doubly linked LRU list by `prev`/`next` slots, and found through a chained hash table (an array of
/// `Int32` chain heads, one per bucket; each entry carries its `chain` successor, like memcached's `h_next`).
/// Each entry's value hash, key and value share ONE malloc'd block. Free slots are chained through `next`.
///
/// Why this shape and not `Dictionary<[UInt8], …>`: lookups must work straight from the HTTP parser's
/// scratch buffer (`find(key: UnsafeRawBufferPointer)`) without allocating, and the per-entry overhead
/// must stay within 64 bytes at a million entries (see `perEntryOverhead`).
///
/// Expiry policy is the caller's: the cache stores `expiresAt` and `window` and offers `renew`,
/// `expire` and `sweep`, but a lookup returns expired entries too, so the caller can decide about stale
/// grace. Every removal — eviction, expiry, replacement, delete — unlinks the entry from the list and the
/// table, gives back its bytes and frees its memory — unless a write still reads the block (`pin`): then the
/// block outlives its entry and its last `unpin` frees it (see "Pinned blocks" in docs/memory.md).
///
/// Single-threaded: a cache belongs to one loop. Slots are valid only until the next mutating call.
public final class LRUCache {
    /// Bytes charged per entry on top of its key and value.
    ///
    /// Measured, not guessed: `LRUCacheMemoryTests.testPerEntryOverheadAtOneMillionEntries` inserts 1M
    /// entries with 8-byte keys and 8-byte values and divides the RSS growth (/proc/self/statm) by the
    /// entry count: about 61 bytes beyond key and value on x86-64 Linux/glibc (the 40-byte `Entry`, 4 bytes
    /// of chain heads at 1M entries in 2^20 buckets, 8 bytes of malloc chunk header and the 8-byte value
    /// hash in the block, which fills malloc's 16-byte rounding exactly for 16 bytes of key and value).
    /// Rounded up to 72 so that other table loads (4 to 8 bytes of heads per entry) and malloc rounding for
    /// other sizes (0 to 15 bytes, 7.5 on average) stay covered on average.
    public static let perEntryOverhead = 72

    /// The most entries one cache can index: slots are `Int32`, and -1 is `none`.
    public static let maxEntriesLimit = Int(Int32.max)

    /// Expiry times are kept in 48 bits (see `Entry.packed`): these bounds, about ±4,460 years around 1970.
    /// An `expiresAt` beyond them is stored as the bound (saturated), never wrapped.
    public static let latestExpiresAt: Int64 = (1 << 47) - 1
    public static let earliestExpiresAt: Int64 = -(1 << 47)

    /// No slot; the end of a list.
    @usableFromInline static let none: Int32 = -1

    /// Bytes before the key in an entry's block: the value hash.
    private static let blockHeaderBytes = 8

    /// One slot of the entry array: 40 bytes (the old layout had 56, plus 16-byte table buckets).
    ///
    /// Why the value hash lives in the block and not here: it is read only on a hit, right after the key
    /// compare has brought the block into the CPU cache, and 8 bytes there often cost nothing (malloc rounds
    /// chunks to 16 bytes), while 8 bytes here would round the entry up to 48.
    @usableFromInline struct Entry {
        /// The entry's block: the value hash (8 bytes), the key bytes, the value bytes; nil when the slot is free.
        var block: UnsafeMutableRawPointer?
        /// `expiresAt << 16 | flags << 8 | tag`: unix milliseconds at which the entry stops being fresh (a
        /// signed 48-bit number), the `LRUEntryFlags` bits, and the top 8 bits of the key hash (checked before
        /// the key compare, so a chain walk rarely touches another entry's block).
        var packed: Int64
        var prev: Int32
        /// The next slot toward the LRU tail; for a free slot, the next free slot.
        var next: Int32
        /// The next slot in the same hash bucket.
        var chain: Int32
        var keyLength: UInt32
        var valueLength: UInt32
        var window: UInt32

        var expiresAt: Int64 { packed >> 16 }
        var flags: UInt8 { UInt8(truncatingIfNeeded: packed >> 8) }
        var tag: UInt8 { UInt8(truncatingIfNeeded: packed) }

        static func pack(expiresAt: Int64, flags: UInt8, tag: UInt8) -> Int64 {
            let saturated = min(max(expiresAt, LRUCache.earliestExpiresAt), LRUCache.latestExpiresAt)
            return saturated << 16 | Int64(flags) << 8 | Int64(tag)
        }

        mutating func setExpiresAt(_ expiresAt: Int64) {
            packed = Entry.pack(expiresAt: expiresAt, flags: flags, tag: tag)
        }
    }

    /// The sum of key + value + `perEntryOverhead` over all entries never exceeds this.
    public let capacityBytes: Int
    /// The most entries held at once; at the limit an insert evicts the least recently used entry.
    public let maxEntries: Int
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
        s.pinnedBytes = orphanedBytes
        return s
    }
    private var counters = LRUCacheStats()
    /// Pins per block that writes still read (`pin`); almost always empty, and only looked at when not.
    private var pins: [UnsafeMutableRawPointer: Int] = [:]
    /// Blocks whose entry is gone while pinned, with their size: freed by their last `unpin`.
    private var orphans: [UnsafeMutableRawPointer: Int] = [:]
    /// Bytes of blocks whose entry is gone but which writes still read. Not in `bytes` (the `--cache-bytes`
    /// bound counts entries); they are bounded by the queued-answer bounds of the writes holding them.
    public private(set) var orphanedBytes = 0
    /// The number of blocks pinned now, with or without their entry.
    public var pinnedBlocks: Int { pins.count }
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

    /// Chain heads: the first slot of each bucket, or `none`; a power-of-two count, indexed by the low bits
    /// of the key hash.
    private var buckets: UnsafeMutablePointer<Int32>
    private var bucketMask: Int
    private var sweepCursor = 0

    private static let initialSlots = 16
    private static let initialBuckets = 16

    /// Why a fixed seed for value hashes: the value hash is the HTTP ETag, and every node serving the
    /// same bytes should answer the same ETag, across restarts too.
    private static let valueHashSeed: UInt64 = 0x5370_7269_6E67_4361

    /// Creates an empty cache that holds at most `capacityBytes` (entries charged as documented above) and at
    /// most `maxEntries` entries (by default as many as `Int32` slots can index).
    ///
    /// `hashSeed` defaults to a random value so that keys chosen by clients cannot be crafted to collide
    /// in the table (hash flooding); tests pass a fixed seed to be reproducible.
    public init(capacityBytes: Int, hashSeed: UInt64 = UInt64.random(in: 0...UInt64.max),
                maxEntries: Int = LRUCache.maxEntriesLimit) {
        precondition(capacityBytes >= 0)
        precondition(maxEntries >= 1 && maxEntries <= LRUCache.maxEntriesLimit, "LRUCache: bad maxEntries")
        self.capacityBytes = capacityBytes
        self.maxEntries = maxEntries
        self.hashSeed = hashSeed
        entryCapacity = min(LRUCache.initialSlots, maxEntries)
        entries = .allocate(capacity: entryCapacity)
        buckets = .allocate(capacity: LRUCache.initialBuckets)
        buckets.initialize(repeating: LRUCache.none, count: LRUCache.initialBuckets)
        bucketMask = LRUCache.initialBuckets - 1
    }

    deinit {
        freeAllBlocks()
        entries.deallocate()
        buckets.deallocate()
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

    /// The bits of a key hash kept in its entry: the top 8 (the bucket index uses the low bits).
    @inline(__always)
    private static func tag(_ hash: UInt64) -> UInt8 { UInt8(truncatingIfNeeded: hash >> 56) }

    @inline(__always)
    private func bucket(_ hash: UInt64) -> Int { Int(truncatingIfNeeded: hash) & bucketMask }

    // MARK: Lookup

    /// The slot holding `key`, expired or not; allocates nothing.
    @inline(__always)
    public func find(key: UnsafeRawBufferPointer) -> Int32? {
        find(key: key, hash: hash(key))
    }

    /// The slot holding `key`, given `hash == self.hash(key)`.
    public func find(key: UnsafeRawBufferPointer, hash: UInt64) -> Int32? {
        let tag = LRUCache.tag(hash)
        var slot = buckets[bucket(hash)]
        while slot != LRUCache.none {
            let i = Int(slot)
            if entries[i].tag == tag && keyEquals(i, key) { return slot }
            slot = entries[i].chain
        }
        return nil
    }

    private func keyEquals(_ i: Int, _ key: UnsafeRawBufferPointer) -> Bool {
        let n = key.count
        guard Int(entries[i].keyLength) == n else { return false }
        let stored = UnsafeRawBufferPointer(start: entries[i].block! + LRUCache.blockHeaderBytes, count: n)
        var j = 0
        while j + 8 <= n {
            if stored.loadUnaligned(fromByteOffset: j, as: UInt64.self)
                != key.loadUnaligned(fromByteOffset: j, as: UInt64.self) { return false }
            j += 8
        }
        while j < n {
            if stored[j] != key[j] { return false }
            j += 1
        }
        return true
    }

    // MARK: Slot accessors (valid until the next mutating call)

    public func key(at slot: Int32) -> UnsafeRawBufferPointer {
        let i = checked(slot)
        return storedKey(i)
    }

    public func value(at slot: Int32) -> UnsafeRawBufferPointer {
        let i = checked(slot)
        return UnsafeRawBufferPointer(start: entries[i].block! + LRUCache.blockHeaderBytes + Int(entries[i].keyLength),
                                      count: Int(entries[i].valueLength))
    }

    /// Unix milliseconds at which the entry stops being fresh (saturated to `earliestExpiresAt...latestExpiresAt`).
    public func expiresAt(at slot: Int32) -> Int64 { entries[checked(slot)].expiresAt }

    /// The entry's TTL window in milliseconds (jitter included), the span a sliding renewal grants.
    public func window(at slot: Int32) -> UInt32 { entries[checked(slot)].window }

    /// The hash of the entry's value (`LRUCache.valueHash`), used as its ETag.
    public func valueHash(at slot: Int32) -> UInt64 { entries[checked(slot)].block!.load(as: UInt64.self) }

    public func flags(at slot: Int32) -> LRUEntryFlags { LRUEntryFlags(rawValue: entries[checked(slot)].flags) }

    @inline(__always)
    private func checked(_ slot: Int32) -> Int {
        let i = Int(slot)
        precondition(i >= 0 && i < slotHighWater && entries[i].block != nil, "LRUCache: stale or bad slot")
        return i
    }

    @inline(__always)
    private func storedKey(_ i: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: entries[i].block! + LRUCache.blockHeaderBytes, count: Int(entries[i].keyLength))
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
        entries[i].setExpiresAt(now + Int64(entries[i].window))
    }

    /// Sets the entry's expiry directly (e.g. to bound a copy by its owner's remaining TTL).
    public func setExpiresAt(_ slot: Int32, _ expiresAt: Int64) {
        entries[checked(slot)].setExpiresAt(expiresAt)
    }

    /// Whether the entry is past its expiry by at least `graceMillis` (negative entries get no grace).
    ///
    /// Why no grace for negative entries: grace exists to serve an old *value* while the origin is down;
    /// an old "not found" is worth nothing once its short window is over.
    public func isDead(_ slot: Int32, now: Int64, graceMillis: Int64) -> Bool {
        let i = checked(slot)
        let expiresAt = entries[i].expiresAt
        let grace = LRUEntryFlags(rawValue: entries[i].flags).contains(.negative) ? 0 : graceMillis
        return now >= expiresAt && now - expiresAt >= grace
    }

    // MARK: Insert and remove

    /// Stores `key` → `value`, replacing any entry for the key, evicting least recently used entries
    /// until the new one fits (in bytes and in `maxEntries`). Returns false, storing nothing, if the entry
    /// alone exceeds `capacityBytes` (or a key or value exceeds 4 GiB). `expiresAt` saturates at
    /// `earliestExpiresAt...latestExpiresAt`. `valueHash`, if given, must be `LRUCache.valueHash(value)`
    /// (saves hashing the value twice).
    ///
    /// Why a refused insert still removes the old entry: the caller meant to replace it, and serving the
    /// value it tried to overwrite would be wrong, while forgetting is always allowed for a cache.
    @discardableResult
    public func insert(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, expiresAt: Int64,
                       window: UInt32, flags: LRUEntryFlags = [], valueHash: UInt64? = nil) -> Bool {
        let keyHash = hash(key)
        if let old = find(key: key, hash: keyHash) { remove(old, hash: keyHash) }
        let cost = key.count + value.count + LRUCache.perEntryOverhead
        guard cost <= capacityBytes, key.count <= Int(UInt32.max), value.count <= Int(UInt32.max) else {
            return false
        }
        // Why the entry limit evicts rather than refuses: it is a bound like the byte capacity, and a
        // cache at a bound makes room by forgetting its least recently used entry.
        while (bytes + cost > capacityBytes || count >= maxEntries) && tail != LRUCache.none {
            remove(tail)
            counters.evictions += 1
        }

        // Why grow at one entry per bucket: chains then average under one entry, so a hit usually reads
        // one chain head and its own entry, while the heads cost 4 to 8 bytes per entry.
        if count + 1 > bucketMask + 1 { growBuckets() }

        let header = LRUCache.blockHeaderBytes
        let block = UnsafeMutableRawPointer.allocate(byteCount: header + key.count + value.count,
                                                     alignment: MemoryLayout<UInt64>.alignment)
        block.storeBytes(of: valueHash ?? LRUCache.valueHash(value), as: UInt64.self)
        if key.count > 0 { (block + header).copyMemory(from: key.baseAddress!, byteCount: key.count) }
        if value.count > 0 {
            (block + header + key.count).copyMemory(from: value.baseAddress!, byteCount: value.count)
        }

        let slot = allocateSlot()
        entries[Int(slot)] = Entry(
            block: block, packed: Entry.pack(expiresAt: expiresAt, flags: flags.rawValue, tag: LRUCache.tag(keyHash)),
            prev: LRUCache.none, next: LRUCache.none, chain: LRUCache.none, keyLength: UInt32(key.count),
            valueLength: UInt32(value.count), window: window)
        linkAtHead(slot)
        bucketInsert(slot, hash: keyHash)
        count += 1
        bytes += cost
        return true
    }

    /// Removes the entry: unlinks it, frees its memory, gives back its bytes.
    public func remove(_ slot: Int32) {
        let i = checked(slot)
        remove(slot, hash: hash(storedKey(i)))
    }

    /// `remove(_:)` given `hash == self.hash(key(at: slot))`.
    private func remove(_ slot: Int32, hash: UInt64) {
        let i = checked(slot)
        bucketRemove(slot, hash: hash)
        unlink(slot)
        bytes -= Int(entries[i].keyLength) + Int(entries[i].valueLength) + LRUCache.perEntryOverhead
        count -= 1
        free(entries[i].block!, byteCount: LRUCache.blockHeaderBytes + Int(entries[i].keyLength)
                + Int(entries[i].valueLength))
        entries[i].block = nil
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
        freeAllBlocks()
        entries.deallocate()
        buckets.deallocate()
        entryCapacity = min(LRUCache.initialSlots, maxEntries)
        entries = .allocate(capacity: entryCapacity)
        buckets = .allocate(capacity: LRUCache.initialBuckets)
        buckets.initialize(repeating: LRUCache.none, count: LRUCache.initialBuckets)
        bucketMask = LRUCache.initialBuckets - 1
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
            if entries[Int(slot)].block != nil && isDead(slot, now: now, graceMillis: graceMillis) {
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
        for i in 0..<slotHighWater where entries[i].block != nil {
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
            // `insert` evicts before it allocates, so a full array means fewer than maxEntries are held.
            precondition(entryCapacity < maxEntries, "LRUCache: more than maxEntries slots")
            let newCapacity = entryCapacity <= maxEntries / 2 ? entryCapacity * 2 : maxEntries
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
        let prev = entries[Int(slot)].prev
        let next = entries[Int(slot)].next
        if prev != LRUCache.none { entries[Int(prev)].next = next } else { head = next }
        if next != LRUCache.none { entries[Int(next)].prev = prev } else { tail = prev }
        entries[Int(slot)].prev = LRUCache.none
        entries[Int(slot)].next = LRUCache.none
    }

    private func linkAtHead(_ slot: Int32) {
        entries[Int(slot)].prev = LRUCache.none
        entries[Int(slot)].next = head
        if head != LRUCache.none { entries[Int(head)].prev = slot } else { tail = slot }
        head = slot
    }

    private func freeAllBlocks() {
        for i in 0..<slotHighWater {
            if let block = entries[i].block {
                free(block, byteCount: LRUCache.blockHeaderBytes + Int(entries[i].keyLength)
                        + Int(entries[i].valueLength))
            }
            entries[i].block = nil
        }
    }

    // MARK: Pinned blocks

    /// Keeps the entry's block (and so `value(at:)`'s bytes) alive past the entry's removal, until `unpin`.
    ///
    /// Why: a large value is written to a socket straight from its block; the write may outlast the entry
    /// (replaced, deleted, expired or evicted meanwhile), and must still send the value it began with.
    /// Returns the block, the handle to give to `unpin`. Pins nest: the block is freed after the last unpin.
    public func pin(_ slot: Int32) -> UnsafeMutableRawPointer {
        let block = entries[checked(slot)].block!
        pins[block, default: 0] += 1
        return block
    }

    /// Gives back one `pin` of `block`; the last one frees the block if its entry is gone.
    public func unpin(_ block: UnsafeMutableRawPointer) {
        guard let n = pins[block] else { preconditionFailure("LRUCache: unpin of a block that is not pinned") }
        if n > 1 {
            pins[block] = n - 1
            return
        }
        pins[block] = nil
        if let size = orphans.removeValue(forKey: block) {
            orphanedBytes -= size
            block.deallocate()
        }
    }

    /// Frees a block whose entry is gone, or leaves it to its last `unpin` if a write still reads it.
    private func free(_ block: UnsafeMutableRawPointer, byteCount: Int) {
        if !pins.isEmpty && pins[block] != nil {
            orphans[block] = byteCount
            orphanedBytes += byteCount
            return
        }
        block.deallocate()
    }

    // MARK: Hash table

    private func bucketInsert(_ slot: Int32, hash: UInt64) {
        let b = bucket(hash)
        entries[Int(slot)].chain = buckets[b]
        buckets[b] = slot
    }

    /// Unlinks the slot from its bucket's chain.
    private func bucketRemove(_ slot: Int32, hash: UInt64) {
        let b = bucket(hash)
        if buckets[b] == slot {
            buckets[b] = entries[Int(slot)].chain
        } else {
            var previous = buckets[b]
            while true {
                precondition(previous != LRUCache.none, "LRUCache: slot missing from its bucket")
                let next = entries[Int(previous)].chain
                if next == slot { break }
                previous = next
            }
            entries[Int(previous)].chain = entries[Int(slot)].chain
        }
        entries[Int(slot)].chain = LRUCache.none
    }

    /// Doubles the bucket count and rechains every entry.
    ///
    /// Why the key is hashed again rather than a full hash kept per entry: 8 more bytes per entry, for a step
    /// that runs about 21 times in a cache's life (16 buckets to 2^25 at 32M entries).
    private func growBuckets() {
        let newCount = (bucketMask + 1) * 2
        buckets.deallocate()
        buckets = .allocate(capacity: newCount)
        buckets.initialize(repeating: LRUCache.none, count: newCount)
        bucketMask = newCount - 1
        for i in 0..<slotHighWater where entries[i].block != nil {
            bucketInsert(Int32(i), hash: hash(storedKey(i)))
        }
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
            guard entry.block != nil else { return "free slot \(slot) in LRU list" }
            guard entry.prev == previous else { return "slot \(slot) prev \(entry.prev) != \(previous)" }
            let k = storedKey(Int(slot))
            guard entry.tag == LRUCache.tag(hash(k)) else { return "slot \(slot) has a wrong hash tag" }
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
        var chained = 0
        for b in 0...bucketMask {
            var s = buckets[b]
            while s != LRUCache.none {
                guard entries[Int(s)].block != nil else { return "free slot \(s) in bucket \(b)" }
                guard bucket(hash(storedKey(Int(s)))) == b else { return "slot \(s) chained in wrong bucket \(b)" }
                chained += 1
                guard chained <= count else { return "chains longer than count" }
                s = entries[Int(s)].chain
            }
        }
        guard chained == count else { return "chains hold \(chained) entries, count \(count)" }
        var free = 0
        var f = freeHead
        while f != LRUCache.none {
            guard entries[Int(f)].block == nil else { return "used slot \(f) on free list" }
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

    /// The size of one entry header in the slot array; for the layout test.
    static var entryStride: Int { MemoryLayout<Entry>.stride }
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

/// Something with a deadline that a `DeadlineQueue` can hold: it remembers its own slot so that it can
/// be removed in O(log n) when it finishes before its deadline (the common case).
public protocol DeadlineTracked: AnyObject {
    var expiresAtMillis: Int64 { get }
    /// The item's index in the queue's heap; -1 while it is not queued. Only the queue writes it.
    var deadlineSlot: Int { get set }
}

/// A binary min-heap of items (calls, streams) ordered by deadline.
///
/// Why one heap per server/client and not a timer per call: most calls finish long before their deadline,
/// so arming and closing a uv timer per call would be two heap operations inside libuv plus a close
/// callback; here the owner arms one uv timer for the earliest deadline only.
public struct DeadlineQueue<Item: DeadlineTracked> {
    private var heap: [Item] = []

    public init() {}

    public var count: Int { heap.count }
    public var isEmpty: Bool { heap.isEmpty }
    public var earliest: Int64? { heap.first?.expiresAtMillis }

    public mutating func insert(_ item: Item) {
        precondition(item.deadlineSlot < 0, "item already queued")
        heap.append(item)
        item.deadlineSlot = heap.count - 1
        siftUp(heap.count - 1)
    }

    /// Removes `item` if it is queued.
    public mutating func remove(_ item: Item) {
        let i = item.deadlineSlot
        guard i >= 0, i < heap.count, heap[i] === item else { return }
        item.deadlineSlot = -1
        let last = heap.removeLast()
        if i < heap.count {
            heap[i] = last
            last.deadlineSlot = i
            siftDown(i)
            siftUp(i)
        }
    }

    /// Removes and returns one item whose deadline is at or before `now`, earliest first.
    public mutating func popExpired(now: Int64) -> Item? {
        guard let first = heap.first, first.expiresAtMillis <= now else { return nil }
        remove(first)
        return first
    }

    /// Empties the queue, returning what it held.
    public mutating func removeAll() -> [Item] {
        let items = heap
        for item in items { item.deadlineSlot = -1 }
        heap.removeAll()
        return items
    }

    private mutating func siftUp(_ index: Int) {
        var i = index
        while i > 0 {
            let parent = (i - 1) / 2
            if heap[parent].expiresAtMillis <= heap[i].expiresAtMillis { break }
            swapAt(parent, i)
            i = parent
        }
    }

    private mutating func siftDown(_ index: Int) {
        var i = index
        while true {
            let left = 2 * i + 1
            if left >= heap.count { break }
            var smallest = left
            let right = left + 1
            if right < heap.count && heap[right].expiresAtMillis < heap[left].expiresAtMillis { smallest = right }
            if heap[i].expiresAtMillis <= heap[smallest].expiresAtMillis { break }
            swapAt(i, smallest)
            i = smallest
        }
    }

    private mutating func swapAt(_ a: Int, _ b: Int) {
        heap.swapAt(a, b)
        heap[a].deadlineSlot = a
        heap[b].deadlineSlot = b
    }
}

/// The one deadline-timer piece: a `DeadlineQueue` plus one timer armed for its earliest deadline, calling
/// `onExpired` for each item whose deadline has passed.
///
/// Why one timer for many deadlines: most items finish long before their deadline, so a timer per item would
/// cost two heap operations in libuv and a close callback each; here inserting and removing are O(log n) on
/// our own heap and the timer is re-armed only when the earliest deadline moves earlier.
public final class DeadlineTimer<Item: DeadlineTracked> {
    private let clock: Clock
    private var queue = DeadlineQueue<Item>()
    private var timer: SchedulerTimer?
    private var armedAt = Int64.max
    private let onExpired: (Item) -> Void

    public init(scheduler: Scheduler, onExpired: @escaping (Item) -> Void) {
        clock = scheduler.clock
        self.onExpired = onExpired
        timer = nil
        timer = scheduler.makeTimer { [unowned self] in self.fire() }
    }

    deinit {
        precondition(timer == nil, "DeadlineTimer released without close()")
    }

    public var count: Int { queue.count }
    public var isEmpty: Bool { queue.isEmpty }

    /// Watches `item`'s deadline (`expiresAtMillis`, read now).
    public func insert(_ item: Item) {
        queue.insert(item)
        armIfEarlier()
    }

    /// Stops watching `item`, if it is watched.
    public func remove(_ item: Item) {
        queue.remove(item)
    }

    /// Stops the timer for good; returns the items still watched.
    public func close() -> [Item] {
        timer?.close()
        timer = nil
        return queue.removeAll()
    }

    private func armIfEarlier() {
        guard let earliest = queue.earliest, earliest < armedAt, let timer else { return }
        armedAt = earliest
        timer.arm(afterMillis: max(earliest - clock.nowMillis, 0))
    }

    private func fire() {
        armedAt = .max
        let now = clock.nowMillis
        while let item = queue.popExpired(now: now) {
            onExpired(item)
        }
        armIfEarlier()
    }
}

/// Something with a deadline that a `GRPCDeadlineQueue` can hold: it remembers its own slot so that it can
/// be removed in O(log n) when it finishes before its deadline (the common case).
protocol GRPCDeadlineTracked: AnyObject {
    var expiresAtMillis: Int64 { get }
    /// The item's index in the queue's heap; -1 while it is not queued. Only the queue writes it.
    var deadlineSlot: Int { get set }
}

/// A binary min-heap of calls ordered by deadline.
///
/// Why one heap per server/client and not a timer per call: most calls finish long before their deadline,
/// so arming and closing a uv timer per call would be two heap operations inside libuv plus a close
/// callback; here the owner arms one uv timer for the earliest deadline only.
struct GRPCDeadlineQueue<Item: GRPCDeadlineTracked> {
    private var heap: [Item] = []

    var count: Int { heap.count }
    var isEmpty: Bool { heap.isEmpty }
    var earliest: Int64? { heap.first?.expiresAtMillis }

    mutating func insert(_ item: Item) {
        precondition(item.deadlineSlot < 0, "item already queued")
        heap.append(item)
        item.deadlineSlot = heap.count - 1
        siftUp(heap.count - 1)
    }

    /// Removes `item` if it is queued.
    mutating func remove(_ item: Item) {
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
    mutating func popExpired(now: Int64) -> Item? {
        guard let first = heap.first, first.expiresAtMillis <= now else { return nil }
        remove(first)
        return first
    }

    /// Empties the queue, returning what it held.
    mutating func removeAll() -> [Item] {
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

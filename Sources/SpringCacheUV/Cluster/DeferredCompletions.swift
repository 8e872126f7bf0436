/// Completions that are known at once but must not run inside the call that produced them, run on a later
/// turn of the loop in the order they were queued: how `Cluster` keeps `PeerRouter`'s promise ("never before
/// the call returns") when it can answer without asking anyone (a peer with no address, an invalidation with
/// no other member, a call after `close`).
///
/// Why deferred rather than letting callers cope with synchronous completions: `Group` and the HTTP answer
/// path are written for one rule (GRPCClient's and the origin's too); a completion inside the call would run
/// while the caller is still between "start" and "remember that I started" (single-flight tables, a
/// connection's pending answers). One rule everywhere is easier to keep than a caller-by-caller audit.
///
/// A queued result does not allocate beyond the array's amortised growth: entries keep the caller's own
/// completion and the result, with no wrapping closure.
final class DeferredCompletions {
    private enum Entry {
        case call((GRPCResult) -> Void, GRPCResult)
        case done(() -> Void)
    }

    private let scheduler: Scheduler
    private var queue: [Entry] = []
    /// Made when the first completion is queued; closed after `close()` once the queue is empty (a completion
    /// queued after that makes a new one, so nothing queued is ever lost).
    private var timer: SchedulerTimer?
    private var closing = false

    init(scheduler: Scheduler) {
        self.scheduler = scheduler
    }

    /// Completes a call with `result` on a later turn.
    func complete(_ completion: @escaping (GRPCResult) -> Void, with result: GRPCResult) {
        enqueue(.call(completion, result))
    }

    /// Runs `completion` on a later turn.
    func complete(_ completion: @escaping () -> Void) {
        enqueue(.done(completion))
    }

    /// How many completions wait for their turn.
    var pendingCount: Int { queue.count }

    private func enqueue(_ entry: Entry) {
        queue.append(entry)
        guard queue.count == 1 else { return }
        if timer == nil {
            // Strong on purpose: what is queued runs even if the owner lets go first; the cycle ends when the
            // timer closes.
            timer = scheduler.makeTimer { self.runQueued() }
        }
        timer?.arm(afterMillis: 0, repeatMillis: 0)
    }

    /// Runs what was queued so far; completions queued meanwhile run after this batch (the timer is armed
    /// again), never inside the completion that queued them.
    private func runQueued() {
        var batch: [Entry] = []
        swap(&batch, &queue)
        for entry in batch {
            switch entry {
            case .call(let completion, let result): completion(result)
            case .done(let completion): completion()
            }
        }
        batch.removeAll(keepingCapacity: true)
        if queue.isEmpty {
            // Reuse the storage for the next batch.
            swap(&batch, &queue)
            if closing { closeTimer() }
        } else {
            timer?.arm(afterMillis: 0, repeatMillis: 0)
        }
    }

    /// Lets the timer go once nothing is queued; completions already queued (or queued later) still run,
    /// each exactly once.
    func close() {
        closing = true
        if queue.isEmpty { closeTimer() }
    }

    private func closeTimer() {
        timer?.close()
        timer = nil
    }
}

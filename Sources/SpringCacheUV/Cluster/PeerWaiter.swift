/// Drives a `PeerWait` (springcache's `--peer` start-up contract) with one scheduler timer: checks, looks
/// missing names up through `lookUp`, and calls `finish` exactly once — `finish([])` when every name is
/// known, `finish(missing)` when the wait gave up — unless cancelled first.
///
/// The membership it waits on is the caller's (`known`); the caller reports changes with `membersChanged`.
final class PeerWaiter {
    private var wait: PeerWait
    private let clock: Clock
    private let known: (String) -> Bool
    private let lookUp: (_ name: String, _ done: @escaping () -> Void) -> Void
    private var finish: ((_ missing: [String]) -> Void)?
    private var timer: SchedulerTimer?

    /// How often missing names are looked up again under springcache's own key.
    static let checkIntervalMillis: Int64 = 500

    init(awaited: [String], limitMillis: Int64, scheduler: Scheduler,
         known: @escaping (String) -> Bool,
         lookUp: @escaping (_ name: String, _ done: @escaping () -> Void) -> Void,
         finish: @escaping (_ missing: [String]) -> Void) {
        clock = scheduler.clock
        wait = PeerWait(awaited: awaited, startMillis: scheduler.clock.nowMillis, limitMillis: limitMillis,
                        checkIntervalMillis: PeerWaiter.checkIntervalMillis)
        self.known = known
        self.lookUp = lookUp
        self.finish = finish
        timer = scheduler.makeTimer { [unowned self] in self.check() }
    }

    deinit {
        precondition(timer == nil, "PeerWaiter released before it finished or was cancelled")
    }

    /// Whether the wait is over (finished or cancelled).
    var isFinished: Bool { wait.isFinished }

    /// Starts waiting; finishes at once (inside this call) when nothing is missing.
    func start() {
        perform(wait.start(nowMillis: clock.nowMillis, known: known))
    }

    /// The member list changed.
    func membersChanged() {
        perform(wait.membersChanged(known: known))
    }

    /// Stops waiting without calling `finish` (the node stops first).
    func cancel() {
        wait.cancel()
        end()
    }

    private func check() {
        perform(wait.check(nowMillis: clock.nowMillis, known: known))
    }

    private func perform(_ actions: [PeerWait.Action]) {
        for action in actions {
            switch action {
            case .ready:
                conclude([])
            case .gaveUp(let missing):
                conclude(missing)
            case .lookUp(let name):
                lookUp(name) { [weak self] in
                    guard let self else { return }
                    self.wait.lookupFinished(name)
                }
            case .checkAgain(let after):
                timer?.arm(afterMillis: after, repeatMillis: 0)
            }
        }
    }

    private func conclude(_ missing: [String]) {
        let done = finish
        end()
        done?(missing)
    }

    private func end() {
        finish = nil
        timer?.close()
        timer = nil
    }
}

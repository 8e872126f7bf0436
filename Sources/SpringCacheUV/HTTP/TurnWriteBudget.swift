/// How many answer bytes one loop turn may write to connections whose clients have not yet been seen to read
/// (`HTTPServerConfig.turnWriteBudgetBytes`); past it their requests wait for the next turn.
///
/// Why per turn: a loop turn serves every socket that became readable at once, and the kernel copies each answer
/// into its socket before the turn goes on. 300 connections of a flood arriving together made one turn of 20–60 ms
/// even with `--socket-unsent-bytes`; accepting and every other client waited for all of it (issue 10). A
/// turn is told by the loop's time, which libuv updates once per phase: two turns within one millisecond share a
/// budget, which only makes it stricter.
struct TurnWriteBudget {
    /// Bytes per turn; 0 = no budget.
    let limit: Int
    private var turn: Int64 = .min
    private(set) var spent = 0

    init(limit: Int) {
        self.limit = limit
    }

    /// Whether this turn's budget is used up (`now`: the loop's time, which names the turn).
    mutating func isSpent(now: Int64) -> Bool {
        if limit == 0 { return false }
        enter(now)
        return spent >= limit
    }

    /// `bytes` went to the kernel for a connection not yet seen to read.
    mutating func spend(_ bytes: Int, now: Int64) {
        if limit == 0 { return }
        enter(now)
        spent += bytes
    }

    /// A new turn begins even if the loop's time has not moved (the server's next-turn timer fired).
    mutating func startTurn(now: Int64) {
        turn = now
        spent = 0
    }

    private mutating func enter(_ now: Int64) {
        if now != turn { startTurn(now: now) }
    }
}

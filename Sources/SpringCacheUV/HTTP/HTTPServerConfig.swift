/// The HTTP server's limits and timeouts; every bound on a client's use of the node is named here.
public struct HTTPServerConfig {
    /// Request line + headers (414/431 beyond) and body (413 beyond).
    public var limits = HTTPLimits()
    /// Open client connections; beyond it a new connection gets a 503 and is closed at once, not queued.
    public var maxConnections = 10_000
    /// From a request's first byte until it is whole; then 408 and close.
    public var headerTimeoutMillis: Int64 = 10_000
    /// A keep-alive connection with no request in progress is closed after this long.
    public var idleTimeoutMillis: Int64 = 60_000
    /// Response bytes one connection may have queued before the node stops reading its requests
    /// (a client that pipelines and never reads cannot make the node buffer without bound).
    public var maxOutputBytesPerConnection = 4 << 20
    /// Response bytes queued over all connections (`--max-queued-output-bytes`). Past it, only connections
    /// with nothing queued are served (a client that reads its answers is not held back by those that do not),
    /// up to a hard cap a quarter higher. Room is made by closing, longest-stalled first, connections whose
    /// queued answers have not moved for `unreadTimeoutMillis` — or at once, whatever their age, when a connection
    /// with nothing queued reaches the hard cap (it waits only if nothing can be closed). So the total stays under
    /// 1.25 × this plus one answer.
    public var maxQueuedOutputBytes = 64 << 20
    /// While the total is at `maxQueuedOutputBytes`: how long a connection's queued answers may stay untouched
    /// before it is closed to make room (`--unread-timeout`).
    public var unreadTimeoutMillis: Int64 = 1_000
    /// Answer bytes the kernel may hold unsent for one connection whose client has been seen to read
    /// (`--socket-unsent-bytes`, TCP_NOTSENT_LOWAT); 0 leaves the kernel's own send-buffer sizing (on Linux it grows
    /// to `tcp_wmem`'s maximum, 4 MiB by default) for every connection.
    ///
    /// Why a limit: what the kernel holds is outside every bound above. Without it, each client that never reads
    /// made the kernel copy about 2 MiB of answers into its socket at once: 800 such connections cost 1.6 GB of
    /// copying in the loop (turns of 0.4–1.2 s, every other client waiting) and pinned 1.9 GB of kernel memory
    /// (issue 10). Beyond this many bytes an answer waits in the node — a large value as a reference to its cache
    /// entry, not a copy — where the bounds above count it. Bytes sent and not yet acknowledged are not counted.
    ///
    /// Why 1 MiB and not less: a reader of 1 MiB values paid for a smaller limit in write calls and wake-ups
    /// (measured on a quiet machine, 64 connections: 232–245 µs of CPU per request with the kernel's sizing,
    /// 230–259 at 1 MiB, 270–348 at 64 KiB, and worse at 128–256 KiB). What a flood costs is set by
    /// `socketUnsentBytesBeforeReading`, not by this.
    public var socketUnsentBytes = 1 << 20
    /// The unsent limit of a connection whose client has not yet been seen to read (`--socket-unsent-bytes-before-
    /// reading`; never above `socketUnsentBytes`). What a flood of non-readers costs per connection is what the
    /// kernel takes before it is known not to read: during issue 10's flood of 800 non-readers the host's TCP
    /// memory peaked at 75 MiB with 64 KiB for every connection and 23 MiB with 16 KiB until the client reads.
    public var socketUnsentBytesBeforeReading = 16 << 10
    /// The limit a new connection starts with (nil: the kernel's sizing).
    var unsentBytesBeforeReading: Int? {
        socketUnsentBytes > 0 ? min(socketUnsentBytesBeforeReading, socketUnsentBytes) : nil
    }
    /// Answer bytes one loop turn may write to connections whose clients have not yet been seen to read
    /// (`--turn-write-budget`; 0 = no budget). Past it, such a connection's requests wait for the next turn, the
    /// newest first, while accepting and clients seen to read go on. A small answer costs little of it, so a new
    /// client arriving among a flood of non-readers waits a few short turns, not the flood's whole copying.
    public var turnWriteBudgetBytes = 2 << 20
    /// The hard cap on queued answers: `maxQueuedOutputBytes` plus a quarter.
    public var queuedOutputHardCap: Int { maxQueuedOutputBytes + maxQueuedOutputBytes / 4 }
    /// After a response that closes the connection, how long unread input is drained before closing,
    /// so the kernel does not reset the connection and destroy the response in flight (lingering close).
    public var lingerMillis: Int64 = 2_000
    /// listen(2) backlog.
    public var backlog: Int32 = 1024
    /// How often the server checks deadlines and makes room for queued answers (`--timer-tick`). Not a limit but
    /// the resolution of every timeout above: each fires up to one tick late (a 1 s header timeout closes after
    /// 1–1.25 s). Why a tick and not a timer per connection: that timer would be re-armed on every request (a heap
    /// operation on the hot path), while a deadline is a plain store and a scan of 10,000 connections is cheap.
    public var tickMillis: Int64 = 250
    /// How long a graceful stop waits for responses in flight before closing what is left.
    public var shutdownGraceMillis: Int64 = 5_000

    public init() {}
}

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
    /// Response bytes queued over all connections. At it, a connection that still has answers queued stops
    /// being read until they are taken; one whose queue is empty is still served. Why that rule: it is fair
    /// between connections (a client reading its answers is never held back by one that does not), and the
    /// total stays within this bound plus at most one answer per connection that had nothing queued.
    public var maxQueuedOutputBytes = 64 << 20
    /// After a response that closes the connection, how long unread input is drained before closing,
    /// so the kernel does not reset the connection and destroy the response in flight (lingering close).
    public var lingerMillis: Int64 = 2_000
    /// listen(2) backlog.
    public var backlog: Int32 = 1024
    /// How long a graceful stop waits for responses in flight before closing what is left.
    public var shutdownGraceMillis: Int64 = 5_000

    public init() {}
}

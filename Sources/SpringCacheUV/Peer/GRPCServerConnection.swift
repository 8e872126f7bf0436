import CLibUV

/// The libuv driver of one accepted gRPC connection: its `GRPCServerSession` decides, this object reads,
/// writes and closes the socket, and tells the server when it is gone.
final class GRPCServerConnection: HTTP2Connection, SlottedConnection {
    let server: GRPCServer
    let serverSession: GRPCServerSession
    /// Index in the server's `ConnectionSet`.
    var slot = -1
    /// Queued for the server's batched flush (`GRPCServer.scheduleFlush`).
    var isDirty = false

    init(server: GRPCServer, tcp: UnsafeMutablePointer<uv_tcp_t>) {
        self.server = server
        serverSession = GRPCServerSession(context: server.context)
        super.init(loop: server.loop, tcp: tcp, buffers: server.context.buffers, session: serverSession,
                   maxOutputBytes: server.settings.maxOutputBytesPerConnection)
    }

    /// Sends our SETTINGS and starts reading.
    func open() {
        let action = serverSession.open()
        if action == .proceed { startReading() }
        perform(action)
    }

    /// The server's tick: the session's deadlines.
    func tick(now: Int64) {
        guard !isClosing else { return }
        let action = serverSession.tick(now: now)
        if action != .proceed { perform(action) }
    }

    /// Graceful close: GOAWAY, then the session ends when the streams it took are answered.
    func goAway() {
        guard !isClosing else { return }
        serverSession.goAway()
        flush()
    }

    /// An answer given outside a read: flushed with every other one in the next loop iteration.
    override func sessionWantsFlush() { server.scheduleFlush(self) }

    override func connectionDidClose() { server.remove(self) }
}

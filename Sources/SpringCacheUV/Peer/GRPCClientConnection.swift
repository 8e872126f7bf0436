import CLibUV

/// The libuv driver of a client's connection to one peer: connects, then moves the bytes of its
/// `GRPCClientSession` and tells the client when it is gone.
final class GRPCClientConnection: HTTP2Connection {
    let client: GRPCClient
    let clientSession: GRPCClientSession
    /// Queued for the client's batched flush (`GRPCClient.scheduleFlush`).
    var isDirty = false
    private let connectRequest: UnsafeMutablePointer<uv_connect_t>

    init(client: GRPCClient, tcp: UnsafeMutablePointer<uv_tcp_t>) {
        self.client = client
        connectRequest = .allocate(capacity: 1)
        clientSession = GRPCClientSession(owner: client, nowMillis: client.loop.clock.nowMillis)
        super.init(loop: client.loop, tcp: tcp, buffers: client.buffers, session: clientSession,
                   maxOutputBytes: client.settings.maxOutputBytes)
    }

    deinit {
        // libuv runs the connect callback (UV_ECANCELED at worst) before the handle's close callback.
        connectRequest.deallocate()
    }

    func connect(to address: UnsafePointer<sockaddr>) -> Int32 {
        sc_uv_req_set_data(connectRequest, Unmanaged.passUnretained(self).toOpaque())
        return uv_tcp_connect(connectRequest, tcp, address) { req, status in
            Unmanaged<GRPCClientConnection>.fromOpaque(sc_uv_req_get_data(req!)!).takeUnretainedValue()
                .didConnect(status)
        }
    }

    private func didConnect(_ status: Int32) {
        if isClosing { return }
        if status < 0 {
            client.connectFailed(self, reason: String(cString: uv_strerror(status)))
            return
        }
        clientSession.wasConnected = true
        client.connected(self)
    }

    /// Sends the preface and our SETTINGS, and starts reading.
    func open() {
        clientSession.open()
        startReading()
    }

    /// Requests (and resets) submitted outside a read are written in the next loop iteration, all together.
    override func sessionWantsFlush() { client.scheduleFlush(self) }

    override func connectionDidClose() { client.connectionClosed(self) }
}

import CCurl
import CLibUV

/// libcurl's multi socket interface driven by one uv loop: many HTTP transfers in flight, no thread,
/// no blocking call (curl's `multi-uv.c` example, with ownership made explicit).
///
/// How it runs (STYLE 7): curl's socket callback only creates, arms and closes a `uv_poll_t` per curl
/// socket (`CurlSocket`); its timer callback only starts or stops one `uv_timer_t`. The poll and timer
/// callbacks call `curl_multi_socket_action`, then hand streamed bytes to `onData`, then drain
/// `curl_multi_info_read` and complete finished transfers. User callbacks therefore always run from a uv
/// callback, after curl has returned, so they may call `perform`, `cancel` or `close` freely.
///
/// Contract:
/// - `completion` runs exactly once per transfer, never inside `perform` — unless the transfer is
///   cancelled, by `cancel` or by `close`: then neither `completion` nor `onData` is called again.
///   (Why not a "cancelled" completion: a caller that cancels already knows; and a completion run from
///   `close` would invite retries into a multi that is going away.)
/// - After `close` has begun, `perform` starts nothing and its completion is never called.
/// - Lifetime: the multi retains itself in its timer's `data` and is released when its last uv handle
///   has closed, so call `close` before `uv_loop_close`; `deinit` asserts that it was.
///
/// curl_global_init: done once per process, the first time a `CurlMulti` is created (a Swift static,
/// whose initialisation runs exactly once); curl_global_cleanup is never called (the process ends first).
public final class CurlMulti {
    /// Limits of a `CurlMulti`, named (STYLE 8) and with the defaults documented here.
    public struct Settings {
        /// The most bytes one response body may have (for streams: the most received in one loop turn
        /// before `onData` takes them). Beyond it the transfer is aborted with `.responseTooLarge`.
        /// Default 1 MiB for a value plus 64 KiB for framing (an etcd JSON reply base64-encodes values).
        public var maxResponseBytes: Int = (1 << 20) + (64 << 10)
        /// CURLMOPT_MAX_HOST_CONNECTIONS: connections to one host:port at once; curl queues the rest.
        /// 256 lets hundreds of origin loads run in parallel without one origin getting thousands.
        public var maxHostConnections: Int = 256
        /// CURLMOPT_MAX_TOTAL_CONNECTIONS: connections of this multi at once, all hosts together.
        public var maxTotalConnections: Int = 1024
        /// CURLMOPT_MAXCONNECTS: idle connections kept for reuse (curl's connection cache).
        public var maxCachedConnections: Int = 256
        /// Whether http_proxy/https_proxy/no_proxy from the environment apply. Off: see `CurlTransfer`.
        public var useEnvironmentProxy: Bool = false

        public init() {}
    }

    private enum State { case open, closing, closed }

    public let settings: Settings
    private let loop: UnsafeMutablePointer<uv_loop_t>
    private var multi: UnsafeMutableRawPointer?
    private var state = State.open

    /// curl's one timer (CURLMOPT_TIMERFUNCTION).
    private let timer: UnsafeMutablePointer<uv_timer_t>
    /// Fires once to report failures found in `perform` before curl took the transfer, so that even those
    /// completions run from a uv callback and never inside `perform`.
    private let deferTimer: UnsafeMutablePointer<uv_timer_t>
    /// Set while our own timer callbacks run. Why: libuv 1.44 runs a timer restarted with timeout 0 from a
    /// timer callback again in the same pass (libuv issue #4245), so a curl that keeps asking for 0 would
    /// starve the loop; inside a timer callback we ask for 1 ms instead, as curl's multi-uv.c does.
    private var insideTimerCallback = false

    /// Every unfinished transfer: the only strong references to them.
    private var transfers: [UInt64: CurlTransfer] = [:]
    private var nextTransferID: UInt64 = 1
    /// Transfers whose streamed bytes wait for `onData`, in arrival order.
    private var pendingDelivery: [CurlTransfer] = []
    /// Transfers that failed before reaching curl, completed by `deferTimer`.
    private var earlyFailures: [CurlTransfer] = []
    /// Sockets being watched (not closing), by fd; for closing whatever curl did not remove.
    private var sockets: [curl_socket_t: CurlSocket] = [:]

    /// uv handles initialised and not yet through their close callback.
    private var openHandles = 0
    private var closeCompletions: [() -> Void] = []

    private static let globalInitResult: CURLcode = curl_global_init(Int(CURL_GLOBAL_ALL))

    public init(loop: UnsafeMutablePointer<uv_loop_t>, settings: Settings = Settings()) {
        // Out of memory at start-up, not a runtime I/O error: there is nothing sensible to continue with.
        precondition(CurlMulti.globalInitResult == CURLE_OK, "curl_global_init failed")
        self.loop = loop
        self.settings = settings
        guard let multi = curl_multi_init() else { preconditionFailure("curl_multi_init failed (out of memory)") }
        self.multi = multi
        timer = .allocate(capacity: 1)
        deferTimer = .allocate(capacity: 1)
        uv_timer_init(loop, timer)
        uv_timer_init(loop, deferTimer)
        openHandles = 2
        // The one strong self-reference, released when the last handle has closed.
        let me = Unmanaged.passRetained(self).toOpaque()
        sc_uv_handle_set_data(timer, me)
        sc_uv_handle_set_data(deferTimer, me)

        let unretained = Unmanaged.passUnretained(self).toOpaque()
        _ = sc_curl_multi_setopt_socketfn(multi, curlMultiSocketCallback)
        _ = sc_curl_multi_setopt_ptr(multi, CURLMOPT_SOCKETDATA, unretained)
        _ = sc_curl_multi_setopt_timerfn(multi, curlMultiTimerCallback)
        _ = sc_curl_multi_setopt_ptr(multi, CURLMOPT_TIMERDATA, unretained)
        _ = sc_curl_multi_setopt_long(multi, CURLMOPT_MAX_HOST_CONNECTIONS, settings.maxHostConnections)
        _ = sc_curl_multi_setopt_long(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, settings.maxTotalConnections)
        _ = sc_curl_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, settings.maxCachedConnections)
    }

    deinit {
        assert(state == .closed, "CurlMulti released without close()")
        timer.deallocate()
        deferTimer.deallocate()
    }

    /// Transfers started and not yet completed or cancelled.
    public var inFlight: Int { transfers.count }

    /// Starts a transfer.
    ///
    /// - Parameters:
    ///   - onData: streaming mode when given: body bytes are handed over as they arrive (several network
    ///     reads may be joined into one call; boundaries mean nothing), and the outcome's body is empty.
    ///   - completion: the outcome, exactly once, from a later uv callback (see the type's contract).
    @discardableResult
    public func perform(_ request: CurlRequest, onData: (([UInt8]) -> Void)? = nil,
                        completion: @escaping (CurlOutcome) -> Void) -> CurlTransferHandle {
        let id = nextTransferID
        nextTransferID += 1
        let handle = CurlTransferHandle(id: id)
        guard state == .open, let multi else { return handle }

        let transfer = CurlTransfer(id: id, owner: self, maxBufferedBytes: settings.maxResponseBytes, onData: onData,
                                    completion: completion)
        transfers[id] = transfer
        if let failure = transfer.makeEasyHandle(for: request, settings: settings) {
            transfer.cleanup()
            failEarly(transfer, failure)
            return handle
        }
        // Adding asks curl's timer callback for a 0 ms timeout; the transfer starts from that timer.
        let rc = curl_multi_add_handle(multi, transfer.easy)
        if rc != CURLM_OK {
            transfer.cleanup()
            failEarly(transfer, CurlFailure(kind: .other,
                                            message: "curl_multi_add_handle failed: \(multiErrorText(rc))"))
        }
        return handle
    }

    /// Cancels a transfer: neither its `onData` nor its `completion` will be called.
    /// Returns false when it had already completed or been cancelled. Safe from any user callback.
    @discardableResult
    public func cancel(_ handle: CurlTransferHandle) -> Bool {
        guard let transfer = transfers[handle.id] else { return false }
        detach(transfer)
        return true
    }

    /// Cancels every transfer (their completions are not called), cleans up the multi handle and closes
    /// every uv handle; `completion` runs once all are closed, so `uv_loop_close` can then succeed.
    /// A second call while closing waits for the same end; after the end it completes at once.
    public func close(completion: @escaping () -> Void = {}) {
        switch state {
        case .closed:
            completion()
            return
        case .closing:
            closeCompletions.append(completion)
            return
        case .open:
            break
        }
        state = .closing
        closeCompletions.append(completion)
        for transfer in Array(transfers.values) { detach(transfer) }
        pendingDelivery.removeAll()
        earlyFailures.removeAll()
        if let multi {
            // curl reports CURL_POLL_REMOVE for the sockets of its cached connections while cleaning up.
            curl_multi_cleanup(multi)
            self.multi = nil
        }
        for socket in Array(sockets.values) { socket.close() }
        sockets.removeAll()
        uv_timer_stop(timer)
        uv_timer_stop(deferTimer)
        uv_close(UnsafeMutableRawPointer(timer).assumingMemoryBound(to: uv_handle_t.self), curlMultiTimerCloseCallback)
        uv_close(UnsafeMutableRawPointer(deferTimer).assumingMemoryBound(to: uv_handle_t.self),
                 curlMultiTimerCloseCallback)
    }

    // MARK: - Completing transfers

    /// Removes a transfer from curl and from the table; nothing more will be delivered for it.
    private func detach(_ transfer: CurlTransfer) {
        transfers[transfer.id] = nil
        if let easy = transfer.easy, let multi {
            curl_multi_remove_handle(multi, easy)
        }
        transfer.cleanup()
    }

    private func failEarly(_ transfer: CurlTransfer, _ failure: CurlFailure) {
        transfer.earlyFailure = failure
        earlyFailures.append(transfer)
        uv_timer_start(deferTimer, curlMultiDeferTimerCallback, 0, 0)
    }

    fileprivate func deliverEarlyFailures() {
        let failed = earlyFailures
        earlyFailures.removeAll()
        for transfer in failed where state == .open {
            // Skipped if cancelled meanwhile (no longer in the table).
            guard transfers.removeValue(forKey: transfer.id) != nil, let failure = transfer.earlyFailure else {
                continue
            }
            transfer.completion(.failed(failure))
        }
    }

    /// Called by a streamed transfer's write callback when it first buffers bytes in this socket action.
    func queueDelivery(_ transfer: CurlTransfer) {
        pendingDelivery.append(transfer)
    }

    /// Hands streamed bytes received during the last socket action to their `onData`.
    private func deliverPendingData() {
        while state == .open, !pendingDelivery.isEmpty {
            let transfer = pendingDelivery.removeFirst()
            deliverPendingData(of: transfer)
        }
    }

    private func deliverPendingData(of transfer: CurlTransfer) {
        transfer.queuedForDelivery = false
        guard !transfer.finished, !transfer.pendingData.isEmpty, let onData = transfer.onData else { return }
        let chunk = transfer.pendingData
        transfer.pendingData = []
        onData(chunk)
    }

    /// Completes every transfer curl reports done. Stops early if a completion closed the multi.
    private func drainFinishedTransfers() {
        while state == .open, let multi {
            var queued: Int32 = 0
            guard let message = curl_multi_info_read(multi, &queued) else { break }
            guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle else { continue }
            // Read everything needed before curl_multi_remove_handle invalidates the message.
            let result = message.pointee.data.result
            var privateData: UnsafeMutableRawPointer?
            _ = sc_curl_easy_getinfo_ptr(easy, CURLINFO_PRIVATE, &privateData)
            guard let privateData else { continue }
            // Valid: an easy handle in the multi always belongs to a transfer held by `transfers`.
            let transfer = Unmanaged<CurlTransfer>.fromOpaque(privateData).takeUnretainedValue()
            complete(transfer, result: result)
        }
    }

    private func complete(_ transfer: CurlTransfer, result: CURLcode) {
        if transfer.queuedForDelivery {
            // Bytes that arrived with the end of the stream go to onData before the completion.
            deliverPendingData(of: transfer)
            guard state == .open, !transfer.finished else { return }
        }
        let outcome: CurlOutcome
        if result == CURLE_OK {
            outcome = .response(status: transfer.responseStatus(), body: transfer.body)
        } else {
            outcome = .failed(transfer.failure(for: result))
        }
        transfer.body = []
        detach(transfer)
        transfer.completion(outcome)
    }

    // MARK: - Driving curl from uv callbacks

    /// A poll callback: tell curl which socket is ready, then deliver what it produced.
    func socketIsReady(_ fd: curl_socket_t, flags: Int32) {
        runSocketAction(fd, flags: flags)
    }

    fileprivate func timerFired() {
        insideTimerCallback = true
        runSocketAction(CURL_SOCKET_TIMEOUT, flags: 0)
        insideTimerCallback = false
    }

    private func runSocketAction(_ fd: curl_socket_t, flags: Int32) {
        guard state == .open, let multi else { return }
        var running: Int32 = 0
        // CURLM_BAD_SOCKET for an fd curl already forgot is harmless; anything else would be our bug and
        // still leaves curl consistent, so the result is not acted on.
        _ = curl_multi_socket_action(multi, fd, flags, &running)
        deliverPendingData()
        drainFinishedTransfers()
    }

    // MARK: - curl's callbacks: they only arm and disarm uv handles (STYLE 7)

    fileprivate func curlWantsSocket(_ fd: curl_socket_t, action: Int32, socketp: UnsafeMutableRawPointer?) -> Int32 {
        if action == CURL_POLL_REMOVE {
            if let socketp {
                let socket = Unmanaged<CurlSocket>.fromOpaque(socketp).takeUnretainedValue()
                sockets[socket.fd] = nil
                socket.close()
            }
            if let multi { curl_multi_assign(multi, fd, nil) }
            return 0
        }
        guard state == .open, let multi else { return 0 }
        let socket: CurlSocket
        if let socketp {
            socket = Unmanaged<CurlSocket>.fromOpaque(socketp).takeUnretainedValue()
        } else {
            // A socket curl never removed cannot share the fd with a new one: close the stale watcher.
            sockets[fd]?.close()
            guard let fresh = CurlSocket.open(loop: loop, fd: fd, multi: self) else { return -1 }
            openHandles += 1
            sockets[fd] = fresh
            curl_multi_assign(multi, fd, Unmanaged.passUnretained(fresh).toOpaque())
            socket = fresh
        }
        return socket.watch(curlAction: action) == 0 ? 0 : -1
    }

    fileprivate func curlWantsTimer(_ timeoutMillis: Int) -> Int32 {
        guard state == .open else { return 0 }
        if timeoutMillis < 0 {
            uv_timer_stop(timer)
        } else {
            let delay = timeoutMillis == 0 && insideTimerCallback ? 1 : timeoutMillis
            uv_timer_start(timer, curlMultiTimerFiredCallback, UInt64(delay), 0)
        }
        return 0
    }

    // MARK: - Closing

    /// Called from every close callback of this multi's handles (timers and sockets).
    func handleDidClose() {
        openHandles -= 1
        guard openHandles == 0, state == .closing else { return }
        state = .closed
        let completions = closeCompletions
        closeCompletions.removeAll()
        for completion in completions { completion() }
        Unmanaged.passUnretained(self).release()
    }

    private func multiErrorText(_ code: CURLMcode) -> String {
        String(cString: curl_multi_strerror(code))
    }
}

private let curlMultiSocketCallback: @convention(c) (UnsafeMutableRawPointer?, curl_socket_t, Int32,
                                                     UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32 = {
    _, fd, action, userp, socketp in
    guard let userp else { return -1 }
    return Unmanaged<CurlMulti>.fromOpaque(userp).takeUnretainedValue()
        .curlWantsSocket(fd, action: action, socketp: socketp)
}

private let curlMultiTimerCallback: @convention(c) (UnsafeMutableRawPointer?, Int,
                                                    UnsafeMutableRawPointer?) -> Int32 = { _, timeoutMillis, userp in
    guard let userp else { return -1 }
    return Unmanaged<CurlMulti>.fromOpaque(userp).takeUnretainedValue().curlWantsTimer(timeoutMillis)
}

private let curlMultiTimerFiredCallback: @convention(c) (UnsafeMutablePointer<uv_timer_t>?) -> Void = { timer in
    guard let timer, let data = sc_uv_handle_get_data(timer) else { return }
    Unmanaged<CurlMulti>.fromOpaque(data).takeUnretainedValue().timerFired()
}

private let curlMultiDeferTimerCallback: @convention(c) (UnsafeMutablePointer<uv_timer_t>?) -> Void = { timer in
    guard let timer, let data = sc_uv_handle_get_data(timer) else { return }
    Unmanaged<CurlMulti>.fromOpaque(data).takeUnretainedValue().deliverEarlyFailures()
}

/// Close callback of both timers. The self-reference they share is released by `handleDidClose` once the
/// last handle (timer or socket) has closed.
private let curlMultiTimerCloseCallback: @convention(c) (UnsafeMutablePointer<uv_handle_t>?) -> Void = { handle in
    guard let handle, let data = sc_uv_handle_get_data(handle) else { return }
    sc_uv_handle_set_data(handle, nil)
    Unmanaged<CurlMulti>.fromOpaque(data).takeUnretainedValue().handleDidClose()
}

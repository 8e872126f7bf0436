import CCurl
import CLibUV

/// The `uv_poll_t` watching one curl socket for `CurlMulti`: one instance per socket lifetime, from curl's
/// first CURL_POLL_IN/OUT/INOUT for it to its CURL_POLL_REMOVE.
///
/// Ownership (STYLE 2): the poll handle's `data` holds a retained reference to this object, released in
/// the close callback, which is also where the handle memory is freed. The object holds its `CurlMulti`
/// strongly so the multi outlives every poll callback and close callback of its sockets.
///
/// Why a fresh object per socket lifetime and never reuse: after CURL_POLL_REMOVE curl closes the fd and
/// may open a new socket with the same number before this handle's close callback has run. The closing
/// handle is already stopped (uv_poll_stop unregisters the fd from epoll at once), `curl_multi_assign`
/// forgets it, and the new socket gets a new `CurlSocket` with its own handle.
final class CurlSocket {
    let fd: curl_socket_t
    let multi: CurlMulti
    private let poll: UnsafeMutablePointer<uv_poll_t>
    private(set) var isClosing = false
    private var isClosed = false
    /// The CURL_POLL_* action last asked for, to re-arm after libuv stopped the handle on an error.
    private(set) var action: Int32 = 0

    /// Creates the poll handle for `fd`; nil (nothing to close) when libuv refuses it.
    static func open(loop: UnsafeMutablePointer<uv_loop_t>, fd: curl_socket_t, multi: CurlMulti) -> CurlSocket? {
        let poll = UnsafeMutablePointer<uv_poll_t>.allocate(capacity: 1)
        guard uv_poll_init_socket(loop, poll, fd) == 0 else {
            // "When a function that takes a callback returns an error" nothing was registered: free at once.
            poll.deallocate()
            return nil
        }
        let socket = CurlSocket(fd: fd, multi: multi, poll: poll)
        sc_uv_handle_set_data(poll, Unmanaged.passRetained(socket).toOpaque())
        return socket
    }

    private init(fd: curl_socket_t, multi: CurlMulti, poll: UnsafeMutablePointer<uv_poll_t>) {
        self.fd = fd
        self.multi = multi
        self.poll = poll
    }

    deinit {
        assert(isClosed, "CurlSocket released before its poll handle was closed")
    }

    /// Watches for what curl asked (a CURL_POLL_* action other than REMOVE). Returns libuv's result.
    func watch(curlAction action: Int32) -> Int32 {
        precondition(!isClosing, "a closing CurlSocket must never be reused")
        self.action = action
        var events: Int32 = 0
        if action == CURL_POLL_IN || action == CURL_POLL_INOUT { events |= Int32(UV_READABLE.rawValue) }
        if action == CURL_POLL_OUT || action == CURL_POLL_INOUT { events |= Int32(UV_WRITABLE.rawValue) }
        return uv_poll_start(poll, events, curlSocketPollCallback)
    }

    /// Stops watching and closes the handle; the object is released in the close callback.
    func close() {
        guard !isClosing else { return }
        isClosing = true
        uv_poll_stop(poll)
        uv_close(UnsafeMutableRawPointer(poll).assumingMemoryBound(to: uv_handle_t.self), curlSocketCloseCallback)
    }

    fileprivate func didClose() {
        isClosed = true
        poll.deallocate()
        multi.handleDidClose()
    }
}

private let curlSocketPollCallback: @convention(c) (UnsafeMutablePointer<uv_poll_t>?, Int32, Int32) -> Void = {
    poll, status, events in
    guard let poll, let data = sc_uv_handle_get_data(poll) else { return }
    let socket = Unmanaged<CurlSocket>.fromOpaque(data).takeUnretainedValue()
    // An event already collected for a socket removed earlier in this loop turn: nothing to tell curl.
    guard !socket.isClosing else { return }
    var flags: Int32 = 0
    if status < 0 {
        // libuv reports POLLERR as a status (and stops the handle). Why not CURL_CSELECT_ERR: curl then
        // fails the transfer with "select/poll returned error", skipping its own error handling — notably
        // the retry of a request sent on a reused keep-alive connection the server had just closed.
        // Saying "readable and writable" makes curl read/write and meet the real error itself.
        flags = CURL_CSELECT_IN | CURL_CSELECT_OUT
    } else {
        if events & Int32(UV_READABLE.rawValue) != 0 { flags |= CURL_CSELECT_IN }
        if events & Int32(UV_WRITABLE.rawValue) != 0 { flags |= CURL_CSELECT_OUT }
    }
    socket.multi.socketIsReady(socket.fd, flags: flags)
    if status < 0 && !socket.isClosing {
        // curl still wants this socket watched (no REMOVE came) but libuv stopped the handle: re-arm it,
        // or curl would wait forever for an event that can no longer arrive.
        _ = socket.watch(curlAction: socket.action)
    }
}

private let curlSocketCloseCallback: @convention(c) (UnsafeMutablePointer<uv_handle_t>?) -> Void = { handle in
    guard let handle, let data = sc_uv_handle_get_data(handle) else { return }
    sc_uv_handle_set_data(handle, nil)
    Unmanaged<CurlSocket>.fromOpaque(data).takeRetainedValue().didClose()
}

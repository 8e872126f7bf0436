import CLibUV

/// Work to do "soon, but not now": a uv idle handle that runs `callback` once per loop iteration while
/// scheduled, before the loop next polls for I/O.
///
/// Why an idle handle: an active idle handle makes the loop poll without blocking, so the work runs in the
/// very next iteration whatever phase scheduled it (a timer, an I/O callback, a check handle), and I/O is
/// still polled between two runs, so work that reschedules itself cannot starve the loop (unlike a 0 ms
/// timer restarted from a timer callback, which libuv 1.44 runs again in the same pass).
/// Used for batching: answers and calls produced by many callbacks are flushed with one write, and call
/// completions are never run inside the call that started them.
final class HTTP2DeferredWork {
    private let handle: UnsafeMutablePointer<uv_idle_t>
    private var callback: (() -> Void)?
    private var active = false
    private var closed = false

    init(loop: EventLoop, _ callback: @escaping () -> Void) {
        handle = .allocate(capacity: 1)
        uv_idle_init(loop.uv, handle)
        self.callback = callback
        sc_uv_handle_set_data(handle, Unmanaged.passRetained(self).toOpaque())
    }

    /// Runs `body` once in the next loop iteration on a handle of its own, which then closes itself.
    static func once(loop: EventLoop, _ body: @escaping () -> Void) {
        let work = HTTP2DeferredWork(loop: loop) {}
        work.callback = { [unowned work] in
            body()
            work.close()
        }
        work.schedule()
    }

    /// Runs the callback in the next loop iteration (once, however often this is called before that).
    func schedule() {
        guard !active, !closed else { return }
        active = true
        uv_idle_start(handle) { h in
            let work = Unmanaged<HTTP2DeferredWork>.fromOpaque(sc_uv_handle_get_data(h!)!).takeUnretainedValue()
            // Stopped first: the callback may schedule again for the next iteration.
            work.active = false
            uv_idle_stop(h)
            work.callback?()
        }
    }

    func close() {
        guard !closed else { return }
        closed = true
        callback = nil
        uv_close(UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)) { h in
            Unmanaged<HTTP2DeferredWork>.fromOpaque(sc_uv_handle_get_data(h!)!).release()
        }
    }

    deinit {
        precondition(closed, "HTTP2DeferredWork released without close()")
        handle.deallocate()
    }
}

import CLibUV
import XCTest

@testable import SpringCacheUV

/// A real `EventLoop` for the integration tests: runs until a condition holds (with a guard timeout), calls
/// code from timers, and at the end checks that every handle was closed (`uv_loop_close` returns 0). The gRPC
/// tests use it as it is; the etcd tests add a `CurlMulti` (`EtcdTestLoop`).
class TestLoop {
    let loop: EventLoop
    /// Set once `uv_loop_close` succeeded; nothing may run the loop afterwards.
    var isClosed = false

    init(loop: EventLoop) { self.loop = loop }

    convenience init() throws { self.init(loop: try EventLoop()) }

    deinit {
        guard !isClosed else { return }
        // A failed test left handles open: close whatever is left so the memory can go and the process go on.
        uv_run(loop.uv, UV_RUN_NOWAIT)
        uv_walk(loop.uv, { handle, _ in
            if let handle, uv_is_closing(handle) == 0 { uv_close(handle, nil) }
        }, nil)
        uv_run(loop.uv, UV_RUN_DEFAULT)
        _ = loop.close()
    }

    /// Loop time in milliseconds.
    var nowMillis: Int64 { loop.clock.nowMillis }

    /// Runs the loop until `done()` holds; false if `seconds` passed first. A 5 ms ticker re-checks the
    /// condition even when nothing else wakes the loop (e.g. a subprocess finishing).
    @discardableResult
    func run(upTo seconds: Double, until done: @escaping () -> Bool) -> Bool {
        guard !isClosed else { return done() }  // a tearDown after the loop was closed
        var expired = false
        let watchdog = LoopTimer(loop: loop) { expired = true }
        watchdog.start(timeoutMillis: UInt64(max(0, seconds) * 1000))
        let check = LoopTimer(loop: loop) { if done() || expired { uv_stop(self.loop.uv) } }
        check.start(timeoutMillis: 5, repeatMillis: 5)
        while !done() && !expired {
            uv_run(loop.uv, UV_RUN_ONCE)
        }
        watchdog.close()
        check.close()
        uv_run(loop.uv, UV_RUN_NOWAIT)
        return done()
    }

    /// Runs the loop for `seconds`, whatever happens.
    func run(for seconds: Double) {
        run(upTo: seconds) { false }
    }

    /// Calls `body` from a timer callback after `millis`.
    func after(millis: UInt64, _ body: @escaping () -> Void) {
        var timer: LoopTimer?
        timer = LoopTimer(loop: loop) {
            body()
            timer?.close()
            timer = nil
        }
        timer?.start(timeoutMillis: millis)
    }

    /// Runs until every handle is closed and returns `uv_loop_close`'s status.
    func finish() -> Int32 {
        uv_run(loop.uv, UV_RUN_DEFAULT)
        let status = loop.close()
        if status == 0 { isClosed = true }
        return status
    }
}

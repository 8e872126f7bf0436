import CLibUV
#if canImport(Glibc)
import Glibc
#endif

/// A libuv error code turned into a Swift error once, at the edge (STYLE habit 4).
public struct UVError: Error, CustomStringConvertible {
    public let code: Int32
    public let operation: String

    public init(_ code: Int32, _ operation: String) {
        self.code = code
        self.operation = operation
    }

    public var description: String {
        "\(operation): \(String(cString: uv_strerror(code))) (\(String(cString: uv_err_name(code))))"
    }

    /// Throws when a libuv call returned a negative status.
    @inline(__always)
    static func check(_ status: Int32, _ operation: @autoclosure () -> String) throws {
        if status < 0 { throw UVError(status, operation()) }
    }
}

/// The one libuv loop of a process: everything in a node runs from its callbacks.
public final class EventLoop {
    public let uv: UnsafeMutablePointer<uv_loop_t>
    public let clock: LoopClock
    /// Real timers on this loop, for code that takes a `Scheduler`.
    public private(set) lazy var scheduler = LoopScheduler(loop: self)

    public init() throws {
        uv = .allocate(capacity: 1)
        let status = uv_loop_init(uv)
        if status < 0 {
            uv.deallocate()
            throw UVError(status, "uv_loop_init")
        }
        clock = LoopClock(loop: uv)
    }

    /// Runs until no handle is active (every handle closed or stopped).
    public func run() {
        uv_run(uv, UV_RUN_DEFAULT)
    }

    /// Closes the loop; every handle must have been closed first. Returns libuv's status (0 = clean).
    @discardableResult
    public func close() -> Int32 {
        let status = uv_loop_close(uv)
        if status == 0 { uv.deallocate() }
        return status
    }

    /// How many handles are still open; for shutdown diagnostics.
    public func openHandleCount() -> Int {
        var count = 0
        withUnsafeMutablePointer(to: &count) { p in
            uv_walk(uv, { _, arg in arg!.assumingMemoryBound(to: Int.self).pointee += 1 }, p)
        }
        return count
    }
}

/// Unix-epoch milliseconds from libuv's cached loop time: monotonic, and free to read.
///
/// Why an offset: uv_now is monotonic but has an arbitrary origin; expiry times travel between nodes
/// (GetResponse.expire is unix ms), so the clock is anchored to the wall clock once at start-up.
public final class LoopClock: Clock {
    private let loop: UnsafeMutablePointer<uv_loop_t>
    private let offset: Int64

    init(loop: UnsafeMutablePointer<uv_loop_t>) {
        self.loop = loop
        uv_update_time(loop)
        offset = LoopClock.wallClockMillis() - Int64(uv_now(loop))
    }

    public var nowMillis: Int64 { Int64(uv_now(loop)) + offset }

    public static func wallClockMillis() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}

/// A repeating or one-shot uv timer owned by one Swift object.
///
/// The object keeps itself alive (retained in the handle's data) from `init` until libuv's close
/// callback, so a timer can be dropped by its user at any time after `close()`.
public final class LoopTimer {
    private let handle: UnsafeMutablePointer<uv_timer_t>
    private var callback: (() -> Void)?
    private var closed = false

    public init(loop: EventLoop, _ callback: @escaping () -> Void) {
        handle = .allocate(capacity: 1)
        uv_timer_init(loop.uv, handle)
        self.callback = callback
        sc_uv_handle_set_data(handle, Unmanaged.passRetained(self).toOpaque())
    }

    /// Fires after `timeoutMillis`, then every `repeatMillis` if that is not 0.
    public func start(timeoutMillis: UInt64, repeatMillis: UInt64 = 0) {
        guard !closed else { return }
        uv_timer_start(handle, { h in
            let timer = Unmanaged<LoopTimer>.fromOpaque(sc_uv_handle_get_data(h)!).takeUnretainedValue()
            timer.callback?()
        }, timeoutMillis, repeatMillis)
    }

    public func stop() {
        guard !closed else { return }
        uv_timer_stop(handle)
    }

    /// Keeps the timer from holding the loop open on its own.
    public func unref() { uv_unref(UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)) }

    public func close() {
        guard !closed else { return }
        closed = true
        callback = nil
        uv_close(UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)) { h in
            let timer = Unmanaged<LoopTimer>.fromOpaque(sc_uv_handle_get_data(h!)!)
            timer.release()
        }
    }

    deinit {
        precondition(closed, "LoopTimer released without close()")
        handle.deallocate()
    }
}

/// Watches one POSIX signal on the loop (SIGINT/SIGTERM for graceful stop).
public final class SignalWatcher {
    private let handle: UnsafeMutablePointer<uv_signal_t>
    private var callback: ((Int32) -> Void)?
    private var closed = false

    public init(loop: EventLoop, signal: Int32, _ callback: @escaping (Int32) -> Void) throws {
        handle = .allocate(capacity: 1)
        uv_signal_init(loop.uv, handle)
        self.callback = callback
        sc_uv_handle_set_data(handle, Unmanaged.passRetained(self).toOpaque())
        let status = uv_signal_start(handle, { h, signum in
            let watcher = Unmanaged<SignalWatcher>.fromOpaque(sc_uv_handle_get_data(h!)!).takeUnretainedValue()
            watcher.callback?(signum)
        }, signal)
        if status < 0 {
            close()
            throw UVError(status, "uv_signal_start(\(signal))")
        }
    }

    public func close() {
        guard !closed else { return }
        closed = true
        callback = nil
        uv_close(UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)) { h in
            Unmanaged<SignalWatcher>.fromOpaque(sc_uv_handle_get_data(h!)!).release()
        }
    }

    deinit {
        precondition(closed, "SignalWatcher released without close()")
        handle.deallocate()
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// This build's version, as `--version`, `springcache_build_info` and `/api/stats` report it.
public enum BuildInfo {
    public static let version = "0.9.0"
    /// The compiler that built it (the `swift` label of `springcache_build_info`).
    #if compiler(>=6.3)
    public static let swiftVersion = "6.3"
    #elseif compiler(>=6.2)
    public static let swiftVersion = "6.2"
    #elseif compiler(>=6.1)
    public static let swiftVersion = "6.1"
    #else
    public static let swiftVersion = "6.0"
    #endif
}

/// The process figures Prometheus' client libraries export as `process_*`: CPU time, memory, open file
/// descriptors and their limit, and the start time, read from /proc (Linux only, as the node is).
///
/// Why read /proc at scrape time rather than keep counters: the kernel already keeps them; a scrape every
/// few seconds costs a few small reads, and nothing is added to the request path.
public struct ProcessMetrics {
    public var cpuSeconds: Double = 0
    public var residentBytes: Int = 0
    public var virtualBytes: Int = 0
    public var openFDs: Int = 0
    public var maxFDs: Int = 0
    public var startTimeSeconds: Double = 0

    public init() {}

    /// The current figures; a field that cannot be read stays 0. The start time is the caller's (it does not
    /// change, so it is read once: see `startTimeSeconds()`).
    public static func current(startTimeSeconds: Double) -> ProcessMetrics {
        var m = ProcessMetrics()
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let page = sysconf(Int32(_SC_PAGESIZE))
        if let stat = readSmallFile("/proc/self/stat"), let fields = statFields(stat), fields.count > 21 {
            // Fields after the command (proc(5), counting from 1): 14 utime, 15 stime, 23 vsize, 24 rss;
            // `fields` starts at field 3.
            let utime = Double(fields[11]) ?? 0
            let stime = Double(fields[12]) ?? 0
            m.cpuSeconds = (utime + stime) / ticks
            m.virtualBytes = Int(fields[20]) ?? 0
            m.residentBytes = (Int(fields[21]) ?? 0) * page
        }
        m.startTimeSeconds = startTimeSeconds
        m.openFDs = countOpenFDs()
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 { m.maxFDs = Int(clamping: limit.rlim_cur) }
        return m
    }

    /// The fields of /proc/self/stat after the parenthesised command name (which may hold spaces).
    static func statFields(_ text: String) -> [Substring]? {
        guard let close = text.lastIndex(of: ")") else { return nil }
        return text[text.index(after: close)...].split(separator: " ")
    }

    /// This process's wall-clock start time in seconds (to the clock tick): now, minus the time since boot
    /// (/proc/uptime), plus when after boot it started (/proc/self/stat's starttime). Why /proc/uptime rather
    /// than /proc/stat's btime: /proc/stat grows with cores and interrupts (past 64 KiB on large machines, with
    /// btime after the long `intr` line); /proc/uptime is one line.
    public static func startTimeSeconds() -> Double {
        guard let stat = readSmallFile("/proc/self/stat"), let fields = statFields(stat), fields.count > 19,
              let startTicks = Double(fields[19]) else { return 0 }
        let sinceBoot = startTicks / Double(sysconf(Int32(_SC_CLK_TCK)))
        guard let uptime = readSmallFile("/proc/uptime"), let first = uptime.split(separator: " ").first,
              let up = Double(first) else { return 0 }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let nowSeconds = Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
        return ((nowSeconds - (up - sinceBoot)) * 100).rounded() / 100
    }

    static func countOpenFDs() -> Int {
        guard let dir = opendir("/proc/self/fd") else { return 0 }
        defer { closedir(dir) }
        var n = 0
        while let entry = readdir(dir) {
            if entry.pointee.d_name.0 != CChar(46) { n += 1 }  // skip "." and ".."
        }
        // The directory stream itself holds one descriptor while we count.
        return max(0, n - 1)
    }

    /// Reads a /proc file of at most 64 KiB.
    static func readSmallFile(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 65536 {
            let n = fread(&chunk, 1, chunk.count, file)
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension PrometheusWriter {
    /// The `process_*` families under the names Prometheus' client libraries use, so stock dashboards work.
    public mutating func process(_ m: ProcessMetrics) {
        family("process_cpu_seconds_total", .counter, help: "User and system CPU time spent, in seconds.")
        sample("process_cpu_seconds_total", value: m.cpuSeconds)
        gauge("process_resident_memory_bytes", help: "Resident memory size in bytes.", value: m.residentBytes)
        gauge("process_virtual_memory_bytes", help: "Virtual memory size in bytes.", value: m.virtualBytes)
        gauge("process_open_fds", help: "Open file descriptors.", value: m.openFDs)
        gauge("process_max_fds", help: "The limit on open file descriptors (RLIMIT_NOFILE).", value: m.maxFDs)
        family("process_start_time_seconds", .gauge,
               help: "Start time of the process since the Unix epoch, in seconds.")
        sample("process_start_time_seconds", value: m.startTimeSeconds)
    }
}

// Node/: one node's configuration and wiring — the loop, the API, the cache group, the origin.
#if canImport(Glibc)
import Glibc
#endif

/// Parses the sizes and durations the command line accepts; errors say what form is expected.
public enum ValueParsing {
    /// A byte size: a whole number and a unit, case-insensitive: `B` (or none); binary `KiB MiB GiB TiB` (also
    /// `K M G T`); decimal `KB MB GB TB`. So `65536`, `64KiB`, `64MiB`, `1GiB`, `1TiB`, `512KB`, `5GB`.
    public static func byteSize(_ text: String, flag: String) throws -> Int {
        let expected = "\(flag) expects a size such as 65536, 512KiB, 64MiB, 1GiB or 5GB, got '\(text)'"
        let trimmed = text.trimmingSpaces()
        if trimmed.hasPrefix("-") { throw ConfigError("\(flag) must not be negative, got '\(text)'") }
        let digits = trimmed.prefix { $0.isASCII && $0.isNumber }
        let unit = trimmed.dropFirst(digits.count).lowercased()
        guard !digits.isEmpty, let number = Int(digits) else { throw ConfigError(expected) }
        let multipliers: [String: Int] = [
            "": 1, "b": 1,
            "k": 1 << 10, "kib": 1 << 10, "kb": 1000,
            "m": 1 << 20, "mib": 1 << 20, "mb": 1_000_000,
            "g": 1 << 30, "gib": 1 << 30, "gb": 1_000_000_000,
            "t": 1 << 40, "tib": 1 << 40, "tb": 1_000_000_000_000,
        ]
        guard let multiplier = multipliers[unit] else { throw ConfigError(expected) }
        let (result, overflow) = number.multipliedReportingOverflow(by: multiplier)
        guard !overflow else { throw ConfigError("\(flag): '\(text)' is too large") }
        return result
    }

    /// The longest duration any flag accepts: 10 years.
    public static let maxDurationMillis: Int64 = 3650 * 86_400_000

    /// A duration in milliseconds: `500ms`, `30s`, `3m`, `1h`, `1m30s`, or `0`.
    public static func durationMillis(_ text: String, flag: String) throws -> Int64 {
        let expected = "\(flag) expects a duration such as 500ms, 30s, 3m or 1h, got '\(text)'"
        let trimmed = text.trimmingSpaces()
        if trimmed.hasPrefix("-") { throw ConfigError("\(flag) must not be negative, got '\(text)'") }
        if trimmed == "0" { return 0 }
        var total: Int64 = 0
        var rest = Substring(trimmed)
        guard !rest.isEmpty else { throw ConfigError(expected) }
        while !rest.isEmpty {
            let digits = rest.prefix { $0.isASCII && $0.isNumber }
            guard !digits.isEmpty, let number = Int64(digits) else { throw ConfigError(expected) }
            rest = rest.dropFirst(digits.count)
            let unit = rest.prefix { $0.isLetter }
            rest = rest.dropFirst(unit.count)
            let scale: Int64
            switch unit {
            case "ms": scale = 1
            case "s": scale = 1000
            case "m": scale = 60_000
            case "h": scale = 3_600_000
            default: throw ConfigError(expected)
            }
            let (part, overflow1) = number.multipliedReportingOverflow(by: scale)
            let (sum, overflow2) = total.addingReportingOverflow(part)
            guard !overflow1, !overflow2 else { throw ConfigError("\(flag): '\(text)' is too large") }
            total = sum
        }
        // Why a ceiling: deadlines and expiries are computed as now + duration; ten years keeps every such sum
        // far from overflow, and no setting here means anything beyond it.
        guard total <= maxDurationMillis else {
            throw ConfigError("\(flag): '\(text)' is longer than the longest accepted duration (10 years)")
        }
        return total
    }

    /// A comma-separated list (`--peer a,b`, `--etcd h1:2379,h2:2379`), entries trimmed, empty ones dropped.
    public static func list(_ text: String) -> [String] {
        text.split(separator: ",").map { String($0).trimmingSpaces() }.filter { !$0.isEmpty }
    }

    /// Formats milliseconds the way durations are written on the command line.
    public static func formatDuration(_ millis: Int64) -> String {
        if millis == 0 { return "0" }
        if millis % 3_600_000 == 0 { return "\(millis / 3_600_000)h" }
        if millis % 60_000 == 0 { return "\(millis / 60_000)m" }
        if millis % 1000 == 0 { return "\(millis / 1000)s" }
        return "\(millis)ms"
    }

    /// Formats a byte count with the largest binary unit that divides it.
    public static func formatSize(_ bytes: Int) -> String {
        if bytes > 0 && bytes % (1 << 40) == 0 { return "\(bytes >> 40)TiB" }
        if bytes > 0 && bytes % (1 << 30) == 0 { return "\(bytes >> 30)GiB" }
        if bytes > 0 && bytes % (1 << 20) == 0 { return "\(bytes >> 20)MiB" }
        if bytes > 0 && bytes % (1 << 10) == 0 { return "\(bytes >> 10)KiB" }
        return "\(bytes)"
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}

extension HostPort {
    /// This address with a host name resolved to a numeric address (the first getaddrinfo answer, IPv4
    /// preferred), so `--api localhost:9999` binds like `127.0.0.1:9999`. Numeric hosts are returned as they are.
    /// Resolution happens once, at start-up, before the loop runs: it may block, and nothing is served yet.
    public func resolvedForBinding(flag: String) throws -> HostPort {
        if HostPort.isNumeric(host) { return self }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_ADDRCONFIG
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, nil, &hints, &list)
        guard status == 0, let first = list else {
            throw ConfigError("\(flag) \(self): cannot resolve '\(host)': \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(list) }
        var chosen: UnsafeMutablePointer<addrinfo>? = first
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let entry = p {
            if entry.pointee.ai_family == AF_INET { chosen = entry; break }
            p = entry.pointee.ai_next
        }
        var text = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        guard let entry = chosen,
              getnameinfo(entry.pointee.ai_addr, entry.pointee.ai_addrlen, &text, socklen_t(text.count), nil, 0,
                          NI_NUMERICHOST) == 0 else {
            throw ConfigError("\(flag) \(self): cannot resolve '\(host)'")
        }
        return HostPort(host: String(cString: text), port: port)
    }

    static func isNumeric(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }
}

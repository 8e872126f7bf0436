// Node/: one node's configuration and wiring — the loop, the API, the cache group, the origin.

/// Parses the sizes and durations the command line accepts; errors say what form is expected.
public enum ValueParsing {
    /// A byte size: `65536`, `64KiB`, `64MiB`, `1GiB`, `512KB`, `8MB` (KB/MB/GB are decimal, KiB/MiB/GiB binary).
    public static func byteSize(_ text: String, flag: String) throws -> Int {
        let expected = "\(flag) expects a size such as 65536, 512KiB, 64MiB or 1GiB, got '\(text)'"
        let trimmed = text.trimmingSpaces()
        let digits = trimmed.prefix { $0.isASCII && $0.isNumber }
        let unit = trimmed.dropFirst(digits.count).lowercased()
        guard !digits.isEmpty, let number = Int(digits) else { throw ConfigError(expected) }
        let multipliers: [String: Int] = [
            "": 1, "b": 1,
            "k": 1 << 10, "kib": 1 << 10, "kb": 1000,
            "m": 1 << 20, "mib": 1 << 20, "mb": 1_000_000,
            "g": 1 << 30, "gib": 1 << 30, "gb": 1_000_000_000,
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

#if canImport(Glibc)
import Glibc
#endif

/// Reads a bearer token from a file (`--auth-token-file`, `--peer-token-file`): at most `maxBytes`, surrounding
/// whitespace and the final newline removed, never empty.
public enum TokenFile {
    /// The largest token file accepted.
    public static let maxBytes = 4096

    public static func read(_ path: String, flag: String) throws -> [UInt8] {
        guard let file = fopen(path, "r") else {
            throw ConfigError("\(flag): cannot read '\(path)': \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&chunk, 1, chunk.count, file)
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
            if bytes.count > maxBytes { throw ConfigError("\(flag): '\(path)' is larger than 4 KiB") }
        }
        while let last = bytes.last, last == 10 || last == 13 || last == 32 || last == 9 { bytes.removeLast() }
        while let first = bytes.first, first == 32 || first == 9 { bytes.removeFirst() }
        guard !bytes.isEmpty else { throw ConfigError("\(flag): '\(path)' is empty") }
        return bytes
    }
}

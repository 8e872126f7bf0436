/// The value of the `Date` response header, an IMF-fixdate (RFC 9110 §5.6.7) cached for the current second.
///
/// Why cached: every response carries a `Date` (RFC 9110 §6.6.1: an origin server with a clock MUST send
/// one) and the text only changes once a second, so the loop calls `update(unixSeconds:)` with its cached time
/// and responses copy 29 ready bytes. Formatting is done here, without Foundation or libc locale state.
public struct HTTPDate {
    /// The length of every IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
    public static let length = 29

    private var bytes: [UInt8]
    public private(set) var unixSeconds: Int64

    public init(unixSeconds: Int64 = 0) {
        bytes = [UInt8](repeating: UInt8(ascii: " "), count: HTTPDate.length)
        self.unixSeconds = unixSeconds
        format(unixSeconds)
    }

    /// Re-formats the date if `unixSeconds` is another second than the one already held; otherwise does nothing.
    public mutating func update(unixSeconds seconds: Int64) {
        if seconds == unixSeconds { return }
        unixSeconds = seconds
        format(seconds)
    }

    /// Appends the 29 bytes of the date.
    public func append(to out: inout ByteBuffer) {
        bytes.withUnsafeBytes { out.append($0) }
    }

    /// The date as a String, for tests and logs.
    public var string: String { String(decoding: bytes, as: UTF8.self) }

    private static let dayNames: StaticString = "ThuFriSatSunMonTueWed"   // 1970-01-01 was a Thursday
    private static let monthNames: StaticString = "JanFebMarAprMayJunJulAugSepOctNovDec"

    private mutating func format(_ seconds: Int64) {
        let days = HTTPDate.floorDiv(seconds, 86_400)
        let secondOfDay = Int(seconds - days * 86_400)
        let (year, month, day) = HTTPDate.civilFromDays(days)
        let weekday = Int(((days % 7) + 7) % 7)
        bytes.withUnsafeMutableBufferPointer { b in
            let dn = HTTPDate.dayNames.utf8Start + weekday * 3
            b[0] = dn[0]; b[1] = dn[1]; b[2] = dn[2]
            b[3] = UInt8(ascii: ","); b[4] = UInt8(ascii: " ")
            HTTPDate.put2(b, 5, day)
            b[7] = UInt8(ascii: " ")
            let mn = HTTPDate.monthNames.utf8Start + (month - 1) * 3
            b[8] = mn[0]; b[9] = mn[1]; b[10] = mn[2]
            b[11] = UInt8(ascii: " ")
            // Years outside 0...9999 cannot be written in four digits; clamp rather than corrupt the header.
            let y = min(max(year, 0), 9999)
            HTTPDate.put2(b, 12, y / 100)
            HTTPDate.put2(b, 14, y % 100)
            b[16] = UInt8(ascii: " ")
            HTTPDate.put2(b, 17, secondOfDay / 3600)
            b[19] = UInt8(ascii: ":")
            HTTPDate.put2(b, 20, secondOfDay / 60 % 60)
            b[22] = UInt8(ascii: ":")
            HTTPDate.put2(b, 23, secondOfDay % 60)
            b[25] = UInt8(ascii: " "); b[26] = UInt8(ascii: "G"); b[27] = UInt8(ascii: "M"); b[28] = UInt8(ascii: "T")
        }
    }

    private static func put2(_ b: UnsafeMutableBufferPointer<UInt8>, _ at: Int, _ value: Int) {
        b[at] = UInt8(ascii: "0") + UInt8(value / 10)
        b[at + 1] = UInt8(ascii: "0") + UInt8(value % 10)
    }

    private static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }

    /// Year, month (1...12) and day (1...31) of a day count since 1970-01-01 in the proleptic Gregorian
    /// calendar; Howard Hinnant's `civil_from_days` algorithm.
    static func civilFromDays(_ days: Int64) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097                                   // [0, 146096]
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365  // [0, 399]
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)             // [0, 365]
        let mp = (5 * doy + 2) / 153                                  // [0, 11]
        let day = doy - (153 * mp + 2) / 5 + 1                        // [1, 31]
        let month = mp < 10 ? mp + 3 : mp - 9                         // [1, 12]
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        return (Int(year), Int(month), Int(day))
    }
}

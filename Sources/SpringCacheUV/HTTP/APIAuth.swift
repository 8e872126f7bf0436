/// The bearer-token check of the API's mutating routes (`--auth-token-file`).
///
/// Only the routes that change the cache or the membership are guarded (DESIGN, "HTTP API"); reads stay
/// open. The check itself (scheme case-insensitive, token compared in constant time) is `BearerToken`'s,
/// shared with the peer port.
struct APIAuth {
    /// The token required; nil lets every client write. Replaced when SIGHUP re-reads the file.
    var token: [UInt8]?

    /// The header a refused request is answered with (RFC 9110 §11.6.1: a 401 carries its challenge).
    static let challenge: StaticString = "WWW-Authenticate: Bearer\r\n"
    static let refusal = "this route requires the header \"Authorization: Bearer <token>\""

    /// Whether `request` may use a mutating route.
    func allows(_ request: HTTPRequest) -> Bool {
        guard let token else { return true }
        guard let header = request.head.authorization else { return false }
        return BearerToken.matches(request.slice(header), token: token)
    }
}

// The values exchanged with `CurlMulti`: what to fetch, and what came of it.

/// The HTTP method of a `CurlRequest`.
public enum CurlMethod: String, Sendable {
    case get = "GET"
    case post = "POST"
    case put = "PUT"
    case delete = "DELETE"
    case head = "HEAD"
}

/// One HTTP request for `CurlMulti.perform`.
///
/// The same shape serves short request/response calls (origin loads, etcd range/put/lease calls) and
/// long-lived streams (etcd watch: a POST whose response body arrives in chunks; give it
/// `timeoutMillis: 0`).
public struct CurlRequest {
    /// The whole-transfer timeout used when none is given: generous for an origin or a gateway call.
    public static let defaultTimeoutMillis = 5_000
    /// The connect timeout used when none is given.
    public static let defaultConnectTimeoutMillis = 2_000

    public var url: String
    public var method: CurlMethod
    /// The request body; sent as given (binary safe). `nil` sends none (a POST then sends an empty body).
    public var body: [UInt8]?
    /// Extra header lines, each `Name: value`.
    public var headers: [String]
    /// The limit on the whole transfer, connect included; 0 = none (for streams).
    public var timeoutMillis: Int
    /// The limit on establishing the connection; 0 = curl's default (300 s).
    public var connectTimeoutMillis: Int

    public init(url: String, method: CurlMethod = .get, body: [UInt8]? = nil, headers: [String] = [],
                timeoutMillis: Int = CurlRequest.defaultTimeoutMillis,
                connectTimeoutMillis: Int = CurlRequest.defaultConnectTimeoutMillis) {
        self.url = url
        self.method = method
        self.body = body
        self.headers = headers
        self.timeoutMillis = timeoutMillis
        self.connectTimeoutMillis = connectTimeoutMillis
    }
}

/// Why a transfer produced no HTTP response, converted once from curl's `CURLcode`.
public struct CurlFailure: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        /// `timeoutMillis` (or `connectTimeoutMillis`) passed first.
        case timedOut
        /// The connection could not be made: refused, unreachable, or the host name did not resolve.
        case connectFailed
        /// The response body grew beyond `CurlMulti.Settings.maxResponseBytes`; the transfer was aborted.
        case responseTooLarge
        /// Anything else: reset, malformed reply, unsupported URL, out of memory...
        case other
    }

    public var kind: Kind
    /// curl's own words (its error buffer, else `curl_easy_strerror`), or ours for `responseTooLarge`.
    public var message: String
    /// The `CURLcode`, when curl reported one (0 otherwise).
    public var curlCode: Int

    public init(kind: Kind, message: String, curlCode: Int = 0) {
        self.kind = kind
        self.message = message
        self.curlCode = curlCode
    }

    public var description: String { message }
}

/// What came of a transfer: an HTTP response (any status) or a failure to get one.
public enum CurlOutcome: Equatable {
    /// A complete response. For a streamed transfer `body` is empty: the bytes went to `onData`.
    case response(status: Int, body: [UInt8])
    case failed(CurlFailure)
}

/// Names one transfer started by `CurlMulti.perform`, for `CurlMulti.cancel`.
public struct CurlTransferHandle: Hashable, Sendable {
    let id: UInt64
}

/// What a response needs to know about the request it answers: whether the connection stays open, whether
/// the client spoke HTTP/1.0, and whether the body is left out (HEAD).
public struct HTTPResponseFraming: Equatable {
    public var keepAlive: Bool
    public var isHTTP10: Bool
    /// True for a HEAD request: headers, including the `Content-Length` a GET would get, but no body
    /// (RFC 9110 §9.3.2).
    public var omitBody: Bool

    public init(keepAlive: Bool = true, isHTTP10: Bool = false, omitBody: Bool = false) {
        self.keepAlive = keepAlive
        self.isHTTP10 = isHTTP10
        self.omitBody = omitBody
    }

    public init(request: HTTPRequestHead) {
        self.init(keepAlive: request.keepAlive, isHTTP10: request.isHTTP10, omitBody: request.method == .head)
    }

    /// A framing that closes the connection after the response; for errors the parser reports.
    public func closing() -> HTTPResponseFraming {
        var f = self
        f.keepAlive = false
        return f
    }
}

/// Appends whole HTTP/1.1 responses to a `ByteBuffer` without allocating: status line, standard headers
/// (`Date`, `Server`, `Content-Length`, `Content-Type`, `Connection`), caller headers, and the body.
///
/// Responses always say `HTTP/1.1`, also to HTTP/1.0 clients (RFC 9110 §6.2: a server sends the highest
/// version it conforms to whose major version is not above the request's).
///
/// For headers of its own the caller either passes `extraHeaders`, a closure that appends lines with
/// `appendHeader`, or composes a response from `appendHead` and its own body bytes.
public enum HTTPResponse {
    /// The reason phrase for `status` (RFC 9110 §15), or "Unknown" for a code this server never sends.
    public static func reasonPhrase(_ status: Int) -> StaticString {
        switch status {
        case 100: return "Continue"
        case 200: return "OK"
        case 201: return "Created"
        case 204: return "No Content"
        case 304: return "Not Modified"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 411: return "Length Required"
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 415: return "Unsupported Media Type"
        case 417: return "Expectation Failed"
        case 429: return "Too Many Requests"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 505: return "HTTP Version Not Supported"
        default: return "Unknown"
        }
    }

    /// Whether a response with `status` never has a body (RFC 9110 §6.4.1: 1xx, 204, 304).
    public static func hasNoBody(_ status: Int) -> Bool {
        (100..<200).contains(status) || status == 204 || status == 304
    }

    /// Appends the interim `100 Continue` response (RFC 9110 §15.2.1) that tells the client to send its body.
    public static func appendContinue(to out: inout ByteBuffer) {
        out.append("HTTP/1.1 100 Continue\r\n\r\n")
    }

    /// Appends a status line, the standard headers, the caller's headers and the empty line that ends the
    /// head; the caller then appends exactly `contentLength` body bytes unless `framing.omitBody`.
    ///
    /// For 204 and 304 no `Content-Length` is written (RFC 9110 §8.6 forbids it for 204; for 304 it would
    /// have to repeat the 200's length, which the caller may not know) and no body may follow.
    public static func appendHead(to out: inout ByteBuffer, status: Int, contentType: StaticString?,
                                  contentLength: Int, framing: HTTPResponseFraming, date: HTTPDate,
                                  extraHeaders: (inout ByteBuffer) -> Void = { _ in }) {
        out.reserve(160)
        out.append("HTTP/1.1 ")
        out.appendDecimal(status)
        out.append(UInt8(ascii: " "))
        out.append(reasonPhrase(status))
        out.append("\r\nServer: springcache-uv\r\nDate: ")
        date.append(to: &out)
        out.append("\r\n")
        if !hasNoBody(status) {
            out.append("Content-Length: ")
            out.appendDecimal(contentLength)
            out.append("\r\n")
            if let contentType {
                out.append("Content-Type: ")
                out.append(contentType)
                out.append("\r\n")
            }
        }
        // RFC 9112 §9.3, §9.6: say "close" whenever we will close, so the client does not send more
        // requests into a dying connection; an HTTP/1.0 client keeps the connection only if told "keep-alive".
        if !framing.keepAlive {
            out.append("Connection: close\r\n")
        } else if framing.isHTTP10 {
            out.append("Connection: keep-alive\r\n")
        }
        extraHeaders(&out)
        out.append("\r\n")
    }

    /// Appends a complete response whose body is `body` (left out for HEAD, 204 and 304).
    public static func append(to out: inout ByteBuffer, status: Int, contentType: StaticString?,
                              body: UnsafeRawBufferPointer, framing: HTTPResponseFraming, date: HTTPDate,
                              extraHeaders: (inout ByteBuffer) -> Void = { _ in }) {
        appendHead(to: &out, status: status, contentType: contentType, contentLength: body.count,
                   framing: framing, date: date, extraHeaders: extraHeaders)
        if !framing.omitBody && !hasNoBody(status) { out.append(body) }
    }

    /// Appends a complete response with a fixed text body such as `"done\n"`.
    public static func append(to out: inout ByteBuffer, status: Int, contentType: StaticString?,
                              body: StaticString, framing: HTTPResponseFraming, date: HTTPDate,
                              extraHeaders: (inout ByteBuffer) -> Void = { _ in }) {
        append(to: &out, status: status, contentType: contentType,
               body: UnsafeRawBufferPointer(start: body.utf8Start, count: body.utf8CodeUnitCount),
               framing: framing, date: date, extraHeaders: extraHeaders)
    }

    /// The content type of plain-text answers and error bodies.
    public static let textPlain: StaticString = "text/plain; charset=utf-8"
    /// The content type of springcache's `/api/get` answer and of raw values.
    public static let octetStream: StaticString = "application/octet-stream"

    /// Appends springcache's `/api/get` answer: 200, `application/octet-stream`, body `value=<V>\n`.
    public static func appendValue(to out: inout ByteBuffer, value: UnsafeRawBufferPointer,
                                   framing: HTTPResponseFraming, date: HTTPDate,
                                   extraHeaders: (inout ByteBuffer) -> Void = { _ in }) {
        if appendValueHead(to: &out, valueCount: value.count, framing: framing, date: date,
                           extraHeaders: extraHeaders) {
            out.append(value)
            out.append(UInt8(ascii: "\n"))
        }
    }

    /// `appendValue` up to the value: the head and, when a body follows, `value=`; returns whether the value
    /// and its closing newline must follow (not for HEAD).
    public static func appendValueHead(to out: inout ByteBuffer, valueCount: Int, framing: HTTPResponseFraming,
                                       date: HTTPDate, extraHeaders: (inout ByteBuffer) -> Void = { _ in }) -> Bool {
        appendHead(to: &out, status: 200, contentType: octetStream, contentLength: 7 + valueCount,
                   framing: framing, date: date, extraHeaders: extraHeaders)
        if framing.omitBody { return false }
        out.append("value=")
        return true
    }

    /// Appends an error (or other plain-text) response whose body is `message` followed by a newline.
    ///
    /// Why a sentence and a newline: the API's errors are read by people running curl, so they say what
    /// is wrong in words, and the newline keeps the shell prompt on its own line (as springcache's answers do).
    public static func appendText(to out: inout ByteBuffer, status: Int, message: String,
                                  framing: HTTPResponseFraming, date: HTTPDate,
                                  extraHeaders: (inout ByteBuffer) -> Void = { _ in }) {
        var message = message
        message.withUTF8 { m in
            appendHead(to: &out, status: status, contentType: textPlain, contentLength: m.count + 1,
                       framing: framing, date: date, extraHeaders: extraHeaders)
            if framing.omitBody || hasNoBody(status) { return }
            out.append(UnsafeRawBufferPointer(m))
            out.append(UInt8(ascii: "\n"))
        }
    }

    /// Appends the response to a request the parser rejected; it always closes the connection.
    public static func appendError(to out: inout ByteBuffer, _ error: HTTPParseError,
                                   framing: HTTPResponseFraming, date: HTTPDate) {
        appendText(to: &out, status: error.status, message: error.reason, framing: framing.closing(), date: date)
    }

    // MARK: - Header lines

    /// Appends `name: value\r\n`.
    public static func appendHeader(to out: inout ByteBuffer, name: StaticString, value: StaticString) {
        out.append(name)
        out.append(": ")
        out.append(value)
        out.append("\r\n")
    }

    /// Appends `name: value\r\n` with a decimal value (e.g. `Cache-Control` parts, `Retry-After`).
    public static func appendHeader(to out: inout ByteBuffer, name: StaticString, decimal value: Int) {
        out.append(name)
        out.append(": ")
        out.appendDecimal(value)
        out.append("\r\n")
    }

    /// Appends `name: value\r\n` with value bytes from elsewhere (an ETag, a value derived from a key).
    ///
    /// Why control bytes become spaces: a CR or LF copied from data would end the header early and let that
    /// data write headers of its own (response splitting); a space keeps the response well-formed.
    public static func appendHeader(to out: inout ByteBuffer, name: StaticString, value: UnsafeRawBufferPointer) {
        out.append(name)
        out.append(": ")
        out.reserve(value.count + 2)
        for c in value {
            out.append((c < 0x20 && c != 0x09) || c == 0x7F ? UInt8(ascii: " ") : c)
        }
        out.append("\r\n")
    }
}

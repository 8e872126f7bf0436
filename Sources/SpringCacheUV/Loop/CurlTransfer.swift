import CCurl

/// One transfer of a `CurlMulti`: the owner of one curl easy handle, its header list, its error buffer
/// and the bytes received so far.
///
/// Ownership: `CurlMulti.transfers` holds the only strong reference while the easy handle is in the
/// multi handle. curl's `CURLOPT_PRIVATE` and `CURLOPT_WRITEDATA` hold unretained pointers to it, which
/// stay valid because the easy handle is removed from the multi (`detach`) before the table lets go.
final class CurlTransfer {
    let id: UInt64
    /// The multi that holds this transfer in its table (and so outlives it).
    unowned let owner: CurlMulti
    private(set) var easy: UnsafeMutableRawPointer?
    private var headerList: UnsafeMutablePointer<curl_slist>?
    /// curl writes its detailed message here (CURLOPT_ERRORBUFFER); it must outlive the easy handle.
    private let errorBuffer: UnsafeMutablePointer<CChar>

    /// Streamed transfers hand bytes to `onData`; the others collect them in `body`.
    let onData: (([UInt8]) -> Void)?
    let completion: (CurlOutcome) -> Void
    let maxBufferedBytes: Int

    /// The response body of a non-streamed transfer.
    var body: [UInt8] = []
    /// Bytes of a streamed transfer received during the current `curl_multi_socket_action` call, handed to
    /// `onData` once curl has returned (user code never runs inside a curl callback).
    var pendingData: [UInt8] = []
    var queuedForDelivery = false
    /// Set by the write callback when the body passed `maxBufferedBytes` and the transfer was aborted.
    var overflowed = false
    /// Set once the transfer has left the multi handle, completed or cancelled; nothing more happens to it.
    var finished = false
    /// A failure found before curl took the transfer, delivered from the multi's defer timer.
    var earlyFailure: CurlFailure?

    init(id: UInt64, owner: CurlMulti, maxBufferedBytes: Int, onData: (([UInt8]) -> Void)?,
         completion: @escaping (CurlOutcome) -> Void) {
        self.id = id
        self.owner = owner
        self.maxBufferedBytes = maxBufferedBytes
        self.onData = onData
        self.completion = completion
        errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE))
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE))
    }

    deinit {
        assert(easy == nil, "CurlTransfer released while its easy handle is alive")
        errorBuffer.deallocate()
    }

    var isStreaming: Bool { onData != nil }

    /// Creates and configures the easy handle. Returns a failure instead when curl refuses an option.
    func makeEasyHandle(for request: CurlRequest, settings: CurlMulti.Settings) -> CurlFailure? {
        guard let easy = curl_easy_init() else {
            return CurlFailure(kind: .other, message: "curl_easy_init failed (out of memory)")
        }
        self.easy = easy
        let me = Unmanaged.passUnretained(self).toOpaque()
        var rc = CURLE_OK
        func set(_ code: CURLcode) { if rc == CURLE_OK { rc = code } }

        set(request.url.withCString { sc_curl_easy_setopt_str(easy, CURLOPT_URL, $0) })
        // Why only http and https: URLs come from configuration and templates; file:// or others are
        // never meant and would turn a cache into a file reader.
        set(sc_curl_easy_setopt_str(easy, CURLOPT_PROTOCOLS_STR, "http,https"))
        // Why no signals: curl must not use SIGALRM for DNS timeouts in a process that owns its signals.
        set(sc_curl_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1))
        set(sc_curl_easy_setopt_long(easy, CURLOPT_TIMEOUT_MS, max(0, request.timeoutMillis)))
        set(sc_curl_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, max(0, request.connectTimeoutMillis)))
        // Why keepalive: a stream with no timeout must still notice a peer that vanished.
        set(sc_curl_easy_setopt_long(easy, CURLOPT_TCP_KEEPALIVE, 1))
        if !settings.useEnvironmentProxy {
            // Why: origins and etcd live on the service network; an http_proxy inherited by a daemon is
            // far more often an accident than an intent. "" disables proxies even if the environment sets one.
            set(sc_curl_easy_setopt_str(easy, CURLOPT_PROXY, ""))
        }
        set(sc_curl_easy_setopt_write(easy, CURLOPT_WRITEFUNCTION, curlTransferWriteCallback))
        set(sc_curl_easy_setopt_ptr(easy, CURLOPT_WRITEDATA, me))
        set(sc_curl_easy_setopt_ptr(easy, CURLOPT_PRIVATE, me))
        set(sc_curl_easy_setopt_ptr(easy, CURLOPT_ERRORBUFFER, errorBuffer))

        var headers = request.headers
        let sendsBody = request.body != nil || request.method == .post || request.method == .put
        switch request.method {
        case .get:
            set(sc_curl_easy_setopt_long(easy, CURLOPT_HTTPGET, 1))
        case .head:
            set(sc_curl_easy_setopt_long(easy, CURLOPT_NOBODY, 1))
        case .post, .put, .delete:
            break
        }
        if sendsBody && request.method != .head {
            let body = request.body ?? []
            set(sc_curl_easy_setopt_long(easy, CURLOPT_POST, 1))
            set(sc_curl_easy_setopt_off(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count)))
            // COPYPOSTFIELDS copies now (using the size above), so the body need not outlive this call.
            if body.isEmpty {
                set(sc_curl_easy_setopt_str(easy, CURLOPT_COPYPOSTFIELDS, ""))
            } else {
                set(body.withUnsafeBytes { sc_curl_easy_setopt_ptr(easy, CURLOPT_COPYPOSTFIELDS,
                                                                   UnsafeMutableRawPointer(mutating: $0.baseAddress)) })
            }
            // Why: for bodies over 1 KiB curl would send "Expect: 100-continue" and wait up to a second for
            // a reply that gateways rarely send; an empty "Expect:" line turns that off.
            headers.append("Expect:")
        }
        if request.method == .put || request.method == .delete {
            set(sc_curl_easy_setopt_str(easy, CURLOPT_CUSTOMREQUEST, request.method.rawValue))
        }
        for line in headers {
            guard let list = curl_slist_append(headerList, line) else {
                return CurlFailure(kind: .other, message: "curl_slist_append failed (out of memory)")
            }
            headerList = list
        }
        if let headerList {
            set(sc_curl_easy_setopt_ptr(easy, CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(headerList)))
        }
        if rc != CURLE_OK {
            let reason = String(cString: curl_easy_strerror(rc))
            return CurlFailure(kind: .other, message: "curl refused an option: \(reason)", curlCode: Int(rc.rawValue))
        }
        return nil
    }

    /// Appends received bytes; called by the write trampoline from inside `curl_multi_socket_action`.
    /// Returns false when the bound is passed (curl then aborts the transfer with CURLE_WRITE_ERROR).
    func receive(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if isStreaming {
            if pendingData.count + bytes.count > maxBufferedBytes {
                overflowed = true
                return false
            }
            pendingData.append(contentsOf: bytes)
            if !queuedForDelivery {
                queuedForDelivery = true
                owner.queueDelivery(self)
            }
        } else {
            if body.count + bytes.count > maxBufferedBytes {
                overflowed = true
                return false
            }
            body.append(contentsOf: bytes)
        }
        return true
    }

    /// The HTTP status of the last response received (0 if none).
    func responseStatus() -> Int {
        guard let easy else { return 0 }
        var status = 0
        _ = sc_curl_easy_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
        return status
    }

    /// Converts a failed `CURLcode` to a `CurlFailure`, with curl's detailed message when it left one.
    func failure(for code: CURLcode) -> CurlFailure {
        if overflowed {
            return CurlFailure(kind: .responseTooLarge,
                               message: "response larger than \(maxBufferedBytes) bytes; transfer aborted",
                               curlCode: Int(code.rawValue))
        }
        let detail = String(cString: errorBuffer)
        let message = detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail
        let kind: CurlFailure.Kind
        switch code {
        case CURLE_OPERATION_TIMEDOUT:
            kind = .timedOut
        case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY:
            kind = .connectFailed
        default:
            kind = .other
        }
        return CurlFailure(kind: kind, message: message, curlCode: Int(code.rawValue))
    }

    /// Frees the easy handle and its header list. The caller has removed it from the multi handle first.
    func cleanup() {
        if let easy {
            curl_easy_cleanup(easy)
            self.easy = nil
        }
        if let headerList {
            curl_slist_free_all(headerList)
            self.headerList = nil
        }
        finished = true
    }
}

/// CURLOPT_WRITEFUNCTION trampoline: recovers the transfer from CURLOPT_WRITEDATA and appends.
/// Returning anything but `size * nmemb` makes curl abort the transfer (CURLE_WRITE_ERROR).
private let curlTransferWriteCallback: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int,
                                                       UnsafeMutableRawPointer?) -> Int = { data, size, count, userp in
    let total = size * count
    guard let userp, total > 0 else { return total }
    let transfer = Unmanaged<CurlTransfer>.fromOpaque(userp).takeUnretainedValue()
    let bytes = UnsafeRawBufferPointer(start: data, count: total)
    return transfer.receive(bytes) ? total : 0
}

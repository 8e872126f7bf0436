import CLibUV

// The API's reads: springcache's `GET /api/get` and our `GET|HEAD /v1/cache/{group}/{key}`.
extension APIHandler {
    /// The header of a value served after its reload failed (`--stale-grace`; RFC 9111 §5.5).
    static let staleWarning: StaticString = "Warning: 110 - \"Response is Stale\"\r\n"

    /// `GET /api/get?key=K` → `value=<V>\n` (springcache's answer, byte for byte).
    func getValue(_ request: HTTPRequest, _ writer: ResponseWriter) throws(APIRefusal) -> HTTPHandling {
        let key = try required("key", field("key", in: request.query))
        let framing = HTTPResponseFraming(request)
        let hit: Bool? = group.withFreshValue(forKey: scratchBytes(key)) { view in
            if view.value.count < borrowedValueBytes {
                HTTPResponse.appendValue(to: &writer.bytes, value: view.value, framing: framing, date: date)
            } else {
                appendBorrowedValue(view, to: writer, framing: framing)
            }
            return true
        }
        if hit != nil {
            requestStats.record(route: .get, status: 200, latencyNanos: uv_hrtime() &- request.startNanos)
            return .done
        }
        // Captures nothing (the handler comes as an argument): a closure with captures is an allocation per miss.
        return answerLoad(scratchKey(key), Reply(request, writer, .get)) { handler, reply, found in
            HTTPResponse.appendValue(to: &reply.writer.bytes, value: found.value, framing: reply.framing,
                                     date: handler.date) {
                if found.stale { $0.append(APIHandler.staleWarning) }
            }
            return 200
        }
    }

    /// springcache's answer with a large value sent from its entry (pinned), not copied.
    ///
    /// Why a function of its own, never inlined: kept out of the hit's closure, the small-hit path stays as it
    /// was (inlined into the lookup; 28 instructions per hit more, 6,073, when this was written inline).
    @inline(never)
    private func appendBorrowedValue(_ view: CachedValueView, to writer: ResponseWriter,
                                     framing: HTTPResponseFraming) {
        if HTTPResponse.appendValueHead(to: &writer.bytes, valueCount: view.value.count, framing: framing,
                                        date: date) {
            writer.appendBorrowed(view.value, keeper: view.pin())
            writer.bytes.append(UInt8(ascii: "\n"))
        }
    }

    /// `GET|HEAD /v1/cache/{group}/{key}` → the raw value, with `ETag` and `Cache-Control: max-age`; 304 when
    /// `If-None-Match` names the value's tag.
    func getRawValue(_ request: HTTPRequest, _ writer: ResponseWriter) throws(APIRefusal) -> HTTPHandling {
        let key = try v1Key(request)
        let framing = HTTPResponseFraming(request)
        let ifNoneMatch = request.head.ifNoneMatch.map { request.slice($0) }
        let now = clock.nowMillis
        let status: Int? = group.withFreshValue(forKey: scratchBytes(key)) { view in
            let found = FoundValue(value: view.value, expiresAtMillis: view.expiresAtMillis, etag: view.etag,
                                   stale: false, cached: view)
            return writeRawValue(found, to: writer, framing: framing, now: now, ifNoneMatch: ifNoneMatch)
        }
        if let status {
            requestStats.record(route: .v1Get, status: status, latencyNanos: uv_hrtime() &- request.startNanos)
            return .done
        }
        // The request's bytes are gone when the load lands: keep the header's own copy.
        let ifNoneMatchCopy = ifNoneMatch.map { Array($0) }
        return answerLoad(scratchKey(key), Reply(request, writer, .v1Get)) { handler, reply, found in
            let now = handler.clock.nowMillis
            guard let ifNoneMatchCopy else {
                return handler.writeRawValue(found, to: reply.writer, framing: reply.framing, now: now,
                                             ifNoneMatch: nil)
            }
            return ifNoneMatchCopy.withUnsafeBytes {
                handler.writeRawValue(found, to: reply.writer, framing: reply.framing, now: now, ifNoneMatch: $0)
            }
        }
    }

    /// A value as a read answers it, from the cache at once or from a load that landed.
    struct FoundValue {
        let value: UnsafeRawBufferPointer
        let expiresAtMillis: Int64
        let etag: UInt64
        /// Served after its reload failed (`--stale-grace`).
        let stale: Bool
        /// The cache entry `value` lives in, for a hit: a large value is then sent from it (pinned), not copied.
        var cached: CachedValueView? = nil
    }

    /// Looks `key` up through the group (its owner, or the origin) and answers when the get lands:
    /// `writeValue` writes a value found (with this handler) and returns its status; nothing found is 404, a
    /// failed load 502/504.
    private func answerLoad(_ key: CacheKey, _ reply: Reply,
                            writeValue: @escaping (APIHandler, Reply, FoundValue) -> Int) -> HTTPHandling {
        let pending: PendingRead
        if let idle = pendingReads.take() {
            idle.rearm(key: key, reply: reply, writeValue: writeValue)
            pending = idle
        } else {
            pending = PendingRead(handler: self, key: key, reply: reply, writeValue: writeValue)
        }
        return deferAnswer(pending) {
            // Captures one object and nothing else: such a closure costs no allocation of its own.
            group.get(key: key) { outcome in pending.landed(outcome) }
        }
    }

    /// Answered reads kept for reuse. Why 256: one is in use per read waiting for a fetch or load, at most one
    /// per HTTP connection; past that a read allocates its object, as before pooling.
    static let pendingReadPoolLimit = 256

    /// A read waiting for its get to land: the deferred answer and what writing it needs, in one object
    /// (issue 11: a remote hit's closure contexts and deferred-answer flags were one allocation each). Reused
    /// through `pendingReads` once answered and nothing else holds it (`ReusePool`).
    final class PendingRead: DeferredAnswer {
        /// Unowned: a handler outlives the connections it answers (as the closures this replaced assumed).
        unowned let handler: APIHandler
        private var key: CacheKey
        /// nil once answered: a second landing (a bug of the group) then writes nothing.
        private var reply: Reply?
        private var writeValue: (APIHandler, Reply, FoundValue) -> Int

        init(handler: APIHandler, key: CacheKey, reply: Reply,
             writeValue: @escaping (APIHandler, Reply, FoundValue) -> Int) {
            self.handler = handler
            self.key = key
            self.reply = reply
            self.writeValue = writeValue
            super.init(reply.writer)
        }

        func rearm(key: CacheKey, reply: Reply, writeValue: @escaping (APIHandler, Reply, FoundValue) -> Int) {
            self.key = key
            self.reply = reply
            self.writeValue = writeValue
            rearm(reply.writer)
        }

        func landed(_ outcome: GetOutcome) {
            guard let reply else { return }
            switch outcome {
            case .value(let value, let expiresAt, let etag, let stale):
                let status = value.withUnsafeBytes {
                    writeValue(handler, reply, FoundValue(value: $0, expiresAtMillis: expiresAt, etag: etag,
                                                          stale: stale))
                }
                handler.record(reply, status)
            case .notFound:
                handler.text(reply, 404, "key \"\(key)\" not found in group \"\(handler.group.name)\"")
            case .failure(let error):
                handler.text(reply, APIHandler.status(of: error), error.message)
            }
            finish()
            // Idle, it pins neither the connection nor the key; `deferAnswer` may still read whether it finished.
            self.reply = nil
            key = CacheKey([])
            writeValue = { _, _, _ in 0 }  // captures nothing: drops what the read's closure captured
            releaseWriter()
            handler.pendingReads.giveBack(self)
        }
    }

    /// Writes a raw value with its validators; 304 when the client's If-None-Match names its ETag.
    private func writeRawValue(_ found: FoundValue, to writer: ResponseWriter, framing: HTTPResponseFraming,
                               now: Int64, ifNoneMatch: UnsafeRawBufferPointer?) -> Int {
        EntityTag.withQuoted(found.etag) { etag in
            let maxAge = max(0, (found.expiresAtMillis - now) / 1000)
            let notModified = ifNoneMatch.map { EntityTag.matches($0, etag) } ?? false
            let status = notModified ? 304 : 200
            HTTPResponse.appendHead(to: &writer.bytes, status: status, contentType: HTTPResponse.octetStream,
                                    contentLength: found.value.count, framing: framing, date: date) { o in
                HTTPResponse.appendHeader(to: &o, name: "ETag", value: etag)
                o.append("Cache-Control: max-age=")
                o.appendDecimal(Int(maxAge))
                o.append("\r\n")
                if found.stale { o.append(APIHandler.staleWarning) }
            }
            if framing.omitBody || notModified { return status }
            if let cached = found.cached, found.value.count >= borrowedValueBytes {
                writer.appendBorrowed(found.value, keeper: cached.pin())
            } else {
                writer.bytes.append(found.value)
            }
            return status
        }
    }

    /// The status of a failed load: 502 when the origin or owner failed, 504 when it did not answer in time.
    static func status(of error: LoadError) -> Int {
        switch error {
        case .unavailable: return 502
        case .timedOut: return 504
        }
    }
}

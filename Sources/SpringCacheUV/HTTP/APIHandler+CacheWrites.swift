// The API's writes: springcache's `POST /api/set`, our `POST /api/delete`, and `PUT|DELETE
// /v1/cache/{group}/{key}`. All four are one shape: read the parameters, run the write at the key's owner
// through the group, and answer its outcome (`answerWrite`).
extension APIHandler {
    /// `POST /api/set` form `key, value, expire, hot` → `done\n`, with springcache's validation.
    func setValue(_ request: HTTPRequest, _ writer: ResponseWriter) throws(APIRefusal) -> HTTPHandling {
        let key = try required("key", formField("key", of: request))
        guard let value = try formField("value", of: request) else {
            throw APIRefusal(400, "missing form field \"value\"")
        }
        var ttlMillis: Int64? = nil
        if let expire = try formField("expire", of: request) {
            guard let minutes = expire.isEmpty ? 0 : decimal(expire, max: APIHandler.maxExpireMinutes) else {
                throw APIRefusal(400, "expire must be whole minutes from 0 to \(APIHandler.maxExpireMinutes)"
                                 + " (3 days; 0 = the default TTL), got \"\(scratchString(expire))\"")
            }
            if minutes > 0 { ttlMillis = Int64(minutes) * 60_000 }
        }
        let hot = try hotFlag(formField("hot", of: request))
        let write = CacheWrite.store(scratchKey(key), value: Array(scratchBytes(value)), ttlMillis: ttlMillis, hot: hot)
        return answerWrite(Reply(request, writer, .set), write, success: .text("done"))
    }

    /// `POST /api/delete` form `key` → `deleted\n`, 404 if nothing was cached under it.
    func deleteValue(_ request: HTTPRequest, _ writer: ResponseWriter) throws(APIRefusal) -> HTTPHandling {
        let key = try required("key", formField("key", of: request))
        return answerWrite(Reply(request, writer, .delete), .erase(scratchKey(key)), success: .text("deleted"))
    }

    /// `PUT /v1/cache/{group}/{key}?ttl=SECONDS&hot=true`, the body being the value → 204.
    func putRawValue(_ request: HTTPRequest, _ writer: ResponseWriter) throws(APIRefusal) -> HTTPHandling {
        let key = try v1Key(request)
        var ttlMillis: Int64? = nil
        if let ttl = try field("ttl", in: request.query) {
            guard let seconds = decimal(ttl, max: APIHandler.maxTTLSeconds) else {
                throw APIRefusal(400, "ttl must be whole seconds from 0 to \(APIHandler.maxTTLSeconds)"
                                 + " (3 days; 0 = the default TTL), got \"\(scratchString(ttl))\"")
            }
            if seconds > 0 { ttlMillis = Int64(seconds) * 1000 }
        }
        let hot = try hotFlag(field("hot", in: request.query))
        let write = CacheWrite.store(scratchKey(key), value: Array(request.body), ttlMillis: ttlMillis, hot: hot)
        return answerWrite(Reply(request, writer, .v1Put), write, success: .noContent)
    }

    /// `DELETE /v1/cache/{group}/{key}` → 204, 404 if nothing was cached under it.
    func deleteRawValue(_ request: HTTPRequest, _ writer: ResponseWriter) throws(APIRefusal) -> HTTPHandling {
        let key = try v1Key(request)
        return answerWrite(Reply(request, writer, .v1Delete), .erase(scratchKey(key)), success: .noContent)
    }

    /// What a write route asks of the group.
    enum CacheWrite {
        case store(CacheKey, value: [UInt8], ttlMillis: Int64?, hot: Bool)
        case erase(CacheKey)

        /// What the client is told was not done when the owner did not take the write.
        var verb: String {
            switch self {
            case .store: return "stored"
            case .erase: return "deleted"
            }
        }
    }

    /// How a write route says it was done: springcache's routes with a line of text, `/v1/cache` with 204.
    enum WriteSuccess {
        case text(String)
        case noContent
    }

    /// Runs `write` through the group (at the key's owner) and answers its outcome: `success` when done; 413
    /// when a value does not fit, 404 when a delete found nothing; 503 when the owner is unreachable and 502
    /// when it refused, so the client never hears "done" unless the owner did it (docs/reliability.md, "Writes
    /// across a partition").
    private func answerWrite(_ reply: Reply, _ write: CacheWrite, success: WriteSuccess) -> HTTPHandling {
        deferAnswer(reply.writer) { [unowned self] deferred in
            let answer = { (outcome: WriteOutcome) in
                self.answer(outcome, of: write, reply, success)
                deferred.finish()
            }
            switch write {
            case .store(let key, let value, let ttlMillis, let hot):
                self.group.writer.write(key: key, value: value, ttlMillis: ttlMillis, hot: hot, outcome: answer)
            case .erase(let key):
                self.group.writer.erase(key: key, outcome: answer)
            }
        }
    }

    private func answer(_ outcome: WriteOutcome, of write: CacheWrite, _ reply: Reply, _ success: WriteSuccess) {
        switch (outcome, write, success) {
        case (.done(true), _, .text(let message)):
            text(reply, 200, message)
        case (.done(true), _, .noContent):
            noContent(reply)
        case (.done(false), .store(_, let value, _, let hot), _):
            text(reply, 413, "value of \(value.count) bytes does not fit in the " + (hot ? "hot" : "main") + " cache")
        case (.done(false), .erase(let key), _):
            text(reply, 404, "key \"\(key)\" was not cached")
        case (.ownerUnreachable(let owner), _, _):
            text(reply, 503, "the owner of this key, node \(owner), is unreachable: nothing was \(write.verb); "
                 + "retry once it is back")
        case (.ownerFailed(let why), _, _):
            text(reply, 502, "the owner of this key refused it: \(why); nothing was \(write.verb)")
        }
    }
}

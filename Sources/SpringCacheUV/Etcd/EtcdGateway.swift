/// The etcd v3 JSON gateway's messages: request bodies made, replies read. Pure (no I/O), so the mapping of
/// real replies is tested without a server.
///
/// The rules come from the proto3 JSON mapping as etcd 3.4's grpc-gateway applies it (see
/// reference/etcd-gateway.md): `bytes` fields are base64; 64-bit integers are JSON strings (a number is
/// accepted too); a field equal to its default (0, false, empty, the first enum value) is omitted, so a missing
/// `TTL` means 0, a missing `kvs` means none, and an event without `type` is a PUT.
public enum EtcdGateway {
    // MARK: - Requests

    /// `/v3/lease/grant`: `{"TTL":"10"}`.
    public static func grantBody(ttlSeconds: Int) -> [UInt8] {
        json { $0.field("TTL", String(ttlSeconds)) }
    }

    /// `/v3/kv/put`: `{"key":B64,"value":B64,"lease":"ID"}`; no `lease` for 0 (no lease).
    public static func putBody(key: [UInt8], value: [UInt8], lease: Int64) -> [UInt8] {
        json { json in
            json.field("key", Base64.encode(key))
            json.field("value", Base64.encode(value))
            if lease != 0 { json.field("lease", String(lease)) }
        }
    }

    /// `/v3/kv/range`: one key when `rangeEnd` is nil, else the keys in [key, rangeEnd).
    public static func rangeBody(key: [UInt8], rangeEnd: [UInt8]?) -> [UInt8] {
        json { json in
            json.field("key", Base64.encode(key))
            if let rangeEnd { json.field("range_end", Base64.encode(rangeEnd)) }
        }
    }

    /// `/v3/lease/keepalive`, `/v3/lease/revoke`, `/v3/lease/timetolive`: `{"ID":"ID"}`.
    public static func leaseBody(id: Int64) -> [UInt8] {
        json { $0.field("ID", String(id)) }
    }

    /// `/v3/watch`: `{"create_request":{"key":B64,"range_end":B64,"start_revision":"REV"}}`.
    public static func watchBody(key: [UInt8], rangeEnd: [UInt8], startRevision: Int64) -> [UInt8] {
        json { json in
            json.key("create_request")
            json.object { json in
                json.field("key", Base64.encode(key))
                json.field("range_end", Base64.encode(rangeEnd))
                if startRevision > 0 { json.field("start_revision", String(startRevision)) }
            }
        }
    }

    /// The end of the range holding every key that starts with `prefix` (etcd's `clientv3.GetPrefixRangeEnd`):
    /// the prefix with its last byte incremented, trailing 0xFF bytes dropped first; `[0]` (every key from
    /// `prefix` on) when nothing is left to increment.
    public static func prefixRangeEnd(_ prefix: [UInt8]) -> [UInt8] {
        var end = prefix
        while let last = end.last {
            if last < 0xFF {
                end[end.count - 1] = last + 1
                return end
            }
            end.removeLast()
        }
        return [0]
    }

    private static func json(_ body: (inout JSONWriter) -> Void) -> [UInt8] {
        var buffer = ByteBuffer(capacity: 256)
        JSONWriter.write(into: &buffer) { json in json.object(body) }
        let bytes = Array(buffer.readable)
        return bytes
    }

    // MARK: - Replies

    /// A reply that is JSON but not the expected shape.
    public struct ReplyError: Error, Equatable, CustomStringConvertible {
        public var message: String
        public init(_ message: String) { self.message = message }
        public var description: String { message }
    }

    /// A 64-bit integer field: a JSON string (what etcd sends) or number; absent means 0 (the omitted default).
    static func int64(_ value: JSONValue?, _ name: String) throws -> Int64 {
        guard let value else { return 0 }
        switch value {
        case .string(let text):
            guard let n = Int64(text) else { throw ReplyError("\(name) is not a 64-bit integer: \"\(text)\"") }
            return n
        case .number:
            guard let n = value.int64Value else { throw ReplyError("\(name) is not a 64-bit integer") }
            return n
        default:
            throw ReplyError("\(name) is neither a string nor a number")
        }
    }

    /// A `bytes` field: base64; absent means empty.
    static func bytes(_ value: JSONValue?, _ name: String) throws -> [UInt8] {
        guard let value else { return [] }
        guard let text = value.stringValue else { throw ReplyError("\(name) is not a string") }
        guard let bytes = Base64.decode(text) else { throw ReplyError("\(name) is not valid base64: \"\(text)\"") }
        return bytes
    }

    static func object(_ reply: JSONValue, _ what: String) throws -> JSONValue {
        guard reply.objectValue != nil else { throw ReplyError("\(what) reply is not a JSON object") }
        return reply
    }

    /// `header.revision` of a reply (0 when absent).
    static func revision(of reply: JSONValue) throws -> Int64 {
        try int64(reply["header"]?["revision"], "header.revision")
    }

    /// A `/v3/lease/grant` reply: the lease ID and the TTL etcd granted.
    public static func parseGrant(_ reply: JSONValue) throws -> EtcdLease {
        let reply = try object(reply, "grant")
        if let error = reply["error"]?.stringValue { throw ReplyError("grant failed: \(error)") }
        let id = try int64(reply["ID"], "ID")
        let ttl = try int64(reply["TTL"], "TTL")
        guard id != 0 else { throw ReplyError("grant reply has no lease ID") }
        guard ttl > 0 else { throw ReplyError("grant reply has no TTL") }
        return EtcdLease(id: id, ttlSeconds: ttl)
    }

    /// A `/v3/lease/keepalive` reply: `{"result":{"ID":..,"TTL":..}}`; the TTL, 0 when the lease is gone
    /// (etcd then omits it: "For a lease that has expired the reply has no TTL").
    public static func parseKeepAlive(_ reply: JSONValue) throws -> Int64 {
        let reply = try object(reply, "keepalive")
        guard let result = reply["result"], result.objectValue != nil else {
            if let message = reply["error"]?["message"]?.stringValue ?? reply["error"]?.stringValue {
                throw ReplyError("keepalive failed: \(message)")
            }
            throw ReplyError("keepalive reply has no result")
        }
        return max(0, try int64(result["TTL"], "TTL"))
    }

    /// A `/v3/kv/put` reply: its revision.
    public static func parsePut(_ reply: JSONValue) throws -> Int64 {
        try revision(of: try object(reply, "put"))
    }

    /// A `/v3/kv/range` reply: the header revision and the key-values (none when `kvs` is absent).
    public static func parseRange(_ reply: JSONValue) throws -> EtcdRangeResult {
        let reply = try object(reply, "range")
        var kvs: [EtcdKeyValue] = []
        if let list = reply["kvs"] {
            guard let elements = list.arrayValue else { throw ReplyError("kvs is not an array") }
            kvs = try elements.map { try parseKeyValue($0) }
        }
        return EtcdRangeResult(revision: try revision(of: reply), kvs: kvs)
    }

    static func parseKeyValue(_ kv: JSONValue) throws -> EtcdKeyValue {
        guard kv.objectValue != nil else { throw ReplyError("kv is not an object") }
        let key = try bytes(kv["key"], "kv.key")
        guard !key.isEmpty else { throw ReplyError("kv has no key") }
        return EtcdKeyValue(key: key, value: try bytes(kv["value"], "kv.value"),
                            lease: try int64(kv["lease"], "kv.lease"),
                            createRevision: try int64(kv["create_revision"], "kv.create_revision"),
                            modRevision: try int64(kv["mod_revision"], "kv.mod_revision"),
                            version: try int64(kv["version"], "kv.version"))
    }

    /// One line of a `/v3/watch` stream.
    ///
    /// Lines are `{"result":{...}}` (a WatchResponse) or, when the gateway fails the stream,
    /// `{"error":{"grpc_code":..,"message":..}}`; a canceled watch (`canceled: true`, with a
    /// `compact_revision` when the start revision was compacted) is reported as such, and the caller ends it.
    public static func parseWatchLine(_ line: [UInt8]) throws -> EtcdWatchMessage {
        let reply: JSONValue
        do {
            reply = try JSONValue.parse(line)
        } catch {
            throw ReplyError("\(error)")
        }
        guard reply.objectValue != nil else { throw ReplyError("watch line is not a JSON object") }
        if let error = reply["error"] {
            let message = error["message"]?.stringValue ?? error.stringValue ?? "watch stream failed"
            return .failed(message)
        }
        guard let result = reply["result"], result.objectValue != nil else {
            throw ReplyError("watch line has neither result nor error")
        }
        let revision = try revision(of: result)
        if result["canceled"]?.boolValue == true {
            return .canceled(compactRevision: try int64(result["compact_revision"], "compact_revision"),
                             reason: result["cancel_reason"]?.stringValue ?? "")
        }
        let compactRevision = try int64(result["compact_revision"], "compact_revision")
        if compactRevision != 0 {
            return .canceled(compactRevision: compactRevision, reason: "required revision has been compacted")
        }
        if result["created"]?.boolValue == true { return .created(revision: revision) }
        guard let list = result["events"] else { return .progress(revision: revision) }
        guard let elements = list.arrayValue else { throw ReplyError("events is not an array") }
        var events: [EtcdEvent] = []
        for element in elements {
            let type: EtcdEvent.Kind
            switch element["type"]?.stringValue {
            case nil, "PUT": type = .put
            case "DELETE": type = .delete
            case let other?: throw ReplyError("unknown event type \(other)")
            }
            guard let kv = element["kv"] else { throw ReplyError("event has no kv") }
            events.append(EtcdEvent(kind: type, kv: try parseKeyValue(kv)))
        }
        return .events(revision: revision, events)
    }

    /// The message of an error reply (`{"error":..,"message":..,"code":5}`), else the body as text.
    static func errorMessage(_ body: [UInt8]) -> String {
        if let reply = try? JSONValue.parse(body),
           let message = reply["message"]?.stringValue ?? reply["error"]?.stringValue {
            return message
        }
        return text(body)
    }

    /// Up to 200 bytes of a body as text, for error messages.
    static func text(_ body: [UInt8]) -> String {
        let limit = 200
        let shown = String(decoding: body.prefix(limit), as: UTF8.self)
        return body.count > limit ? shown + "…" : shown
    }
}

/// A granted lease.
public struct EtcdLease: Equatable, Sendable {
    public var id: Int64
    public var ttlSeconds: Int64
}

/// One key-value as etcd returns it (mvccpb.KeyValue).
public struct EtcdKeyValue: Equatable, Sendable {
    public var key: [UInt8]
    public var value: [UInt8]
    /// The lease the key is attached to; 0 for none.
    public var lease: Int64
    public var createRevision: Int64
    public var modRevision: Int64
    public var version: Int64

    public init(key: [UInt8], value: [UInt8], lease: Int64 = 0, createRevision: Int64 = 0, modRevision: Int64 = 0,
                version: Int64 = 0) {
        self.key = key
        self.value = value
        self.lease = lease
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.version = version
    }
}

/// What a range returned: the store's revision when it answered, and the key-values.
public struct EtcdRangeResult: Equatable, Sendable {
    public var revision: Int64
    public var kvs: [EtcdKeyValue]
}

/// One change seen by a watch. A DELETE's `kv` has only `key` and `modRevision`.
public struct EtcdEvent: Equatable, Sendable {
    public enum Kind: Equatable, Sendable { case put, delete }
    public var kind: Kind
    public var kv: EtcdKeyValue
}

/// One line of a watch stream, read.
public enum EtcdWatchMessage: Equatable, Sendable {
    /// The first line: the watch exists.
    case created(revision: Int64)
    case events(revision: Int64, [EtcdEvent])
    /// A response with neither events nor news (a progress notification).
    case progress(revision: Int64)
    /// etcd canceled the watch; `compactRevision` != 0 when the start revision was compacted away.
    case canceled(compactRevision: Int64, reason: String)
    /// The gateway reported an error on the stream.
    case failed(String)
}

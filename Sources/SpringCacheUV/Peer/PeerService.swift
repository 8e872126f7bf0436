// Peer/: the gRPC peer protocol — server, client, protobuf codec.

/// The `springcachepb.SpringCache` service a node offers its peers: Get, Set and Delete of springcache,
/// plus Invalidate, answered from this node's group.
///
/// A peer's Get is answered by loading locally, never by forwarding again: the caller already decided this
/// node owns the key, and if the two rings disagree during churn the cost is an extra origin load, never a
/// loop or a deadlock (DESIGN, "Ring and membership").
public final class PeerService: GRPCServiceHandler {
    public static let getPath = "/springcachepb.SpringCache/Get"
    public static let setPath = "/springcachepb.SpringCache/Set"
    public static let deletePath = "/springcachepb.SpringCache/Delete"
    public static let invalidatePath = "/springcachepb.SpringCache/Invalidate"

    let group: Group
    let clock: Clock
    /// Largest value a peer may Set (`--max-body-bytes`, the same bound the API applies).
    let maxValueBytes: Int
    /// The group's name as bytes, compared with a Get's group field without making a String of it.
    private let groupNameBytes: [UInt8]

    public var methodPaths: [String] {
        [PeerService.getPath, PeerService.setPath, PeerService.deletePath, PeerService.invalidatePath]
    }

    /// The peer token (`--peer-token-file`) is checked by the transport (`GRPCServerSettings.peerToken`)
    /// as soon as a request's headers arrive, before its message is read.
    public init(group: Group, clock: Clock, maxValueBytes: Int = .max) {
        self.group = group
        self.clock = clock
        self.maxValueBytes = maxValueBytes
        groupNameBytes = Array(group.name.utf8)
    }

    public func handle(_ call: GRPCServerCall) {
        do {
            switch call.path {
            case PeerService.getPath: try get(call)
            case PeerService.setPath: try set(call)
            case PeerService.deletePath: try delete(call, invalidateOthers: true)
            case PeerService.invalidatePath: try delete(call, invalidateOthers: false)
            default: call.fail(status: .unimplemented, message: "unknown method \(call.path)")
            }
        } catch let error as ProtoDecodeError {
            call.fail(status: .invalidArgument, message: "malformed request message: \(error)")
        } catch {
            call.fail(status: .internal, message: "\(error)")
        }
    }

    private func checkGroup(_ name: String, _ call: GRPCServerCall) -> Bool {
        if name == group.name { return true }
        call.fail(status: .notFound, message: "no such group \"\(name)\"")
        return false
    }

    private func get(_ call: GRPCServerCall) throws {
        if answerFreshHit(call) { return }
        let request = try GetRequest.decode(call.message)
        guard checkGroup(request.group, call) else { return }
        // The probe of a dropped peer asks for the empty key: answer at once, never load it.
        guard !request.key.isEmpty else {
            call.fail(status: .notFound, message: "the key must not be empty")
            return
        }
        group.get(key: request.key, forward: false) { outcome in
            guard !call.isCancelled else { return }
            switch outcome {
            case .value(let value, let expiresAt, _, _):
                call.respond { GetResponse(value: value, expireMillis: expiresAt).encode(into: &$0) }
            case .notFound:
                call.fail(status: .notFound, message: "key \"\(request.key)\" not found in group \"\(request.group)\"")
            case .failure(let error):
                switch error {
                case .timedOut(let m): call.fail(status: .deadlineExceeded, message: m)
                case .unavailable(let m): call.fail(status: .unavailable, message: m)
                }
            }
        }
    }

    /// The owner's hot path, no allocation: a Get of this group for a key with a fresh value is answered
    /// straight from the cache (`Group.withFreshValue`), the value encoded once, into the stream's answer
    /// buffer. False when it is anything else (a miss, a stale or negative entry, another group, a message
    /// that does not parse): `get` then decodes the request and goes through `Group.get`, which says why.
    private func answerFreshHit(_ call: GRPCServerCall) -> Bool {
        call.message.withUnsafeBytes { message in
            guard let (groupName, key) = PeerService.groupAndKey(message), !key.isEmpty,
                  groupNameBytes.withUnsafeBytes({ groupName.equals($0) }) else { return false }
            return group.withFreshValue(forKey: key) { view in
                call.respond { buffer in
                    buffer.reserve(ProtoWriter.sizeOfBytesField(1, count: view.value.count)
                                   + ProtoWriter.sizeOfVarintField(2, UInt64(bitPattern: view.expiresAtMillis)))
                    ProtoWriter.appendBytesField(1, view.value, to: &buffer)
                    ProtoWriter.appendVarintField(2, UInt64(bitPattern: view.expiresAtMillis), to: &buffer)
                }
                return true
            } ?? false
        }
    }

    /// The group and key fields of a GetRequest as views into `message` (a field repeated: the last wins,
    /// as in `GetRequest.decode`); nil if the message does not parse.
    static func groupAndKey(_ message: UnsafeRawBufferPointer) -> (UnsafeRawBufferPointer, UnsafeRawBufferPointer)? {
        var reader = ProtoReader(message)
        var group = UnsafeRawBufferPointer(start: nil, count: 0)
        var key = group
        do {
            while let (field, wireType) = try reader.nextTag() {
                switch (field, wireType) {
                case (1, .lengthDelimited): group = try reader.readLengthDelimited()
                case (2, .lengthDelimited): key = try reader.readLengthDelimited()
                case (1, _), (2, _): return nil
                default: try reader.skip(wireType)
                }
            }
        } catch {
            return nil
        }
        return (group, key)
    }

    /// What a Set's `expire` (absolute, unix seconds) asks for.
    enum SetExpiry: Equatable {
        /// 0: the default TTL (what springcache-uv nodes before absolute expiries sent).
        case defaultTTL
        /// A lifetime from now, in milliseconds.
        case ttl(Int64)
        /// Already past: the key is dropped (springcache sends this for `expire=0` and as its only delete).
        case past
    }

    /// Classifies `expire` against `nowMillis`. Why a past expiry is accepted rather than refused: springcache
    /// stores whatever arrives and its own API sends "now" for `expire=0`; refusing made its API answer 500,
    /// and dropping the key is exactly what springcache itself would do with it.
    static func expiry(ofSetExpire expire: Int64, nowMillis: Int64) -> SetExpiry {
        if expire == 0 { return .defaultTTL }
        let (millis, overflow) = expire.multipliedReportingOverflow(by: 1000)
        if overflow { return expire > 0 ? .ttl(Int64.max / 2) : .past }
        let ttl = millis - nowMillis
        return ttl > 0 ? .ttl(ttl) : .past
    }

    /// springcache's Set: `expire` is the absolute expiry in unix seconds, `ishot` keeps the value in the hot
    /// cache only. An expiry already past drops the key (and the other members' copies) and answers ok.
    private func set(_ call: GRPCServerCall) throws {
        let request = try SetRequest.decode(call.message)
        guard checkGroup(request.group, call) else { return }
        guard request.value.count <= maxValueBytes else {
            // The API refuses such a value with 413; a peer must not get around the bound.
            call.fail(status: .resourceExhausted,
                      message: "value of \(request.value.count) bytes exceeds --max-body-bytes (\(maxValueBytes))")
            return
        }
        let stored: Bool
        switch PeerService.expiry(ofSetExpire: request.expireSeconds, nowMillis: clock.nowMillis) {
        case .past:
            group.delete(key: request.key)
            stored = true
        case .defaultTTL:
            stored = group.set(key: request.key, value: request.value, ttlMillis: nil, hot: request.isHot)
        case .ttl(let ttl):
            stored = group.set(key: request.key, value: request.value, ttlMillis: ttl, hot: request.isHot)
        }
        let answer = SetResponse(ok: stored).encoded()
        guard stored, !request.isHot, let router = group.router else {
            call.respond(message: answer)
            return
        }
        // The caller acknowledges the write to its client only after the others dropped their copies.
        router.invalidate(group: group.name, key: request.key) {
            if !call.isCancelled { call.respond(message: answer) }
        }
    }

    private func delete(_ call: GRPCServerCall, invalidateOthers: Bool) throws {
        let request = try DeleteRequest.decode(call.message)
        guard checkGroup(request.group, call) else { return }
        if !invalidateOthers && request.key.isEmpty {
            // "Drop every copy": this node was cut off and may have missed invalidations.
            let dropped = group.dropEntriesOwnedElsewhere(allCopies: true)
            call.respond(message: DeleteResponse(ok: dropped > 0).encoded())
            return
        }
        let removed = group.delete(key: request.key)
        let answer = DeleteResponse(ok: removed).encoded()
        guard invalidateOthers, let router = group.router else {
            call.respond(message: answer)
            return
        }
        router.invalidate(group: group.name, key: request.key) {
            if !call.isCancelled { call.respond(message: answer) }
        }
    }
}

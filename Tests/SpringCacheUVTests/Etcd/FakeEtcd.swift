import XCTest

@testable import SpringCacheUV

/// An in-memory etcd behind the `EtcdCalls` seam, on a `ManualScheduler`: keys with revisions, leases that
/// expire with simulated time (deleting their keys), watches with history, and the faults the registrar and
/// discovery must survive (down, hung, restarted empty, compacted, a lease revoked by hand, one failed call).
///
/// Every answer arrives `latencyMillis` after its call, from a timer — never inside the call, as with the real
/// client — and is computed when it arrives. `calls` records what was asked and when, so tests can count
/// keepalives or read the gaps between retries.
final class FakeEtcd: EtcdCalls {
    struct Call: Equatable, CustomStringConvertible {
        var atMillis: Int64
        /// "grant", "put KEY", "keepalive", "revoke", "range PREFIX", "get KEY", "watch PREFIX from N".
        var what: String
        var description: String { "\(atMillis): \(what)" }
    }

    enum Mode { case up, down, hung }

    let scheduler: ManualScheduler
    let currentEndpoint = "http://fake-etcd:2379"
    var latencyMillis: Int64 = 0
    var mode = Mode.up {
        didSet { if mode == .down { endWatches(.unreachable(endpoint: currentEndpoint, message: "refused")) } }
    }
    /// The call names (first word of `Call.what`) that fail once with this error, next time they are answered.
    var failNext: [String: EtcdError] = [:]

    private(set) var calls: [Call] = []
    private(set) var revision: Int64 = 1
    private(set) var kvs: [[UInt8]: EtcdKeyValue] = [:]
    private(set) var leases: [Int64: (ttl: Int64, expiresAt: Int64)] = [:]
    /// The most calls in flight at once, over the whole test.
    private(set) var mostInFlight = 0
    private var history: [(revision: Int64, event: EtcdEvent)] = []
    private var compactedThrough: Int64 = 0
    private var nextID: UInt64 = 1
    private var nextLease: Int64 = 0x7000
    private var inFlight: [UInt64: SchedulerTimer] = [:]
    private var watches: [UInt64: Watch] = [:]
    private var expiryTimer: SchedulerTimer!

    private final class Watch {
        let prefix: [UInt8]
        let onEvents: ([EtcdEvent], Int64) -> Void
        let onEnd: (EtcdError) -> Void
        var created = false
        init(prefix: [UInt8], onEvents: @escaping ([EtcdEvent], Int64) -> Void,
             onEnd: @escaping (EtcdError) -> Void) {
            self.prefix = prefix
            self.onEvents = onEvents
            self.onEnd = onEnd
        }
    }

    init(scheduler: ManualScheduler) {
        self.scheduler = scheduler
        expiryTimer = scheduler.makeTimer { [unowned self] in self.expireLeases() }
    }

    /// Closes its timers; the test's scheduler then holds none of ours.
    func close() {
        for (_, timer) in inFlight { timer.close() }
        inFlight.removeAll()
        watches.removeAll()
        expiryTimer.close()
    }

    var inFlightCount: Int { inFlight.count }
    var openWatches: Int { watches.count }

    /// How many calls whose `what` starts with `prefix` were made.
    func count(_ prefix: String) -> Int { calls.filter { $0.what.hasPrefix(prefix) }.count }

    /// The times of the calls whose `what` starts with `prefix`.
    func times(_ prefix: String) -> [Int64] { calls.filter { $0.what.hasPrefix(prefix) }.map(\.atMillis) }

    func value(_ key: String) -> String? { kvs[Array(key.utf8)].map { String(decoding: $0.value, as: UTF8.self) } }

    func lease(of key: String) -> Int64? { kvs[Array(key.utf8)]?.lease }

    // MARK: - Faults and changes made "by hand"

    /// etcd comes back; `empty`: its data directory was lost (no keys, no leases, revisions start over).
    /// Otherwise every lease starts a full TTL again, as etcd's do when a new leader is elected.
    func comeBack(empty: Bool) {
        if empty {
            kvs = [:]
            leases = [:]
            history = []
            revision = 1
            compactedThrough = 0
        }
        for (id, lease) in leases { leases[id] = (lease.ttl, scheduler.nowMillis + lease.ttl * 1000) }
        mode = .up
        expireLeases()
    }

    /// `etcdctl lease revoke`: the lease and its keys are gone at once.
    func revokeByHand(_ lease: Int64) {
        leases[lease] = nil
        for kv in kvs.values where kv.lease == lease { delete(kv.key) }
        armExpiry()
    }

    /// `etcdctl put` / `del`.
    func putByHand(_ key: String, _ value: String, lease: Int64 = 0) {
        store(Array(key.utf8), Array(value.utf8), lease: lease)
    }

    func deleteByHand(_ key: String) { delete(Array(key.utf8)) }

    /// `etcdctl lease grant`: a lease nobody keeps alive.
    func grantByHand(ttlSeconds: Int64) -> Int64 { newLease(ttlSeconds: ttlSeconds) }

    /// Compacts history through the current revision and, as etcd does for watchers behind it, cancels every
    /// open watch with the compact revision.
    func compactAndCancelWatches() {
        compactedThrough = revision
        history.removeAll { $0.revision <= compactedThrough }
        endWatches(.watchCanceled(endpoint: currentEndpoint, compactRevision: compactedThrough, reason: ""))
    }

    /// Ends every open watch with `error` (e.g. the stream broke).
    func endWatches(_ error: EtcdError) {
        let ended = watches
        watches.removeAll()
        for (_, watch) in ended.sorted(by: { $0.key < $1.key }) { watch.onEnd(error) }
    }

    // MARK: - EtcdCalls

    func grant(ttlSeconds: Int, timeoutMillis: Int?,
               completion: @escaping (Result<EtcdLease, EtcdError>) -> Void) -> EtcdCallHandle {
        unary("grant", timeoutMillis, completion) { [unowned self] in
            let id = self.newLease(ttlSeconds: Int64(ttlSeconds))
            return .success(EtcdLease(id: id, ttlSeconds: Int64(ttlSeconds)))
        }
    }

    func put(key: [UInt8], value: [UInt8], lease: Int64, timeoutMillis: Int?,
             completion: @escaping (Result<Int64, EtcdError>) -> Void) -> EtcdCallHandle {
        unary("put \(String(decoding: key, as: UTF8.self))", timeoutMillis, completion) { [unowned self] in
            guard lease == 0 || self.leases[lease] != nil else { return .failure(self.leaseNotFound) }
            self.store(key, value, lease: lease)
            return .success(self.revision)
        }
    }

    func range(prefix: [UInt8], timeoutMillis: Int?,
               completion: @escaping (Result<EtcdRangeResult, EtcdError>) -> Void) -> EtcdCallHandle {
        unary("range \(String(decoding: prefix, as: UTF8.self))", timeoutMillis, completion) { [unowned self] in
            let found = self.kvs.values.filter { $0.key.starts(with: prefix) }
                .sorted { $0.key.lexicographicallyPrecedes($1.key) }
            return .success(EtcdRangeResult(revision: self.revision, kvs: found))
        }
    }

    func get(key: [UInt8], timeoutMillis: Int?,
             completion: @escaping (Result<EtcdRangeResult, EtcdError>) -> Void) -> EtcdCallHandle {
        unary("get \(String(decoding: key, as: UTF8.self))", timeoutMillis, completion) { [unowned self] in
            .success(EtcdRangeResult(revision: self.revision, kvs: self.kvs[key].map { [$0] } ?? []))
        }
    }

    func keepAlive(lease: Int64, timeoutMillis: Int?,
                   completion: @escaping (Result<Int64, EtcdError>) -> Void) -> EtcdCallHandle {
        unary("keepalive", timeoutMillis, completion) { [unowned self] in
            guard let known = self.leases[lease] else { return .success(0) }
            self.leases[lease] = (known.ttl, self.scheduler.nowMillis + known.ttl * 1000)
            self.armExpiry()
            return .success(known.ttl)
        }
    }

    func revoke(lease: Int64, timeoutMillis: Int?,
                completion: @escaping (Result<Void, EtcdError>) -> Void) -> EtcdCallHandle {
        unary("revoke", timeoutMillis, completion) { [unowned self] in
            guard self.leases[lease] != nil else { return .failure(self.leaseNotFound) }
            self.revokeByHand(lease)
            return .success(())
        }
    }

    func cancel(_ handle: EtcdCallHandle) -> Bool {
        guard let timer = inFlight.removeValue(forKey: handle.id) else { return false }
        timer.close()
        return true
    }

    func watch(prefix: [UInt8], startRevision: Int64, onCreated: (() -> Void)?,
               onEvents: @escaping ([EtcdEvent], Int64) -> Void,
               onEnd: @escaping (EtcdError) -> Void) -> EtcdWatchHandle {
        let id = takeID()
        calls.append(Call(atMillis: scheduler.nowMillis,
                          what: "watch \(String(decoding: prefix, as: UTF8.self)) from \(startRevision)"))
        let watch = Watch(prefix: prefix, onEvents: onEvents, onEnd: onEnd)
        watches[id] = watch
        after(latencyMillis, id: nil) { [unowned self] in
            guard self.watches[id] === watch else { return }
            switch self.mode {
            case .down:
                self.watches[id] = nil
                return onEnd(.unreachable(endpoint: self.currentEndpoint, message: "refused"))
            case .hung:
                return  // never created; the real client's create timeout is its business
            case .up:
                break
            }
            if startRevision <= self.compactedThrough {
                self.watches[id] = nil
                return onEnd(.watchCanceled(endpoint: self.currentEndpoint, compactRevision: self.compactedThrough,
                                            reason: ""))
            }
            watch.created = true
            onCreated?()
            guard self.watches[id] === watch else { return }
            let missed = self.history.filter { $0.revision >= startRevision && $0.event.kv.key.starts(with: prefix) }
            if !missed.isEmpty { onEvents(missed.map(\.event), self.revision) }
        }
        return EtcdWatchHandle(id: id)
    }

    func cancelWatch(_ handle: EtcdWatchHandle) -> Bool {
        watches.removeValue(forKey: handle.id) != nil
    }

    // MARK: - Inside

    private var leaseNotFound: EtcdError {
        .httpStatus(endpoint: currentEndpoint, status: 404, message: "etcdserver: requested lease not found")
    }

    private func takeID() -> UInt64 {
        defer { nextID += 1 }
        return nextID
    }

    /// Records a unary call and answers it after the latency, by `mode`: up → `body()` (unless `failNext`
    /// names it); down → unreachable; hung → timed out after `timeoutMillis` (the client's 2 s by default).
    private func unary<T>(_ what: String, _ timeoutMillis: Int?, _ completion: @escaping (Result<T, EtcdError>) -> Void,
                          _ body: @escaping () -> Result<T, EtcdError>) -> EtcdCallHandle {
        let id = takeID()
        calls.append(Call(atMillis: scheduler.nowMillis, what: what))
        let name = String(what.split(separator: " ").first ?? "")
        let delay = mode == .hung ? Int64(timeoutMillis ?? EtcdClientSettings().callTimeoutMillis) : latencyMillis
        after(delay, id: id) { [unowned self] in
            switch self.mode {
            case .hung:
                completion(.failure(.timedOut(endpoint: self.currentEndpoint, message: "no answer")))
            case .down:
                completion(.failure(.unreachable(endpoint: self.currentEndpoint, message: "refused")))
            case .up:
                if let error = self.failNext.removeValue(forKey: name) { return completion(.failure(error)) }
                completion(body())
            }
        }
        mostInFlight = max(mostInFlight, inFlight.count)
        return EtcdCallHandle(id: id)
    }

    /// Runs `body` from a timer after `millis`; a unary call's timer is kept under its id so `cancel` can close it.
    private func after(_ millis: Int64, id: UInt64?, _ body: @escaping () -> Void) {
        var timer: SchedulerTimer?
        timer = scheduler.makeTimer { [unowned self] in
            timer?.close()
            if let id { guard self.inFlight.removeValue(forKey: id) != nil else { return } }
            body()
            timer = nil
        }
        if let id { inFlight[id] = timer }
        timer?.arm(afterMillis: millis)
    }

    private func newLease(ttlSeconds: Int64) -> Int64 {
        nextLease += 1
        leases[nextLease] = (ttlSeconds, scheduler.nowMillis + ttlSeconds * 1000)
        armExpiry()
        return nextLease
    }

    private func store(_ key: [UInt8], _ value: [UInt8], lease: Int64) {
        revision += 1
        let old = kvs[key]
        let kv = EtcdKeyValue(key: key, value: value, lease: lease, createRevision: old?.createRevision ?? revision,
                              modRevision: revision, version: (old?.version ?? 0) + 1)
        kvs[key] = kv
        publish(EtcdEvent(kind: .put, kv: kv))
    }

    private func delete(_ key: [UInt8]) {
        guard kvs.removeValue(forKey: key) != nil else { return }
        revision += 1
        publish(EtcdEvent(kind: .delete, kv: EtcdKeyValue(key: key, value: [], modRevision: revision)))
    }

    /// Records the event and sends it to every created watch on its prefix, after the latency.
    private func publish(_ event: EtcdEvent) {
        history.append((revision, event))
        let at = revision
        for (id, watch) in watches where watch.created && event.kv.key.starts(with: watch.prefix) {
            after(latencyMillis, id: nil) { [unowned self] in
                guard self.watches[id] === watch else { return }
                watch.onEvents([event], at)
            }
        }
    }

    private func expireLeases() {
        guard mode == .up else { return }  // a dead etcd expires nothing; it does when it is back
        let now = scheduler.nowMillis
        for (id, lease) in leases.sorted(by: { $0.key < $1.key }) where lease.expiresAt <= now { revokeByHand(id) }
        armExpiry()
    }

    private func armExpiry() {
        guard let next = leases.values.map(\.expiresAt).min() else { return expiryTimer.disarm() }
        expiryTimer.arm(afterMillis: max(0, next - scheduler.nowMillis))
    }
}

/// The etcd calls the registrar, discovery and reconnect probe make: `EtcdClient` performs them over etcd's
/// JSON gateway; unit tests answer them by hand on simulated time.
///
/// Contract (as `EtcdClient`'s): a completion never runs inside the call that started it, runs exactly once
/// unless the call is cancelled, and never after `cancel`; a watch ends with `onEnd` exactly once unless
/// `cancelWatch` comes first.
public protocol EtcdCalls: AnyObject {
    /// The endpoint calls go to now (for log lines).
    var currentEndpoint: String { get }

    @discardableResult
    func grant(ttlSeconds: Int, timeoutMillis: Int?,
               completion: @escaping (Result<EtcdLease, EtcdError>) -> Void) -> EtcdCallHandle
    @discardableResult
    func put(key: [UInt8], value: [UInt8], lease: Int64, timeoutMillis: Int?,
             completion: @escaping (Result<Int64, EtcdError>) -> Void) -> EtcdCallHandle
    @discardableResult
    func range(prefix: [UInt8], timeoutMillis: Int?,
               completion: @escaping (Result<EtcdRangeResult, EtcdError>) -> Void) -> EtcdCallHandle
    @discardableResult
    func get(key: [UInt8], timeoutMillis: Int?,
             completion: @escaping (Result<EtcdRangeResult, EtcdError>) -> Void) -> EtcdCallHandle
    @discardableResult
    func keepAlive(lease: Int64, timeoutMillis: Int?,
                   completion: @escaping (Result<Int64, EtcdError>) -> Void) -> EtcdCallHandle
    @discardableResult
    func revoke(lease: Int64, timeoutMillis: Int?,
                completion: @escaping (Result<Void, EtcdError>) -> Void) -> EtcdCallHandle
    @discardableResult
    func cancel(_ handle: EtcdCallHandle) -> Bool
    @discardableResult
    func watch(prefix: [UInt8], startRevision: Int64, onCreated: (() -> Void)?,
               onEvents: @escaping ([EtcdEvent], Int64) -> Void,
               onEnd: @escaping (EtcdError) -> Void) -> EtcdWatchHandle
    @discardableResult
    func cancelWatch(_ handle: EtcdWatchHandle) -> Bool
}

extension EtcdClient: EtcdCalls {}

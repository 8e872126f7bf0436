/// springcache's example store: a fixed table of scores, the origin used when none is configured.
///
/// springcache served it for group "scores" only; here the same table answers for any group name, so
/// `--group` can be renamed without also configuring an origin. It answers at once (synchronously),
/// which `OriginLoader`'s contract allows.
public final class DemoOrigin: OriginLoader {
    /// springcache's example data, byte for byte.
    public static let springcacheScores: [String: String] = ["Tom": "630", "Jack": "589", "Sam": "567"]

    private let store: [CacheKey: [UInt8]]

    public init(store: [String: String] = DemoOrigin.springcacheScores) {
        self.store = Dictionary(uniqueKeysWithValues: store.map { (CacheKey($0.key), Array($0.value.utf8)) })
    }

    public func load(group: String, key: CacheKey, completion: @escaping (LoadResult) -> Void) {
        if let value = store[key] {
            completion(.value(value))
        } else {
            completion(.notFound)
        }
    }
}

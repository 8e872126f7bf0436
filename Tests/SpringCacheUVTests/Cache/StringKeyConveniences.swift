@testable import SpringCacheUV

// Tests name keys with Swift strings; the library takes `CacheKey` (bytes). These forward a string's UTF-8.

extension Group {
    func get(key: String, forward: Bool = true, completion: @escaping (GetOutcome) -> Void) {
        get(key: CacheKey(key), forward: forward, completion: completion)
    }

    @discardableResult
    func set(key: String, value: [UInt8], ttlMillis: Int64?, hot: Bool) -> Bool {
        set(key: CacheKey(key), value: value, ttlMillis: ttlMillis, hot: hot)
    }

    @discardableResult
    func delete(key: String) -> Bool { delete(key: CacheKey(key)) }

    func storeHotCopy(key: String, value: [UInt8], expiresAtMillis: Int64) -> Bool {
        storeHotCopy(key: CacheKey(key), value: value, expiresAtMillis: expiresAtMillis)
    }
}

extension GroupWriter {
    func store(key: String, value: [UInt8], ttlMillis: Int64?, hot: Bool, completion: @escaping (Bool) -> Void) {
        store(key: CacheKey(key), value: value, ttlMillis: ttlMillis, hot: hot, completion: completion)
    }

    func remove(key: String, completion: @escaping (Bool) -> Void) {
        remove(key: CacheKey(key), completion: completion)
    }
}

extension OriginLoader {
    func load(group: String, key: String, completion: @escaping (LoadResult) -> Void) {
        load(group: group, key: CacheKey(key), completion: completion)
    }
}

extension GroupKeyMessage {
    init(group: String, key: String) { self.init(group: group, key: CacheKey(key)) }
}

extension SetRequest {
    init(group: String, key: String, value: [UInt8] = [], expireSeconds: Int64 = 0, isHot: Bool = false) {
        self.init(group: group, key: CacheKey(key), value: value, expireSeconds: expireSeconds, isHot: isHot)
    }
}

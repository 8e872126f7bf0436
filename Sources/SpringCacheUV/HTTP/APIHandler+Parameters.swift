
// How the API reads its parameters: form fields and query strings as springcache read them, the group and
// key of `/v1/cache/{group}/{key}`, and the numbers and flags they carry. Values are decoded into `scratch`
// and named by their range there; a parameter that is wrong throws the 400 that says so.
extension APIHandler {
    /// A field of a query string or form: nil when absent, its decoded range when present; a malformed
    /// escape is refused.
    func field(_ name: StaticString, in form: UnsafeRawBufferPointer?) throws(APIRefusal) -> Range<Int>? {
        guard let form else { return nil }
        switch FormDecoder.field(name, in: form, into: &scratch) {
        case .absent: return nil
        case .malformed(let message): throw APIRefusal(400, message)
        case .value(let range): return range
        }
    }

    /// A field of a POST route, read as Go's `FormValue` reads it (springcache's): the urlencoded body first,
    /// then the query string, so `POST /api/set?key=a&value=b` works as it did there.
    func formField(_ name: StaticString, of request: HTTPRequest) throws(APIRefusal) -> Range<Int>? {
        if let range = try field(name, in: request.body) { return range }
        return try field(name, in: request.query)
    }

    /// A field that must be present and non-empty (springcache's `key` and `peer`).
    func required(_ name: StaticString, _ range: Range<Int>?) throws(APIRefusal) -> Range<Int> {
        guard let range else { throw APIRefusal(400, "missing parameter \"\(name)\"") }
        guard !range.isEmpty else { throw APIRefusal(400, "parameter \"\(name)\" must not be empty") }
        return range
    }

    /// The key of `/v1/cache/{group}/{key}`, percent-decoded; 404 for another group than this node's.
    func v1Key(_ request: HTTPRequest) throws(APIRefusal) -> Range<Int> {
        let path = request.path
        let rest = UnsafeRawBufferPointer(rebasing: path[APIHandler.v1Prefix.utf8CodeUnitCount...])
        guard let slash = rest.firstIndex(of: UInt8(ascii: "/")) else {
            throw APIRefusal(404, "expected /v1/cache/{group}/{key}")
        }
        guard let groupRange = FormDecoder.decodePathSegment(UnsafeRawBufferPointer(rebasing: rest[..<slash]),
                                                             into: &scratch) else {
            throw APIRefusal(400, "the group in the path has a malformed percent-escape")
        }
        guard scratchEquals(groupRange, group.name) else {
            throw APIRefusal(404, "no such group \"\(scratchString(groupRange))\"")
        }
        guard let key = FormDecoder.decodePathSegment(UnsafeRawBufferPointer(rebasing: rest[(slash + 1)...]),
                                                      into: &scratch) else {
            throw APIRefusal(400, "the key in the path has a malformed percent-escape")
        }
        guard !key.isEmpty else {
            throw APIRefusal(400, "the key in /v1/cache/{group}/{key} must not be empty")
        }
        return key
    }

    /// springcache's `hot`: true, false or empty.
    func hotFlag(_ range: Range<Int>?) throws(APIRefusal) -> Bool {
        guard let range else { return false }
        switch scratchString(range) {
        case "", "false": return false
        case "true": return true
        case let other: throw APIRefusal(400, "hot must be true, false or empty, got \"\(other)\"")
        }
    }

    /// A non-negative decimal in `range` of the scratch; nil if not all digits or above `max`.
    func decimal(_ range: Range<Int>, max: Int) -> Int? {
        guard !range.isEmpty, range.count <= 10 else { return nil }
        var n = 0
        for i in range {
            let d = scratch.base[i] &- UInt8(ascii: "0")
            guard d <= 9 else { return nil }
            n = n * 10 + Int(d)
        }
        return n <= max ? n : nil
    }

    /// The decoded bytes in `range` of the scratch; valid until the next request.
    @inline(__always)
    func scratchBytes(_ range: Range<Int>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: scratch.base + range.lowerBound, count: range.count)
    }

    /// The decoded key's bytes, exactly: never through `String`, which would merge distinct byte strings.
    func scratchKey(_ range: Range<Int>) -> CacheKey {
        CacheKey(scratchBytes(range))
    }

    func scratchString(_ range: Range<Int>) -> String {
        String(decoding: scratchBytes(range), as: UTF8.self)
    }

    func scratchEquals(_ range: Range<Int>, _ s: String) -> Bool {
        var s = s
        return s.withUTF8 { u in
            UnsafeRawBufferPointer(u).equals(UnsafeRawBufferPointer(start: scratch.base + range.lowerBound,
                                                                    count: range.count))
        }
    }
}

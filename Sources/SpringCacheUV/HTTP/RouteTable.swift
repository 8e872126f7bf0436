
/// A set of request methods, one bit each, so checking a route's methods is one AND.
struct HTTPMethods: OptionSet {
    let rawValue: UInt8

    init(rawValue: UInt8) { self.rawValue = rawValue }

    init(_ method: HTTPMethod) { rawValue = 1 << method.rawValue }

    static let get = HTTPMethods(.get)
    static let head = HTTPMethods(.head)
    static let post = HTTPMethods(.post)
    static let put = HTTPMethods(.put)
    static let delete = HTTPMethods(.delete)
    /// The methods of a read-only route: GET and HEAD, which answers the same head without the body.
    static let reads: HTTPMethods = [.get, .head]

    /// The value of an `Allow` header naming these methods, in the order `HTTPMethod` declares them
    /// (`GET, HEAD, PUT, DELETE`).
    var allowHeader: String {
        let names: [(HTTPMethod, String)] = [(.get, "GET"), (.head, "HEAD"), (.post, "POST"), (.put, "PUT"),
                                             (.delete, "DELETE"), (.options, "OPTIONS")]
        return names.filter { contains(HTTPMethods($0.0)) }.map(\.1).joined(separator: ", ")
    }
}

/// One route: a path, the methods it takes, whether it changes the cache (and so needs the bearer token when
/// the node has one), and what it is counted as, which is also how its handler is chosen.
struct Route {
    enum PathMatch {
        /// The path is exactly this.
        case exact
        /// The path starts with this; the handler reads the rest (`/v1/cache/{group}/{key}`).
        case prefix
    }

    let path: StaticString
    let match: PathMatch
    let methods: HTTPMethods
    let route: APIRoute
    /// A mutating route: with `--auth-token-file` it requires `Authorization: Bearer <token>`.
    let authenticated: Bool

    init(_ path: StaticString, _ match: PathMatch = .exact, _ methods: HTTPMethods, _ route: APIRoute,
         authenticated: Bool = false) {
        self.path = path
        self.match = match
        self.methods = methods
        self.route = route
        self.authenticated = authenticated
    }

    @inline(__always)
    func matches(_ requestPath: UnsafeRawBufferPointer) -> Bool {
        switch match {
        case .exact: return requestPath.equals(path)
        case .prefix: return requestPath.starts(with: path)
        }
    }
}

/// The routes of a handler, each declared once with its path and methods; finds the route of a request.
///
/// Why the table answers the method question and not each handler: a path served with the wrong method is a
/// 405 naming every method the path takes (RFC 9110 §15.5.6), the same rule for every route; several routes
/// may share a path with different methods (`/v1/cache/` has one per method), and the `Allow` header is the
/// union of theirs. Routes are tried in order, so the busiest (`/api/get`) comes first.
struct RouteTable {
    enum Match {
        case found(Route)
        /// The path is served, not with this method; `first` is the first route with that path (the request
        /// is counted as it), `allowed` every method the path takes.
        case methodNotAllowed(first: Route, allowed: HTTPMethods)
        case notFound
    }

    let routes: [Route]

    init(_ routes: [Route]) {
        self.routes = routes
    }

    func match(path: UnsafeRawBufferPointer, method: HTTPMethod) -> Match {
        let bit = HTTPMethods(method)
        var first: Route?
        var allowed = HTTPMethods()
        for route in routes where route.matches(path) {
            if route.methods.contains(bit) { return .found(route) }
            if first == nil { first = route }
            allowed.formUnion(route.methods)
        }
        if let first { return .methodNotAllowed(first: first, allowed: allowed) }
        return .notFound
    }
}

extension RouteTable {
    /// Appends the answer to a path served with other methods: 405 with the `Allow` header naming the methods
    /// the path takes (RFC 9110 §15.5.6), and the same list in words.
    static func appendMethodNotAllowed(to out: inout ByteBuffer, allowed: HTTPMethods, framing: HTTPResponseFraming,
                                       date: HTTPDate) {
        var allow = allowed.allowHeader
        HTTPResponse.appendText(to: &out, status: 405, message: "method not allowed; use \(allow)", framing: framing,
                                date: date) { out in
            allow.withUTF8 { HTTPResponse.appendHeader(to: &out, name: "Allow", value: UnsafeRawBufferPointer($0)) }
        }
    }
}

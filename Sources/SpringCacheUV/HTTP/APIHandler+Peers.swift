// The API's membership routes: springcache's `POST /setpeer` and our `GET /api/peers`.
extension APIHandler {
    /// `POST /setpeer` form `peer=NAME` (springcache's): re-admits a dropped member; a name not known here is
    /// looked up in etcd, as springcache did. A single node knows only itself.
    func setPeer(_ request: HTTPRequest, _ writer: ResponseWriter) throws(APIRefusal) -> HTTPHandling {
        let name = scratchString(try required("peer", formField("peer", of: request)))
        let reply = Reply(request, writer, .setpeer)
        if host.readmit(peer: name) { return setPeerDone(reply, name) }
        guard host.resolvesPeers else { throw APIRefusal(404, "no member named \"\(name)\"") }
        return deferAnswer(writer) { [unowned self] deferred in
            self.host.resolvePeer(name) { found in
                if found {
                    self.setPeerDone(reply, name)
                } else {
                    self.text(reply, 404, "no member named \"\(name)\", here or in etcd")
                }
                deferred.finish()
            }
        }
    }

    /// springcache's `/setpeer` answer, `application/octet-stream` like its `/api/get`.
    @discardableResult
    private func setPeerDone(_ reply: Reply, _ name: String) -> HTTPHandling {
        Array("set peer \(name) successful\n".utf8).withUnsafeBytes { body(reply, 200, HTTPResponse.octetStream, $0) }
    }

    /// `GET /api/peers`: the members, their addresses, state and share of the ring (JSON).
    func peers(_ reply: Reply) -> HTTPHandling {
        var json = ByteBuffer(capacity: 512)
        host.writePeersJSON(into: &json)
        return body(reply, 200, "application/json", json.readable)
    }
}

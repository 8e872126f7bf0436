// The API's observability routes: `GET /api/stats` (JSON), `GET /metrics` (Prometheus), `GET /healthz`.
extension APIHandler {
    func stats(_ reply: Reply) -> HTTPHandling {
        var json = ByteBuffer(capacity: 2048)
        host.writeStatsJSON(into: &json, requests: requestStats)
        return body(reply, 200, "application/json", json.readable)
    }

    func metrics(_ reply: Reply) -> HTTPHandling {
        var page = ByteBuffer(capacity: 8192)
        renderMetrics(into: &page)
        return body(reply, 200, PrometheusWriter.contentType, page.readable)
    }

    /// The node's whole /metrics page, with this API's request counters; the metrics listener (`--metrics`)
    /// serves the same page.
    func renderMetrics(into page: inout ByteBuffer) {
        host.writeMetrics(into: &page, requests: requestStats)
    }

    /// `GET /healthz`: 200 while the loop answers (a liveness check; readiness is the server's admission).
    func healthz(_ reply: Reply) -> HTTPHandling {
        text(reply, 200, "ok")
    }
}

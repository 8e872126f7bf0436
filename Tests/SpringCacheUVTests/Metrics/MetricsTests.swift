import Foundation
import XCTest
@testable import SpringCacheUV

final class MetricsTests: XCTestCase {
    func testHistogramBuckets() {
        var h = LatencyHistogram()
        h.observe(nanoseconds: 5_000)            // ≤ 0.00001
        h.observe(nanoseconds: 10_000)           // exactly on a bound: ≤ 0.00001
        h.observe(nanoseconds: 10_001)           // ≤ 0.000025
        h.observe(nanoseconds: 2_000_000_000)    // ≤ 2.5
        h.observe(nanoseconds: 60_000_000_000)   // ≤ 60: the longest --origin-timeout is still a finite bucket
        h.observe(nanoseconds: 200_000_000_000)  // +Inf
        XCTAssertEqual(h.count, 6)
        XCTAssertEqual(h.sumNanos, 262_000_025_001)
        XCTAssertEqual(h.bucketCounts[0], 2)
        XCTAssertEqual(h.bucketCounts[1], 1)
        XCTAssertEqual(h.bucketCounts[16], 1)
        XCTAssertEqual(h.bucketCounts[20], 1)
        XCTAssertEqual(h.bucketCounts[22], 1)
        XCTAssertEqual(h.cumulativeCount(throughBucket: 15), 3)
        XCTAssertEqual(h.cumulativeCount(throughBucket: 22), 6)
        XCTAssertEqual(LatencyHistogram.upperBoundsNanos.count + 1, LatencyHistogram.upperBoundLabels.count)
    }

    func testRequestStats() {
        var s = RequestStats()
        s.record(route: .get, status: 200, latencyNanos: 1_000)
        s.record(route: .get, status: 200)
        s.record(route: .get, status: 404)
        s.record(route: .set, status: 418)
        XCTAssertEqual(s.requests(route: .get, status: 200), 2)
        XCTAssertEqual(s.requests(route: .get), 3)
        XCTAssertEqual(s.requests(route: .set, status: 299), 1, "untracked statuses share the 'other' column")
        XCTAssertEqual(s.totalRequests, 4)
        XCTAssertEqual(s.latencies[APIRoute.get.rawValue].count, 1)
        XCTAssertEqual(RequestStats.statusLabels.count, RequestStats.trackedStatuses.count + 1)
        for (i, status) in RequestStats.trackedStatuses.enumerated() {
            XCTAssertEqual(RequestStats.statusColumn(status), i)
            XCTAssertEqual("\(RequestStats.statusLabels[i])", "\(status)")
        }
    }

    func testPrometheusGolden() {
        var h = LatencyHistogram()
        h.observe(nanoseconds: 200_000)
        h.observe(nanoseconds: 750_000_000)
        let text = renderedText { out in
            PrometheusWriter.write(into: &out, constantLabels: [PrometheusLabel("worker", 0)]) { p in
                p.counter("demo_requests_total", help: "Requests.\nWith a \\ backslash.", value: 7)
                p.gauge("demo_connections", help: "Open connections.", value: 3)
                p.family("demo_labelled", .gauge, help: "Escaping.")
                p.sample("demo_labelled", labels: [PrometheusLabel("cache", "a\"b\\c\nd")], value: 1.5)
                p.family("demo_seconds", .histogram, help: "Latency.")
                p.histogram("demo_seconds", labels: [PrometheusLabel("route", "get")], h)
            }
        }
        let buckets = [
            ("0.00001", 0), ("0.000025", 0), ("0.00005", 0),
            ("0.0001", 0), ("0.00025", 1), ("0.0005", 1), ("0.001", 1), ("0.002", 1), ("0.005", 1), ("0.01", 1),
            ("0.025", 1), ("0.05", 1), ("0.1", 1), ("0.25", 1), ("0.5", 1), ("1", 2), ("2.5", 2), ("5", 2),
            ("10", 2), ("30", 2), ("60", 2), ("120", 2), ("+Inf", 2),
        ].map { "demo_seconds_bucket{worker=\"0\",route=\"get\",le=\"\($0.0)\"} \($0.1)\n" }.joined()
        XCTAssertEqual(text, """
            # HELP demo_requests_total Requests.\\nWith a \\\\ backslash.
            # TYPE demo_requests_total counter
            demo_requests_total{worker="0"} 7
            # HELP demo_connections Open connections.
            # TYPE demo_connections gauge
            demo_connections{worker="0"} 3
            # HELP demo_labelled Escaping.
            # TYPE demo_labelled gauge
            demo_labelled{worker="0",cache="a\\"b\\\\c\\nd"} 1.5
            # HELP demo_seconds Latency.
            # TYPE demo_seconds histogram

            """ + buckets + """
            demo_seconds_sum{worker="0",route="get"} 0.7502
            demo_seconds_count{worker="0",route="get"} 2

            """)
    }

    func testPrometheusWithoutLabelsAndServerFamilies() {
        var stats = RequestStats()
        stats.record(route: .get, status: 200, latencyNanos: 50_000)
        stats.record(route: .v1Put, status: 413)
        stats.connectionsAccepted = 2
        stats.currentConnections = 1
        let text = renderedText { out in
            PrometheusWriter.write(into: &out) { p in
                p.counter("plain_total", help: "No labels.", value: 0)
                p.requestStats(stats)
                p.caches([CacheMetricValues(name: "main", items: 3, bytes: 300, hits: 10, misses: 2),
                          CacheMetricValues(name: "hot")])
            }
        }
        XCTAssertTrue(text.hasPrefix("# HELP plain_total No labels.\n# TYPE plain_total counter\nplain_total 0\n"))
        XCTAssertTrue(text.contains("springcache_http_requests_total{route=\"get\",code=\"200\"} 1\n"))
        XCTAssertTrue(text.contains("springcache_http_requests_total{route=\"v1_put\",code=\"413\"} 1\n"))
        XCTAssertFalse(text.contains("code=\"404\""), "zero cells are left out")
        XCTAssertTrue(text.contains(
            "springcache_http_request_duration_seconds_bucket{route=\"get\",le=\"0.000025\"} 0\n"))
        XCTAssertTrue(text.contains(
            "springcache_http_request_duration_seconds_bucket{route=\"get\",le=\"0.0001\"} 1\n"))
        XCTAssertFalse(text.contains("duration_seconds_bucket{route=\"v1_put\""), "routes without latencies")
        XCTAssertTrue(text.contains("springcache_http_connections_accepted_total 2\n"))
        XCTAssertTrue(text.contains("# TYPE springcache_http_connections gauge\nspringcache_http_connections 1\n"))
        XCTAssertTrue(text.contains(
            "springcache_cache_items{cache=\"main\"} 3\nspringcache_cache_items{cache=\"hot\"} 0\n"))
        XCTAssertTrue(text.contains("springcache_cache_hits_total{cache=\"main\"} 10\n"))
        XCTAssertTrue(text.contains("# TYPE springcache_cache_expirations_total counter\n"))
        // Every sample line is "name[{labels}] value".
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            XCTAssertEqual(line.split(separator: " ").count, 2, String(line))
        }
    }

    func testJSONWriter() {
        let text = renderedText { out in
            JSONWriter.write(into: &out) { json in
                json.object { json in
                    json.field("name", "node-1")
                    json.field("ok", true)
                    json.field("count", 3)
                    json.field("share", 0.25)
                    json.field("whole", 2.0)
                    json.field("nan", Double.nan)
                    json.key("escapes")
                    json.value("q\" b\\ n\n t\t c\u{1} u✓")
                    json.key("members")
                    json.array { json in
                        json.object { json in json.field("a", UInt64(1)) }
                        json.object { _ in }
                        json.array { _ in }
                        json.null()
                    }
                    json.key(String("dyn\"key"))
                    json.value(bytes: UnsafeRawBufferPointer(start: nil, count: 0))
                }
            }
        }
        XCTAssertEqual(text, #"{"name":"node-1","ok":true,"count":3,"share":0.25,"whole":2,"nan":null,"#
            + #""escapes":"q\" b\\ n\n t\t c\u0001 u✓","members":[{"a":1},{},[],null],"dyn\"key":""}"#)
        // It is JSON that Foundation reads back.
        let data = text.data(using: .utf8)!
        XCTAssertNoThrow(try JSONSerialization.jsonObject(with: data))
    }

    func testJSONInvalidUTF8BecomesReplacementCharacter() {
        let text = renderedText { out in
            JSONWriter.write(into: &out) { json in
                json.array { json in
                    [UInt8]([0x61, 0xFF, 0x62, 0xC3, 0xA9, 0xE2, 0x82, 0xED, 0xA0, 0x80]).withUnsafeBytes {
                        json.value(bytes: $0)
                    }
                }
            }
        }
        XCTAssertEqual(text, "[\"a\u{FFFD}bé\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\"]")
    }
}

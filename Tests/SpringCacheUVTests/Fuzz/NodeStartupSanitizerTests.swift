import Logging
import XCTest

@testable import SpringCacheUV

/// Found by `make test-asan` (LeakSanitizer in the black-box tests `test_bad_flag_value_exits_nonzero_with_message`
/// with `--origin ftp://x/{key}` and `test_springcache_plain_peer_names_need_etcd_discovery`): a configuration
/// error thrown from `Node.init` left the uv loop, and with an HTTP origin curl's timers, allocated. The loop
/// owns file descriptors (its epoll instance), so the leak is visible here without a sanitizer too.
final class NodeStartupSanitizerTests: XCTestCase {
    private func openDescriptorCount() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
    }

    func testAConfigurationErrorFromNodeInitReleasesTheLoop() throws {
        try XCTSkipIf(openDescriptorCount() < 0, "needs /proc/self/fd")
        var badOrigin = NodeConfig()
        badOrigin.api = HostPort(host: "127.0.0.1", port: 0)
        badOrigin.origin = "ftp://x/{key}"
        var unresolvedPeer = NodeConfig()
        unresolvedPeer.api = HostPort(host: "127.0.0.1", port: 0)
        unresolvedPeer.name = "solo"
        unresolvedPeer.peers = ["solo", "other"]
        // Reaches EtcdMembership (the cluster and curl exist by then), whose etcd client refuses the endpoint:
        // that failure was thrown outside the block that closes the loop (issue 14).
        var refusedEtcd = NodeConfig()
        refusedEtcd.api = HostPort(host: "127.0.0.1", port: 0)
        refusedEtcd.name = "solo"
        refusedEtcd.peers = ["solo=127.0.0.1:7001", "other=127.0.0.1:7002"]
        refusedEtcd.etcdEndpoints = ["https://127.0.0.1:2379/v3"]
        let cases = [("bad origin", badOrigin), ("peer without an address", unresolvedPeer),
                     ("etcd endpoint refused", refusedEtcd)]
        for (name, config) in cases {
            // One start first: curl's one-time global initialisation opens descriptors it keeps.
            XCTAssertThrowsError(try Node(config: config, logger: Logger(label: "test")), name)
            let before = openDescriptorCount()
            for _ in 0..<5 {
                XCTAssertThrowsError(try Node(config: config, logger: Logger(label: "test")), name)
            }
            XCTAssertEqual(openDescriptorCount(), before, "\(name): descriptors left open by failed starts")
        }
    }
}

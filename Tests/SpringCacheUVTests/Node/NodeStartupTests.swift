import Logging
import XCTest

@testable import SpringCacheUV

/// `Node.init` failing after it made its loop must close everything it made: the loop (its epoll instance
/// and wake-up descriptors), the cluster's timers, curl's. Seen here through the process's open descriptors.
final class NodeStartupTests: XCTestCase {
    private func openDescriptorCount() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
    }

    func testAnEtcdMembershipThatCannotStartReleasesTheLoopAndTheCluster() throws {
        try XCTSkipIf(openDescriptorCount() < 0, "needs /proc/self/fd")
        var config = NodeConfig()
        config.api = HostPort(host: "127.0.0.1", port: 0)
        config.name = "solo"
        config.peers = ["solo=127.0.0.1:7001", "other=127.0.0.1:7002"]
        // Reaches EtcdMembership (the cluster and curl exist by then), whose etcd client refuses it.
        config.etcdEndpoints = ["https://127.0.0.1:2379/v3"]
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        // One start first: curl's one-time global initialisation opens descriptors it keeps.
        XCTAssertThrowsError(try Node(config: config, logger: logger)) { error in
            XCTAssertTrue("\(error)".contains("--etcd endpoint"), "\(error)")
        }
        let before = openDescriptorCount()
        for _ in 0..<5 {
            XCTAssertThrowsError(try Node(config: config, logger: logger))
        }
        XCTAssertEqual(openDescriptorCount(), before, "descriptors left open by failed starts")
    }
}

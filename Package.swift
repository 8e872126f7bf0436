// swift-tools-version:6.0
import PackageDescription

// Linux only: the C shims and the sources use Glibc, SO_REUSEPORT load balancing and /proc (Debian packages
// libuv1-dev, libcurl4-openssl-dev, libnghttp2-dev; see README). SwiftPM cannot say "Linux only", so no
// `platforms` entry is declared rather than one that claims macOS.
let package = Package(
    name: "springcache-uv",
    products: [
        .executable(name: "springcache-uv", targets: ["springcache-uv"]),
        .library(name: "SpringCacheUV", targets: ["SpringCacheUV"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .systemLibrary(name: "CLibUV", path: "Sources/CLibUV", pkgConfig: "libuv",
                       providers: [.apt(["libuv1-dev"])]),
        .systemLibrary(name: "CCurl", path: "Sources/CCurl", pkgConfig: "libcurl",
                       providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CNGHTTP2", path: "Sources/CNGHTTP2", pkgConfig: "libnghttp2",
                       providers: [.apt(["libnghttp2-dev"])]),
        .target(
            name: "SpringCacheUV",
            dependencies: [
                "CLibUV", "CCurl", "CNGHTTP2",
                .product(name: "Logging", package: "swift-log"),
            ],
            // Release builds do not check exclusive access at run time (docs/architecture.md, "Exclusivity
            // checks"); debug builds, and so the unit tests, still do.
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
        ),
        .executableTarget(
            name: "springcache-uv",
            dependencies: [
                "SpringCacheUV",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Unit tests: no sockets, no etcd, no subprocesses, no wall-clock waits for timers.
        .testTarget(name: "SpringCacheUVTests", dependencies: ["SpringCacheUV"]),
        // Tests that need a real etcd, real sockets or helper processes (Python servers), kept with the
        // black-box tests; `make test` runs them after the unit tests.
        .testTarget(name: "SpringCacheUVIntegrationTests", dependencies: ["SpringCacheUV"],
                    path: "Tests/integration/swift"),
    ],
    swiftLanguageModes: [.v5]
)

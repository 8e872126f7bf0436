import CLibUV
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// One cache node: a loop, the HTTP API on it, the cache group, and the origin it loads from.
public final class Node {
    public let config: NodeConfig
    let logger: Logger
    let loop: EventLoop
    let group: Group
    let api: APIHandler
    let server: HTTPServer
    private var curl: CurlMulti?
    private var sweepTimer: LoopTimer?
    private var signals: [SignalWatcher] = []
    private var stopping = false

    public init(config: NodeConfig, logger: Logger) throws {
        self.config = config
        self.logger = logger
        loop = try EventLoop()

        let loader: OriginLoader
        if config.origin == "demo" {
            loader = DemoOrigin()
        } else {
            let multi = CurlMulti(loop: loop.uv)
            curl = multi
            do {
                loader = try HTTPOrigin(urlTemplate: config.origin, multi: multi,
                                        timeoutMillis: Int(config.originTimeoutMillis))
            } catch {
                throw ConfigError("--origin: \(error)")
            }
        }
        group = Group(name: config.group, config: config.cache, clock: loop.clock, random: FastRandom(),
                      loader: loader)
        api = APIHandler(config: config, clock: loop.clock, group: group)
        server = HTTPServer(loop: loop, config: config.http, handler: api)
        api.server = server
    }

    /// The API port actually bound (differs from the configured one when that is 0).
    public var apiPort: Int { server.boundPort }

    /// Serves until SIGINT or SIGTERM, then stops gracefully: no new connections, answers in flight
    /// finish, every handle is closed, and the loop closes cleanly.
    public func run() throws {
        // Why ignore SIGPIPE: a client that goes away mid-write must cost an EPIPE, not the process.
        signal(SIGPIPE, SIG_IGN)
        try server.start(address: config.api, reusePort: config.reusePort)
        let sweep = LoopTimer(loop: loop) { [unowned self] in self.group.sweep() }
        sweep.start(timeoutMillis: config.sweepIntervalMillis, repeatMillis: config.sweepIntervalMillis)
        sweepTimer = sweep
        for signum in [SIGINT, SIGTERM] {
            signals.append(try SignalWatcher(loop: loop, signal: signum) { [unowned self] sig in
                self.logger.info("received signal \(sig); stopping")
                self.stop()
            })
        }
        logAddresses()
        loop.run()
        let status = loop.close()
        if status != 0 {
            logger.warning("loop closed with \(loop.openHandleCount()) handles open (\(status))")
        }
        logger.info("stopped")
    }

    private func logAddresses() {
        let api = HostPort(host: config.api.host, port: server.boundPort)
        logger.info("serving http://\(api) group=\(config.group) origin=\(config.origin) name=\(config.name)")
        // springcache's cluster flags are accepted so scripts keep working; say what they will do.
        if !config.peers.isEmpty || !config.etcdEndpoints.isEmpty {
            logger.warning("""
                --peer/--etcd given, but clustering is not built into this version yet: this node serves \
                alone and owns every key. Once clustering lands, --peer lists the members (names to wait for \
                in etcd, or NAME=HOST:PORT) and --etcd is where they register; --port \(config.peerPort) \
                will carry the gRPC peer protocol.
                """)
        }
    }

    /// Graceful stop; safe to call more than once.
    public func stop() {
        guard !stopping else { return }
        stopping = true
        for s in signals { s.close() }
        signals.removeAll()
        sweepTimer?.close()
        sweepTimer = nil
        server.stop { [self] in
            api.close()
            curl?.close {}
        }
    }
}

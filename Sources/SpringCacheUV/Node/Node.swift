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
    let cluster: Cluster?
    private var peerServer: GRPCServer?
    private var curl: CurlMulti?
    private var sweepTimer: LoopTimer?
    private var signals: [SignalWatcher] = []
    private var stopping = false

    public init(config: NodeConfig, logger: Logger) throws {
        self.config = config
        self.logger = logger
        let loop = try EventLoop()
        self.loop = loop

        let loader: OriginLoader
        var multi: CurlMulti?
        do {
            if config.origin == "demo" {
                loader = DemoOrigin()
            } else {
                multi = CurlMulti(loop: loop.uv)
                do {
                    loader = try HTTPOrigin(urlTemplate: config.origin, multi: multi!,
                                            timeoutMillis: Int(config.originTimeoutMillis))
                } catch {
                    throw ConfigError("--origin: \(error)")
                }
            }
            cluster = try Node.makeCluster(config: config, loop: loop, logger: logger)
        } catch {
            // Why close before throwing: a configuration error must not leave the loop and curl's timers
            // allocated behind it (LeakSanitizer reports them when the process exits with the error).
            multi?.close {}
            loop.run()
            loop.close()
            throw error
        }
        curl = multi
        group = Group(name: config.group, config: config.cache, clock: loop.clock, random: FastRandom(),
                      loader: loader)
        group.router = cluster
        api = APIHandler(config: config, clock: loop.clock, group: group, cluster: cluster)
        server = HTTPServer(loop: loop, config: config.http, handler: api)
        api.server = server
    }

    /// This node's own entry: from `--peer` if it names an address for us, else the advertised host
    /// (springcache's `IP_ADDRESS`, or the API's host) and `--port`.
    static func selfMember(config: NodeConfig, statics: StaticMembership) -> Member {
        let host = config.advertiseHost ?? config.api.host
        let listed = statics.members.first { $0.name == config.name }?.peer
        return Member(name: config.name, peer: listed ?? HostPort(host: host, port: config.peerPort))
    }

    private static func makeCluster(config: NodeConfig, loop: EventLoop, logger: Logger) throws -> Cluster? {
        guard config.isClustered else { return nil }
        let statics = try StaticMembership.parse(config.peers, selfName: config.name)
        let unresolved = statics.unresolvedNames.filter { $0 != config.name }
        if !unresolved.isEmpty {
            throw ConfigError("--peer \(unresolved.joined(separator: ",")): names without an address need etcd "
                              + "discovery, which this version does not have yet; give NAME=HOST:PORT entries")
        }
        var settings = ClusterSettings()
        settings.peerTimeoutMillis = config.peerTimeoutMillis
        settings.peerToken = config.peerToken
        let me = selfMember(config: config, statics: statics)
        let cluster = Cluster(selfMember: me, loop: loop, settings: settings, logger: logger)
        cluster.setMembers(statics.members.filter { $0.peer != nil } + [me])
        return cluster
    }

    /// The API port actually bound (differs from the configured one when that is 0).
    public var apiPort: Int { server.boundPort }

    /// Serves until SIGINT or SIGTERM, then stops gracefully: no new connections, answers in flight
    /// finish, every handle is closed, and the loop closes cleanly.
    public func run() throws {
        // Why ignore SIGPIPE: a client that goes away mid-write must cost an EPIPE, not the process.
        signal(SIGPIPE, SIG_IGN)
        try server.start(address: config.api, reusePort: config.reusePort)
        if let cluster, let address = cluster.members[config.name]?.peer {
            let peers = GRPCServer(loop: loop, handler: PeerService(group: group, clock: loop.clock,
                                                                    token: config.peerToken))
            try peers.start(address: address)
            peerServer = peers
            logger.info("peer port grpc://\(address) members=\(cluster.members.keys.sorted().joined(separator: ","))")
        }
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
        if !config.etcdEndpoints.isEmpty {
            logger.warning("""
                --etcd given, but discovery through etcd is not built into this version yet: members come \
                from --peer NAME=HOST:PORT entries only. Once it lands, nodes register under springcache/ \
                and find each other there.
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
            cluster?.close()
            group.router = nil
            if let peerServer {
                peerServer.close {}
                self.peerServer = nil
            }
        }
    }
}

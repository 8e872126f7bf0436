import CLibUV
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The node stopped and the process should exit with `status` (not 0).
public struct NodeExit: Error, CustomStringConvertible {
    public let status: Int32
    public var description: String { "exit status \(status)" }
}

/// One cache node: a loop, the HTTP API on it, the cache group, and the origin it loads from.
public final class Node {
    public let config: NodeConfig
    let logger: Logger
    let loop: EventLoop
    let group: Group
    let api: APIHandler
    let server: HTTPServer
    let cluster: Cluster?
    private(set) var peerServer: GRPCServer?
    var curl: CurlMulti?
    var etcd: EtcdMembership?
    private var sweepTimer: SchedulerTimer?
    private var signals: [SignalWatcher] = []
    private var stopping = false
    /// The metrics listener (`--metrics`), serving only /metrics and /healthz.
    private var metricsServer: HTTPServer?
    private(set) var accessLog: AccessLog?
    /// The HTTP origin, when there is one: its counters reach /metrics, its failures the log.
    private(set) var httpOrigin: HTTPOrigin?
    private var failureLog: FailureLog
    /// When this process started (process_start_time_seconds), read once.
    let processStartTime = ProcessMetrics.startTimeSeconds()
    /// Loop time when the node was made (`springcache_uptime_seconds`).
    let startedAtMillis: Int64

    public init(config: NodeConfig, logger: Logger) throws {
        self.config = config
        self.logger = logger
        let loop = try EventLoop()
        self.loop = loop
        startedAtMillis = loop.clock.nowMillis

        let loader: OriginLoader
        var multi: CurlMulti?
        var madeCluster: Cluster?
        var membership: EtcdMembership?
        failureLog = FailureLog(intervalMillis: config.failureLogIntervalMillis)
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
            madeCluster = try Node.makeCluster(config: config, loop: loop, logger: logger)
            if let cluster = madeCluster, !config.etcdEndpoints.isEmpty {
                let etcdCurl = multi ?? CurlMulti(loop: loop.uv)
                multi = etcdCurl
                membership = try EtcdMembership(config: config, cluster: cluster, loop: loop, curl: etcdCurl,
                                                logger: logger)
            }
        } catch {
            // Why close before throwing: a configuration error must not leave the loop, the cluster's timers
            // and curl's allocated behind it (LeakSanitizer reports them when the process exits with the error).
            madeCluster?.close()
            multi?.close {}
            loop.run()
            loop.close()
            throw error
        }
        cluster = madeCluster
        curl = multi
        httpOrigin = loader as? HTTPOrigin
        group = Group(name: config.group, config: config.cache, clock: loop.clock, random: FastRandom(),
                      loader: loader)
        group.router = cluster
        cluster?.onRingChange = { [unowned group, weak cluster] readmitted in
            let dropped = group.dropEntriesOwnedElsewhere(allCopies: false)
            if dropped > 0 { logger.info("membership changed: dropped \(dropped) entries now owned by other members") }
            for name in readmitted { cluster?.tellToDropCopies(name, group: group.name) }
        }
        // What the API asks of the node (its reports, `/setpeer`); the API keeps it.
        let apiHost = NodeAPIHost(config: config, cluster: cluster)
        api = APIHandler(settings: APISettings(authToken: config.authToken), clock: loop.clock, group: group,
                         host: apiHost)
        server = HTTPServer(loop: loop, config: config.http, handler: api)
        if config.metrics != nil {
            var metricsConfig = HTTPServerConfig()
            metricsConfig.maxConnections = Node.maxMetricsConnections
            metricsServer = HTTPServer(loop: loop, config: metricsConfig,
                                       handler: MetricsEndpoint(api: api, clock: loop.clock))
        }
        httpOrigin?.onFailure = { [unowned self] kind, cause in self.originFailed(kind, cause) }
        apiHost.node = self
        // One abuse log for both ports: a line per kind and interval, with the offender's address.
        server.abuse.sink = { [logger] line in logger.warning("\(line)") }
        if let membership {
            etcd = membership
            apiHost.membership = membership
        }
    }

    /// This node's own entry: from `--peer` if it names an address for us, else the advertised host
    /// (springcache's `IP_ADDRESS`, or the API's host) and `--port`.
    ///
    /// Why the advertised host replaces a wildcard or loopback one from `--peer`: what others are told must be
    /// an address they can reach (DESIGN, "Addresses"); the listed port stays.
    static func selfMember(config: NodeConfig, statics: StaticMembership) -> Member {
        let host = config.advertiseHost ?? config.api.host
        guard let listed = statics.members.first(where: { $0.name == config.name })?.peer else {
            return Member(name: config.name, peer: HostPort(host: host, port: config.peerPort))
        }
        if let advertised = config.advertiseHost, Node.isWildcardOrLoopback(listed.host) {
            return Member(name: config.name, peer: HostPort(host: advertised, port: listed.port))
        }
        return Member(name: config.name, peer: listed)
    }

    /// `0.0.0.0`, `::`, `127.x.y.z`, `::1` or `localhost`: addresses no other host can use to reach this one.
    static func isWildcardOrLoopback(_ host: String) -> Bool {
        host == "0.0.0.0" || host == "::" || host == "::1" || host == "localhost" || host.hasPrefix("127.")
    }

    private static func makeCluster(config: NodeConfig, loop: EventLoop, logger: Logger) throws -> Cluster? {
        guard config.isClustered else { return nil }
        let statics = try StaticMembership.parse(config.peers, selfName: config.name)
        let unresolved = statics.unresolvedNames.filter { $0 != config.name }
        if !unresolved.isEmpty && config.etcdEndpoints.isEmpty {
            throw ConfigError("--peer \(unresolved.joined(separator: ",")): plain names are looked up in etcd; "
                              + "give --etcd HOST:PORT, or NAME=HOST:PORT entries")
        }
        var settings = ClusterSettings()
        settings.peerTimeoutMillis = config.peerTimeoutMillis
        settings.peerToken = config.peerToken
        settings.ringKind = config.ringKind
        settings.group = config.group
        settings.maxMessageBytes = config.maxPeerMessageBytes
        settings.http2 = config.peerHTTP2
        let me = selfMember(config: config, statics: statics)
        if config.ringKind == .springcache {
            // springcache's ring knows a member only by its IP: two members on one IP would be one to every
            // springcache node, and the rings would disagree on their keys. Refuse rather than split keys.
            let known = statics.members.filter { $0.peer != nil && $0.name != me.name } + [me]
            if let shared = SpringcacheRing.sharedHosts(known.map { (name: $0.name, host: $0.peer!.host) }).first {
                throw ConfigError("--ring springcache keys members by IP, and \(shared.names.joined(separator: ", ")) "
                                  + "share \(shared.host); give each member its own IP (or use the default ring)")
            }
        }
        let cluster = Cluster(selfMember: me, loop: loop, settings: settings, logger: logger)
        cluster.setMembers(statics.members.filter { $0.peer != nil } + [me])
        return cluster
    }

    /// The API port actually bound (differs from the configured one when that is 0).
    public var apiPort: Int { server.boundPort }

    /// The metrics listener takes few connections: a handful of scrapers, not clients.
    static let maxMetricsConnections = 64

    /// Binds the peer port, the API and the metrics listener; an error names the flag and the cause.
    private func startListeners() throws {
        // The peer port first: a node that cannot serve its peers must not take API connections (a worker
        // sharing the API port would accept some and then die with them).
        if let cluster, let address = cluster.members[config.name]?.peer {
            var settings = config.peerServer
            settings.peerToken = config.peerToken
            settings.maxMessageBytes = config.maxPeerMessageBytes
            settings.http2 = config.peerHTTP2
            let service = PeerService(group: group, clock: loop.clock, maxValueBytes: config.http.limits.maxBodyBytes)
            let peers = GRPCServer(loop: loop, settings: settings, handler: service, abuse: server.abuse)
            // Kept before start: if the bind fails, `closeAfterFailedStart` still owns it and closes it.
            peerServer = peers
            // Why all interfaces by default: the advertised address (IP_ADDRESS) need not be one of this host's
            // (NAT, containers), as with springcache, which listens on 0.0.0.0.
            let listen = config.peerListen ?? HostPort(host: "0.0.0.0", port: address.port)
            do {
                try peers.start(address: listen)
            } catch {
                // Name the flag the address came from: --peer-listen, this node's own --peer entry, or --port.
                let flag = config.peerListen != nil ? "--peer-listen \(listen)"
                    : config.peers.contains { $0.hasPrefix(config.name + "=") } ? "--peer \(config.name)=\(address)"
                    : "--port \(address.port) (peer port \(listen))"
                throw ConfigError("\(flag): \(Node.cause(error))")
            }
            let members = cluster.members.keys.sorted().joined(separator: ",")
            logger.info("peer port grpc://\(address) members=\(members) listening=\(listen) ring=\(config.ringKind)")
        }
        do {
            try server.start(address: config.api, reusePort: config.reusePort)
        } catch {
            throw ConfigError("--api \(config.api): \(Node.cause(error))")
        }
        if let metricsServer, let address = config.metrics {
            do {
                try metricsServer.start(address: address, reusePort: false)
            } catch {
                throw ConfigError("--metrics \(address): \(Node.cause(error))")
            }
            logger.info("metrics http://\(HostPort(host: address.host, port: metricsServer.boundPort))/metrics")
        }
        if let path = config.accessLogPath {
            let log = try AccessLog(path: path)
            accessLog = log
            server.accessLog = log
        }
    }

    /// What went wrong, without the operation's name (the flag says which socket it was).
    static func cause(_ error: Error) -> String {
        if let uv = error as? UVError {
            return "\(String(cString: uv_strerror(uv.code))) (\(String(cString: uv_err_name(uv.code))))"
        }
        return "\(error)"
    }

    /// Closes every handle opened so far after a listener failed to start, so the loop closes cleanly and the
    /// process exits with its one-line error instead of tripping a handle's "released without close" check.
    private func closeAfterFailedStart() {
        stopping = true
        stopServers()
        loop.run()
        loop.close()
    }

    /// Serves until SIGINT or SIGTERM, then stops gracefully: no new connections, answers in flight
    /// finish, every handle is closed, and the loop closes cleanly.
    public func run() throws {
        // Why ignore SIGPIPE: a client that goes away mid-write must cost an EPIPE, not the process.
        signal(SIGPIPE, SIG_IGN)
        do {
            try startListeners()
        } catch {
            closeAfterFailedStart()
            throw error
        }
        if let etcd {
            // springcache's start-up contract: register, wait for the listed peers, then serve. Meanwhile
            // the API answers 503 with the reason instead of leaving clients hanging.
            server.admissionRefusal = "waiting for peers \(etcd.awaitedNames.joined(separator: ",")) to register in etcd"
        }
        let sweep = loop.scheduler.makeTimer { [unowned self] in
            self.group.sweep()
            // Every sweep interval (a second by default): write waiting access-log lines and the summaries of
            // repeated failures.
            self.accessLog?.flush()
            for line in self.failureLog.flush(now: self.loop.clock.nowMillis) { self.logger.warning("\(line)") }
        }
        sweep.arm(afterMillis: Int64(config.sweepIntervalMillis), repeatMillis: Int64(config.sweepIntervalMillis))
        sweepTimer = sweep
        for signum in [SIGINT, SIGTERM] {
            signals.append(try SignalWatcher(loop: loop, signal: signum) { [unowned self] sig in
                self.logger.info("received signal \(sig); stopping")
                self.stop()
            })
        }
        signals.append(try SignalWatcher(loop: loop, signal: SIGHUP) { [unowned self] _ in self.reloadTokens() })
        // Why watch SIGUSR1/SIGUSR2 instead of leaving them: their default action ends the process, and a stray
        // `kill -USR1` (log rotation scripts send it) must not take a cache down. memcached and Redis stay up.
        for signum in [SIGUSR1, SIGUSR2] {
            signals.append(try SignalWatcher(loop: loop, signal: signum) { [unowned self] sig in
                self.logger.notice("received signal \(sig); ignored (SIGHUP re-reads the token files, SIGTERM stops)")
            })
        }
        logAddresses()
        if let etcd {
            let api = HostPort(host: config.advertiseHost ?? config.api.host, port: server.boundPort)
            etcd.start(apiAddress: api.description) { [unowned self] ok in
                if ok {
                    self.server.admissionRefusal = nil
                } else {
                    self.exitStatus = 1
                    self.stop()
                }
            }
        }
        loop.run()
        let status = loop.close()
        if status != 0 {
            logger.warning("loop closed with \(loop.openHandleCount()) handles open (\(status))")
        }
        logger.info("stopped")
        if exitStatus != 0 { throw NodeExit(status: exitStatus) }
    }

    /// Why the process must exit non-zero (e.g. the peers it waited for never registered).
    var exitStatus: Int32 = 0

    private func logAddresses() {
        let api = HostPort(host: config.api.host, port: server.boundPort)
        logger.info("serving http://\(api) group=\(config.group) origin=\(config.origin) name=\(config.name)")
        if config.apiBindsAllAsSpringcache {
            let why = "because IP_ADDRESS or --advertise is set and --api is not; give --api HOST:PORT to narrow it"
            logger.info("the API listens on all interfaces (\(api)), as springcache's does, \(why)")
            if config.authToken == nil {
                let routes = "/api/set, /api/delete, /setpeer and PUT/DELETE /v1/cache"
                logger.warning("the API on \(api) takes \(routes) from anyone who can reach it; give --auth-token-file")
            }
        }
        if let cluster, config.advertiseHost == nil, let peer = cluster.members[config.name]?.peer,
           peer.host == "0.0.0.0" || peer.host == "::" {
            logger.warning("advertising the wildcard \(peer) to peers: give IP_ADDRESS or --advertise")
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
        stopServers()
    }

    /// Stops the listeners, lets answers in flight finish, revokes the etcd lease, then closes the rest.
    private func stopServers() {
        metricsServer?.stop {}
        server.stop { [self] in
            api.close()
            // Revoking the lease first makes the other members drop this node at once.
            guard let etcd else {
                closeTheRest()
                return
            }
            etcd.stop { self.closeTheRest() }
        }
    }

    private func closeTheRest() {
        accessLog?.close()
        accessLog = nil
        server.accessLog = nil
        curl?.close {}
        curl = nil
        cluster?.close()
        group.router = nil
        if let peerServer {
            peerServer.close {}
            self.peerServer = nil
        }
    }

    // MARK: operations


    /// SIGHUP: reads the token files again, so a token is rotated without a restart. A file that cannot be
    /// read keeps the old token in force (and says so): a botched rotation must not open or lock the node.
    private func reloadTokens() {
        guard config.authTokenFile != nil || config.peerTokenFile != nil else {
            logger.notice("received SIGHUP; no token files to re-read (--auth-token-file, --peer-token-file)")
            return
        }
        if let path = config.authTokenFile {
            do {
                api.authToken = try TokenFile.read(path, flag: "--auth-token-file")
                logger.notice("SIGHUP: re-read --auth-token-file \(path)")
            } catch {
                logger.error("SIGHUP: \(error); keeping the previous API token")
            }
        }
        if let path = config.peerTokenFile {
            do {
                let token = try TokenFile.read(path, flag: "--peer-token-file")
                peerServer?.setPeerToken(token)
                cluster?.setPeerToken(token)
                logger.notice("SIGHUP: re-read --peer-token-file \(path)")
            } catch {
                logger.error("SIGHUP: \(error); keeping the previous peer token")
            }
        }
    }

    /// An origin load failed: logged with its full cause, once per kind and interval (then summed up).
    private func originFailed(_ kind: OriginOutcome, _ cause: String) {
        if let line = failureLog.record(kind: "origin \(kind.label)", cause: cause, now: loop.clock.nowMillis) {
            logger.warning("origin load failed: \(line)")
        }
    }
}

// The springcache-uv executable: parses the command line, sets up logging, runs one node.
import ArgumentParser
import Logging
import SpringCacheUV
#if canImport(Glibc)
import Glibc
#endif

struct SpringCacheCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "springcache-uv",
        abstract: "A distributed read-through cache node (springcache-compatible HTTP API).",
        discussion: """
            With no arguments, serves one node on 127.0.0.1:9999: group 'scores' backed by springcache's \
            demo store (Tom 630, Jack 589, Sam 567).
              curl 'http://127.0.0.1:9999/api/get?key=Tom'        -> value=630
              curl -X POST http://127.0.0.1:9999/api/set -d 'key=lpc&value=185&expire=5&hot=false'   -> done
            Sizes accept B, KiB, MiB, GiB, TiB (binary; also K M G T) and KB, MB, GB, TB (decimal): 65536, 512KiB, \
            64MiB, 5GB. Durations accept 500ms, 30s, 3m, 1h, 1m30s. docs/operations.md runs it in production.
            """,
        version: "springcache-uv \(BuildInfo.version)")

    // springcache's own flags.
    @Option(help: "This node's name; its identity among cluster members.")
    var name: String = "springcache-uv"
    @Option(parsing: .unconditional,
            help: "The gRPC peer port (springcache's --port; default 8888). Must agree with this node's own --peer entry.")
    var port: Int?
    @Option(help: ArgumentHelp(
        "Cluster members, this node included: NAME=HOST:PORT entries (peer addresses), or springcache's plain names 'a,b,c' to look up in etcd.",
        valueName: "members"))
    var peer: String?
    @Option(help: "etcd endpoints host:port, comma-separated (springcache's --etcd): the node registers there and finds the other members.")
    var etcd: String?
    @Option(parsing: .unconditional,
            help: "The etcd lease the registration hangs on (duration; springcache's 10s); a crashed node leaves when it expires.")
    var leaseTtl: String = "10s"
    @Option(parsing: .unconditional,
            help: "With --etcd and plain --peer names: how long start-up waits for them to register (duration; springcache's ~30s).")
    var peerWait: String = "30s"
    @Option(help: "The host other nodes use to reach this one (overrides IP_ADDRESS, springcache's environment variable).")
    var advertise: String?
    @Option(help: ArgumentHelp("Where the peer port listens, HOST:PORT (default: all interfaces on --port, as springcache).",
                               valueName: "host:port"))
    var peerListen: String?
    @Option(help: ArgumentHelp("Which ring maps keys to members: 'rendezvous' (by name) or 'springcache' (springcache's own, by IP: for clusters with springcache nodes in them).",
                               valueName: "rendezvous|springcache"))
    var ring: String = "rendezvous"
    @Option(help: "The cluster's name in etcd: members register under NAME/members/, so clusters can share one etcd.")
    var cluster: String = NodeConfig.defaultClusterName
    @Option(parsing: .unconditional,
            help: "A peer call slower than this fails and the key is loaded locally (duration; springcache's 2s).")
    var peerTimeout: String = "2s"
    @Option(parsing: .unconditional,
            help: "A value fetched from its owner becomes a local hot copy with probability 1 in N (groupcache's 10; 1 = always, 0 = never).")
    var hotCopyOneIn: Int = 10
    @Option(help: "File holding a token peers must send as 'authorization: Bearer <token>' (and that this node sends).")
    var peerTokenFile: String?
    @Option(help: "Peer port: bytes one connection's unfinished requests and unsent answers may hold (size; default the larger of 16MiB and twice the largest peer message); beyond it RESOURCE_EXHAUSTED.")
    var peerMaxConnectionBuffer: String?
    @Option(help: "Peer port: the same bound over all peer connections, with their unsent output (size; default the larger of 64MiB and 4 x --peer-max-connection-buffer).")
    var peerMaxBuffer: String?
    @Option(help: "Peer connections: the largest HTTP/2 DATA frame we accept and send (SETTINGS_MAX_FRAME_SIZE; size from 16KiB to 16MiB-1; larger frames cost one frame buffer of this size per connection).")
    var peerMaxFrameSize: String = "64KiB"
    @Option(help: "Peer port: every stream ends this long after it began, grpc-timeout or not (duration); also how long a peer may leave our output unread.")
    var peerStreamTimeout: String = "10s"
    @Option(help: "Peer port: a connection must send the HTTP/2 preface and SETTINGS within this long (duration).")
    var peerHandshakeTimeout: String = "5s"
    @Option(help: "Peer port: a connection silent this long is sent a PING, and closed if it stays silent --peer-ping-timeout more (duration).")
    var peerIdleTimeout: String = "60s"
    @Option(help: "Peer port: a connection sent a PING for being idle is closed if it stays silent this long (duration).")
    var peerPingTimeout: String = "10s"
    @Option(help: "Peer port: connections not yet authenticated (no token sent, or handshake unfinished); a new one beyond it closes the oldest.")
    var peerMaxUnauthenticated: Int = 64

    // Where and what to serve.
    @Option(help: ArgumentHelp("HTTP API address HOST:PORT (default 127.0.0.1:9999; 0.0.0.0:9999, springcache's, when IP_ADDRESS or --advertise is set).",
                               valueName: "host:port"))
    var api: String?
    @Option(help: "The cache group served at /api/get and /v1/cache/{group}/{key}.")
    var group: String = "scores"
    @Option(help: "Where misses are loaded from: 'demo' (springcache's example store) or an URL template http://HOST:PORT/PATH/{key}.")
    var origin: String = "demo"
    @Option(parsing: .unconditional,
            help: "How long an origin load may take before it fails with 504 (duration, 1ms to 60s).")
    var originTimeout: String = "2s"

    // Cache semantics.
    @Option(parsing: .unconditional,
            help: "Main cache bound per worker: key + value + per-entry overhead (size; at least 1KiB).")
    var cacheBytes: String = "64MiB"
    @Option(parsing: .unconditional,
            help: "Hot cache bound per worker (size).")
    var hotBytes: String = "8MiB"
    @Option(parsing: .unconditional,
            help: "Lifetime of loaded values and of /api/set with expire=0 (duration).")
    var ttl: String = "30s"
    @Option(parsing: .unconditional,
            help: "A random extra in [0, jitter) added to every expiry (duration; springcache used 3m; 0 = none).")
    var jitter: String = "3m"
    @Flag(inversion: .prefixedNo, help: "Whether a hit restarts the entry's lifetime (springcache's behaviour).")
    var sliding: Bool = true
    @Option(parsing: .unconditional,
            help: "How long an origin 'not found' is remembered (duration; 0 = off).")
    var negativeTtl: String = "5s"
    @Option(parsing: .unconditional,
            help: "Serve an entry expired less than this long ago when the origin fails (duration; 0 = off).")
    var staleGrace: String = "0"

    // Limits.
    @Option(parsing: .unconditional,
            help: "Largest request line + headers (size); beyond it 414/431.")
    var maxHeaderBytes: String = "8KiB"
    @Option(parsing: .unconditional,
            help: "Largest request body, and so the largest value (size); beyond it 413.")
    var maxBodyBytes: String = "1MiB"
    @Option(parsing: .unconditional,
            help: "Open client connections; beyond it new ones get 503 and are closed at once.")
    var maxConnections: Int = 10_000
    @Option(parsing: .unconditional,
            help: "Time allowed to send a whole request, from its first byte (duration); then 408.")
    var headerTimeout: String = "10s"
    @Option(parsing: .unconditional,
            help: "An idle keep-alive connection is closed after this long (duration).")
    var idleTimeout: String = "60s"
    @Option(parsing: .unconditional,
            help: "Response bytes queued per connection before its requests stop being read (size).")
    var maxOutputBytes: String = "4MiB"
    @Option(help: "Response bytes queued over all API connections; at it, connections with answers still unread stop being read until theirs are (size).")
    var maxQueuedOutputBytes: String = "64MiB"
    @Option(help: "While all API connections are at --max-queued-output-bytes, one whose answers stay unread this long is closed to make room (duration).")
    var unreadTimeout: String = "1s"
    @Option(parsing: .unconditional,
            help: "Answer bytes the kernel may hold unsent per API connection once its client is seen to read (size, TCP_NOTSENT_LOWAT); the rest waits in the node under --max-output-bytes and --max-queued-output-bytes. 0 = the kernel's own sizing (MiBs per connection) for every connection.")
    var socketUnsentBytes: String = "1MiB"
    @Option(parsing: .unconditional,
            help: "The same limit until the client is seen to read (size, at least 4KiB; capped at --socket-unsent-bytes): what each connection that never reads costs in kernel memory and copying.")
    var socketUnsentBytesBeforeReading: String = "16KiB"
    @Option(help: "Answer bytes one loop turn may write to API connections whose clients have not yet been seen to read (size; 0 = no budget); past it their requests wait for the next turn, newest first, while accepting and reading clients go on.")
    var turnWriteBudget: String = "2MiB"
    @Option(help: "How often the API and peer servers check their deadlines: every timeout fires up to this much late (duration, 1ms to 1s).")
    var timerTick: String = "250ms"

    @Option(help: ArgumentHelp("Worker processes, each a full node: a number, or 'auto' for one per core. Worker i is named NAME-i, serves its peer protocol on PORT+i and shares the API port (SO_REUSEPORT).",
                               valueName: "n|auto"))
    var workers: String = "1"
    @Option(help: .hidden)
    var workerIndex: Int?

    @Option(help: "File holding a bearer token; mutating routes then require 'Authorization: Bearer <token>'.")
    var authTokenFile: String?
    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"
    @Option(help: ArgumentHelp("Log lines as text (timestamp level pid= node= message) or one JSON object per line.",
                               valueName: "text|json"))
    var logFormat: String = "text"
    @Option(help: ArgumentHelp("Also log every answered request here, in the Common Log Format plus the time taken "
                               + "('-' is standard output). Off by default.",
                               valueName: "file|-"))
    var accessLog: String?
    @Option(help: ArgumentHelp("A listener serving only /metrics and /healthz. With --workers, worker i listens on "
                               + "PORT+i, so each worker is a Prometheus target of its own.",
                               valueName: "host:port"))
    var metrics: String?
    @Option(parsing: .unconditional,
            help: ArgumentHelp("Repeated origin and etcd failures of one kind are logged once per this interval, "
                               + "then summed up (duration)."))
    var failureLogInterval: String = "10s"

    /// How many workers `--workers` asks for.
    func workerCount() throws -> Int {
        if workers == "auto" { return WorkerSupervisor.coreCount() }
        guard let n = Int(workers), (1...1024).contains(n) else {
            throw ValidationError("--workers expects a number from 1 to 1024 or 'auto', got '\(workers)'")
        }
        return n
    }

    func validate() throws {
        let count = try workerCount()
        let config = try makeConfig(readingFiles: false)
        try checkConflicts(config, count: count)
        if count > 1 && config.api.port == 0 {
            throw ValidationError("--workers \(workers) needs a fixed --api port: the workers share it (SO_REUSEPORT)")
        }
        if count > 1 && config.peerPort + count - 1 > 65535 {
            throw ValidationError("--port \(config.peerPort) + \(count) workers goes past 65535")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level expects trace, debug, info, notice, warning, error or critical, got '\(logLevel)'")
        }
        guard LogFormat(rawValue: logFormat) != nil else {
            throw ValidationError("--log-format expects text or json, got '\(logFormat)'")
        }
    }

    /// Flags that each make sense alone but not together.
    func checkConflicts(_ config: NodeConfig, count: Int) throws {
        let statics = config.peers.isEmpty ? nil : try? StaticMembership.parse(config.peers, selfName: config.name)
        let ownEntry = statics?.members.first { $0.name == config.name }?.peer
        if let port, let ownEntry, ownEntry.port != port {
            throw ValidationError("--port \(port) disagrees with this node's --peer entry \(config.name)=\(ownEntry); "
                                  + "give one of them (the entry's port is the one peers call)")
        }
        if count > 1 && ownEntry != nil {
            throw ValidationError("--workers \(count) with --peer \(config.name)=HOST:PORT: each worker is a member of "
                                  + "its own (\(config.name)-0 … \(config.name)-\(count - 1), "
                                  + "peer ports PORT…PORT+\(count - 1)); "
                                  + "leave \(config.name) out of --peer, or use --etcd")
        }
        if let metrics = config.metrics {
            if count > 1 && metrics.port == 0 {
                throw ValidationError("--workers \(count) needs a fixed --metrics port: worker i listens on PORT+i")
            }
            let last = metrics.port + count - 1
            if last > 65535 {
                throw ValidationError("--metrics port \(metrics.port) + \(count) workers goes past 65535")
            }
            let metricsPorts = metrics.port...last
            if metrics.port != 0 && metricsPorts.contains(config.api.port) {
                throw ValidationError("--metrics \(metrics) would share port \(config.api.port) with --api; "
                                      + "give another port")
            }
            let peerPorts = config.peerPort...(config.peerPort + count - 1)
            if metrics.port != 0 && config.isClustered && metricsPorts.overlaps(peerPorts) {
                throw ValidationError("--metrics ports \(metricsPorts.lowerBound)…\(last) overlap the peer ports "
                                      + "\(peerPorts.lowerBound)…\(peerPorts.upperBound) (--port); give another port")
            }
        }
    }

    /// The node's configuration from the flags. `readingFiles: false` (validation) leaves the token files
    /// unread: a file that cannot be read is a start-up failure (one line, exit 1), not a usage error.
    func makeConfig(readingFiles: Bool = true) throws -> NodeConfig {
        var c = NodeConfig()
        do {
            if let api {
                c.api = try HostPort.parse(api, flag: "--api").resolvedForBinding(flag: "--api")
            }
            if let metrics {
                c.metrics = try HostPort.parse(metrics, flag: "--metrics").resolvedForBinding(flag: "--metrics")
            }
            c.accessLogPath = accessLog
            c.failureLogIntervalMillis = try ValueParsing.durationMillis(failureLogInterval,
                                                                         flag: "--failure-log-interval")
            guard c.failureLogIntervalMillis >= 1000 else {
                throw ConfigError("--failure-log-interval expects at least 1s, got '\(failureLogInterval)'")
            }
            guard !name.isEmpty else { throw ConfigError("--name must not be empty") }
            c.name = name
            let port = self.port ?? 8888
            guard (1...65535).contains(port) else { throw ConfigError("--port expects 1...65535, got \(port)") }
            c.peerPort = port
            c.peers = peer.map(ValueParsing.list) ?? []
            c.etcdEndpoints = etcd.map(ValueParsing.list) ?? []
            if let ip = getenv("IP_ADDRESS").map({ String(cString: $0) }), !ip.isEmpty { c.advertiseHost = ip }
            if let host = advertise {
                guard !host.isEmpty, !host.contains("/"), !host.contains(" ") else {
                    throw ConfigError("--advertise expects a host name or address, got '\(host)'")
                }
                c.advertiseHost = host
            }
            if api == nil && c.advertiseHost != nil {
                // springcache's cluster command line (IP_ADDRESS set): its API listened on all interfaces and
                // is advertised as IP_ADDRESS:9999, so loopback would make the advertised API unreachable.
                c.api = HostPort(host: "0.0.0.0", port: 9999)
                c.apiBindsAllAsSpringcache = true
            }
            if let peerListen {
                c.peerListen = try HostPort.parse(peerListen, flag: "--peer-listen")
                guard c.peerListen!.port > 0 else { throw ConfigError("--peer-listen needs a port above 0") }
            }
            guard let ringKind = RingKind(rawValue: ring) else {
                throw ConfigError("--ring expects 'rendezvous' or 'springcache', got '\(ring)'")
            }
            c.ringKind = ringKind
            guard !cluster.isEmpty, !cluster.contains("/"), !cluster.contains(" ") else {
                throw ConfigError("--cluster expects a name without '/' or spaces, got '\(cluster)'")
            }
            c.clusterName = cluster
            let lease = try ValueParsing.durationMillis(leaseTtl, flag: "--lease-ttl")
            guard lease >= 1000, lease % 1000 == 0 else {
                throw ConfigError("--lease-ttl expects whole seconds of at least 1s (etcd leases count seconds), got '\(leaseTtl)'")
            }
            c.leaseTTLSeconds = Int(lease / 1000)
            c.peerWaitMillis = try ValueParsing.durationMillis(peerWait, flag: "--peer-wait")
            if !c.etcdEndpoints.isEmpty { _ = try EtcdClient.parseEndpoints(c.etcdEndpoints) }
            guard !group.isEmpty else { throw ConfigError("--group must not be empty") }
            c.group = group
            c.origin = origin
            c.originTimeoutMillis = try ValueParsing.durationMillis(originTimeout, flag: "--origin-timeout")
            // Why refuse 0 rather than read it as "no timeout": a load that can hang forever holds its waiters
            // forever; and the latency buckets end at 120 s, so a longer timeout would hide its slow loads.
            guard c.originTimeoutMillis > 0, c.originTimeoutMillis <= 60_000 else {
                throw ConfigError("--origin-timeout expects a duration from 1ms to 60s, got '\(originTimeout)'")
            }
            c.cache.cacheBytes = try ValueParsing.byteSize(cacheBytes, flag: "--cache-bytes")
            guard c.cache.cacheBytes >= NodeConfig.minCacheBytes else {
                throw ConfigError("--cache-bytes \(cacheBytes) cannot hold any value (at least "
                                  + "\(ValueParsing.formatSize(NodeConfig.minCacheBytes)) is needed)")
            }
            c.cache.hotBytes = try ValueParsing.byteSize(hotBytes, flag: "--hot-bytes")
            c.cache.ttlMillis = try ValueParsing.durationMillis(ttl, flag: "--ttl")
            guard c.cache.ttlMillis > 0 else { throw ConfigError("--ttl must be greater than 0") }
            c.cache.jitterMillis = try ValueParsing.durationMillis(jitter, flag: "--jitter")
            c.cache.sliding = sliding
            c.cache.negativeTTLMillis = try ValueParsing.durationMillis(negativeTtl, flag: "--negative-ttl")
            c.cache.staleGraceMillis = try ValueParsing.durationMillis(staleGrace, flag: "--stale-grace")
            c.http.limits.maxHeadBytes = try ValueParsing.byteSize(maxHeaderBytes, flag: "--max-header-bytes")
            c.http.limits.maxBodyBytes = try ValueParsing.byteSize(maxBodyBytes, flag: "--max-body-bytes")
            guard maxConnections > 0 else { throw ConfigError("--max-connections must be at least 1") }
            c.http.maxConnections = maxConnections
            c.http.headerTimeoutMillis = try ValueParsing.durationMillis(headerTimeout, flag: "--header-timeout")
            c.http.idleTimeoutMillis = try ValueParsing.durationMillis(idleTimeout, flag: "--idle-timeout")
            // Why refuse 0: it could only mean "close at once", which no client can use.
            guard c.http.headerTimeoutMillis > 0 else { throw ConfigError("--header-timeout must be greater than 0") }
            guard c.http.idleTimeoutMillis > 0 else { throw ConfigError("--idle-timeout must be greater than 0") }
            c.http.maxOutputBytesPerConnection = try ValueParsing.byteSize(maxOutputBytes, flag: "--max-output-bytes")
            c.http.maxQueuedOutputBytes = try ValueParsing.byteSize(maxQueuedOutputBytes, flag: "--max-queued-output-bytes")
            guard c.http.maxQueuedOutputBytes >= c.http.maxOutputBytesPerConnection else {
                throw ConfigError("--max-queued-output-bytes must be at least --max-output-bytes")
            }
            c.http.unreadTimeoutMillis = try positiveDuration(unreadTimeout, flag: "--unread-timeout")
            c.http.socketUnsentBytes = try ValueParsing.byteSize(socketUnsentBytes, flag: "--socket-unsent-bytes")
            c.http.socketUnsentBytesBeforeReading = try ValueParsing.byteSize(
                socketUnsentBytesBeforeReading, flag: "--socket-unsent-bytes-before-reading")
            // Why at least 4 KiB: below a page the kernel wakes the loop for every segment it sends.
            guard c.http.socketUnsentBytesBeforeReading >= 4096 else {
                throw ConfigError("--socket-unsent-bytes-before-reading must be at least 4KiB")
            }
            c.http.turnWriteBudgetBytes = try ValueParsing.byteSize(turnWriteBudget, flag: "--turn-write-budget")
            let tick = try positiveDuration(timerTick, flag: "--timer-tick")
            // Why at most 1 s: the tick is the resolution of the header, unread and peer timeouts (1 s and up).
            guard tick <= 1_000 else {
                throw ConfigError("--timer-tick expects a duration from 1ms to 1s, got '\(timerTick)'")
            }
            c.http.tickMillis = tick
            c.peerServer.tickMillis = UInt64(tick)
            try peerLimits(&c)
            if readingFiles, let path = authTokenFile {
                c.authToken = try TokenFile.read(path, flag: "--auth-token-file")
            }
            if readingFiles, let path = peerTokenFile {
                c.peerToken = try TokenFile.read(path, flag: "--peer-token-file")
            }
            c.authTokenFile = authTokenFile
            c.peerTokenFile = peerTokenFile
            let peerTimeoutMillis = try ValueParsing.durationMillis(peerTimeout, flag: "--peer-timeout")
            // The upper bound keeps deadline arithmetic (now + timeout) far from overflow; a peer call that
            // may take an hour is a misconfiguration anyway.
            guard peerTimeoutMillis > 0, peerTimeoutMillis <= 3_600_000 else {
                throw ConfigError("--peer-timeout expects a duration from 1ms to 1h, got '\(peerTimeout)'")
            }
            c.peerTimeoutMillis = Int(peerTimeoutMillis)
            guard hotCopyOneIn >= 0 else { throw ConfigError("--hot-copy-one-in expects 0 or more, got \(hotCopyOneIn)") }
            c.cache.hotCopyOneIn = hotCopyOneIn
            if !c.peers.isEmpty { _ = try StaticMembership.parse(c.peers, selfName: c.name) }
        } catch let error as ConfigError {
            throw ValidationError(error.description)
        }
        return c
    }

    /// The peer port's bounds; the buffer bounds default to sizes that fit the largest peer message.
    private func peerLimits(_ c: inout NodeConfig) throws {
        let message = c.maxPeerMessageBytes
        let perConnection = try peerMaxConnectionBuffer.map {
            try ValueParsing.byteSize($0, flag: "--peer-max-connection-buffer")
        } ?? max(16 << 20, 2 * message)
        // A message is held with its 5-byte gRPC prefix, so a buffer of exactly `message` bytes would refuse the
        // largest answer it claims to allow.
        let framed = message + HTTP2Settings.grpcPrefixBytes
        guard perConnection >= framed else {
            throw ConfigError("--peer-max-connection-buffer must hold at least one framed peer message of \(framed) "
                              + "bytes (the larger of 4MiB and --max-body-bytes + --max-header-bytes + 1KiB, "
                              + "plus its 5-byte prefix)")
        }
        let total = try peerMaxBuffer.map { try ValueParsing.byteSize($0, flag: "--peer-max-buffer") }
            ?? max(64 << 20, 4 * perConnection)
        guard total >= perConnection else {
            throw ConfigError("--peer-max-buffer must be at least --peer-max-connection-buffer (\(perConnection) bytes)")
        }
        c.peerServer.maxConnectionBufferBytes = perConnection
        c.peerServer.maxBufferBytes = total
        let frame = try ValueParsing.byteSize(peerMaxFrameSize, flag: "--peer-max-frame-size")
        guard HTTP2Settings.frameSizeRange.contains(frame) else {
            throw ConfigError("--peer-max-frame-size must be from 16KiB to 16MiB-1 (RFC 9113 §6.5.2), "
                              + "got \(frame) bytes")
        }
        c.peerServer.http2.maxFrameSize = Int32(frame)
        c.peerServer.streamTimeoutMillis = try positiveDuration(peerStreamTimeout, flag: "--peer-stream-timeout")
        c.peerServer.handshakeTimeoutMillis = try positiveDuration(peerHandshakeTimeout, flag: "--peer-handshake-timeout")
        c.peerServer.idleTimeoutMillis = try positiveDuration(peerIdleTimeout, flag: "--peer-idle-timeout")
        c.peerServer.pingTimeoutMillis = try positiveDuration(peerPingTimeout, flag: "--peer-ping-timeout")
        guard peerMaxUnauthenticated >= 1 else { throw ConfigError("--peer-max-unauthenticated must be at least 1") }
        c.peerServer.maxUnauthenticatedConnections = peerMaxUnauthenticated
    }

    private func positiveDuration(_ text: String, flag: String) throws -> Int64 {
        let millis = try ValueParsing.durationMillis(text, flag: flag)
        guard millis > 0 else { throw ConfigError("\(flag) must be greater than 0") }
        return millis
    }

    /// A worker's own configuration: its name, its peer port, the shared API port, and (without etcd or an
    /// explicit list) the other workers as its static members.
    func workerConfig(_ base: NodeConfig, index: Int, count: Int) -> NodeConfig {
        var c = base
        c.name = "\(base.name)-\(index)"
        c.peerPort = base.peerPort + index
        if let metrics = base.metrics { c.metrics = HostPort(host: metrics.host, port: metrics.port + index) }
        if let listen = base.peerListen { c.peerListen = HostPort(host: listen.host, port: listen.port + index) }
        c.reusePort = true
        c.workerIndex = index
        guard count > 1 else { return c }
        let host = base.advertiseHost ?? base.api.host
        let siblings = (0..<count).map { "\(base.name)-\($0)=\(HostPort(host: host, port: base.peerPort + $0))" }
        if base.etcdEndpoints.isEmpty {
            c.peers = siblings + base.peers.filter { !$0.hasPrefix(base.name + "=") && $0 != base.name }
        } else {
            // With etcd each worker registers itself as NAME-i and finds the rest there; springcache's
            // plain names name whole nodes, not workers, so there is nothing to wait for by name.
            c.peers = base.peers.filter { $0.contains("=") && !$0.hasPrefix(base.name + "=") }
        }
        return c
    }

    func run() throws {
        let count = try workerCount()
        let level = Logger.Level(rawValue: logLevel) ?? .info
        let format = LogFormat(rawValue: logFormat) ?? .text
        let nodeName = workerIndex.map { "\(name)-\($0)" } ?? name
        LoggingSystem.bootstrap { _ in NodeLogHandler(node: nodeName, format: format, level: level) }
        let logger = Logger(label: "springcache-uv")
        var config: NodeConfig
        do {
            config = try makeConfig()
        } catch {
            // The flags were validated; what fails here is the environment (a token file that cannot be read).
            logger.critical("\(error)")
            throw ExitCode(workerIndex != nil ? WorkerSupervisor.startFailureStatus : 1)
        }
        if count > 1 && config.ringKind == .springcache {
            // springcache's ring knows members by IP, and workers share one: they would be one member to it.
            logger.critical("""
                --ring springcache keys members by IP, and --workers \(workers) would put \(count) members on one IP; \
                run one worker per IP (or use the default ring)
                """)
            throw ExitCode(1)
        }
        let cores = WorkerSupervisor.coreCount()
        if count > cores && workerIndex == nil {
            let warning = "--workers \(count) is more than the \(cores) cores here: workers will compete for CPU "
                + "(--workers auto starts one per core)"
            logger.warning("\(warning)")
        }
        if count > 1 && workerIndex == nil {
            let metricsPorts = config.metrics.map { ", metrics ports \($0.port)…\($0.port + count - 1)" } ?? ""
            let plan = "\(count) workers: memory up to \(count) × "
                + "(--cache-bytes \(cacheBytes) + --hot-bytes \(hotBytes)); "
                + "peer ports \(config.peerPort)…\(config.peerPort + count - 1)\(metricsPorts)"
            logger.info("\(plan)")
        }
        if count > 1 && workerIndex == nil {
            do {
                let loop = try EventLoop()
                WorkerSupervisor.exportSupervisorPID()
                let arguments = Array(CommandLine.arguments.dropFirst())
                let supervisor = WorkerSupervisor(loop: loop, executable: WorkerSupervisor.currentExecutable(),
                                                  count: count, settings: SupervisorSettings(), logger: logger) { i in
                    arguments + ["--worker-index", "\(i)"]
                }
                throw ExitCode(try supervisor.run())
            } catch let exit as ExitCode {
                throw exit
            } catch {
                logger.critical("\(error)")
                throw ExitCode(1)
            }
        }
        if let index = workerIndex {
            WorkerSupervisor.bindToSupervisor()
            config = workerConfig(config, index: index, count: count)
        }
        do {
            let node = try Node(config: config, logger: logger)
            try node.run()
        } catch let exit as NodeExit {
            throw ExitCode(exit.status)
        } catch {
            logger.critical("\(error)")
            // A worker that cannot start says so with its own exit code, so that its supervisor stops instead
            // of restarting it forever (a taken port stays taken).
            throw ExitCode(workerIndex != nil ? WorkerSupervisor.startFailureStatus : 1)
        }
    }
}

SpringCacheCommand.main()

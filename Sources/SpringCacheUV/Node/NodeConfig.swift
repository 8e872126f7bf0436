/// Everything one node is told at start-up; the command line fills it in, tests build it directly.
public struct NodeConfig {
    /// Where the HTTP API listens. springcache bound 0.0.0.0:9999; we bind loopback unless told otherwise.
    public var api = HostPort(host: "127.0.0.1", port: 9999)
    /// This node's name (its identity on the ring, in etcd and in logs).
    public var name = "springcache-uv"
    /// The gRPC peer port (springcache's `--port`, default 8888).
    public var peerPort = 8888
    /// springcache's `--peer` entries as given: names, or NAME=HOST:PORT.
    public var peers: [String] = []
    /// etcd endpoints (`--etcd`, comma-separated).
    public var etcdEndpoints: [String] = []
    /// The address other nodes use to reach this one (springcache's `IP_ADDRESS`, or `--advertise`); it need
    /// not be an address of this host (NAT, containers).
    public var advertiseHost: String?
    /// Where the peer port listens (`--peer-listen`); nil = all interfaces on the peer port, as springcache.
    public var peerListen: HostPort?
    /// The API address was not given and springcache's cluster command line is used (`IP_ADDRESS` or
    /// `--advertise`): `api` is then springcache's `0.0.0.0:9999`, and the node says so in its log.
    public var apiBindsAllAsSpringcache = false
    /// Which ring maps keys to members (`--ring`): rendezvous by name, or springcache's by IP.
    public var ringKind = RingKind.rendezvous
    /// The cluster's name in etcd (`--cluster`): members register under `NAME/members/`, so clusters with
    /// different names can share one etcd. The default keeps the prefix every existing cluster uses.
    public var clusterName = NodeConfig.defaultClusterName
    public static let defaultClusterName = "springcache"
    /// The etcd lease every registration key hangs on (springcache's 10 s); kept alive every third of it.
    public var leaseTTLSeconds = 10
    /// How long start-up waits for the names listed in `--peer` to register (springcache's ~30 s).
    public var peerWaitMillis: Int64 = 30_000
    /// A peer call slower than this fails with DEADLINE_EXCEEDED (springcache's 2 s).
    public var peerTimeoutMillis = 2_000
    /// With `--peer-token-file`: peers must send, and we send, `authorization: Bearer <token>`.
    public var peerToken: [UInt8]?
    /// The cache group served at /api/get and /v1/cache/{group}/...
    public var group = "scores"
    /// `demo`, or an URL template `http://HOST:PORT/PATH/{key}`.
    public var origin = "demo"
    public var originTimeoutMillis: Int64 = 2_000
    public var cache = CacheConfig()
    public var http = HTTPServerConfig()
    /// The peer port's limits and timeouts (`--peer-max-*`, `--peer-*-timeout`); its token and message size
    /// are filled in from `peerToken` and the API limits when the node starts.
    public var peerServer = GRPCServerSettings()
    /// With `--auth-token-file`: mutating routes require `Authorization: Bearer <token>`.
    public var authToken: [UInt8]?
    /// Share the API port with other processes (workers) through SO_REUSEPORT.
    public var reusePort = false
    /// This node's index among the workers of one supervisor (`--workers`), nil when it runs alone.
    public var workerIndex: Int?
    /// The files the tokens came from; SIGHUP reads them again (rotation without restart).
    public var authTokenFile: String?
    public var peerTokenFile: String?
    /// With `--metrics HOST:PORT`: a listener serving only /metrics and /healthz (worker i on PORT+i).
    public var metrics: HostPort?
    /// With `--access-log FILE|-`: one line per answered request.
    public var accessLogPath: String?
    /// Repeated origin and etcd failures of one kind are logged once per this interval, then summed up.
    public var failureLogIntervalMillis: Int64 = 10_000
    /// How often the cache's backstop sweep runs.
    public var sweepIntervalMillis: UInt64 = 1_000

    /// The smallest `--cache-bytes` accepted: room for a few small entries (each costs key + value +
    /// `LRUCache.perEntryOverhead`). Less, and every set would fail with "too large".
    public static let minCacheBytes = 1024

    public init() {}

    /// The largest peer message: a Set of the largest value the API accepts, its key and group, and framing.
    public var maxPeerMessageBytes: Int {
        max(4 << 20, http.limits.maxBodyBytes + http.limits.maxHeadBytes + 1024)
    }

    /// The HTTP/2 settings of both ends of this node's peer connections (the peer port and its clients):
    /// windows that let one round trip carry the largest peer message, within `--peer-max-connection-buffer`.
    public var peerHTTP2: HTTP2Settings {
        var h = peerServer.http2
        h.sizeWindows(maxMessageBytes: maxPeerMessageBytes, bufferBytes: peerServer.maxConnectionBufferBytes)
        return h
    }

    /// Whether this node is part of a cluster (and so serves the gRPC peer port).
    public var isClustered: Bool { !peers.isEmpty || !etcdEndpoints.isEmpty }

    /// The etcd prefix of this cluster's member records: `springcache/members/` by default.
    public var membersPrefix: String { clusterName + "/members/" }
}

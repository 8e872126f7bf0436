import Logging

/// A node's membership through etcd: registers it on a lease, follows the other members into the cluster,
/// and keeps springcache's start-up contract of waiting for the names given with `--peer`.
///
/// etcd is never on the request path: if it goes away, the cluster keeps the last membership it had, the
/// registrar and discovery retry with capped backoff, and the node registers again when etcd answers.
final class EtcdMembership {
    let config: NodeConfig
    let cluster: Cluster
    let loop: EventLoop
    let logger: Logger
    let client: EtcdClient
    let discovery: EtcdDiscovery
    /// Notices etcd answering again within its interval after an outage, instead of the backoff's cap.
    let probe: EtcdReconnectProbe
    private var registrar: EtcdRegistrar?
    /// Names listed with `--peer` (springcache's form) that must register before the node serves.
    let awaitedNames: [String]
    /// What etcd says about the members, with `--peer`'s static entries and rule.
    private var discovered: DiscoveredMembers
    /// The `--peer` wait (springcache's start-up contract); finished once the node serves or gives up.
    private var waiter: PeerWaiter?

    init(config: NodeConfig, cluster: Cluster, loop: EventLoop, curl: CurlMulti, logger: Logger) throws {
        self.config = config
        self.cluster = cluster
        self.loop = loop
        self.logger = logger
        let statics = try StaticMembership.parse(config.peers, selfName: config.name)
        discovered = DiscoveredMembers(selfName: config.name, statics: statics, onlyListed: config.workerIndex == nil)
        awaitedNames = statics.unresolvedNames.filter { $0 != config.name }
        client = try EtcdClient(endpoints: config.etcdEndpoints, loop: loop, curl: curl)
        var discoverySettings = EtcdDiscoverySettings()
        discoverySettings.failureLogIntervalMillis = config.failureLogIntervalMillis
        discoverySettings.prefix = config.membersPrefix
        discovery = EtcdDiscovery(client: client, loop: loop, settings: discoverySettings, logger: logger)
        var probeSettings = EtcdReconnectProbeSettings()
        probeSettings.key = Array((config.membersPrefix + config.name).utf8)
        probe = EtcdReconnectProbe(client: client, loop: loop, settings: probeSettings)
    }

    /// Registers this node (with its API address), starts following the members, and calls `ready(true)`
    /// once every awaited name is known, or `ready(false)` after `--peer-wait`.
    func start(apiAddress: String, ready: @escaping (Bool) -> Void) {
        guard let me = cluster.members[config.name], let peer = me.peer else { return }
        var settings = EtcdRegistrarSettings()
        settings.leaseTTLSeconds = config.leaseTTLSeconds
        settings.failureLogIntervalMillis = config.failureLogIntervalMillis
        let entries = EtcdRegistrar.entries(name: config.name, peer: peer, api: apiAddress,
                                            membersPrefix: config.membersPrefix)
        let registrar = EtcdRegistrar(entries: entries,
                                      client: client, loop: loop, settings: settings, logger: logger)
        registrar.onRegistered = { [unowned self] in
            // springcache's log lines, which its users' scripts wait for.
            self.logger.info("register server is Done (lease \(self.registrar?.leaseID ?? 0))")
            // etcd answers (again): follow it now rather than after discovery's backoff.
            self.discovery.retryNow()
        }
        registrar.onFailure = { [unowned self] in self.probe.start() }
        self.registrar = registrar
        registrar.start()

        // While the registrar or discovery waits out a backoff, the probe asks etcd every 250 ms; its first
        // answer retries both at once, so a member leaving right after etcd's return is seen within about
        // the probe's interval rather than after up to 2 s of backoff.
        probe.onAnswer = { [unowned self] in
            self.logger.info("etcd answers again (\(self.client.currentEndpoint)); registering and re-reading members")
            self.registrar?.checkNow()
            self.discovery.retryNow()
        }
        discovery.onFailure = { [unowned self] in self.probe.start() }

        discovery.onSnapshot = { [unowned self] members in
            // A fresh snapshot follows a broken watch: etcd may have come back empty between two keepalives,
            // so ask about the lease now rather than up to TTL/3 later.
            self.report(self.discovered.replaceAll(with: members))
            self.apply()
        }
        discovery.onPut = { [unowned self] m in
            guard m.name != self.config.name else { return }
            self.report(self.discovered.put(m))
            self.apply()
        }
        discovery.onDelete = { [unowned self] name in
            let change = self.discovered.delete(name)
            guard !change.left.isEmpty else { return }
            self.report(change)
            self.apply()
        }
        discovery.start()

        if !awaitedNames.isEmpty {
            logger.info("wait other server to register: \(awaitedNames.joined(separator: ","))")
        }
        let waiter = PeerWaiter(
            awaited: awaitedNames, limitMillis: config.peerWaitMillis, scheduler: loop.scheduler,
            known: { [unowned self] name in self.cluster.members[name]?.peer != nil },
            lookUp: { [unowned self] name, done in self.lookUpSpringcacheAddress(of: name, done: done) },
            finish: { [unowned self] missing in
                if missing.isEmpty {
                    if !self.awaitedNames.isEmpty { self.logger.info("other servers are registered") }
                } else {
                    self.logger.critical("""
                        peers \(missing.joined(separator: ",")) did not register in etcd within \
                        \(ValueParsing.formatDuration(self.config.peerWaitMillis)) (--peer-wait); giving up
                        """)
                }
                ready(missing.isEmpty)
            })
        self.waiter = waiter
        waiter.start()
    }

    /// The cluster's members: this node, the static entries, what etcd says, and springcache nodes found
    /// under their own keys.
    private func apply() {
        cluster.setMembers(discovered.members(including: cluster.members[config.name]))
        waiter?.membersChanged()
    }

    /// Joins and leaves, logged once each.
    private func report(_ change: DiscoveredMembers.Change) {
        for m in change.joined { logger.info("member \(m.name) joined (peer \(m.peer?.description ?? "?"))") }
        for name in change.left { logger.info("member \(name) left (its etcd keys are gone)") }
    }

    /// A springcache node registers only its own key NAME → HOST:PORT, which the watch on our prefix never
    /// shows: the `--peer` wait looks that up for each missing name.
    private func lookUpSpringcacheAddress(of name: String, done: @escaping () -> Void) {
        EtcdDiscovery.lookupAddress(of: name, client: client) { [weak self] result in
            done()
            guard let self else { return }
            if case .success(let address?) = result, self.discovered.foundSpringcacheAddress(of: name, address) {
                self.apply()
            }
        }
    }

    /// springcache's `/setpeer` for a name that is not a member here: looks it up in etcd (our record, then
    /// springcache's own key) and adds it. Completes with whether it was found.
    func resolve(_ name: String, completion: @escaping (Bool) -> Void) {
        discovered.nameBySetpeer(name)
        client.get(key: Array((config.membersPrefix + name).utf8)) { [weak self] result in
            guard let self else { return completion(false) }
            if case .success(let reply) = result, let kv = reply.kvs.first,
               case .success(let member) = EtcdDiscovery.member(key: kv.key, value: kv.value,
                                                                prefix: Array(self.config.membersPrefix.utf8)) {
                _ = self.discovered.put(member)
                self.apply()
                return completion(true)
            }
            EtcdDiscovery.lookupAddress(of: name, client: self.client) { result in
                guard case .success(let address?) = result else { return completion(false) }
                _ = self.discovered.foundSpringcacheAddress(of: name, address)
                self.apply()
                completion(true)
            }
        }
    }

    /// Revokes the lease (so peers drop this node at once) and stops following etcd.
    func stop(completion: @escaping () -> Void) {
        waiter?.cancel()
        waiter = nil
        discovery.stop()
        probe.close()
        guard let registrar else {
            client.close()
            completion()
            return
        }
        registrar.stop { [self] in
            client.close()
            completion()
        }
    }

    /// The state and the counters of the client, registrar, discovery and probe (Node/StatsReport renders them).
    var stats: EtcdMembershipStats {
        EtcdMembershipStats(registered: registrar?.isRegistered == true, watching: discovery.isWatching,
                            client: client.stats, registrar: registrar?.stats ?? EtcdRegistrarStats(),
                            discovery: discovery.stats, probe: probe.stats)
    }
}

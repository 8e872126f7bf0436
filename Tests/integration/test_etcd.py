"""Discovery through a real etcd (Debian's etcd 3.4): nodes given only --etcd find each other, register
springcache's keys and ours on one lease, leave at once on SIGTERM and after their lease on kill -9, survive
etcd freezing, restarting and being replaced by an empty one, keep springcache's --peer wait contract, and
work across hosts (network namespaces).

Measured times are printed as `TIMING ...` lines (run with -s or -rP to see them).
"""
import json
import os
import threading
import time

import pytest

from etcd_harness import (Etcd, Netns, NsNode, check_node_keys, in_netns, keys_of, netns_supported, unb64,
                          view)
from harness import DEADLINE, Origin, ring_owner, wait_until

NAMES = ["a", "b", "c"]
TTL = 2  # seconds: --lease-ttl of every node here
# Deadlines (harness.DEADLINE) are for correctness: how long things really take is printed as TIMING lines;
# the mechanisms that make them fast (revoke before exit, the reconnect probe) are asserted directly.
FLAGS = ("--lease-ttl", "%ds" % TTL, "--hot-copy-one-in", "0")


def timing(what, seconds):
    print("TIMING %s: %.3f s" % (what, seconds))


def loads(c, names=None):
    from harness import node_json
    return {n: node_json(c[n], "/api/stats")["loads"] for n in names or c.running()}


def read_ok(node, key, value):
    status, _, body, _ = node.get(key, timeout=5)
    assert (status, body) == (200, b"value=" + value + b"\n"), "GET %s via %s: %d %r" % (key, node.base, status,
                                                                                        body[:200])


def check_routing(c, origin, prefix, count=30):
    """Reads count fresh keys through every node: right values, one origin load per key cluster-wide, and
    each node's `loads` moves by exactly the keys the name ring gives it."""
    names = sorted(c.running())
    keys = ["%s-%d" % (prefix, i) for i in range(count)]
    for k in keys:
        origin.values[k] = ("v-" + k).encode()
    before = loads(c, names)
    for k in keys:
        for n in names:
            read_ok(c[n], k, origin.values[k])
    assert {k: origin.count(k) for k in keys} == {k: 1 for k in keys}, "each key must be loaded once cluster-wide"
    after = loads(c, names)
    want = {n: sum(1 for k in keys if ring_owner(names, k) == n) for n in names}
    assert {n: after[n] - before[n] for n in names} == want, "loads per node vs the name ring's owners"


@pytest.fixture
def cluster3(etcd, start_etcd_cluster, origin):
    """a, b, c with only --etcd (and TTL 2 s); waits until all see all up."""
    c = start_etcd_cluster(NAMES, "--origin", origin.url, *FLAGS)
    t0 = time.monotonic()
    try:
        c.wait_whole(DEADLINE, members=NAMES, what="all three nodes seeing a, b, c up")
    except AssertionError as e:
        raise AssertionError("%s\nviews: %r\netcd: %r\n%s" % (e, {n: safe_view(c[n]) for n in NAMES},
                                                             safe_kvs(etcd), c.logs()))
    timing("3 nodes see each other after the last one serves", time.monotonic() - t0)
    wait_until(c.registered, DEADLINE, what="every node's keys registered")
    yield c
    dead = {n: c[n].proc.returncode for n in c.nodes if not c[n].alive() and c[n].proc.returncode not in (0,)}
    assert not dead, "nodes died (exit codes %r)\n%s" % (dead, c.logs())


def explain(e, c, etcd, on=NAMES):
    """e with what etcd holds, what each node in `on` shows, and the nodes' logs."""
    return AssertionError("%s\netcd: %r\nviews: %r\n%s" % (e, safe_kvs(etcd), {n: safe_view(c[n]) for n in on},
                                                         c.logs()))


def safe_view(node):
    try:
        return view(node)
    except Exception as e:  # noqa: BLE001 -- diagnostics only
        return repr(e)


def safe_kvs(etcd):
    try:
        return etcd.kvs()
    except Exception as e:  # noqa: BLE001
        return repr(e)


# --- registration, discovery, routing ---------------------------------------------------------------


def test_three_nodes_find_each_other_and_register_their_keys_on_one_lease_each(cluster3, etcd, origin):
    c = cluster3
    for n in NAMES:
        doc = json.loads(c[n].request("GET", "/api/peers")[2])
        assert doc["self"] == n
        members = {m["name"]: m for m in doc["members"]}
        assert sorted(members) == NAMES, doc
        for m in doc["members"]:
            assert m["state"] == "up" and m["self"] is (m["name"] == n), doc
            assert m["peer"] == c.peer(m["name"]) and m["api"] == c.api(m["name"]), doc
            assert abs(m["share"] - 1 / 3) < 0.05, doc

    kvs = etcd.kvs()
    want = sorted(k for n in NAMES for k in ("springcache/members/" + n, n, "%s/%s" % (n, c.peer(n))))
    assert sorted(kvs) == want, "etcd holds %r" % kvs
    leases = {n: check_node_keys(kvs, n, c.peer(n), c.api(n)) for n in NAMES}
    assert len(set(leases.values())) == 3, "each node has a lease of its own: %r" % leases

    # The same through etcdctl: every key has a lease; the leases have the TTL we asked for.
    doc = json.loads(etcd.ctl("get", "--prefix", "", "-w", "json"))
    by_ctl = {unb64(kv["key"]): int(kv.get("lease", 0)) for kv in doc["kvs"]}
    assert by_ctl == {k: kvs[k][1] for k in kvs}, by_ctl
    listed = etcd.ctl("lease", "list")
    for n, lease in leases.items():
        assert "%x" % lease in listed, "lease %x of %s not in `etcdctl lease list`: %s" % (lease, n, listed)
        ttl = json.loads(etcd.ctl("lease", "timetolive", "%x" % lease, "-w", "json"))
        assert ttl["granted-ttl"] == TTL and 0 < ttl["ttl"] <= TTL, ttl
        assert "register server is Done (lease %d)" % lease in c[n].log_text(), c[n].log_text()[-2000:]

    check_routing(c, origin, "etcd-route")


# --- leaving: SIGTERM, kill -9, restart ---------------------------------------------------------------


def test_sigterm_leaves_at_once_kill9_after_the_lease_and_restarts_rejoin(cluster3, etcd):
    c = cluster3

    # SIGTERM: the lease is revoked before the process exits (asserted below: etcd no longer holds c's keys when
    # it has exited), so the others drop c as soon as their watch reports it.
    t0 = time.monotonic()
    rc = c["c"].stop()
    t_exit = time.monotonic()
    assert rc == 0, "SIGTERM exit code %r\n%s" % (rc, c["c"].log_text()[-2000:])
    kvs = etcd.kvs()
    assert keys_of(kvs, "c") == [], "c exited but its keys are still in etcd: %r\n%s" % (
        keys_of(kvs, "c"), c["c"].log_text()[-2000:])
    wait_until(lambda: c.whole(on=["a", "b"], members=["a", "b"]), DEADLINE, what="a and b dropping c after SIGTERM")
    timing("drop after SIGTERM (from the signal; exit took %.3f s)" % (t_exit - t0), time.monotonic() - t0)
    assert "revoked" in c["c"].log_text(), c["c"].log_text()[-2000:]

    c.start("c")
    t0 = time.monotonic()
    c.wait_whole(DEADLINE, members=NAMES, what="c back on every node after restart")
    timing("rejoin after restart (SIGTERM case)", time.monotonic() - t0)
    wait_until(c.registered, DEADLINE, what="c registered again")

    # kill -9: nothing is revoked; the keys stay until the lease expires; then the others drop b.
    t0 = time.monotonic()
    c.kill9("b")
    assert keys_of(etcd.kvs(), "b"), "b's keys vanished right after kill -9 (nothing should revoke them)"
    try:
        wait_until(lambda: c.whole(on=["a", "c"], members=["a", "c"]), DEADLINE,
                   what="a and c dropping b after its lease expired (kill -9)")
    except AssertionError as e:
        raise AssertionError("%s\netcd: %r\n%s" % (e, safe_kvs(etcd), c.logs()))
    timing("drop after kill -9 (TTL %d s)" % TTL, time.monotonic() - t0)
    assert keys_of(etcd.kvs(), "b") == []

    c.start("b")
    t0 = time.monotonic()
    c.wait_whole(DEADLINE, members=NAMES, what="b back on every node after restart")
    timing("rejoin after restart (kill -9 case)", time.monotonic() - t0)
    wait_until(c.registered, DEADLINE, what="b registered again")


# --- etcd frozen, restarted, replaced ---------------------------------------------------------------


class Readers:
    """One thread per node reading keys through it in a loop, checking every answer."""

    def __init__(self, c, keys, values):
        self.failures = []
        self.ok = {}
        self.stop_flag = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(c[n], n, keys, values), daemon=True)
                        for n in c.running()]
        for t in self.threads:
            t.start()

    def run(self, node, name, keys, values):
        i = 0
        self.ok[name] = 0
        while not self.stop_flag.is_set():
            k = keys[i % len(keys)]
            i += 1
            t = time.monotonic()
            try:
                status, _, body, _ = node.get(k, timeout=3)
                if (status, body) != (200, b"value=" + values[k] + b"\n"):
                    self.failures.append((name, k, t, status, body[:200]))
                else:
                    self.ok[name] += 1
            except Exception as e:  # noqa: BLE001 -- every failure is reported
                self.failures.append((name, k, t, "exception", repr(e)))
            time.sleep(0.005)

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(10)


def test_frozen_etcd_costs_no_request_and_nodes_stay_registered(cluster3, etcd, origin):
    c = cluster3
    keys = ["frozen-%d" % i for i in range(40)]
    for k in keys:
        origin.values[k] = ("fv-" + k).encode()
    readers = Readers(c, keys, origin.values)
    try:
        time.sleep(0.5)
        etcd.freeze()
        t_freeze = time.monotonic()
        time.sleep(10)
        during = {n: view(c[n]) for n in NAMES}
        etcd.thaw()
        t_thaw = time.monotonic()
        try:
            wait_until(lambda: c.registered() and c.whole(members=NAMES), DEADLINE,
                       what="all nodes registered and seeing each other after SIGCONT")
        except AssertionError as e:
            raise explain(e, c, etcd)
        timing("registered and whole after SIGCONT (etcd frozen %.1f s)" % (t_thaw - t_freeze),
               time.monotonic() - t_thaw)
        time.sleep(1.0)  # keep reading while the leases that expired during the freeze are replaced
    finally:
        readers.stop()
    want = {m: "up" for m in NAMES}
    assert all(v == want for v in during.values()), "membership changed while etcd was frozen: %r" % during
    assert not readers.failures, "%d failed reads (first 10, t relative to freeze): %r" % (
        len(readers.failures), [(n, k, round(t - t_freeze, 3), s, b) for (n, k, t, s, b) in readers.failures[:10]])
    assert all(v > 100 for v in readers.ok.values()), "too few reads: %r" % readers.ok
    assert c.registered() and c.whole(members=NAMES)


@pytest.mark.parametrize("fresh", [False, True], ids=["same-data-dir", "fresh-empty-data-dir"])
def test_etcd_restart_every_node_registers_again_and_follows_it(cluster3, etcd, origin, fresh):
    c = cluster3
    keys = ["restart-%d" % i for i in range(12)]
    for k in keys:
        origin.values[k] = ("rv-" + k).encode()
    etcd.stop()
    # etcd down longer than the lease TTL and the 2 s retry cap: the nodes keep serving their last membership.
    t_down = time.monotonic()
    for k in keys:
        for n in NAMES:
            read_ok(c[n], k, origin.values[k])
    time.sleep(max(0.0, t_down + TTL + 1.5 - time.monotonic()))
    assert c.whole(members=NAMES), "membership changed while etcd was down: %r" % {n: view(c[n]) for n in NAMES}
    assert {k: origin.count(k) for k in keys} == {k: 1 for k in keys}
    probes_before = {n: c[n].log_text().count("etcd answers again (") for n in NAMES}

    etcd.start(fresh=fresh, wait=False)
    t_ans = etcd.wait_ready()
    try:
        wait_until(lambda: c.registered() and c.whole(members=NAMES), DEADLINE, interval=0.02,
                   what="every node registered again after etcd answers")
    except AssertionError as e:
        raise explain(e, c, etcd)
    timing("re-registration after etcd restart (%s)" % ("fresh empty data dir" if fresh else "same data dir"),
           time.monotonic() - t_ans)
    kvs = etcd.kvs()
    assert len(kvs) == 9, "etcd holds %r" % sorted(kvs)

    # b leaves right away: with the same data dir etcd holds every key and lease before the nodes have noticed it
    # is back, so the others may still be between retries. They follow etcd's changes again (their watch is live,
    # also on a fresh etcd whose revisions restarted from 1) and drop b.
    assert c["b"].stop() == 0
    try:
        wait_until(lambda: c.whole(on=["a", "c"], members=["a", "c"]), DEADLINE,
                   what="a and c dropping b (SIGTERM right after etcd answered)")
    except AssertionError as e:
        raise explain(e, c, etcd, on=("a", "c"))
    timing("drop of a member SIGTERMed right after etcd answered (%s), from etcd answering" %
           ("fresh" if fresh else "same data dir"), time.monotonic() - t_ans)
    # What makes that prompt: each node noticed etcd's return through its reconnect probe (every 250 ms while
    # etcd is unreachable), which re-reads the members and restarts the watch at once, rather than at the end of
    # its registrar's and discovery's backoff (up to 2 s).
    wait_until(lambda: all(c[n].log_text().count("etcd answers again (") > probes_before[n] for n in ("a", "c")),
               DEADLINE, what="the reconnect probe of a and c reporting etcd back")
    c.start("b")
    c.wait_whole(DEADLINE, members=NAMES, what="b back on every node after the etcd restart")
    t0 = time.monotonic()
    assert c["b"].stop() == 0
    try:
        wait_until(lambda: c.whole(on=["a", "c"], members=["a", "c"]), DEADLINE,
                   what="a and c dropping b after its SIGTERM, later after the etcd restart")
    except AssertionError as e:
        raise explain(e, c, etcd, on=("a", "c"))
    timing("drop of a member SIGTERMed later after the etcd restart (%s)" % ("fresh" if fresh else "same data dir"),
           time.monotonic() - t0)
    c.start("b")
    c.wait_whole(DEADLINE, members=NAMES, what="b back on every node (second time) after the etcd restart")
    check_routing(c, origin, "after-restart-%s" % fresh, count=12)


def test_several_etcd_endpoints_fail_over_past_a_dead_one(etcd, start_etcd_cluster):
    from harness import free_peer_port
    dead = "127.0.0.1:%d" % free_peer_port()  # nothing listens there
    c = start_etcd_cluster(["a", "b"], *FLAGS, start=False)
    c.start("a", etcd_arg="%s,%s" % (dead, etcd.endpoint))
    c.start("b", etcd_arg="%s,%s" % (etcd.endpoint, dead))
    t0 = time.monotonic()
    c.wait_whole(DEADLINE, members=["a", "b"], what="a (dead endpoint first) and b seeing each other")
    timing("2 nodes see each other with a dead first endpoint", time.monotonic() - t0)
    wait_until(lambda: c.registered(["a", "b"]), DEADLINE, what="both registered")
    # Both keep their leases alive through the live endpoint: still there after 2 TTLs.
    time.sleep(2 * TTL)
    assert c.registered(["a", "b"]) and c.whole(members=["a", "b"]), (safe_kvs(etcd), c.logs())


# --- springcache's --peer wait --------------------------------------------------------------------


def _wait_log(node, text, timeout=DEADLINE):
    wait_until(lambda: text in node.log_text(), timeout, what="log line %r" % text)


def test_peer_names_wait_answering_503_then_serve_once_s2_registers(etcd, start_etcd_cluster):
    c = start_etcd_cluster(["s1", "s2"], "--peer", "s1,s2", "--peer-wait", "30s", *FLAGS, start=False)
    s1 = c.start("s1")
    _wait_log(s1, "wait other server to register: s2")
    wait_until(lambda: c.registered(["s1"]), DEADLINE, what="s1 registering itself while it waits")
    time.sleep(1.0)
    status, _, body, _ = s1.get("Tom")
    assert status == 503 and b"wait" in body.lower() and b"s2" in body, (status, body)
    assert s1.alive() and "other servers are registered" not in s1.log_text()

    s2 = c.start("s2")
    t0 = time.monotonic()
    wait_until(lambda: s1.get("Tom")[0] == 200, DEADLINE, what="s1 serving once s2 registered")
    timing("s1 serving after s2 started", time.monotonic() - t0)
    read_ok(s1, "Tom", b"630")
    _wait_log(s1, "other servers are registered")
    wait_until(lambda: s2.get("Tom")[0] == 200, DEADLINE, what="s2 serving (s1 was already registered)")
    read_ok(s2, "Jack", b"589")
    c.wait_whole(DEADLINE, members=["s1", "s2"])


def test_peer_wait_gives_up_with_a_message_naming_the_missing_peer(etcd, start_etcd_cluster):
    c = start_etcd_cluster(["s1"], "--peer", "s1,s2", "--peer-wait", "2s", *FLAGS, start=False)
    t0 = time.monotonic()
    s1 = c.start("s1")
    status, _, body, _ = s1.get("Tom")
    assert status == 503, (status, body)
    try:
        rc = s1.proc.wait(DEADLINE)
    except Exception:  # noqa: BLE001
        raise AssertionError("s1 still running %d s after start with --peer-wait 2s\n%s" % (DEADLINE, s1.log_text()))
    elapsed = time.monotonic() - t0
    timing("exit after --peer-wait 2s", elapsed)
    log = s1.log_text()
    assert rc != 0, "exit code %r\n%s" % (rc, log)
    # Not before --peer-wait; the upper bound only tells "gave up after --peer-wait" from springcache's 30 s.
    assert 2.0 <= elapsed <= 2.0 + DEADLINE / 2, "exited after %.2f s\n%s" % (elapsed, log)
    lines = [l for l in log.split("\n") if "critical" in l.lower() and "s2" in l and "--peer-wait" in l]
    assert lines, "no critical line naming s2 and --peer-wait:\n%s" % log
    assert keys_of(etcd.kvs(), "s1") == [], "s1 gave up but left its keys: %r" % etcd.kvs()


def test_springcache_nodes_own_key_satisfies_the_wait(etcd, start_etcd_cluster, pb):
    from harness import free_peer_port
    from test_grpc_interop import PythonPeer
    port = free_peer_port()
    py = PythonPeer(pb, port)
    try:
        c = start_etcd_cluster(["s1"], "--peer", "s1,s2", "--peer-wait", "30s", *FLAGS, start=False)
        s1 = c.start("s1")
        _wait_log(s1, "wait other server to register: s2")
        assert s1.get("Tom")[0] == 503
        # What a springcache node registers: only NAME -> HOST:PORT (and NAME/HOST:PORT), no member record.
        etcd.ctl("put", "s2", "127.0.0.1:%d" % port)
        t0 = time.monotonic()
        wait_until(lambda: s1.get("Tom")[0] == 200, DEADLINE, what="s1 serving once springcache's key s2 exists")
        timing("s1 serving after springcache's key s2 was put", time.monotonic() - t0)
        _wait_log(s1, "other servers are registered")
        members = {m["name"]: m for m in json.loads(s1.request("GET", "/api/peers")[2])["members"]}
        assert sorted(members) == ["s1", "s2"] and members["s2"]["peer"] == "127.0.0.1:%d" % port, members
        # ... and s1 calls it for the keys the ring gives s2.
        k = next("sc-%d" % i for i in range(1000) if ring_owner(["s1", "s2"], "sc-%d" % i) == "s2")
        read_ok(s1, k, ("python-" + k).encode())
        assert k in py.keys("Get")
    finally:
        py.stop()


def test_setpeer_resolves_a_name_through_etcd(etcd, start_etcd_cluster, pb):
    # springcache's /setpeer for a name this node does not know: it is looked up in etcd (here springcache's
    # own key, which discovery does not follow) and added to the ring.
    from harness import free_peer_port
    from test_grpc_interop import PythonPeer
    port = free_peer_port()
    py = PythonPeer(pb, port)
    try:
        c = start_etcd_cluster(["a"], *FLAGS)
        a = c["a"]
        assert a.form("/setpeer", {"peer": "sp"})[0] == 404, "sp is not in etcd yet"
        etcd.ctl("put", "sp", "127.0.0.1:%d" % port)
        status, _, body, _ = a.form("/setpeer", {"peer": "sp"})
        assert (status, body) == (200, b"set peer sp successful\n")
        members = {m["name"]: m for m in json.loads(a.request("GET", "/api/peers")[2])["members"]}
        assert members["sp"]["peer"] == "127.0.0.1:%d" % port and members["sp"]["state"] == "up", members
        k = next("sp-%d" % i for i in range(1000) if ring_owner(["a", "sp"], "sp-%d" % i) == "sp")
        read_ok(a, k, ("python-" + k).encode())
        assert k in py.keys("Get")
    finally:
        py.stop()


# --- several hosts: network namespaces ------------------------------------------------------------


def test_several_hosts_in_network_namespaces():
    reason = netns_supported()
    if reason:
        pytest.skip(reason)
    subnet = "10.251.%d" % (20 + os.getpid() % 200)
    net = Netns(3, subnet)
    etcd = origin = None
    nodes = []
    try:
        etcd = Etcd(host=net.bridge_addr, client_port=2379, peer_port=2380, netns=net.bridge_ns)
        with in_netns(net.bridge_ns):
            origin = Origin(host=net.bridge_addr)
        names = ["h0", "h1", "h2"]
        # springcache's setup: the same ports on every host, IP_ADDRESS says which host.
        for i, n in enumerate(names):
            nodes.append(NsNode(net.host_ns[i], net.addr(i), 9999, "--name", n, "--port", 8888,
                                "--etcd", etcd.endpoint, "--origin", origin.url, *FLAGS))
        peer = {n: "%s:8888" % net.addr(i) for i, n in enumerate(names)}

        def logs():
            return "\n".join("--- %s\n%s" % (n, nodes[i].log_text()[-2500:]) for i, n in enumerate(names))

        def whole(on, members):
            want = {m: "up" for m in members}
            return all(nodes[i].view() == want for i in on)

        try:
            wait_until(lambda: whole(range(3), names), DEADLINE, what="h0..h2 seeing each other across namespaces")
        except AssertionError as e:
            raise AssertionError("%s\netcd: %r\n%s" % (e, safe_kvs(etcd), logs()))
        def keys_written():
            # A node's member key (what the others watch) lands before its two springcache keys: wait for all.
            kvs = etcd.kvs()
            return all(k in kvs for n in names for k in (n, "%s/%s" % (n, peer[n]), "springcache/members/" + n))

        wait_until(keys_written, DEADLINE, what="every host's three keys in etcd")
        kvs = etcd.kvs()
        for i, n in enumerate(names):
            check_node_keys(kvs, n, peer[n], "%s:9999" % net.addr(i))
            doc = nodes[i].json("/api/peers")
            assert {m["name"]: m["peer"] for m in doc["members"]} == peer, doc

        def stats_loads():
            return {n: nodes[i].json("/api/stats")["loads"] for i, n in enumerate(names)}

        def read_all(prefix, via):
            keys = ["%s-%d" % (prefix, i) for i in range(24)]
            for k in keys:
                origin.values[k] = ("nv-" + k).encode()
            for k in keys:
                for i in via:
                    status, body = nodes[i].request("GET", "/api/get?key=" + k)
                    assert (status, body) == (200, b"value=" + origin.values[k] + b"\n"), (names[i], k, status, body)
            assert {k: origin.count(k) for k in keys} == {k: 1 for k in keys}
            return keys

        before = stats_loads()
        keys = read_all("ns", range(3))
        after = stats_loads()
        want = {n: sum(1 for k in keys if ring_owner(names, k) == n) for n in names}
        assert {n: after[n] - before[n] for n in names} == want, "loads per host vs the name ring"

        # Cut h2's link: its lease expires, h0 and h1 drop it; reads through them still answer right.
        net.link(2, False)
        t0 = time.monotonic()
        try:
            wait_until(lambda: whole([0, 1], ["h0", "h1"]), DEADLINE, what="h0, h1 dropping h2 after its lease")
        except AssertionError as e:
            raise AssertionError("%s\netcd: %r\n%s" % (e, safe_kvs(etcd), logs()))
        timing("namespaces: drop after link down (TTL %d s)" % TTL, time.monotonic() - t0)
        assert keys_of(etcd.kvs(), "h2") == [], etcd.kvs()
        read_all("ns-cut", [0, 1])

        net.link(2, True)
        t0 = time.monotonic()
        try:
            wait_until(lambda: whole(range(3), names), DEADLINE, what="h2 back on every host after link up")
        except AssertionError as e:
            raise AssertionError("%s\netcd: %r\n%s" % (e, safe_kvs(etcd), logs()))
        timing("namespaces: back after link up", time.monotonic() - t0)
        wait_until(lambda: all(k in etcd.kvs() for k in ("h2", "h2/" + peer["h2"])), DEADLINE,
                   what="h2's springcache keys back in etcd")
        check_node_keys(etcd.kvs(), "h2", peer["h2"], "%s:9999" % net.addr(2))
        read_all("ns-back", range(3))
        assert all(n.alive() for n in nodes), logs()
    finally:
        for n in nodes:
            n.stop()
            n.cleanup()
        if origin is not None:
            origin.stop()
        if etcd is not None:
            etcd.cleanup()
        net.cleanup()

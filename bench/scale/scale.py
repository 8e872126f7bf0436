"""make scale: 32 springcache-uv nodes on 32 network-namespace hosts, a 3-member etcd cluster, load checked
against the origin's truth through every scenario, and the figures docs/scale.md reasons from.

Topology (all inside namespaces this run creates, named scscale-<pid>-...; nothing leaves them):
  bridge namespace  - the bridge SUBNET.1, the HTTP origin, the load generator and the membership poller
  host 0..2         - one etcd member each (client :2379, peer :2380), heartbeat 100 ms, election 1 s
  host 3..3+N-1     - one node each, springcache's setup: --name nNN --port 8888, IP_ADDRESS=its address,
                      --etcd with all three endpoints, --origin the bridge's origin, --ttl 1h (see "Why").

Load: SCALE_THREADS threads (in the bridge namespace, keep-alive connections) read SCALE_KEYS keys through random
nodes at about SCALE_RATE requests/s in all, every answer compared with the origin's truth. The key set is
read-only and the origin computes each value from its key (truth(key)), so "wrong" has one meaning: a 200
whose body is not exactly `value=<truth(key)>\\n` (another key's value, a truncated or mixed-up body). A
non-200 or a transport error is a failed request, not a wrong one. Why read-only: a cache serves what it
loaded until the TTL ends, so with values that change a stale answer is correct behaviour up to the TTL
(and sliding expiry makes that unbounded for a key read often); checking it would measure the TTL setting,
not the cluster. A key's value never changing makes every mismatch a bug.

Why --ttl 1h: with springcache's 30 s a key would also be reloaded when it expires, and origin loads would mix
expiry with ownership. With 1 h, every origin load in a scenario is caused by an owner change (or by a node
loading locally after dropping a peer), which is what "loads per key per owner change" measures.

A load balancer is modelled the way a deploy uses one: a node is taken out of the target list before it is
stopped on purpose (SIGTERM) and put back once it serves. A node killed with -9 is taken out right after the
kill; a flapping host stays in. Failures are counted apart for requests sent to a node the scenario itself
disturbs ("via disturbed") and for all the others ("via healthy nodes"), which are what the cluster owes.

Exit status: 1 if any answer was wrong or a node never converged, 2 if the environment cannot run it.
Environment: SPRINGCACHE_BIN, SCALE_NODES (32), SCALE_KEYS (1000), SCALE_RATE (200), SCALE_THREADS (8),
SCALE_LEASE_TTL (10s), SCALE_FLAP_SECONDS (60), SCALE_FLAP_DOWN (4), SCALE_FLAP_UP (4),
SCALE_NOQUORUM_SECONDS (30), SCALE_REST_SECONDS (15), SCALE_BUDGET (540 s for everything),
SCALE_MAX_REQUESTS (400000), SCALE_SEED (1), SCALE_ORIGIN_DELAY (0 s per origin answer),
SCALE_INJECT_WRONG=1 (node n00 loads wrong values: shows that the run fails loudly), SCALE_RESULTS
(bench/results), SCALE_KEEP=1 keeps the logs.
"""
import collections
import concurrent.futures
import datetime
import hashlib
import http.client
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "Tests", "integration"))

from harness import Origin, metric_sum, parse_prometheus, proc_status_kib, ring_owner  # noqa: E402
from etcd_harness import Etcd, Netns, NsNode, in_netns, netns_supported  # noqa: E402


def env_int(name, default):
    return int(os.environ.get(name, default))


NODES = env_int("SCALE_NODES", 32)
KEYS = env_int("SCALE_KEYS", 1000)
RATE = env_int("SCALE_RATE", 200)
THREADS = env_int("SCALE_THREADS", 8)
LEASE_TTL = env_int("SCALE_LEASE_TTL", 10)
FLAP_SECONDS = env_int("SCALE_FLAP_SECONDS", 60)
FLAP_DOWN = float(os.environ.get("SCALE_FLAP_DOWN", 4))
FLAP_UP = float(os.environ.get("SCALE_FLAP_UP", 4))
NOQUORUM_SECONDS = env_int("SCALE_NOQUORUM_SECONDS", 30)
REST_SECONDS = env_int("SCALE_REST_SECONDS", 15)
BUDGET = env_int("SCALE_BUDGET", 540)
MAX_REQUESTS = env_int("SCALE_MAX_REQUESTS", 400000)
SEED = env_int("SCALE_SEED", 1)
INJECT_WRONG = os.environ.get("SCALE_INJECT_WRONG") == "1"   # make one node load wrong values: must fail
ORIGIN_DELAY = float(os.environ.get("SCALE_ORIGIN_DELAY", 0))   # seconds the origin takes per answer
KILLED = 4
REQUEST_TIMEOUT = 3.0      # > the nodes' 2 s peer timeout: a node waiting on a dead owner still answers in time
POLL_TIMEOUT = 1.0         # one /api/peers read by the poller
CONVERGE_TIMEOUT = 60.0    # a node that does not agree within this never converged: a bug
FAILURE_GAP = 1.0          # failures closer than this fall in one window
PREFIX = "scscale"
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380

STARTED = time.monotonic()


class BudgetExceeded(Exception):
    pass


def check_budget(what):
    if time.monotonic() - STARTED > BUDGET:
        raise BudgetExceeded("the run exceeded its %d s budget during %s" % (BUDGET, what))


def log(msg):
    print("[%6.1f s] %s" % (time.monotonic() - STARTED, msg), flush=True)


def truth(key):
    """The origin's value for key: computed, so it never changes and is distinct for every key."""
    return ("v:%s:%s" % (key, hashlib.sha1(key.encode()).hexdigest()[:12])).encode()


# --- leftovers of a crashed earlier run -------------------------------------------------------------------


def pid_alive(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"scale.py" in f.read()
    except OSError:
        return False


def clean_leftovers():
    """Kills what runs in, and deletes, namespaces and temp dirs of earlier runs whose driver is gone.

    Only names this program makes (scscale-<pid>-...) are touched, and only when that pid is not a scale.py:
    another engineer's concurrent run of make scale keeps its namespaces."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
    stale = []
    for line in names:
        m = re.match(r"(%s-(\d+)-\S+)" % PREFIX, line)
        if m and not pid_alive(int(m.group(2))):
            stale.append(m.group(1))
    for name in stale:
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
        for p in pids:
            try:
                os.kill(int(p), signal.SIGKILL)
            except (OSError, ValueError):
                pass
    for name in stale:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    tmp = tempfile.gettempdir()
    for d in os.listdir(tmp):
        m = re.fullmatch(r"%s-(\d+)" % PREFIX, d)
        if m and not pid_alive(int(m.group(1))):
            shutil.rmtree(os.path.join(tmp, d), ignore_errors=True)
    if stale:
        log("removed %d namespaces left by an earlier run" % len(stale))


# --- the origin, in a process of its own ----------------------------------------------------------------


def _origin_main(ns, host, conn):
    with in_netns(ns):
        origin = Origin(host=host)
    origin.value_of = lambda k: truth(k) if k.startswith("k") else None
    origin.all_delay = ORIGIN_DELAY
    conn.send(origin.url)
    try:
        while conn.recv() == "counts":
            with origin.lock:
                conn.send(dict(origin.counts))
    except EOFError:
        pass
    origin.stop()


class OriginProcess:
    """harness.Origin serving truth(key) from the bridge namespace, in a child process.

    Why a process: in this one the load generator's and the poller's threads share the GIL with it, and on a
    busy machine origin answers then took seconds, which nodes see as owners missing their peer deadline."""

    def __init__(self, ns, host):
        self.conn, child = multiprocessing.Pipe()
        self.proc = multiprocessing.Process(target=_origin_main, args=(ns, host, child), daemon=True)
        self.proc.start()
        child.close()
        if not self.conn.poll(10):
            self.stop()
            raise RuntimeError("the origin process did not start within 10 s")
        self.url = self.conn.recv()

    def counts(self):
        self.conn.send("counts")
        return self.conn.recv()

    def stop(self):
        try:
            self.conn.send("stop")
        except OSError:
            pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


# --- etcd cluster -----------------------------------------------------------------------------------------


class EtcdCluster3:
    """Three etcd members m0..m2 on hosts 0..2, one cluster."""

    def __init__(self, net):
        self.net = net
        self.members = []
        initial = ",".join("m%d=http://%s:%d" % (i, net.addr(i), ETCD_PEER_PORT) for i in range(3))
        for i in range(3):
            # Timings closer to etcd's defaults (100 ms / 1 s) than the tests' 50/250: with 32 nodes and the load
            # on 2 cores, 250 ms elections would be lost to scheduling, not to the faults this run injects.
            extra = ["--name", "m%d" % i, "--initial-cluster", initial, "--initial-cluster-token", net.prefix,
                     "--heartbeat-interval", "100", "--election-timeout", "1000"]
            self.members.append(Etcd(host=net.addr(i), client_port=ETCD_CLIENT_PORT, peer_port=ETCD_PEER_PORT,
                                     netns=net.host_ns[i], extra_args=extra, wait=False))
        for m in self.members:
            m.wait_ready()

    @property
    def endpoints(self):
        return ",".join(m.endpoint for m in self.members)

    def running(self):
        return [m for m in self.members if m.proc is not None and m.proc.poll() is None]

    def leader(self):
        """The member that is leader now, asked of each running member (None if none knows one)."""
        for m in self.running():
            try:
                st = m.post("/v3/maintenance/status", {}, timeout=1.0)
            except (OSError, http.client.HTTPException, ValueError, AssertionError):
                continue
            if st.get("leader") and st.get("leader") == st["header"].get("member_id"):
                return m
        return None

    def answering(self):
        return any(m.answers() for m in self.running())

    def member_keys(self):
        for m in self.running():
            try:
                return sorted(k for k in m.kvs() if k.startswith("springcache/members/"))
            except (OSError, http.client.HTTPException, ValueError, AssertionError):
                continue
        return None

    def metrics(self):
        """{member index: samples} of every running member's /metrics."""
        out = {}
        for i, m in enumerate(self.members):
            if m.proc is None or m.proc.poll() is not None:
                continue
            with in_netns(m.netns):
                c = http.client.HTTPConnection(m.host, m.client_port, timeout=2)
                c.connect()
            try:
                c.request("GET", "/metrics")
                out[i] = parse_prometheus(c.getresponse().read().decode())[1]
            finally:
                c.close()
        return out

    def cleanup(self):
        for m in self.members:
            m.cleanup()


ETCD_METHODS = ("LeaseKeepAlive", "Watch", "Range", "Put", "LeaseGrant", "LeaseRevoke", "Txn", "Status")


def etcd_counters(samples_by_member):
    """The counters the report uses, summed over members (raft-level ones: the largest, i.e. the cluster's)."""
    c = collections.Counter()
    for samples in samples_by_member.values():
        for meth in ETCD_METHODS:
            c["grpc:" + meth] += metric_sum(samples, "grpc_server_started_total", grpc_method=meth)
        c["grpc:all"] += metric_sum(samples, "grpc_server_started_total")
        c["bytes_in"] += metric_sum(samples, "etcd_network_client_grpc_received_bytes_total")
        c["bytes_out"] += metric_sum(samples, "etcd_network_client_grpc_sent_bytes_total")
        c["watch_events"] += metric_sum(samples, "etcd_debugging_mvcc_events_total")
        c["puts"] = max(c["puts"], metric_sum(samples, "etcd_mvcc_put_total"))
        c["deletes"] = max(c["deletes"], metric_sum(samples, "etcd_mvcc_delete_total"))
        c["proposals"] = max(c["proposals"], metric_sum(samples, "etcd_server_proposals_committed_total"))
    return c


def etcd_rates(before, after, seconds):
    return {k: (after[k] - before[k]) / seconds for k in sorted(after)}


def etcd_delta(before, after, seconds, changes):
    """What a window of churn cost etcd: totals, per second, and per membership change."""
    return {"window_s": round(seconds, 2), "membership_changes": changes,
            "total": {k: after[k] - before[k] for k in sorted(after) if after[k] != before[k]},
            "per_change": {k: round((after[k] - before[k]) / float(changes), 1) for k in sorted(after)
                           if after[k] != before[k]},
            "per_s": {k: round((after[k] - before[k]) / seconds, 1) for k in sorted(after) if after[k] != before[k]}}


# --- nodes ------------------------------------------------------------------------------------------------


class Nodes:
    """N nodes nNN on hosts 3.., each a NsNode; restart keeps the old process object for its log."""

    def __init__(self, net, etcd, origin):
        self.net = net
        self.etcd = etcd
        self.origin = origin
        self.names = ["n%02d" % i for i in range(NODES)]
        self.host = {n: 3 + i for i, n in enumerate(self.names)}
        self.procs = {}
        self.retired = []

    def addr(self, name):
        return self.net.addr(self.host[name])

    def start(self, name):
        old = self.procs.get(name)
        if old is not None:
            self.retired.append(old)
        h = self.host[name]
        origin = self.origin.url
        if INJECT_WRONG and name == self.names[0]:
            # The checker's own check: this node loads key K as K-wrong, whose value is another key's truth.
            origin = origin.replace("{key}", "{key}-wrong")
        self.procs[name] = NsNode(self.net.host_ns[h], self.net.addr(h), 9999, "--name", name, "--port", 8888,
                                  "--etcd", self.etcd.endpoints, "--origin", origin, "--ttl", "1h",
                                  "--lease-ttl", "%ds" % LEASE_TTL)
        return self.procs[name]

    def running(self):
        return [n for n in self.names if n in self.procs and self.procs[n].alive()]

    def stop(self, name):
        return self.procs[name].stop(timeout=10)

    def kill9(self, name):
        self.procs[name].kill()

    def cleanup(self):
        for p in list(self.procs.values()) + self.retired:
            try:
                p.stop(timeout=3)
            except Exception:
                p.kill()
            p.cleanup()


# --- the load generator -----------------------------------------------------------------------------------


class Stats:
    """One scenario's tally of answers."""

    def __init__(self, name):
        self.name = name
        self.t0 = time.monotonic()
        self.ok = 0
        self.wrong = 0
        self.failed_disturbed = 0
        self.failed_healthy = 0
        self.retried = 0
        self.wrong_examples = []
        self.failures = []      # (t since t0, node, error, disturbed)
        self.latencies = []

    @property
    def total(self):
        return self.ok + self.wrong + self.failed_disturbed + self.failed_healthy


class Load:
    """THREADS threads reading random keys through random targets, each answer checked against truth()."""

    def __init__(self, net, nodes, keys):
        self.net = net
        self.nodes = nodes
        self.keys = keys
        self.targets = []          # names a client may be sent to (the load balancer's list)
        self.disturbed = set()     # names the running scenario disturbs on purpose
        self.lock = threading.Lock()
        self.stats = Stats("idle")
        self.paused = threading.Event()
        self.stopping = threading.Event()
        self.sent = 0
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(THREADS)]
        for t in self.threads:
            t.start()

    def scenario(self, name):
        """Starts a new tally; returns the finished one."""
        with self.lock:
            done, self.stats = self.stats, Stats(name)
        return done

    def set_targets(self, names):
        with self.lock:
            self.targets = list(names)

    def add_target(self, name):
        with self.lock:
            if name not in self.targets:
                self.targets.append(name)

    def drop_target(self, name):
        with self.lock:
            if name in self.targets:
                self.targets.remove(name)

    def run(self, index):
        rng = random.Random(SEED * 1000 + index)
        conns = {}
        interval = THREADS / float(RATE)
        next_at = time.monotonic()
        # The whole thread lives in the bridge namespace: every socket it makes is made there.
        with in_netns(self.net.bridge_ns):
            while not self.stopping.is_set():
                if self.paused.is_set():
                    time.sleep(0.05)
                    next_at = time.monotonic()
                    continue
                now = time.monotonic()
                if now < next_at:
                    time.sleep(next_at - now)
                next_at = max(next_at + interval, time.monotonic() - 1.0)
                with self.lock:
                    if not self.targets or self.sent >= MAX_REQUESTS:
                        target = None
                    else:
                        target = rng.choice(self.targets)
                        self.sent += 1
                if target is None:
                    time.sleep(0.05)
                    continue
                self.one(conns, target, rng.choice(self.keys))
            for c in conns.values():
                c.close()

    def one(self, conns, node, key):
        addr = self.nodes.addr(node)
        t = time.monotonic()
        status = body = error = None
        retried = False
        for attempt in (0, 1):
            reused = node in conns
            c = conns.get(node)
            if c is None:
                c = conns[node] = http.client.HTTPConnection(addr, 9999, timeout=REQUEST_TIMEOUT)
            try:
                c.request("GET", "/api/get?key=" + key)
                r = c.getresponse()
                status, body = r.status, r.read()
                error = None
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                c.close()
                del conns[node]
                error = "%s" % type(e).__name__
                # A keep-alive connection the server closed while idle (a restart): retried once on a new
                # connection, as HTTP clients do for idempotent requests (RFC 9112 section 9.3.1).
                if reused and attempt == 0:
                    retried = True
                    continue
                break
            except (OSError, http.client.HTTPException) as e:
                c.close()
                del conns[node]
                error = "%s" % (type(e).__name__ if not isinstance(e, socket.timeout) else "timeout")
                break
        elapsed = time.monotonic() - t
        want = b"value=" + truth(key) + b"\n"
        with self.lock:
            s = self.stats
            s.retried += retried
            if error is None and status == 200 and body == want:
                s.ok += 1
                if len(s.latencies) < 200000:
                    s.latencies.append(elapsed)
            elif error is None and status == 200:
                s.wrong += 1
                if len(s.wrong_examples) < 20:
                    s.wrong_examples.append((round(t - s.t0, 2), node, key, body[:120]))
            else:
                disturbed = node in self.disturbed
                if disturbed:
                    s.failed_disturbed += 1
                else:
                    s.failed_healthy += 1
                s.failures.append((t - s.t0, node, error or "HTTP %d %s" % (status, body[:60]), disturbed))

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(REQUEST_TIMEOUT * 2 + 1)


# --- membership -------------------------------------------------------------------------------------------


class Poller:
    """Reads /api/peers of nodes in parallel from the bridge namespace."""

    def __init__(self, net, nodes):
        self.net = net
        self.nodes = nodes
        self.pool = concurrent.futures.ThreadPoolExecutor(8)
        self.timeline = []   # (t, frozenset members most nodes show up) whenever it changes

    def _view(self, name):
        addr = self.nodes.addr(name)
        with in_netns(self.net.bridge_ns):
            c = http.client.HTTPConnection(addr, 9999, timeout=POLL_TIMEOUT)
            c.connect()
        try:
            c.request("GET", "/api/peers")
            r = c.getresponse()
            body = r.read()
            if r.status != 200:
                return None
            members = json.loads(body)["members"]
            # The member list (from etcd) and which of them this node's ring uses now (state up): a node dropped
            # after a transport failure is still a member, and a member only by its record in etcd.
            return (frozenset(m["name"] for m in members), frozenset(m["name"] for m in members if m["state"] == "up"))
        except (OSError, http.client.HTTPException, ValueError):
            return None
        finally:
            c.close()

    def views(self, names):
        def safe(n):
            try:
                return self._view(n)
            except OSError:
                return None
        return dict(zip(names, self.pool.map(safe, names)))

    def record(self, views):
        seen = collections.Counter(v[0] for v in views.values() if v is not None)
        if not seen:
            return
        majority = seen.most_common(1)[0][0]
        if not self.timeline or self.timeline[-1][1] != majority:
            self.timeline.append((time.monotonic(), majority))

    def agree(self, on, members):
        want = frozenset(members)
        views = self.views(on)
        self.record(views)
        return all(v == (want, want) for v in views.values())

    def members_agree(self, on, members):
        """Whether every node in on lists exactly members (from etcd), whatever their up/down state."""
        want = frozenset(members)
        views = self.views(on)
        self.record(views)
        return all(v is not None and v[0] == want for v in views.values())

    def converge(self, on, members, what, timeout=CONVERGE_TIMEOUT):
        """Seconds from now until every node in on shows exactly members, all up. Raises if it never happens."""
        t0 = time.monotonic()
        while True:
            if self.agree(on, members):
                return time.monotonic() - t0
            check_budget(what)
            if time.monotonic() - t0 > timeout:
                views = self.views(on)
                want = frozenset(members)
                bad = {n: {"members +/-": sorted(want ^ v[0]), "not up": sorted(want - v[1])} if v else "no answer"
                       for n, v in views.items() if v != (want, want)}
                raise AssertionError("NEVER CONVERGED (%s): within %.0f s these nodes still disagree (members "
                                     "missing or extra): %r%s" % (what, timeout, bad, self.diagnose(bad)))
            time.sleep(0.05)

    def diagnose(self, bad):
        """Peer-port sockets and peer counters of two disagreeing nodes, for the failure message."""
        out = []
        for name in list(bad)[:2]:
            ns = self.net.host_ns[self.nodes.host[name]]
            ss = subprocess.run(["ip", "netns", "exec", ns, "ss", "-tnoi", "( dport = :8888 or sport = :8888 )"],
                                capture_output=True, text=True, timeout=10).stdout
            out.append("--- %s sockets:\n%s" % (name, "\n".join(" ".join(l.split()) for l in ss.split("\n"))))
            link = subprocess.run(["ip", "-n", ns, "-s", "link", "show", "eth0"], capture_output=True, text=True,
                                  timeout=10).stdout
            out.append("--- %s eth0 counters:\n%s" % (name, link.strip()))
            try:
                status, body = self.nodes.procs[name].request("GET", "/metrics")
                out.append("--- %s peer metrics:\n%s" % (name, "\n".join(
                    l for l in body.decode().split("\n")
                    if l.startswith(("springcache_peer", "springcache_grpc")) and "_bucket" not in l)))
            except (OSError, http.client.HTTPException) as e:
                out.append("--- %s /metrics: %s" % (name, e))
        return "\n" + "\n".join(out)

    def observe(self, on, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.record(self.views(on))
            time.sleep(0.2)


# --- scenario bookkeeping ---------------------------------------------------------------------------------


def owner_changes(keys, sets):
    """{key: how many times its owner changed} along the member sets sets[0] -> sets[1] -> ..."""
    changes = collections.Counter()
    owners = {k: ring_owner(sorted(sets[0]), k) for k in keys} if sets else {}
    for s in sets[1:]:
        for k in keys:
            o = ring_owner(sorted(s), k)
            if o != owners[k]:
                changes[k] += 1
                owners[k] = o
    return changes


def failure_windows(failures):
    windows = []
    for t, node, err, disturbed in sorted(failures):
        if windows and t - windows[-1]["end"] <= FAILURE_GAP:
            w = windows[-1]
        else:
            w = {"start": t, "end": t, "count": 0, "nodes": collections.Counter(), "errors": collections.Counter(),
                 "healthy": 0}
            windows.append(w)
        w["end"] = t
        w["count"] += 1
        w["nodes"][node] += 1
        w["errors"][err.split(" b'")[0]] += 1
        w["healthy"] += 0 if disturbed else 1
    return windows


class Report:
    def __init__(self):
        self.scenarios = []
        self.rest = None
        self.env = {}

    def add(self, stats, origin_before, origin_after, keys, member_sets, converge, extra=None):
        loads = {k: origin_after.get(k, 0) - origin_before.get(k, 0) for k in keys}
        changes = owner_changes(keys, member_sets)
        moved = sum(changes.values())
        excess = sum(max(0, loads[k] - changes.get(k, 0)) for k in keys)
        lat = sorted(stats.latencies)
        transitions = [(len(a), len(b)) for a, b in zip(member_sets, member_sets[1:])]
        ideal_moved = sum(len(keys) * abs(len(b) - len(a)) / float(max(len(a), len(b))) for a, b in
                          zip(member_sets, member_sets[1:]))
        sc = {
            "name": stats.name, "seconds": round(time.monotonic() - stats.t0, 1), "nodes": NODES,
            "requests": stats.total, "ok": stats.ok, "wrong": stats.wrong,
            "failed_healthy": stats.failed_healthy, "failed_disturbed": stats.failed_disturbed,
            "retried_stale_connection": stats.retried, "wrong_examples": stats.wrong_examples,
            "p50_ms": round(lat[len(lat) // 2] * 1000, 2) if lat else None,
            "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 2) if lat else None,
            "max_ms": round(lat[-1] * 1000, 1) if lat else None,
            "failure_windows": [{"start_s": round(w["start"], 2), "end_s": round(w["end"], 2), "count": w["count"],
                                 "via_healthy": w["healthy"], "nodes": dict(w["nodes"].most_common(4)),
                                 "errors": dict(w["errors"].most_common(3))} for w in failure_windows(stats.failures)],
            "membership_transitions": len(transitions),
            "keys_owner_changes": moved, "keys_owner_changes_ideal": round(ideal_moved, 1),
            "origin_loads": sum(loads.values()), "origin_loads_excess": excess,
            "keys_loaded_max": max(loads.values()) if loads else 0,
            "converge": converge,
        }
        sc.update(extra or {})
        self.scenarios.append(sc)
        return sc


def fmt_converge(c):
    if isinstance(c, list):
        if not c:
            return "-"
        return "median %.2f s, max %.2f s (%d changes)" % (statistics.median(c), max(c), len(c))
    return "%.2f s" % c


def print_scenario(sc):
    log("== %s: %d nodes, %d requests, WRONG ANSWERS %d, failed %d via healthy nodes + %d via disturbed, "
        "p99 %s ms" % (sc["name"], sc["nodes"], sc["requests"], sc["wrong"], sc["failed_healthy"],
                       sc["failed_disturbed"], sc["p99_ms"]))
    for k, v in sc["converge"].items():
        log("   converge %s: %s" % (k, fmt_converge(v)))
    log("   owner changes %d (ideal %.1f), origin loads %d (excess over owner changes %d, max per key %d)"
        % (sc["keys_owner_changes"], sc["keys_owner_changes_ideal"], sc["origin_loads"], sc["origin_loads_excess"],
           sc["keys_loaded_max"]))
    for w in sc["failure_windows"][:8]:
        log("   failures %.1f-%.1f s: %d (%d via healthy) %r %r" % (w["start_s"], w["end_s"], w["count"],
                                                                 w["via_healthy"], w["nodes"], w["errors"]))
    for ex in sc["wrong_examples"][:5]:
        log("   WRONG: %r" % (ex,))


# --- the run ----------------------------------------------------------------------------------------------


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15 of proc(5))


def run(report):
    rng = random.Random(SEED)
    subnet = "10.%d.%d" % (200 + os.getpid() % 50, (os.getpid() // 50) % 250)
    net = etcd = origin = nodes = load = poller = None
    try:
        t = time.monotonic()
        net = Netns(3 + NODES, subnet, prefix="%s-%d-%d" % (PREFIX, os.getpid(), int(time.time()) % 100000))
        log("network: %d namespaces on bridge %s.0/24 in %.1f s" % (len(net.created), subnet, time.monotonic() - t))
        t = time.monotonic()
        etcd = EtcdCluster3(net)
        log("etcd: 3 members %s ready in %.1f s" % (etcd.endpoints, time.monotonic() - t))
        origin = OriginProcess(net.bridge_ns, net.bridge_addr)
        keys = ["k%05d" % i for i in range(KEYS)]
        nodes = Nodes(net, etcd, origin)
        poller = Poller(net, nodes)
        load = Load(net, nodes, keys)
        all_names = nodes.names

        def scenario_end(name, sets, converge, o_before, extra=None):
            stats = load.scenario("between")
            sc = report.add(stats, o_before, origin.counts(), keys, sets, converge, extra)
            assert stats.name == name
            print_scenario(sc)
            return sc

        # 1. Cold start: all N started one after another, load running through whoever serves already.
        o0 = origin.counts()
        load.scenario("cold start")
        t0 = time.monotonic()
        for n in all_names:
            nodes.start(n)
            load.add_target(n)
        serving = time.monotonic() - t0
        agreed = poller.converge(all_names, all_names, "cold start") + serving
        log("cold start: all %d serving after %.2f s, all agree on %d members after %.2f s"
            % (NODES, serving, NODES, agreed))
        time.sleep(3)
        scenario_end("cold start", [frozenset(), frozenset(all_names)],
                     {"all serving": serving, "all agree": agreed}, o0)

        # At rest: no load, no churn. etcd's own counters and each node's CPU and RSS over REST_SECONDS.
        load.paused.set()
        time.sleep(1)
        e0, c0, w0 = etcd_counters(etcd.metrics()), {n: cpu_ticks(nodes.procs[n].proc.pid) for n in all_names}, \
            time.monotonic()
        time.sleep(REST_SECONDS)
        e1, c1, w1 = etcd_counters(etcd.metrics()), {n: cpu_ticks(nodes.procs[n].proc.pid) for n in all_names}, \
            time.monotonic()
        hz = os.sysconf("SC_CLK_TCK")
        cpu = {n: (c1[n] - c0[n]) / float(hz) / (w1 - w0) * 100 for n in all_names}
        rss = {n: proc_status_kib(nodes.procs[n].proc.pid) for n in all_names}
        report.rest = {"seconds": round(w1 - w0, 1), "etcd": etcd_rates(e0, e1, w1 - w0),
                       "cpu_pct_mean": round(statistics.mean(cpu.values()), 3),
                       "cpu_pct_max": round(max(cpu.values()), 3),
                       "rss_kib_mean": round(statistics.mean(rss.values())), "rss_kib_max": max(rss.values()),
                       "cpu_pct": {n: round(v, 3) for n, v in cpu.items()}, "rss_kib": rss}
        log("at rest %.0f s: etcd %.1f req/s (%.1f keepalives/s), %.0f B/s in, %.0f B/s out; node CPU mean %.2f%% "
            "max %.2f%%, RSS mean %d KiB max %d KiB" % (
                w1 - w0, report.rest["etcd"]["grpc:all"], report.rest["etcd"]["grpc:LeaseKeepAlive"],
                report.rest["etcd"]["bytes_in"], report.rest["etcd"]["bytes_out"], report.rest["cpu_pct_mean"],
                report.rest["cpu_pct_max"], report.rest["rss_kib_mean"], report.rest["rss_kib_max"]))
        load.paused.clear()

        # 2. Rolling restart, one at a time, as a deploy does: drain, SIGTERM, start, wait until all agree.
        o0 = origin.counts()
        load.scenario("rolling restart")
        e0, w0 = etcd_counters(etcd.metrics()), time.monotonic()
        leave, join, sets = [], [], [frozenset(all_names)]
        for n in all_names:
            check_budget("rolling restart")
            load.drop_target(n)
            load.disturbed = {n}
            t = time.monotonic()
            rc = nodes.stop(n)
            if rc != 0:
                raise AssertionError("%s exited %r on SIGTERM" % (n, rc))
            others = [m for m in all_names if m != n]
            poller.converge(others, others, "%s leaving" % n)
            leave.append(time.monotonic() - t)   # from SIGTERM
            sets.append(frozenset(others))
            t = time.monotonic()
            nodes.start(n)
            load.add_target(n)
            poller.converge(all_names, all_names, "%s rejoining" % n)
            join.append(time.monotonic() - t)   # from the start command: includes the process's own start-up
            sets.append(frozenset(all_names))
            load.disturbed = set()
        e1, w1 = etcd_counters(etcd.metrics()), time.monotonic()
        scenario_end("rolling restart", sets, {"after SIGTERM": leave, "after start": join}, o0,
                     {"etcd_during": etcd_delta(e0, e1, w1 - w0, 2 * len(all_names))})

        # 3. kill -9 of KILLED nodes at once; their leases expire; then they come back.
        o0 = origin.counts()
        load.scenario("kill -9 x%d" % KILLED)
        victims = sorted(rng.sample(all_names, KILLED))
        load.disturbed = set(victims)
        e0, w0 = etcd_counters(etcd.metrics()), time.monotonic()
        t = time.monotonic()
        for n in victims:
            nodes.kill9(n)
            load.drop_target(n)
        rest = [m for m in all_names if m not in victims]
        poller.converge(rest, rest, "dropping killed %s" % victims)
        gone = time.monotonic() - t
        time.sleep(2)
        t = time.monotonic()
        for n in victims:
            nodes.start(n)
            load.add_target(n)
        poller.converge(all_names, all_names, "killed nodes returning")
        back_total = time.monotonic() - t
        time.sleep(2)
        load.disturbed = set()
        e1, w1 = etcd_counters(etcd.metrics()), time.monotonic()
        scenario_end("kill -9 x%d" % KILLED, [frozenset(all_names), frozenset(rest), frozenset(all_names)],
                     {"dropped (lease expiry)": gone, "returned": back_total}, o0,
                     {"victims": victims, "etcd_during": etcd_delta(e0, e1, w1 - w0, 2 * KILLED)})

        # 4. One host flapping: its link down FLAP_DOWN s, up FLAP_UP s, for FLAP_SECONDS.
        o0 = origin.counts()
        load.scenario("host flapping")
        flapper = rng.choice(all_names)
        load.disturbed = {flapper}
        poller.timeline = [(time.monotonic(), frozenset(all_names))]
        end = time.monotonic() + FLAP_SECONDS
        cycles = 0
        try:
            while time.monotonic() < end:
                check_budget("flapping")
                net.link(nodes.host[flapper], False)
                poller.observe(all_names, FLAP_DOWN)
                net.link(nodes.host[flapper], True)
                cycles += 1
                poller.observe(all_names, FLAP_UP)
        finally:
            net.link(nodes.host[flapper], True)
        settle = poller.converge(all_names, all_names, "after %s stopped flapping" % flapper)
        time.sleep(2)
        load.disturbed = set()
        sets = [s for _, s in poller.timeline]
        scenario_end("host flapping", sets, {"all agree after the last up": settle}, o0,
                     {"flapper": flapper, "cycles": cycles, "down_s": FLAP_DOWN, "up_s": FLAP_UP,
                      "majority_view_changes": len(sets) - 1})

        # 5. etcd: lose the leader, then bring it back; then lose 2 of 3 (no quorum) for NOQUORUM_SECONDS.
        o0 = origin.counts()
        load.scenario("etcd leader loss")
        poller.timeline = [(time.monotonic(), frozenset(all_names))]
        leader = etcd.leader()
        assert leader is not None, "no etcd leader"
        t = time.monotonic()
        leader.stop()
        while not etcd.answering():
            check_budget("etcd re-election")
            if time.monotonic() - t > 30:
                raise AssertionError("etcd never elected a new leader")
            time.sleep(0.05)
        reelect = time.monotonic() - t
        poller.observe(all_names, 5)
        during = poller.converge(all_names, all_names, "without the old etcd leader")
        leader.start(fresh=False, wait=True)
        poller.observe(all_names, 3)
        after = poller.converge(all_names, all_names, "after the old etcd leader returned")
        regs = etcd.member_keys()
        time.sleep(1)
        sets = [s for _, s in poller.timeline]
        scenario_end("etcd leader loss", sets, {"etcd re-election": reelect, "nodes agree": during + 5,
                                               "after it returned": after}, o0,
                     {"registered_after": len(regs or []), "majority_view_changes": len(sets) - 1})
        if regs is None or len(regs) != NODES:
            raise AssertionError("after the etcd leader returned etcd holds %r member keys, not %d" % (regs, NODES))

        o0 = origin.counts()
        load.scenario("etcd no quorum")
        poller.timeline = [(time.monotonic(), frozenset(all_names))]
        leader = etcd.leader() or etcd.members[0]
        lost = [leader, next(m for m in etcd.members if m is not leader)]
        for m in lost:
            m.stop()
        poller.observe(all_names, NOQUORUM_SECONDS)
        kept = poller.members_agree(all_names, all_names)
        t = time.monotonic()
        for m in lost:
            m.start(fresh=False, wait=False)
        for m in lost:
            m.wait_ready()
        quorum = time.monotonic() - t

        def all_registered():
            regs = etcd.member_keys()
            return regs is not None and len(regs) == NODES

        rereg = None
        while rereg is None:
            check_budget("re-registration")
            if all_registered():
                rereg = time.monotonic() - t
            elif time.monotonic() - t > CONVERGE_TIMEOUT:
                raise AssertionError("NEVER RE-REGISTERED: %d s after quorum returned etcd holds %r"
                                     % (CONVERGE_TIMEOUT, etcd.member_keys()))
            else:
                time.sleep(0.2)
        agree = poller.converge(all_names, all_names, "after quorum returned")
        time.sleep(1)
        sets = [s for _, s in poller.timeline]
        scenario_end("etcd no quorum", sets, {"quorum back": quorum, "all re-registered": rereg,
                                             "nodes agree after": agree}, o0,
                     {"kept_membership_without_quorum": kept, "seconds_without_quorum": NOQUORUM_SECONDS,
                      "majority_view_changes": len(sets) - 1})
        if not kept:
            raise AssertionError("nodes did not keep their membership while etcd had no quorum")
    finally:
        log("cleaning up")
        for part in (load and load.stop, poller and (lambda: poller.pool.shutdown(wait=False)),
                     nodes and nodes.cleanup, etcd and etcd.cleanup, origin and origin.stop, net and net.cleanup):
            if part is None:
                continue
            try:
                part()
            except Exception as e:  # one failed step must not keep the others from running
                print("cleanup: %s: %s" % (type(e).__name__, e), file=sys.stderr)


def write_report(report, status):
    out = os.environ.get("SCALE_RESULTS", os.path.join(REPO, "bench", "results"))
    os.makedirs(out, exist_ok=True)
    stamp = datetime.datetime.utcnow().strftime("%Y-%m-%d-%H%M")
    path = os.path.join(out, "%s-scale.md" % stamp)
    lines = ["# make scale, %s UTC" % datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"), "",
             "%d nodes (one network namespace each), 3 etcd members, %d keys read at about %d req/s by %d client "
             "threads, lease TTL %d s, node TTL 1 h. Result: **%s**. Machine: %d cores, load average before the "
             "run %s." % (NODES, KEYS, RATE, THREADS, LEASE_TTL, status, os.cpu_count(), report.env.get("loadavg")),
             "", "| scenario | requests | wrong | failed via healthy | failed via disturbed | p99 ms | "
             "owner changes (ideal) | origin loads (excess) | convergence |", "|---|---|---|---|---|---|---|---|---|"]
    for sc in report.scenarios:
        conv = "; ".join("%s %s" % (k, fmt_converge(v)) for k, v in sc["converge"].items())
        lines.append("| %s | %d | %d | %d | %d | %s | %d (%.0f) | %d (%d) | %s |" % (
            sc["name"], sc["requests"], sc["wrong"], sc["failed_healthy"], sc["failed_disturbed"], sc["p99_ms"],
            sc["keys_owner_changes"], sc["keys_owner_changes_ideal"], sc["origin_loads"], sc["origin_loads_excess"],
            conv))
    for sc in report.scenarios:
        if "etcd_during" in sc:
            e = sc["etcd_during"]
            lines += ["", "etcd during %s (%s s, %d membership changes), per change: %s." % (
                sc["name"], e["window_s"], e["membership_changes"],
                ", ".join("%s %s" % (k, v) for k, v in e["per_change"].items()))]
    if report.rest:
        lines += ["", "At rest (%s s, no load): etcd %s; node CPU mean %s%% max %s%%, RSS mean %s KiB max %s KiB." % (
            report.rest["seconds"], ", ".join("%s %.1f/s" % (k, v) for k, v in report.rest["etcd"].items() if v),
            report.rest["cpu_pct_mean"], report.rest["cpu_pct_max"], report.rest["rss_kib_mean"],
            report.rest["rss_kib_max"])]
    lines += ["", "Every figure, as JSON:", "", "```json", json.dumps({"rest": report.rest, "scenarios":
                                                                     report.scenarios}, indent=1, default=str),
              "```", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def main():
    reason = netns_supported()
    if reason:
        print("make scale: cannot run: %s" % reason, file=sys.stderr)
        return 2
    if not shutil.which("etcd"):
        print("make scale: cannot run: etcd is not installed (scripts/ensure-deps test)", file=sys.stderr)
        return 2
    clean_leftovers()
    run_tmp = os.path.join(tempfile.gettempdir(), "%s-%d" % (PREFIX, os.getpid()))
    os.makedirs(run_tmp, exist_ok=True)
    tempfile.tempdir = run_tmp   # etcd data dirs and node logs: one place, removed at the end
    os.environ["SPRINGCACHE_IT_LOG_DIR"] = run_tmp
    # Node logs and etcd data stay until the end of the run: removed with run_tmp, or kept if it failed.
    os.environ["SPRINGCACHE_KEEP_LOGS"] = "1"

    def on_signal(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    report = Report()
    with open("/proc/loadavg") as f:
        report.env["loadavg"] = " ".join(f.read().split()[:3])
    log("make scale: %d nodes, 3 etcd members, %d keys, %d req/s, budget %d s" % (NODES, KEYS, RATE, BUDGET))
    error = None
    try:
        run(report)
    except (AssertionError, BudgetExceeded, RuntimeError, KeyboardInterrupt) as e:
        error = "%s: %s" % (type(e).__name__, e)
    finally:
        if error and not os.environ.get("SCALE_KEEP"):
            # The node and etcd logs of a failed run outlive it (a name the leftover sweep does not match).
            kept = run_tmp + "-failed-logs"
            os.rename(run_tmp, kept)
            run_tmp = kept
            log("logs of the failed run kept in %s" % kept)
        elif not os.environ.get("SCALE_KEEP"):
            shutil.rmtree(run_tmp, ignore_errors=True)
    wrong = sum(sc["wrong"] for sc in report.scenarios)
    status = "PASS" if error is None and wrong == 0 else "FAIL"
    if report.scenarios:
        path = write_report(report, status)
        log("report: %s" % os.path.relpath(path, REPO))
    log("nodes: %d" % NODES)
    for sc in report.scenarios:
        log("  %-18s wrong answers: %d   failed: %d via healthy nodes, %d via disturbed"
            % (sc["name"], sc["wrong"], sc["failed_healthy"], sc["failed_disturbed"]))
    if wrong:
        log("!!!!!!!! %d WRONG ANSWERS !!!!!!!!" % wrong)
    if error:
        log("!!!!!!!! FAILED: %s" % error)
    log("make scale: %s in %.0f s" % (status, time.monotonic() - STARTED))
    return 0 if status == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())

"""Chaos: a 3-node cluster (static --peer) and a real origin under steady load while nodes are killed,
frozen and the origin slows down. Every answer is checked against the origin's truth.

Run alone:  SPRINGCACHE_BIN=... python3 Tests/integration/test_chaos.py      (or pytest -k chaos -s)
Longer:     CHAOS_SECONDS=300 ...   (default 30; fault cycles repeat, rotating the victim node)

The truth: the origin answers key k with truth(k), which never changes; keys "rw-*" are not in the origin
and are written once each through the API (read-after-write checks). The assertions:

* no WRONG answer, ever: a 200 whose value is not the truth (or, for a written key, not the written value);
* errors (HTTP 5xx, connection errors, timeouts) and lost writes happen only inside the failover windows
  stated below, each of which starts at the fault and ends GRACE seconds after the cluster has converged:
    kill    -9 of node X, restarted on the same ports after KILL_DOWN s:
              requests sent TO X fail (refused/reset) until it is back;
              requests to the others for X's keys: the failed peer call drops X, the key loads locally (200);
              a write whose owner is X is refused with 503 (nothing changes) while X is unreachable;
              a write that lands while rings disagree may be lost (404 afterwards).
    stop    SIGSTOP of node X for STOP_SECONDS, then SIGCONT (a black-holed peer):
              requests sent TO X wait until SIGCONT (then answer) or time out;
              requests to the others for X's keys wait up to --peer-timeout, then load locally (200);
    origin  the origin answers after ORIGIN_DELAY > --origin-timeout for ORIGIN_SECONDS:
              misses answer 504 (after --origin-timeout); hits are unaffected (no --stale-grace here).
* after every fault, every node reports every member "up" in /api/peers within CONVERGE_TIMEOUT.
"""
import hashlib
import http.client
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import DEADLINE, FixedCluster as Cluster, Origin, percentile, wait_for  # noqa: E402

CHAOS_SECONDS = float(os.environ.get("CHAOS_SECONDS", "32"))
CYCLE_SECONDS = 26      # one kill + stop + origin + etcd cycle with its quiet times; started only if time remains
ETCD_DOWN = 5.0
READERS = 4
KEYS = ["ck-%d" % i for i in range(300)]   # hot set: cached all the time (sliding expiry)
COLD_SHARE = 0.1                              # share of reads for never-seen keys: misses all the time
READ_PAUSE = 0.001                            # per request and thread: keeps the load bounded on shared cores
SLOW = 1.0                                    # an OK answer slower than this is counted as slow
PEER_TIMEOUT = 1.5
ORIGIN_TIMEOUT = 1.0
TTL = "4s"              # short, so misses keep reaching the origin all through the run
KILL_DOWN = 1.5
STOP_SECONDS = 5.0
ORIGIN_DELAY = 2.5
ORIGIN_SECONDS = 4.0
STEADY = 2.0            # quiet time between faults
CONVERGE_TIMEOUT = 10.0
GRACE = PEER_TIMEOUT + 1.0
CLIENT_TIMEOUT = 10.0
NODE_FLAGS = ["--peer-timeout", "%dms" % (PEER_TIMEOUT * 1000), "--origin-timeout", "%dms" % (ORIGIN_TIMEOUT * 1000),
              "--ttl", TTL, "--hot-copy-one-in", "10", "--log-level", "info"]


def truth(key):
    if key.startswith("rw-"):
        return None  # written keys are not in the origin: 404 there
    return ("v-%s-%s" % (key, hashlib.sha256(key.encode()).hexdigest()[:24])).encode()


class Window:
    def __init__(self, kind, node, start):
        self.kind, self.node, self.start, self.end = kind, node, start, float("inf")
        self.converge_seconds = None

    def covers(self, t0, t1):
        return t0 <= self.end and t1 >= self.start

    def as_dict(self, t_base):
        return {"kind": self.kind, "node": self.node, "start_s": round(self.start - t_base, 2),
                "end_s": round(self.end - t_base, 2), "converge_s": self.converge_seconds}


class Chaos:
    def __init__(self, seconds=CHAOS_SECONDS):
        self.seconds = seconds
        self.origin = Origin()
        self.origin.value_of = truth
        self.cluster = None
        self.windows = []
        self.lock = threading.Lock()
        self.results = []       # (t0, t1, node, op, outcome, detail)
        self.stop = threading.Event()
        self.down = set()       # nodes the clients should avoid right now (they still may hit them in a race)
        self.failures = []      # controller-side failures (convergence)

    # --- clients ---------------------------------------------------------------------------------

    def pick_node(self, rnd, exclude=None):
        with self.lock:
            live = [n for n in self.cluster.names if n not in self.down and n != exclude]
        return rnd.choice(live or self.cluster.names)

    def call(self, conns, node, method, path, body=None, headers=None):
        """One request on this thread's keep-alive connection to node; returns (status, body) or raises."""
        c = conns.get(node)
        if c is None:
            c = conns[node] = http.client.HTTPConnection("127.0.0.1", self.cluster.api_ports[node],
                                                         timeout=CLIENT_TIMEOUT)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, r.read()
        except Exception:
            c.close()
            conns.pop(node, None)
            raise

    def note(self, t0, node, op, outcome, detail=""):
        self.results.append((t0, time.monotonic(), node, op, outcome, detail))

    def reader(self, seed):
        rnd = random.Random(seed)
        conns = {}
        while not self.stop.is_set():
            if rnd.random() < COLD_SHARE:
                key = "cold-%d-%d" % (seed, rnd.getrandbits(40))
            else:
                key = rnd.choice(KEYS)
            node = self.pick_node(rnd)
            time.sleep(READ_PAUSE)
            t0 = time.monotonic()
            try:
                status, body = self.call(conns, node, "GET", "/api/get?key=" + key)
            except Exception as e:
                self.note(t0, node, "get", "error", type(e).__name__)
                time.sleep(0.01)  # a refused connection fails at once: do not spin
                continue
            if status == 200:
                ok = body == b"value=" + truth(key) + b"\n"
                self.note(t0, node, "get", "ok" if ok else "wrong", key if ok else "%s -> %r" % (key, body[:80]))
            else:
                self.note(t0, node, "get", "error", "HTTP %d" % status)

    def writer(self, seed):
        """Writes rw-N once each through one node, then reads it back through that node and another."""
        rnd = random.Random(seed)
        conns = {}
        n = 0
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        while not self.stop.is_set():
            n += 1
            key = "rw-%d" % n
            value = "w%d-%08x" % (n, rnd.getrandbits(32))
            node = self.pick_node(rnd)
            t0 = time.monotonic()
            try:
                status, body = self.call(conns, node, "POST", "/api/set",
                                         urllib.parse.urlencode({"key": key, "value": value, "expire": "0"}), form)
            except Exception as e:
                self.note(t0, node, "set", "error", type(e).__name__)
                time.sleep(0.01)
                continue
            if status != 200:
                self.note(t0, node, "set", "error", "HTTP %d" % status)
                continue
            self.note(t0, node, "set", "ok")
            for reader_node in (node, self.pick_node(rnd, exclude=node)):
                t1 = time.monotonic()
                try:
                    status, body = self.call(conns, reader_node, "GET", "/api/get?key=" + key)
                except Exception as e:
                    self.note(t1, reader_node, "rw-get", "error", type(e).__name__)
                    continue
                if status == 200 and body == ("value=%s\n" % value).encode():
                    self.note(t0, reader_node, "rw-get", "ok")   # t0: the window check spans write..read
                elif status == 404:
                    self.note(t0, reader_node, "rw-get", "lost", "%s via %s written via %s" % (key, reader_node, node))
                elif status == 200:
                    self.note(t0, reader_node, "rw-get", "wrong", "%s -> %r (wrote %s)" % (key, body[:80], value))
                else:
                    self.note(t1, reader_node, "rw-get", "error", "HTTP %d" % status)
            time.sleep(0.01)

    # --- faults ----------------------------------------------------------------------------------

    def open_window(self, kind, node):
        w = Window(kind, node, time.monotonic())
        self.windows.append(w)
        return w

    def close_window(self, w, recovered_at):
        t = time.monotonic()
        converged = wait_for(self.cluster.converged, CONVERGE_TIMEOUT, 0.1)
        w.converge_seconds = round(time.monotonic() - recovered_at, 2)
        if not converged:
            self.failures.append("%s of %s: members not all up after %.0f s: %r" % (
                w.kind, w.node, CONVERGE_TIMEOUT, {n: sorted(self.cluster.members_up(n)) for n in self.cluster.names}))
        w.end = max(t, time.monotonic()) + GRACE

    def fault_kill(self, victim):
        w = self.open_window("kill", victim)
        with self.lock:
            self.down.add(victim)
        self.cluster.restart(victim, signal.SIGKILL, down_seconds=KILL_DOWN)
        with self.lock:
            self.down.discard(victim)
        self.close_window(w, time.monotonic())

    def fault_stop(self, victim):
        w = self.open_window("stop", victim)
        with self.lock:
            self.down.add(victim)
        node = self.cluster[victim]
        node.send_signal(signal.SIGSTOP)
        try:
            self.sleep(STOP_SECONDS)
        finally:
            node.send_signal(signal.SIGCONT)
        with self.lock:
            self.down.discard(victim)
        self.close_window(w, time.monotonic())

    def fault_origin(self):
        w = self.open_window("origin", None)
        self.origin.all_delay = ORIGIN_DELAY
        try:
            self.sleep(ORIGIN_SECONDS)
        finally:
            self.origin.all_delay = 0
        # Loads already waiting on the slow origin finish (or time out) within ORIGIN_DELAY.
        self.close_window(w, time.monotonic())
        w.end += ORIGIN_DELAY

    def fault_etcd(self):
        """etcd stopped for ETCD_DOWN seconds, then started again (same data dir). Nothing is excused in
        this window: the nodes keep serving with the membership they have; when etcd answers they register
        again (checked: every node's record is back)."""
        w = self.open_window("etcd", None)
        self.etcd.stop()
        try:
            self.sleep(ETCD_DOWN)
        finally:
            self.etcd.start()
        registered = wait_for(lambda: {k for k in self.etcd.kvs() if k.startswith("springcache/members/")}
                              == {"springcache/members/" + n for n in self.cluster.names}, CONVERGE_TIMEOUT, 0.1)
        if not registered:
            self.failures.append("etcd restart: nodes not all registered again after %.0f s: %r"
                                 % (CONVERGE_TIMEOUT, sorted(self.etcd.kvs())))
        self.close_window(w, time.monotonic())

    @staticmethod
    def sleep(seconds):
        time.sleep(seconds)

    def check_alive(self):
        """Every node we did not take down must still run; one that exited was stopped by something else
        (a crash, or another job on the machine sending it a signal): stop the run and say which."""
        for n in self.cluster.names:
            node = self.cluster[n]
            if n not in self.down and not node.alive():
                tail = [line for line in node.log_text().splitlines()[-5:]]
                self.failures.append("node %s exited by itself or was signalled by someone else (rc=%r): %r"
                                     % (n, node.proc.returncode, tail))
        return not self.failures or not any("exited" in f for f in self.failures)

    def controller(self, t_end):
        names = self.cluster.names
        cycle = 0
        self.sleep(STEADY)
        steps = [lambda c: self.fault_kill(names[c % len(names)]),
                 lambda c: self.fault_stop(names[(c + 1) % len(names)]),
                 lambda c: self.fault_origin()]
        steps.append(lambda c: self.fault_etcd())
        while True:
            for step in steps:
                if not self.check_alive():
                    return
                step(cycle)
                self.sleep(STEADY)
            cycle += 1
            if time.monotonic() + CYCLE_SECONDS > t_end:
                break
        remaining = t_end - time.monotonic()
        if remaining > 0:
            self.sleep(remaining)
        self.check_alive()

    # --- run and judge ---------------------------------------------------------------------------

    def run(self):
        t_base = time.monotonic()
        from etcd_harness import Etcd
        self.etcd = Etcd()  # started by its constructor
        # Static members plus etcd: the membership stays whole without etcd, and etcd's outages still
        # exercise registration, keepalive and discovery under load.
        self.cluster = Cluster(("a", "b", "c"), extra_flags=["--origin", self.origin.url, "--etcd", self.etcd.endpoint,
                                                             "--lease-ttl", "3s", *NODE_FLAGS])
        try:
            assert wait_for(self.cluster.converged, CONVERGE_TIMEOUT), "the cluster never converged at start"
            threads = [threading.Thread(target=self.reader, args=(i,), daemon=True) for i in range(READERS)]
            threads.append(threading.Thread(target=self.writer, args=(99,), daemon=True))
            for t in threads:
                t.start()
            try:
                self.controller(t_base + self.seconds)
            finally:
                self.stop.set()
                for t in threads:
                    t.join(CLIENT_TIMEOUT + 5)
            alive = {n: self.cluster[n].alive() for n in self.cluster.names}
            logs = {n: self.cluster[n].log_text()[-1500:] for n in self.cluster.names}
        finally:
            self.cluster.cleanup()
            self.origin.stop()
            self.etcd.cleanup()
        return self.judge(t_base, alive, logs)

    def classify(self, r):
        """The stated window that explains a failed request, or None."""
        t0, t1, node, op, outcome, detail = r
        for w in self.windows:
            if not w.covers(t0, t1):
                continue
            if w.kind in ("kill", "stop") and w.node == node:
                return "%s:target" % w.kind
            if w.kind == "origin" and detail == "HTTP 504":
                return "origin:504"
            if outcome == "lost" and w.kind in ("kill", "stop"):
                return "%s:lost-write" % w.kind
            if op == "set" and detail == "HTTP 503" and w.kind in ("kill", "stop"):
                # Its owner is the node down: refused rather than kept here and undone later (issue 10, #7).
                return "%s:owner-unreachable" % w.kind
        return None

    def judge(self, t_base, alive, logs):
        counts = {}
        expected = {}
        unexpected = []
        wrong = []
        lat_ok = []
        lat_by_window = {}
        slow_by_window = {}
        slow_samples = []
        for r in self.results:
            t0, t1, node, op, outcome, detail = r
            counts[(op, outcome)] = counts.get((op, outcome), 0) + 1
            if outcome == "wrong":
                wrong.append(r)
            elif outcome in ("error", "lost"):
                why = self.classify(r)
                if why:
                    key = why + " " + (outcome if outcome == "lost" else detail)
                    expected[key] = expected.get(key, 0) + 1
                else:
                    unexpected.append(r)
            elif op == "get":
                lat_ok.append(t1 - t0)
                where = [w for w in self.windows if w.covers(t0, t1)]
                for w in where:
                    lat_by_window.setdefault("%s(%s)" % (w.kind, w.node or "-"), []).append(t1 - t0)
                if t1 - t0 > SLOW:
                    label = ",".join("%s(%s)%s" % (w.kind, w.node or "-", ":target" if w.node == node else "")
                                     for w in where) or "outside windows"
                    slow_by_window[label] = slow_by_window.get(label, 0) + 1
                    slow_samples.append((round(t0 - t_base, 2), round(t1 - t0, 3), node, detail, label))
        lat_ok.sort()
        summary = {
            "seconds": self.seconds,
            "requests": len(self.results),
            "counts": {"%s %s" % k: v for k, v in sorted(counts.items())},
            "wrong": len(wrong),
            "expected_errors_by_window": dict(sorted(expected.items())),
            "unexpected_errors": len(unexpected),
            "get_ok_latency_ms": {"p50": round(percentile(lat_ok, 50) * 1000, 2),
                                  "p99": round(percentile(lat_ok, 99) * 1000, 2),
                                  "max": round(lat_ok[-1] * 1000, 1) if lat_ok else None},
            "get_ok_max_ms_in_window": {k: round(max(v) * 1000, 1) for k, v in sorted(lat_by_window.items())},
            "get_ok_slower_than_1s": dict(sorted(slow_by_window.items())),
            "windows": [w.as_dict(t_base) for w in self.windows],
            "convergence_failures": self.failures,
            "alive_at_end": alive,
        }
        summary["slow_samples"] = slow_samples[:20]
        summary["_wrong_samples"] = [(round(r[0] - t_base, 2), r[2], r[3], r[5]) for r in wrong[:10]]
        summary["_unexpected_samples"] = [(round(r[0] - t_base, 2), round(r[1] - r[0], 3), r[2], r[3], r[4], r[5])
                                          for r in unexpected[:15]]
        summary["_logs_tail"] = logs if (wrong or unexpected or self.failures) else {}
        return summary


def report(summary):
    text = json.dumps({k: v for k, v in summary.items() if k != "_logs_tail"}, indent=1, sort_keys=True)
    print("\n[chaos summary]\n" + text)
    for n, log in summary.get("_logs_tail", {}).items():
        print("--- log tail of %s ---\n%s" % (n, log))
    path = os.environ.get("RELIABILITY_RESULTS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(dict(test="chaos", **{k: v for k, v in summary.items() if k != "_logs_tail"}),
                               sort_keys=True) + "\n")


def check(summary):
    assert summary["wrong"] == 0, "WRONG answers: %r" % summary["_wrong_samples"]
    assert not summary["convergence_failures"], summary["convergence_failures"]  # includes nodes that died
    assert all(summary["alive_at_end"].values()), summary["alive_at_end"]
    assert summary["unexpected_errors"] == 0, (
        "%d errors outside the stated failover windows, e.g. %r" % (summary["unexpected_errors"],
                                                                   summary["_unexpected_samples"]))
    assert summary["counts"].get("get ok", 0) > 1000, summary["counts"]


def owned_by(cluster, name, via, prefix, n=200):
    """A key (prefix-i) that node `name` owns: read through `via`, it is the owner whose loads go up."""
    def loads(x):
        return json.loads(cluster[x].request("GET", "/api/stats")[2])["loads"]
    for i in range(n):
        k = "%s-%d" % (prefix, i)
        before = loads(name)
        assert cluster[via].get(k)[0] == 200
        if loads(name) > before:
            return k
    raise AssertionError("%s owns none of %d keys" % (name, n))


def test_origin_timeout_at_the_owner_does_not_drop_the_owner(start_fixed_cluster, origin):
    """An owner that answers "my origin timed out" is alive: its callers must not drop it from their rings.

    Dropping it makes the rings disagree for every key it owns until it is re-admitted: extra loads, and
    writes stored at the wrong node (seen in the chaos test as lost writes while the origin was slow).
    """
    origin.value_of = truth
    cl = start_fixed_cluster(names=("a", "b"), extra_flags=["--origin", origin.url, "--origin-timeout", "300ms",
                                                      "--peer-timeout", "2s", "--hot-copy-one-in", "0"])
    assert wait_for(cl.converged, DEADLINE)
    k = owned_by(cl, "b", "a", "ot")
    assert cl["a"].form("/api/delete", {"key": k})[0] == 200
    origin.delay[k] = 1.0
    status, _, body, _ = cl["a"].get(k, timeout=10)
    assert status == 504, (status, body)
    up = cl.members_up("a")
    dropped = [line for line in cl["a"].log_text().splitlines() if "dropped from the ring" in line]
    assert up == {"a", "b"} and not dropped, "a dropped the live owner b after b's origin timed out: %r" % dropped


def test_sets_while_a_peer_is_black_holed_leave_one_value(start_fixed_cluster, origin):
    """Two sets of one key through a non-owner while a third node is SIGSTOPped: afterwards every node must
    answer the last value, and a set to a live owner must not take the whole peer timeout.

    Seen: the owner a answers a forwarded Set only after its invalidation of the stopped node b has timed
    out, so the caller c's own deadline (the same --peer-timeout) fires first; c drops the live owner a,
    stores the value itself, and a and c then answer different values for the key.
    """
    origin.value_of = truth
    cl = start_fixed_cluster(extra_flags=["--origin", origin.url, "--peer-timeout", "1s", "--hot-copy-one-in", "0"])
    assert wait_for(cl.converged, DEADLINE)
    k = owned_by(cl, "a", "c", "bh")
    cl["b"].send_signal(signal.SIGSTOP)
    try:
        took = []
        for v in ("first", "second"):
            t0 = time.monotonic()
            assert cl["c"].set(k, v, headers=None)[0] == 200
            took.append(round(time.monotonic() - t0, 3))
    finally:
        cl["b"].send_signal(signal.SIGCONT)
    assert wait_for(cl.converged, DEADLINE), {n: cl.members_up(n) for n in cl.names}
    answers = {n: cl[n].get(k)[2] for n in cl.names}
    dropped = [line.split("] ", 1)[-1] for line in cl["c"].log_text().splitlines() if "peer a dropped" in line]
    print("\n[observed] set latencies via c %r; answers %r; c's log: %r" % (took, answers, dropped))
    assert all(a == b"value=second\n" for a in answers.values()), "nodes disagree after two sets: %r" % answers
    assert not dropped, "c dropped the live owner a: %r" % dropped
    # A set that had waited out the 1 s peer timeout would have dropped a (asserted just above); the latencies
    # themselves are shared-machine timings, printed above rather than asserted.


def test_chaos():
    summary = Chaos().run()
    report(summary)
    check(summary)


if __name__ == "__main__":
    s = Chaos().run()
    report(s)
    check(s)
    print("chaos: PASS")

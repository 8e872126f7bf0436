"""Cluster benchmark: local vs remote vs hot-copy hits through one node; a 2-node cluster against groupcache's.

Run through bench/cluster.sh. Two 3-node clusters (a, b, c; static --peer lists on 127.0.0.1) run side by side:
  cluster "cold" with --hot-copy-one-in 0 (a non-owner never keeps a copy: every read of a remote key is a
  gRPC Get to its owner), and cluster "hot" with --hot-copy-one-in 1 (the first read keeps a hot copy).
Node a of each cluster is the node under test, pinned to BENCH_SERVER_CPU; wrk is pinned to BENCH_WRK_CPU;
b and c are pinned to BENCH_OTHERS_CPU (default: the wrk CPU, so the node under test has its CPU alone).
Scenarios, all wrk -t1 -cN against node a, alternating within each round:
  local  - keys owned by a (cold cluster): served from a's main cache
  remote - keys owned by b or c (cold cluster): each request is a gRPC Get from a to the owner
  hot    - keys owned by b or c (hot cluster), read once through a beforehand: served from a's hot cache
Values are set with /api/set (expire 3 days) before the runs, so the origin is never involved.
  two-node - a 2-node springcache-uv cluster (default --hot-copy-one-in, 10) against a 2-node groupcache cluster
             (bench/groupcache, HTTPPool peers; groupcache makes a hot copy 1 time in 10 too): all BENCH_KEYS keys
             k0.. read through node a, read once through a before the runs; CPU per request is a's plus b's
             (b on BENCH_OTHERS_CPU), the cost of serving through one node of a cluster, peer work included
  remote-1mib - 1 MiB values (issue 11): a 2-node springcache-uv cluster (a, b; --hot-copy-one-in 0,
             --max-body-bytes 2MiB), 8 values PUT as /v1/cache/scores/<key>: "1 MiB local" reads keys owned by a,
             "1 MiB remote" keys owned by b (every read is a gRPC Get of 1 MiB from a to b), and nginx serving the
             same bytes from a file (sendfile on) beside "1 MiB local"; BENCH_LARGE_CONNS connections; CPU/req is
             node a's (as in remote), the owner's in the closing note
Environment: SPRINGCACHE_BIN, BENCH_DURATION (10s), BENCH_ROUNDS (2), BENCH_CONNS ("64 256"), BENCH_KEYS (1000 per
scenario), BENCH_SCENARIOS ("local remote hot two-node remote-1mib"), BENCH_SYSTEMS ("springcache-uv groupcache
nginx": groupcache runs in two-node only, nginx in remote-1mib only), BENCH_LARGE_CONNS ("64"), BENCH_SMOKE (0;
1 = the report is marked a smoke run), BENCH_SERVER_CPU (1), BENCH_WRK_CPU (0), BENCH_OTHERS_CPU (= BENCH_WRK_CPU;
"none" = unpinned), BENCH_RESULTS (bench/results).
"""
import datetime
import importlib.util
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import bench  # noqa: E402  (run_wrk, pinned, environment, fmt, wait_for)
import loader  # noqa: E402
import procs  # noqa: E402
import report  # noqa: E402

_spec = importlib.util.spec_from_file_location("ring", os.path.join(REPO, "Tests", "golden", "make_ring_vectors.py"))
ring = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ring)

NAMES = ["a", "b", "c"]
SCENARIOS = ["local", "remote", "hot", "two-node", "remote-1mib"]
SYSTEMS = ["springcache-uv", "groupcache", "nginx"]
MiB = 1 << 20
LARGE_KEYS = 8


def free_peer_port(used):
    """A free port below the ephemeral range, so port-0 binds (API ports) cannot take it first."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    while True:
        port = random.randint(low - 12000, low - 1)
        if port in used:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        used.add(port)
        return port


def get_json(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
        return json.loads(r.read())


class BenchCluster:
    """springcache-uv nodes `names` with a static --peer list; hot_one_in None keeps the default."""
    def __init__(self, label, binary, tmp, used, hot_one_in, cpus, names=NAMES, extra=()):
        self.label = label
        self.nodes = {}
        ports = {n: free_peer_port(used) for n in names}
        peer_arg = ",".join("%s=127.0.0.1:%d" % (n, ports[n]) for n in names)
        hot = [] if hot_one_in is None else ["--hot-copy-one-in", str(hot_one_in)]
        for n in names:
            api = free_peer_port(used)
            argv = [binary, "--api", "127.0.0.1:%d" % api, "--jitter", "0", "--ttl", "1h", "--log-level", "warning",
                    "--name", n, "--port", str(ports[n]), "--peer", peer_arg] + hot + list(extra)
            proc = procs.spawn(cpus[n], argv, os.path.join(tmp, "%s-%s.log" % (label, n)))
            self.nodes[n] = {"name": "%s/%s" % (label, n), "proc": proc, "port": api}
        for n in names:
            bench.wait_for("http://127.0.0.1:%d/api/get?key=Tom" % self.nodes[n]["port"], b"value=630\n",
                           self.nodes[n]["proc"])
        deadline = time.monotonic() + 10
        while True:
            states = [m["state"] for n in names for m in get_json(self.nodes[n]["port"], "/api/peers")["members"]]
            if states.count("up") == len(names) ** 2:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("%s: members not all up: %r" % (label, states))
            time.sleep(0.1)

    def stats(self, n):
        return get_json(self.nodes[n]["port"], "/api/stats")

    def stop(self):
        for node in self.nodes.values():
            bench.stop(node)


def pipeline(port, requests, expect):
    return loader._pipeline(("127.0.0.1", port), requests, expect)


def set_requests(keys, value):
    out = []
    for k in keys:
        body = ("key=%s&value=%s&expire=4320&hot=false" % (urllib.parse.quote(k), value)).encode()
        out.append(b"POST /api/set HTTP/1.1\r\nHost: b\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    return out


def get_requests(keys):
    return [b"GET /api/get?key=%s HTTP/1.1\r\nHost: b\r\n\r\n" % urllib.parse.quote(k).encode() for k in keys]


def lua_script(path, keys, prefix="/api/get?key="):
    with open(path, "w") as f:
        f.write("-- generated by bench/cluster.py: GET %sK round-robin over %d keys\n" % (prefix, len(keys)))
        f.write("local keys = {%s}\n" % ",".join('"%s"' % k for k in keys))
        f.write("local n = 0\nrequest = function()\n    n = n + 1\n"
                "    return wrk.format(\"GET\", \"%s\" .. keys[(n %% #keys) + 1])\nend\n" % prefix)
    return path


def put_requests(keys, value):
    return [(b"PUT /v1/cache/scores/%s?ttl=259200 HTTP/1.1\r\nHost: b\r\nContent-Length: %d\r\n\r\n"
             % (k.encode(), len(value))) + value for k in keys]


class GroupcacheCluster:
    """bench/groupcache nodes a and b, each the other's HTTPPool peer."""
    def __init__(self, tmp, used, cpus):
        self.label = "groupcache"
        ports = {n: free_peer_port(used) for n in ("a", "b")}
        peers = ["http://127.0.0.1:%d" % ports[n] for n in ("a", "b")]
        self.nodes = {}
        for n in ("a", "b"):
            self.nodes[n] = procs.start_groupcache(cpus[n], tmp, "groupcache/%s" % n, ports[n], peers)

    def stats(self, n):
        return get_json(self.nodes[n]["port"], "/api/stats")

    def stop(self):
        for node in self.nodes.values():
            bench.stop(node)


class NginxServer:
    """nginx from procs.start_nginx, held like a cluster of one so the run checks and stops it the same way."""
    def __init__(self, server):
        self.label = "nginx"
        self.nodes = {"nginx": server}

    def stop(self):
        bench.stop(self.nodes["nginx"])


def two_node_counters(system, cluster):
    """(peer gets served by b, hot-cache hits on a, origin loads on a and b) so far."""
    if system == "groupcache":
        a, b = cluster.stats("a"), cluster.stats("b")
        return (b["stats"]["ServerRequests"], a["hot"]["Hits"],
                a["stats"]["LocalLoads"] + b["stats"]["LocalLoads"])
    a, b = cluster.stats("a"), cluster.stats("b")
    return b["gets"], a["hot_hits"], a["loads"] + b["loads"]


def main():
    binary = os.path.abspath(os.environ.get("SPRINGCACHE_BIN") or os.path.join(REPO, ".build/release/springcache-uv"))
    duration = os.environ.get("BENCH_DURATION", "10s")
    rounds = int(os.environ.get("BENCH_ROUNDS", "2"))
    conns = [int(c) for c in os.environ.get("BENCH_CONNS", "64 256").split()]
    large_conns = [int(c) for c in os.environ.get("BENCH_LARGE_CONNS", "64").split()]
    nkeys = int(os.environ.get("BENCH_KEYS", "1000"))
    chosen = bench.words("BENCH_SCENARIOS", " ".join(SCENARIOS), SCENARIOS)
    systems = bench.words("BENCH_SYSTEMS", " ".join(SYSTEMS), SYSTEMS)
    smoke = os.environ.get("BENCH_SMOKE", "0") == "1"
    server_cpu, wrk_cpu = os.environ.get("BENCH_SERVER_CPU", "1"), os.environ.get("BENCH_WRK_CPU", "0")
    others_cpu = os.environ.get("BENCH_OTHERS_CPU", wrk_cpu)
    if others_cpu == "none":
        others_cpu = None
    if (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
        print("bench: fewer than 2 CPUs or no taskset: running unpinned", file=sys.stderr)
        server_cpu = wrk_cpu = others_cpu = None
    results_dir = os.environ.get("BENCH_RESULTS", os.path.join(HERE, "results"))
    if "springcache-uv" in systems and not os.access(binary, os.X_OK):
        sys.exit("bench: no binary at %s (build it or set SPRINGCACHE_BIN)" % binary)
    procs.tool("wrk")
    if "nginx" in systems and "remote-1mib" in chosen:
        procs.tool("nginx")
    if "groupcache" in systems and "two-node" in chosen:
        procs.groupcache_binary()
    procs.stop_on_signals()
    three = [s for s in ("local", "remote", "hot") if s in chosen] if "springcache-uv" in systems else []

    local_keys, remote_keys = [], []
    i = 0
    while len(local_keys) < nkeys or len(remote_keys) < nkeys:
        k = "ck%d" % i
        i += 1
        (local_keys if ring.owner(NAMES, k) == "a" else remote_keys).append(k)
    local_keys, remote_keys = local_keys[:nkeys], remote_keys[:nkeys]
    remote_owners = {o: sum(1 for k in remote_keys if ring.owner(NAMES, k) == o) for o in ("b", "c")}
    two_keys = ["k%d" % i for i in range(nkeys)]
    large = {"a": [], "b": []}
    i = 0
    while min(len(v) for v in large.values()) < LARGE_KEYS:
        k = "mk%d" % i
        i += 1
        owner = ring.owner(["a", "b"], k)
        if len(large[owner]) < LARGE_KEYS:
            large[owner].append(k)
    large_value = procs.value_bytes(MiB)

    large_owner = None
    tmp = tempfile.mkdtemp(prefix="springcache-cbench-")
    used = set()
    cpus = {"a": server_cpu, "b": others_cpu, "c": others_cpu}
    clusters = []
    rows = []
    hot_items = None
    try:
        # (label, system, cluster, script, counters(cluster) -> (peer gets, hot hits, loads), node a with the
        # processes whose CPU is counted, the connection counts it runs with)
        scenarios = []
        scripts = {"local": lua_script(os.path.join(tmp, "local.lua"), local_keys),
                   "remote": lua_script(os.path.join(tmp, "remote.lua"), remote_keys),
                   "two": lua_script(os.path.join(tmp, "two.lua"), two_keys)}

        def three_counters(cluster):
            a = cluster.stats("a")
            return sum(cluster.stats(o)["gets"] for o in ("b", "c")), a["hot_hits"], a["loads"]
        if three:
            cold = BenchCluster("cold", binary, tmp, used, 0, cpus)
            clusters.append(cold)
            hot = BenchCluster("hot", binary, tmp, used, 1, cpus)
            clusters.append(hot)
            for c in (cold, hot):
                pipeline(c.nodes["a"]["port"], set_requests(local_keys + remote_keys, "630"), 200)
            # warm the hot copies on hot/a, and check they are there
            pipeline(hot.nodes["a"]["port"], get_requests(remote_keys), 200)
            hot_items = hot.stats("a")["caches"]["hot"]["items"]
            if hot_items < nkeys:
                raise RuntimeError("hot/a holds %d hot copies after warming %d remote keys" % (hot_items, nkeys))
            cold_hot_items = cold.stats("a")["caches"]["hot"]["items"]
            if cold_hot_items:
                raise RuntimeError("cold/a holds %d hot copies with --hot-copy-one-in 0" % cold_hot_items)
            for c, keys in ((cold, local_keys), (cold, remote_keys), (hot, remote_keys)):
                bench.wait_for("http://127.0.0.1:%d/api/get?key=%s" % (c.nodes["a"]["port"], keys[-1]),
                               b"value=630\n", c.nodes["a"]["proc"], timeout=2)
            for label, cluster, script in (("local", cold, "local"), ("remote", cold, "remote"),
                                           ("hot", hot, "remote")):
                if label in three:
                    scenarios.append(("hot copy" if label == "hot" else label, "springcache-uv", cluster,
                                      scripts[script], three_counters, cluster.nodes["a"], conns))
        if "two-node" in chosen:
            for system in [s for s in systems if s != "nginx"]:
                if system == "springcache-uv":
                    two = BenchCluster("two", binary, tmp, used, None, cpus, names=["a", "b"])
                    clusters.append(two)
                    pipeline(two.nodes["a"]["port"], set_requests(two_keys, "630"), 200)
                else:
                    two = GroupcacheCluster(tmp, used, cpus)
                    clusters.append(two)
                pipeline(two.nodes["a"]["port"], get_requests(two_keys), 200)  # groupcache: loads every key once
                got = procs.fetch(two.nodes["a"]["port"], "/api/get?key=%s" % two_keys[-1])
                if got != b"value=630\n":
                    raise RuntimeError("%s two-node answers %r for %s" % (system, got, two_keys[-1]))
                node_a = dict(two.nodes["a"], cpu_procs=[two.nodes["a"]["proc"], two.nodes["b"]["proc"]])
                scenarios.append(("2 nodes, all through a", system, two, scripts["two"],
                                  lambda cl, system=system: two_node_counters(system, cl), node_a, conns))
        if "remote-1mib" in chosen:
            if "springcache-uv" in systems:
                big = BenchCluster("large", binary, tmp, used, 0, cpus, names=["a", "b"],
                                   extra=["--max-body-bytes", "2MiB"])
                clusters.append(big)
                pipeline(big.nodes["a"]["port"], put_requests(large["a"] + large["b"], large_value), 204)
                for k in large["a"] + large["b"]:
                    if procs.fetch(big.nodes["a"]["port"], "/v1/cache/scores/" + k) != large_value:
                        raise RuntimeError("large/a does not answer the 1 MiB value of %s" % k)
                if big.stats("a")["caches"]["hot"]["items"]:
                    raise RuntimeError("large/a keeps hot copies with --hot-copy-one-in 0")

                def large_counters(cl):
                    a = cl.stats("a")
                    return cl.stats("b")["gets"], a["hot_hits"], a["loads"]
                for label, owner in (("1 MiB local", "a"), ("1 MiB remote", "b")):
                    script = lua_script(os.path.join(tmp, "large-%s.lua" % owner), large[owner],
                                        "/v1/cache/scores/")
                    scenarios.append((label, "springcache-uv", big, script, large_counters, big.nodes["a"],
                                      large_conns))
                # The owner's CPU for the remote reads, reported in the closing note.
                large_owner = big.nodes["b"]
            if "nginx" in systems:
                nginx = procs.start_nginx(server_cpu, tmp, [MiB])
                clusters.append(NginxServer(nginx))
                script = lua_script(os.path.join(tmp, "large-nginx.lua"), ["v%d" % MiB], "/v1/cache/scores/")
                scenarios.append(("1 MiB local", "nginx", None, script, lambda cl: (0, 0, 0), nginx, large_conns))

        labels = list(dict.fromkeys(sc[0] for sc in scenarios))
        for c in dict.fromkeys(c for sc in scenarios for c in sc[6]):
            for r in range(1, rounds + 1):
                for label in labels:
                    for _, system, cluster, script, counters, node, _ in [sc for sc in scenarios
                                                                          if sc[0] == label and c in sc[6]]:
                        before = counters(cluster)
                        remote_large = label == "1 MiB remote"
                        owner_before = procs.server_cpu_ticks(large_owner) if remote_large else 0
                        res = bench.run_wrk(node, "/", script, c, duration, wrk_cpu)
                        if remote_large:
                            res["owner_cpu_us"] = ((procs.server_cpu_ticks(large_owner) - owner_before)
                                                   / procs.CLK_TCK * 1e6 / max(res["requests"], 1))
                        after = counters(cluster)
                        peer, hot_hits, loads = (y - x for x, y in zip(before, after))
                        row = dict(res, scenario=label, system=system, conns=c, round=r, owner_gets=peer,
                                   hot_hits=hot_hits, loads=loads)
                        rows.append(row)
                        if res["errors"]:
                            print("bench: %d errors (non-2xx or socket) in the %s run" % (res["errors"], label),
                                  file=sys.stderr)
                        print("%-22s %-14s c=%-4d round %d: %9.0f rps  p50 %7s ms  p99 %7s ms  %6.2f us CPU/req  "
                              "peer gets %d  hot hits %d  loads %d  errors %d" % (
                                  label, system, c, r, res["rps"], bench.fmt(res["p50"], ".3f"),
                                  bench.fmt(res["p99"], ".3f"), res["cpu_us"], peer, hot_hits, loads,
                                  res["errors"]), flush=True)
                        for cl in clusters:
                            for n in cl.nodes.values():
                                if n["proc"].poll() is not None:
                                    raise RuntimeError("%s died during the run" % n["name"])
    finally:
        for cl in clusters:
            cl.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    pin = lambda cpu: "unpinned" if cpu is None else "CPU %s" % cpu  # noqa: E731
    title = "springcache-uv cluster: local, remote and hot-copy hits; 2 nodes against groupcache; 1 MiB values"
    if smoke:
        title += " — SMOKE RUN (figures not meaningful)"
    preamble = ([("**Smoke run**: short runs on a busy machine, to show every system and scenario works and the "
                  "report comes out; the figures are not meaningful.")] if smoke else [])
    preamble += bench.environment(binary)
    preamble += [
        "wrk -t1 -c{%s} -d%s --latency: %s; node a (the node under test): %s; the other nodes: %s; scenarios "
        "alternate within each of %d rounds" % (",".join(map(str, conns)), duration, pin(wrk_cpu), pin(server_cpu),
                                                pin(others_cpu), rounds)]
    if three:
        preamble += [
            "local / remote / hot copy: two 3-node springcache-uv clusters (a, b, c; static `--peer` list, h2c gRPC "
            "on 127.0.0.1), all nodes `--jitter 0 --ttl 1h --log-level warning`; \"cold\" with `--hot-copy-one-in "
            "0`, \"hot\" with `--hot-copy-one-in 1`; %d keys per scenario, values `630` set with /api/set "
            "expire=4320 before the runs (origin never used), requested round-robin: local = keys the ring gives "
            "to a; remote = keys owned by b (%d) and c (%d), read through a; hot copy = the same remote keys on the "
            "hot cluster, read once through a first (a then held %d hot copies); CPU/req: node a's only"
            % (nkeys, remote_owners["b"], remote_owners["c"], hot_items)]
    if "two-node" in chosen:
        preamble += [
            "2 nodes, all through a: springcache-uv a and b (default `--hot-copy-one-in` 10; keys k0..k%d = 630 "
            "set through a) against bench/groupcache a and b (HTTPPool peers, hot copy 1 in 10, values from its "
            "in-process origin); every key read once through a before the runs; CPU/req: a's plus b's"
            % (nkeys - 1)]
    if "remote-1mib" in chosen:
        preamble += [
            "1 MiB local / 1 MiB remote: a 2-node springcache-uv cluster (a, b; `--hot-copy-one-in 0 "
            "--max-body-bytes 2MiB`), %d values of 1 MiB ('a'..'z' repeating) PUT as /v1/cache/scores/<key> for "
            "keys the ring gives to a and %d for keys it gives to b, read round-robin through a with -c{%s}; "
            "nginx (1 worker, sendfile on) serves the same bytes from a file beside \"1 MiB local\"; CPU/req: "
            "node a's (the owner's for the remote reads is in the closing note)"
            % (LARGE_KEYS, LARGE_KEYS, ",".join(map(str, large_conns)))]
    preamble += ["peer gets: the other nodes' gets (springcache-uv) or served peer requests (groupcache) during "
                 "the run; hot hits: a's hot-cache hits; loads: origin loads on a and b during the run (every value "
                 "is cached before the runs; groupcache loads a key itself when its peer fetch fails)"]
    counters = ["## Cluster counters per run", "",
                "| scenario | system | conns | round | peer gets | a hot hits | loads |",
                "|---|---|---:|---:|---:|---:|---:|"]
    counters += ["| %s | %s | %d | %d | %d | %d | %d |" % (r["scenario"], r["system"], r["conns"], r["round"],
                                                          r["owner_gets"], r["hot_hits"], r["loads"]) for r in rows]
    to_local = []
    closing = []
    for c in dict.fromkeys(conns + large_conns):
        local = report.mean(rows, "local", c, "springcache-uv", "rps")
        local_cpu = report.mean(rows, "local", c, "springcache-uv", "cpu_us")
        for label in ("remote", "hot copy"):
            rps, cpu = (report.mean(rows, label, c, "springcache-uv", f) for f in ("rps", "cpu_us"))
            if local and rps:
                to_local.append("| %s | %d | %.2f | %.2f |" % (label, c, rps / local, cpu / local_cpu))
                closing.append("- %s hits, %d conns: %.0f rps, %.2f× local's; %.2f µs CPU/req on a, %.2f× "
                               "local's." % (label, c, rps, rps / local, cpu, cpu / local_cpu))
        local_1m, remote_1m, nginx_1m = ((report.mean(rows, label, c, system, "rps"),
                                          report.mean(rows, label, c, system, "cpu_us"),
                                          report.mean(rows, label, c, system, "p99"))
                                         for label, system in (("1 MiB local", "springcache-uv"),
                                                               ("1 MiB remote", "springcache-uv"),
                                                               ("1 MiB local", "nginx")))
        if local_1m[0] and remote_1m[0]:
            to_local.append("| 1 MiB remote ÷ 1 MiB local | %d | %.2f | %.2f |"
                            % (c, remote_1m[0] / local_1m[0], remote_1m[1] / local_1m[1]))
            owner = report.mean(rows, "1 MiB remote", c, "springcache-uv", "owner_cpu_us")
            errors = sum(r["errors"] for r in rows if r["scenario"] == "1 MiB remote" and r["conns"] == c)
            closing.append("- 1 MiB values, %d conns: local %.0f rps at %.1f µs CPU/req, p99 %.1f ms; through a peer "
                           "%.0f rps (%.2f× local's) at %.1f µs CPU/req on the asking node (%.2f× local's) plus "
                           "%.1f µs on the owner, p99 %.1f ms, %d errors." % (
                               c, local_1m[0], local_1m[1], local_1m[2] or 0, remote_1m[0],
                               remote_1m[0] / local_1m[0], remote_1m[1], remote_1m[1] / local_1m[1], owner or 0,
                               remote_1m[2] or 0, errors))
        if local_1m[0] and nginx_1m[0]:
            closing.append("- 1 MiB values, %d conns: nginx serving the file %.0f rps at %.1f µs CPU/req, p99 %.1f "
                           "ms; springcache-uv local %.2f× its rps at %.2f× its CPU/req; through a peer %.2f× its "
                           "rps." % (c, nginx_1m[0], nginx_1m[1], nginx_1m[2] or 0, local_1m[0] / nginx_1m[0],
                                     local_1m[1] / nginx_1m[1], (remote_1m[0] or 0) / nginx_1m[0]))
        two = {s: (report.mean(rows, "2 nodes, all through a", c, s, "rps"),
                   report.mean(rows, "2 nodes, all through a", c, s, "cpu_us")) for s in SYSTEMS if s != "nginx"}
        if all(v[0] for v in two.values()):
            closing.append("- 2 nodes, all through a, %d conns: springcache-uv %.0f rps at %.2f µs CPU/req (both "
                           "nodes), groupcache %.0f rps at %.2f µs: %.2f× less CPU per request, %.2f× the rps."
                           % (c, two["springcache-uv"][0], two["springcache-uv"][1], two["groupcache"][0],
                              two["groupcache"][1], two["groupcache"][1] / two["springcache-uv"][1],
                              two["springcache-uv"][0] / two["groupcache"][0]))
    extra = [counters]
    if to_local:
        extra.append(["## Against local hits (springcache-uv, mean over rounds)", "",
                      "| scenario | conns | rps ÷ local | CPU/req ÷ local |", "|---|---:|---:|---:|"] + to_local)
    os.makedirs(results_dir, exist_ok=True)
    stem = os.path.join(results_dir, datetime.datetime.now().strftime("%Y-%m-%d-%H%M") + "-cluster"
                        + ("-smoke" if smoke else ""))
    baselines = ["springcache-uv"] + (["nginx"] if any(r["system"] == "nginx" for r in rows) else [])
    text = report.write(stem, title, preamble, rows, baselines, extra, closing)
    print()
    print(text)
    print("written to %s.md (charts %s-rps.svg, %s-cpu.svg)" % (stem, stem, stem))


if __name__ == "__main__":
    main()

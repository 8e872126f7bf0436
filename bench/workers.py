"""Workers benchmark: one node vs `--workers 2` behind one API port, 10,000 preloaded keys, alternating runs.

Run through bench/workers.sh (make bench-workers). Scenarios, each BENCH_DURATION, BENCH_ROUNDS rounds:
  1 worker pinned    the node on CPU 1, wrk on CPU 0 (the local-hits setup of bench/run.sh)
  1 worker shared    the node and wrk unpinned, sharing both cores
  2 workers shared   the supervisor's two workers and wrk unpinned, sharing both cores
CPU per request sums utime+stime of every worker. With two workers each owns half of the keys: a request that
lands on the other worker is a remote hit over gRPC until the key has a hot copy there (1 in 10 fetches).
Environment: SPRINGCACHE_BIN, BENCH_DURATION (10s), BENCH_ROUNDS (2), BENCH_CONNS (64), BENCH_KEYS (10000).
"""
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402
import loader  # noqa: E402


def children(pid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out


def free_range(n, avoid):
    """A base port with base..base+n-1 free and clear of `avoid` (worker i serves its peer port on base+i)."""
    import socket
    while True:
        base = bench.free_port()
        if avoid in range(base, base + n):
            continue
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()


def start(binary, tmp, workers, cpu, keys):
    port = bench.free_port()
    peer = free_range(workers, avoid=port)
    args = [binary, "--api", "127.0.0.1:%d" % port, "--port", str(peer), "--jitter", "0", "--ttl", "1h",
            "--log-level", "warning", "--name", "w"]
    if workers > 1:
        args += ["--workers", str(workers)]
    log = open(os.path.join(tmp, "node-%d.log" % workers), "wb")
    proc = subprocess.Popen(bench.pinned(cpu, args), stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    bench.wait_for("http://127.0.0.1:%d/api/get?key=Tom" % port, b"value=630\n", proc)
    time.sleep(0.5)  # every worker up
    loader.api_set(("127.0.0.1", port), keys, "630")
    return {"proc": proc, "port": port, "workers": workers}


def pids(server):
    return children(server["proc"].pid) if server["workers"] > 1 else [server["proc"].pid]


def run(server, conns, duration, wrk_cpu):
    ps = pids(server)
    before = sum(bench.cpu_ticks(p) for p in ps)
    argv = ["wrk", "-t1", "-c%d" % conns, "-d%s" % duration, "--latency", "-s", os.path.join(HERE, "keys.lua"),
            "http://127.0.0.1:%d/api/get" % server["port"]]
    p = subprocess.run(bench.pinned(wrk_cpu, argv), capture_output=True, text=True)
    after = sum(bench.cpu_ticks(p) for p in ps)
    requests, rps, p50, p99, errors = bench.parse_wrk(p.stdout)
    return {"requests": requests, "rps": rps, "p50": p50, "p99": p99, "errors": errors,
            "cpu_us": (after - before) / bench.CLK_TCK * 1e6 / max(requests, 1)}


def stats(server):
    out = []
    for _ in range(20):
        with urllib.request.urlopen("http://127.0.0.1:%d/api/stats" % server["port"]) as r:
            d = json.loads(r.read())
        out.append((d["name"], d.get("cluster", {}).get("hot_copies", 0), d.get("cluster", {}).get("peer_fetches", 0)))
    return sorted(set(out))


def main():
    binary = os.path.abspath(os.environ.get("SPRINGCACHE_BIN") or os.path.join(bench.REPO, ".build/release/springcache-uv"))
    duration = os.environ.get("BENCH_DURATION", "10s")
    rounds = int(os.environ.get("BENCH_ROUNDS", "2"))
    conns = int(os.environ.get("BENCH_CONNS", "64"))
    keys = int(os.environ.get("BENCH_KEYS", "10000"))
    os.environ["BENCH_KEYS"] = str(keys)
    scenarios = [("1 worker pinned", 1, "1", "0"), ("1 worker shared", 1, None, None),
                 ("2 workers shared", 2, None, None)]
    rows = {name: [] for name, *_ in scenarios}
    notes = []
    with tempfile.TemporaryDirectory(prefix="scuv-workers-") as tmp:
        for r in range(rounds):
            for name, workers, cpu, wrk_cpu in scenarios:
                server = start(binary, tmp, workers, cpu, keys)
                try:
                    run(server, conns, "2s", wrk_cpu)  # warm-up: hot copies form on the non-owners
                    res = run(server, conns, duration, wrk_cpu)
                    rows[name].append(res)
                    if workers > 1 and r == 0:
                        notes.append("2 workers after the run (name, hot copies, peer fetches): %r" % stats(server))
                    print("round %d %-18s %9.0f rps  p50 %.3f ms  p99 %.3f ms  %.2f µs CPU/req  errors %d" % (
                        r + 1, name, res["rps"], res["p50"], res["p99"], res["cpu_us"], res["errors"]), flush=True)
                finally:
                    bench.stop(server)
    lines = ["# Workers: 1 vs 2 behind one API port (%s)" % datetime.date.today(), "",
             "10,000 keys (`keys.lua`), %d connections, %s × %d rounds; means over rounds." % (conns, duration, rounds),
             "", "| scenario | rps | p50 ms | p99 ms | CPU µs/req (all workers) | errors |", "|---|---:|---:|---:|---:|---:|"]
    for name, *_ in scenarios:
        rs = rows[name]
        lines.append("| %s | %.0f | %.3f | %.3f | %.2f | %d |" % (
            name, statistics.mean(x["rps"] for x in rs), statistics.mean(x["p50"] for x in rs),
            statistics.mean(x["p99"] for x in rs), statistics.mean(x["cpu_us"] for x in rs),
            sum(x["errors"] for x in rs)))
    lines += [""] + ["- " + n for n in notes] + ["- " + e for e in bench.environment(binary)]
    path = os.path.join(HERE, "results", "%s-workers.md" % datetime.date.today())
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print("written to", path)


if __name__ == "__main__":
    main()

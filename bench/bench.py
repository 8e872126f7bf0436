"""Local load benchmark: springcache-uv, nginx, groupcache and Varnish answering the same bytes, alternating runs.

Run through bench/run.sh (make bench). Every server is pinned to BENCH_SERVER_CPU, wrk to BENCH_WRK_CPU. For each
run: requests/s, p50 and p99 latency (wrk --latency), and the server's CPU time per request (utime+stime of its
processes from /proc/PID/stat before and after the run, divided by the requests). Systems (bench/procs.py):
springcache-uv, nginx (one worker), groupcache (bench/groupcache) and varnish (in front of that nginx).
Scenarios (BENCH_SCENARIOS, names in SCENARIOS below):
  one-key   GET /api/get?key=Tom                        every system
  keys      GET /api/get?key=k0..k{BENCH_KEYS-1} round-robin (bench/keys.lua)
  64k       GET /v1/cache/scores/v65536: 64 KiB value; nginx serves the same bytes from a file (sendfile on)
  1m        GET /v1/cache/scores/v1048576: 1 MiB value, likewise
  million   springcache-uv only: a node holding BENCH_MANY_KEYS (1,000,000) 8-byte keys read round-robin against
            a node holding BENCH_KEYS of them, and RSS per entry at BENCH_MANY_KEYS (bench/rss.py's method)
Environment: SPRINGCACHE_BIN, BENCH_DURATION (10s), BENCH_ROUNDS (2), BENCH_CONNS ("64 256"), BENCH_LARGE_CONNS
("64": the 64k and 1m scenarios), BENCH_KEYS (10000), BENCH_MANY_KEYS (1000000), BENCH_SYSTEMS ("springcache-uv
nginx groupcache varnish"), BENCH_SCENARIOS ("one-key keys 64k 1m million"), BENCH_SERVER_CPU (1),
BENCH_WRK_CPU (0), BENCH_RESULTS (bench/results), BENCH_SMOKE (0; 1 = the report is marked a smoke run and named
...-smoke.md), BENCH_ACCESS_LOG (0; 1 = the node runs with --access-log and nginx with its access_log, both to a
file in the temporary directory, and the report is ...-local-access-log.md).
A smoke run of every system and scenario: BENCH_DURATION=2s BENCH_ROUNDS=1 BENCH_SMOKE=1 bench/run.sh
"""
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import loader  # noqa: E402
import procs  # noqa: E402
import report  # noqa: E402
import rss  # noqa: E402
# Re-exported: cluster.py and workers.py use them as bench.X.
from procs import CLK_TCK, free_port, pinned, cpu_ticks, wait_for, stop  # noqa: E402,F401

SYSTEMS = ["springcache-uv", "nginx", "groupcache", "varnish"]
SCENARIOS = ["one-key", "keys", "64k", "1m", "million"]
LARGE = {"64k": 65536, "1m": 1048576}
# The node's largest value is --max-body-bytes; the 1 MiB value needs a little more than the 1 MiB default.
NODE_MAX_BODY = "2MiB"
NODE_CACHE_BYTES = "4GiB"  # room for BENCH_MANY_KEYS entries with nothing evicted


def to_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(out):
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    requests = int(m.group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for pct, v, unit in re.findall(r"^\s+(50|75|90|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M):
        lat[pct] = to_ms(v, unit)
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    return requests, rps, lat.get("50"), lat.get("99"), errors


def run_wrk(server, path, script, conns, duration, wrk_cpu):
    """One wrk run against server; CPU is counted over server["cpu_procs"] (default: its process) and children."""
    argv = ["wrk", "-t1", "-c%d" % conns, "-d%s" % duration, "--latency"]
    if script:
        argv += ["-s", script]
    argv.append("http://127.0.0.1:%d%s" % (server["port"], path))
    before = procs.server_cpu_ticks(server)
    p = subprocess.run(pinned(wrk_cpu, argv), capture_output=True, text=True)
    after = procs.server_cpu_ticks(server)
    if p.returncode != 0:
        raise RuntimeError("wrk failed: %s\n%s" % (p.stderr, p.stdout))
    requests, rps, p50, p99, errors = parse_wrk(p.stdout)
    cpu_us = (after - before) / CLK_TCK * 1e6 / max(requests, 1)
    return {"requests": requests, "rps": rps, "p50": p50, "p99": p99, "cpu_us": cpu_us, "errors": errors,
            "cpu_s": (after - before) / CLK_TCK}


ACCESS_LOG = os.environ.get("BENCH_ACCESS_LOG", "0") == "1"


def start_node(binary, cpu, tmp, keys, name="springcache-uv", extra=()):
    """A node with keys k0..k{keys-1} = 630 set through /api/set (none when keys is 0)."""
    port = free_port()
    access = ["--access-log", os.path.join(tmp, "node-access.log")] if ACCESS_LOG else []
    argv = [binary, "--api", "127.0.0.1:%d" % port, "--jitter", "0", "--ttl", "1h", "--log-level", "warning",
            "--max-body-bytes", NODE_MAX_BODY, "--cache-bytes", NODE_CACHE_BYTES] + access + list(extra)
    proc = procs.spawn(cpu, argv, os.path.join(tmp, "%s.log" % name.replace(" ", "-")))
    node = procs.answering({"name": name, "proc": proc, "port": port})
    try:
        if keys:
            loader.api_set(("127.0.0.1", port), keys, "630")
            wait_for("http://127.0.0.1:%d/api/get?key=k%d" % (port, keys - 1), b"value=630\n", proc)
    except BaseException:
        stop(node)
        raise
    return node


def put_value(node, key, value):
    req = (b"PUT /v1/cache/scores/%s?ttl=259200 HTTP/1.1\r\nHost: b\r\nContent-Length: %d\r\n\r\n"
           % (key.encode(), len(value))) + value
    loader._pipeline(("127.0.0.1", node["port"]), [req], 204)


def warm(server, paths):
    """One pipelined GET of every path (groupcache loads from its origin, Varnish from nginx), each a 200.

    The Host header is wrk's: Varnish's cache key is the URL and the Host.
    """
    host = b"127.0.0.1:%d" % server["port"]
    reqs = [b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (p.encode(), host) for p in paths]
    loader._pipeline(("127.0.0.1", server["port"]), reqs, 200)


def origin_requests(server):
    """How often the system has gone to its origin so far (None where it cannot tell): runs should be all hits."""
    if server["name"] == "varnish":
        return procs.varnish_counter(server, "MAIN.backend_req")
    if server["name"] == "groupcache":
        return json.loads(procs.fetch(server["port"], "/api/stats"))["stats"]["LocalLoads"]
    if server["name"].startswith("springcache-uv"):
        return json.loads(procs.fetch(server["port"], "/api/stats"))["loads"]
    return None


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def environment(binary):
    def out(argv):
        try:
            p = subprocess.run(argv, capture_output=True, text=True)
            return p.stdout.strip() or p.stderr.strip()
        except OSError:
            return "?"
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
    except (OSError, AttributeError):
        pass
    varnishd = shutil.which("varnishd") or "/usr/sbin/varnishd"
    return [
        "date: %s" % datetime.datetime.now().isoformat(timespec="seconds"),
        "host: %s, %d CPUs (%s), kernel %s" % (platform.node(), os.cpu_count(), model, platform.release()),
        "binary: %s (repo %s)" % (binary, out(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])),
        "nginx: %s; wrk: %s" % (out(["nginx", "-v"]), (out(["wrk", "-v"]).splitlines() or ["?"])[0]),
        "varnish: %s; go: %s; groupcache: Debian golang-github-golang-groupcache-dev %s" % (
            (out([varnishd, "-V"]).splitlines() or ["?"])[0], out(["go", "version"]),
            out(["dpkg-query", "-W", "-f=${Version}", "golang-github-golang-groupcache-dev"])),
    ]


def keys_script(tmp, name, fmt_path, count):
    """A wrk script requesting fmt_path % i for i = 0..count-1 round-robin."""
    path = os.path.join(tmp, name + ".lua")
    with open(path, "w") as f:
        f.write("-- generated by bench/bench.py\nlocal n = 0\nrequest = function()\n"
                "    local path = string.format(\"%s\", n %% %d)\n    n = n + 1\n"
                "    return wrk.format(\"GET\", path)\nend\n" % (fmt_path, count))
    return path


def words(env, default, allowed):
    got = os.environ.get(env, default).split()
    bad = [w for w in got if w not in allowed]
    if bad:
        sys.exit("bench: %s: unknown %s (known: %s)" % (env, " ".join(bad), " ".join(allowed)))
    return got


def main():
    binary = os.path.abspath(os.environ.get("SPRINGCACHE_BIN") or os.path.join(REPO, ".build/release/springcache-uv"))
    duration = os.environ.get("BENCH_DURATION", "10s")
    rounds = int(os.environ.get("BENCH_ROUNDS", "2"))
    conns = [int(c) for c in os.environ.get("BENCH_CONNS", "64 256").split()]
    large_conns = [int(c) for c in os.environ.get("BENCH_LARGE_CONNS", "64").split()]
    keys = int(os.environ.get("BENCH_KEYS", "10000"))
    many = int(os.environ.get("BENCH_MANY_KEYS", "1000000"))
    systems = words("BENCH_SYSTEMS", " ".join(SYSTEMS), SYSTEMS)
    chosen = words("BENCH_SCENARIOS", " ".join(SCENARIOS), SCENARIOS)
    smoke = os.environ.get("BENCH_SMOKE", "0") == "1"
    server_cpu, wrk_cpu = os.environ.get("BENCH_SERVER_CPU", "1"), os.environ.get("BENCH_WRK_CPU", "0")
    if (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
        print("bench: fewer than 2 CPUs or no taskset: running unpinned", file=sys.stderr)
        server_cpu = wrk_cpu = None
    results_dir = os.environ.get("BENCH_RESULTS", os.path.join(HERE, "results"))
    if "springcache-uv" not in systems:
        chosen = [c for c in chosen if c != "million"]  # a springcache-uv-only scenario
    if "springcache-uv" in systems:
        if not os.access(binary, os.X_OK):
            sys.exit("bench: no binary at %s (build it or set SPRINGCACHE_BIN)" % binary)
    procs.tool("wrk")
    if "groupcache" in systems:
        procs.groupcache_binary()  # build (or fail with one line) before anything starts
    if "varnish" in systems:
        procs.tool("varnishd")
    procs.stop_on_signals()

    tmp = tempfile.mkdtemp(prefix="springcache-bench-")
    os.environ["BENCH_KEYS"] = str(keys)
    sizes = [LARGE[s] for s in chosen if s in LARGE]
    started = []
    rows = []
    memory = None
    try:
        servers = {}
        if "springcache-uv" in systems:
            servers["springcache-uv"] = start_node(binary, server_cpu, tmp, keys if "keys" in chosen else 0)
            started.append(servers["springcache-uv"])
            for size in sizes:
                put_value(servers["springcache-uv"], "v%d" % size, procs.value_bytes(size))
        if "nginx" in systems or "varnish" in systems:
            nginx = procs.start_nginx(server_cpu, tmp, sizes,
                                      os.path.join(tmp, "nginx-access.log") if ACCESS_LOG else None)
            started.append(nginx)
            if "nginx" in systems:
                servers["nginx"] = nginx
        if "groupcache" in systems:
            servers["groupcache"] = procs.start_groupcache(server_cpu, tmp)
            started.append(servers["groupcache"])
        if "varnish" in systems:
            servers["varnish"] = procs.start_varnish(server_cpu, tmp, nginx["port"])
            started.append(servers["varnish"])
        order = [s for s in systems if s in servers]

        # (name, label, path, wrk script, connection counts, {system: server}, (sample path, expected body))
        scenarios = []
        if "one-key" in chosen:
            scenarios.append(("one-key", "one key (Tom)", "/api/get?key=Tom", None, conns, servers,
                              ("/api/get?key=Tom", b"value=630\n")))
        if "keys" in chosen:
            scenarios.append(("keys", "%d keys" % keys, "/", os.path.join(HERE, "keys.lua"), conns, servers,
                              ("/api/get?key=k%d" % (keys - 1), b"value=630\n")))
            for name in ("groupcache", "varnish"):
                if name in servers:
                    warm(servers[name], ["/api/get?key=k%d" % i for i in range(keys)])
        for name, size in LARGE.items():
            if name in chosen:
                path = "/v1/cache/scores/v%d" % size
                label = "%s value" % ("64 KiB" if size == 65536 else "1 MiB")
                scenarios.append((name, label, path, None, large_conns, servers, (path, procs.value_bytes(size))))
        if "million" in chosen:
            few = start_node(binary, server_cpu, tmp, 0, "springcache-uv %d keys" % keys)
            started.append(few)
            loader.put_8byte(("127.0.0.1", few["port"]), keys)
            lots = start_node(binary, server_cpu, tmp, 0, "springcache-uv %d keys" % many)
            started.append(lots)
            memory = rss.measure_entries(lots["port"], lots["proc"].pid, many)
            fmt_path = "/v1/cache/scores/k%07d"
            label = "8-byte keys, /v1/cache"
            script = keys_script(tmp, "many", fmt_path, many)
            # One scenario, two nodes: the same requests over many keys and over few, side by side.
            few_script = keys_script(tmp, "few", fmt_path, keys)
            scenarios.append(("million", label, "/", script, conns, {lots["name"]: lots},
                              ("/v1/cache/scores/k%07d" % (many - 1), b"v%07d" % (many - 1))))
            scenarios.append(("million", label, "/", few_script, conns, {few["name"]: few},
                              ("/v1/cache/scores/k%07d" % (keys - 1), b"v%07d" % (keys - 1))))
            order += [few["name"], lots["name"]]

        # Every system answers the same bytes before anything is measured.
        for _, label, _, _, _, targets, (sample, expect) in scenarios:
            for name, server in targets.items():
                got = procs.fetch(server["port"], sample)
                if got != expect:
                    raise RuntimeError("%s answers %d bytes for %s (%s), expected %d" % (
                        name, len(got), sample, label, len(expect)))

        # Scenarios of one label (the million pair) alternate as one: each round runs every system of the label.
        runs = {}
        for _, label, path, script, conn_list, targets, _ in scenarios:
            for name, server in targets.items():
                runs.setdefault(label, (conn_list, {}))[1][name] = (server, path, script)
        for label, (conn_list, targets) in runs.items():
            for c in conn_list:
                for r in range(1, rounds + 1):
                    for name in [s for s in order if s in targets]:  # alternate, so drift hits every system
                        server, path, script = targets[name]
                        before = origin_requests(server)
                        res = run_wrk(server, path, script, c, duration, wrk_cpu)
                        after = origin_requests(server)
                        rows.append(dict(res, scenario=label, conns=c, system=name, round=r,
                                         origin=None if before is None else after - before))
                        print("%-18s c=%-4d %-15s round %d: %9.0f rps  p50 %7s ms  p99 %7s ms  %6.2f us CPU/req"
                              "  errors %d" % (label, c, name, r, res["rps"], fmt(res["p50"], ".3f"),
                                               fmt(res["p99"], ".3f"), res["cpu_us"], res["errors"]), flush=True)
                        for s in started:
                            if s["proc"].poll() is not None:
                                raise RuntimeError("%s died during the run" % s["name"])
    finally:
        for s in reversed(started):
            stop(s)
        shutil.rmtree(tmp, ignore_errors=True)

    title = "springcache-uv vs nginx, groupcache and Varnish, local"
    if smoke:
        title += " — SMOKE RUN (figures not meaningful)"
    preamble = ([("**Smoke run**: short runs on a busy machine, to show every system and scenario works and the "
                  "report comes out; the figures are not meaningful.")] if smoke else [])
    preamble += environment(binary)
    preamble += [
        "wrk -t1 -c{%s} -d%s --latency (large values: -c{%s}), pinned to CPU %s; every server pinned to CPU %s; "
        "runs alternate between systems, %d rounds" % (",".join(map(str, conns)), duration,
                                                      ",".join(map(str, large_conns)), wrk_cpu, server_cpu, rounds),
        "springcache-uv: --jitter 0 --ttl 1h --log-level warning --max-body-bytes %s --cache-bytes %s; %d keys "
        "k0..k%d = 630 set with /api/set; the large values PUT as /v1/cache/scores/v<SIZE>"
        % (NODE_MAX_BODY, NODE_CACHE_BYTES, keys, keys - 1),
        "nginx: 1 worker, master_process off, access_log %s, `return 200 \"value=630\\n\"` on /api/get, the large "
        "values as files (sendfile on)" % ("to a file" if ACCESS_LOG else "off"),
        "groupcache: bench/groupcache (golang/groupcache, one node, cacheBytes 256 MiB, GOMAXPROCS = its one "
        "pinned CPU), values from an in-process origin with the same bytes; every key read once before the runs",
        "varnish: varnishd -j none -s malloc,1G -t 3600 (default thread pools) in front of that nginx; every key "
        "read once before the runs, so the runs are cache hits",
        "every system's answer to each scenario's sample request was checked byte for byte before the runs",
        origin_summary(rows),
        "CPU/req: the server's utime+stime (Varnish: manager and child) from /proc/PID/stat over the run, divided "
        "by requests (tick %d Hz)" % CLK_TCK,
    ]
    extra = []
    closing = closing_note(rows, keys, many, memory)
    if memory:
        extra.append(["## RSS per entry at %d keys" % many, "",
                      "8-byte keys and values PUT pipelined into a fresh node (bench/rss.py's method): idle RSS "
                      "%.1f MiB, after %.1f MiB (load %.1f s): **%.1f bytes per entry, %.1f beyond key and value**."
                      % (memory["idle_kib"] / 1024, memory["loaded_kib"] / 1024, memory["load_s"],
                         memory["per_entry"], memory["per_entry"] - 16)])
    os.makedirs(results_dir, exist_ok=True)
    suffix = "-local-access-log" if ACCESS_LOG else "-local"
    stem = os.path.join(results_dir, datetime.datetime.now().strftime("%Y-%m-%d-%H%M") + suffix
                        + ("-smoke" if smoke else ""))
    text = report.write(stem, title, preamble, rows, ["nginx", "springcache-uv"], extra, closing)
    print()
    print(text)
    print("written to %s.md (charts %s-rps.svg, %s-cpu.svg)" % (stem, stem, stem))


def origin_summary(rows):
    """Whether the runs were all cache hits: origin loads (groupcache, springcache-uv) and backend requests
    (Varnish) counted over each run."""
    missed = ["%s %s c=%d round %d: %d" % (r["system"], r["scenario"], r["conns"], r["round"], r["origin"])
              for r in rows if r.get("origin")]
    if not missed:
        return ("origin requests during the runs (springcache-uv and groupcache loads, Varnish backend requests): "
                "none, every request was a cache hit")
    return "origin requests during the runs (not all hits): " + "; ".join(missed)


def closing_note(rows, keys, many, memory):
    """One line per scenario: each system's rps and CPU per request as ratios to nginx's and springcache-uv's."""
    lines = []
    for scenario, c in report.groups(rows):
        m = {s: (report.mean(rows, scenario, c, s, "rps"), report.mean(rows, scenario, c, s, "cpu_us"))
             for s in report.systems_of(rows) if report.mean(rows, scenario, c, s, "rps") is not None}
        parts = []
        for s, (rps, cpu) in m.items():
            ratios = ["%.2f× %s's rps at %.2f× its CPU/req" % (rps / m[b][0], b, cpu / m[b][1])
                      for b in ("nginx", "springcache-uv") if b in m and b != s and not (s == "nginx")]
            parts.append("%s %.0f rps, %.2f µs%s" % (s, rps, cpu, (" (" + "; ".join(ratios) + ")") if ratios else ""))
        lines.append("- %s, %d conns: %s." % (scenario, c, ", ".join(parts)))
    for c in dict.fromkeys(r["conns"] for r in rows):
        lots = report.mean(rows, "8-byte keys, /v1/cache", c, "springcache-uv %d keys" % many, "rps")
        few = report.mean(rows, "8-byte keys, /v1/cache", c, "springcache-uv %d keys" % keys, "rps")
        if lots and few:
            lines.append("- %d keys against %d keys, %d conns: %.2f× the rps." % (many, keys, c, lots / few))
    if memory:
        lines.append("- RSS per entry at %d keys: %.1f bytes beyond the 16 of key and value."
                     % (many, memory["per_entry"] - 16))
    return lines


if __name__ == "__main__":
    main()

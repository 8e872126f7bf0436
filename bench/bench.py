"""Local load benchmark: springcache-uv against nginx answering the same bytes, alternating runs.

Run through bench/run.sh. The node and nginx (one worker, no master) are pinned to one CPU, wrk to
another. For each run: requests/s, p50 and p99 latency (wrk --latency), and the server's CPU time
per request (utime+stime from /proc/PID/stat before and after the run, divided by the requests).
Environment: SPRINGCACHE_BIN, BENCH_DURATION (10s), BENCH_ROUNDS (2), BENCH_CONNS ("64 256"),
BENCH_KEYS (10000), BENCH_SERVER_CPU (1), BENCH_WRK_CPU (0), BENCH_RESULTS (bench/results),
BENCH_ACCESS_LOG (0; 1 = the node runs with --access-log and nginx with its access_log, both to a file in the
temporary directory, and the report is <date>-local-access-log.md).
"""
import datetime
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import loader  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 65s;
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            default_type application/octet-stream;
            return 200 "value=630\\n";
        }}
    }}
}}
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pinned(cpu, argv):
    return (["taskset", "-c", str(cpu)] + argv) if cpu is not None else argv


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def wait_for(url, expect, proc, timeout=10):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s" % (proc.args, proc.returncode))
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                body = r.read()
            if body == expect:
                return
            last = body
        except OSError as e:
            last = e
        time.sleep(0.02)
    raise RuntimeError("%s did not answer %r: %r" % (url, expect, last))


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
    argv = ["wrk", "-t1", "-c%d" % conns, "-d%s" % duration, "--latency"]
    if script:
        argv += ["-s", script]
    argv.append("http://127.0.0.1:%d%s" % (server["port"], path))
    before = cpu_ticks(server["proc"].pid)
    p = subprocess.run(pinned(wrk_cpu, argv), capture_output=True, text=True)
    after = cpu_ticks(server["proc"].pid)
    if p.returncode != 0:
        raise RuntimeError("wrk failed: %s\n%s" % (p.stderr, p.stdout))
    requests, rps, p50, p99, errors = parse_wrk(p.stdout)
    cpu_us = (after - before) / CLK_TCK * 1e6 / max(requests, 1)
    return {"requests": requests, "rps": rps, "p50": p50, "p99": p99, "cpu_us": cpu_us, "errors": errors,
            "cpu_s": (after - before) / CLK_TCK}


ACCESS_LOG = os.environ.get("BENCH_ACCESS_LOG", "0") == "1"


def start_node(binary, cpu, tmp, keys):
    port = free_port()
    log = open(os.path.join(tmp, "node.log"), "wb")
    access = ["--access-log", os.path.join(tmp, "node-access.log")] if ACCESS_LOG else []
    proc = subprocess.Popen(pinned(cpu, [binary, "--api", "127.0.0.1:%d" % port, "--jitter", "0", "--ttl", "1h",
                                         "--log-level", "warning"] + access),
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    wait_for("http://127.0.0.1:%d/api/get?key=Tom" % port, b"value=630\n", proc)
    loader.api_set(("127.0.0.1", port), keys, "630")
    wait_for("http://127.0.0.1:%d/api/get?key=k%d" % (port, keys - 1), b"value=630\n", proc)
    return {"name": "node", "proc": proc, "port": port}


def start_nginx(cpu, tmp):
    port = free_port()
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        conf_text = NGINX_CONF.format(tmp=tmp, port=port)
        if ACCESS_LOG:
            conf_text = conf_text.replace("access_log off;", "access_log %s/nginx-access.log;" % tmp)
        f.write(conf_text)
    log = open(os.path.join(tmp, "nginx.out"), "wb")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen(pinned(cpu, [nginx, "-p", tmp, "-e", os.path.join(tmp, "nginx-error.log"), "-c", conf]),
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    wait_for("http://127.0.0.1:%d/api/get?key=Tom" % port, b"value=630\n", proc)
    return {"name": "nginx", "proc": proc, "port": port}


def stop(server):
    p = server["proc"]
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def environment(binary):
    def out(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True).stdout.strip() or \
                subprocess.run(argv, capture_output=True, text=True).stderr.strip()
        except OSError:
            return "?"
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = re.search(r"model name\s*:\s*(.*)", f.read()).group(1)
    except (OSError, AttributeError):
        pass
    return [
        "date: %s" % datetime.datetime.now().isoformat(timespec="seconds"),
        "host: %s, %d CPUs (%s), kernel %s" % (platform.node(), os.cpu_count(), model, platform.release()),
        "binary: %s (repo %s)" % (binary, out(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])),
        "nginx: %s; wrk: %s" % (out(["nginx", "-v"]), out(["wrk", "-v"]).splitlines()[0] if out(["wrk", "-v"]) else "?"),
    ]


def main():
    binary = os.path.abspath(os.environ.get("SPRINGCACHE_BIN") or os.path.join(REPO, ".build/release/springcache-uv"))
    duration = os.environ.get("BENCH_DURATION", "10s")
    rounds = int(os.environ.get("BENCH_ROUNDS", "2"))
    conns = [int(c) for c in os.environ.get("BENCH_CONNS", "64 256").split()]
    keys = int(os.environ.get("BENCH_KEYS", "10000"))
    server_cpu, wrk_cpu = os.environ.get("BENCH_SERVER_CPU", "1"), os.environ.get("BENCH_WRK_CPU", "0")
    if (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
        print("bench: fewer than 2 CPUs or no taskset: running unpinned", file=sys.stderr)
        server_cpu = wrk_cpu = None
    results_dir = os.environ.get("BENCH_RESULTS", os.path.join(HERE, "results"))
    if not os.access(binary, os.X_OK):
        sys.exit("bench: no binary at %s (build it or set SPRINGCACHE_BIN)" % binary)

    tmp = tempfile.mkdtemp(prefix="springcache-bench-")
    os.environ["BENCH_KEYS"] = str(keys)
    servers = []
    rows = []
    try:
        node = start_node(binary, server_cpu, tmp, keys)
        servers.append(node)
        nginx = start_nginx(server_cpu, tmp)
        servers.append(nginx)
        scenarios = [("one key (Tom)", "/api/get?key=Tom", None),
                     ("%d keys" % keys, "/", os.path.join(HERE, "keys.lua"))]
        for label, path, script in scenarios:
            for c in conns:
                for r in range(1, rounds + 1):
                    for server in (node, nginx):  # alternate, so drift on a shared machine hits both
                        res = run_wrk(server, path, script, c, duration, wrk_cpu)
                        row = dict(res, scenario=label, conns=c, server=server["name"], round=r)
                        rows.append(row)
                        print("%-16s c=%-4d %-6s round %d: %9.0f rps  p50 %7s ms  p99 %7s ms  %6.2f us CPU/req"
                              "  errors %d" % (label, c, server["name"], r, res["rps"], fmt(res["p50"], ".3f"),
                                               fmt(res["p99"], ".3f"), res["cpu_us"], res["errors"]), flush=True)
                        if server["proc"].poll() is not None:
                            raise RuntimeError("%s died during the run" % server["name"])
    finally:
        for s in servers:
            stop(s)
        shutil.rmtree(tmp, ignore_errors=True)

    lines = ["# springcache-uv vs nginx, local", ""]
    lines += ["- " + e for e in environment(binary)]
    lines += ["- wrk -t1 -c{64,256} -d%s --latency, pinned to CPU %s; node and nginx (1 worker, master_process off, "
              "access_log %s, `return 200 \"value=630\\n\"`) pinned to CPU %s; runs alternate node/nginx, %d rounds"
              % (duration, wrk_cpu, "to a file" if ACCESS_LOG else "off", server_cpu, rounds),
              "- access log: %s" % ("node --access-log FILE, nginx access_log FILE (combined format)" if ACCESS_LOG
                                    else "off on both"),
              "- node: --jitter 0 --ttl 1h --log-level warning; %d keys k0..k%d preloaded with /api/set "
              "(value 630, so node and nginx send bodies of the same size); the keys scenario requests them "
              "round-robin through bench/keys.lua, nginx gets the same paths" % (keys, keys - 1),
              "- CPU/req: server utime+stime delta from /proc/PID/stat over the run, divided by requests "
              "(tick %d Hz)" % CLK_TCK, "",
              "## Runs", "",
              "| scenario | conns | server | round | requests/s | p50 ms | p99 ms | CPU µs/req | errors |",
              "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append("| %s | %d | %s | %d | %.0f | %s | %s | %.2f | %d |" % (
            row["scenario"], row["conns"], row["server"], row["round"], row["rps"], fmt(row["p50"], ".3f"),
            fmt(row["p99"], ".3f"), row["cpu_us"], row["errors"]))
    lines += ["", "## Summary (mean over rounds; ratio = node / nginx)", "",
              "| scenario | conns | node rps | nginx rps | rps ratio | node CPU µs/req | nginx CPU µs/req | CPU ratio "
              "| node p99 ms | nginx p99 ms |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label in dict.fromkeys(r["scenario"] for r in rows):
        for c in conns:
            def mean(server, field):
                vals = [r[field] for r in rows if r["scenario"] == label and r["conns"] == c
                        and r["server"] == server and r[field] is not None]
                return statistics.mean(vals) if vals else None
            nr, gr = mean("node", "rps"), mean("nginx", "rps")
            nc, gc = mean("node", "cpu_us"), mean("nginx", "cpu_us")
            lines.append("| %s | %d | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f | %s | %s |" % (
                label, c, nr, gr, nr / gr, nc, gc, (nc / gc) if gc else float("nan"),
                fmt(mean("node", "p99"), ".3f"), fmt(mean("nginx", "p99"), ".3f")))
    report = "\n".join(lines) + "\n"
    print()
    print(report)
    os.makedirs(results_dir, exist_ok=True)
    suffix = "-local-access-log.md" if ACCESS_LOG else "-local.md"
    path = os.path.join(results_dir, datetime.date.today().isoformat() + suffix)
    with open(path, "w") as f:
        f.write(report)
    print("written to %s" % path)


if __name__ == "__main__":
    main()

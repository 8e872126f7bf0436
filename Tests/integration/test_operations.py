"""Running it in production (issue 12): start-up failures, signals, failure logging, the access log, the
metrics listener per worker scraped by a real Prometheus, the deployment kit (systemd unit, dashboard).

Every process is real: the springcache-uv binary, etcd, Prometheus (Debian's package), promtool and
systemd-analyze; all on 127.0.0.1, all stopped at teardown.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from harness import DEADLINE, Node, Origin, binary_path, free_peer_port, free_peer_port_range, parse_prometheus, wait_until

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY = os.path.join(REPO, "deploy")
CRASH_MARKERS = ("precondition", "Fatal error", "fatal error", "Stack dump", "backtrace", "Illegal instruction")


def run(args, timeout=30):
    """Runs the binary to completion; returns (exit code, stderr text)."""
    r = subprocess.run([binary_path(), *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    return r.returncode, (r.stderr + r.stdout).decode("utf-8", "replace")


def scrape(port, timeout=5):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=timeout) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return r.read().decode()


# --- start-up failures ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["single", "cluster", "workers"])
def test_busy_api_port_is_one_line_and_exit_1(mode):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        args = ["--api", "127.0.0.1:%d" % port]
        if mode == "cluster":
            args += ["--name", "a", "--peer", "a=127.0.0.1:%d" % free_peer_port()]
        elif mode == "workers":
            args += ["--workers", "2", "--port", str(free_peer_port_range(2))]
        t0 = time.monotonic()
        code, log = run(args)
        took = time.monotonic() - t0
    finally:
        taken.close()
    print("\n[observed] %s: exit %d after %.2f s; log:\n%s" % (mode, code, took, log))
    assert code == 1, log
    assert not any(m in log for m in CRASH_MARKERS), log
    failures = [line for line in log.splitlines() if " critical " in line or " error " in line]
    cause = [line for line in failures if "--api 127.0.0.1:%d: address already in use" % port in line]
    # One line per process: with workers, each worker that got as far as binding says it once.
    expected = (1, 2) if mode == "workers" else (1,)
    assert len(cause) in expected, "one line naming the flag and the cause expected: %r" % failures
    assert len({re.search(r"pid=(\d+)", line).group(1) for line in cause}) == len(cause), cause
    assert "restarting worker" not in log, "a worker that cannot start must not be restarted:\n" + log
    if mode == "workers":
        assert any("could not start" in line and "stopping all workers" in line for line in failures), log


def test_busy_peer_port_names_the_flag():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    peer = taken.getsockname()[1]
    try:
        code, log = run(["--api", "127.0.0.1:0", "--name", "a", "--peer", "a=127.0.0.1:%d" % peer])
    finally:
        taken.close()
    assert code == 1, log
    assert not any(m in log for m in CRASH_MARKERS), log
    assert "address already in use" in log and "--peer a=127.0.0.1:%d:" % peer in log, log
    assert len([l for l in log.splitlines() if " critical " in l]) == 1, log


@pytest.mark.parametrize("args, words", [
    (["--cache-bytes", "-5"], "--cache-bytes must not be negative"),
    (["--ttl", "-1s"], "--ttl must not be negative"),
    (["--cache-bytes", "0"], "--cache-bytes 0 cannot hold any value"),
    (["--origin-timeout", "0"], "--origin-timeout expects a duration from 1ms to 60s"),
    (["--cache-bytes", "12XB"], "--cache-bytes expects a size"),
    (["--port", "9000", "--name", "a", "--peer", "a=127.0.0.1:8001"], "--port 9000 disagrees"),
    (["--workers", "2", "--name", "a", "--peer", "a=127.0.0.1:8001,b=127.0.0.1:8002"], "--workers 2 with --peer a="),
    (["--metrics", "127.0.0.1:9999", "--api", "127.0.0.1:9999"], "would share port 9999 with --api"),
    (["--log-format", "xml"], "--log-format expects text or json"),
    (["--idle-timeout", "0"], "--idle-timeout must be greater than 0"),
    (["--timer-tick", "2s"], "--timer-tick expects a duration from 1ms to 1s"),
    (["--peer-ping-timeout", "0"], "--peer-ping-timeout must be greater than 0"),
    (["--socket-unsent-bytes", "-1"], "--socket-unsent-bytes must not be negative"),
    (["--socket-unsent-bytes-before-reading", "1KiB"], "--socket-unsent-bytes-before-reading must be at least 4KiB"),
])
def test_bad_flags_are_one_usage_error_naming_the_flag(args, words):
    code, log = run(args)
    assert code == 64, (code, log)
    assert words in log, log
    assert not any(m in log for m in CRASH_MARKERS), log


def test_unreadable_token_file_is_one_line_and_exit_1(tmp_path):
    code, log = run(["--api", "127.0.0.1:0", "--auth-token-file", str(tmp_path / "absent")])
    assert code == 1, log
    assert len(log.strip().splitlines()) == 1 and "--auth-token-file: cannot read" in log, log


def test_sizes_hostnames_and_version():
    code, out = run(["--version"])
    assert code == 0 and re.fullmatch(r"springcache-uv \d+\.\d+\.\d+\n", out), out
    n = Node("--api", "localhost:0", "--cache-bytes", "1TiB", "--hot-bytes", "5GB")
    try:
        stats = json.loads(n.request("GET", "/api/stats")[2])
        assert stats["config"]["cache_bytes"] == 1 << 40 and stats["config"]["hot_bytes"] == 5 * 10**9
        assert stats["version"] and stats["rss_bytes"] > 0 and stats["uptime_seconds"] >= 0
        assert stats["config"]["api"].startswith("127.0.0.1:"), "localhost resolved to a numeric address"
    finally:
        n.stop()
        n.cleanup()


def test_workers_beyond_the_cores_are_warned_about():
    n = os.cpu_count() + 1
    node = Node("--api", "127.0.0.1:%d" % free_peer_port(), "--port", str(free_peer_port_range(n)),
                "--workers", str(n), "--name", "w")
    try:
        assert "--workers %d is more than the %d cores" % (n, os.cpu_count()) in node.log_text()
    finally:
        assert node.stop(timeout=15) == 0
        node.cleanup()


# --- signals -------------------------------------------------------------------------------------


def test_sighup_rereads_the_token_and_other_signals_do_not_stop_the_node(tmp_path):
    token = tmp_path / "token"
    token.write_text("old-token-1\n")
    n = Node("--auth-token-file", str(token))
    try:
        def put(tok):
            return n.request("PUT", "/v1/cache/scores/k", body=b"v", headers={"Authorization": "Bearer " + tok})[0]
        assert put("old-token-1") in (200, 201, 204)
        token.write_text("new-token-2\n")
        n.send_signal(signal.SIGHUP)
        wait_until(lambda: put("new-token-2") in (200, 201, 204), 10, what="the rotated token accepted")
        assert put("old-token-1") == 401
        assert "re-read --auth-token-file" in n.log_text()
        for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
            n.send_signal(sig)
        wait_until(lambda: n.log_text().count("ignored (SIGHUP re-reads") >= 2, 10, what="USR1/USR2 logged")
        assert n.alive() and n.get("Tom")[2] == b"value=630\n"
        # A rotation that leaves the file unreadable keeps the current token (and says so).
        token.unlink()
        n.send_signal(signal.SIGHUP)
        wait_until(lambda: "keeping the previous API token" in n.log_text(), 10, what="failed re-read logged")
        assert put("new-token-2") in (200, 201, 204)
    finally:
        assert n.stop() == 0
        n.cleanup()


def test_sighup_reaches_every_worker(tmp_path):
    token = tmp_path / "token"
    token.write_text("old-token-1\n")
    node = Node("--api", "127.0.0.1:%d" % free_peer_port(), "--port", str(free_peer_port_range(2)),
                "--workers", "2", "--name", "w", "--auth-token-file", str(token))
    try:
        def puts(tok, n=16):
            # Fresh connections: the kernel spreads them over both workers.
            return [node.request("PUT", "/v1/cache/scores/k%d" % i, body=b"v",
                                 headers={"Authorization": "Bearer " + tok})[0] for i in range(n)]
        wait_until(lambda: all(s == 204 for s in puts("old-token-1")), 10, what="both workers serving")
        token.write_text("new-token-2\n")
        node.send_signal(signal.SIGHUP)
        wait_until(lambda: node.log_text().count("re-read --auth-token-file") == 2, 10,
                   what="both workers re-reading the token")
        # Polled, not asserted once: a PUT of a key the other worker owns is forwarded to it, and the rotation is
        # what is under test, not one forwarded write on a busy machine (a single try failed once in five clean
        # runs, statuses not recorded). Every status seen is in the message if it never settles.
        seen = []
        try:
            wait_until(lambda: seen.append((puts("new-token-2"), puts("old-token-1"))) or
                       (all(s == 204 for s in seen[-1][0]) and all(s == 401 for s in seen[-1][1])), DEADLINE,
                       what="new token accepted (204) and old refused (401) on both workers")
        except AssertionError as e:
            raise AssertionError("%s; statuses per try (new, old): %r\n%s" % (e, seen[-5:], node.log_text()[-3000:]))
        if len(seen) > 1:
            print("NOTE: the rotation settled after %d tries: %r" % (len(seen), seen[:-1]))
        assert node.alive()
    finally:
        assert node.stop(timeout=15) == 0
        node.cleanup()


# --- failures in the log, the access log ---------------------------------------------------------


def test_unreachable_origin_is_logged_once_per_interval_and_hidden_from_clients():
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens there now: connections are refused
    n = Node("--origin", "http://127.0.0.1:%d/v/{key}" % port, "--failure-log-interval", "1s",
             "--negative-ttl", "0")
    try:
        for i in range(30):
            status, _, body, _ = n.get("missing-%d" % i)
            assert status == 502, (status, body)
            assert b"origin unreachable" in body, body
            assert b"127.0.0.1" not in body and str(port).encode() not in body, body
        summary = wait_until(lambda: [l for l in n.log_text().splitlines() if "more in the last" in l], 10,
                             what="a summary of the repeated failures")
        log = n.log_text().splitlines()
        logged = [l for l in log if "origin load failed" in l]
        print("\n[observed] %d failures -> %d lines; first: %s\nsummary: %s" % (30, len(logged), logged[0],
                                                                              summary[0]))
        assert "Connection refused" in logged[0] or "connect" in logged[0].lower(), logged[0]
        assert "127.0.0.1:%d" % port in logged[0], "the log names the origin and its cause"
        assert len(logged) < 30, "every failure was logged: %d lines" % len(logged)
        summed = sum(int(re.search(r"(\d+) more in the last", l).group(1)) for l in summary)
        assert summed + len(logged) >= 30 - 1, (summed, len(logged))
        stats = scrape_api(n)
        assert "springcache_origin_requests_total{node=\"springcache-uv\",outcome=\"unreachable\"} 30" in stats
    finally:
        n.stop()
        n.cleanup()


def test_etcd_outage_is_logged_once_per_interval_and_members_joining_are_logged():
    from etcd_harness import Etcd
    etcd = Etcd()
    nodes = []
    try:
        a = Node("--name", "a", "--port", str(free_peer_port()), "--etcd", etcd.endpoint)
        nodes.append(a)
        b = Node("--name", "b", "--port", str(free_peer_port()), "--etcd", etcd.endpoint)
        nodes.append(b)
        wait_until(lambda: "member b joined" in a.log_text(), 15, what="a logging that b joined")
        etcd.stop()
        down = time.monotonic()
        # Discovery retries every 0.2 … 2 s: several failures within the 10 s interval, logged once.
        wait_until(lambda: time.monotonic() - down > 6 and a.log_text().count("of springcache/members/ failed") >= 1,
                   20, interval=0.5, what="six seconds of etcd outage")
        logged = a.log_text().count("of springcache/members/ failed")
        etcd.start()
        line = wait_until(lambda: [l for l in a.log_text().splitlines() if "etcd watch works again" in l], 20,
                          what="the summary once etcd answers again")
        print("\n[observed] etcd down %.1f s: %d watch-failure line(s); then: %s" % (
            time.monotonic() - down, logged, line[0]))
        assert logged == 1, a.log_text()[-3000:]
        assert re.search(r"etcd watch failures: \d+ more in the last", line[0]), line
        assert a.log_text().count("member b joined") == 1, "a join is logged once, not again after the outage"
    finally:
        for n in nodes:
            n.stop()
            n.cleanup()
        etcd.cleanup()


def scrape_api(n):
    return n.request("GET", "/metrics")[2].decode()


def test_access_log_has_one_line_per_request(tmp_path):
    path = tmp_path / "access.log"
    origin = Origin()
    origin.values["slowish"] = b"x"
    n = Node("--access-log", str(path), "--origin", origin.url)
    try:
        n.get("slowish")                  # a miss: answered later (deferred)
        n.get("slowish")                  # a hit
        n.request("GET", "/nope?\"quote\"")
        raw = n.raw()
        raw.send(b"BREW /pot HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n")
        raw.read_response()
        raw.close()
        lines = wait_until(lambda: path.exists() and path.read_text().splitlines()[:4] if path.exists() and
                           len(path.read_text().splitlines()) >= 4 else None, 10, what="four access-log lines")
        pattern = re.compile(r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "(.*)" (\d{3}) (\d+) '
                             r'(\d+\.\d{6})$')
        parsed = [pattern.match(l) for l in lines]
        assert all(parsed), lines
        assert [(m.group(1), m.group(2)) for m in parsed] == [
            ("GET /api/get?key=slowish HTTP/1.1", "200"), ("GET /api/get?key=slowish HTTP/1.1", "200"),
            ('GET /nope?\\x22quote\\x22 HTTP/1.1', "404"), ("BREW /pot HTTP/1.1", "400")], lines
        print("\n[observed] access log line: %s" % lines[0])
    finally:
        n.stop()
        n.cleanup()
        origin.stop()


def test_json_log_lines_carry_ms_pid_and_node():
    n = Node("--log-format", "json", "--name", "j1")
    try:
        pass
    finally:
        n.stop()
        text = n.log_text()
        n.cleanup()
    lines = [json.loads(l) for l in text.splitlines() if l.strip()]
    assert lines and all(set(("ts", "level", "pid", "node", "msg")) <= set(l) for l in lines), text
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", l["ts"]) for l in lines), text
    assert {l["node"] for l in lines} == {"j1"} and {l["pid"] for l in lines} == {n.proc.pid}


def test_explicit_ttl_is_honoured_without_jitter():
    n = Node("--jitter", "3m")
    try:
        assert n.request("PUT", "/v1/cache/scores/ttl60?ttl=60", body=b"v")[0] in (200, 201, 204)
        status, headers, _, _ = n.request("GET", "/v1/cache/scores/ttl60")
        assert status == 200 and 55 <= int(headers["cache-control"].split("=")[1]) <= 60, headers
    finally:
        n.stop()
        n.cleanup()


# --- every worker in Prometheus ------------------------------------------------------------------


@pytest.fixture(scope="module")
def monitored():
    """etcd, an HTTP origin, and a node with --workers 2 and a metrics port per worker, with some traffic."""
    from etcd_harness import Etcd
    etcd = Etcd()
    origin = Origin()
    origin.value_of = lambda key: b"v-" + key.encode()
    metrics = free_peer_port_range(2)
    api = free_peer_port()
    node = None
    try:
        node = Node("--api", "127.0.0.1:%d" % api, "--port", str(free_peer_port_range(2)), "--workers", "2",
                    "--name", "m", "--etcd", etcd.endpoint, "--origin", origin.url, "--metrics",
                    "127.0.0.1:%d" % metrics)
        ports = [metrics, metrics + 1]
        wait_until(lambda: all("springcache_etcd_registered" in scrape(p) and
                               re.search(r'springcache_peer_up\{[^}]*\} 1', scrape(p)) for p in ports),
                   20, what="both workers registered in etcd and seeing each other")
        # Traffic through the shared port: misses load from the origin, keys owned by the other worker go
        # through a peer call, hits are answered locally.
        for round_ in range(2):
            for i in range(40):
                assert node.get("key-%d" % i)[0] == 200
        yield node, ports, etcd
    finally:
        if node:
            node.stop(timeout=15)
            node.cleanup()
        origin.stop()
        etcd.cleanup()


def test_promtool_accepts_a_live_scrape_of_each_worker(monitored):
    _, ports, _ = monitored
    for port in ports:
        text = scrape(port)
        r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
        out = (r.stdout + r.stderr).decode()
        assert r.returncode == 0 and out.strip() == "", "promtool: %s" % out
        types, samples = parse_prometheus(text)
        assert types["process_cpu_seconds_total"] == "counter"
        # The metrics port serves metrics only: the cache's routes are not reachable there.
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen("http://127.0.0.1:%d/api/get?key=key-1" % port, timeout=5)
        assert answer.value.code == 404
        assert any(n == "springcache_build_info" and ls.get("version") for n, ls, _ in samples)


def test_prometheus_scrapes_both_workers(monitored, tmp_path):
    _, ports, _ = monitored
    web = free_peer_port()
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: springcache-uv\n"
                      "    static_configs:\n      - targets: [%s]\n"
                      % ", ".join("'127.0.0.1:%d'" % p for p in ports))
    log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen(["prometheus", "--config.file", str(config), "--storage.tsdb.path", str(tmp_path / "data"),
                             "--web.listen-address", "127.0.0.1:%d" % web], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL)
    try:
        def workers_seen():
            q = urllib.parse.quote("springcache_http_requests_total{route=\"get\"}")
            with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/query?query=%s" % (web, q), timeout=2) as r:
                result = json.load(r)["data"]["result"]
            return sorted({s["metric"]["worker"] for s in result}) == ["0", "1"] and result
        t0 = time.monotonic()
        result = wait_until(workers_seen, 60, interval=0.5, what="Prometheus holding both workers' series")
        print("\n[observed] Prometheus had both workers after %.1f s: %s" % (
            time.monotonic() - t0, sorted((s["metric"]["worker"], s["metric"]["instance"]) for s in result)))
    finally:
        prom.terminate()
        try:
            prom.wait(15)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait()
        log.close()


def test_every_metric_the_dashboard_queries_exists(monitored):
    _, ports, _ = monitored
    with open(os.path.join(DEPLOY, "grafana-dashboard.json")) as f:
        dashboard = json.load(f)
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs.append(dashboard["templating"]["list"][1]["query"])
    words = set(re.findall(r"\b((?:springcache|process)_[a-z_]+)\b", " ".join(exprs)))
    assert len(words) >= 15, words
    present = set()
    for port in ports:
        _, samples = parse_prometheus(scrape(port))
        present |= {n for n, _, _ in samples}
    missing = sorted(w for w in words if w not in present)
    assert not missing, "the dashboard queries metrics no worker exports: %r" % missing


def test_scrape_shows_the_new_families(monitored):
    """Prints one sample of each new family for the closing note, and checks their values make sense."""
    node, ports, _ = monitored
    text = scrape(ports[0])
    _, samples = parse_prometheus(text)
    wanted = ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_max_fds",
              "process_start_time_seconds", "springcache_build_info", "springcache_cache_capacity_bytes",
              "springcache_peer_requests_total", "springcache_peer_request_failures_total",
              "springcache_peer_request_duration_seconds_bucket", "springcache_peer_up",
              "springcache_origin_requests_total", "springcache_origin_request_duration_seconds_bucket",
              "springcache_etcd_registered", "springcache_etcd_watching", "springcache_etcd_keepalives_total"]
    print()
    for name in wanted:
        first = [l for l in text.splitlines() if l.startswith(name + "{") or l.startswith(name + " ")]
        assert first, name
        print("[scrape] " + first[0])
    by = {n: v for n, ls, v in samples}
    assert by["process_resident_memory_bytes"] > 1 << 20
    assert time.time() - 600 < by["process_start_time_seconds"] <= time.time() + 1, "started within the test run"
    assert by["springcache_etcd_registered"] == 1 and by["springcache_etcd_watching"] == 1
    assert 'le="0.00001"' in text and 'le="120"' in text


def test_peer_port_and_etcd_counters_reach_metrics_and_stats(monitored):
    """The gRPC server and client and the etcd counters, once collected and never shown, are on both pages."""
    node, ports, _ = monitored
    samples = []
    for port in ports:
        samples += parse_prometheus(scrape(port))[1]

    def total(name, **labels):
        return sum(v for n, ls, v in samples if n == name and all(ls.get(k) == w for k, w in labels.items()))

    # Keys owned by the other worker went through a peer call: one worker's client called, the other served.
    assert total("springcache_grpc_client_calls_total") >= 1
    assert total("springcache_grpc_client_succeeded_total") >= 1
    assert total("springcache_grpc_server_calls_total") >= 1
    assert total("springcache_grpc_server_answers_total", code="OK") >= 1
    assert {ls.get("peer") for n, ls, _ in samples if n == "springcache_grpc_client_calls_total"} <= {"m-0", "m-1"}
    assert total("springcache_etcd_calls_total") >= 4, "each worker granted, put and watched at least"
    assert total("springcache_etcd_watches_started_total") >= 2
    assert total("springcache_etcd_member_snapshots_total") >= 2

    status, _, body, _ = node.request("GET", "/api/stats")
    assert status == 200
    stats = json.loads(body)
    for old in ("name", "gets", "hits", "caches", "cluster", "http"):
        assert old in stats, old
    assert stats["etcd"]["registered"] is True and stats["etcd"]["calls"] >= 2
    assert stats["peer_server"]["connections_accepted"] >= 0 and "answers" in stats["peer_server"]
    other = "m-1" if stats["name"] == "m-0" else "m-0"
    assert set(stats.get("peer_clients", {})) <= {other}


# --- the deployment kit --------------------------------------------------------------------------


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    with open(os.path.join(DEPLOY, "springcache-uv.service")) as f:
        unit = f.read()
    assert "--workers auto" in unit and "LimitNOFILE=" in unit and "Restart=on-failure" in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    # verify checks that ExecStart's program exists: point it at the binary under test.
    path = tmp_path / "springcache-uv.service"
    path.write_text(unit.replace("/usr/local/bin/springcache-uv", binary_path()))
    r = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, timeout=60)
    out = (r.stdout + r.stderr).decode()
    # Only complaints about this unit count (the container's own units may draw warnings of their own).
    complaints = [l for l in out.splitlines() if "springcache-uv" in l]
    assert r.returncode == 0 and not complaints, out


def test_prometheus_example_config_is_valid():
    r = subprocess.run(["promtool", "check", "config", os.path.join(DEPLOY, "prometheus.yml")],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, (r.stdout + r.stderr).decode()


def test_sighup_rotates_the_peer_token(start_fixed_cluster, tmp_path):
    import grpc
    from harness import peer_stubs
    pb, pbg = peer_stubs()
    token = tmp_path / "peer-token"
    token.write_text("peer-old-1\n")
    cl = start_fixed_cluster(names=("a",), extra_flags=["--peer-token-file", str(token)])
    target = "127.0.0.1:%d" % cl.peer_ports["a"]

    def code(tok):
        # A fresh channel per call: the token is checked per stream, on connections opened after the reload too.
        with grpc.insecure_channel(target) as ch:
            try:
                pbg.SpringCacheStub(ch).Get(pb.GetRequest(group="scores", key="Tom"),
                                            metadata=(("authorization", "Bearer " + tok),), timeout=5)
                return grpc.StatusCode.OK
            except grpc.RpcError as e:
                return e.code()
    assert code("peer-old-1") == grpc.StatusCode.OK
    token.write_text("peer-new-2\n")
    cl["a"].send_signal(signal.SIGHUP)
    wait_until(lambda: code("peer-new-2") == grpc.StatusCode.OK, 10, what="the rotated peer token accepted")
    assert code("peer-old-1") == grpc.StatusCode.UNAUTHENTICATED
    assert "re-read --peer-token-file" in cl["a"].log_text()

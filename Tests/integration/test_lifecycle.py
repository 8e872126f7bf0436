"""Process lifecycle: signals, exit codes, command-line validation, expiry in the real process."""
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from harness import DEADLINE, Node, binary_path, v1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_gracefully_with_exit_0(start_node, sig):
    n = start_node()
    assert n.get("Tom")[2] == b"value=630\n"
    start = time.monotonic()
    rc = n.stop(sig)
    assert rc == 0, "exit code %r after %s; log:\n%s" % (rc, sig.name, n.log_text()[-2000:])
    assert time.monotonic() - start < DEADLINE


def test_sigterm_with_idle_keep_alive_connections(start_node):
    n = start_node()
    conns = [n.raw() for _ in range(10)]
    try:
        for c in conns:
            c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert c.read_response()[0] == 200
        start = time.monotonic()
        assert n.stop() == 0
        assert time.monotonic() - start < DEADLINE
    finally:
        for c in conns:
            c.close()


def test_sigterm_while_origin_request_in_flight(start_node, origin):
    origin.values["slow-inflight"] = b"finished"
    origin.delay["slow-inflight"] = 1.0
    n = start_node("--origin", origin.url)
    result = {}

    def client():
        try:
            result["r"] = n.get("slow-inflight")[:3:2]
        except Exception as e:
            result["r"] = repr(e)

    t = threading.Thread(target=client)
    t.start()
    deadline = time.monotonic() + DEADLINE
    while origin.count("slow-inflight") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert origin.count("slow-inflight") == 1
    start = time.monotonic()
    n.send_signal(signal.SIGTERM)
    t.join(6)
    try:
        rc = n.proc.wait(5)
    except subprocess.TimeoutExpired:
        rc = "still running"
    assert result.get("r") == (200, b"value=finished\n"), "the in-flight client got %r" % (result.get("r"),)
    assert rc == 0, "exit code %r; log:\n%s" % (rc, n.log_text()[-2000:])
    assert time.monotonic() - start < DEADLINE


@pytest.mark.parametrize("flag,value,hint", [
    ("--ttl", "abc", r"\d+\s*(ms|s|m|h)\b|duration"),
    ("--cache-bytes", "12XB", r"[KMG]iB|size|bytes"),
    ("--api", "nonsense", r"(?i)host:port"),
    ("--origin-timeout", "soon", r"\d+\s*(ms|s|m|h)\b|duration"),
    ("--max-body-bytes", "lots", r"[KMG]iB|size|bytes"),
    ("--negative-ttl", "-1s", r"\d+\s*(ms|s|m|h)\b|duration"),
    ("--api", "127.0.0.1:99999", r"(?i)port|host:port"),
    ("--origin", "ftp://x/{key}", r"demo|http://"),
    # Exactly the largest message (4 MiB by default) is too small: a message is held with its 5-byte prefix.
    ("--peer-max-connection-buffer", "4MiB", r"4194309 bytes"),
])
def test_bad_flag_value_exits_nonzero_with_message(flag, value, hint):
    args = [binary_path(), "--api", "127.0.0.1:0", "--jitter", "0", flag, value]
    try:
        p = subprocess.run(args, capture_output=True, timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("%s %s was accepted: the process kept running" % (flag, value))
    assert p.returncode != 0
    err = p.stderr.decode()
    assert flag.lstrip("-") in err, "stderr should name %s: %r" % (flag, err)
    assert re.search(hint, err), "stderr should give the expected form (%s): %r" % (hint, err)


def test_unknown_flag_exits_nonzero():
    p = subprocess.run([binary_path(), "--no-such-flag"], capture_output=True, timeout=5)
    assert p.returncode != 0
    assert b"no-such-flag" in p.stderr


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_static_single_member_peer_list_serves(start_node):
    port = free_port()
    n = start_node("--name", "solo", "--port", str(port), "--peer", "solo=127.0.0.1:%d" % port)
    assert n.get("Tom")[2] == b"value=630\n"


def test_springcache_plain_peer_names_need_etcd():
    # springcache's plain names are looked up in etcd: without --etcd there is nowhere to look, so the node
    # refuses to start and says what to give instead.
    args = [binary_path(), "--api", "127.0.0.1:0", "--name", "solo", "--port", str(free_port()),
            "--peer", "solo,other"]
    p = subprocess.run(args, capture_output=True, timeout=10)
    assert p.returncode != 0
    err = p.stderr.decode()
    assert "--peer" in err and "other" in err and "--etcd" in err and "NAME=HOST:PORT" in err, err


def test_group_flag(start_node):
    n = start_node("--group", "points")
    assert n.request("GET", v1("Tom", group="points"))[2] == b"630"
    assert n.request("GET", v1("Tom", group="scores"))[0] == 404
    assert n.get("Tom")[2] == b"value=630\n"


def test_set_expires_after_ttl(start_node):
    n = start_node("--ttl", "1s", "--no-sliding")
    assert n.set("short-lived", "1")[0] == 200
    assert n.set("Tom", "override")[0] == 200
    assert n.request("PUT", v1("short-v1"), body=b"x")[0] == 204
    assert n.get("short-lived")[2] == b"value=1\n"
    time.sleep(1.5)  # the real process's clock must pass the TTL; nothing else can move it
    assert n.get("short-lived")[0] == 404
    assert n.request("GET", v1("short-v1"))[0] == 404
    assert n.get("Tom")[2] == b"value=630\n", "an expired override falls back to the origin"


def test_sliding_expiry_keeps_hit_entries(start_node):
    n = start_node("--ttl", "1s", "--sliding")
    assert n.set("slides", "yes")[0] == 200
    for _ in range(4):  # 2 s in total, but never 1 s without a hit
        time.sleep(0.5)
        assert n.get("slides")[2] == b"value=yes\n"


def test_expire_minutes_outlive_default_ttl(start_node):
    n = start_node("--ttl", "1s", "--no-sliding")
    assert n.set("minute", "m", expire="1")[0] == 200
    time.sleep(1.5)
    assert n.get("minute")[2] == b"value=m\n", "expire=1 means one minute, not the 1 s default"


def test_cache_bytes_bounds_memory(start_node):
    n = start_node("--cache-bytes", "64KiB", "--hot-bytes", "16KiB")
    value = b"v" * 1000
    for i in range(300):
        assert n.request("PUT", v1("fill-%d" % i), body=value)[0] == 204
    import json
    from harness import find_dicts_with
    doc = json.loads(n.request("GET", "/api/stats")[2])
    used = sum(c["bytes"] for c in find_dicts_with(doc, "items", "bytes"))
    assert 0 < used <= 80 * 1024, "caches hold %d bytes with --cache-bytes 64KiB --hot-bytes 16KiB" % used
    assert n.request("GET", v1("fill-299"))[2] == value, "the newest entry must be kept"
    assert n.request("GET", v1("fill-0"))[0] == 404, "the oldest entry must have been evicted"

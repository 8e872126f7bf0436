"""Resource limits under attack: idle crowds, slow senders, connection floods, readers that never read,
value floods and random bytes must leave a node responsive, its memory bounded and its answers right.

Every figure measured here is printed (run with `-s` to see them) and, when $RELIABILITY_RESULTS names a
file, appended to it as one JSON object per line; docs/reliability.md quotes them.
"""
import json
import os
import random
import resource
import selectors
import socket
import struct
import threading
import time

import pytest

from harness import (DEADLINE, free_port, metric_sum, parse_prometheus, peer_stubs, percentile, proc_open_files_limit,
                     proc_status_kib, v1, wait_for)

MiB = 1024 * 1024


def record(name, **figures):
    """Prints a measurement and appends it to $RELIABILITY_RESULTS (JSON lines) when that is set."""
    line = json.dumps(dict(test=name, **figures), sort_keys=True)
    print("\n[figures] " + line)
    path = os.environ.get("RELIABILITY_RESULTS")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def stats(node):
    status, _, body, _ = node.request("GET", "/api/stats")
    assert status == 200
    return json.loads(body)


def metric(node, name):
    status, _, body, _ = node.request("GET", "/metrics")
    assert status == 200
    return metric_sum(parse_prometheus(body.decode())[1], name)


def rss_mib(node):
    return proc_status_kib(node.proc.pid) / 1024.0


def rst_close(s):
    """Closes with a reset (SO_LINGER 0): no TIME_WAIT left on the client's port.

    Why: thousands of client-side TIME_WAITs exhaust the ephemeral port range for a minute, and later tests
    that bind "free" ports (test_workers) then fail. Closes the server initiates leave nothing here.
    """
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


def raise_nofile(n):
    """Raises this process's soft RLIMIT_NOFILE to at least n (nodes started afterwards inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < n:
        if hard != resource.RLIM_INFINITY and hard < n:
            pytest.skip("RLIMIT_NOFILE hard limit %d < %d needed" % (hard, n))
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


def get_latencies(node, n=500, key="Tom", expect=b"value=630\n"):
    """n sequential GETs on one keep-alive connection; returns sorted latencies in ms."""
    c = node.raw()
    req = ("GET /api/get?key=%s HTTP/1.1\r\nHost: x\r\n\r\n" % key).encode()
    try:
        for _ in range(20):  # warm-up: the first answers pay for the load and for Python's own caches
            c.send(req)
            c.read_response()
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            c.send(req)
            status, _, body, _ = c.read_response()
            out.append((time.perf_counter() - t0) * 1000.0)
            assert (status, body) == (200, expect)
        return sorted(out)
    finally:
        c.close()


def summary(lat):
    return {"p50_ms": round(percentile(lat, 50), 3), "p99_ms": round(percentile(lat, 99), 3),
            "max_ms": round(lat[-1], 3)}


# --- 2,000 idle connections ----------------------------------------------------------------------

IDLE = 2000


def test_idle_crowd_does_not_slow_a_real_client(start_node):
    raise_nofile(IDLE + 512)
    node = start_node()
    limit = proc_open_files_limit(node.proc.pid)
    assert limit is None or limit >= IDLE + 64, (
        "the node's RLIMIT_NOFILE is %d: too low to hold %d connections (start it under prlimit --nofile)"
        % (limit, IDLE))
    baselines = [get_latencies(node) for _ in range(2)]
    crowd = []
    try:
        t0 = time.monotonic()
        for i in range(IDLE):
            s = socket.create_connection(node.addr, timeout=10)
            crowd.append(s)
            if i % 2:  # half have been served once and sit in keep-alive; half never sent a byte
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        for s in crowd[1::2]:
            data = b""
            while b"ok\n" not in data:
                chunk = s.recv(4096)
                assert chunk, "an idle-crowd connection was closed early"
                data += chunk
        opened_s = time.monotonic() - t0
        st = stats(node)
        assert st["http"]["connections_open"] >= IDLE, st["http"]
        assert st["http"]["connections_rejected"] == 0
        rss_crowd = rss_mib(node)
        withs = []
        for _ in range(3):  # shared cores: retry a noisy measurement, keep the best
            withs.append(get_latencies(node))
            b = min(summary(x)["p99_ms"] for x in baselines)
            w = min(summary(x)["p99_ms"] for x in withs)
            if w < 20 and w < 5 * max(b, 1.0):
                break
        # The crowd is still there and still served after the measurement.
        for s in crowd[1:200:2]:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(4096).endswith(b"ok\n")
    finally:
        for s in crowd:
            rst_close(s)
    best_base = min(baselines, key=lambda x: percentile(x, 99))
    best_with = min(withs, key=lambda x: percentile(x, 99))
    record("idle_crowd", idle_connections=IDLE, open_seconds=round(opened_s, 2), node_nofile=limit,
           rss_with_crowd_mib=round(rss_crowd, 1),
           baseline=summary(best_base), with_crowd=summary(best_with),
           tries_baseline=[summary(x) for x in baselines], tries_with_crowd=[summary(x) for x in withs])
    b99, w99 = percentile(best_base, 99), percentile(best_with, 99)
    # 1 ms floor under the baseline: a sub-millisecond p99 on shared cores is noise, not a budget.
    # The figures are recorded (docs/reliability.md); the assertion only catches a crowd that stalls the loop.
    print("TIMING p99 with %d idle connections %.2f ms (without %.2f ms)" % (IDLE, w99, b99))
    assert w99 < 250, "p99 with %d idle connections is %.2f ms (without: %.2f ms)" % (IDLE, w99, b99)
    assert node.alive()


# --- 200 half-sent requests ----------------------------------------------------------------------

HALF = 200
HALF_REQUESTS = [
    b"GET /api/ge",                                               # part of a request line
    b"GET /api/get?key=Tom HTTP/1.1\r\n",                         # request line, no headers
    b"GET /api/get?key=Tom HTTP/1.1\r\nHost: x\r\nX-Slow: ab",    # headers cut mid-line
    b"POST /api/set HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n",  # headers without the blank line
]


def test_half_sent_requests_get_408_within_the_header_timeout(start_node):
    raise_nofile(HALF + 512)
    node = start_node("--header-timeout", "1s")
    sel = selectors.DefaultSelector()
    sent_at = {}
    received = {}
    closed_at = {}
    socks = []
    try:
        for i in range(HALF):
            s = socket.create_connection(node.addr, timeout=5)
            s.sendall(HALF_REQUESTS[i % len(HALF_REQUESTS)])
            sent_at[s] = time.monotonic()
            received[s] = b""
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            socks.append(s)
        deadline = time.monotonic() + DEADLINE
        while len(closed_at) < HALF and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.5):
                s = key.fileobj
                try:
                    chunk = s.recv(65536)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    chunk = b""
                if chunk:
                    received[s] += chunk
                else:
                    closed_at[s] = time.monotonic()
                    sel.unregister(s)
    finally:
        for s in socks:
            rst_close(s)
    elapsed = sorted(closed_at[s] - sent_at[s] for s in closed_at)
    statuses = {}
    for s in socks:
        line = received[s].split(b"\r\n", 1)[0]
        statuses[line] = statuses.get(line, 0) + 1
    st = stats(node)
    record("half_sent_408", connections=HALF, header_timeout_s=1, closed=len(closed_at),
           statuses={k.decode("latin-1"): v for k, v in statuses.items()},
           close_after_s={"min": round(elapsed[0], 3) if elapsed else None,
                          "p50": round(percentile(elapsed, 50), 3) if elapsed else None,
                          "max": round(elapsed[-1], 3) if elapsed else None},
           stats_timeouts=st["http"]["timeouts"])
    assert len(closed_at) == HALF, "%d of %d half-sent connections were not closed within %d s" % (
        HALF - len(closed_at), HALF, DEADLINE)
    assert all(received[s].startswith(b"HTTP/1.1 408 ") for s in socks), statuses
    assert elapsed[0] >= 0.9, "closed before the 1 s header timeout: %.3f s" % elapsed[0]
    # The slowest close is a recorded figure; the bound only tells the header timeout from the 60 s idle one.
    assert elapsed[-1] <= DEADLINE, "slowest 408 close took %.3f s" % elapsed[-1]
    assert st["http"]["timeouts"] == HALF, st["http"]
    assert node.get("Tom")[2] == b"value=630\n"


# --- --max-connections ---------------------------------------------------------------------------


def test_connections_beyond_the_limit_get_503_at_once(start_node):
    node = start_node("--max-connections", "50")
    held = []
    try:
        for _ in range(50):
            c = node.raw()
            c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert c.read_response()[0] == 200
            held.append(c)
        refused = []
        for _ in range(10):
            t0 = time.monotonic()
            c = node.raw(timeout=5)
            try:
                status, headers, body, _ = c.read_response()
                closed = c.closed_by_peer(2.0)
                refused.append((status, closed, time.monotonic() - t0))
            except (EOFError, ConnectionResetError) as e:
                refused.append(("%s" % type(e).__name__, True, time.monotonic() - t0))
            finally:
                c.close()
        # The held connections are still served: the refusals took nothing from them.
        for c in held[:5]:
            c.send(b"GET /api/get?key=Tom HTTP/1.1\r\nHost: x\r\n\r\n")
            assert c.read_response()[2] == b"value=630\n"
        for c in held[:5]:
            c.close()
        held = held[5:]
        # The node notices the closes asynchronously; a real client is served once it has.
        # A try that races the node's read of those EOFs is refused (503) and counted: it is a refusal too.
        tries = []
        served = wait_for(lambda: tries.append(1) or _try_get(node), DEADLINE, 0.1)
        st = stats(node)
    finally:
        for c in held:
            c.close()
    times = sorted(r[2] for r in refused)
    record("max_connections", limit=50, opened=60, refused=[r[:2] for r in refused],
           refuse_seconds_max=round(times[-1], 3), stats_rejected=st["http"]["connections_rejected"],
           tries_until_served=len(tries))
    assert all(r[0] == 503 and r[1] for r in refused), refused
    # A queued connection would wait for one of the 50 held ones, which never close: any bound tells them apart.
    assert times[-1] < DEADLINE / 3, "a refusal took %.3f s: queued, not refused at once" % times[-1]
    assert served, "no client served after 5 of the 50 connections closed"
    assert st["http"]["connections_rejected"] == 10 + len(tries) - 1, (len(tries), st["http"])


def _try_get(node):
    try:
        status, _, body, _ = node.get("Tom", timeout=2)
    except OSError:
        return False
    return status == 200 and body == b"value=630\n"


# --- a pipelining client that never reads --------------------------------------------------------

BIG = 512 * 1024
PIPELINED = 4000


def test_reader_that_never_reads_is_paused_and_memory_stays_bounded(start_node):
    node = start_node("--max-output-bytes", "1MiB")
    value = bytes(random.Random(7).getrandbits(8) for _ in range(BIG))
    assert node.request("PUT", v1("big"), body=value)[0] == 204
    assert node.request("GET", v1("big"))[2] == value
    pauses0 = metric(node, "springcache_http_backpressure_pauses_total")
    rss0 = rss_mib(node)
    req = b"GET /v1/cache/scores/big HTTP/1.1\r\nHost: x\r\n\r\n"
    payload = req * PIPELINED
    bad = socket.socket()
    bad.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    bad.connect(node.addr)
    bad.setblocking(False)
    sent = 0
    rss_samples = []
    good = {"ok": 0, "bad": [], "max_ms": 0.0}
    stop = threading.Event()

    def good_client():
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                st1 = node.get("Tom", timeout=5)
                st2 = node.request("GET", v1("big"), timeout=5)
            except OSError as e:
                good["bad"].append(repr(e))
                continue
            good["max_ms"] = max(good["max_ms"], (time.perf_counter() - t0) * 1000.0)
            if st1[2] == b"value=630\n" and st2[0] == 200 and st2[2] == value:
                good["ok"] += 1
            else:
                good["bad"].append((st1[0], st2[0], len(st2[2])))

    t = threading.Thread(target=good_client)
    t.start()
    try:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            if sent < len(payload):
                try:
                    sent += bad.send(payload[sent:sent + 65536])
                    continue
                except BlockingIOError:
                    pass
            rss_samples.append(rss_mib(node))
            time.sleep(0.1)
        pauses = metric(node, "springcache_http_backpressure_pauses_total")
        st_during = stats(node)
        rss_during = max(rss_samples)
        # The bad client finally reads: answers flow again, in order, starting with a whole 200.
        bad.setblocking(True)
        bad.settimeout(10)
        got = b""
        while len(got) < 16 * MiB:
            chunk = bad.recv(1 << 20)
            assert chunk, "the node closed the slow reader after %d bytes" % len(got)
            got += chunk
        assert got.startswith(b"HTTP/1.1 200 "), got[:100]
        bad.close()
        bad = None
        wait_for(lambda: stats(node)["http"]["connections_open"] <= 2, DEADLINE, 0.1)
    finally:
        stop.set()
        t.join(10)
        if bad is not None:
            bad.close()
    rss_after = rss_mib(node)
    st_after = stats(node)
    record("backpressure", value_bytes=BIG, pipelined_requests=PIPELINED, request_bytes_sent=sent,
           requests_sent=sent // len(req), max_output_bytes=MiB, rss_before_mib=round(rss0, 1),
           rss_during_max_mib=round(rss_during, 1), rss_after_mib=round(rss_after, 1),
           growth_mib=round(rss_during - rss0, 1), pauses=pauses - pauses0,
           good_rounds=good["ok"], good_errors=good["bad"][:5], good_max_ms=round(good["max_ms"], 1),
           bytes_out_during=st_during["http"]["bytes_out"], connections_open_after=st_after["http"]["connections_open"])
    assert rss_during - rss0 < 64, "RSS grew %.1f MiB (%.1f -> %.1f) under one non-reading client" % (
        rss_during - rss0, rss0, rss_during)
    assert pauses > pauses0, "springcache_http_backpressure_pauses_total did not increase"
    assert not good["bad"], good["bad"][:5]
    assert good["ok"] >= 5, "other clients starved: %d good rounds in 4 s" % good["ok"]
    assert node.request("GET", v1("big"))[2] == value
    assert st_after["http"]["connections_open"] <= 2, st_after["http"]


# --- a flood of distinct keys --------------------------------------------------------------------

FLOOD_KEYS = 20000
FLOOD_VALUE = 4096


def test_value_flood_stays_within_cache_bytes(start_node):
    node = start_node("--cache-bytes", "32MiB", "--hot-bytes", "1MiB")
    rnd = random.Random(11)
    rss0 = rss_mib(node)
    rss_max = rss0
    c = node.raw()
    keys = []
    batch = 50
    t0 = time.monotonic()
    try:
        for start in range(0, FLOOD_KEYS, batch):
            out = []
            for i in range(start, start + batch):
                k = "flood-%d-%08x" % (i, rnd.getrandbits(32))
                keys.append(k)
                hot = "?hot=true" if i % 10 == 0 else ""
                val = (k.encode() * (FLOOD_VALUE // len(k) + 1))[:FLOOD_VALUE]
                out.append(b"PUT %s%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                           % (v1(k).encode(), hot.encode(), len(val), val))
            c.send(b"".join(out))
            for _ in range(batch):
                assert c.read_response()[0] == 204
            if start % 2000 == 0:
                rss_max = max(rss_max, rss_mib(node))
    finally:
        c.close()
    took = time.monotonic() - t0
    rss_max = max(rss_max, rss_mib(node))
    st = stats(node)
    main, hot = st["caches"]["main"], st["caches"]["hot"]
    last = keys[-1]
    status, _, body, _ = node.request("GET", v1(last))
    record("flood", keys=FLOOD_KEYS, value_bytes=FLOOD_VALUE, seconds=round(took, 2), rss_before_mib=round(rss0, 1),
           rss_max_mib=round(rss_max, 1), main=main, hot=hot)
    assert status == 200 and body == (last.encode() * (FLOOD_VALUE // len(last) + 1))[:FLOOD_VALUE]
    assert main["bytes"] <= 32 * MiB, main
    assert hot["bytes"] <= 1 * MiB, hot
    assert main["evictions"] > 0 and hot["evictions"] > 0, (main, hot)
    assert rss_max < 1.5 * 32 + 40, "RSS %.1f MiB exceeds 1.5 x 32 MiB + 40 MiB" % rss_max


# --- random bytes on both ports ------------------------------------------------------------------

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_frame(ftype, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def http_garbage(rnd):
    kinds = [
        lambda: os.urandom(rnd.randint(1, 8192)),
        lambda: b"GET /api/get?key=Tom HTTP/1.1\r\n" + os.urandom(rnd.randint(1, 4096)),
        lambda: b"PUT /v1/cache/scores/x HTTP/1.1\r\nContent-Length: 10\r\n\r\n" + os.urandom(rnd.randint(1, 64)),
        lambda: b"GET /api/get?key=Tom HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(rnd.randint(1, 512)),
        lambda: b"POST /api/set HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + os.urandom(rnd.randint(1, 512)),
        lambda: H2_PREFACE + os.urandom(rnd.randint(1, 512)),
    ]
    return rnd.choice(kinds)()


def peer_garbage(rnd):
    settings = h2_frame(4, 0, 0, b"")
    kinds = [
        lambda: os.urandom(rnd.randint(1, 8192)),
        lambda: H2_PREFACE + os.urandom(rnd.randint(1, 4096)),
        lambda: H2_PREFACE + settings + os.urandom(rnd.randint(1, 4096)),
        # HEADERS on stream 1 with a random HPACK block, then random frames
        lambda: H2_PREFACE + settings + h2_frame(1, 4, 1, os.urandom(rnd.randint(1, 200)))
        + os.urandom(rnd.randint(0, 512)),
        # frames with random types, flags, streams and lengths that lie
        lambda: H2_PREFACE + settings + b"".join(
            struct.pack(">I", rnd.randint(0, 1 << 24))[1:] + bytes([rnd.randint(0, 12), rnd.randint(0, 255)])
            + struct.pack(">I", rnd.getrandbits(32)) + os.urandom(rnd.randint(0, 64)) for _ in range(8)),
        # DATA on a stream that was never opened, a huge WINDOW_UPDATE, a GOAWAY
        lambda: H2_PREFACE + settings + h2_frame(0, 1, 3, b"\x00\x00\x00\x00\x05abcde")
        + h2_frame(8, 0, 0, b"\x7f\xff\xff\xff") + h2_frame(7, 0, 0, b"\x00" * 8),
        lambda: b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    return rnd.choice(kinds)()


GARBAGE_CONNECTIONS_PER_THREAD = 1500


def _garbage_thread(addr, make, seed, stop, counts):
    rnd = random.Random(seed)
    for _ in range(GARBAGE_CONNECTIONS_PER_THREAD):
        if stop.is_set():
            break
        try:
            s = socket.create_connection(addr, timeout=2)
        except ConnectionRefusedError:
            counts["refused"] += 1
            time.sleep(0.05)
            continue
        except OSError:
            continue
        try:
            for _ in range(rnd.randint(1, 3)):
                s.sendall(make(rnd))
            if rnd.random() < 0.5:
                s.settimeout(0.1)
                try:
                    s.recv(65536)
                except OSError:
                    pass
            counts["sent"] += 1
        except OSError:
            counts["sent"] += 1
        finally:
            if rnd.random() < 0.9:
                rst_close(s)
            else:
                s.close()


def test_random_bytes_on_api_and_peer_ports(start_node):
    import grpc
    pb, pbg = peer_stubs()
    peer = free_port()
    node = start_node("--name", "a", "--port", str(peer), "--peer", "a=127.0.0.1:%d" % peer)
    peer_addr = ("127.0.0.1", peer)
    stop = threading.Event()
    counts = {"sent": 0, "refused": 0}
    threads = []
    for i in range(4):
        threads.append(threading.Thread(target=_garbage_thread, args=(node.addr, http_garbage, i, stop, counts)))
        threads.append(threading.Thread(target=_garbage_thread, args=(peer_addr, peer_garbage, 100 + i, stop,
                                                                      counts)))
    for t in threads:
        t.start()
    t0 = time.monotonic()
    try:
        for t in threads:
            t.join(max(0.0, t0 + 5 - time.monotonic()))
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    took = time.monotonic() - t0
    assert node.alive(), "the node died under random bytes:\n" + node.log_text()[-3000:]
    assert counts["refused"] == 0, counts
    assert node.get("Tom")[2] == b"value=630\n"
    assert node.request("PUT", v1("after-garbage"), body=b"fine")[0] == 204
    with grpc.insecure_channel("127.0.0.1:%d" % peer) as ch:
        stub = pbg.SpringCacheStub(ch)
        assert stub.Get(pb.GetRequest(group="scores", key="Tom"), timeout=5).value == b"630"
        assert stub.Get(pb.GetRequest(group="scores", key="after-garbage"), timeout=5).value == b"fine"
        with pytest.raises(grpc.RpcError) as e:
            stub.Get(pb.GetRequest(group="scores", key="no-such-key"), timeout=5)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
    st = stats(node)
    record("random_bytes", connections=counts["sent"], seconds=round(took, 1), parse_errors=st["http"]["parse_errors"],
           connections_open_after=st["http"]["connections_open"], rss_mib=round(rss_mib(node), 1))

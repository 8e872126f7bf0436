"""Large values through a peer (issue 11): 1 MiB and 4 MiB values owned by one node, read through the other,
arrive whole and byte-exact, several at once, while a small value through the same peer keeps being answered
(no stall behind them). The windows that make one round trip carry a whole message are checked on the wire by
the unit tests (HTTP2WindowTests); figures are printed as TIMING lines, never asserted against a tight bound.
"""
import http.client
import json
import random
import threading
import time

import pytest

from harness import DEADLINE, FixedCluster, keys_owned_by, percentile, v1, wait_until

MiB = 1024 * 1024
SIZES = [MiB, MiB, MiB, 4 * MiB, 4 * MiB]
READERS = 4
ROUNDS = 3
# Answers waiting to leave count against the owner's --peer-max-connection-buffer (16 MiB): 12 x 1 MiB fit
# (more are refused RESOURCE_EXHAUSTED, and the asking node loads the key itself), and are 3 x its 4 MiB pull.
BURST = 12
BURST_ROUNDS = 10


@pytest.fixture
def pair():
    # --max-body-bytes 5MiB: the API takes 4 MiB values, and the largest peer message grows past 5 MiB.
    c = FixedCluster(names=("a", "b"), extra_flags=["--max-body-bytes", "5MiB", "--hot-copy-one-in", "0"])
    try:
        wait_until(c.converged, DEADLINE, what="both members up on both nodes")
        yield c
    finally:
        c.cleanup()


def read(port, key, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", v1(key))
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_large_values_through_a_non_owner_arrive_whole_while_small_ones_keep_flowing(pair):
    a, b = pair["a"], pair["b"]
    keys = keys_owned_by(["a", "b"], "b", len(SIZES) + 1, prefix="large-")
    small_key, large_keys = keys[0], keys[1:]
    values = {k: random.Random(i).randbytes(size) for i, (k, size) in enumerate(zip(large_keys, SIZES))}
    for k, v in values.items():
        assert b.request("PUT", v1(k), body=v)[0] == 204
    assert b.request("PUT", v1(small_key), body=b"small")[0] == 204
    peer_gets_before = b_peer_gets(b)

    errors, probe_latencies, read_times = [], [], []
    done = threading.Event()

    def reader(i):
        order = list(large_keys)
        random.Random(100 + i).shuffle(order)
        for _ in range(ROUNDS):
            for k in order:
                t0 = time.monotonic()
                status, body = read(a.port, k)
                read_times.append((len(values[k]), time.monotonic() - t0))
                if status != 200 or body != values[k]:
                    errors.append("%s: status %d, %d bytes, exact=%s" % (k, status, len(body), body == values[k]))

    def probe():
        while not done.is_set():
            t0 = time.monotonic()
            status, body = read(a.port, small_key, timeout=10)
            probe_latencies.append(time.monotonic() - t0)
            if (status, body) != (200, b"small"):
                errors.append("probe: %d %r" % (status, body[:40]))
            time.sleep(0.005)

    prober = threading.Thread(target=probe)
    prober.start()
    readers = [threading.Thread(target=reader, args=(i,)) for i in range(READERS)]
    t0 = time.monotonic()
    for t in readers:
        t.start()
    for t in readers:
        t.join()
    elapsed = time.monotonic() - t0
    done.set()
    prober.join()

    assert errors == [], errors[:5]
    assert len(read_times) == READERS * ROUNDS * len(large_keys)
    # a kept none of them (no hot copies, nothing loaded itself): every read was carried by the peer
    # connection (concurrent reads of one key share one Get, so there are fewer Gets than reads).
    assert b_peer_gets(b) - peer_gets_before >= len(large_keys)
    caches = stats(a)["caches"]
    assert caches["main"]["items"] == 0 and caches["hot"]["items"] == 0, caches
    assert len(probe_latencies) >= 5, "the small value was answered throughout: %d answers" % len(probe_latencies)
    probe_latencies.sort()
    for size in sorted(set(SIZES)):
        t = sorted(s for n, s in read_times if n == size)
        print("TIMING %d MiB through a peer, %d concurrent readers: median %.1f ms, p90 %.1f ms, max %.1f ms"
              % (size // MiB, READERS, 1000 * t[len(t) // 2], 1000 * percentile(t, 90), 1000 * t[-1]))
    print("TIMING small probe through the same peer meanwhile: %d answers, p50 %.1f ms, p99 %.1f ms, max %.1f ms"
          % (len(probe_latencies), 1000 * percentile(probe_latencies, 50), 1000 * percentile(probe_latencies, 99),
             1000 * probe_latencies[-1]))
    print("TIMING %d large reads in %.2f s" % (len(read_times), elapsed))
    assert a.alive() and b.alive()


def test_several_large_answers_at_once_leave_without_waiting_for_the_peer_to_speak(pair):
    """12 distinct 1 MiB values asked at the same instant, nothing else on the connection: more than the owner
    pulls for one write (4 MiB). The kernel took each write at once, so no write callback came to pull the rest,
    and the asking node (its windows still open) had nothing to send: the calls hung until --peer-timeout, the
    owner was dropped from the ring, and the reads failed."""
    a, b = pair["a"], pair["b"]
    keys = keys_owned_by(["a", "b"], "b", BURST, prefix="burst-")
    values = {k: random.Random(k).randbytes(MiB) for k in keys}
    for k, v in values.items():
        assert b.request("PUT", v1(k), body=v)[0] == 204
    results, times = [], []
    for _ in range(BURST_ROUNDS):
        barrier = threading.Barrier(len(keys))
        t0 = time.monotonic()

        def reader(k):
            barrier.wait()
            status, body = read(a.port, k)
            results.append((k, status, body == values[k]))
        threads = [threading.Thread(target=reader, args=(k,)) for k in keys]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        times.append(time.monotonic() - t0)
    wrong = [r for r in results if r[1:] != (200, True)]
    assert wrong == [], "%d of %d reads not whole: %r" % (len(wrong), len(results), wrong[:4])
    assert "dropped from the ring" not in a.log_text(), a.log_text()[-2000:]
    times.sort()
    print("TIMING %d x 1 MiB asked at once through a peer: median %.1f ms, max %.1f ms per burst"
          % (BURST, 1000 * times[len(times) // 2], 1000 * times[-1]))


def stats(node):
    status, _, body, _ = node.request("GET", "/api/stats")
    assert status == 200
    return json.loads(body)


def b_peer_gets(node):
    """Calls the node's peer port has taken (its /api/stats peer server counters)."""
    return stats(node)["peer_server"]["calls"]

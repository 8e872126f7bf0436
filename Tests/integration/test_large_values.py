"""Large values leave from their cache entry, not copied (issue 11, item 3): a value replaced or deleted while a
slow reader is still receiving it arrives whole and byte-exact, and the entry's block is freed once the last write
that reads it is done (`pinned_bytes` in /api/stats goes back to 0, RSS back near its baseline).
"""
import json
import random
import socket

import pytest

from harness import DEADLINE, RawConn, proc_status_kib, v1, wait_until

MiB = 1024 * 1024
EXTRA_LARGE = 6
READERS = 8


def cache_stats(node):
    status, _, body, _ = node.request("GET", "/api/stats")
    assert status == 200
    return json.loads(body)


def pinned_bytes(node):
    caches = cache_stats(node)["caches"]
    return caches["main"]["pinned_bytes"] + caches["hot"]["pinned_bytes"]


def bytes_out(node):
    return cache_stats(node)["http"]["bytes_out"]


def rss_mib(node):
    return proc_status_kib(node.proc.pid) / 1024.0


@pytest.mark.parametrize("change", ["replace", "delete"])
def test_a_large_value_changed_while_a_slow_reader_receives_it_arrives_whole(start_node, change):
    # Room for every answer below in the connection's queue at once, so that all are answered before the change.
    node = start_node("--max-body-bytes", "2MiB", "--max-output-bytes", "16MiB")
    old = random.Random(11).randbytes(MiB)
    new = random.Random(12).randbytes(MiB)
    assert node.request("PUT", v1("big"), body=old)[0] == 204
    assert node.get("Tom")[2] == b"value=630\n"  # loaded now, so that all three answers below are hits
    assert pinned_bytes(node) == 0
    rss0 = rss_mib(node)
    sent_before = bytes_out(node)

    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(node.addr)
    s.settimeout(DEADLINE)
    reader = RawConn(s)
    # Large, small, large, pipelined: the small answer must come between the large ones, in order. Then more
    # large ones: the kernel's socket buffers (up to 4 MiB on loopback) must not hold every answer, or nothing
    # would be left for the node to hold.
    reader.send(b"GET /v1/cache/scores/big HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /api/get?key=Tom HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /api/get?key=big HTTP/1.1\r\nHost: x\r\n\r\n"
                + b"GET /v1/cache/scores/big HTTP/1.1\r\nHost: x\r\n\r\n" * EXTRA_LARGE)
    try:
        # All are answered (queued, mostly unsent: the reader does not read yet).
        wait_until(lambda: bytes_out(node) - sent_before >= (2 + EXTRA_LARGE) * MiB, DEADLINE,
                   what="the answers to be queued")
        if change == "replace":
            assert node.request("PUT", v1("big"), body=new)[0] == 204
            assert node.request("GET", v1("big"))[2] == new, "others see the new value at once"
        else:
            assert node.request("DELETE", v1("big"))[0] == 204
            assert node.request("GET", v1("big"))[0] == 404
        # The old block is no longer an entry, but the slow reader's answers still hold it.
        held = pinned_bytes(node)
        assert held >= MiB, held
        rss_during = rss_mib(node)

        status, headers, body, _ = reader.read_response()
        assert status == 200 and len(body) == MiB and body == old, "first answer: %d bytes, exact=%s" % (
            len(body), body == old)
        assert reader.read_response()[2] == b"value=630\n"
        status, _, body, _ = reader.read_response()
        assert status == 200 and body == b"value=" + old + b"\n", "third answer: %d bytes" % len(body)
        for i in range(EXTRA_LARGE):
            status, _, body, _ = reader.read_response()
            assert status == 200 and body == old, "answer %d: %d bytes" % (4 + i, len(body))
    finally:
        s.close()
    wait_until(lambda: pinned_bytes(node) == 0, DEADLINE, what="the pinned block to be freed")
    rss_after = rss_mib(node)
    print("\n[figures] change=%s pinned_during=%d rss_before=%.1f MiB rss_during=%.1f MiB rss_after=%.1f MiB"
          % (change, held, rss0, rss_during, rss_after))
    if change == "replace":
        assert node.request("GET", v1("big"))[2] == new
    else:
        assert node.request("GET", v1("big"))[0] == 404


def test_many_pinned_values_are_freed_after_their_readers_finish(start_node):
    """8 slow readers hold 8 deleted 1 MiB values: pinned bytes go to 0 and RSS falls back after they read."""
    node = start_node("--max-body-bytes", "2MiB", "--max-output-bytes", "16MiB", "--max-queued-output-bytes",
                      "256MiB")
    values = [random.Random(100 + i).randbytes(MiB) for i in range(READERS)]
    for i, value in enumerate(values):
        assert node.request("PUT", v1("v%d" % i), body=value)[0] == 204
    rss_full = rss_mib(node)
    readers = []
    try:
        for i in range(READERS):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(node.addr)
            s.settimeout(DEADLINE)
            r = RawConn(s)
            # More than the kernel's socket buffers take (up to 4 MiB), so each reader leaves answers queued.
            r.send(b"GET /v1/cache/scores/v%d HTTP/1.1\r\nHost: x\r\n\r\n" % i * (EXTRA_LARGE + 1))
            readers.append(r)
        wait_until(lambda: bytes_out(node) >= READERS * (EXTRA_LARGE + 1) * MiB, DEADLINE,
                   what="every answer to be queued")
        for i in range(READERS):
            assert node.request("DELETE", v1("v%d" % i))[0] == 204
        # Each reader's unsent answers keep their block: READERS MiB, not counted in the cache any more.
        held = pinned_bytes(node)
        assert held >= READERS * MiB, held
        assert cache_stats(node)["caches"]["main"]["items"] == 0
        for i, r in enumerate(readers):
            for _ in range(EXTRA_LARGE + 1):
                status, _, body, _ = r.read_response()
                assert status == 200 and body == values[i], "reader %d: %d bytes" % (i, len(body))
    finally:
        for r in readers:
            r.sock.close()
    wait_until(lambda: pinned_bytes(node) == 0, DEADLINE, what="every pinned block to be freed")
    rss_after = rss_mib(node)
    print("\n[figures] pinned_during=%d rss_full=%.1f MiB rss_after=%.1f MiB" % (held, rss_full, rss_after))
    # The values are gone from the cache and from the writes: RSS does not stay above the full cache.
    assert rss_after <= rss_full + 4, (rss_full, rss_after)

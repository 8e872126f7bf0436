"""Hostile clients must not disturb a well-formed one, nor take the process down."""
import os
import random
import socket
import threading
import time

from harness import v1


def hostile_client(addr, seed, stop, errors):
    rnd = random.Random(seed)
    payloads = [
        lambda: os.urandom(rnd.randint(1, 4096)),                                        # garbage bytes
        lambda: b"GET /api/get?key=Tom HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",  # oversized
        lambda: b"GET /api/get?key=" + b"k" * 20000 + b" HTTP/1.1\r\n\r\n",               # long request line
        lambda: b"GET /api/get?key=Tom HTTP/1.1\r\nHost:",                                # half request
        lambda: b"PUT " + v1("victim").encode() + b" HTTP/1.1\r\nContent-Length: 50\r\n\r\nshort",  # half body
        lambda: b"POST /api/set HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        lambda: b"POST /api/set HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        lambda: b"GET / HTTP/1.1\r\n" + b"\r\n" * 100,
        lambda: b"\x00" * 1000 + b"\r\n\r\n",
        lambda: b"GET /api/get?key=%zz%%%00 HTTP/1.1\r\nHost: x\r\n\r\n",
        lambda: b"PUT /v1/cache/scores/%ff%fe HTTP/1.1\r\nContent-Length: 1\r\n\r\n\xff",
    ]
    while not stop.is_set():
        try:
            s = socket.create_connection(addr, timeout=2)
            try:
                s.sendall(rnd.choice(payloads)())
                if rnd.random() < 0.5:
                    s.settimeout(0.2)
                    try:
                        s.recv(65536)
                    except (socket.timeout, OSError):
                        pass
            finally:
                if rnd.random() < 0.3:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.close()
        except (ConnectionError, socket.timeout, OSError) as e:
            # The server closing a hostile connection early is fine; refusing to accept is not.
            if isinstance(e, ConnectionRefusedError):
                errors.append(e)
                return


def test_well_formed_client_unaffected_by_hostile_ones(node):
    assert node.request("PUT", v1("victim"), body=b"intact")[0] == 204
    stop = threading.Event()
    errors = []
    threads = [threading.Thread(target=hostile_client, args=(node.addr, i, stop, errors)) for i in range(20)]
    for t in threads:
        t.start()
    good = 0
    try:
        deadline = time.monotonic() + 4
        c = node.raw()
        while time.monotonic() < deadline:
            c.send(b"GET /api/get?key=Tom HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, body, _ = c.read_response()
            assert (status, body) == (200, b"value=630\n")
            status, _, body, _ = node.request("GET", v1("victim"))   # and on fresh connections
            assert (status, body) == (200, b"intact")
            good += 1
        c.close()
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert good > 20, "only %d good round trips in 4 s" % good
    assert not errors, errors[:3]
    assert node.alive(), "the process died:\n" + node.log_text()[-2000:]
    assert node.request("GET", "/healthz")[2] == b"ok\n"
    assert node.request("GET", v1("victim"))[2] == b"intact", "a broken request corrupted a stored value"


def test_many_half_open_connections_then_normal_service(node):
    socks = []
    try:
        for _ in range(300):
            s = socket.create_connection(node.addr)
            s.sendall(b"GET /api/get?key=Tom HTTP/1.1\r\n")
            socks.append(s)
        assert node.get("Tom")[2] == b"value=630\n"
    finally:
        for s in socks:
            s.close()
    assert node.alive()


def _rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_input_after_a_final_answer_is_not_buffered(start_node):
    # A client whose last request said Connection: close, that does not read its (large) answer and keeps
    # sending: what it sends after that request must be dropped, not kept, or it could grow the node's memory.
    # The answer (12 MiB) must not fit in the kernel's socket buffers, so the node is still writing it.
    n = start_node("--max-body-bytes", "16MiB", "--cache-bytes", "64MiB")
    big = "x" * (12 << 20)
    assert n.request("PUT", "/v1/cache/scores/big-close", body=big.encode())[0] == 204
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(5)
    s.connect(n.addr)
    s.sendall(b"GET /v1/cache/scores/big-close HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    time.sleep(0.2)
    before = _rss_kib(n.proc.pid)
    chunk = b"G" * 65536
    sent = 0
    s.settimeout(0.5)
    try:
        while sent < 64 << 20:
            sent += s.send(chunk)
    except (socket.timeout, OSError):
        pass
    time.sleep(0.3)
    after = _rss_kib(n.proc.pid)
    s.close()
    assert after - before < 16 * 1024, "node grew by %d KiB while %d bytes were sent after Connection: close" % (
        after - before, sent)
    assert n.get("Tom")[2] == b"value=630\n"

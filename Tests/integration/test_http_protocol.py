"""HTTP/1.1 over raw sockets: keep-alive, pipelining, split requests, limits, malformed input, timeouts."""
import socket
import time

import pytest

from harness import DEADLINE, v1

GET_TOM = b"GET /api/get?key=Tom HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def get_req(key, extra=b""):
    return b"GET /api/get?key=" + key.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + b"\r\n"


def put_req(key, value, extra=b""):
    return (b"PUT " + v1(key).encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: "
            + str(len(value)).encode() + b"\r\n" + extra + b"\r\n" + value)


def test_keep_alive_serves_many_requests_on_one_connection(node):
    c = node.raw()
    try:
        for _ in range(20):
            c.send(GET_TOM)
            status, headers, body, _ = c.read_response()
            assert (status, body) == (200, b"value=630\n")
            assert headers.get("connection", "").lower() != "close"
    finally:
        c.close()


def test_pipelined_gets_answered_in_order(node):
    c = node.raw()
    try:
        c.send(get_req("Tom") + get_req("Jack") + get_req("Sam"))
        assert [c.read_response()[2] for _ in range(3)] == [b"value=630\n", b"value=589\n", b"value=567\n"]
    finally:
        c.close()


def test_pipelined_writes_and_reads_apply_in_order(node):
    c = node.raw()
    try:
        c.send(put_req("pipe-k", b"one") + get_req("pipe-k") + put_req("pipe-k", b"two") + get_req("pipe-k")
               + b"DELETE " + v1("pipe-k").encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n" + get_req("pipe-k"))
        got = [c.read_response()[:3:2] for _ in range(6)]
        assert got == [(204, b""), (200, b"value=one\n"), (204, b""), (200, b"value=two\n"), (204, b""),
                       (404, got[5][1])]
    finally:
        c.close()


def test_many_pipelined_large_responses(start_node):
    # More response bytes than --max-output-bytes: the server must stop reading, not drop or reorder answers.
    n = start_node("--max-output-bytes", "16KiB")
    value = bytes(range(256)) * 256  # 64 KiB
    assert n.request("PUT", v1("big"), body=value)[0] == 204
    c = n.raw(timeout=30)
    try:
        count = 200
        req = b"GET " + v1("big").encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        c.send(req * count + GET_TOM)
        for i in range(count):
            status, _, body, _ = c.read_response()
            assert status == 200 and body == value, "answer %d" % i
        assert c.read_response()[2] == b"value=630\n"
    finally:
        c.close()


def test_request_sent_one_byte_at_a_time(node):
    c = node.raw()
    try:
        for i in range(len(GET_TOM)):
            c.send(GET_TOM[i:i + 1])
            time.sleep(0.002)
        status, _, body, _ = c.read_response()
        assert (status, body) == (200, b"value=630\n")
    finally:
        c.close()


@pytest.mark.parametrize("kind", ["get", "put"])
def test_request_split_at_every_offset(node, kind):
    if kind == "get":
        req, expect = GET_TOM, (200, b"value=630\n")
    else:
        req, expect = put_req("split-k", b"split-value-0123456789"), (204, b"")
    c = node.raw()
    try:
        for cut in range(1, len(req)):
            c.send(req[:cut])
            time.sleep(0.002)  # so the two parts arrive in separate reads
            c.send(req[cut:])
            status, _, body, _ = c.read_response()
            assert (status, body) == expect, "split at byte %d" % cut
    finally:
        c.close()
    if kind == "put":
        assert node.request("GET", v1("split-k"))[2] == b"split-value-0123456789"


def test_http10_closes_by_default(node):
    c = node.raw()
    try:
        c.send(b"GET /api/get?key=Tom HTTP/1.0\r\n\r\n")
        status, _, body, _ = c.read_response()
        assert (status, body) == (200, b"value=630\n")
        assert c.closed_by_peer(), "an HTTP/1.0 request without keep-alive must close the connection"
    finally:
        c.close()


def test_http10_keep_alive(node):
    c = node.raw()
    try:
        for _ in range(3):
            c.send(b"GET /api/get?key=Tom HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, headers, body, _ = c.read_response()
            assert (status, body) == (200, b"value=630\n")
            assert headers.get("connection", "").lower() == "keep-alive"
    finally:
        c.close()


def test_connection_close_is_honoured(node):
    c = node.raw()
    try:
        c.send(get_req("Tom", b"Connection: close\r\n") + get_req("Jack"))
        status, headers, body, _ = c.read_response()
        assert (status, body) == (200, b"value=630\n")
        assert headers.get("connection", "").lower() == "close"
        assert c.closed_by_peer(), "the connection must close after a Connection: close request"
        assert c.buf == b"", "nothing may be answered after Connection: close"
    finally:
        c.close()


def test_chunked_request_is_411(node):
    c = node.raw()
    try:
        c.send(b"PUT " + v1("chunked").encode() + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n0\r\n\r\n")
        status, _, body, _ = c.read_response()
        assert status == 411
    finally:
        c.close()
    assert node.request("GET", v1("chunked"))[0] == 404


def test_body_over_limit_is_413(start_node):
    n = start_node("--max-body-bytes", "1KiB")
    assert n.request("PUT", v1("fits"), body=b"x" * 1024)[0] == 204
    c = n.raw()
    try:
        c.send(b"PUT " + v1("too-big").encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n")
        status, _, body, _ = c.read_response()
        assert status == 413
        assert body, "413 should say the value is too large"
    finally:
        c.close()
    assert n.request("GET", v1("too-big"))[0] == 404
    assert n.request("GET", "/healthz")[0] == 200


def test_default_body_limit_is_1mib(node):
    c = node.raw()
    try:
        c.send(b"POST /api/set HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
               b"Content-Length: %d\r\n\r\n" % (1024 * 1024 + 1))
        assert c.read_response()[0] == 413
    finally:
        c.close()


def test_request_line_over_limit_is_414(node):
    c = node.raw()
    try:
        c.send(b"GET /api/get?key=" + b"k" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response()[0] == 414
    finally:
        c.close()


def test_headers_over_limit_is_431(node):
    c = node.raw()
    try:
        headers = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"v" * 100) for i in range(100))  # ~11 KiB
        c.send(b"GET /api/get?key=Tom HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        assert c.read_response()[0] == 431
    finally:
        c.close()


def test_header_limit_is_configurable(start_node):
    n = start_node("--max-header-bytes", "1KiB")
    c = n.raw()
    try:
        c.send(b"GET /api/get?key=" + b"k" * 1100 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response()[0] == 414
    finally:
        c.close()
    c = n.raw()
    try:
        c.send(b"GET /api/get?key=Tom HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 1100 + b"\r\n\r\n")
        assert c.read_response()[0] == 431
    finally:
        c.close()
    assert n.get("Tom")[2] == b"value=630\n"


@pytest.mark.parametrize("line", [
    b"GARBAGE\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET /healthz HTTP/1.1 extra\r\n\r\n",
    b"GET /healthz XTTP/1.1\r\n\r\n",
    b" / HTTP/1.1\r\n\r\n",
])
def test_malformed_request_line_is_400_and_closes(node, line):
    other = node.raw()  # an established connection that must keep being served
    c = node.raw()
    try:
        c.send(line)
        status, headers, body, _ = c.read_response()
        assert status == 400
        assert body.strip(), "400 should give a reason"
        assert c.closed_by_peer(), "the connection must close after a malformed request"
        other.send(GET_TOM)
        assert other.read_response()[2] == b"value=630\n"
    finally:
        c.close()
        other.close()
    assert node.get("Tom")[2] == b"value=630\n"


def test_header_line_without_colon_is_400(node):
    c = node.raw()
    try:
        c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nthis is not a header\r\n\r\n")
        assert c.read_response()[0] == 400
    finally:
        c.close()


def test_incomplete_request_times_out_with_408(start_node):
    n = start_node("--header-timeout", "1s")
    c = n.raw()
    try:
        start = time.monotonic()
        c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        c.sock.settimeout(DEADLINE)
        status, _, _, _ = c.read_response()
        elapsed = time.monotonic() - start
        assert status == 408
        # Not before the timeout; the upper bound only tells it from the 60 s idle timeout.
        assert 0.8 <= elapsed <= DEADLINE, "408 after %.2fs with --header-timeout 1s" % elapsed
        print("TIMING 408 after %.3f s with --header-timeout 1s" % elapsed)
        assert c.closed_by_peer()
    finally:
        c.close()
    assert n.request("GET", "/healthz")[0] == 200


def test_idle_connection_is_closed_after_idle_timeout(start_node):
    n = start_node("--idle-timeout", "1s")
    c = n.raw()
    try:
        c.send(GET_TOM)
        assert c.read_response()[0] == 200
        assert c.closed_by_peer(timeout=DEADLINE), "an idle keep-alive connection should close after --idle-timeout"
    finally:
        c.close()


def test_max_connections_rejects_with_503(start_node):
    n = start_node("--max-connections", "4")
    held = [n.raw() for _ in range(4)]
    try:
        for c in held:
            c.send(GET_TOM)
            assert c.read_response()[0] == 200
        extra = n.raw()
        try:
            status, _, _, _ = extra.read_response()
            assert status == 503
            assert extra.closed_by_peer(), "a refused connection is closed at once"
        finally:
            extra.close()
        # The held connections still work.
        for c in held:
            c.send(GET_TOM)
            assert c.read_response()[2] == b"value=630\n"
        held.pop().close()
        deadline = time.monotonic() + DEADLINE
        while True:
            c = n.raw()
            try:
                c.send(GET_TOM)
                status = c.read_response()[0]
            except (EOFError, ConnectionResetError):
                status = None
            finally:
                c.close()
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert status == 200, "after a connection closes, a new one must be accepted"
    finally:
        for c in held:
            c.close()


def test_expect_100_continue(node):
    c = node.raw()
    try:
        value = b"e" * 2000
        c.send(b"PUT " + v1("expect-k").encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n"
               b"Expect: 100-continue\r\n\r\n")
        c.sock.settimeout(3)
        status, _, _, _ = c.read_response()
        assert status == 100
        c.send(value)
        c.sock.settimeout(10)
        assert c.read_response()[0] == 204
    finally:
        c.close()
    assert node.request("GET", v1("expect-k"))[2] == b"e" * 2000


def test_expect_100_continue_with_too_large_body_gets_413_first(start_node):
    n = start_node("--max-body-bytes", "1KiB")
    c = n.raw()
    try:
        c.send(b"PUT " + v1("expect-big").encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
               b"Expect: 100-continue\r\n\r\n")
        c.sock.settimeout(3)
        assert c.read_response()[0] == 413
    finally:
        c.close()


def test_client_reset_mid_request_does_not_hurt(node):
    for _ in range(20):
        s = socket.create_connection(node.addr)
        s.sendall(b"PUT " + v1("reset-k").encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # RST
    assert node.request("GET", v1("reset-k"))[0] == 404
    assert node.get("Tom")[2] == b"value=630\n"
    assert node.alive()

"""Fast cache loaders for the benchmarks: pipelined requests over one raw socket, answers checked.

    python3 bench/loader.py api-set HOST:PORT COUNT [VALUE]    # /api/set key=k0..k{COUNT-1}, expire=4320
    python3 bench/loader.py put HOST:PORT COUNT                # PUT /v1/cache/scores/kNNNNNNN, 8-byte values
"""
import socket
import sys

BATCH = 512


def _responses(sock, buf, n):
    """Reads n Content-Length framed responses; returns (statuses, leftover)."""
    statuses = []
    while len(statuses) < n:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise EOFError("server closed the connection")
            buf += chunk
            continue
        head = buf[:end]
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        total = end + 4 + length
        while len(buf) < total:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise EOFError("server closed the connection")
            buf += chunk
        statuses.append(status)
        buf = buf[total:]
    return statuses, buf


def _pipeline(addr, requests, expect):
    sock = socket.create_connection(addr)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    done = 0
    try:
        for i in range(0, len(requests), BATCH):
            batch = requests[i:i + BATCH]
            sock.sendall(b"".join(batch))
            statuses, buf = _responses(sock, buf, len(batch))
            bad = [s for s in statuses if s != expect]
            if bad:
                raise RuntimeError("load failed: got status %d (expected %d)" % (bad[0], expect))
            done += len(batch)
    finally:
        sock.close()
    return done


def api_set(addr, count, value="630", prefix="k"):
    reqs = []
    for i in range(count):
        body = ("key=%s%d&value=%s&expire=4320&hot=false" % (prefix, i, value)).encode()
        reqs.append(b"POST /api/set HTTP/1.1\r\nHost: bench\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    return _pipeline(addr, reqs, 200)


def put_8byte(addr, count, group="scores"):
    """Keys k0000000.. and values v0000000..: 8 bytes each (count <= 10,000,000)."""
    reqs = [b"PUT /v1/cache/%s/k%07d?ttl=259200 HTTP/1.1\r\nHost: b\r\nContent-Length: 8\r\n\r\nv%07d"
            % (group.encode(), i, i) for i in range(count)]
    return _pipeline(addr, reqs, 204)


def parse_addr(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


if __name__ == "__main__":
    mode, addr, count = sys.argv[1], parse_addr(sys.argv[2]), int(sys.argv[3])
    if mode == "api-set":
        n = api_set(addr, count, *(sys.argv[4:5] or []))
    elif mode == "put":
        n = put_8byte(addr, count)
    else:
        sys.exit(__doc__)
    print("loaded %d keys" % n)

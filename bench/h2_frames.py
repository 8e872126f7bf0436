#!/usr/bin/env python3
"""How a large value travels between two peers: HTTP/2 frames counted on the wire, and wall time.

Starts node b (the owner) and node a, with a's peer connection to b going through a small TCP relay here that
parses the HTTP/2 frames both ways. Sets values of the given sizes at b, then reads each through a (cold every
time: --hot-copy-one-in 0, so a asks b) and reports per read: DATA frames and their largest payload, the
WINDOW_UPDATEs a sent meanwhile, and whether b's send window ran dry before the answer ended (a stall: the
rest had to wait a round trip for a WINDOW_UPDATE). Then times the same reads without the relay.

  SPRINGCACHE_BIN=.build/release/springcache-uv python3 bench/h2_frames.py [--sizes 1MiB,4MiB] [--reads 20]
"""
import argparse
import http.client
import os
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "Tests", "integration"))
from harness import Node, free_ports, keys_owned_by, wait_until  # noqa: E402

DATA, HEADERS, SETTINGS, WINDOW_UPDATE = 0, 1, 4, 8
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Direction:
    """Frames parsed from one direction of the relay, with what the flow-control state says about them."""

    def __init__(self, skip):
        self.buf = b""
        self.skip = skip
        self.frames = []  # (time, type, flags, stream, length, payload[:16])
        self.lock = threading.Lock()

    def feed(self, data):
        self.buf += data
        if self.skip:
            n = min(self.skip, len(self.buf))
            self.buf = self.buf[n:]
            self.skip -= n
        now = time.monotonic()
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[0:3], "big")
            if len(self.buf) < 9 + length:
                break
            ftype, flags = self.buf[3], self.buf[4]
            stream = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            payload = self.buf[9:9 + length]
            with self.lock:
                self.frames.append((now, ftype, flags, stream, length, payload[:64]))
            self.buf = self.buf[9 + length:]


def pump(src, dst, direction):
    try:
        while True:
            data = src.recv(1 << 20)
            if not data:
                break
            direction.feed(data)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def relay(listen_port, target_port, to_server, to_client):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", listen_port))
    ls.listen(16)

    def serve():
        while True:
            c, _ = ls.accept()
            s = socket.create_connection(("127.0.0.1", target_port))
            for x in (c, s):
                x.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=pump, args=(c, s, to_server), daemon=True).start()
            threading.Thread(target=pump, args=(s, c, to_client), daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()


def settings_of(payload):
    out = {}
    for i in range(0, len(payload) - 5, 6):
        out[int.from_bytes(payload[i:i + 2], "big")] = int.from_bytes(payload[i + 2:i + 6], "big")
    return out


def analyse(to_server, to_client, start, end):
    """One read's frames (between start and end): the answer's DATA, a's WINDOW_UPDATEs, whether b stalled."""
    with to_server.lock, to_client.lock:
        up = list(to_server.frames)
        down = list(to_client.frames)
    # a's advertised stream window (last SETTINGS_INITIAL_WINDOW_SIZE a sent; 65535 by default).
    window = 65535
    for f in up:
        if f[1] == SETTINGS and not f[2] & 1:
            window = settings_of(f[5]).get(4, window)
    data = [f for f in down if start <= f[0] <= end and f[1] == DATA]
    updates = [f for f in up if start <= f[0] <= end and f[1] == WINDOW_UPDATE]
    streams = {f[3] for f in data}
    stalls = 0
    for s in streams:
        sent = sum(f[4] for f in data if f[3] == s)
        granted = window + sum(int.from_bytes(f[5][:4], "big") & 0x7FFFFFFF for f in updates if f[3] == s)
        if sent > window:
            stalls += 1  # the answer was larger than the window a advertised: b waited for an update
        assert sent <= granted, (sent, granted)
    return {
        "data_frames": len(data),
        "largest_data": max((f[4] for f in data), default=0),
        "data_bytes": sum(f[4] for f in data),
        "window_updates": len(updates),
        "stream_window_updates": len([f for f in updates if f[3] != 0]),
        "stalled_streams": stalls,
        "advertised_stream_window": window,
    }


def cpu_seconds(node):
    """User + system CPU the node's process has used so far."""
    with open("/proc/%d/stat" % node.proc.pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def get(port, key):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("GET", "/v1/cache/scores/" + key)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def put(port, key, value):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("PUT", "/v1/cache/scores/" + key, body=value)
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def size_arg(text):
    units = {"KiB": 1 << 10, "MiB": 1 << 20}
    for u, m in units.items():
        if text.endswith(u):
            return int(float(text[:-len(u)]) * m)
    return int(text)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="1MiB,4MiB")
    p.add_argument("--reads", type=int, default=20)
    p.add_argument("--flags", default="", help="extra flags for both nodes")
    p.add_argument("--direct", action="store_true", help="no relay: wall time only, frames not seen")
    args = p.parse_args()
    sizes = [size_arg(s) for s in args.sizes.split(",")]
    api_a, api_b, peer_a, peer_b, relay_port = free_ports(5)
    common = ["--max-body-bytes", "%d" % (max(sizes) + 4096), "--hot-copy-one-in", "0", *args.flags.split()]
    to_server, to_client = Direction(len(PREFACE)), Direction(0)
    relay(relay_port, peer_b, to_server, to_client)
    b = Node("--api", "127.0.0.1:%d" % api_b, "--name", "b", "--port", str(peer_b),
             "--peer", "a=127.0.0.1:%d,b=127.0.0.1:%d" % (peer_a, peer_b), *common)
    a = Node("--api", "127.0.0.1:%d" % api_a, "--name", "a", "--port", str(peer_a),
             "--peer", "a=127.0.0.1:%d,b=127.0.0.1:%d" % (peer_a, peer_b if args.direct else relay_port), *common)
    try:
        keys = keys_owned_by(["a", "b"], "b", len(sizes), prefix="big-")
        for key, size in zip(keys, sizes):
            assert put(api_b, key, os.urandom(size)) == 204
        for key, size in zip(keys, sizes):
            wait_until(lambda: get(api_a, key)[0] == 200, 20, what="a reads %s through b" % key)
            totals = {}
            times = []
            cpu_a, cpu_b = cpu_seconds(a), cpu_seconds(b)
            for _ in range(args.reads):
                t0 = time.monotonic()
                status, body = get(api_a, key)
                t1 = time.monotonic()
                assert status == 200 and len(body) == size, (status, len(body))
                if not args.direct:
                    time.sleep(0.05)  # frames a sends right after (replenishing WINDOW_UPDATEs) land in this read
                r = analyse(to_server, to_client, t0, time.monotonic())
                for k, v in r.items():
                    totals.setdefault(k, []).append(v)
                times.append(t1 - t0)
            times.sort()
            cpu_a, cpu_b = cpu_seconds(a) - cpu_a, cpu_seconds(b) - cpu_b
            local = []
            for _ in range(args.reads):
                t0 = time.monotonic()
                status, body = get(api_b, key)
                local.append(time.monotonic() - t0)
                assert status == 200 and len(body) == size
            local.sort()
            print("size=%d reads=%d %s: data_frames/read=%s largest_data=%s window_updates/read=%s "
                  "stream_window_updates/read=%s stalled_reads=%d advertised_stream_window=%d "
                  "median=%.2f ms p90=%.2f ms (at the owner: median=%.2f ms p90=%.2f ms) "
                  "cpu/read: a %.2f ms, b %.2f ms" % (
                      size, args.reads, "direct (frames not seen)" if args.direct else "via-relay",
                      sorted(set(totals["data_frames"])), max(totals["largest_data"]),
                      sorted(set(totals["window_updates"])), sorted(set(totals["stream_window_updates"])),
                      sum(1 for s in totals["stalled_streams"] if s), totals["advertised_stream_window"][-1],
                      1000 * times[len(times) // 2], 1000 * times[int(len(times) * 0.9)],
                      1000 * local[len(local) // 2], 1000 * local[int(len(local) * 0.9)],
                      1000 * cpu_a / args.reads, 1000 * cpu_b / args.reads))
    finally:
        for n in (a, b):
            n.stop()
            n.cleanup()


if __name__ == "__main__":
    main()

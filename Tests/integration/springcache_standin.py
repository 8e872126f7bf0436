#!/usr/bin/env python3
"""A stand-in springcache node (Go) for the mixed-cluster tests, written with grpcio, behaving as
reference/springcache-compat.md ("Mixed clusters") says the real one does:

- its ring is springcache's (Tests/golden/make_springcache_ring_vectors.py), keyed by each member's IP;
- Set stores whatever `expire` arrives (absolute unix seconds): 0 or a past time is stored as already expired,
  so the next Get reloads from the origin;
- Get of a key its origin lacks fails with UNKNOWN `<key> not exist`;
- it has no Delete and no Invalidate (grpcio answers UNIMPLEMENTED for methods a servicer leaves out);
- a Get or Set for a group it does not serve crashes it (nil dereference): here the process exits at once
  with status 3, which closes every connection, and the test sees it dead;
- its API (`/api/get`, `/api/set`) reads form fields body first, then query (Go's FormValue); `/api/set`'s
  `expire` minutes become now + minutes (so 0 is "now"); a key owned elsewhere goes to its owner over gRPC;
  a failed peer call answers 500 with the error, a missing key 500 `<key> not exist`.

Its origin is springcache's demo store (Tom 630, Jack 589, Sam 567). `/debug/calls` answers what peers sent
(method and group counts) and `/debug/keys` the keys held unexpired, as JSON.

    springcache_standin.py --name sc --listen 127.0.0.2:P --api 127.0.0.2:Q --peer sc=127.0.0.2:P,uv=127.0.0.3:R
"""
import argparse
import http.server
import json
import os
import socket
import sys
import threading
import time
import urllib.parse
from concurrent import futures

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "golden"))

from harness import peer_stubs  # noqa: E402
import make_springcache_ring_vectors as scring  # noqa: E402

DEMO = {"Tom": b"630", "Jack": b"589", "Sam": b"567"}
LOAD_TTL = 30  # seconds: springcache's TTL of loaded values
PEER_TIMEOUT = 2.0  # seconds: springcache's peer call timeout


class Store:
    def __init__(self):
        self.lock = threading.Lock()
        self.items = {}  # key -> (value bytes, expire unix seconds)
        self.calls = {}  # "Method group" -> count

    def count(self, method, group):
        with self.lock:
            name = "%s %s" % (method, group)
            self.calls[name] = self.calls.get(name, 0) + 1

    def set(self, key, value, expire):
        with self.lock:
            self.items[key] = (value, expire)

    def get(self, key):
        """The value, loading from the demo origin when absent or expired; None if the origin lacks it."""
        now = time.time()
        with self.lock:
            item = self.items.get(key)
            if item is not None and item[1] > now:
                return item[0]
        value = DEMO.get(key)
        if value is not None:
            self.set(key, value, int(now) + LOAD_TTL)
        return value

    def live_keys(self):
        now = time.time()
        with self.lock:
            return sorted(k for k, (_, e) in self.items.items() if e > now)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--listen", required=True)
    ap.add_argument("--api", required=True)
    ap.add_argument("--peer", required=True, help="NAME=HOST:PORT,... this node included")
    ap.add_argument("--group", default="scores")
    args = ap.parse_args()

    pb2, pb2_grpc = peer_stubs()
    peers = dict(e.split("=", 1) for e in args.peer.split(","))
    ring = scring.Ring({n: addr.rsplit(":", 1)[0] for n, addr in peers.items()})
    store = Store()

    def crash_on_foreign_group(method, group):
        store.count(method, group)
        if group != args.group:
            # springcache dereferences a nil group and dies: every connection closes with it.
            sys.stderr.write("standin: %s for unknown group %r: crashing as springcache does\n" % (method, group))
            sys.stderr.flush()
            os._exit(3)

    class Servicer(pb2_grpc.SpringCacheServicer):
        def Get(self, request, context):
            crash_on_foreign_group("Get", request.group)
            if request.key == "":
                context.abort(grpc.StatusCode.UNKNOWN, "key is required")
            value = store.get(request.key)
            if value is None:
                context.abort(grpc.StatusCode.UNKNOWN, "%s not exist" % request.key)
            return pb2.GetResponse(value=value)

        def Set(self, request, context):
            crash_on_foreign_group("Set", request.group)
            store.set(request.key, request.value, request.expire)
            return pb2.SetResponse(ok=True)
        # No Delete, no Invalidate: grpcio answers UNIMPLEMENTED, as grpc-go does for springcache.

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    pb2_grpc.add_SpringCacheServicer_to_server(Servicer(), server)
    if server.add_insecure_port(args.listen) == 0:
        sys.exit("standin: cannot listen on %s" % args.listen)
    server.start()

    channels = {}
    channels_lock = threading.Lock()

    def stub_for(name):
        with channels_lock:
            if name not in channels:
                channels[name] = pb2_grpc.SpringCacheStub(grpc.insecure_channel(peers[name]))
            return channels[name]

    class API(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            # Head and body go out in separate writes: without NODELAY, Nagle and delayed ACKs cost 40 ms each.
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *a):
            pass

        def answer(self, status, body, ctype="application/octet-stream"):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def form(self):
            """Go's FormValue: the urlencoded body first, then the query string."""
            url = urllib.parse.urlsplit(self.path)
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n).decode() if n else ""
            fields = {}
            for source in (body, url.query):
                for k, v in urllib.parse.parse_qsl(source, keep_blank_values=True):
                    fields.setdefault(k, v)
            return url.path, fields

        def do_GET(self):
            self.handle_any()

        def do_POST(self):
            self.handle_any()

        def handle_any(self):
            path, f = self.form()
            try:
                if path == "/api/get":
                    self.api_get(f.get("key", ""))
                elif path == "/api/set":
                    self.api_set(f)
                elif path == "/debug/calls":
                    with store.lock:
                        self.answer(200, json.dumps(store.calls).encode(), "application/json")
                elif path == "/debug/keys":
                    self.answer(200, json.dumps(store.live_keys()).encode(), "application/json")
                else:
                    self.answer(404, b"404 page not found\n", "text/plain")
            except grpc.RpcError as e:
                self.answer(500, ("%s\n" % e.details()).encode(), "text/plain")

        def api_get(self, key):
            owner = ring.owner(key)
            if owner == args.name:
                value = store.get(key)
                if value is None:
                    return self.answer(500, ("%s not exist\n" % key).encode(), "text/plain")
            else:
                value = stub_for(owner).Get(pb2.GetRequest(group=args.group, key=key), timeout=PEER_TIMEOUT).value
            self.answer(200, b"value=" + value + b"\n")

        def api_set(self, f):
            key, value = f.get("key", ""), f.get("value", "").encode()
            minutes = int(f.get("expire") or 0)
            expire = int(time.time() + minutes * 60)  # expire=0 minutes: "now", already expired
            hot = f.get("hot") == "true"
            owner = ring.owner(key)
            if hot or owner == args.name:
                store.set(key, value, expire)
            else:
                stub_for(owner).Set(pb2.SetRequest(group=args.group, key=key, value=value, expire=expire),
                                    timeout=PEER_TIMEOUT)
            self.answer(200, b"done\n", "text/plain")

    host, port = args.api.rsplit(":", 1)
    httpd = http.server.ThreadingHTTPServer((host, int(port)), API)
    httpd.daemon_threads = True
    print("standin %s ready: grpc %s api %s" % (args.name, args.listen, args.api), flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

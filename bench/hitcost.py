#!/usr/bin/env python3
"""What one local hit costs, counted rather than timed (make bench-hitcost).

Runs the node under valgrind twice, serving N and N + 10,000 pipelined `GET /api/get?key=Tom` hits on one
connection, and divides the difference by 10,000: heap allocations per hit (memcheck) and instructions per hit
(callgrind). Unlike requests per second these do not move with the machine's load, so they can tell a 2 %
change on a busy 2-core machine. Usage: bench/hitcost.py [BINARY ...] (default .build/release/springcache-uv);
with several binaries (e.g. before and after a change) each is measured and printed on its own row.

With --remote (make bench-peercost): the same count for a remote hit. Two nodes a and b (static --peer list,
--hot-copy-one-in 0 so a never keeps a copy); Tom is owned by b, so every hit asked of a is a gRPC Get to b.
Measured twice per binary: with a under valgrind (the asking node) and with b under valgrind (the owner).

With --profile DIR: the callgrind run of N + 10,000 hits keeps its output in DIR
(callgrind.<binary's folder>.<node>.out, for `callgrind_annotate`), to see where a hit's instructions go.
"""
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

REQUEST = b"GET /api/get?key=Tom HTTP/1.1\r\nHost: bench\r\n\r\n"
ANSWER = b"value=630"
EXTRA = 10_000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_response(conn):
    """One whole HTTP/1.1 response (headers and a Content-Length body)."""
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = conn.recv(65536)
        if not chunk:
            raise SystemExit("hitcost: the node closed the connection")
        got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    m = re.search(rb"(?i)content-length: *(\d+)", head)
    while m and len(body) < int(m.group(1)):
        chunk = conn.recv(65536)
        if not chunk:
            raise SystemExit("hitcost: the node closed the connection")
        body += chunk
    return head + b"\r\n\r\n" + body


def get_json(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
        return json.load(r)


def wait_members_up(ports, deadline):
    """Until every node sees every member up: before that a's hits would not all reach b (a falls back to its
    own origin while the owner is unreachable)."""
    while True:
        try:
            states = [m["state"] for p in ports for m in get_json(p, "/api/peers")["members"]]
            if states.count("up") == len(ports) ** 2:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("hitcost: the two nodes did not see each other up")
        time.sleep(0.5)


def node_args(name, api, peer_ports):
    """A member of the two-node cluster of --remote (empty when measuring a single node)."""
    if not peer_ports:
        return ["--api", f"127.0.0.1:{api}"]
    peers = ",".join(f"{n}=127.0.0.1:{p}" for n, p in sorted(peer_ports.items()))
    return ["--api", f"127.0.0.1:{api}", "--name", name, "--port", str(peer_ports[name]), "--peer", peers,
            "--hot-copy-one-in", "0", "--jitter", "0", "--log-level", "warning"]


def serve(binary, tool_args, hits, remote=None):
    """Starts the node under valgrind, sends `hits` pipelined hits after one warming miss, returns valgrind's output.

    `remote` None: one node. "asking" or "owner": the two-node cluster, with node a (asked, the key's non-owner)
    or node b (the key's owner) under valgrind and the other node running plainly."""
    port = free_port()
    peer_ports = {"a": free_port(), "b": free_port()} if remote else {}
    measured = "b" if remote == "owner" else "a"
    other = None
    if remote:
        name = "a" if measured == "b" else "b"
        other_api = free_port()
        other = subprocess.Popen([binary, *node_args(name, other_api, peer_ports)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = port if measured == "a" else free_port()
    proc = subprocess.Popen(["valgrind", *tool_args, binary, *node_args(measured, api, peer_ports)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    asked, owner = (other_api, api) if remote == "owner" else (api, other_api if remote else None)
    port = asked  # hits are always asked of a; in "owner" a runs plainly and b answers under valgrind
    try:
        deadline = time.monotonic() + 120
        if remote:
            wait_members_up([asked, owner], deadline)
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"hitcost: the node did not start under valgrind on port {port}")
                time.sleep(0.2)
        conn.settimeout(120)
        # The first request loads the key: a miss, not counted in the difference. In a cluster it is repeated
        # until the other node is up too (until then a answers 5xx).
        while True:
            conn.sendall(REQUEST)
            got = read_response(conn)
            if ANSWER in got:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"hitcost: no hit before the deadline: {got[-300:]!r}")
            time.sleep(0.5)
        sent, want, got = 0, 0, b""
        while sent < hits:
            batch = min(100, hits - sent)
            conn.sendall(REQUEST * batch)
            sent += batch
            want += batch
            while got.count(ANSWER) < want:
                chunk = conn.recv(1 << 20)
                if not chunk:
                    raise SystemExit("hitcost: the node closed the connection")
                got += chunk
            got = got[-64:]  # only the tail can hold a partly received answer
            want = got.count(ANSWER)
        if remote:
            served = get_json(owner, "/api/stats")["gets"]
            if served < hits:
                raise SystemExit(f"hitcost: the owner served {served} of {hits} hits: not all were remote")
        conn.close()
    finally:
        proc.terminate()
        out = proc.communicate(timeout=120)[0].decode(errors="replace")
        if other:
            other.terminate()
            other.wait(timeout=60)
    return out


def count(binary, tool_args, pattern, hits, remote=None):
    out = serve(binary, tool_args, hits, remote)
    m = re.search(pattern, out)
    if not m:
        raise SystemExit(f"hitcost: valgrind printed no total:\n{out[-2000:]}")
    return int(m.group(1).replace(",", ""))


def measure(binary, remote=None, profile=None):
    base = 1_000
    memcheck = ["--tool=memcheck", "--leak-check=no"]
    allocs = re.compile(r"total heap usage: ([\d,]+) allocs")
    instrs = re.compile(r"Collected : (\d+)")
    a = [count(binary, memcheck, allocs, n, remote) for n in (base, base + EXTRA)]
    i = []
    for n in (base, base + EXTRA):
        out = "/dev/null"
        if profile and n > base:
            name = os.path.basename(os.path.dirname(os.path.abspath(binary)))  # e.g. release
            out = os.path.join(profile, f"callgrind.{name}.{remote or 'local'}.out")
        i.append(count(binary, ["--tool=callgrind", f"--callgrind-out-file={out}"], instrs, n, remote))
    return (a[1] - a[0]) / EXTRA, (i[1] - i[0]) / EXTRA


def main():
    args = sys.argv[1:]
    remote = "--remote" in args
    args = [a for a in args if a != "--remote"]
    profile = None
    if "--profile" in args:
        at = args.index("--profile")
        profile = os.path.abspath(args[at + 1])
        os.makedirs(profile, exist_ok=True)
        del args[at:at + 2]
    binaries = args or [os.path.join(os.path.dirname(__file__), "..", ".build", "release", "springcache-uv")]
    if not remote:
        print("| binary | heap allocations per hit | instructions per hit |")
        print("|---|---:|---:|")
        for b in binaries:
            allocs, instrs = measure(b, profile=profile)
            print(f"| {b} | {round(allocs, 3) + 0.0:.3f} | {instrs:,.0f} |", flush=True)
        return
    print("| binary | node | heap allocations per remote hit | instructions per remote hit |")
    print("|---|---|---:|---:|")
    for b in binaries:
        for side in ("asking", "owner"):
            allocs, instrs = measure(b, side, profile)
            print(f"| {b} | {side} | {round(allocs, 3) + 0.0:.3f} | {instrs:,.0f} |", flush=True)


if __name__ == "__main__":
    main()

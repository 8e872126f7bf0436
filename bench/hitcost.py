#!/usr/bin/env python3
"""What one local hit costs, counted rather than timed (make bench-hitcost).

Runs the node under valgrind twice, serving N and N + 10,000 pipelined `GET /api/get?key=Tom` hits on one
connection, and divides the difference by 10,000: heap allocations per hit (memcheck) and instructions per hit
(callgrind). Unlike requests per second these do not move with the machine's load, so they can tell a 2 %
change on a busy 2-core machine. Usage: bench/hitcost.py [BINARY ...] (default .build/release/springcache-uv);
with several binaries (e.g. before and after a change) each is measured and printed on its own row.
"""
import os
import re
import socket
import subprocess
import sys
import time

REQUEST = b"GET /api/get?key=Tom HTTP/1.1\r\nHost: bench\r\n\r\n"
ANSWER = b"value=630"
EXTRA = 10_000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(binary, tool_args, hits):
    """Starts the node under valgrind, sends `hits` pipelined hits after one warming miss, returns valgrind's output."""
    port = free_port()
    proc = subprocess.Popen(["valgrind", *tool_args, binary, "--api", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"hitcost: the node did not start under valgrind on port {port}")
                time.sleep(0.2)
        conn.settimeout(120)
        conn.sendall(REQUEST)  # the first request loads the key: a miss, not counted in the difference
        got = b""
        while ANSWER not in got:
            got += conn.recv(65536)
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
        conn.close()
    finally:
        proc.terminate()
        out = proc.communicate(timeout=120)[0].decode(errors="replace")
    return out


def count(binary, tool_args, pattern, hits):
    out = serve(binary, tool_args, hits)
    m = re.search(pattern, out)
    if not m:
        raise SystemExit(f"hitcost: valgrind printed no total:\n{out[-2000:]}")
    return int(m.group(1).replace(",", ""))


def measure(binary):
    base = 1_000
    memcheck = ["--tool=memcheck", "--leak-check=no"]
    allocs = re.compile(r"total heap usage: ([\d,]+) allocs")
    callgrind = ["--tool=callgrind", "--callgrind-out-file=/dev/null"]
    instrs = re.compile(r"Collected : (\d+)")
    a = [count(binary, memcheck, allocs, n) for n in (base, base + EXTRA)]
    i = [count(binary, callgrind, instrs, n) for n in (base, base + EXTRA)]
    return (a[1] - a[0]) / EXTRA, (i[1] - i[0]) / EXTRA


def main():
    binaries = sys.argv[1:] or [os.path.join(os.path.dirname(__file__), "..", ".build", "release", "springcache-uv")]
    print("| binary | heap allocations per hit | instructions per hit |")
    print("|---|---:|---:|")
    for b in binaries:
        allocs, instrs = measure(b)
        print(f"| {b} | {round(allocs, 3) + 0.0:.3f} | {instrs:,.0f} |", flush=True)


if __name__ == "__main__":
    main()

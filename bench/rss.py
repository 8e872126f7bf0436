"""Memory and start-up: idle RSS, RSS after N entries, per-entry bytes beyond key+value, time to first answer.

    bench/rss.sh [N]     (N defaults to 1,000,000; binary from $SPRINGCACHE_BIN)

Entries have 8-byte keys (k0000000..) and 8-byte values, loaded with pipelined raw-socket PUTs.
"""
import os
import socket
import subprocess
import sys
import time
import urllib.request
import json

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import loader  # noqa: E402


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def measure_entries(port, pid, n):
    """Loads n 8-byte-key/8-byte-value entries into the node at port (pid) and measures RSS before and after.

    Returns idle_kib, loaded_kib, load_s and per_entry (bytes of RSS per entry, key and value included);
    bench/bench.py's 1M-keys scenario uses it too.
    """
    time.sleep(0.5)
    idle = rss_kib(pid)
    t1 = time.monotonic()
    loader.put_8byte(("127.0.0.1", port), n)
    load_s = time.monotonic() - t1
    time.sleep(0.5)
    loaded = rss_kib(pid)
    with urllib.request.urlopen("http://127.0.0.1:%d/v1/cache/scores/k%07d" % (port, n - 1)) as r:
        assert r.read() == b"v%07d" % (n - 1)
    return {"idle_kib": idle, "loaded_kib": loaded, "load_s": load_s, "per_entry": (loaded - idle) * 1024 / n}


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    binary = os.path.abspath(os.environ.get("SPRINGCACHE_BIN") or os.path.join(HERE, "..", ".build/release/springcache-uv"))
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    argv = [binary, "--api", "127.0.0.1:%d" % port, "--jitter", "0", "--cache-bytes", "4GiB",
            "--log-level", "warning"]
    request = b"GET /api/get?key=Tom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        first = None
        while time.monotonic() - t0 < 10:
            try:
                c = socket.create_connection(("127.0.0.1", port), timeout=1)
                c.sendall(request)
                data = b""
                while True:
                    chunk = c.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                c.close()
                if data.startswith(b"HTTP/1.1 200") and data.endswith(b"value=630\n"):
                    first = time.monotonic() - t0
                    break
            except OSError:
                time.sleep(0.001)
        if first is None:
            sys.exit("rss: no answer within 10 s")
        m = measure_entries(port, proc.pid, n)
        idle, loaded, load_s, per_entry = m["idle_kib"], m["loaded_kib"], m["load_s"], m["per_entry"]
        with urllib.request.urlopen("http://127.0.0.1:%d/api/stats" % port) as r:
            stats = r.read().decode()
        print("binary:                      %s" % binary)
        print("time to first answer:        %.1f ms" % (first * 1000))
        print("idle RSS:                    %.1f MiB" % (idle / 1024))
        print("RSS after %d entries:   %.1f MiB (load took %.1f s, %.0f PUT/s pipelined)"
              % (n, loaded / 1024, load_s, n / load_s))
        print("RSS per entry:               %.1f bytes (key 8 + value 8 => %.1f bytes overhead per entry)"
              % (per_entry, per_entry - 16))
        try:
            # The cache figures only, whole: a cut JSON object is not JSON (the 2026-11-25 file was cut so).
            caches = json.loads(stats)["caches"]
            print("server caches:               %s" % json.dumps(caches, sort_keys=True))
        except ValueError:
            pass
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()

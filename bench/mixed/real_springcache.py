#!/usr/bin/env python3
"""A mixed cluster with the REAL springcache, checked by hand (not part of `make test`).

springcache (Go) is not packaged; build it yourself (docs/migrating-from-springcache.md, "Checking against the
real springcache") and point SPRINGCACHE_GO_BIN at the binary. Then, as root:

    SPRINGCACHE_GO_BIN=/path/to/springcache SPRINGCACHE_BIN=.build/release/springcache-uv \\
        python3 bench/mixed/real_springcache.py

Three hosts, each its own network namespace on one bridge, with one etcd on the bridge: svc1 runs springcache
with exactly its README's command line; svc2 and svc3 run springcache-uv with the same command line plus
`--ring springcache`. Every check prints its counts; the exit code is the number of failed checks.
Traffic stays inside the namespaces this script creates (and removes, also on failure).
"""
import http.client
import os
import signal
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "integration"))
from etcd_harness import Etcd, Netns, in_netns  # noqa: E402

GO_BIN = os.environ.get("SPRINGCACHE_GO_BIN")
UV_BIN = os.environ.get("SPRINGCACHE_BIN", ".build/release/springcache-uv")
KEYS = int(os.environ.get("MIXED_KEYS", "3000"))
NAMES = ["svc1", "svc2", "svc3"]
PEERS = ",".join(NAMES)


class Host:
    def __init__(self, ns, ip, name, argv, logdir):
        self.ns, self.ip, self.name = ns, ip, name
        self.log = os.path.join(logdir, name + ".log")
        env = dict(os.environ, IP_ADDRESS=ip)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(["ip", "netns", "exec", ns] + argv, env=env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=out)

    def request(self, method, path, body=None, timeout=5):
        with in_netns(self.ns):
            c = http.client.HTTPConnection(self.ip, 9999, timeout=timeout)
            c.connect()
        try:
            headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
            c.request(method, path, body=body, headers=headers)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def get(self, key):
        return self.request("GET", "/api/get?key=" + urllib.parse.quote(key, safe=""))

    def form(self, path, **fields):
        return self.request("POST", path, body=urllib.parse.urlencode(fields))

    def serving(self):
        try:
            return self.get("Tom")[0] == 200
        except OSError:
            return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise RuntimeError("not reached within %d s: %s" % (timeout, what))


def main():
    if not GO_BIN or not os.access(GO_BIN, os.X_OK):
        print("set SPRINGCACHE_GO_BIN to a built springcache binary (see docs/migrating-from-springcache.md)")
        return 2
    logdir = os.environ.get("MIXED_LOGDIR") or subprocess.check_output(["mktemp", "-d"], text=True).strip()
    net = Netns(3, "10.252.%d" % (20 + os.getpid() % 200))
    etcd = hosts = None
    failures = []

    def check(what, ok, detail):
        print("%-4s %s: %s" % ("ok" if ok else "FAIL", what, detail))
        if not ok:
            failures.append(what)

    try:
        etcd = Etcd(host=net.bridge_addr, client_port=2379, peer_port=2380, netns=net.bridge_ns)
        endpoint = "%s:2379" % net.bridge_addr
        hosts = [Host(net.host_ns[0], net.addr(0), "svc1",
                      [GO_BIN, "--name", "svc1", "--peer", PEERS, "--etcd", endpoint], logdir)]
        for i in (1, 2):
            hosts.append(Host(net.host_ns[i], net.addr(i), NAMES[i],
                              [os.path.abspath(UV_BIN), "--name", NAMES[i], "--peer", PEERS, "--etcd", endpoint,
                               "--ring", "springcache"], logdir))
        for h in hosts:
            wait(h.serving, 60, "%s serving /api/get on %s:9999" % (h.name, h.ip))
        go, uv = hosts[0], hosts[1:]
        print("all three serving; logs in %s" % logdir)

        # 1. Keys set through springcache read back through ours, and the other way round. Each key is read right
        # after its set: springcache's README main.go gives its group a 2 KiB cache (2<<10), so keys it owns are
        # evicted within a few dozen sets — a miss after that is its eviction, not a split key.
        miss = {"go->uv": [], "uv->go": [], "uv->uv": []}
        t0 = time.monotonic()
        for i in range(KEYS):
            k, v = "g%d" % i, "gv%d" % i
            assert go.form("/api/set", key=k, value=v, expire="5")[0] == 200
            if uv[i % 2].get(k) != (200, ("value=%s\n" % v).encode()):
                miss["go->uv"].append(k)
            k, v = "u%d" % i, "uv%d" % i
            assert uv[i % 2].form("/api/set", key=k, value=v, expire="5")[0] == 200
            if go.get(k) != (200, ("value=%s\n" % v).encode()):
                miss["uv->go"].append(k)
            if uv[(i + 1) % 2].get(k) != (200, ("value=%s\n" % v).encode()):
                miss["uv->uv"].append(k)
        took = time.monotonic() - t0
        for what, keys in miss.items():
            check("3,000 keys set and read back %s" % what, not keys,
                  "%d missing or wrong %r (all three directions took %.1f s)" % (len(keys), keys[:5], took))
        # 2. expire=0 and no expire through ours survive on springcache's keys; springcache's expire=0 is not a 500.
        lost = 0
        for i in range(200):
            fields = {"key": "z%d" % i, "value": "zv%d" % i}
            if i % 2:
                fields["expire"] = "0"
            assert uv[i % 2].form("/api/set", **fields)[0] == 200
        lost = sum(1 for i in range(200) if go.get("z%d" % i) != (200, b"value=zv%d\n" % i))
        check("sets through springcache-uv with expire=0 / no expire survive", lost == 0,
              "%d of 200 read back wrong through springcache" % lost)
        bad = 0
        for i in range(200):
            status, body = go.form("/api/set", key="y%d" % i, value="yv%d" % i, expire="0")
            bad += status != 200
        check("springcache's own expire=0 sets to our nodes answer 200", bad == 0, "%d of 200 were not 200" % bad)

        # 3. Deletes through ours: honest about keys springcache owns.
        answers = {}
        gone = 0
        for i in range(100):
            k = "g%d" % i
            status, body = uv[i % 2].form("/api/delete", key=k)
            answers[status] = answers.get(status, 0) + 1
            after = [h.get(k) for h in hosts]
            if status == 200:
                gone += all(a != (200, b"value=gv%d\n" % i) for a in after)
        ok = answers.get(200, 0) == gone
        check("every 200 from /api/delete means the value is gone from all three", ok,
              "answers %r; gone after a 200: %d" % (answers, gone))

        # 4. Membership: exactly the --peer names.
        doc = uv[0].request("GET", "/api/peers")[1].decode()
        check("ours list exactly svc1..svc3", all(n in doc for n in NAMES), doc[:300])
    finally:
        for h in hosts or []:
            h.stop()
        if etcd is not None:
            etcd.cleanup()
        net.cleanup()
    print("%d check(s) failed" % len(failures) if failures else "all checks passed")
    return len(failures)


if __name__ == "__main__":
    sys.exit(main())

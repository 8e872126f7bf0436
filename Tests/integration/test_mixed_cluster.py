"""A mixed cluster: our node on `--ring springcache` beside a stand-in springcache node (grpcio,
springcache_standin.py, behaving as reference/springcache-compat.md says springcache does), each on its own
IP (127.0.0.2 and 127.0.0.3: springcache's ring is keyed by IP). Keys set through either node read back
through the other; sets with expire=0 or none survive at a springcache owner; deletes are honest; the
springcache node is never sent another group (it would crash). Then, in network namespaces with a real etcd:
springcache's exact command line, IP_ADDRESS that is not on the host, and a node outside `--peer`.

Measured times are printed as `TIMING ...` lines.
"""
import hashlib
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.parse

import pytest

from harness import Node, free_peer_port, log_dir, node_json, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "golden"))
import make_springcache_ring_vectors as scring  # noqa: E402

SC_IP, UV_IP = "127.0.0.2", "127.0.0.3"
KEYS = 3000


def timing(what, seconds):
    print("TIMING %s: %.3f s" % (what, seconds))


class StandIn:
    """springcache_standin.py as a process; `alive()` is false once it crashed (a foreign group)."""

    def __init__(self, name, grpc_port, api_port, peer_arg):
        self.api = (SC_IP, api_port)
        self.log = tempfile.NamedTemporaryFile(prefix="standin-", suffix=".log", delete=False, dir=log_dir())
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "springcache_standin.py"), "--name", name,
                                      "--listen", "%s:%d" % (SC_IP, grpc_port), "--api", "%s:%d" % self.api,
                                      "--peer", peer_arg],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        try:
            wait_until(lambda: b"ready" in self.log_text() or not self.alive(), 20, what="stand-in ready")
        except AssertionError:
            self.stop()
            raise
        assert self.alive(), "stand-in did not start: %s" % self.log_text()

    def log_text(self):
        with open(self.log.name, "rb") as f:
            return f.read()

    def alive(self):
        return self.proc.poll() is None

    def conn(self):
        return http.client.HTTPConnection(*self.api, timeout=10)

    def debug(self, what):
        c = self.conn()
        try:
            c.request("GET", "/debug/" + what)
            return json.loads(c.getresponse().read())
        finally:
            c.close()

    def stop(self):
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def request(conn, method, path, fields=None):
    body = urllib.parse.urlencode(fields) if fields is not None else None
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    return r.status, r.read()


def get(conn, key):
    return request(conn, "GET", "/api/get?key=" + urllib.parse.quote(key, safe=""))


@pytest.fixture
def mixed():
    if not loopback_aliases_work():
        pytest.skip("cannot bind %s and %s" % (SC_IP, UV_IP))
    sc_grpc, uv_grpc, sc_api = free_peer_port(), free_peer_port(), free_peer_port()
    peer_arg = "sc=%s:%d,uv=%s:%d" % (SC_IP, sc_grpc, UV_IP, uv_grpc)
    sc = uv = None
    try:
        sc = StandIn("sc", sc_grpc, sc_api, peer_arg)
        uv = Node("--name", "uv", "--port", uv_grpc, "--peer", peer_arg, "--peer-listen", "%s:%d" % (UV_IP, uv_grpc),
                  "--ring", "springcache", "--ttl", "5m", "--hot-copy-one-in", "0", "--peer-timeout", "1s")
        yield {"sc": sc, "uv": uv, "members": {"sc": SC_IP, "uv": UV_IP}, "sc_ports": (sc_grpc, sc_api),
               "peer_arg": peer_arg}
        assert uv.alive(), "our node died:\n%s" % uv.log_text()[-3000:]
    finally:
        if uv is not None:
            uv.stop()
            uv.cleanup()
        if sc is not None:
            sc.stop()


def loopback_aliases_work():
    import socket
    for ip in (SC_IP, UV_IP):
        s = socket.socket()
        try:
            s.bind((ip, 0))
        except OSError:
            return False
        finally:
            s.close()
    return True


def spread_keys(n):
    # Unrelated keys: springcache's FNV-1 gives keys with a long common prefix neighbouring hashes.
    return ["mx-" + hashlib.md5(str(i).encode()).hexdigest()[:12] for i in range(n)]


def test_keys_set_through_either_node_read_back_through_the_other(mixed):
    sc, uv = mixed["sc"], mixed["uv"]
    ring = scring.Ring(mixed["members"])
    keys = spread_keys(KEYS)
    owners = {k: ring.owner(k) for k in keys}
    share = sum(1 for k in keys if owners[k] == "sc") / len(keys)
    print("springcache ring: sc owns %.1f%% of the %d keys" % (100 * share, len(keys)))
    assert 0.1 < share < 0.9, "the keys must be spread over both owners"
    via_sc, via_uv = keys[0::2], keys[1::2]

    sc_conn, uv_conn = sc.conn(), uv.conn()
    t0 = time.monotonic()
    for k in via_sc:
        assert request(sc_conn, "POST", "/api/set", {"key": k, "value": "v-" + k, "expire": "5"}) == (200, b"done\n")
    for i, k in enumerate(via_uv):
        # Our default TTL (no expire, or expire=0) must reach a springcache owner as a real expiry.
        fields = {"key": k, "value": "v-" + k}
        if i % 2:
            fields["expire"] = "0"
        assert request(uv_conn, "POST", "/api/set", fields) == (200, b"done\n"), k
    timing("%d sets through both nodes" % len(keys), time.monotonic() - t0)

    t0 = time.monotonic()
    misses = []
    for k in via_sc:
        status, body = get(uv_conn, k)
        if (status, body) != (200, ("value=v-%s\n" % k).encode()):
            misses.append((k, owners[k], "set via sc, read via uv", status, body[:80]))
    for k in via_uv:
        status, body = get(sc_conn, k)
        if (status, body) != (200, ("value=v-%s\n" % k).encode()):
            misses.append((k, owners[k], "set via uv, read via sc", status, body[:80]))
    timing("%d reads through the other node" % len(keys), time.monotonic() - t0)
    print("mixed cluster: %d keys, %d misses" % (len(keys), len(misses)))
    assert misses == [], "%d of %d keys not read back; first: %r" % (len(misses), len(keys), misses[:5])

    # Every key lives at the owner springcache's ring names: the stand-in holds exactly the keys it owns.
    held = set(sc.debug("keys"))
    assert held == {k for k in keys if owners[k] == "sc"}, "keys at the springcache node vs its ring"
    calls = sc.debug("calls")
    assert set(calls) <= {"Get scores", "Set scores"}, calls
    assert calls.get("Set scores") == sum(1 for k in via_uv if owners[k] == "sc"), calls
    sc_conn.close()
    uv_conn.close()
    assert sc.alive()


def test_deletes_are_honest_and_expired_sets_drop_keys(mixed):
    sc, uv = mixed["sc"], mixed["uv"]
    ring = scring.Ring(mixed["members"])
    keys = spread_keys(400)
    sc_key = next(k for k in keys if ring.owner(k) == "sc")
    uv_keys = [k for k in keys if ring.owner(k) == "uv"]
    sc_conn, uv_conn = sc.conn(), uv.conn()

    # A delete through our node of a key springcache owns: springcache has no Delete, so it is sent as an
    # expired Set; afterwards neither node serves the value.
    assert request(uv_conn, "POST", "/api/set", {"key": sc_key, "value": "doomed"}) == (200, b"done\n")
    assert get(sc_conn, sc_key) == (200, b"value=doomed\n")
    assert request(uv_conn, "POST", "/api/delete", {"key": sc_key}) == (200, b"deleted\n")
    assert get(uv_conn, sc_key)[0] == 404, "the owner says 'not exist': 404 here"
    assert get(sc_conn, sc_key) == (500, ("%s not exist\n" % sc_key).encode())

    # springcache's own expire=0 arrives at our owner as "now": accepted (its API answers done, not 500), and
    # the key is dropped as springcache would drop it.
    k = uv_keys[0]
    assert request(uv_conn, "POST", "/api/set", {"key": k, "value": "old"}) == (200, b"done\n")
    assert request(sc_conn, "POST", "/api/set", {"key": k, "value": "new", "expire": "0"}) == (200, b"done\n")
    assert get(uv_conn, k)[0] == 404
    # Fields in the query string, as Go's FormValue reads them.
    k2 = uv_keys[1]
    q = "/api/set?" + urllib.parse.urlencode({"key": k2, "value": "from-query", "expire": "5"})
    assert request(uv_conn, "POST", q) == (200, b"done\n")
    assert get(sc_conn, k2) == (200, b"value=from-query\n")
    assert request(uv_conn, "POST", "/api/delete?key=" + k2) == (200, b"deleted\n")
    assert get(sc_conn, k2)[0] == 500

    # With the springcache node gone, a delete of its key cannot be done: an honest 503 naming the unreachable
    # owner, not "deleted" (a 502 is for an owner that answered with an error).
    sc.stop()
    status, body = request(uv_conn, "POST", "/api/delete", {"key": sc_key})
    assert status == 503, (status, body)
    assert b"unreachable" in body, body

    # It comes back on the same addresses: our node probes it (with our group only) and re-admits it.
    sc_grpc, sc_api = mixed["sc_ports"]
    sc2 = StandIn("sc", sc_grpc, sc_api, mixed["peer_arg"])
    try:
        wait_until(lambda: {m["name"]: m["state"] for m in node_json(uv, "/api/peers")["members"]}.get("sc") == "up",
                   10, what="sc re-admitted after it came back")
        assert sc2.alive(), sc2.log_text()
        assert set(sc2.debug("calls")) <= {"Get scores", "Set scores"}, sc2.debug("calls")
        c2 = sc2.conn()
        assert request(uv_conn, "POST", "/api/set", {"key": sc_key, "value": "back"}) == (200, b"done\n")
        assert get(c2, sc_key) == (200, b"value=back\n")
        c2.close()
    finally:
        sc2.stop()
    uv_conn.close()


def test_1mib_values_cross_between_our_node_and_springcache_both_ways(mixed):
    """Issue 11: our windows and 64 KiB frames work with a gRPC peer that keeps its own (grpc's 16 KiB frames,
    its own window updates): a 1 MiB value owned by either node reads back whole through the other."""
    sc, uv = mixed["sc"], mixed["uv"]
    ring = scring.Ring(mixed["members"])
    keys = spread_keys(400)
    sc_key = next(k for k in keys if ring.owner(k) == "sc")
    uv_key = next(k for k in keys if ring.owner(k) == "uv")
    rnd = random.Random(11)
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    sc_value = "".join(rnd.choice(letters) for _ in range(1 << 20))
    uv_value = "".join(rnd.choice(letters) for _ in range(1 << 20))
    sc_conn, uv_conn = sc.conn(), uv.conn()
    assert request(sc_conn, "POST", "/api/set", {"key": sc_key, "value": sc_value, "expire": "5"}) == (200, b"done\n")
    uv_conn.request("PUT", "/v1/cache/scores/" + uv_key, body=uv_value.encode())
    r = uv_conn.getresponse()
    assert (r.status, r.read()) == (204, b"")
    t0 = time.monotonic()
    assert get(uv_conn, sc_key) == (200, ("value=%s\n" % sc_value).encode()), "springcache's 1 MiB through our node"
    timing("1 MiB from the springcache stand-in through our node", time.monotonic() - t0)
    t0 = time.monotonic()
    assert get(sc_conn, uv_key) == (200, ("value=%s\n" % uv_value).encode()), "our 1 MiB through springcache"
    timing("1 MiB from our node through the springcache stand-in", time.monotonic() - t0)
    sc_conn.close()
    uv_conn.close()
    assert sc.alive()


def test_setpeer_answers_octet_stream_and_get_on_post_routes_says_post(start_node):
    n = start_node()
    status, headers, body, _ = n.form("/setpeer", {"peer": "springcache-uv"})
    assert (status, body) == (200, b"set peer springcache-uv successful\n")
    assert headers["content-type"] == "application/octet-stream"
    status, headers, body, _ = n.request("POST", "/setpeer?peer=springcache-uv")
    assert (status, body) == (200, b"set peer springcache-uv successful\n"), "peer read from the query"
    for path in ("/api/set", "/api/delete", "/setpeer"):
        status, headers, body, _ = n.request("GET", path + "?key=a&value=b&peer=x")
        assert status == 405 and b"POST" in body and headers["allow"] == "POST", (path, status, body)
    # Body first, then query (Go's order): the body's value wins.
    status, _, body, _ = n.request("POST", "/api/set?key=q&value=from-query", body="value=from-body",
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (status, body) == (200, b"done\n")
    assert n.get("q")[2] == b"value=from-body\n"


def test_two_members_on_one_ip_are_refused_with_the_springcache_ring(start_node):
    import subprocess as sp
    from harness import binary_path
    p = sp.run([binary_path(), "--api", "127.0.0.1:0", "--name", "a", "--ring", "springcache",
                "--peer", "a=127.0.0.1:%d,b=127.0.0.1:%d" % (free_peer_port(), free_peer_port())],
               capture_output=True, text=True, timeout=10)
    assert p.returncode == 1, (p.returncode, p.stderr)
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "share 127.0.0.1" in lines[0] and "a, b" in lines[0], p.stderr
    p = sp.run([binary_path(), "--api", "127.0.0.1:%d" % free_peer_port(), "--ring", "springcache", "--workers", "2"],
               capture_output=True, text=True, timeout=10)
    assert p.returncode == 1 and "--workers 2" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


# --- hosts in network namespaces, one real etcd -------------------------------------------------------


def http_from(ns, host, port, path, timeout=3):
    """GET host:port/path from inside namespace ns (another host than the node's)."""
    from etcd_harness import in_netns
    with in_netns(ns):
        c = http.client.HTTPConnection(host, port, timeout=timeout)
        c.connect()
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def test_springcache_command_line_nat_address_and_membership_in_namespaces():
    from etcd_harness import Etcd, Netns, NsNode, netns_supported
    reason = netns_supported()
    if reason:
        pytest.skip(reason)
    subnet = "10.252.%d" % (20 + os.getpid() % 200)
    nat_ip = "%s.200" % subnet   # svc2's IP_ADDRESS: an address no namespace has (as behind NAT)
    net = Netns(3, subnet)
    etcd = None
    nodes = {}
    try:
        etcd = Etcd(host=net.bridge_addr, client_port=2379, peer_port=2380, netns=net.bridge_ns)
        e = etcd.endpoint
        t0 = time.monotonic()
        # springcache's exact command line: IP_ADDRESS, --name, --peer, --etcd; nothing else.
        nodes["svc1"] = NsNode(net.host_ns[0], net.addr(0), None, "--name", "svc1", "--peer", "svc1,svc2",
                               "--etcd", e)
        nodes["svc2"] = NsNode(net.host_ns[1], net.addr(1), None, "--name", "svc2", "--peer", "svc1,svc2",
                               "--etcd", e, ip_address=nat_ip)
        # Registered in the same etcd, but not one of svc1's and svc2's --peer names.
        nodes["svc4"] = NsNode(net.host_ns[2], net.addr(2), None, "--name", "svc4", "--peer", "svc4", "--etcd", e)

        def logs():
            return "\n".join("--- %s\n%s" % (n, node.log_text()[-2500:]) for n, node in nodes.items())

        try:
            # The API listens on IP_ADDRESS:9999 for everyone, not on loopback: asked from another host.
            wait_until(lambda: http_from(net.host_ns[2], net.addr(0), 9999, "/api/get?key=Tom") ==
                       (200, b"value=630\n"), 10, what="svc1's API answering from another host")
            # IP_ADDRESS not on the host: svc2 still starts, and serves on all interfaces.
            wait_until(lambda: http_from(net.host_ns[0], net.addr(1), 9999, "/api/get?key=Jack") ==
                       (200, b"value=589\n"), 10, what="svc2's API answering from another host")
        except AssertionError as err:
            raise AssertionError("%s\n%s" % (err, logs()))
        timing("namespaces: springcache's command line serving on IP_ADDRESS:9999", time.monotonic() - t0)
        assert "listens on all interfaces (0.0.0.0:9999)" in nodes["svc1"].log_text()
        assert "--auth-token-file" in nodes["svc1"].log_text(), "the warning about an open API"

        from etcd_harness import check_node_keys
        # svc4 registered in the same etcd (so the membership check below means something).
        wait_until(lambda: "springcache/members/svc4" in etcd.kvs(), 10, what="svc4 registered in etcd")
        kvs = etcd.kvs()
        check_node_keys(kvs, "svc1", "%s:8888" % net.addr(0), "%s:9999" % net.addr(0))
        # IP_ADDRESS is advertised (peer and API) even though it is not an address of the host.
        check_node_keys(kvs, "svc2", "%s:8888" % nat_ip, "%s:9999" % nat_ip)

        def members(node):
            return sorted(m["name"] for m in nodes[node].json("/api/peers")["members"])

        try:
            wait_until(lambda: members("svc1") == ["svc1", "svc2"] and members("svc2") == ["svc1", "svc2"], 5,
                       what="svc1 and svc2 seeing exactly their --peer names")
        except AssertionError as err:
            raise AssertionError("%s\n%s" % (err, logs()))
        assert members("svc4") == ["svc4"], "svc4's --peer names only itself"
        # Still so a moment later (a late etcd event must not bring svc4 in).
        time.sleep(0.5)
        assert members("svc1") == ["svc1", "svc2"] and members("svc2") == ["svc1", "svc2"]
        assert all(n.alive() for n in nodes.values()), logs()
    finally:
        for n in nodes.values():
            n.stop()
            n.cleanup()
        if etcd is not None:
            etcd.cleanup()
        net.cleanup()

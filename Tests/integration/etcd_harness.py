"""A real etcd (Debian's etcd 3.4) for the discovery tests, nodes that find each other through it, and
network namespaces for the several-hosts test.

`Etcd` runs `etcd` on free ports with a data dir of its own (under one temp dir removed at cleanup); it can be
stopped and started again with the same data dir or a fresh empty one on the same ports, frozen (SIGSTOP) and
thawed (SIGCONT). `Etcd.kvs()` reads every key through etcd's JSON gateway (fast enough to poll);
`Etcd.ctl(...)` runs `etcdctl`.

`EtcdCluster` starts harness.Node processes with `--name N --port P --etcd E` (no static --peer list).

`Netns` builds a private network: a bridge namespace and one namespace per host, joined by veth pairs that are
created directly inside those namespaces (nothing is ever created in, or moved through, the test's own
namespace), and removes all of it at cleanup. `in_netns(name)` runs Python code (socket creation) inside one.
"""
import base64
import contextlib
import ctypes
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

from harness import DEADLINE, Node, binary_path, free_peer_port, log_dir, node_json, wait_until

ETCD_START_TIMEOUT = 15.0


def b64(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def unb64(s):
    return base64.b64decode(s or "").decode("utf-8", "replace")


# --- network namespaces -------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: %s" % os.strerror(e))


@contextlib.contextmanager
def in_netns(name):
    """Runs the body with the calling thread inside network namespace `name` (None: stay where we are).

    Sockets created inside stay in that namespace after the body ends; the thread always comes back."""
    if name is None:
        yield
        return
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open("/var/run/netns/%s" % name, os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def _ip(*args, check=True):
    p = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if check and p.returncode != 0:
        raise RuntimeError("ip %s failed (%d): %s" % (" ".join(args), p.returncode, p.stderr.strip()))
    return p


class Netns:
    """Namespaces PREFIX-br (a bridge `scbr` holding SUBNET.1) and PREFIX-0..n-1 (eth0 = SUBNET.(10+i)), each host
    joined to the bridge by a veth pair (`vh<i>` on the bridge side). Only loopback and these links exist in
    them: nothing they send can leave. cleanup() deletes the namespaces (and with them every veth and the bridge)."""

    def __init__(self, hosts, subnet, prefix=None):
        self.prefix = prefix or "scuv-%d-%d" % (os.getpid(), int(time.monotonic() * 1000) % 100000)
        self.subnet = subnet  # e.g. "10.251.37"
        self.bridge_ns = self.prefix + "-br"
        self.host_ns = ["%s-%d" % (self.prefix, i) for i in range(hosts)]
        self.created = []
        try:
            self._build()
        except BaseException:
            self.cleanup()
            raise

    @property
    def bridge_addr(self):
        return "%s.1" % self.subnet

    def addr(self, i):
        return "%s.%d" % (self.subnet, 10 + i)

    def bridge_link(self, i):
        return "vh%d" % i

    def _add_ns(self, name):
        _ip("netns", "add", name)
        self.created.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def _build(self):
        self._add_ns(self.bridge_ns)
        br = self.bridge_ns
        _ip("-n", br, "link", "add", "scbr", "type", "bridge")
        _ip("-n", br, "addr", "add", self.bridge_addr + "/24", "dev", "scbr")
        _ip("-n", br, "link", "set", "scbr", "up")
        for i, ns in enumerate(self.host_ns):
            self._add_ns(ns)
            # Both ends are created inside our namespaces: the host's interfaces are never involved.
            _ip("-n", br, "link", "add", self.bridge_link(i), "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", br, "link", "set", self.bridge_link(i), "master", "scbr", "up")
            _ip("-n", ns, "addr", "add", self.addr(i) + "/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
        for ns in self.created:
            routes = _ip("-n", ns, "route", "show").stdout
            assert "default" not in routes, "namespace %s has a default route: %s" % (ns, routes)

    def link(self, i, up):
        _ip("-n", self.bridge_ns, "link", "set", self.bridge_link(i), "up" if up else "down")

    def cleanup(self):
        errors = []
        for name in reversed(self.created):
            # Deleting a namespace destroys the veth ends and the bridge inside it.
            p = _ip("netns", "del", name, check=False)
            if p.returncode != 0:
                errors.append("ip netns del %s: %s" % (name, p.stderr.strip()))
        self.created = []
        left = [l for l in _ip("netns", "list").stdout.split("\n") if l.startswith(self.prefix)]
        assert not left and not errors, "namespaces left behind: %r %r" % (left, errors)


def netns_supported():
    """None if `ip netns add` works here, else the reason it does not."""
    if os.geteuid() != 0:
        return "needs root (ip netns add); running as uid %d" % os.geteuid()
    name = "scuv-probe-%d" % os.getpid()
    p = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if p.returncode != 0:
        return "ip netns add failed: %s" % p.stderr.strip()
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


# --- etcd --------------------------------------------------------------------------------------------


class Etcd:
    """One etcd member. endpoint is HOST:PORT; netns runs it (and our HTTP/etcdctl calls) inside a namespace.

    extra_args are appended to etcd's command line (a later flag wins: a member of a cluster passes its own
    --name, --initial-cluster and timings); wait=False returns before it answers (a cluster member cannot answer
    until a quorum of its peers runs)."""

    def __init__(self, host="127.0.0.1", client_port=None, peer_port=None, netns=None, extra_args=(), wait=True):
        self.host = host
        self.netns = netns
        self.client_port = client_port or free_peer_port()
        self.peer_port = peer_port or free_peer_port()
        self.tmp = tempfile.mkdtemp(prefix="springcache-etcd-")
        self.generation = 0
        self.data_dir = None
        self.proc = None
        self.logs = []
        self.frozen = False
        self.extra_args = [str(a) for a in extra_args]
        try:
            self.start(fresh=True, wait=wait)
        except BaseException:
            self.cleanup()
            raise

    @property
    def endpoint(self):
        return "%s:%d" % (self.host, self.client_port)

    @property
    def url(self):
        return "http://" + self.endpoint

    def start(self, fresh=False, wait=True):
        """Starts etcd on the same ports: with the previous data dir, or (fresh) a new empty one."""
        assert self.proc is None or self.proc.poll() is not None, "etcd is still running"
        if fresh or self.data_dir is None:
            self.generation += 1
            self.data_dir = os.path.join(self.tmp, "data-%d" % self.generation)
        log = open(os.path.join(self.tmp, "etcd-%d.log" % len(self.logs)), "wb")
        self.logs.append(log.name)
        peer_url = "http://%s:%d" % (self.host, self.peer_port)
        cmd = ["etcd", "--name", "it", "--data-dir", self.data_dir,
               "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
               "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
               "--initial-cluster", "it=" + peer_url, "--initial-cluster-state", "new",
               "--heartbeat-interval", "50", "--election-timeout", "250", "--log-level", "warn", *self.extra_args]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        self.frozen = False
        if wait:
            self.wait_ready()

    def answers(self):
        """True if a linearizable range answers now (etcd up and leader elected)."""
        try:
            self.post("/v3/kv/range", {"key": b64("x"), "limit": "1"}, timeout=0.5)
            return True
        except (OSError, http.client.HTTPException, ValueError, AssertionError):
            return False

    def wait_ready(self, timeout=ETCD_START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answers():
                return time.monotonic()
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError("etcd did not answer within %ss (rc=%r); log:\n%s" % (timeout, self.proc.poll(),
                                                                               self.log_text()[-3000:]))

    def log_text(self):
        out = []
        for name in self.logs:
            try:
                with open(name, "rb") as f:
                    out.append(f.read().decode("utf-8", "replace"))
            except OSError:
                pass
        return "\n".join(out)

    def post(self, path, body, timeout=2.0):
        with in_netns(self.netns):
            c = http.client.HTTPConnection(self.host, self.client_port, timeout=timeout)
            c.connect()
        try:
            c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            r = c.getresponse()
            data = r.read()
        finally:
            c.close()
        assert r.status == 200, "etcd %s answered %d: %r" % (path, r.status, data[:300])
        return json.loads(data)

    def kvs(self, timeout=2.0):
        """Every key in etcd: {key: (value, lease id as int, 0 if none)} through the JSON gateway."""
        doc = self.post("/v3/kv/range", {"key": "AA==", "range_end": "AA=="}, timeout=timeout)
        return {unb64(kv["key"]): (unb64(kv.get("value")), int(kv.get("lease", "0"))) for kv in doc.get("kvs", [])}

    def put(self, key, value):
        self.post("/v3/kv/put", {"key": b64(key), "value": b64(value)})

    def ctl(self, *args, timeout=10):
        cmd = ["etcdctl", "--endpoints", self.endpoint, "--command-timeout", "3s", *args]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           env=dict(os.environ, ETCDCTL_API="3"))
        assert p.returncode == 0, "%s failed (%d): %s %s" % (" ".join(cmd), p.returncode, p.stdout, p.stderr)
        return p.stdout

    def freeze(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self):
        self.proc.send_signal(signal.SIGCONT)
        self.frozen = False

    def stop(self, sig=signal.SIGTERM):
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.frozen:
            self.thaw()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL also ends a stopped process
            self.proc.wait()
        if os.environ.get("SPRINGCACHE_KEEP_LOGS"):
            return
        shutil.rmtree(self.tmp, ignore_errors=True)


# --- nodes that register in etcd ------------------------------------------------------------------


def check_node_keys(kvs, name, peer, api):
    """Asserts node name's three keys are in kvs with the right values, all on one lease; returns the lease."""
    member = "springcache/members/" + name
    sc = "%s/%s" % (name, peer)
    for k in (member, name, sc):
        assert k in kvs, "key %r missing from etcd (keys: %r)" % (k, sorted(kvs))
    assert json.loads(kvs[member][0]) == {"name": name, "peer": peer, "api": api}, kvs[member]
    assert kvs[name][0] == peer, kvs[name]
    assert json.loads(kvs[sc][0]) == {"Op": 0, "Addr": peer, "Metadata": None}, kvs[sc]
    leases = {kvs[k][1] for k in (member, name, sc)}
    assert len(leases) == 1 and 0 not in leases, "node %s's keys are not on one lease: %r" % (
        name, {k: kvs[k][1] for k in (member, name, sc)})
    return leases.pop()


def keys_of(kvs, name):
    """The keys of kvs that belong to node name (any of its three forms)."""
    return sorted(k for k in kvs if k == name or k.startswith(name + "/") or k == "springcache/members/" + name)


def view(node):
    """{member name: state} as node's /api/peers shows it."""
    return {m["name"]: m["state"] for m in node_json(node, "/api/peers")["members"]}


class EtcdCluster:
    """harness.Node processes named names, each with its own peer port, all given only --etcd (and flags)."""

    def __init__(self, etcd, names, *flags, start=True):
        self.etcd = etcd
        self.names = list(names)
        self.flags = [str(f) for f in flags]
        self.peer_ports = {n: free_peer_port() for n in self.names}
        self.nodes = {}
        self.retired = []
        if start:
            try:
                for n in self.names:
                    self.start(n)
            except BaseException:
                self.cleanup()
                raise

    def start(self, name, *extra, etcd_arg=None):
        """(Re)starts node name with --etcd etcd_arg (default: this etcd's endpoint) and extra flags."""
        old = self.nodes.get(name)
        if old is not None:
            assert not old.alive(), "node %s is still running" % name
            self.retired.append(old)
        node = Node("--name", name, "--port", self.peer_ports[name], "--etcd", etcd_arg or self.etcd.endpoint,
                    *self.flags,
                    *extra)
        self.nodes[name] = node
        return node

    def __getitem__(self, name):
        return self.nodes[name]

    def running(self):
        return [n for n in self.names if n in self.nodes and self.nodes[n].alive()]

    def peer(self, name):
        return "127.0.0.1:%d" % self.peer_ports[name]

    def api(self, name):
        return "127.0.0.1:%d" % self.nodes[name].port

    def whole(self, on=None, members=None):
        """True when every node in `on` (default: running) shows exactly `members` (default: running), all up."""
        members = sorted(members if members is not None else self.running())
        want = {m: "up" for m in members}
        return all(view(self.nodes[n]) == want for n in (on if on is not None else self.running()))

    def wait_whole(self, timeout, on=None, members=None, what=None):
        members = members if members is not None else self.running()
        return wait_until(lambda: self.whole(on, members), timeout,
                          what=what or "every node showing members %r all up" % sorted(members))

    def registered(self, names=None):
        """True when etcd holds the three keys of each of names (default: running), right values, one lease each."""
        kvs = self.etcd.kvs()
        for n in names if names is not None else self.running():
            try:
                check_node_keys(kvs, n, self.peer(n), self.api(n))
            except AssertionError:
                return False
        return True

    def kill9(self, name):
        self.nodes[name].send_signal(signal.SIGKILL)
        self.nodes[name].proc.wait(5)

    def logs(self):
        return "\n".join("--- %s\n%s" % (n, node.log_text()[-3000:]) for n, node in self.nodes.items())

    def cleanup(self):
        for n in list(self.nodes.values()) + self.retired:
            n.stop(timeout=3)
            n.cleanup()


# --- nodes inside network namespaces -------------------------------------------------------------

NS_SERVING_RE = re.compile(rb"serving http://([0-9.]+):(\d+)")


class NsNode:
    """springcache-uv run with `ip netns exec NS` (exec, so proc is the node itself) and IP_ADDRESS=host.
    HTTP requests to it are made from inside NS."""

    def __init__(self, ns, host, api_port, *args, ip_address=None):
        """api_port None: springcache's exact command line (no --api, no test flags); ip_address: IP_ADDRESS
        when it is not `host` (an address the host does not have, as behind NAT)."""
        self.ns = ns
        self.host = host
        env = dict(os.environ, IP_ADDRESS=ip_address or host)
        api = ["--api", "%s:%d" % (host, api_port), "--jitter", "0"] if api_port is not None else []
        self.args = ["ip", "netns", "exec", ns, binary_path(), *api, *[str(a) for a in args]]
        self.log = tempfile.NamedTemporaryFile(prefix="springcache-it-ns-", suffix=".log", delete=False,
                                               dir=log_dir())
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=env)
        self.port = None
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            m = NS_SERVING_RE.search(self.log_text(raw=True))
            if m:
                self.port = int(m.group(2))
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        if self.port is not None:
            # `ip netns exec` execs: the process we signal is the node itself (SIGTERM revokes its lease).
            exe = os.readlink("/proc/%d/exe" % self.proc.pid)
            assert os.path.basename(exe) == "springcache-uv", "pid %d runs %s" % (self.proc.pid, exe)
        if self.port is None:
            self.kill()
            raise RuntimeError("node in %s did not log 'serving http://...' within 5s; args=%r rc=%r log:\n%s"
                               % (ns, self.args, self.proc.returncode, self.log_text()[-3000:]))

    def log_text(self, raw=False):
        with open(self.log.name, "rb") as f:
            data = f.read()
        return data if raw else data.decode("utf-8", "replace")

    def alive(self):
        return self.proc.poll() is None

    def request(self, method, path, timeout=5):
        with in_netns(self.ns):
            c = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            c.connect()
        try:
            c.request(method, path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def json(self, path):
        status, body = self.request("GET", path)
        assert status == 200, "%s answered %d: %r" % (path, status, body[:300])
        return json.loads(body)

    def view(self):
        return {m["name"]: m["state"] for m in self.json("/api/peers")["members"]}

    def stop(self, timeout=3):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self):
        self.kill()
        if not os.environ.get("SPRINGCACHE_KEEP_LOGS"):
            try:
                os.unlink(self.log.name)
            except OSError:
                pass

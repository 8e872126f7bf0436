"""Helpers for the black-box tests: run the real springcache-uv binary, a real HTTP origin, raw sockets.

Nothing here mocks the server: every test talks to a real process over real TCP on 127.0.0.1.
"""
import http.client
import http.server
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse

SERVING_RE = re.compile(rb"serving http://127\.0\.0\.1:(\d+)")
START_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0


def binary_path():
    path = os.environ.get("SPRINGCACHE_BIN")
    if not path:
        here = os.path.dirname(os.path.abspath(__file__))
        path = os.path.join(here, "..", "..", ".build", "release", "springcache-uv")
    return os.path.abspath(path)


_LOG_DIR = None


def log_dir():
    """Where node logs go: $SPRINGCACHE_IT_LOG_DIR, else a private directory made once per test process.

    Why not plain /tmp: on a shared machine another job may sweep /tmp/springcache-it-*.log while a test
    still reads its node's log (seen: files vanished within seconds).
    """
    global _LOG_DIR
    if _LOG_DIR is None:
        _LOG_DIR = os.environ.get("SPRINGCACHE_IT_LOG_DIR") or tempfile.mkdtemp(prefix="sc-it-logs-")
        os.makedirs(_LOG_DIR, exist_ok=True)
    return _LOG_DIR


class Node:
    """One springcache-uv process started on an ephemeral API port; stderr goes to a temp file."""

    def __init__(self, *args):
        self.args = [binary_path(), "--api", "127.0.0.1:0", "--jitter", "0", *[str(a) for a in args]]
        self.log = tempfile.NamedTemporaryFile(prefix="springcache-it-", suffix=".log", delete=False,
                                               dir=log_dir())
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        self.port = None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            m = SERVING_RE.search(self.log_text(raw=True))
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        if self.port is None:
            self.kill()
            raise RuntimeError("springcache-uv did not log 'serving http://127.0.0.1:PORT' within %ss; "
                               "args=%r rc=%r log:\n%s" % (START_TIMEOUT, self.args, self.proc.returncode,
                                                           self.log_text()[-4000:]))
        self.base = "http://127.0.0.1:%d" % self.port
        self.addr = ("127.0.0.1", self.port)

    def log_text(self, raw=False):
        with open(self.log.name, "rb") as f:
            data = f.read()
        return data if raw else data.decode("utf-8", "replace")

    def alive(self):
        return self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Sends sig and waits; returns the exit code (None if it had to be killed)."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self):
        self.kill()
        if os.environ.get("SPRINGCACHE_KEEP_LOGS"):
            return
        try:
            os.unlink(self.log.name)
        except OSError:
            pass

    # --- clients -------------------------------------------------------------------------------

    def conn(self, timeout=10):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=10):
        """One request on a fresh connection; returns (status, headers dict lower-cased, body bytes, response)."""
        c = self.conn(timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data, r
        finally:
            c.close()

    def get(self, key, **kw):
        return self.request("GET", "/api/get?key=" + urllib.parse.quote(key, safe=""), **kw)

    def form(self, path, fields, headers=None):
        body = urllib.parse.urlencode(fields)
        h = {"Content-Type": "application/x-www-form-urlencoded"}
        h.update(headers or {})
        return self.request("POST", path, body=body, headers=h)

    def set(self, key, value, expire="0", hot="false", headers=None):
        return self.form("/api/set", {"key": key, "value": value, "expire": expire, "hot": hot}, headers)

    def raw(self, timeout=10):
        s = socket.create_connection(self.addr, timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return RawConn(s)


def v1(key, group="scores"):
    return "/v1/cache/%s/%s" % (group, urllib.parse.quote(key, safe=""))


class RawConn:
    """A raw TCP client with a minimal HTTP/1.1 response reader (Content-Length framed answers)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed by server; buffered %r" % self.buf[:200])
        self.buf += chunk

    def read_response(self, head=False):
        """Reads one response; returns (status, headers dict lower-cased, body, reason)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head_bytes, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head_bytes.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        assert parts[0] in ("HTTP/1.1", "HTTP/1.0"), "bad status line %r" % lines[0]
        status = int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        body = b""
        if not head and status >= 200 and status not in (204, 304):
            assert "transfer-encoding" not in headers, "unexpected chunked response: %r" % headers
            n = int(headers.get("content-length", "0"))
            while len(self.buf) < n:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body, reason

    def closed_by_peer(self, timeout=2.0):
        """True if the server closes the connection (EOF or reset) within timeout and sent nothing more."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        if data:
            self.buf += data
            return False
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# --- a real HTTP origin ----------------------------------------------------------------------------


class Origin:
    """A ThreadingHTTPServer on 127.0.0.1:0 (or host:0) answering GET /v/{key}.

    values[key] -> 200 with those bytes; status[key] -> that status; delay[key] -> sleep first;
    keys starting with 'slow' sleep slow_delay (0.5 s); every other key sleeps all_delay (0 unless a test
    slows the whole origin down). value_of(key), if set, answers keys missing from values (a computed
    truth). Unknown keys -> 404. counts[key] counts requests.
    """

    def __init__(self, host="127.0.0.1"):
        self.values = {}
        self.status = {}
        self.delay = {}
        self.slow_delay = 0.5
        self.all_delay = 0
        self.value_of = None
        self.counts = {}
        self.lock = threading.Lock()
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; without TCP_NODELAY, Nagle holds the body until the
            # node's delayed ACK (40 ms): every origin load would measure the test origin, not the node.
            disable_nagle_algorithm = True

            def log_message(self, *a):
                pass

            def do_GET(self):
                path = urllib.parse.urlsplit(self.path).path
                if not path.startswith("/v/"):
                    self._answer(400, b"bad path")
                    return
                key = urllib.parse.unquote(path[len("/v/"):])
                with origin.lock:
                    origin.counts[key] = origin.counts.get(key, 0) + 1
                    delay = origin.delay.get(key, origin.slow_delay if key.startswith("slow") else origin.all_delay)
                    status = origin.status.get(key)
                    value = origin.values.get(key)
                    if value is None and origin.value_of is not None:
                        value = origin.value_of(key)
                if delay:
                    time.sleep(delay)
                if status is not None:
                    self._answer(status, b"origin says %d" % status)
                elif value is not None:
                    self._answer(200, value)
                else:
                    self._answer(404, b"no such key")

            def _answer(self, status, body):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 512

            def handle_error(self, request, client_address):
                pass

        self.server = Server((host, 0), Handler)
        self.port = self.server.server_address[1]
        self.url = "http://%s:%d/v/{key}" % (host, self.port)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        self.running = True

    def count(self, key):
        with self.lock:
            return self.counts.get(key, 0)

    def stop(self):
        if self.running:
            self.running = False
            self.server.shutdown()
            self.server.server_close()


# --- Prometheus text format --------------------------------------------------------------------

_METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
_SAMPLE_RE = re.compile(r"^(%s)(\{(?:%s)(?:,%s)*,?\}|\{\})?[ \t]+(\S+)(?:[ \t]+-?\d+)?$" % (_METRIC_NAME, _LABEL, _LABEL))
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_prometheus(text):
    """Parses Prometheus text exposition format 0.0.4 strictly.

    Returns (types {family: type}, samples [(name, {labels}, float)]). Raises AssertionError on a bad line.
    """
    types = {}
    samples = []
    for n, line in enumerate(text.split("\n"), 1):
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 2 and parts[1] == "TYPE":
                assert len(parts) == 4 and parts[3].strip() in _TYPES, "line %d: bad TYPE: %r" % (n, line)
                assert re.fullmatch(_METRIC_NAME, parts[2]), "line %d: bad name %r" % (n, line)
                assert parts[2] not in types, "line %d: TYPE repeated for %s" % (n, parts[2])
                types[parts[2]] = parts[3].strip()
            elif len(parts) >= 2 and parts[1] == "HELP":
                assert len(parts) >= 3 and re.fullmatch(_METRIC_NAME, parts[2]), "line %d: bad HELP %r" % (n, line)
            continue
        m = _SAMPLE_RE.match(line)
        assert m, "line %d is not a Prometheus sample: %r" % (n, line)
        value = m.group(3)
        try:
            v = float(value)  # accepts NaN, +Inf, -Inf
        except ValueError:
            raise AssertionError("line %d: bad value %r" % (n, line))
        labels = dict(_LABEL_RE.findall(m.group(2) or ""))
        samples.append((m.group(1), labels, v))
    return types, samples


def metric_sum(samples, name, **labels):
    """Sum of all samples called name whose labels include the given ones."""
    return sum(v for (n, ls, v) in samples
               if n == name and all(ls.get(k) == val for k, val in labels.items()))


# --- JSON stats ----------------------------------------------------------------------------------

def find_numbers(obj, name, path=""):
    """All numeric fields called `name` anywhere in a JSON value, as [(path, number)]."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = path + "." + k
            if k == name and isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append((p, v))
            out.extend(find_numbers(v, name, p))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(find_numbers(v, name, "%s[%d]" % (path, i)))
    return out


def find_dicts_with(obj, *names):
    """All dicts anywhere in a JSON value having every one of the given numeric fields."""
    out = []
    if isinstance(obj, dict):
        if all(isinstance(obj.get(n), (int, float)) for n in names):
            out.append(obj)
        for v in obj.values():
            out.extend(find_dicts_with(v, *names))
    elif isinstance(obj, list):
        for v in obj:
            out.extend(find_dicts_with(v, *names))
    return out


# --- ports, polling, process memory ----------------------------------------------------------------


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (for flags that cannot take port 0)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def free_ports(n):
    """n distinct free ports (see free_port)."""
    ports = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


# A deadline for correctness, not a speed bound: how long a node may take to reach a state it must reach, on a
# busy 2-core machine. Tests wait for conditions up to this long; measured times are printed (TIMING lines) or
# recorded in docs/reliability.md, never asserted as tight bounds.
DEADLINE = 15.0


def wait_for(predicate, timeout, interval=0.05):
    """Polls predicate until it returns something truthy or timeout passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def proc_status_kib(pid, field="VmRSS"):
    """A /proc/PID/status memory field (VmRSS, VmHWM, ...) in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def proc_open_files_limit(pid):
    """The soft RLIMIT_NOFILE of a process, from /proc/PID/limits (None = unlimited)."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                soft = line.split()[3]
                return None if soft == "unlimited" else int(soft)
    raise KeyError("Max open files")


def percentile(sorted_values, p):
    """The p-th percentile (0..100) of an already sorted list, nearest-rank."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


# --- a static cluster on fixed ports ---------------------------------------------------------------


class FixedCluster:
    """Nodes named names[i] with static `--peer NAME=127.0.0.1:PORT,...` membership on fixed ports.

    API and peer ports are chosen once, so restart(name) brings a node back on the same addresses.
    extra_flags apply to every node; per_node_flags[name] only to that one.
    """

    def __init__(self, names=("a", "b", "c"), extra_flags=(), per_node_flags=None):
        self.names = list(names)
        ports = free_ports(2 * len(self.names))
        self.api_ports = dict(zip(self.names, ports[:len(self.names)]))
        self.peer_ports = dict(zip(self.names, ports[len(self.names):]))
        self.peer_list = ",".join("%s=127.0.0.1:%d" % (n, self.peer_ports[n]) for n in self.names)
        self.extra_flags = list(extra_flags)
        self.per_node_flags = per_node_flags or {}
        self.nodes = {}
        self.retired = []
        try:
            for n in self.names:
                self.start(n)
        except Exception:
            self.cleanup()
            raise

    def args(self, name):
        return ["--api", "127.0.0.1:%d" % self.api_ports[name], "--name", name, "--port",
                str(self.peer_ports[name]), "--peer", self.peer_list, *self.extra_flags,
                *self.per_node_flags.get(name, ())]

    def start(self, name):
        self.nodes[name] = Node(*self.args(name))
        return self.nodes[name]

    def restart(self, name, sig=signal.SIGKILL, down_seconds=0):
        """Stops the node (SIGKILL by default), waits down_seconds, starts it again on the same ports.

        The old Node (and its log) is kept in self.retired until cleanup.
        """
        old = self.nodes[name]
        old.stop(sig)
        self.retired.append(old)
        if down_seconds:
            time.sleep(down_seconds)
        return wait_for(lambda: self._try_start(name), DEADLINE, 0.2) or self.start(name)

    def _try_start(self, name):
        try:
            return self.start(name)
        except RuntimeError:
            return None

    def __getitem__(self, name):
        return self.nodes[name]

    def members_up(self, name):
        """Names of the members that node `name` reports as up in /api/peers (empty set if it cannot answer)."""
        import json
        try:
            status, _, body, _ = self.nodes[name].request("GET", "/api/peers", timeout=2)
        except OSError:
            return set()
        if status != 200:
            return set()
        return {m["name"] for m in json.loads(body)["members"] if m.get("state") == "up"}

    def converged(self):
        return all(self.members_up(n) == set(self.names) for n in self.names)

    def cleanup(self):
        for n in list(self.nodes.values()) + self.retired:
            n.stop()
            n.cleanup()


# --- gRPC stubs for the peer protocol, generated at test time -------------------------------------

_PEER_STUBS = None


def peer_stubs():
    """(pb2, pb2_grpc) modules for proto/springcachepb.proto, compiled with grpc_tools.protoc into a temp dir."""
    global _PEER_STUBS
    if _PEER_STUBS is None:
        import importlib
        import sys
        here = os.path.dirname(os.path.abspath(__file__))
        proto_dir = os.path.join(here, "..", "..", "proto")
        out = tempfile.mkdtemp(prefix="springcachepb-")
        subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", proto_dir, "--python_out=" + out,
                        "--grpc_python_out=" + out, os.path.join(proto_dir, "springcachepb.proto")], check=True)
        sys.path.insert(0, out)
        _PEER_STUBS = (importlib.import_module("springcachepb_pb2"), importlib.import_module("springcachepb_pb2_grpc"))
    return _PEER_STUBS


# --- clusters (static --peer lists) ------------------------------------------------------------

PEER_PORT_RE = re.compile(rb"peer port grpc://127\.0\.0\.1:(\d+) members=(\S+)")
_GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden")


def _ring_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_ring_vectors", os.path.join(_GOLDEN, "make_ring_vectors.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_ring = _ring_module()


def ring_owner(members, key):
    """The owner of key among member names: the independent Python rendezvous hash of Tests/golden."""
    return _ring.owner(members, key)


def keys_owned_by(members, name, count, prefix="key-"):
    """The first count keys prefix0, prefix1, ... that members' ring gives to name."""
    out = []
    i = 0
    while len(out) < count:
        k = "%s%d" % (prefix, i)
        if ring_owner(members, k) == name:
            out.append(k)
        i += 1
    return out


_used_ports = set()


def free_peer_port():
    """A free TCP port on 127.0.0.1 BELOW the kernel's ephemeral range, so that no port-0 bind of another
    process (our nodes' API ports, the origin, clients) can take it between now and the node's bind."""
    import random
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError):
        low = 32768
    for _ in range(1000):
        port = random.randint(max(1024, low - 12000), low - 1)
        if port in _used_ports:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _used_ports.add(port)
        return port
    raise RuntimeError("no free port found")


def free_peer_port_range(n):
    """A base port below the ephemeral range such that base..base+n-1 are all free (workers use PORT+i)."""
    for _ in range(200):
        base = free_peer_port()
        socks = []
        try:
            for p in range(base + 1, base + n):
                if p in _used_ports:
                    raise OSError("taken by this test run")
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        _used_ports.update(range(base, base + n))
        return base
    raise RuntimeError("no free port range of %d found" % n)


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Polls predicate() until it returns a truthy value; returns it, or raises AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = predicate()
        except (OSError, http.client.HTTPException, ValueError) as e:
            last = e
            if time.monotonic() >= deadline:
                raise AssertionError("%s not reached within %ss: %r" % (what, timeout, last))
        else:
            if last and not isinstance(last, Exception):
                return last
        if time.monotonic() >= deadline:
            raise AssertionError("%s not reached within %ss (last: %r)" % (what, timeout, last))
        time.sleep(interval)


def node_json(node, path):
    import json
    status, _, body, _ = node.request("GET", path, timeout=5)
    assert status == 200, "%s answered %d: %r" % (path, status, body[:300])
    return json.loads(body)


def wait_peer_port(node, timeout=START_TIMEOUT):
    """Waits for the node's 'peer port grpc://127.0.0.1:P members=...' line; returns (port, [members])."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = PEER_PORT_RE.search(node.log_text(raw=True))
        if m:
            return int(m.group(1)), m.group(2).decode().split(",")
        if not node.alive():
            break
        time.sleep(0.01)
    raise RuntimeError("no 'peer port grpc://127.0.0.1:P members=...' line within %ss; args=%r log:\n%s"
                       % (timeout, node.args, node.log_text()[-4000:]))


class Cluster:
    """Nodes named names, each with its own peer port, all started with the same static --peer list.

    nodes[name] is a harness.Node; start(name) (re)starts one on the same peer port; kill9(name) is `kill -9`.
    """

    def __init__(self, names, *flags, peer_ports=None, extra_members=None):
        self.names = list(names)
        self.flags = [str(f) for f in flags]
        self.peer_ports = dict(peer_ports or {})
        for n in self.names:
            self.peer_ports.setdefault(n, free_peer_port())
        members = dict(self.peer_ports)
        members.update(extra_members or {})
        self.members = sorted(members)
        self.peer_arg = ",".join("%s=127.0.0.1:%d" % (n, members[n]) for n in self.members)
        self.nodes = {}
        self.retired = []
        try:
            for n in self.names:
                self.start(n)
        except BaseException:
            self.cleanup()
            raise

    def start(self, name):
        old = self.nodes.get(name)
        if old is not None:
            assert not old.alive(), "node %s is still running" % name
            self.retired.append(old)
        node = Node("--name", name, "--port", self.peer_ports[name], "--peer", self.peer_arg, *self.flags)
        self.nodes[name] = node
        port, members = wait_peer_port(node)
        assert port == self.peer_ports[name], "node %s logs peer port %d, expected %d" % (name, port,
                                                                                         self.peer_ports[name])
        assert sorted(members) == self.members, "node %s logs members %r, expected %r" % (name, members,
                                                                                         self.members)
        return node

    def __getitem__(self, name):
        return self.nodes[name]

    def owner(self, key):
        return ring_owner(self.members, key)

    def others(self, *names):
        return [n for n in self.names if n not in names]

    def peers(self, name):
        return node_json(self.nodes[name], "/api/peers")

    def states(self, name):
        """{member name: state} as node name's /api/peers shows it."""
        return {m["name"]: m["state"] for m in self.peers(name)["members"]}

    def stats(self, name):
        return node_json(self.nodes[name], "/api/stats")

    def wait_all_up(self, timeout=DEADLINE, on=None):
        for n in on or self.names:
            wait_until(lambda: all(s == "up" for s in self.states(n).values()) and len(self.states(n)) ==
                       len(self.members), timeout, what="all members up on %s" % n)

    def kill9(self, name):
        self.nodes[name].send_signal(signal.SIGKILL)
        self.nodes[name].proc.wait(5)

    def cleanup(self):
        for n in list(self.nodes.values()) + self.retired:
            n.stop(timeout=3)
            n.cleanup()

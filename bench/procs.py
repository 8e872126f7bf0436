"""The benchmarks' processes: free ports, CPU pinning and accounting, and starting/stopping every system measured.

Systems (each a dict with "name", "proc", "port" and "cpu_procs", the processes whose CPU time is counted):
  springcache-uv  the node under test (bench.start_node / cluster.py)
  nginx           one worker, master_process off: `return 200 "value=630\\n"` on /api/get, and the large values as
                  files under /v1/cache/scores/ with sendfile on
  varnish         varnishd (-j none, its own -n workdir) in front of that nginx, TTL 1 h, malloc storage
  groupcache      bench/groupcache (golang/groupcache behind the same API shape), built by bench/groupcache/build.sh
Every process is started in its own session on 127.0.0.1 and a free port; stop() ends its whole process group,
and stop_on_signals() turns SIGTERM/SIGHUP into an exception so the callers' `finally` stops everything.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Startup allowances: varnishd compiles its VCL with cc before it listens, which takes seconds on a busy machine.
START_TIMEOUT_S = 10
VARNISH_START_TIMEOUT_S = 60

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 65s;
    sendfile on;
    server {{
        listen 127.0.0.1:{port} reuseport;
        default_type application/octet-stream;
        location /api/get {{
            return 200 "value=630\\n";
        }}
        location /v1/cache/scores/ {{
            root {tmp}/www;
        }}
    }}
}}
"""


def value_bytes(size):
    """The large-value scenarios' bytes: 'a'..'z' repeating (bench/groupcache's origin makes the same)."""
    alphabet = bytes(range(ord("a"), ord("z") + 1))
    return (alphabet * (size // 26 + 1))[:size]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pinned(cpu, argv):
    return (["taskset", "-c", str(cpu)] + argv) if cpu is not None else argv


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def descendants(pid):
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    out, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        frontier += kids
    return out


def cpu_ticks_tree(pid):
    """utime+stime of pid and every live descendant (varnishd's work is done in its child, cache-main)."""
    total = 0
    for p in [pid] + descendants(pid):
        try:
            total += cpu_ticks(p)
        except OSError:
            pass  # exited between the listing and the read
    return total


def server_cpu_ticks(server):
    return sum(cpu_ticks_tree(p.pid) for p in server.get("cpu_procs", [server["proc"]]))


def wait_for(url, expect, proc, timeout=START_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s" % (proc.args, proc.returncode))
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                body = r.read()
            if body == expect:
                return
            last = body[:80]
        except OSError as e:
            last = e
        time.sleep(0.02)
    raise RuntimeError("%s did not answer %r: %r" % (url, expect[:80], last))


def fetch(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        return r.read()


def spawn(cpu, argv, log_path):
    """Starts argv pinned to cpu in a session of its own (so stop() reaches its children too)."""
    log = open(log_path, "wb")
    try:
        return subprocess.Popen(pinned(cpu, argv), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    finally:
        log.close()


def _signal(p, sig):
    """sig to p's process group if p leads one (spawn() makes it so), else to p alone (callers' own Popen)."""
    try:
        if os.getpgid(p.pid) == p.pid:
            os.killpg(p.pid, sig)
        else:
            p.send_signal(sig)
    except ProcessLookupError:
        pass


def stop(server):
    p = server["proc"]
    if p.poll() is None:
        _signal(p, signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            _signal(p, signal.SIGKILL)
            p.wait()
    else:
        try:
            os.killpg(p.pid, signal.SIGKILL)  # the leader is gone; children of a group it led may not be
        except (ProcessLookupError, PermissionError):
            pass


def stop_on_signals():
    def handler(signum, _frame):
        raise SystemExit("bench: stopped by signal %d" % signum)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, handler)


def tool(name):
    """The path of a tool, or exit with one line naming the package that provides it."""
    packages = {"nginx": "nginx", "varnishd": "varnish", "varnishstat": "varnish", "wrk": "wrk",
                "taskset": "util-linux", "go": "golang-go"}
    path = shutil.which(name) or next((p for p in ("/usr/sbin/" + name,) if os.access(p, os.X_OK)), None)
    if not path:
        sys.exit("bench: %s is missing (scripts/ensure-deps bench installs %s)" % (name, packages.get(name, name)))
    return path


def answering(server, timeout=START_TIMEOUT_S):
    """server once it answers springcache's demo key (every system here does), or stopped and the error raised."""
    try:
        wait_for("http://127.0.0.1:%d/api/get?key=Tom" % server["port"], b"value=630\n", server["proc"], timeout)
    except BaseException:
        stop(server)
        raise
    return server


def start_nginx(cpu, tmp, values=(), access_log=None):
    """nginx answering /api/get like the node and /v1/cache/scores/v<SIZE> from files of value_bytes(SIZE)."""
    www = os.path.join(tmp, "www", "v1", "cache", "scores")
    os.makedirs(www, exist_ok=True)
    for size in values:
        with open(os.path.join(www, "v%d" % size), "wb") as f:
            f.write(value_bytes(size))
    port = free_port()
    conf = os.path.join(tmp, "nginx.conf")
    text = NGINX_CONF.format(tmp=tmp, port=port)
    if access_log:
        text = text.replace("access_log off;", "access_log %s;" % access_log)
    with open(conf, "w") as f:
        f.write(text)
    proc = spawn(cpu, [tool("nginx"), "-p", tmp, "-e", os.path.join(tmp, "nginx-error.log"), "-c", conf],
                 os.path.join(tmp, "nginx.out"))
    server = {"name": "nginx", "proc": proc, "port": port}
    return answering(server)


def start_varnish(cpu, tmp, backend_port):
    """varnishd in the foreground in front of nginx; -j none: no jail, it runs as the user running the bench."""
    port = free_port()
    workdir = os.path.join(tmp, "varnish")
    argv = [tool("varnishd"), "-F", "-j", "none", "-n", workdir, "-a", "127.0.0.1:%d" % port,
            "-b", "127.0.0.1:%d" % backend_port, "-s", "malloc,1G", "-t", "3600"]
    proc = spawn(cpu, argv, os.path.join(tmp, "varnish.log"))
    server = {"name": "varnish", "proc": proc, "port": port, "workdir": workdir}
    return answering(server, VARNISH_START_TIMEOUT_S)


def varnish_counter(server, name):
    p = subprocess.run([tool("varnishstat"), "-n", server["workdir"], "-1", "-f", name],
                       capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    raise RuntimeError("varnishstat has no %s: %s" % (name, p.stderr.strip() or p.stdout.strip()))


def groupcache_binary():
    out = os.path.join(REPO, ".build", "bench", "groupcache-bench")
    p = subprocess.run([os.path.join(HERE, "groupcache", "build.sh"), out], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit((p.stderr.strip() or p.stdout.strip() or "bench: building bench/groupcache failed").splitlines()[-1])
    return out


def start_groupcache(cpu, tmp, name="groupcache", port=None, peers=None):
    """One groupcache node; peers: the base URLs of every node of its cluster (None: a single node)."""
    port = port or free_port()
    argv = [groupcache_binary(), "-listen", "127.0.0.1:%d" % port]
    if peers:
        argv += ["-peers", ",".join(peers)]
    proc = spawn(cpu, argv, os.path.join(tmp, "%s.log" % name.replace("/", "-")))
    server = {"name": name, "proc": proc, "port": port}
    return answering(server)

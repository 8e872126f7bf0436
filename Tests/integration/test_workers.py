"""`--workers N`: one full node per worker process behind one API port, supervised.

The supervisor spawns N workers of the same binary; they share the API port (SO_REUSEPORT), are one
another's cluster members (worker i is NAME-i on peer port PORT+i), are restarted when they die, and
stop with the supervisor.
"""
import os
import signal
import socket
import threading
import time

import pytest

from harness import DEADLINE, Node, free_peer_port, free_peer_port_range


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def children(pid):
    """Live child pids of pid, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return sorted(out)


def wait_for(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


@pytest.fixture
def workers():
    started = []

    def start(n=2, *flags):
        api = free_peer_port()
        peer = free_peer_port_range(n)
        node = Node("--api", "127.0.0.1:%d" % api, "--port", str(peer), "--workers", str(n),
                    "--name", "w", *flags)
        started.append(node)
        assert wait_for(lambda: len(children(node.proc.pid)) == n, DEADLINE), "expected %d workers" % n
        # Both workers must be serving before the test relies on either of them.
        assert wait_for(lambda: node.log_text().count("serving http://") >= n, DEADLINE), node.log_text()
        return node

    try:
        yield start
    finally:
        for node in started:
            kids = children(node.proc.pid)
            node.stop()
            for k in kids:
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            node.cleanup()


def test_two_workers_under_one_supervisor(workers):
    node = workers(2)
    kids = children(node.proc.pid)
    assert len(kids) == 2
    names = set()
    for _ in range(60):
        status, _, body, _ = node.request("GET", "/api/stats")
        assert status == 200
        import json
        stats = json.loads(body)
        names.add((stats["name"], stats["worker"], stats["pid"]))
        if len(names) == 2:
            break
    assert {n[0] for n in names} == {"w-0", "w-1"}, names
    assert {n[2] for n in names} == set(kids)
    status, _, body, _ = node.request("GET", "/api/peers")
    import json
    members = {m["name"]: m for m in json.loads(body)["members"]}
    assert set(members) == {"w-0", "w-1"}
    assert all(m["state"] == "up" for m in members.values())
    assert "w-0" in node.log_text() and "w-1" in node.log_text(), "logs say which worker wrote them"


def test_sets_and_gets_are_consistent_whichever_worker_answers(workers):
    node = workers(2)
    for i in range(40):
        assert node.set("wk%d" % i, "val%d" % i)[0] == 200
    # Fresh connections land on either worker (the kernel spreads them); every read must agree.
    for _ in range(3):
        for i in range(40):
            status, _, body, _ = node.get("wk%d" % i)
            assert (status, body) == (200, b"value=val%d\n" % i)
    for i in range(0, 40, 2):
        assert node.form("/api/delete", {"key": "wk%d" % i})[0] == 200
    for i in range(40):
        status, _, body, _ = node.get("wk%d" % i)
        assert status == (404 if i % 2 == 0 else 200), (i, status, body)


def test_killed_worker_is_replaced_and_answers_stay_right(workers):
    node = workers(2)
    for i in range(20):
        assert node.set("kw%d" % i, "v%d" % i)[0] == 200
    wrong = []
    answered = [0]
    stop = threading.Event()

    def reader():
        i = 0
        while not stop.is_set():
            key = "kw%d" % (i % 20)
            try:
                status, _, body, _ = node.get(key, timeout=5)
            except OSError:
                continue  # a connection to the killed worker may be reset: an error, never a wrong value
            if status == 200:
                answered[0] += 1
                if body != b"value=v%d\n" % (i % 20):
                    wrong.append((key, body))
            elif status != 404:  # a set stored only in the killed worker is gone with it: 404, not wrong
                wrong.append((key, status, body))
            i += 1

    t = threading.Thread(target=reader)
    t.start()
    try:
        time.sleep(0.3)
        before = children(node.proc.pid)
        victim = before[0]
        os.kill(victim, signal.SIGKILL)
        replaced = wait_for(lambda: len(children(node.proc.pid)) == 2 and victim not in children(node.proc.pid), DEADLINE)
        assert replaced, "no replacement worker within %d s: %r" % (DEADLINE, children(node.proc.pid))
        time.sleep(0.5)
    finally:
        stop.set()
        t.join()
    assert not wrong, wrong[:5]
    assert answered[0] > 0
    assert "exited (killed by signal 9)" in node.log_text()


def test_sigterm_stops_supervisor_and_workers(workers):
    node = workers(2)
    kids = children(node.proc.pid)
    t0 = time.monotonic()
    assert node.stop(signal.SIGTERM) == 0
    assert time.monotonic() - t0 < DEADLINE
    for k in kids:
        assert not os.path.exists("/proc/%d" % k) or open("/proc/%d/stat" % k).read().split()[2] == "Z", k


def test_workers_exit_when_the_supervisor_dies(workers):
    node = workers(2)
    kids = children(node.proc.pid)
    node.kill()  # SIGKILL: the supervisor cannot stop them itself
    gone = wait_for(lambda: not any(os.path.exists("/proc/%d" % k) for k in kids), DEADLINE)
    assert gone, "workers outlived their supervisor: %r" % kids


def test_workers_flag_validation():
    import subprocess
    from harness import binary_path
    for args, hint in [(["--workers", "zero"], "--workers"), (["--workers", "0"], "--workers"),
                       (["--api", "127.0.0.1:0", "--workers", "2"], "--api")]:
        p = subprocess.run([binary_path(), *args], capture_output=True, timeout=10)
        assert p.returncode != 0, args
        assert hint in p.stderr.decode(), (args, p.stderr)


def test_workers_with_etcd_register_each_and_leave_nothing_behind(workers, etcd):
    import json
    node = workers(2, "--etcd", etcd.endpoint, "--lease-ttl", "2s")
    assert wait_for(lambda: {k for k in etcd.kvs() if k.startswith("springcache/members/")}
                    == {"springcache/members/w-0", "springcache/members/w-1"}, 5), etcd.kvs()

    def both_see_both():
        # Fresh connections land on either worker: ask until both have answered, each with both members.
        seen = {}
        for _ in range(40):
            doc = json.loads(node.request("GET", "/api/peers")[2])
            seen[doc["self"]] = sorted(m["name"] for m in doc["members"])
            if len(seen) == 2:
                break
        return seen == {"w-0": ["w-0", "w-1"], "w-1": ["w-0", "w-1"]} and seen
    assert wait_for(both_see_both, DEADLINE), "each worker sees both through etcd"
    for i in range(20):
        assert node.set("ek%d" % i, "v%d" % i)[0] == 200
    for i in range(20):
        assert node.get("ek%d" % i)[2] == b"value=v%d\n" % i
    kids = children(node.proc.pid)
    t0 = time.monotonic()
    assert node.stop(signal.SIGTERM) == 0
    assert time.monotonic() - t0 < DEADLINE
    assert not any(os.path.exists("/proc/%d" % k) and open("/proc/%d/stat" % k).read().split()[2] != "Z"
                   for k in kids)
    assert etcd.kvs() == {}, "a graceful stop revokes every worker's lease: %r" % etcd.kvs()

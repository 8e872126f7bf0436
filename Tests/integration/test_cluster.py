"""A real 3-node cluster (static --peer list, h2c gRPC between the nodes) seen through its HTTP API.

Ownership is checked against the independent Python ring of Tests/golden/make_ring_vectors.py: the owner
of a key is the only node whose /api/stats `loads` counter moves when the key is first read anywhere.
"""
import http.client
import random
import subprocess
import threading
import time
import urllib.parse

import pytest

from harness import DEADLINE, Cluster, Origin, binary_path, free_peer_port, keys_owned_by, ring_owner, wait_until

NAMES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def origin_m():
    o = Origin()
    try:
        yield o
    finally:
        o.stop()


@pytest.fixture(scope="module")
def cluster(origin_m):
    """A 3-node cluster shared by the read/set/delete tests below (each test uses keys of its own)."""
    c = Cluster(NAMES, "--origin", origin_m.url, "--hot-copy-one-in", "0")
    try:
        c.wait_all_up()
        yield c
        dead = {n: c[n].proc.returncode for n in NAMES if not c[n].alive()}
        assert not dead, "nodes died during the module (exit codes %r); logs:\n%s" % (
            dead, "\n".join("--- %s\n%s" % (n, c[n].log_text()[-2000:]) for n in dead))
    finally:
        c.cleanup()


def body_of(node, key):
    status, _, body, _ = node.get(key)
    return status, body


def loads(c):
    return {n: c.stats(n)["loads"] for n in c.names}


def items(c, cache):
    return {n: c.stats(n)["caches"][cache]["items"] for n in c.names}


# --- membership ------------------------------------------------------------------------------------


def test_peers_json_lists_every_member_with_a_third_of_the_ring(cluster):
    for name in NAMES:
        doc = cluster.peers(name)
        assert doc["self"] == name
        members = {m["name"]: m for m in doc["members"]}
        assert sorted(members) == NAMES, doc
        for m in doc["members"]:
            assert set(m) >= {"name", "api", "peer", "state", "share", "self"}, m
            assert m["state"] == "up", doc
            assert m["self"] is (m["name"] == name), doc
            assert m["peer"] == "127.0.0.1:%d" % cluster.peer_ports[m["name"]], doc
            assert abs(m["share"] - 1 / 3) < 0.05, doc
        assert abs(sum(m["share"] for m in doc["members"]) - 1.0) < 0.01, doc
        assert members[name]["api"] == "127.0.0.1:%d" % cluster[name].port, doc


# --- read-through: one load per key, cluster-wide --------------------------------------------------


def test_every_key_reads_the_same_through_every_node_and_is_loaded_once_by_its_owner(cluster, origin_m):
    keys = ["same-%d" % i for i in range(30)]
    for k in keys:
        origin_m.values[k] = ("v-" + k).encode()
    owned = {n: [k for k in keys if ring_owner(NAMES, k) == n] for n in NAMES}
    assert all(owned.values()), "every node should own some of 30 keys: %r" % owned
    before = loads(cluster)
    order = [(k, n) for k in keys for n in NAMES]
    random.Random(7).shuffle(order)
    for k, n in order:
        assert body_of(cluster[n], k) == (200, b"value=v-" + k.encode() + b"\n"), (k, n)
    for k in keys:
        assert origin_m.count(k) == 1, "origin saw %d requests for %s" % (origin_m.count(k), k)
    after = loads(cluster)
    for n in NAMES:
        assert after[n] - before[n] == len(owned[n]), \
            "node %s: loads went %d -> %d, but the Python ring gives it %d of the keys (%r)" % (
                n, before[n], after[n], len(owned[n]), {m: len(v) for m, v in owned.items()})
    # warm: no origin traffic and no loads anywhere
    for k, n in order:
        assert body_of(cluster[n], k) == (200, b"value=v-" + k.encode() + b"\n")
    assert all(origin_m.count(k) == 1 for k in keys)
    assert loads(cluster) == after


@pytest.mark.parametrize("owner", NAMES)
def test_concurrent_cold_gets_through_all_nodes_cause_one_origin_request(cluster, origin_m, owner):
    key = keys_owned_by(NAMES, owner, 1, prefix="storm-%s-" % owner)[0]
    origin_m.values[key] = b"storm"
    origin_m.delay[key] = 0.3
    clients = 50
    barrier = threading.Barrier(clients)
    results = [None] * clients

    def worker(i):
        node = cluster[NAMES[i % 3]]
        c = http.client.HTTPConnection("127.0.0.1", node.port, timeout=20)
        try:
            c.connect()
            barrier.wait(timeout=20)
            c.request("GET", "/api/get?key=" + urllib.parse.quote(key))
            r = c.getresponse()
            results[i] = (r.status, r.read())
        except Exception as e:  # noqa: BLE001 - recorded and asserted below
            results[i] = e
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(r == (200, b"value=storm\n") for r in results), [r for r in results if r != (200, b"value=storm\n")][:5]
    assert origin_m.count(key) == 1, "origin saw %d requests for %s (owner %s)" % (origin_m.count(key), key, owner)


# --- set and delete through any node --------------------------------------------------------------


@pytest.mark.parametrize("via", ["owner", "non-owner"])
def test_set_through_one_node_is_stored_at_the_owner_and_seen_everywhere(cluster, origin_m, via):
    key = "set-%s" % via  # the origin answers 404 for it
    owner = ring_owner(NAMES, key)
    through = owner if via == "owner" else [n for n in NAMES if n != owner][0]
    main_before = items(cluster, "main")
    status, _, body, _ = cluster[through].set(key, "stored-%s" % via)
    assert (status, body) == (200, b"done\n")
    main_after = items(cluster, "main")
    for n in NAMES:
        assert main_after[n] - main_before[n] == (1 if n == owner else 0), \
            "main items %r -> %r: the value must live at the owner %s only" % (main_before, main_after, owner)
    for n in NAMES:
        assert body_of(cluster[n], key) == (200, ("value=stored-%s\n" % via).encode()), n
    assert origin_m.count(key) == 0


@pytest.mark.parametrize("via", ["owner", "non-owner"])
def test_delete_through_one_node_removes_the_key_cluster_wide(cluster, origin_m, via):
    key = "del-%s" % via  # the origin answers 404 for it
    owner = ring_owner(NAMES, key)
    through = owner if via == "owner" else [n for n in NAMES if n != owner][-1]
    setter = [n for n in NAMES if n != through][0]
    assert cluster[setter].set(key, "doomed")[0] == 200
    for n in NAMES:
        assert body_of(cluster[n], key) == (200, b"value=doomed\n"), n
    status, _, body, _ = cluster[through].form("/api/delete", {"key": key})
    assert status == 200, body
    for n in NAMES:
        status, body = body_of(cluster[n], key)
        assert status == 404, "after delete through %s, %s answers %d %r" % (through, n, status, body)
    assert origin_m.count(key) == 1, "after the delete the owner alone asks the origin (once): %d" % origin_m.count(key)


def test_set_then_read_many_keys_through_random_nodes(cluster):
    rnd = random.Random(11)
    keys = ["bulk-%d" % i for i in range(60)]
    for k in keys:
        assert cluster[rnd.choice(NAMES)].set(k, "b" + k)[0] == 200
    for k in keys:
        for n in NAMES:
            assert body_of(cluster[n], k) == (200, ("value=b%s\n" % k).encode()), (k, n)


# --- hot copies -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hot_cluster(origin_m):
    c = Cluster(NAMES, "--origin", origin_m.url, "--hot-copy-one-in", "1")
    try:
        c.wait_all_up()
        yield c
        dead = {n: c[n].proc.returncode for n in NAMES if not c[n].alive()}
        assert not dead, "nodes died during the module (exit codes %r); logs:\n%s" % (
            dead, "\n".join("--- %s\n%s" % (n, c[n].log_text()[-2000:]) for n in dead))
    finally:
        c.cleanup()


@pytest.mark.parametrize("via", ["owner", "holder", "third"])
def test_hot_copy_serves_reads_and_a_set_anywhere_invalidates_it(hot_cluster, origin_m, via):
    c = hot_cluster
    key = "hot-%s" % via
    origin_m.values[key] = b"old"
    owner = c.owner(key)
    holder, third = c.others(owner)
    assert body_of(c[holder], key) == (200, b"value=old\n")
    assert c.stats(holder)["caches"]["hot"]["items"] > 0, c.stats(holder)
    owner_gets = c.stats(owner)["gets"]
    for _ in range(10):
        assert body_of(c[holder], key) == (200, b"value=old\n")
    assert c.stats(owner)["gets"] == owner_gets, "reads through the hot copy on %s reached the owner %s" % (
        holder, owner)
    assert origin_m.count(key) == 1
    setter = {"owner": owner, "holder": holder, "third": third}[via]
    assert c[setter].set(key, "new")[0] == 200
    assert body_of(c[holder], key) == (200, b"value=new\n"), "the hot copy on %s survived a set through %s" % (
        holder, setter)
    for n in NAMES:
        assert body_of(c[n], key) == (200, b"value=new\n"), n


def test_delete_invalidates_hot_copies(hot_cluster, origin_m):
    c = hot_cluster
    key = "hot-deleted"  # the origin answers 404 once the value is gone
    owner = c.owner(key)
    holder, third = c.others(owner)
    assert c[owner].set(key, "short-lived")[0] == 200
    assert body_of(c[holder], key) == (200, b"value=short-lived\n")
    assert c.stats(holder)["caches"]["hot"]["items"] > 0
    assert c[third].form("/api/delete", {"key": key})[0] == 200
    assert body_of(c[holder], key)[0] == 404, "the hot copy on %s survived a delete through %s" % (holder, third)


# --- failure, recovery, /setpeer ----------------------------------------------------------------


def test_kill9_one_node_survivors_answer_right_then_it_comes_back(start_cluster, origin_m):
    c = start_cluster(NAMES, "--origin", origin_m.url, "--peer-timeout", "500ms", "--hot-copy-one-in", "0")
    c.wait_all_up()
    victim, survivors = "c", ["a", "b"]
    keys = ["fail-%d" % i for i in range(300)]
    for k in keys:
        origin_m.values[k] = ("f-" + k).encode()
    assert any(c.owner(k) == victim for k in keys[:20])
    stop = threading.Event()
    bad = []
    done = [0]

    def client(node, offset):
        conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
        i = offset
        while not stop.is_set():
            k = keys[i % len(keys)]
            i += 7
            try:
                conn.request("GET", "/api/get?key=" + k)
                r = conn.getresponse()
                got = (r.status, r.read())
            except (OSError, http.client.HTTPException) as e:
                got = ("exception", repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
            if got != (200, ("value=f-%s\n" % k).encode()):
                bad.append((node.port, k, got))
            done[0] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(c[n], j)) for j, n in enumerate(survivors * 2)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        c.kill9(victim)
        time.sleep(2.0)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert done[0] > 100, "the client loop made only %d requests" % done[0]
    assert not bad, "%d wrong answers after kill -9 of %s, e.g. %r" % (len(bad), victim, bad[:5])
    for n in survivors:
        assert c.states(n)[victim] == "down", c.peers(n)
        assert c.states(n)[n] == "up"

    # keys the victim owns still read right (loaded locally), and the survivors keep serving
    fresh = keys_owned_by(c.members, victim, 3, prefix="while-down-")
    for k in fresh:
        origin_m.values[k] = b"wd"
        for n in survivors:
            assert body_of(c[n], k) == (200, b"value=wd\n")

    # restart on the same ports: the others probe it and mark it up again by themselves
    c.start(victim)
    for n in survivors:
        wait_until(lambda: c.states(n)[victim] == "up", DEADLINE, what="%s up again on %s" % (victim, n))
    back = keys_owned_by(c.members, victim, 1, prefix="after-restart-")[0]
    origin_m.values[back] = b"ar"
    before = c.stats(victim)["loads"]
    assert body_of(c[survivors[0]], back) == (200, b"value=ar\n")
    assert c.stats(victim)["loads"] == before + 1, "after the restart %s should load its own keys again" % victim

    for n in survivors:
        status, _, body, _ = c[n].form("/setpeer", {"peer": victim})
        assert (status, body) == (200, ("set peer %s successful\n" % victim).encode())
        status, _, body, _ = c[n].form("/setpeer", {"peer": "nobody"})
        assert status == 404, body


def test_setpeer_readmits_a_dropped_member(start_cluster, origin_m):
    c = start_cluster(NAMES, "--origin", origin_m.url, "--peer-timeout", "500ms", "--hot-copy-one-in", "0")
    c.wait_all_up()
    c.kill9("b")
    k = keys_owned_by(c.members, "b", 1, prefix="sp-")[0]
    origin_m.values[k] = b"sp"
    assert body_of(c["a"], k) == (200, b"value=sp\n")
    assert c.states("a")["b"] == "down"
    c.start("b")
    status, _, body, _ = c["a"].form("/setpeer", {"peer": "b"})
    assert (status, body) == (200, b"set peer b successful\n")
    wait_until(lambda: c.states("a")["b"] == "up", DEADLINE, what="b up on a after /setpeer")


# --- bad --peer lists ---------------------------------------------------------------------------


@pytest.mark.parametrize("peer", ["a=127.0.0.1", "b=127.0.0.1:1"])
def test_malformed_peer_list_exits_nonzero_naming_the_form(peer):
    port = free_peer_port()
    p = subprocess.run([binary_path(), "--api", "127.0.0.1:0", "--name", "a", "--port", str(port), "--peer", peer],
                       capture_output=True, timeout=5)
    msg = (p.stdout + p.stderr).decode("utf-8", "replace")
    assert p.returncode != 0, msg
    assert "--peer" in msg and "NAME=HOST:PORT" in msg, msg

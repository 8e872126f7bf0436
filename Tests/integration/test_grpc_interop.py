"""The peer protocol against a gRPC implementation that is not ours: Python grpcio (C core, HTTP/2 h2c).

Stubs are generated at test time from proto/springcachepb.proto (fixture `pb`). First grpcio is the CLIENT of
a node's peer port (a node with `--peer a=127.0.0.1:P` is a cluster of one); then a grpcio SERVER plays a
springcache peer that owns some keys, and our node has to call it.
"""
import os
import socket
import threading
import time
from concurrent import futures

import grpc
import pytest

from harness import DEADLINE, Cluster, Origin, keys_owned_by, ring_owner, wait_until

GROUP = "scores"


@pytest.fixture(scope="module")
def origin_m():
    o = Origin()
    try:
        yield o
    finally:
        o.stop()


@pytest.fixture(scope="module")
def solo(origin_m):
    c = Cluster(["a"], "--origin", origin_m.url)
    try:
        yield c
        assert c["a"].alive(), "the node died during the module (rc %r); log:\n%s" % (
            c["a"].proc.returncode, c["a"].log_text()[-3000:])
    finally:
        c.cleanup()


@pytest.fixture(scope="module")
def channel(solo):
    ch = grpc.insecure_channel("127.0.0.1:%d" % solo.peer_ports["a"])
    try:
        grpc.channel_ready_future(ch).result(timeout=5)
        yield ch
    finally:
        ch.close()


@pytest.fixture(scope="module")
def stub(pb, channel):
    return pb.grpc.SpringCacheStub(channel)


def now_ms():
    return int(time.time() * 1000)


def code_of(call):
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code()


# --- grpcio as the client ----------------------------------------------------------------------


def test_get_loads_from_origin_with_an_expire_in_the_future(pb, stub, origin_m):
    origin_m.values["g-origin"] = b"from-origin"
    t0 = now_ms()
    r = stub.Get(pb.pb2.GetRequest(group=GROUP, key="g-origin"), timeout=5)
    assert r.value == b"from-origin"
    assert t0 < r.expire <= now_ms() + 31_000, "expire %d should be ~30 s (default --ttl) after %d" % (r.expire, t0)
    assert origin_m.count("g-origin") == 1
    assert stub.Get(pb.pb2.GetRequest(group=GROUP, key="g-origin"), timeout=5).value == b"from-origin"
    assert origin_m.count("g-origin") == 1


@pytest.mark.parametrize("size", ["256", "1MiB", "empty"])
def test_set_then_get_round_trips_binary_values(pb, stub, origin_m, size):
    value = {"256": bytes(range(256)) * 3, "1MiB": os.urandom(1 << 20), "empty": b""}[size]
    key = "bin-" + size
    r = stub.Set(pb.pb2.SetRequest(group=GROUP, key=key, value=value, expire=0, ishot=False), timeout=10)
    assert r.ok is True
    got = stub.Get(pb.pb2.GetRequest(group=GROUP, key=key), timeout=10)
    assert got.value == value
    assert got.expire > now_ms()
    assert origin_m.count(key) == 0


def test_set_expire_in_unix_seconds_is_honoured(pb, stub):
    at = int(time.time()) + 600
    assert stub.Set(pb.pb2.SetRequest(group=GROUP, key="exp-10m", value=b"x", expire=at), timeout=5).ok
    got = stub.Get(pb.pb2.GetRequest(group=GROUP, key="exp-10m"), timeout=5)
    assert abs(got.expire - at * 1000) <= 2000, "Set expire %d s, Get says %d ms" % (at, got.expire)


def test_http_api_sees_values_set_over_grpc(pb, stub, solo):
    assert stub.Set(pb.pb2.SetRequest(group=GROUP, key="via-grpc", value=b"\x00\xffz"), timeout=5).ok
    status, _, body, _ = solo["a"].request("GET", "/v1/cache/scores/via-grpc")
    assert (status, body) == (200, b"\x00\xffz")


def test_missing_key_and_unknown_group_are_not_found(pb, stub):
    assert code_of(lambda: stub.Get(pb.pb2.GetRequest(group=GROUP, key="no-such-key"), timeout=5)) \
        == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: stub.Get(pb.pb2.GetRequest(group="no-such-group", key="Tom"), timeout=5)) \
        == grpc.StatusCode.NOT_FOUND


def test_set_with_expire_in_the_past_is_accepted_and_drops_the_key(pb, stub):
    # springcache sends such Sets (its API's expire=0 is "now"; an expired Set is its only delete) and stores
    # them as already expired: accepted, and the key is gone.
    for past in (int(time.time()) - 3600, int(time.time()), 1):
        future = int(time.time()) + 600
        assert stub.Set(pb.pb2.SetRequest(group=GROUP, key="past", value=b"v", expire=future), timeout=5).ok
        assert stub.Get(pb.pb2.GetRequest(group=GROUP, key="past"), timeout=5).value == b"v"
        assert stub.Set(pb.pb2.SetRequest(group=GROUP, key="past", value=b"v2", expire=past), timeout=5).ok is True
        assert code_of(lambda: stub.Get(pb.pb2.GetRequest(group=GROUP, key="past"), timeout=5)) \
            == grpc.StatusCode.NOT_FOUND, past


def test_delete_then_get_goes_to_the_origin_again(pb, stub, origin_m):
    origin_m.values["del-g"] = b"orig"
    assert stub.Get(pb.pb2.GetRequest(group=GROUP, key="del-g"), timeout=5).value == b"orig"
    assert stub.Set(pb.pb2.SetRequest(group=GROUP, key="del-g", value=b"mine"), timeout=5).ok
    assert stub.Get(pb.pb2.GetRequest(group=GROUP, key="del-g"), timeout=5).value == b"mine"
    assert stub.Delete(pb.pb2.DeleteRequest(group=GROUP, key="del-g"), timeout=5).ok is True
    assert stub.Get(pb.pb2.GetRequest(group=GROUP, key="del-g"), timeout=5).value == b"orig"
    assert origin_m.count("del-g") == 2


def test_invalidate_and_delete_say_whether_a_value_was_removed(pb, stub, channel):
    # Invalidate is new (sent by owners to copy holders); called by its path so the test does not depend
    # on the stubs having it. proto: DeleteResponse.ok "true = a value was removed; false = there was none".
    invalidate = channel.unary_unary("/springcachepb.SpringCache/Invalidate",
                                     request_serializer=pb.pb2.DeleteRequest.SerializeToString,
                                     response_deserializer=pb.pb2.DeleteResponse.FromString)
    assert invalidate(pb.pb2.DeleteRequest(group=GROUP, key="never-held"), timeout=5).ok is False
    assert stub.Delete(pb.pb2.DeleteRequest(group=GROUP, key="never-stored"), timeout=5).ok is False
    assert stub.Set(pb.pb2.SetRequest(group=GROUP, key="held", value=b"v"), timeout=5).ok
    assert invalidate(pb.pb2.DeleteRequest(group=GROUP, key="held"), timeout=5).ok is True
    assert stub.Set(pb.pb2.SetRequest(group=GROUP, key="stored", value=b"v"), timeout=5).ok
    assert stub.Delete(pb.pb2.DeleteRequest(group=GROUP, key="stored"), timeout=5).ok is True
    assert stub.Delete(pb.pb2.DeleteRequest(group=GROUP, key="stored"), timeout=5).ok is False


def test_500_concurrent_calls_on_one_channel(pb, stub, origin_m):
    for i in range(10):
        assert stub.Set(pb.pb2.SetRequest(group=GROUP, key="conc-set-%d" % i, value=b"s%d" % i), timeout=5).ok
        origin_m.values["conc-org-%d" % i] = b"o%d" % i
    calls = []
    for i in range(500):
        j = (i // 2) % 10
        kind = ("set", b"s%d" % j) if i % 2 else ("org", b"o%d" % j)
        calls.append((kind[1], stub.Get.future(pb.pb2.GetRequest(group=GROUP, key="conc-%s-%d" % (kind[0], j)),
                                               timeout=20)))
    for expect, f in calls:
        assert f.result().value == expect
    counts = [origin_m.count("conc-org-%d" % i) for i in range(10)]
    assert counts == [1] * 10, "origin requests per key (single-flight expects 1 each): %r" % counts


def test_short_deadline_on_a_slow_origin_key_is_deadline_exceeded(pb, stub, origin_m, solo):
    origin_m.delay["slow-grpc"] = 1.5
    origin_m.values["slow-grpc"] = b"late"
    t0 = time.monotonic()
    assert code_of(lambda: stub.Get(pb.pb2.GetRequest(group=GROUP, key="slow-grpc"), timeout=0.3)) \
        == grpc.StatusCode.DEADLINE_EXCEEDED
    # The client's own deadline answered, not the origin's 1.5 s load (generous bound: a shared machine).
    assert time.monotonic() - t0 < 1.5 + DEADLINE / 10, "DEADLINE_EXCEEDED after %.2f s" % (time.monotonic() - t0)
    # the node is fine afterwards, and the load it started completes for later callers
    assert stub.Get(pb.pb2.GetRequest(group=GROUP, key="slow-grpc"), timeout=5).value == b"late"
    assert solo["a"].get("slow-grpc")[2] == b"value=late\n"


@pytest.mark.parametrize("garbage", ["random", "http1", "bad-preface", "preface-then-junk"])
def test_garbage_on_the_peer_port_does_not_hurt_the_node(pb, solo, origin_m, garbage):
    data = {
        "random": os.urandom(8192),
        "http1": b"GET /api/get?key=Tom HTTP/1.1\r\nHost: x\r\n\r\n",
        "bad-preface": b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + os.urandom(64),
        "preface-then-junk": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x04\x09\x00\x00\x00\x00\x07" + os.urandom(500),
    }[garbage]
    port = solo.peer_ports["a"]
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(data)
        s.settimeout(2)
        try:
            while s.recv(65536):
                pass
        except (socket.timeout, ConnectionResetError):
            pass
    finally:
        s.close()
    assert solo["a"].alive()
    origin_m.values["after-" + garbage] = b"ok"
    with grpc.insecure_channel("127.0.0.1:%d" % port) as ch:
        r = pb.grpc.SpringCacheStub(ch).Get(pb.pb2.GetRequest(group=GROUP, key="after-" + garbage), timeout=5)
        assert r.value == b"ok"
    assert solo["a"].get("after-" + garbage)[:3:2] == (200, b"value=ok\n")


# --- grpcio as a springcache PEER that our node calls -------------------------------------------


class PythonPeer:
    """A grpcio server implementing springcachepb.SpringCache.Get as 'python-<key>' and recording the calls."""

    def __init__(self, pb, port):
        self.calls = []
        self.lock = threading.Lock()
        peer = self

        class Servicer(pb.grpc.SpringCacheServicer):
            def Get(self, request, context):
                with peer.lock:
                    peer.calls.append(("Get", request.group, request.key))
                return pb.pb2.GetResponse(value=("python-" + request.key).encode(), expire=now_ms() + 60_000)

            def Set(self, request, context):
                with peer.lock:
                    peer.calls.append(("Set", request.group, request.key))
                return pb.pb2.SetResponse(ok=True)

            def Delete(self, request, context):
                with peer.lock:
                    peer.calls.append(("Delete", request.group, request.key))
                return pb.pb2.DeleteResponse(ok=True)

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        pb.grpc.add_SpringCacheServicer_to_server(Servicer(), self.server)
        bound = self.server.add_insecure_port("127.0.0.1:%d" % port)
        assert bound == port, "grpcio could not bind 127.0.0.1:%d" % port
        self.server.start()

    def keys(self, method="Get"):
        with self.lock:
            return [k for (m, _, k) in self.calls if m == method]

    def stop(self):
        self.server.stop(0).wait(5)


@pytest.fixture
def python_peer_cluster(pb, origin_m):
    from harness import free_peer_port
    py_port = free_peer_port()
    py = PythonPeer(pb, py_port)
    c = None
    try:
        c = Cluster(["a"], "--origin", origin_m.url, "--hot-copy-one-in", "0", extra_members={"py": py_port})
        yield c, py
    finally:
        if c is not None:
            c.cleanup()
        py.stop()


def test_python_grpc_server_as_a_peer(python_peer_cluster, origin_m):
    c, py = python_peer_cluster
    members = ["a", "py"]
    assert c.members == members
    c.wait_all_up()
    py_keys = keys_owned_by(members, "py", 5, prefix="pyk-")
    a_keys = keys_owned_by(members, "a", 5, prefix="pyk-")
    for k in py_keys + a_keys:
        origin_m.values[k] = ("origin-" + k).encode()
    for k in py_keys:
        status, _, body, _ = c["a"].get(k)
        assert (status, body) == (200, ("value=python-%s\n" % k).encode()), \
            "%s is owned by py (Python ring), so our node must ask the Python server" % k
        assert origin_m.count(k) == 0
    assert sorted(set(py.keys())) == sorted(py_keys)
    for k in a_keys:
        assert c["a"].get(k)[2] == ("value=origin-%s\n" % k).encode()
        assert origin_m.count(k) == 1
    assert not set(py.keys()) & set(a_keys), "the Python server was asked for keys owned by a"
    assert {s[1] for s in py.calls} == {GROUP}

    # the Python peer goes away: our node loads its keys locally and shows it down
    py.stop()
    fresh = keys_owned_by(members, "py", 3, prefix="py-gone-")
    for k in fresh:
        origin_m.values[k] = ("local-" + k).encode()
        status, _, body, _ = c["a"].get(k)
        assert (status, body) == (200, ("value=local-%s\n" % k).encode())
        assert origin_m.count(k) == 1
    wait_until(lambda: c.states("a")["py"] == "down", DEADLINE, what="py down on a")
    assert c.states("a")["a"] == "up"
    assert ring_owner(members, fresh[0]) == "py"

"""Fixtures: the real springcache-uv binary (from $SPRINGCACHE_BIN) on port 0, and a real HTTP origin.

Every process a fixture starts is stopped at teardown, including when the test failed.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Cluster, FixedCluster, Node, Origin, binary_path  # noqa: E402


def _require_binary():
    path = binary_path()
    if not os.access(path, os.X_OK):
        pytest.fail("springcache-uv binary not found or not executable at %s (set SPRINGCACHE_BIN)" % path,
                    pytrace=False)


@pytest.fixture(scope="module")
def node():
    """A node with default settings and the demo origin, shared by one test module.

    Tests using it pick keys of their own so they do not disturb each other.
    """
    _require_binary()
    n = Node()
    try:
        yield n
    finally:
        n.stop()
        n.cleanup()


@pytest.fixture
def start_node():
    """Factory: start_node(*flags) starts a node with extra flags; all are stopped at teardown."""
    _require_binary()
    nodes = []

    def start(*flags):
        n = Node(*flags)
        nodes.append(n)
        return n

    try:
        yield start
    finally:
        for n in nodes:
            n.stop()
            n.cleanup()


@pytest.fixture
def origin():
    """A real HTTP origin server (see harness.Origin); its URL template is origin.url."""
    o = Origin()
    try:
        yield o
    finally:
        o.stop()


@pytest.fixture
def start_cluster():
    """Factory: start_cluster(names, *flags, **kw) starts a harness.Cluster; every node is stopped at teardown."""
    _require_binary()
    clusters = []

    def start(names, *flags, **kw):
        c = Cluster(names, *flags, **kw)
        clusters.append(c)
        return c

    try:
        yield start
    finally:
        for c in clusters:
            c.cleanup()


@pytest.fixture(scope="session")
def pb():
    """Python gRPC stubs generated at test time from the repo's proto/springcachepb.proto with grpc_tools.protoc.

    Returns a namespace with .pb2 (messages) and .grpc (stubs/servicer); skips nothing: missing grpcio fails.
    """
    import importlib
    import shutil
    import subprocess
    import tempfile
    import types
    repo = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    out = tempfile.mkdtemp(prefix="springcache-pb-")
    try:
        p = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", os.path.join(repo, "proto"),
                            "--python_out=" + out, "--grpc_python_out=" + out,
                            os.path.join(repo, "proto", "springcachepb.proto")], capture_output=True, text=True)
        assert p.returncode == 0, "protoc failed: %s" % p.stderr
        sys.path.insert(0, out)
        ns = types.SimpleNamespace(pb2=importlib.import_module("springcachepb_pb2"),
                                   grpc=importlib.import_module("springcachepb_pb2_grpc"))
        yield ns
    finally:
        if out in sys.path:
            sys.path.remove(out)
        shutil.rmtree(out, ignore_errors=True)


@pytest.fixture
def start_fixed_cluster():
    """Factory: start_fixed_cluster(names, extra_flags, per_node_flags) -> harness.FixedCluster; all stopped at teardown."""
    _require_binary()
    clusters = []

    def start(names=("a", "b", "c"), extra_flags=(), per_node_flags=None):
        c = FixedCluster(names, extra_flags, per_node_flags)
        clusters.append(c)
        return c

    try:
        yield start
    finally:
        for c in clusters:
            c.cleanup()


@pytest.fixture
def etcd():
    """A real etcd (etcd_harness.Etcd) on free ports with its own temp data dir; .stop(), .start(fresh=...),
    .freeze()/.thaw(); killed and its files removed at teardown, also when the test failed."""
    import shutil
    if not shutil.which("etcd") or not shutil.which("etcdctl"):
        pytest.fail("etcd and etcdctl must be installed (Debian: etcd-server, etcd-client)", pytrace=False)
    from etcd_harness import Etcd
    e = Etcd()
    try:
        yield e
    finally:
        e.cleanup()


@pytest.fixture
def start_etcd_cluster(etcd):
    """Factory: start_etcd_cluster(names, *flags) starts an etcd_harness.EtcdCluster on the `etcd` fixture;
    every node is stopped at teardown."""
    _require_binary()
    from etcd_harness import EtcdCluster
    clusters = []

    def start(names, *flags, **kw):
        c = EtcdCluster(etcd, names, *flags, **kw)
        clusters.append(c)
        return c

    try:
        yield start
    finally:
        for c in clusters:
            c.cleanup()

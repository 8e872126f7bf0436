"""Fixtures: the real springcache-uv binary (from $SPRINGCACHE_BIN) on port 0, and a real HTTP origin.

Every process a fixture starts is stopped at teardown, including when the test failed.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Cluster, Node, Origin, binary_path  # noqa: E402


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
    """Factory: start_cluster(names, extra_flags, per_node_flags) -> harness.Cluster; all stopped at teardown."""
    _require_binary()
    clusters = []

    def start(names=("a", "b", "c"), extra_flags=(), per_node_flags=None):
        c = Cluster(names, extra_flags, per_node_flags)
        clusters.append(c)
        return c

    try:
        yield start
    finally:
        for c in clusters:
            c.cleanup()

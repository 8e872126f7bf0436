"""Self-test of scripts/check-layers over small temporary trees, so the check itself can fail.

Run with `python3 -m pytest -q Tests/scripts` (`make test` does, before building).
"""
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "check-layers")


def run(root, *flags):
    return subprocess.run([sys.executable, SCRIPT, "--root", str(root), *flags], capture_output=True, text=True)


def tree(tmp_path, files):
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_a_tree_that_follows_the_table_passes(tmp_path):
    root = tree(tmp_path, {
        "Bytes/Key.swift": "public struct Key {}\n",
        "Cache/Group.swift": "final class Group { let k: Key? = nil }\n",
        "HTTP/API.swift": "final class API { let g: Group? = nil }\n",
        "Node/Node.swift": "final class Node { let a = API(); let g: Group? = nil }\n",
    })
    result = run(root)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_a_cycle_between_two_folders_fails_and_names_both_ways(tmp_path):
    root = tree(tmp_path, {
        "Cache/Group.swift": "final class Group { var stats: StatsReport? }\n",
        "Metrics/StatsReport.swift": "enum StatsReport { static func render(_ g: Group) {} }\n",
    })
    result = run(root)
    assert result.returncode == 1
    assert "Metrics -> Cache is not allowed" in result.stderr
    assert "Metrics/ uses Group" in result.stderr
    assert "cycle among Cache, Metrics: Cache -> Metrics -> Cache" in result.stderr


def test_an_edge_against_the_direction_fails_without_a_cycle(tmp_path):
    root = tree(tmp_path, {
        "Node/NodeConfig.swift": "public struct NodeConfig {}\n",
        "HTTP/API.swift": "final class API { let config = NodeConfig() }\n",
    })
    result = run(root)
    assert result.returncode == 1
    assert "HTTP -> Node is not allowed (HTTP may use: Cache, Metrics, Loop, Bytes); HTTP/ uses NodeConfig" \
        in result.stderr
    assert "cycle" not in result.stderr


def test_functions_constants_and_extension_members_count_as_uses(tmp_path):
    root = tree(tmp_path, {
        "HTTP/Helpers.swift": "func http2Equal(_ a: Int) -> Bool { true }\nlet maxHeaderBytes = 8\n"
                              "extension UnsafeRawBufferPointer {\n    func equalsLiteral(_ s: StaticString) -> Bool "
                              "{ true }\n}\n",
        "Peer/A.swift": "func f() -> Bool { http2Equal(1) }\n",
        "Loop/B.swift": "func g() -> Int { maxHeaderBytes }\n",
        "Cache/C.swift": "func h(_ p: UnsafeRawBufferPointer) -> Bool { p.equalsLiteral(\"x\") }\n",
    })
    result = run(root)
    assert result.returncode == 1
    for line in ("Peer -> HTTP is not allowed", "uses http2Equal", "Loop -> HTTP is not allowed",
                 "uses maxHeaderBytes", "Cache -> HTTP is not allowed", "uses equalsLiteral"):
        assert line in result.stderr


def test_comments_strings_private_names_and_locals_are_not_uses(tmp_path):
    root = tree(tmp_path, {
        "Node/NodeConfig.swift": "public struct NodeConfig {}\nprivate struct Secret {}\nfunc quoted() {}\n",
        "HTTP/API.swift": "// NodeConfig is Node's\n/* NodeConfig /* nested */ Secret */\n"
                          "let s = \"NodeConfig \\(1) Secret\"\nlet t = \"\"\"\n  NodeConfig\n  \"\"\"\n"
                          "private struct Secret {}\nfunc f() { let quoted = 1; _ = quoted }\n",
    })
    result = run(root)
    assert result.returncode == 0, result.stderr


def test_a_folder_missing_from_the_table_fails(tmp_path):
    root = tree(tmp_path, {"Gadgets/Thing.swift": "struct Thing {}\n"})
    result = run(root)
    assert result.returncode == 1
    assert "folder Gadgets/ is not in the layer table" in result.stderr


def test_the_table_prints_every_layer(tmp_path):
    result = run(tmp_path, "--table")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[1].split()[0] == "Bytes" and "nothing" in lines[1]
    assert any(line.startswith("HTTP") and "Cluster" not in line and "Node" not in line for line in lines)
    assert {line.split()[0] for line in lines[1:]} == {
        "Bytes", "Loop", "Metrics", "Cache", "Origin", "Peer", "Cluster", "Etcd", "HTTP", "Node"}


@pytest.mark.parametrize("flag", ["--edges"])
def test_edges_lists_the_names_behind_each_use(tmp_path, flag):
    root = tree(tmp_path, {
        "Bytes/Key.swift": "public struct Key {}\n",
        "Cache/Group.swift": "final class Group { let k: Key? = nil }\n",
    })
    result = run(root, flag)
    assert result.returncode == 0
    assert "Cache -> Bytes (Key)" in result.stdout

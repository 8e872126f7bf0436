"""springcache's README examples, run verbatim with the real curl binary (only HOST:9999 is replaced)."""
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def curl(*args):
    p = subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=10)
    assert p.returncode == 0, "curl %r failed: %s" % (args, p.stderr.decode())
    return p.stdout.decode()


def test_readme_get_tom(node):
    # curl 'http://HOST:9999/api/get?key=Tom'  ->  value=630
    assert curl("http://127.0.0.1:%d/api/get?key=Tom" % node.port) == "value=630\n"


def test_readme_set_then_get(node):
    # curl -X POST http://HOST:9999/api/set -d "key=lpc&value=185&expire=5&hot=false"  ->  done
    assert curl("-X", "POST", "http://127.0.0.1:%d/api/set" % node.port,
                "-d", "key=lpc&value=185&expire=5&hot=false") == "done\n"
    assert curl("http://127.0.0.1:%d/api/get?key=lpc" % node.port) == "value=185\n"


def test_readme_demo_store(node):
    for key, value in (("Tom", "630"), ("Jack", "589"), ("Sam", "567")):
        assert curl("http://127.0.0.1:%d/api/get?key=%s" % (node.port, key)) == "value=%s\n" % value


def test_curl_put_large_body_uses_expect_continue(node, tmp_path):
    # Older curl sends `Expect: 100-continue` for bodies over 1 KiB, newer ones only over 1 MiB; ask for it
    # explicitly so every curl exercises the server's 100 Continue.
    value = bytes(range(256)) * 8  # 2 KiB, every byte value
    f = tmp_path / "value.bin"
    f.write_bytes(value)
    url = "http://127.0.0.1:%d/v1/cache/scores/curl-expect" % node.port
    p = subprocess.run(["curl", "-sS", "-v", "-o", "/dev/null", "-w", "%{http_code}",
                        "--expect100-timeout", "5", "-H", "Expect: 100-continue", "-X", "PUT", "--data-binary", "@%s" % f, url],
                       capture_output=True, timeout=15)
    assert p.stdout.decode() == "204", p.stderr.decode()
    assert b"Expect: 100-continue" in p.stderr
    assert b"HTTP/1.1 100 Continue" in p.stderr, p.stderr.decode()
    got = subprocess.run(["curl", "-sS", url], capture_output=True, timeout=10).stdout
    assert got == value

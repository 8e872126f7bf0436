"""--auth-token-file: mutating routes need `Authorization: Bearer <token>`; reads stay open."""
import pytest

from harness import v1

TOKEN = "it-s3cret-token"


@pytest.fixture
def authed(start_node, tmp_path):
    f = tmp_path / "token"
    f.write_text(TOKEN + "\n")
    return start_node("--auth-token-file", str(f))


GOOD = {"Authorization": "Bearer " + TOKEN}
BAD = [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Basic " + TOKEN},
       {"Authorization": "Bearer " + TOKEN + "x"}, {"Authorization": "Bearer " + TOKEN[:-1]}]


def test_set_needs_token(authed):
    for h in BAD:
        status, _, _, _ = authed.set("auth-k", "v", headers=h)
        assert status == 401, h
    assert authed.get("auth-k")[0] == 404, "an unauthorized set must store nothing"
    assert authed.set("auth-k", "v", headers=GOOD)[:3:2] == (200, b"done\n")
    assert authed.get("auth-k")[2] == b"value=v\n"


def test_delete_needs_token(authed):
    assert authed.set("auth-del", "v", headers=GOOD)[0] == 200
    for h in BAD:
        assert authed.form("/api/delete", {"key": "auth-del"}, headers=h)[0] == 401, h
    assert authed.get("auth-del")[2] == b"value=v\n"
    assert authed.form("/api/delete", {"key": "auth-del"}, headers=GOOD)[0] == 200


def test_v1_put_and_delete_need_token(authed):
    for h in BAD:
        assert authed.request("PUT", v1("auth-v1"), body=b"x", headers=h)[0] == 401, h
    assert authed.request("GET", v1("auth-v1"))[0] == 404
    assert authed.request("PUT", v1("auth-v1"), body=b"x", headers=GOOD)[0] == 204
    for h in BAD:
        assert authed.request("DELETE", v1("auth-v1"), headers=h)[0] == 401, h
    assert authed.request("GET", v1("auth-v1"))[2] == b"x"
    assert authed.request("DELETE", v1("auth-v1"), headers=GOOD)[0] == 204


def test_reads_stay_open(authed):
    assert authed.get("Tom")[2] == b"value=630\n"
    assert authed.request("GET", v1("Tom"))[2] == b"630"
    assert authed.request("HEAD", v1("Tom"))[0] == 200
    for path in ("/api/stats", "/metrics", "/healthz", "/api/peers"):
        assert authed.request("GET", path)[0] == 200, path


def test_401_says_what_is_missing(authed):
    status, headers, body, _ = authed.set("auth-msg", "v")
    assert status == 401
    assert body.strip()
    assert "www-authenticate" in headers and headers["www-authenticate"].lower().startswith("bearer")


def test_missing_token_file_is_a_start_error(tmp_path):
    import subprocess
    from harness import binary_path
    p = subprocess.run([binary_path(), "--api", "127.0.0.1:0", "--auth-token-file", str(tmp_path / "none")],
                       capture_output=True, timeout=5)
    assert p.returncode != 0
    assert b"auth-token-file" in p.stderr

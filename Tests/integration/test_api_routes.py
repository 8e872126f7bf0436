"""Every route of the HTTP API and its error paths, against one node with the demo origin."""
import json
import re
import urllib.parse

import pytest

from harness import find_dicts_with, find_numbers, metric_sum, parse_prometheus, v1


# --- /api/get -----------------------------------------------------------------------------------

@pytest.mark.parametrize("key,value", [("Tom", b"630"), ("Jack", b"589"), ("Sam", b"567")])
def test_get_demo_keys(node, key, value):
    status, headers, body, _ = node.get(key)
    assert status == 200
    assert headers["content-type"] == "application/octet-stream"
    assert body == b"value=" + value + b"\n"


def test_get_missing_key_param_is_400_naming_key(node):
    status, _, body, _ = node.request("GET", "/api/get")
    assert status == 400
    assert b"key" in body


def test_get_unknown_key_is_404(node):
    status, _, body, _ = node.get("nobody-has-this-key")
    assert status == 404
    assert body, "404 should say what is missing"


# --- /api/set -----------------------------------------------------------------------------------

def test_set_then_get(node):
    status, _, body, _ = node.set("set-basic", "185", expire="5")
    assert (status, body) == (200, b"done\n")
    assert node.get("set-basic")[2] == b"value=185\n"


def test_set_overrides_origin_value(node):
    assert node.set("Sam", "1000")[0] == 200
    assert node.get("Sam")[2] == b"value=1000\n"
    assert node.form("/api/delete", {"key": "Sam"})[0] == 200
    assert node.get("Sam")[2] == b"value=567\n"


@pytest.mark.parametrize("expire", ["0", "1", "4320", ""])
def test_set_expire_in_range_is_accepted(node, expire):
    key = "set-exp-ok-%s" % (expire or "empty")
    fields = {"key": key, "value": "v" + expire}
    if expire:
        fields["expire"] = expire
    status, _, body, _ = node.form("/api/set", fields)
    assert (status, body) == (200, b"done\n")
    assert node.get(key)[2] == ("value=v%s\n" % expire).encode()


@pytest.mark.parametrize("expire", ["abc", "-1", "4321", "1.5", "99999999999999999999999"])
def test_set_bad_expire_is_400_and_stores_nothing(node, expire):
    key = "set-exp-bad-%s" % expire
    status, _, body, _ = node.set(key, "x", expire=expire)
    assert status == 400
    text = body.decode()
    assert "expire" in text, text
    assert "0" in text and "4320" in text, "the message should give the range 0 to 4320: %r" % text
    assert node.get(key)[0] == 404, "a rejected set must store nothing"


@pytest.mark.parametrize("hot", ["true", "false", ""])
def test_set_hot_values_accepted_and_readable(node, hot):
    key = "set-hot-%s" % (hot or "empty")
    status, _, body, _ = node.set(key, "h" + hot, hot=hot)
    assert (status, body) == (200, b"done\n")
    assert node.get(key)[2] == ("value=h%s\n" % hot).encode()


@pytest.mark.parametrize("hot", ["yes", "1", "TRUE "])
def test_set_bad_hot_is_400_and_stores_nothing(node, hot):
    key = "set-hot-bad-%s" % hot.strip()
    status, _, body, _ = node.set(key, "x", hot=hot)
    assert status == 400
    assert b"hot" in body
    assert node.get(key)[0] == 404, "a rejected set must store nothing"


def test_set_value_with_form_escapes(node):
    value = "a b&c=d/é+%"
    assert node.set("set-escaped", value)[0] == 200
    assert node.get("set-escaped")[2] == ("value=%s\n" % value).encode()


# --- /api/delete --------------------------------------------------------------------------------

def test_delete_cached_then_not_cached(node):
    assert node.set("del-me", "1")[0] == 200
    status, _, body, _ = node.form("/api/delete", {"key": "del-me"})
    assert (status, body) == (200, b"deleted\n")
    assert node.get("del-me")[0] == 404
    status, _, _, _ = node.form("/api/delete", {"key": "del-me"})
    assert status == 404


def test_delete_loaded_value_reloads_from_origin(node):
    assert node.get("Jack")[2] == b"value=589\n"
    assert node.form("/api/delete", {"key": "Jack"})[0] == 200
    assert node.get("Jack")[2] == b"value=589\n"


# --- /v1/cache/{group}/{key} --------------------------------------------------------------------

def test_v1_get_read_through(node):
    status, headers, body, _ = node.request("GET", v1("Tom"))
    assert status == 200
    assert body == b"630"
    assert headers["content-type"] == "application/octet-stream"
    m = re.fullmatch(r"max-age=(\d+)", headers["cache-control"])
    assert m and 0 <= int(m.group(1)) <= 30, headers["cache-control"]
    assert re.fullmatch(r'"[0-9a-fA-F]+"', headers["etag"]), headers["etag"]


def test_v1_put_get_delete(node):
    status, _, body, _ = node.request("PUT", v1("v1-item") + "?ttl=100", body=b"hello")
    assert status == 204 and body == b""
    status, headers, body, _ = node.request("GET", v1("v1-item"))
    assert (status, body) == (200, b"hello")
    age = int(re.fullmatch(r"max-age=(\d+)", headers["cache-control"]).group(1))
    assert 95 <= age <= 100, headers["cache-control"]
    # The same entry is visible through springcache's route.
    assert node.get("v1-item")[2] == b"value=hello\n"
    assert node.request("DELETE", v1("v1-item"))[0] == 204
    assert node.request("GET", v1("v1-item"))[0] == 404
    assert node.request("DELETE", v1("v1-item"))[0] == 404


def test_v1_put_default_ttl_and_hot(node):
    assert node.request("PUT", v1("v1-hot") + "?ttl=0&hot=true", body=b"H")[0] == 204
    status, headers, body, _ = node.request("GET", v1("v1-hot"))
    assert (status, body) == (200, b"H")
    age = int(re.fullmatch(r"max-age=(\d+)", headers["cache-control"]).group(1))
    assert 25 <= age <= 30, "ttl=0 means the default 30 s: %s" % headers["cache-control"]
    assert node.get("v1-hot")[2] == b"value=H\n"
    assert node.request("PUT", v1("v1-cold") + "?hot=false", body=b"C")[0] == 204
    assert node.request("GET", v1("v1-cold"))[2] == b"C"


@pytest.mark.parametrize("query,name", [("ttl=-1", "ttl"), ("ttl=259201", "ttl"), ("ttl=abc", "ttl"),
                                        ("hot=maybe", "hot")])
def test_v1_put_bad_params_are_400(node, query, name):
    key = "v1-bad-" + re.sub(r"\W", "_", query)
    status, _, body, _ = node.request("PUT", v1(key) + "?" + query, body=b"x")
    assert status == 400
    assert name.encode() in body
    assert node.request("GET", v1(key))[0] == 404, "a rejected PUT must store nothing"


def test_v1_put_max_ttl_accepted(node):
    assert node.request("PUT", v1("v1-maxttl") + "?ttl=259200", body=b"m")[0] == 204
    _, headers, body, _ = node.request("GET", v1("v1-maxttl"))
    assert body == b"m"
    assert int(headers["cache-control"].split("=")[1]) > 259000


def test_v1_binary_value_round_trips(node):
    value = bytes(range(256)) * 4 + b"\x00\r\n\r\n\x00"
    assert node.request("PUT", v1("v1-binary"), body=value)[0] == 204
    status, headers, body, _ = node.request("GET", v1("v1-binary"))
    assert status == 200 and body == value
    assert headers["content-length"] == str(len(value))


def test_v1_empty_value(node):
    assert node.request("PUT", v1("v1-empty"), body=b"")[0] == 204
    status, _, body, _ = node.request("GET", v1("v1-empty"))
    assert (status, body) == (200, b"")


def test_v1_key_is_percent_decoded(node):
    key = "a b/ü?&=%"
    path = "/v1/cache/scores/" + urllib.parse.quote(key, safe="")
    assert node.request("PUT", path, body=b"odd")[0] == 204
    assert node.request("GET", path)[2] == b"odd"
    # The decoded key is the same key springcache's route sees.
    assert node.request("GET", "/api/get?key=" + urllib.parse.quote(key, safe=""))[2] == b"value=odd\n"


def test_v1_etag_and_if_none_match(node):
    assert node.request("PUT", v1("v1-etag"), body=b"one")[0] == 204
    _, headers, _, _ = node.request("GET", v1("v1-etag"))
    etag = headers["etag"]
    status, h304, body, _ = node.request("GET", v1("v1-etag"), headers={"If-None-Match": etag})
    assert status == 304 and body == b""
    assert h304.get("etag") == etag
    # A different value gets a different ETag; the old one no longer matches.
    assert node.request("PUT", v1("v1-etag"), body=b"two")[0] == 204
    status, h2, body, _ = node.request("GET", v1("v1-etag"), headers={"If-None-Match": etag})
    assert (status, body) == (200, b"two")
    assert h2["etag"] != etag


def test_v1_head(node):
    assert node.request("PUT", v1("v1-head"), body=b"12345")[0] == 204
    status, headers, body, _ = node.request("HEAD", v1("v1-head"))
    assert status == 200 and body == b""
    assert headers["content-length"] == "5"
    assert "etag" in headers and "cache-control" in headers
    assert node.request("HEAD", v1("v1-head-missing"))[0] == 404


def test_v1_unknown_group_is_404(node):
    assert node.request("GET", v1("Tom", group="nogroup"))[0] == 404
    assert node.request("PUT", v1("x", group="nogroup"), body=b"x")[0] == 404
    assert node.request("DELETE", v1("x", group="nogroup"))[0] == 404


def test_v1_unknown_origin_key_is_404(node):
    assert node.request("GET", v1("v1-nobody"))[0] == 404


# --- observability ------------------------------------------------------------------------------

def stats(node):
    status, headers, body, _ = node.request("GET", "/api/stats")
    assert status == 200
    assert "json" in headers.get("content-type", ""), headers
    return json.loads(body)


def total(obj, name):
    found = find_numbers(obj, name)
    assert found, "/api/stats has no numeric field %r: %s" % (name, json.dumps(obj)[:2000])
    return sum(v for _, v in found)


def test_stats_json_counts(node):
    before = stats(node)
    for name in ("hits", "misses", "loads"):
        total(before, name)
    caches = find_dicts_with(before, "items", "bytes")
    assert caches, "/api/stats should report items and bytes per cache: %s" % json.dumps(before)[:2000]
    node.get("stats-miss-1")                     # a miss and a load (origin: not found)
    assert node.set("stats-key", "v")[0] == 200
    node.get("stats-key")                        # a hit
    after = stats(node)
    assert total(after, "hits") > total(before, "hits")
    assert total(after, "misses") > total(before, "misses")
    assert total(after, "loads") > total(before, "loads")
    assert sum(c["items"] for c in find_dicts_with(after, "items", "bytes")) >= 1
    assert sum(c["bytes"] for c in find_dicts_with(after, "items", "bytes")) > 0


def metrics(node):
    status, headers, body, _ = node.request("GET", "/metrics")
    assert status == 200
    assert headers.get("content-type", "").startswith("text/plain"), headers
    return parse_prometheus(body.decode())


def test_metrics_prometheus_text(node):
    types, samples = metrics(node)
    assert "springcache_cache_hits_total" in {n for n, _, _ in samples}
    buckets = [(n, ls) for n, ls, _ in samples if n.endswith("_bucket") and "le" in ls]
    assert buckets, "a request latency histogram with _bucket{le=...} lines is expected"
    hist = buckets[0][0][:-len("_bucket")]
    assert types.get(hist) == "histogram", "TYPE %s histogram missing" % hist
    names = {n for n, _, _ in samples}
    assert hist + "_sum" in names and hist + "_count" in names
    assert any(ls["le"] == "+Inf" for n, ls in buckets if n == hist + "_bucket")
    # Buckets are cumulative.
    series = {}
    for n, ls, v in samples:
        if n == hist + "_bucket":
            rest = tuple(sorted((k, x) for k, x in ls.items() if k != "le"))
            series.setdefault(rest, []).append((float(ls["le"]), v))
    for rest, pts in series.items():
        pts.sort()
        counts = [v for _, v in pts]
        assert counts == sorted(counts), "buckets of %s %r are not cumulative" % (hist, rest)


def test_metrics_counters_increase(node):
    assert node.set("metrics-key", "v")[0] == 200
    _, before = metrics(node)
    for _ in range(5):
        assert node.get("metrics-key")[0] == 200
    _, after = metrics(node)
    assert metric_sum(after, "springcache_cache_hits_total") >= metric_sum(before, "springcache_cache_hits_total") + 5
    counts_before = sum(v for n, _, v in before if n.endswith("_count"))
    counts_after = sum(v for n, _, v in after if n.endswith("_count"))
    assert counts_after >= counts_before + 5, "the request latency histogram should count requests"


def test_healthz(node):
    status, _, body, _ = node.request("GET", "/healthz")
    assert (status, body) == (200, b"ok\n")


def test_peers_lists_this_node(start_node):
    n = start_node("--name", "it-peers-node")
    status, headers, body, _ = n.request("GET", "/api/peers")
    assert status == 200
    doc = json.loads(body)
    assert doc, "empty peer list"
    assert "it-peers-node" in json.dumps(doc), "this node's name should be listed: %s" % body[:500]


# --- methods and paths --------------------------------------------------------------------------

@pytest.mark.parametrize("method,path,allowed", [
    ("POST", "/api/get?key=Tom", {"GET"}),
    ("DELETE", "/api/get?key=Tom", {"GET"}),
    ("GET", "/api/set", {"POST"}),
    ("GET", "/api/delete", {"POST"}),
    ("POST", "/v1/cache/scores/Tom", {"GET", "HEAD", "PUT", "DELETE"}),
    ("POST", "/healthz", {"GET"}),
    ("DELETE", "/api/stats", {"GET"}),
    ("PUT", "/metrics", {"GET"}),
])
def test_wrong_method_is_405_with_allow(node, method, path, allowed):
    status, headers, _, _ = node.request(method, path, body=b"" if method in ("POST", "PUT") else None)
    assert status == 405
    assert "allow" in headers, headers
    got = {m.strip() for m in headers["allow"].split(",")}
    assert allowed <= got, "Allow: %s, expected at least %s" % (headers["allow"], allowed)


@pytest.mark.parametrize("path", ["/", "/nope", "/api", "/api/gets?key=Tom", "/v1/cache", "/v1/cache/scores"])
def test_unknown_path_is_404(node, path):
    assert node.request("GET", path)[0] == 404

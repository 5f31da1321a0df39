"""End-to-end behaviour of the HTTP/1.1 proxy over real loopback sockets: the sluice binary,
real clients (httpx, curl, raw sockets) and a real upstream (tests/upstream.py, h11)."""

from __future__ import annotations

import json
import re
import socket
import subprocess

import httpx
import pytest

from support import eventually, free_port, simple_config

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def raw(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send `data` on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            out += chunk
        return out


def echo_headers(resp: httpx.Response) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in resp.json()["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out


@pytest.fixture
def proxy(upstream, start_sluice):
    return start_sluice(simple_config(free_port(), {"up": [upstream.address]}))


def test_get_is_proxied_with_forwarded_headers_and_a_request_id(proxy):
    r = httpx.get(proxy.url + "/echo?x=1", headers={"x-forwarded-for": "10.0.0.9"})
    assert r.status_code == 200
    body = r.json()
    assert body["path"] == "/echo?x=1"
    h = echo_headers(r)
    assert h["x-forwarded-for"] == ["10.0.0.9, 127.0.0.1"]
    assert h["x-forwarded-proto"] == ["http"]
    assert h["x-forwarded-host"] == [f"127.0.0.1:{proxy.port}"]
    assert UUID.match(h["x-request-id"][0])


def test_a_valid_client_request_id_is_kept_and_an_invalid_one_replaced(proxy):
    h = echo_headers(httpx.get(proxy.url + "/echo", headers={"x-request-id": "abc-123"}))
    assert h["x-request-id"] == ["abc-123"]
    h = echo_headers(httpx.get(proxy.url + "/echo", headers={"x-request-id": "bad id!"}))
    assert UUID.match(h["x-request-id"][0])


def test_hop_by_hop_headers_never_cross_either_way(proxy):
    r = raw(proxy.port, b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close, x-secret\r\n"
            b"X-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nX-Kept: 1\r\n\r\n")
    head, _, body = r.partition(b"\r\n\r\n")
    names = {k.lower() for k, _ in json.loads(body)["headers"]}
    assert "x-kept" in names
    assert not names & {"x-secret", "keep-alive", "te", "connection"}
    r = httpx.get(proxy.url + "/hop")
    assert r.headers["x-kept"] == "1"
    assert "x-upstream-secret" not in r.headers and "keep-alive" not in r.headers


def test_keep_alive_connections_to_the_upstream_are_reused(proxy, upstream):
    with httpx.Client() as c:
        for _ in range(50):
            assert c.get(proxy.url + "/echo").status_code == 200
    # fresh client connections, same pooled upstream connection
    for _ in range(20):
        assert httpx.get(proxy.url + "/echo").status_code == 200
    assert upstream.stats()["connections"] == 1


def test_request_bodies_stream_with_content_length_and_chunked(proxy):
    data = bytes(range(256)) * 4096
    r = httpx.post(proxy.url + "/echo", content=data)
    import hashlib
    assert r.json()["body_bytes"] == len(data)
    assert r.json()["body_sha256"] == hashlib.sha256(data).hexdigest()

    def gen():
        for i in range(10):
            yield data[i * 1000:(i + 1) * 1000]
    r = httpx.post(proxy.url + "/echo", content=gen())
    assert r.json()["body_bytes"] == 10000
    assert r.json()["body_sha256"] == hashlib.sha256(data[:10000]).hexdigest()


def test_chunked_response_with_trailers_is_rechunked(proxy):
    out = raw(proxy.port, b"GET /chunked/100000/7 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body.endswith(b"0\r\nx-checksum: abc\r\n\r\n")
    r = httpx.get(proxy.url + "/chunked/100000/7")
    assert len(r.content) == 100000


def test_close_delimited_response_reaches_http11_client_chunked_and_http10_by_close(proxy):
    r = httpx.get(proxy.url + "/close/5000")
    assert r.content == b"y" * 5000
    out = raw(proxy.port, b"GET /close/5000 HTTP/1.0\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert body == b"y" * 5000


def test_pipelined_requests_are_answered_in_order(proxy):
    out = raw(proxy.port, b"GET /echo?n=1 HTTP/1.1\r\nHost: a\r\n\r\n"
              b"GET /status/404 HTTP/1.1\r\nHost: a\r\n\r\n"
              b"GET /echo?n=3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert out.count(b"HTTP/1.1 200") == 2 and out.count(b"HTTP/1.1 404") == 1
    assert out.index(b"/echo?n=1") < out.index(b"HTTP/1.1 404") < out.index(b"/echo?n=3")


def test_expect_100_continue_with_curl(proxy, tmp_path):
    f = tmp_path / "big"
    f.write_bytes(b"z" * 2_000_000)
    out = subprocess.run(["curl", "-s", "-H", "Expect: 100-continue", "--data-binary",
                          f"@{f}", proxy.url + "/echo"], capture_output=True, timeout=30)
    assert json.loads(out.stdout)["body_bytes"] == 2_000_000


def test_head_204_304_carry_no_body(proxy):
    out = raw(proxy.port, b"HEAD /bytes/1000 HTTP/1.1\r\nHost: a\r\n\r\n"
              b"GET /status/204 HTTP/1.1\r\nHost: a\r\n\r\n"
              b"GET /status/304 HTTP/1.1\r\nHost: a\r\n\r\n"
              b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    parts = out.split(b"HTTP/1.1 ")
    assert [p[:3] for p in parts[1:]] == [b"200", b"204", b"304", b"200"]
    assert b"content-length: 1000\r\n\r\n" in parts[1].lower()
    assert parts[1].endswith(b"\r\n\r\n") and parts[2].endswith(b"\r\n\r\n")


@pytest.mark.parametrize("request_bytes,status", [
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"GET /echo HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
    (b"GET /echo HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    (b"GET /echo HTTP/1.1\nHost: a\n\n", 400),
    (b"GET /ec\x00ho HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET /echo HTTP/1.1\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X-A: b\r\n" * 200 + b"\r\n", 431),
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
])
def test_malformed_request_gets_its_status_and_a_closed_connection_and_smuggles_nothing(
        proxy, upstream, request_bytes, status):
    smuggled = b"GET /echo?smuggled=1 HTTP/1.1\r\nHost: a\r\n\r\n"
    before = upstream.stats()["requests"]
    out = raw(proxy.port, request_bytes + smuggled)
    assert out.startswith(b"HTTP/1.1 %d" % status)
    assert b"connection: close" in out.lower()
    assert out.count(b"HTTP/1.1") == 1                      # nothing after the error
    assert upstream.stats()["requests"] == before + 1       # only our /stats call


def test_websocket_upgrade_is_tunnelled(proxy):
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        assert head.startswith(b"HTTP/1.1 101")
        assert b"upgrade: websocket" in head.lower()
        s.sendall(b"hello through the tunnel")
        got = b""
        while len(got) < 24:
            got += s.recv(4096)
        assert got == b"hello through the tunnel"


def test_direct_response_route(upstream, start_sluice):
    routes = [{"name": "health", "match": {"path": "/healthz"},
               "direct_response": {"status": 200, "body": "ok\n",
                                   "headers": {"content-type": "text/plain"}}},
              {"name": "all", "match": {"path_prefix": "/"}, "to": [{"cluster": "up"}]}]
    s = start_sluice(simple_config(free_port(), {"up": [upstream.address]}, routes))
    out = subprocess.run(["curl", "-si", s.url + "/healthz"], capture_output=True, timeout=10)
    assert out.stdout.startswith(b"HTTP/1.1 200 OK")
    assert out.stdout.endswith(b"\r\n\r\nok\n")
    assert httpx.head(s.url + "/healthz").content == b""


def test_routing_by_host_method_header_and_rewrite(upstream, upstream2, start_sluice):
    routes = [
        {"name": "canary", "match": {"path_prefix": "/api/", "headers": {"x-canary": "1"}},
         "to": [{"cluster": "b"}]},
        {"name": "api", "match": {"host": "*.example.com", "path_prefix": "/api/",
                                  "methods": ["GET"]},
         "rewrite": {"path_prefix": "/", "set_headers": {"x-gateway": "sluice"},
                     "remove_headers": ["x-internal"]},
         "to": [{"cluster": "a"}]},
        {"name": "regex", "match": {"path_regex": "/v[0-9]+/echo"}, "to": [{"cluster": "b"}]},
    ]
    s = start_sluice(simple_config(free_port(), {"a": [upstream.address],
                                                 "b": [upstream2.address]}, routes))
    r = httpx.get(s.url + "/api/echo", headers={"host": "x.Example.com:99", "x-internal": "1",
                                                "x-gateway": "client"})
    assert r.json()["port"] == upstream.port
    assert r.json()["path"] == "/echo"
    h = echo_headers(r)
    assert h["x-gateway"] == ["sluice"] and "x-internal" not in h
    assert httpx.post(s.url + "/api/echo", headers={"host": "x.example.com"}).status_code == 404
    assert httpx.get(s.url + "/api/echo", headers={"host": "example.com"}).status_code == 404
    r = httpx.get(s.url + "/api/echo", headers={"x-canary": "1"})
    assert r.json()["port"] == upstream2.port and r.json()["path"] == "/api/echo"
    assert httpx.get(s.url + "/v2/echo").json()["port"] == upstream2.port
    assert httpx.get(s.url + "/v2/echo/x").status_code == 404


def test_weighted_traffic_split_follows_weights(upstream, upstream2, start_sluice):
    routes = [{"name": "split", "match": {"path_prefix": "/"},
               "to": [{"cluster": "a", "weight": 3}, {"cluster": "b", "weight": 1}]}]
    s = start_sluice(simple_config(free_port(), {"a": [upstream.address],
                                                 "b": [upstream2.address]}, routes))
    ports = []
    with httpx.Client() as c:
        for _ in range(400):
            ports.append(c.get(s.url + "/echo").json()["port"])
    assert ports.count(upstream.port) == 300


def test_endpoint_weights_within_a_cluster(upstream, upstream2, start_sluice):
    cfg = simple_config(free_port(), {"up": []})
    cfg["clusters"][0]["endpoints"] = [{"address": upstream.address, "weight": 3},
                                       {"address": upstream2.address, "weight": 1}]
    s = start_sluice(cfg)
    with httpx.Client() as c:
        ports = [c.get(s.url + "/echo").json()["port"] for _ in range(200)]
    assert ports.count(upstream.port) == 150


def test_access_log_is_json_lines(proxy):
    httpx.get(proxy.url + "/echo", headers={"x-request-id": "log-1"})
    [rec] = eventually(lambda: [r for r in proxy.access_log() if r["request_id"] == "log-1"])
    assert rec["method"] == "GET" and rec["path"] == "/echo" and rec["status"] == 200
    assert rec["route"] == "all" and rec["upstream"].startswith("127.0.0.1:")
    assert rec["bytes_out"] > 0 and rec["duration_ms"] >= 0 and rec["time"].endswith("Z")
    assert "bytes_in" in rec

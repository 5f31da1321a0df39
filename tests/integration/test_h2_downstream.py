"""HTTP/2 clients through sluice to an HTTP/1.1 upstream (engine/_fast/h2server.pyx): h2c with
prior knowledge beside HTTP/1.1 on one plaintext port, real clients (curl, nghttp, h2load,
httpx) and a hostile one (tests/h2peer.py, the `h2` package with validation off) for every
message rule of RFC 9113 section 8, per-stream backpressure and the translation to HTTP/1.1."""
import json
import signal
import subprocess

import h2.errors
import h2.events
import httpx
import pytest

from h2peer import H2Peer
from support import eventually, free_port, metric, simple_config

PROTOCOL_ERROR = h2.errors.ErrorCodes.PROTOCOL_ERROR


def h2_config(upstream, **listener):
    c = simple_config(free_port(), {"up": [upstream.address]})
    c["listeners"][0]["protocols"] = ["http2", "http1"]
    c["listeners"][0].update(listener)
    return c


@pytest.fixture
def proxy(start_sluice, upstream):
    return start_sluice(h2_config(upstream))


def curl(*args):
    out = subprocess.run(["curl", "-sS", "--max-time", "20", *args], capture_output=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_curl_prior_knowledge_reaches_an_http11_upstream(proxy, tmp_path):
    body = json.loads(curl("--http2-prior-knowledge", f"{proxy.url}/echo/a?b=1"))
    assert body["method"] == "GET" and body["path"] == "/echo/a?b=1"
    headers = dict(body["headers"])
    assert headers["host"] == f"127.0.0.1:{proxy.port}"          # :authority became Host
    assert headers["x-forwarded-proto"] == "http"
    assert not any(k.startswith(":") for k in headers)
    (tmp_path / "body").write_bytes(b"x" * 300000)
    posted = json.loads(curl("--http2-prior-knowledge", "--data-binary", f"@{tmp_path / 'body'}",
                             f"{proxy.url}/echo"))
    assert posted["method"] == "POST" and posted["body_bytes"] == 300000
    assert dict(posted["headers"])["content-length"] == "300000"


def test_http11_is_still_served_on_the_same_port(proxy):
    r = httpx.get(f"{proxy.url}/echo/h1")
    assert r.status_code == 200 and r.http_version == "HTTP/1.1"


def test_a_large_response_arrives_whole(proxy):
    out = curl("--http2-prior-knowledge", f"{proxy.url}/bytes/5000000")
    assert len(out) == 5000000


def test_a_chunked_upstream_response_and_its_trailers_reach_the_client(proxy):
    p = H2Peer(proxy.port)
    sid = p.request("/chunked/100000/7", headers=[("te", "trailers")])
    status, headers, body, trailers = p.response(sid)
    assert status == 200 and len(body) == 100000
    assert "transfer-encoding" not in headers and "connection" not in headers
    assert trailers == {"x-checksum": "abc"}
    p.close()


def test_many_concurrent_streams_on_one_connection(proxy):
    with httpx.Client(http1=False, http2=True, base_url=proxy.url) as c:
        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            rs = list(pool.map(lambda i: c.get(f"/echo/{i}"), range(64)))
    assert all(r.status_code == 200 and r.http_version == "HTTP/2" for r in rs)
    assert sorted(r.json()["path"] for r in rs) == sorted(f"/echo/{i}" for i in range(64))


def test_h2load_multiplexed_requests_all_succeed(proxy):
    out = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "10", f"{proxy.url}/echo"],
                         capture_output=True, text=True, timeout=60).stdout
    assert "2000 succeeded, 0 failed, 0 errored" in out, out


def test_nghttp_sees_a_clean_exchange(proxy):
    out = subprocess.run(["nghttp", "-nv", f"{proxy.url}/status/204"], capture_output=True,
                         text=True, timeout=20).stdout
    assert ":status: 204" in out
    assert "RST_STREAM" not in out and "error_code=NO_ERROR" in out   # only its own GOAWAY


def test_cookie_crumbs_are_joined_for_the_http11_upstream(proxy):
    p = H2Peer(proxy.port)
    sid = p.request("/echo", headers=[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")])
    status, _, body, _ = p.response(sid)
    assert status == 200
    cookies = [v for k, v in json.loads(body)["headers"] if k == "cookie"]
    assert cookies == ["a=1; b=2; c=3"]
    p.close()


MALFORMED = {
    "uppercase name": [("X-Upper", "1")],
    "connection header": [("connection", "keep-alive")],
    "transfer-encoding": [("transfer-encoding", "chunked")],
    "upgrade": [("upgrade", "websocket")],
    "keep-alive": [("keep-alive", "5")],
    "te other than trailers": [("te", "gzip")],
    "LF in a value": [("x-a", "1\nx-b: 2")],
    "NUL in a value": [("x-a", "1\x002")],
    "content-length not a number": [("content-length", "1,1")],
    "host differs from :authority": [("host", "evil.test")],
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_request_is_a_stream_error_and_never_reaches_the_upstream(
        case, proxy, upstream):
    before = upstream.stats()["requests"]       # (this request for /stats counts too)
    p = H2Peer(proxy.port)
    sid = p.request("/echo/bad", headers=MALFORMED[case])
    status, headers, _, _ = p.response(sid)
    assert status == -1 and headers["reset"] == PROTOCOL_ERROR
    # the connection lives on: a stream error is not a connection error
    ok = p.request("/echo/good")
    assert p.response(ok)[0] == 200
    p.close()
    assert upstream.stats()["requests"] == before + 2        # /echo/good and this /stats


PSEUDO = {
    "no :path": [(":method", "GET"), (":scheme", "http"), (":authority", "a")],
    "no :method": [(":scheme", "http"), (":authority", "a"), (":path", "/")],
    "no :scheme": [(":method", "GET"), (":authority", "a"), (":path", "/")],
    "empty :path": [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "")],
    "absolute :path": [(":method", "GET"), (":scheme", "http"), (":authority", "a"),
                       (":path", "http://b/x")],
    ":status in a request": [(":method", "GET"), (":scheme", "http"), (":authority", "a"),
                             (":path", "/"), (":status", "200")],
    "pseudo after regular": [(":method", "GET"), (":scheme", "http"), ("x-a", "1"),
                             (":authority", "a"), (":path", "/")],
    "duplicate :method": [(":method", "GET"), (":method", "POST"), (":scheme", "http"),
                          (":authority", "a"), (":path", "/")],
    "unknown pseudo": [(":method", "GET"), (":scheme", "http"), (":authority", "a"),
                       (":path", "/"), (":foo", "1")],
    ":protocol without the setting": [(":method", "GET"), (":scheme", "http"),
                                      (":authority", "a"), (":path", "/"), (":protocol", "ws")],
}


@pytest.mark.parametrize("case", sorted(PSEUDO))
def test_bad_pseudo_headers_are_a_stream_error(case, proxy):
    p = H2Peer(proxy.port)
    sid = p.request(raw=PSEUDO[case])
    status, headers, _, _ = p.response(sid)
    assert status == -1 and headers["reset"] == PROTOCOL_ERROR
    assert p.response(p.request("/echo"))[0] == 200
    p.close()


def test_content_length_smuggling_is_cut_before_the_upstream(proxy, upstream):
    """H2.CL: a body longer than its content-length, carrying a second HTTP/1.1 request after
    the declared length. The stream is reset and the upstream never sees the smuggled request."""
    smuggled = b"GET /echo/smuggled HTTP/1.1\r\nhost: a\r\n\r\n"
    p = H2Peer(proxy.port)
    sid = p.request("/echo/front", method="POST", headers=[("content-length", "4")],
                    body=b"abcd" + smuggled)
    status, headers, _, _ = p.response(sid)
    assert status == -1 and headers["reset"] == PROTOCOL_ERROR
    p.close()
    log = proxy.access_log()
    assert not any("smuggled" in r["path"] for r in log)
    stats = upstream.stats()
    assert stats["requests"] <= 2        # at most the cut /echo/front, and /stats


def test_a_body_shorter_than_its_content_length_is_a_stream_error(proxy):
    p = H2Peer(proxy.port)
    sid = p.request("/echo", method="POST", headers=[("content-length", "10")], body=b"short")
    status, headers, _, _ = p.response(sid)
    assert status == -1 and headers["reset"] == PROTOCOL_ERROR
    p.close()


def test_a_slow_stream_does_not_stall_the_others(proxy):
    """Per-stream backpressure: stream A's window stays shut (the client never credits it),
    stream B on the same connection still completes."""
    p = H2Peer(proxy.port, connection_window=1 << 30)
    p.auto_ack = False
    a = p.request("/bytes/20000000")
    b = p.request("/bytes/3000000")
    got = 0
    while True:
        for e in p.read():
            if isinstance(e, h2.events.DataReceived) and e.stream_id == b:
                got += len(e.data)
                p.conn.acknowledge_received_data(e.flow_controlled_length, b)
            elif isinstance(e, h2.events.DataReceived):
                # credit the connection only, never stream A
                p.conn.increment_flow_control_window(e.flow_controlled_length)
        p.flush()
        if any(isinstance(e, h2.events.StreamEnded) and e.stream_id == b for e in p.events):
            break
        assert not p.closed
    assert got == 3000000
    assert not any(isinstance(e, h2.events.StreamEnded) and e.stream_id == a for e in p.events)
    p.close()


def test_a_local_reply_to_grpc_is_trailers_only(start_sluice, upstream):
    c = h2_config(upstream)
    c["routes"][0]["match"] = {"path_prefix": "/pkg."}
    s = start_sluice(c)
    p = H2Peer(s.port)
    sid = p.request("/other.Svc/Get", method="POST", headers=[
        ("content-type", "application/grpc"), ("te", "trailers")], body=b"\0\0\0\0\0")
    status, headers, body, trailers = p.response(sid)
    assert status == 200 and body == b""
    assert headers["content-type"] == "application/grpc"
    assert headers["grpc-status"] == "12"                     # UNIMPLEMENTED: no route
    assert headers["grpc-message"].startswith("no route")
    p.close()


def test_a_route_direct_response_over_http2(start_sluice, upstream):
    c = h2_config(upstream)
    c["routes"].insert(0, {"name": "hz", "match": {"path": "/healthz"},
                           "direct_response": {"status": 200, "body": "ok\n"}})
    c["listeners"][0]["routes"].insert(0, "hz")
    s = start_sluice(c)
    p = H2Peer(s.port)
    status, headers, body, _ = p.response(p.request("/healthz"))
    assert status == 200 and body == b"ok\n" and headers["content-length"] == "3"
    status, headers, body, _ = p.response(p.request("/healthz", method="HEAD"))
    assert status == 200 and body == b""
    p.close()


def test_an_http2_only_listener_refuses_http11(start_sluice, upstream):
    s = start_sluice(h2_config(upstream, protocols=["http2"]))
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{s.url}/echo")
    assert json.loads(curl("--http2-prior-knowledge", f"{s.url}/echo"))["method"] == "GET"


def test_an_http11_only_listener_does_not_speak_h2c(start_sluice, upstream):
    c = simple_config(free_port(), {"up": [upstream.address]})
    s = start_sluice(c)
    out = subprocess.run(["curl", "-sS", "--max-time", "5", "--http2-prior-knowledge",
                          f"{s.url}/echo"], capture_output=True)
    assert out.returncode != 0


def test_rapid_reset_gets_enhance_your_calm_and_others_are_served(proxy):
    """CVE-2023-44487: open and reset streams as fast as possible."""
    p = H2Peer(proxy.port)
    for _ in range(600):
        sid = p.request("/slow/2000")
        p.conn.reset_stream(sid)
        p.flush()
        if p.goaway() or p.closed:
            break
    p.until(lambda evs: p.goaway() is not None)
    assert p.goaway().error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    p.close()
    assert json.loads(curl("--http2-prior-knowledge", f"{proxy.url}/echo"))["method"] == "GET"


def test_drain_lets_open_streams_finish_after_goaway(proxy, upstream):
    """SIGTERM: the two-step GOAWAY; a stream already open gets its whole response."""
    slow = subprocess.Popen(["curl", "-sS", "--max-time", "20", "--http2-prior-knowledge",
                             f"{proxy.url}/slow/1500"], stdout=subprocess.PIPE)
    eventually(lambda: upstream.stats()["slow_started"] >= 1)   # the stream is in flight
    proxy.proc.send_signal(signal.SIGTERM)
    out, _ = slow.communicate(timeout=30)
    assert slow.returncode == 0 and out == b"slow"
    assert proxy.proc.wait(timeout=30) == 0


def test_the_access_log_records_http2_requests(proxy):
    curl("--http2-prior-knowledge", f"{proxy.url}/echo/logged")
    rec = eventually(lambda: [r for r in proxy.access_log() if r["path"] == "/echo/logged"])[0]
    assert rec["status"] == 200 and rec["method"] == "GET"
    assert rec["protocol"] == "HTTP/2.0"


def test_http2_metrics_count_streams_resets_and_connections(proxy):
    p = H2Peer(proxy.port)
    assert p.response(p.request("/echo"))[0] == 200
    p.response(p.request("/echo", headers=[("connection", "x")]))      # reset PROTOCOL_ERROR
    eventually(lambda: metric(proxy, "sluice_http2_streams_total", side="downstream") == 2)
    assert metric(proxy, "sluice_http2_active_connections", side="downstream") == 1
    assert metric(proxy, "sluice_http2_resets_total", side="downstream", direction="sent",
                  code="PROTOCOL_ERROR") == 1
    p.close()
    eventually(lambda: metric(proxy, "sluice_http2_active_connections", side="downstream") == 0)
    assert metric(proxy, "sluice_http2_active_streams", side="downstream") == 0


def test_drain_does_not_wait_for_a_client_that_never_answers_the_goaway_ping(proxy):
    """An idle HTTP/2 connection whose client reads nothing (so never ACKs the shutdown PING):
    the final GOAWAY goes out after a short wait and sluice exits well within its drain
    timeout."""
    import socket
    import time
    sock = socket.create_connection(("127.0.0.1", proxy.port))
    sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    time.sleep(0.3)
    t0 = time.monotonic()
    proxy.proc.send_signal(signal.SIGTERM)
    assert proxy.proc.wait(timeout=20) == 0
    assert time.monotonic() - t0 < 10
    sock.close()


@pytest.fixture
def nginx_upstream(tmp_path):
    """nginx as the HTTP/1.1 upstream: a static file and a location that says what it got."""
    import shutil
    import time
    if shutil.which("nginx") is None:
        pytest.skip("needs nginx")
    port = free_port()
    root = tmp_path / "www"
    root.mkdir()
    (root / "big.bin").write_bytes(bytes(range(256)) * 8192)           # 2 MiB
    conf = tmp_path / "nginx.conf"
    import os
    user = "user root;" if os.geteuid() == 0 else ""     # (its workers must read tmp_path)
    conf.write_text(f"""
{user} worker_processes 1; daemon off; pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;
events {{}}
http {{
  access_log off; client_body_temp_path {tmp_path}; proxy_temp_path {tmp_path};
  fastcgi_temp_path {tmp_path}; uwsgi_temp_path {tmp_path}; scgi_temp_path {tmp_path};
  server {{
    listen 127.0.0.1:{port};
    location / {{ root {root}; }}
    location /said {{ return 200 "$request_method $http_host $http_cookie $http_x_forwarded_proto\\n"; }}
  }}
}}""")
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp_path)],
                            stderr=subprocess.DEVNULL)
    from support import wait_port
    wait_port(port, proc=proc)

    class U:
        address = f"127.0.0.1:{port}"
    yield U
    proc.terminate()
    proc.wait(10)


def test_http2_clients_through_to_nginx(start_sluice, nginx_upstream, tmp_path):
    import hashlib
    s = start_sluice(h2_config(nginx_upstream))
    body = curl("--http2-prior-knowledge", f"{s.url}/big.bin")
    want = bytes(range(256)) * 8192
    assert len(body) == len(want), len(body)
    assert body == want, next(i for i in range(len(want)) if body[i] != want[i])
    p = H2Peer(s.port)
    status, _, said, _ = p.response(p.request("/said", authority="shop.test",
                                              headers=[("cookie", "a=1"), ("cookie", "b=2")]))
    assert status == 200 and said == b"GET shop.test a=1; b=2 http\n"
    status, headers, body, _ = p.response(p.request("/big.bin", method="HEAD"))
    assert status == 200 and body == b"" and headers["content-length"] == str(256 * 8192)
    assert p.response(p.request("/missing"))[0] == 404
    p.close()


def test_paused_uploads_do_not_starve_the_connection_window(start_sluice, upstream):
    """20 uploads wait for an upstream connection (the cluster allows one, and its
    endpoint never reads): each stream's window shuts at 65535 bytes, 1.3 MB in all, over the
    1 MiB connection window. A 21st upload on the same connection still completes, because the
    connection window is credited as bytes arrive and only the stream's waits."""
    from hostile import HostileUpstream, read_head
    import time

    def never_read(conn, index):
        read_head(conn)
        time.sleep(20)

    stall = HostileUpstream(never_read)
    try:
        c = h2_config(upstream)
        c["clusters"].append({"name": "stall", "endpoints": [{"address": stall.address}],
                              "pool": {"max_connections": 1}})
        c["routes"].insert(0, {"name": "stall", "match": {"path_prefix": "/stall"},
                               "to": [{"cluster": "stall"}]})
        c["listeners"][0]["routes"].insert(0, "stall")
        s = start_sluice(c)
        p = H2Peer(s.port)
        chunk = b"u" * 16384
        p.until(lambda evs: p.conn.outbound_flow_control_window > 65535)   # sluice's 1 MiB
        stalled = [p.request(f"/stall/{i}", method="POST", end=False) for i in range(20)]
        for _ in range(8):                  # as much as the windows take, without reading
            for sid in stalled:
                window = min(p.conn.local_flow_control_window(sid), len(chunk))
                if window > 0:
                    p.conn.send_data(sid, chunk[:window])
            p.flush()
        sid = p.request("/sink", method="POST", end=False)
        sent = 0
        while sent < 1 << 20:
            window = min(p.conn.local_flow_control_window(sid), len(chunk), (1 << 20) - sent)
            if window > 0:
                p.conn.send_data(sid, chunk[:window])
                sent += window
                p.flush()
            else:
                p.read()
                assert not p.closed
        p.conn.end_stream(sid)
        p.flush()
        status, _, body, _ = p.response(sid)
        assert status == 200 and json.loads(body)["body_bytes"] == 1 << 20
        p.close()
    finally:
        stall.stop()


def test_an_exception_in_one_streams_handling_resets_only_that_stream(
        start_sluice, upstream, tmp_path):
    """A filter whose reply object breaks when sluice reads it raises outside the filter's own
    guard: over HTTP/2 that stream is reset (INTERNAL_ERROR) and logged as a 500, and the
    other streams of the connection go on."""
    (tmp_path / "odd_filter.py").write_text(
        "from engine import Filter\n"
        "class OddReply:\n"
        "    status = 200\n"
        "    body = b'odd'\n"
        "    def header_pairs(self):\n"
        "        raise RuntimeError('not a real Reply')\n"
        "class Odd(Filter):\n"
        "    def request(self, ctx):\n"
        "        return OddReply()\n")
    c = h2_config(upstream)
    c["filters"] = [{"name": "odd", "python": "odd_filter:Odd"}]
    c["routes"].insert(0, {"name": "odd", "match": {"path": "/odd"}, "filters": ["odd"],
                           "to": [{"cluster": "up"}]})
    c["listeners"][0]["routes"].insert(0, "odd")
    s = start_sluice(c)
    p = H2Peer(s.port)
    slow = p.request("/slow/500")
    status, headers, _, _ = p.response(p.request("/odd"))
    assert status == -1 and headers["reset"] == h2.errors.ErrorCodes.INTERNAL_ERROR
    assert p.response(slow)[0] == 200                  # in flight meanwhile: unharmed
    assert p.response(p.request("/echo/after"))[0] == 200
    p.close()
    rec = eventually(lambda: [r for r in s.access_log() if r["path"] == "/odd"])[0]
    assert rec["status"] == 500

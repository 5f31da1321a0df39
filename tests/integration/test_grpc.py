"""gRPC through sluice (issue 10, item 6): a real grpcio client and a real grpcio server
(tests/grpc_peer.py), the four call kinds, status and trailing metadata carried through, and
sluice's own errors answered as trailers-only gRPC responses with the error table's status."""
import subprocess
import sys
import time

import grpc
import pytest

from grpc_peer import stubs
from h2peer import H2Peer
from hostile import HostileUpstream, read_head
from support import ROOT, eventually, free_port, metric, simple_config


class GrpcUpstream:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "grpc_peer.py"),
                                      str(self.port)], stdout=subprocess.PIPE)
        assert self.proc.stdout.readline().strip() == b"ready"
        self.address = f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def grpc_upstream():
    u = GrpcUpstream()
    yield u
    u.stop()


def grpc_config(address: str, **cluster) -> dict:
    c = simple_config(free_port(), {"up": [address]}, protocol="http2", **cluster)
    c["listeners"][0]["protocols"] = ["http2", "http1"]
    return c


@pytest.fixture
def channel(start_sluice, grpc_upstream):
    s = start_sluice(grpc_config(grpc_upstream.address))
    ch = grpc.insecure_channel(f"127.0.0.1:{s.port}")
    yield ch
    ch.close()


def test_unary_call_with_metadata_and_trailers(channel):
    call = stubs(channel)["Unary"]
    reply, info = call.with_call(b"hello", metadata=(("x-echo", "42"),), timeout=10)
    assert reply == b"hello"
    assert ("x-echo", "42") in info.trailing_metadata()
    assert info.code() == grpc.StatusCode.OK


def test_an_error_status_and_message_pass_through(channel):
    with pytest.raises(grpc.RpcError) as err:
        stubs(channel)["Unary"](b"fail:NOT_FOUND:no such thing", timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == "no such thing"


def test_server_streaming(channel):
    got = list(stubs(channel)["ServerStream"](b"50:10000", timeout=20))
    assert len(got) == 50 and all(len(m) == 10000 for m in got)
    assert got[7] == bytes([7]) * 10000


def test_client_streaming(channel):
    reply = stubs(channel)["ClientStream"](iter([b"x" * 1000] * 300), timeout=20)
    assert reply == b"300:300000"


def test_bidirectional_streaming_interleaves(channel):
    replies = stubs(channel)["Bidi"](iter([b"m%d" % i for i in range(100)]), timeout=20)
    assert list(replies) == [b"m%d" % i for i in range(100)]


def test_large_messages_both_ways(channel):
    big = bytes(range(256)) * 16384                      # 4 MiB, the grpcio default maximum
    assert stubs(channel)["Unary"](big[:4 * 1024 * 1024 - 64], timeout=30) == big[:4 * 1024 * 1024 - 64]


def test_many_concurrent_calls_share_the_connection(channel):
    futures_ = [stubs(channel)["Unary"].future(b"c%d" % i, timeout=20) for i in range(200)]
    assert sorted(f.result() for f in futures_) == sorted(b"c%d" % i for i in range(200))


# --- sluice's own answers: trailers-only, the error table's gRPC status -----------------------

def local_call(s, path="/test.Echo/Unary", headers=()):
    p = H2Peer(s.port)
    sid = p.request(path, method="POST", headers=[("content-type", "application/grpc"),
                                                  ("te", "trailers"), *headers],
                    body=b"\0\0\0\0\0")
    status, hdrs, body, trailers = p.response(sid)
    p.close()
    return status, hdrs, body


def local_config(address: str) -> dict:
    """sluice answering by itself: an HTTP/1.1 cluster is enough (tests/upstream.py)."""
    c = simple_config(free_port(), {"up": [address]})
    c["listeners"][0]["protocols"] = ["http2", "http1"]
    return c


def test_no_route_is_unimplemented(start_sluice, upstream):
    c = local_config(upstream.address)
    c["routes"][0]["match"] = {"path_prefix": "/other."}
    s = start_sluice(c)
    ch = grpc.insecure_channel(f"127.0.0.1:{s.port}")
    with pytest.raises(grpc.RpcError) as err:
        stubs(ch)["Unary"](b"x", timeout=10)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    ch.close()


def test_rate_limited_is_resource_exhausted(start_sluice, upstream):
    c = local_config(upstream.address)
    c["routes"][0]["rate_limit"] = {"rate": 0.01, "burst": 1}
    s = start_sluice(c)
    local_call(s)                                          # takes the only token
    status, headers, body = local_call(s)
    assert status == 200 and body == b"" and headers["grpc-status"] == "8"


def test_upstream_down_is_unavailable(start_sluice):
    s = start_sluice(local_config(f"127.0.0.1:{free_port()}"))
    status, headers, body = local_call(s)
    assert status == 200 and body == b""
    assert headers["content-type"] == "application/grpc"
    assert headers["grpc-status"] == "14"                 # UNAVAILABLE
    ch = grpc.insecure_channel(f"127.0.0.1:{s.port}")
    with pytest.raises(grpc.RpcError) as err:
        stubs(ch)["Unary"](b"x", timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    ch.close()


def test_grpc_timeout_is_the_route_deadline(start_sluice):
    """The client's grpc-timeout (300 ms) is sooner than the route's (10 s), and the upstream
    never answers: sluice answers DEADLINE_EXCEEDED itself, trailers-only."""
    def hang(conn, index):
        read_head(conn)
        time.sleep(15)

    up = HostileUpstream(hang)
    try:
        c = local_config(up.address)
        c["routes"][0]["timeout"] = "10s"
        s = start_sluice(c)
        status, headers, body = local_call(s, headers=[("grpc-timeout", "300m")])
        # (the client here has no deadline of its own: this status can only be sluice's)
        assert status == 200 and headers.get("grpc-status") == "4"     # DEADLINE_EXCEEDED
    finally:
        up.stop()


def test_the_access_log_records_grpc_status(start_sluice, grpc_upstream):
    s = start_sluice(grpc_config(grpc_upstream.address))
    ch = grpc.insecure_channel(f"127.0.0.1:{s.port}")
    stubs(ch)["Unary"](b"ok", timeout=10)
    with pytest.raises(grpc.RpcError):
        stubs(ch)["Unary"](b"fail:PERMISSION_DENIED:no", timeout=10)
    ch.close()
    recs = eventually(lambda: [r for r in s.access_log() if r["path"] == "/test.Echo/Unary"]
                      if len(s.access_log()) >= 2 else [])
    assert [r.get("grpc_status") for r in recs] == [0, 7]


# --- over TLS both ways ------------------------------------------------------------------------

def test_grpc_over_tls_to_a_tls_grpc_server(start_sluice, tmp_path):
    from tls_certs import CA
    ca = CA(tmp_path / "pki")
    front = ca.issue("front", dns=["localhost"])
    back = ca.issue("back", dns=["localhost"])
    port = free_port()
    up = subprocess.Popen([sys.executable, str(ROOT / "tests" / "grpc_peer.py"), str(port),
                           str(back[0]), str(back[1])], stdout=subprocess.PIPE)
    try:
        assert up.stdout.readline().strip() == b"ready"
        c = grpc_config(f"127.0.0.1:{port}", tls={"ca": str(ca.cert_path), "sni": "localhost"})
        c["listeners"][0]["protocols"] = ["http2"]
        c["listeners"][0]["tls"] = {"certificates": [{"cert": str(front[0]), "key": str(front[1])}]}
        s = start_sluice(c)
        creds = grpc.ssl_channel_credentials(root_certificates=ca.cert_path.read_bytes())
        ch = grpc.secure_channel(f"localhost:{s.port}", creds)
        assert stubs(ch)["Unary"](b"over tls", timeout=10) == b"over tls"
        assert list(stubs(ch)["Bidi"](iter([b"a", b"b"]), timeout=10)) == [b"a", b"b"]
        ch.close()
    finally:
        up.kill()
        up.wait()


# --- gRPC-Web: a browser's calls, translated -------------------------------------------------

def web_frames(body: bytes) -> list[tuple[int, bytes]]:
    out, i = [], 0
    while i < len(body):
        flag, n = body[i], int.from_bytes(body[i + 1:i + 5], "big")
        out.append((flag, body[i + 5:i + 5 + n]))
        i += 5 + n
    return out


def web_message(data: bytes) -> bytes:
    return b"\0" + len(data).to_bytes(4, "big") + data


@pytest.mark.parametrize("http2", [False, True])
def test_grpc_web_binary_call(start_sluice, grpc_upstream, http2):
    import httpx
    s = start_sluice(grpc_config(grpc_upstream.address))
    with httpx.Client(http1=not http2, http2=http2) as c:
        r = c.post(f"{s.url}/test.Echo/Unary", content=web_message(b"from a browser"),
                   headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/grpc-web+proto"
    frames = web_frames(r.content)
    assert frames[0] == (0, b"from a browser")
    assert frames[-1][0] == 0x80 and b"grpc-status:0\r\n" in frames[-1][1]


def test_grpc_web_text_call_streams_and_its_error_status(start_sluice, grpc_upstream):
    import base64
    import httpx
    s = start_sluice(grpc_config(grpc_upstream.address))
    # a text body as browsers send it: base64 of each message, concatenated
    body = base64.b64encode(web_message(b"3:10"))
    r = httpx.post(f"{s.url}/test.Echo/ServerStream", content=body,
                   headers={"content-type": "application/grpc-web-text"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/grpc-web-text"
    frames = web_frames(base64.b64decode(r.content))
    assert frames[:3] == [(0, bytes([i]) * 10) for i in range(3)]
    assert frames[3][0] == 0x80 and b"grpc-status:0" in frames[3][1]
    bad = httpx.post(f"{s.url}/test.Echo/Unary",
                     content=base64.b64encode(web_message(b"fail:NOT_FOUND:gone")),
                     headers={"content-type": "application/grpc-web-text"})
    # trailers-only: the status comes in the head, as gRPC-Web clients read it
    assert bad.headers.get("grpc-status") == "5" and bad.headers.get("grpc-message") == "gone"


def test_grpc_web_local_error_is_trailers_only(start_sluice, grpc_upstream):
    import httpx
    c = grpc_config(grpc_upstream.address)
    c["routes"][0]["match"] = {"grpc": {"service": "other.Svc"}}
    s = start_sluice(c)
    r = httpx.post(f"{s.url}/test.Echo/Unary", content=web_message(b"x"),
                   headers={"content-type": "application/grpc-web"})
    assert r.status_code == 200 and r.headers["grpc-status"] == "12" and r.content == b""
    assert r.headers["content-type"] == "application/grpc-web"


def test_match_grpc_routes_by_service_and_method(start_sluice, grpc_upstream):
    c = grpc_config(grpc_upstream.address)
    c["routes"] = [
        {"name": "unary-only", "match": {"grpc": {"service": "test.Echo", "method": "Unary"}},
         "to": [{"cluster": "up"}]},
        {"name": "rest", "match": {"grpc": {"service": "test.Echo"}},
         "direct_response": {"status": 403}},
    ]
    c["listeners"][0]["routes"] = ["unary-only", "rest"]
    s = start_sluice(c)
    ch = grpc.insecure_channel(f"127.0.0.1:{s.port}")
    assert stubs(ch)["Unary"](b"routed", timeout=10) == b"routed"
    with pytest.raises(grpc.RpcError) as err:
        stubs(ch)["ClientStream"](iter([b"x"]), timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED        # 403, gRPC's mapping
    ch.close()


def test_upstream_http2_metrics(start_sluice, grpc_upstream):
    s = start_sluice(grpc_config(grpc_upstream.address))
    ch = grpc.insecure_channel(f"127.0.0.1:{s.port}")
    for i in range(5):
        stubs(ch)["Unary"](b"m", timeout=10)
    ch.close()
    eventually(lambda: metric(s, "sluice_http2_streams_total", side="upstream") == 5)
    assert metric(s, "sluice_http2_active_connections", side="upstream") == 1
    assert metric(s, "sluice_http2_active_streams", side="upstream") == 0
    assert metric(s, "sluice_http2_streams_total", side="downstream") == 5

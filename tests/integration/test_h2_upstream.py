"""HTTP/1.1 clients through the real binary to an HTTP/2 upstream (`protocol: http2`): h2c with
prior knowledge and h2 over TLS by ALPN (tests/h2upstream.py, on the `h2` package, reports what
it saw). Covers the request/response translation, multiplexing and the peer's stream limit,
GOAWAY, REFUSED_STREAM, resets, malformed responses, PING liveness and backpressure both ways
(memory is the worker's peak RSS, so buffering a body would show whatever the timing)."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from support import ROOT, Upstream, eventually, free_port, simple_config
from tls_certs import CA


class H2Upstream:
    """tests/h2upstream.py on a free port; `stats()` asks it over HTTP/2 directly."""

    def __init__(self, *args: str, cert=None, key=None) -> None:
        self.port = free_port()
        self.tls = cert is not None
        extra = list(args) + (["--cert", str(cert), "--key", str(key)] if cert else [])
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "h2upstream.py"),
                                      str(self.port), *extra], stdout=subprocess.PIPE)
        assert self.proc.stdout.readline().strip() == b"ready"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stats(self) -> dict:
        scheme = "https" if self.tls else "http"
        with httpx.Client(http1=self.tls, http2=True, verify=False, timeout=5) as c:
            return c.get(f"{scheme}://127.0.0.1:{self.port}/stats").json()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def h2up():
    started = []

    def start(*args, **kw) -> H2Upstream:
        u = H2Upstream(*args, **kw)
        started.append(u)
        return u

    yield start
    for u in started:
        u.stop()


def h2_config(up: H2Upstream, **cluster) -> dict:
    return simple_config(free_port(), {"up": [up.address]}, protocol="http2", **cluster)


@pytest.fixture
def proxied(h2up, start_sluice):
    """(upstream, sluice) with the default settings."""
    up = h2up()
    return up, start_sluice(h2_config(up))


def peak_rss_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def raw(port: int, request: bytes) -> bytes:
    """Send `request`, read until the proxy closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


# --- translation ------------------------------------------------------------------------------

def test_a_get_reaches_the_upstream_with_pseudo_headers_and_without_host(proxied):
    up, sluice = proxied
    r = httpx.get(f"{sluice.url}/info?x=1", headers={"host": "shop.example"})
    assert r.status_code == 200
    info = r.json()
    assert (info["method"], info["path"], info["authority"], info["scheme"]) == (
        "GET", "/info?x=1", "shop.example", "http")
    names = [n for n, _ in info["headers"]]
    assert "host" not in names
    assert names[:4] == [":method", ":scheme", ":authority", ":path"]
    assert dict(info["headers"])["x-forwarded-host"] == "shop.example"


def test_connection_specific_fields_never_reach_the_upstream_and_te_is_only_trailers(proxied):
    up, sluice = proxied
    r = raw(sluice.port, b"GET /info HTTP/1.1\r\nHost: a\r\nConnection: close, x-secret\r\n"
                         b"X-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n"
                         b"TE: trailers, deflate\r\nUpgrade: websocket\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"
                         b"X-Kept: yes\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 200")
    info = json.loads(r.partition(b"\r\n\r\n")[2].split(b"\r\n")[1] if b"chunked" in r else
                      r.partition(b"\r\n\r\n")[2])
    fields = dict(info["headers"])
    for name in ("connection", "x-secret", "keep-alive", "proxy-connection", "upgrade",
                 "http2-settings", "transfer-encoding", "host"):
        assert name not in fields, name
    assert fields["te"] == "trailers"
    assert fields["x-kept"] == "yes"


def test_an_absolute_form_request_sends_its_authority(proxied):
    up, sluice = proxied
    r = raw(sluice.port, b"GET http://other.example:8080/info HTTP/1.1\r\nHost: ignored\r\n"
                         b"Connection: close\r\n\r\n")
    info = json.loads(r.partition(b"\r\n\r\n")[2])
    assert info["authority"] == "other.example:8080"
    assert "host" not in dict(info["headers"])


def test_a_post_with_content_length_keeps_it_and_its_body(proxied):
    up, sluice = proxied
    body = bytes(range(256)) * 1000
    r = httpx.post(f"{sluice.url}/echo", content=body)
    assert r.status_code == 200 and r.content == body
    r = httpx.post(f"{sluice.url}/info", content=b"abc")
    assert dict(r.json()["headers"])["content-length"] == "3"
    assert r.json()["received"] == 3


def test_a_chunked_post_becomes_data_frames(proxied):
    up, sluice = proxied
    r = httpx.post(f"{sluice.url}/echo", content=iter([b"a" * 70000, b"b" * 5, b"c" * 100000]))
    assert r.status_code == 200 and r.content == b"a" * 70000 + b"b" * 5 + b"c" * 100000
    r = httpx.post(f"{sluice.url}/info", content=iter([b"xyz"]))
    fields = dict(r.json()["headers"])
    assert "transfer-encoding" not in fields and r.json()["received"] == 3


def test_a_response_without_content_length_is_chunked_to_the_client(proxied):
    up, sluice = proxied
    r = raw(sluice.port, b"GET /nolength?n=100000 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    head, _, body = r.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body.endswith(b"0\r\n\r\n")


def test_response_trailers_reach_a_chunked_client(proxied):
    up, sluice = proxied
    r = raw(sluice.port, b"GET /trailers HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n"
                         b"Connection: close\r\n\r\n")
    head, _, body = r.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"9\r\nsome body\r\n0\r\ngrpc-status: 0\r\nx-checksum: abc\r\n\r\n"


def test_request_trailers_become_a_trailing_header_section(proxied):
    up, sluice = proxied
    r = raw(sluice.port, b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                         b"Connection: close\r\n\r\n5\r\nhello\r\n0\r\nx-sum: 42\r\n"
                         b"Connection: bogus\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 200") and r.endswith(b"hello")
    assert up.stats()["last_trailers"] == [["x-sum", "42"]]


def test_head_gets_no_body(proxied):
    up, sluice = proxied
    r = httpx.head(f"{sluice.url}/big?n=1000")
    assert r.status_code == 200 and r.content == b""


# --- multiplexing and the stream budget ---------------------------------------------------------

def test_concurrent_requests_share_one_connection(proxied):
    up, sluice = proxied
    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(lambda i: httpx.get(f"{sluice.url}/slow?s=0.3", timeout=10)
                              .status_code, range(20)))
    assert codes == [200] * 20
    st = up.stats()
    assert st["proxied_connections"] == 1
    assert st["max_concurrent"] > 1


def test_the_upstreams_max_concurrent_streams_is_respected(h2up, start_sluice):
    up = h2up("--max-streams", "2")
    sluice = start_sluice(h2_config(up, pool={"max_connections": 2}))
    with ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(lambda i: httpx.get(f"{sluice.url}/slow?s=0.2", timeout=20)
                              .status_code, range(10)))
    assert codes == [200] * 10
    st = up.stats()
    assert st["max_concurrent"] <= 2
    assert st["proxied_connections"] <= 2
    assert st["refused"] == 0


# --- GOAWAY, REFUSED_STREAM, resets --------------------------------------------------------------

def test_goaway_mid_flight_finishes_streams_below_its_last_id_and_retries_the_rest(proxied):
    up, sluice = proxied
    with ThreadPoolExecutor(3) as pool:
        rs = list(pool.map(lambda i: httpx.get(f"{sluice.url}/goaway?k=3", timeout=10),
                           range(3)))
    assert [r.status_code for r in rs] == [200] * 3
    bodies = sorted(r.content for r in rs)
    assert bodies.count(b"answered before the GOAWAY") == 1
    assert bodies.count(b"hello from h2\n") == 2
    st = up.stats()
    assert st["goaway"] == 1 and st["proxied_connections"] == 2
    assert httpx.get(f"{sluice.url}/").status_code == 200


def test_a_refused_stream_is_retried(proxied):
    up, sluice = proxied
    r = httpx.get(f"{sluice.url}/refuse-once")
    assert r.status_code == 200 and r.content == b"hello from h2\n"
    assert up.stats()["refused"] == 1


def test_an_upstream_reset_mid_response_cuts_the_client_connection(proxied):
    up, sluice = proxied
    r = raw(sluice.port, b"GET /rst?n=5000 HTTP/1.1\r\nHost: a\r\n\r\n")
    head, _, body = r.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"content-length: 1000000" in head.lower()
    assert len(body) == 5000          # cut short, never completed
    assert httpx.get(f"{sluice.url}/").status_code == 200     # the connection lives on
    assert up.stats()["proxied_connections"] == 1


def test_a_client_that_leaves_mid_response_resets_only_its_stream(proxied):
    up, sluice = proxied
    assert httpx.get(f"{sluice.url}/").status_code == 200
    with socket.create_connection(("127.0.0.1", sluice.port)) as s:
        s.sendall(b"GET /big?n=%d HTTP/1.1\r\nHost: a\r\n\r\n" % (64 << 20))
        s.recv(65536)
    eventually(lambda: up.stats()["reset"] >= 1)
    assert httpx.get(f"{sluice.url}/").status_code == 200
    st = up.stats()
    assert st["proxied_connections"] == 1 and st["proxied_open"] == 1


def test_a_route_timeout_resets_only_its_stream(h2up, start_sluice):
    up = h2up()
    routes = [{"name": "all", "match": {"path_prefix": "/"}, "to": [{"cluster": "up"}],
               "timeout": "500ms"}]
    sluice = start_sluice(simple_config(free_port(), {"up": [up.address]}, routes=routes,
                                        protocol="http2"))
    assert httpx.get(f"{sluice.url}/").status_code == 200
    assert httpx.get(f"{sluice.url}/slow?s=5", timeout=10).status_code == 504
    eventually(lambda: up.stats()["reset"] >= 1)
    assert httpx.get(f"{sluice.url}/").status_code == 200
    assert up.stats()["proxied_connections"] == 1


@pytest.mark.parametrize("path", ["/bad-connection", "/bad-status"])
def test_a_malformed_response_head_is_502(proxied, path):
    up, sluice = proxied
    r = httpx.get(f"{sluice.url}{path}")
    assert r.status_code == 502
    assert httpx.get(f"{sluice.url}/").status_code == 200     # a stream error only


def test_a_body_shorter_than_its_content_length_is_never_passed_on_as_complete(proxied):
    up, sluice = proxied
    r = raw(sluice.port, b"GET /cl-mismatch HTTP/1.1\r\nHost: a\r\n\r\n")
    head, _, body = r.partition(b"\r\n\r\n")
    assert b"content-length: 10" in head.lower() and len(body) < 10


def test_an_upstream_closing_the_connection_before_a_response_is_502(proxied):
    up, sluice = proxied
    assert httpx.get(f"{sluice.url}/close-early").status_code == 502
    assert httpx.get(f"{sluice.url}/").status_code == 200


def test_a_connection_error_from_the_upstream_is_502_and_a_new_connection_follows(proxied):
    up, sluice = proxied
    assert httpx.get(f"{sluice.url}/bad-frame").status_code == 502
    eventually(lambda: up.stats()["goaway_codes"] == [1])        # PROTOCOL_ERROR
    assert httpx.get(f"{sluice.url}/").status_code == 200
    assert up.stats()["proxied_connections"] == 2


def test_an_undecodable_header_block_is_a_compression_error(proxied):
    up, sluice = proxied
    assert httpx.get(f"{sluice.url}/bad-hpack").status_code == 502
    eventually(lambda: up.stats()["goaway_codes"] == [9])        # COMPRESSION_ERROR
    assert httpx.get(f"{sluice.url}/").status_code == 200


def test_a_slow_client_does_not_stall_the_other_streams_of_its_connection(proxied):
    up, sluice = proxied
    with socket.create_connection(("127.0.0.1", sluice.port)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"GET /big?n=%d HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % (64 << 20))
        eventually(lambda: up.stats()["window_blocked"] >= 1, timeout=30)
        for _ in range(5):
            r = httpx.get(f"{sluice.url}/big?n=1000000", timeout=10)
            assert r.status_code == 200 and len(r.content) == 1000000
    assert up.stats()["proxied_connections"] == 1


# --- liveness ------------------------------------------------------------------------------------

def test_an_upstream_that_stops_answering_pings_gets_its_connection_closed(h2up, start_sluice):
    up = h2up()
    sluice = start_sluice(h2_config(up, http2={"ping_interval": "1s", "ping_timeout": "1s"}))
    assert httpx.get(f"{sluice.url}/mute").status_code == 200
    eventually(lambda: up.stats()["proxied_open"] == 0, timeout=15)
    assert httpx.get(f"{sluice.url}/").status_code == 200
    assert up.stats()["proxied_connections"] == 2


def test_an_idle_connection_is_closed_after_idle_timeout(h2up, start_sluice):
    up = h2up()
    sluice = start_sluice(h2_config(up, pool={"idle_timeout": "1s"}))
    assert httpx.get(f"{sluice.url}/").status_code == 200
    eventually(lambda: up.stats()["proxied_open"] == 0, timeout=15)


def test_an_answering_idle_connection_is_kept(h2up, start_sluice):
    up = h2up()
    sluice = start_sluice(h2_config(up, http2={"ping_interval": "1s", "ping_timeout": "1s"}))
    assert httpx.get(f"{sluice.url}/").status_code == 200
    eventually(lambda: up.stats()["pings"] >= 2, timeout=15)
    st = up.stats()
    assert st["proxied_open"] == 1 and st["proxied_connections"] == 1


# --- backpressure --------------------------------------------------------------------------------

MiB = 1 << 20
BODY = 128 * MiB
# measured: about 0.1 MiB (download) and 1 MiB (upload) of growth; without the per-stream
# backpressure 50 MiB and 130 MiB
GROWTH_BOUND_KB = 16 * 1024


def test_a_slow_client_does_not_make_the_proxy_buffer_the_response(proxied):
    up, sluice = proxied
    assert httpx.get(f"{sluice.url}/").status_code == 200
    [worker] = sluice.worker_pids()
    before = peak_rss_kb(worker)
    with socket.create_connection(("127.0.0.1", sluice.port)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"GET /big?n=%d HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % BODY)
        # not reading: the upstream must end up blocked on its stream window
        eventually(lambda: up.stats()["window_blocked"] >= 1, timeout=30)
        got = 0
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(65536)
        got = len(head.partition(b"\r\n\r\n")[2])
        buf = bytearray(MiB)
        while n := s.recv_into(buf):
            got += n
    assert got == BODY
    assert peak_rss_kb(worker) - before < GROWTH_BOUND_KB


def test_a_slow_upstream_does_not_make_the_proxy_buffer_the_upload(proxied):
    up, sluice = proxied
    assert httpx.get(f"{sluice.url}/").status_code == 200
    [worker] = sluice.worker_pids()
    before = peak_rss_kb(worker)
    with socket.create_connection(("127.0.0.1", sluice.port)) as s:
        s.sendall(b"POST /upload?stall=2 HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n"
                  b"Connection: close\r\n\r\n" % BODY)
        block = b"u" * MiB
        sender = threading.Thread(target=lambda: [s.sendall(block) for _ in range(BODY // MiB)])
        sender.start()
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        sender.join()
    assert out.startswith(b"HTTP/1.1 200")
    assert b'"received": %d' % BODY in out
    assert peak_rss_kb(worker) - before < GROWTH_BOUND_KB


# --- TLS ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    ca = CA(tmp_path_factory.mktemp("pki"))
    return {"ca": ca.cert_path,
            "server": ca.issue("server", dns=["localhost"], ip=["127.0.0.1"])}


def test_h2_over_tls_is_chosen_by_alpn(h2up, start_sluice, pki):
    cert, key = pki["server"]
    up = h2up(cert=cert, key=key)
    sluice = start_sluice(h2_config(up, tls={"ca": str(pki["ca"])}))
    r = httpx.get(f"{sluice.url}/info")
    assert r.status_code == 200
    assert r.json()["scheme"] == "https"
    assert up.stats()["proxied_connections"] == 1


def test_a_tls_upstream_that_does_not_select_h2_fails_the_connect(start_sluice, pki):
    cert, key = pki["server"]
    up = Upstream(cert, key)         # h11 over TLS: ALPN http/1.1 only
    try:
        sluice = start_sluice(simple_config(free_port(), {"up": [up.address]}, protocol="http2",
                                            tls={"ca": str(pki["ca"])}))
        r = httpx.get(f"{sluice.url}/")
        assert r.status_code == 502
        eventually(lambda: b"did not select h2 by ALPN" in sluice.stderr_path.read_bytes())
    finally:
        up.stop()


# --- retries (issue 11) over HTTP/2 upstreams ----------------------------------------------------

def retry_config(addresses, retry, timeout="10s") -> dict:
    return simple_config(free_port(), {"up": addresses}, protocol="http2", routes=[
        {"name": "all", "match": {"path_prefix": "/"}, "to": [{"cluster": "up"}],
         "retry": retry, "timeout": timeout}])


def test_a_refused_connection_is_retried_on_the_http2_endpoint(h2up, start_sluice):
    up = h2up()
    s = start_sluice(retry_config([f"127.0.0.1:{free_port()}", up.address],
                                  {"attempts": 1, "on": ["connect-failure"]}))
    for _ in range(6):
        r = httpx.get(f"{s.url}/info")
        assert r.status_code == 200
    assert "2" in {dict(r.json()["headers"]).get("x-sluice-attempt")
                   for r in [httpx.get(f"{s.url}/info") for _ in range(2)]}


def test_a_per_try_timeout_resets_only_the_stream_and_the_connection_serves_on(h2up,
                                                                                start_sluice):
    up = h2up()
    s = start_sluice(retry_config([up.address], {"attempts": 1, "on": ["reset"],
                                                 "per_try_timeout": "300ms",
                                                 "backoff": {"base": "1ms", "max": "2ms"}}))
    r = httpx.get(f"{s.url}/slow?s=5", timeout=10)
    assert r.status_code == 504
    assert httpx.get(f"{s.url}/info").status_code == 200
    assert up.stats()["proxied_connections"] == 1    # one connection carried every try
    log = s.access_log()
    assert [rec["attempts"] for rec in log] == [2, 1]


def test_a_connection_that_breaks_before_the_answer_is_retried(h2up, start_sluice):
    up = h2up()
    s = start_sluice(retry_config([up.address], {"attempts": 1, "on": ["reset"],
                                                 "backoff": {"base": "1ms", "max": "2ms"}}))
    r = httpx.get(f"{s.url}/close-early")
    assert r.status_code == 502
    assert s.access_log()[-1]["attempts"] == 2

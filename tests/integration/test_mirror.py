"""Request mirroring (routes[].mirror, engine/_fast/mirror.pyx) through the real binary: a copy of
the requests reaches a shadow upstream with "-shadow" appended to its host, and nothing the
shadow does (answer, refuse, hang, stall, reset) changes what the client gets.

The shadow upstream here is a recorder (h11, an independent HTTP/1.1 implementation) that keeps
what it was sent: method, target, headers, body length and digest, and whether the request
arrived whole."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import threading
import time

import h11
import httpx
import pytest

from support import ROOT, eventually, free_port, metric, simple_config, upstream_connections


class Recorder:
    """A loopback HTTP/1.1 upstream that records each request it is sent. `mode`: "ok" (200,
    body `name`), "hang" (reads the request, never answers), "slow" (answers after `delay`),
    "reset" (reads the head, then resets the connection), "stall" (reads the head, then
    nothing: its receive window fills)."""

    def __init__(self, name: str = "shadow", mode: str = "ok", delay: float = 0.0) -> None:
        self.name = name
        self.mode = mode
        self.delay = delay
        self.requests: list[dict] = []
        self.incomplete = 0            # requests whose body never arrived whole
        self.closed_at: list[float] = []   # when connections holding an unanswered request closed
        self.lock = threading.Lock()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.1)
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def stop(self) -> None:
        self.running = False
        self.sock.close()

    def _accept(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        h = h11.Connection(h11.SERVER)
        req, body, digest = None, 0, hashlib.sha256()
        try:
            while True:
                event = h.next_event()
                if event is h11.NEED_DATA:
                    data = conn.recv(65536)
                    if not data and req is not None:
                        with self.lock:
                            self.incomplete += 1
                            self.closed_at.append(time.monotonic())
                        return
                    h.receive_data(data)
                    continue
                if isinstance(event, h11.Request):
                    req, body, digest = event, 0, hashlib.sha256()
                    if self.mode == "reset":
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                        conn.close()
                        self._record(req, -1, "")
                        return
                    if self.mode == "stall":
                        self._record(req, -1, "")
                        time.sleep(3600)               # (a daemon thread: gone with the test run)
                        return
                elif isinstance(event, h11.Data):
                    body += len(event.data)
                    digest.update(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    self._record(req, body, digest.hexdigest())
                    if self.mode == "hang":
                        if not conn.recv(1):          # until the proxy gives up on us
                            with self.lock:
                                self.closed_at.append(time.monotonic())
                        return
                    if self.mode == "slow":
                        time.sleep(self.delay)
                    out = self.name.encode()
                    conn.sendall(h.send(h11.Response(status_code=200, headers=[
                        ("content-length", str(len(out)))])) + h.send(h11.Data(data=out))
                        + h.send(h11.EndOfMessage()))
                    h.start_next_cycle()
                    req = None
                elif isinstance(event, h11.ConnectionClosed):
                    return
        except (OSError, h11.RemoteProtocolError):
            if req is not None:
                with self.lock:
                    self.incomplete += 1
                    self.closed_at.append(time.monotonic())
        finally:
            conn.close()

    def _record(self, req, body: int, digest: str) -> None:
        with self.lock:
            self.requests.append({
                "method": req.method.decode(), "target": req.target.decode(),
                "headers": {k.decode(): v.decode() for k, v in req.headers},
                "body": body, "sha256": digest})


@pytest.fixture
def recorders():
    made: list[Recorder] = []

    def make(*args, **kw) -> Recorder:
        r = Recorder(*args, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


def mirror_config(primary: str, shadow: str, percent: float = 100, timeout: str | None = None,
                  **listener) -> dict:
    route = {"name": "all", "match": {"path_prefix": "/"}, "to": [{"cluster": "up"}],
             "mirror": {"cluster": "shadow", "percent": percent}}
    if timeout is not None:
        route["timeout"] = timeout
    c = simple_config(free_port(), {"up": [primary], "shadow": [shadow]}, routes=[route])
    c["listeners"][0].update(listener)
    return c


def test_each_request_reaches_the_primary_and_the_shadow_whose_host_says_shadow(
        start_sluice, recorders):
    primary, shadow = recorders("primary"), recorders("shadow")
    s = start_sluice(mirror_config(primary.address, shadow.address))
    body = os.urandom(300_000)
    with httpx.Client(base_url=s.url, timeout=10) as c:
        r = c.post("/upload?x=1", content=body, headers={"host": "api.example.com:8080",
                                                           "x-request-id": "mirror-1"})
        assert (r.status_code, r.text) == (200, "primary")
        r = c.get("/plain", headers={"host": "api.example.com"})
        assert (r.status_code, r.text) == (200, "primary")
    eventually(lambda: shadow.count() == 2)
    want = hashlib.sha256(body).hexdigest()
    copies = {r["target"]: r for r in shadow.requests}      # (two shadows race each other)
    got = copies["/upload?x=1"]
    assert got["method"] == "POST"
    assert got["headers"]["host"] == "api.example.com-shadow:8080"
    assert (got["body"], got["sha256"]) == (len(body), want)
    assert got["headers"]["x-request-id"] == "mirror-1"
    assert got["headers"]["x-forwarded-host"] == "api.example.com:8080"
    assert "expect" not in got["headers"]
    assert copies["/plain"]["headers"]["host"] == "api.example.com-shadow"
    # the primary saw the request as it was sent, unchanged by the copy
    assert primary.requests[0]["headers"]["host"] == "api.example.com:8080"
    assert (primary.requests[0]["body"], primary.requests[0]["sha256"]) == (len(body), want)
    assert primary.requests[1]["headers"]["host"] == "api.example.com"
    assert mirrored(s) == {"sent": 2, "failed": 0}


def mirrored(s, cluster: str = "shadow") -> dict:
    """sluice_mirror_requests_total of the shadow cluster, by result."""
    return {result: metric(s, "sluice_mirror_requests_total", cluster=cluster, result=result)
            for result in ("sent", "failed")}


def test_a_chunked_upload_arrives_whole_at_both(start_sluice, recorders):
    primary, shadow = recorders("primary"), recorders("shadow")
    s = start_sluice(mirror_config(primary.address, shadow.address))
    parts = [os.urandom(50_000) for _ in range(20)]
    with httpx.Client(base_url=s.url, timeout=10) as c:
        r = c.post("/chunks", content=iter(parts))         # no length: chunked
    assert r.text == "primary"
    eventually(lambda: shadow.count() == 1)
    want = hashlib.sha256(b"".join(parts)).hexdigest()
    assert shadow.requests[0]["sha256"] == primary.requests[0]["sha256"] == want


def test_the_client_gets_the_primarys_response_unchanged(start_sluice, upstream, recorders):
    shadow = recorders("shadow")
    s = start_sluice(mirror_config(upstream.address, shadow.address))
    with httpx.Client(base_url=s.url, timeout=10) as c:
        direct = httpx.get(f"http://{upstream.address}/bytes/100000")
        r = c.get("/bytes/100000")
        assert r.status_code == 200 and r.content == direct.content
        r = c.get("/status/503")
        assert r.status_code == 503
    eventually(lambda: shadow.count() == 2)


def test_percent_0_sends_nothing(start_sluice, recorders):
    primary, shadow = recorders("primary"), recorders("shadow")
    s = start_sluice(mirror_config(primary.address, shadow.address, percent=0))
    with httpx.Client(base_url=s.url, timeout=10) as c:
        for _ in range(50):
            assert c.get("/").text == "primary"
    time.sleep(0.5)
    assert shadow.count() == 0
    assert mirrored(s) == {"sent": 0, "failed": 0}


def test_percent_50_mirrors_about_half(start_sluice, recorders):
    primary, shadow = recorders("primary"), recorders("shadow")
    s = start_sluice(mirror_config(primary.address, shadow.address, percent=50))
    with httpx.Client(base_url=s.url, timeout=10) as c:
        for _ in range(400):
            assert c.get("/").text == "primary"
    time.sleep(0.5)
    assert 120 <= shadow.count() <= 280      # binomial(400, 0.5): far beyond 5 sigma either way


@pytest.mark.parametrize("mode", ["down", "hang", "slow", "reset"])
def test_a_shadow_that_fails_changes_nothing_for_the_client(start_sluice, recorders, mode):
    primary = recorders("primary")
    if mode == "down":
        shadow_address = f"127.0.0.1:{free_port()}"           # nothing listens
    else:
        shadow = recorders("shadow", mode=mode, delay=5.0)
        shadow_address = shadow.address
    s = start_sluice(mirror_config(primary.address, shadow_address, timeout="5s"))
    body = os.urandom(20_000)
    answers = []
    with httpx.Client(base_url=s.url, timeout=4) as c:      # a shadow waited for: 5 s or never
        for i in range(12):
            r = c.post(f"/n/{i}", content=body)
            answers.append((r.status_code, r.text))
    assert answers == [(200, "primary")] * 12
    assert primary.count() == 12
    assert all(r["sha256"] == hashlib.sha256(body).hexdigest() for r in primary.requests)
    if mode != "down":
        assert shadow.count() >= 1
    if mode in ("down", "reset"):
        eventually(lambda: mirrored(s) == {"sent": 12, "failed": 12})


def test_a_hanging_shadow_is_cut_at_the_route_timeout(start_sluice, recorders):
    primary, shadow = recorders("primary"), recorders("shadow", mode="hang")
    s = start_sluice(mirror_config(primary.address, shadow.address, timeout="1s"))
    t0 = time.monotonic()
    with httpx.Client(base_url=s.url, timeout=10) as c:
        assert c.get("/").text == "primary"
    eventually(lambda: len(shadow.closed_at) == 1, timeout=10)
    waited = shadow.closed_at[0] - t0
    assert 0.9 <= waited <= 5.0, waited           # the route timeout, within a generous margin


@pytest.mark.parametrize("when", ["connecting", "connected"])
def test_a_shadow_that_does_not_keep_up_is_dropped_not_buffered(start_sluice, recorders, when):
    """The shadow reads the head and then nothing: its socket and our write buffer fill
    ("connected": the body comes after the shadow's connection is up), or the body comes faster
    than the shadow connects ("connecting"). The primary still gets every byte, and the proxy
    does not hold the upload for the shadow."""
    primary, shadow = recorders("primary"), recorders("shadow", mode="stall")
    s = start_sluice(mirror_config(primary.address, shadow.address, timeout="8s"))
    body = os.urandom(24 << 20)

    def slow_start():
        yield body[:65536]
        time.sleep(0.5)                   # the shadow's connection opens meanwhile
        for i in range(65536, len(body), 1 << 20):
            yield body[i:i + (1 << 20)]

    [pid] = s.worker_pids()
    with httpx.Client(base_url=s.url, timeout=30) as c:
        assert c.post("/warm", content=body[:1 << 20]).text == "primary"
        before = peak_rss_kb(pid)
        r = c.post("/big", content=body if when == "connecting" else slow_start())
    assert r.text == "primary"
    assert primary.requests[1]["sha256"] == hashlib.sha256(body).hexdigest()
    grown = peak_rss_kb(pid) - before
    assert grown < 8 << 10, grown       # KiB: well below the 24 MiB a held copy would take
    # and the shadows' connections go (reset: a close would wait for the stalled upstream to
    # read what is buffered for it, forever), the dropped one now, the other at its deadline;
    # one dropped while connecting never sent a byte, and its connection is pooled
    pooled = 1 if when == "connecting" else 0
    eventually(lambda: upstream_connections(pid, shadow.port) == pooled, timeout=20)
    eventually(lambda: mirrored(s) == {"sent": 2, "failed": 2})   # (the first at its deadline)


def peak_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def test_the_shadow_is_aborted_when_the_client_leaves_mid_body(start_sluice, recorders):
    primary, shadow = recorders("primary"), recorders("shadow")
    s = start_sluice(mirror_config(primary.address, shadow.address))
    c = socket.create_connection(("127.0.0.1", s.port))
    c.sendall(b"POST /partial HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n" + b"a" * 5000)
    eventually(lambda: primary.incomplete == 0 and shadow.incomplete == 0)
    time.sleep(0.3)
    c.close()
    eventually(lambda: shadow.incomplete == 1 and primary.incomplete == 1)
    assert shadow.count() == 0


def test_the_shadow_writes_no_access_log_line(start_sluice, recorders):
    primary, shadow = recorders("primary"), recorders("shadow")
    s = start_sluice(mirror_config(primary.address, shadow.address))
    with httpx.Client(base_url=s.url, timeout=10) as c:
        for i in range(3):
            assert c.get(f"/logged/{i}").text == "primary"
    eventually(lambda: shadow.count() == 3)
    time.sleep(0.3)
    lines = s.access_log()
    assert [line["path"] for line in lines] == ["/logged/0", "/logged/1", "/logged/2"]
    assert {line["upstream"] for line in lines} == {primary.address}
    # counted under the shadow cluster by status, never under the route a second time
    assert metric(s, "sluice_cluster_requests_total", cluster="shadow", status_class="2xx") == 3
    assert metric(s, "sluice_requests_total", route="all", status_class="2xx") == 3


def test_the_primary_keeps_working_when_the_shadow_resets(start_sluice, recorders):
    primary, shadow = recorders("primary"), recorders("shadow", mode="reset")
    s = start_sluice(mirror_config(primary.address, shadow.address))
    with httpx.Client(base_url=s.url, timeout=10) as c:
        for i in range(20):
            r = c.post(f"/r/{i}", content=b"x" * 1000)
            assert (r.status_code, r.text) == (200, "primary")
    eventually(lambda: shadow.count() == 20)


def test_an_http10_request_without_host_gets_the_shadow_endpoints_address(
        start_sluice, recorders):
    primary, shadow = recorders("primary"), recorders("shadow")
    s = start_sluice(mirror_config(primary.address, shadow.address))
    with socket.create_connection(("127.0.0.1", s.port)) as c:
        c.sendall(b"GET /old HTTP/1.0\r\n\r\n")
        assert c.recv(65536).startswith(b"HTTP/1.1 200")
    eventually(lambda: shadow.count() == 1)
    assert primary.requests[0]["headers"]["host"] == primary.address
    assert shadow.requests[0]["headers"]["host"] == f"127.0.0.1-shadow:{shadow.port}"


def test_a_grpc_web_text_upload_reaches_the_shadow_decoded(start_sluice, recorders):
    """gRPC-Web text: the shadow decodes the client's base64 itself, as the primary does, even
    when a chunk ends inside a 4-character group."""
    import base64

    primary, shadow = recorders("primary"), recorders("shadow")
    s = start_sluice(mirror_config(primary.address, shadow.address))
    message = os.urandom(30_001)
    frame = b"\x00" + len(message).to_bytes(4, "big") + message
    text = base64.b64encode(frame)
    parts = [text[i:i + 4099] for i in range(0, len(text), 4099)]    # not on group bounds
    with httpx.Client(base_url=s.url, timeout=10) as c:
        c.post("/pkg.Svc/Call", content=iter(parts),
               headers={"content-type": "application/grpc-web-text", "x-grpc-web": "1"})
    eventually(lambda: shadow.count() == 1 and primary.count() == 1)
    want = hashlib.sha256(frame).hexdigest()
    assert primary.requests[0]["sha256"] == shadow.requests[0]["sha256"] == want
    assert shadow.requests[0]["headers"]["content-type"] == "application/grpc"


@pytest.mark.parametrize("fault, copied", [({"delay": {"fixed": "300ms"}}, True),
                                           ({"abort": {"status": 503}}, False)])
def test_fault_injection_comes_before_the_mirror(start_sluice, recorders, fault, copied):
    """As Envoy's fault filter before the router: an aborted request is not copied; a delayed
    one is copied after the delay, with the body that arrived meanwhile."""
    primary, shadow = recorders("primary"), recorders("shadow")
    config = mirror_config(primary.address, shadow.address)
    config["routes"][0]["fault"] = fault
    s = start_sluice(config)
    body = os.urandom(100_000)
    with httpx.Client(base_url=s.url, timeout=10) as c:
        r = c.post("/f", content=body)
    assert r.status_code == (200 if copied else 503)
    if copied:
        eventually(lambda: shadow.count() == 1)
        assert shadow.requests[0]["sha256"] == hashlib.sha256(body).hexdigest()
    else:
        time.sleep(0.5)
        assert shadow.count() == 0 and mirrored(s) == {"sent": 0, "failed": 0}


def test_the_shadow_clusters_circuit_breaker_sheds_copies_not_requests(start_sluice, recorders):
    """max_requests 1 on the shadow cluster, whose one copy hangs: the other copies are shed
    at its breaker (counted), the primary serves every request."""
    primary, shadow = recorders("primary"), recorders("shadow", mode="hang")
    config = mirror_config(primary.address, shadow.address, timeout="10s")
    config["clusters"][1]["circuit_breakers"] = {"max_requests": 1}
    s = start_sluice(config)
    with httpx.Client(base_url=s.url, timeout=5) as c:
        for i in range(6):
            assert c.get(f"/b/{i}").text == "primary"
    assert primary.count() == 6
    eventually(lambda: shadow.count() == 1)
    assert mirrored(s) == {"sent": 6, "failed": 5}
    assert metric(s, "sluice_circuit_breaker_overflows_total", cluster="shadow",
                  breaker="requests") == 5
    assert metric(s, "sluice_circuit_breaker_overflows_total", cluster="up",
                  breaker="requests") == 0


# --- HTTP/2 ---------------------------------------------------------------------------------------

def test_an_http2_client_is_mirrored(start_sluice, recorders):
    primary, shadow = recorders("primary"), recorders("shadow")
    s = start_sluice(mirror_config(primary.address, shadow.address, protocols=["http2", "http1"]))
    body = os.urandom(200_000)
    with httpx.Client(http1=False, http2=True, base_url=s.url, timeout=10) as c:
        r = c.post("/h2", content=body)
        assert (r.http_version, r.text) == ("HTTP/2", "primary")
    eventually(lambda: shadow.count() == 1)
    host = f"127.0.0.1-shadow:{s.port}"
    assert shadow.requests[0]["headers"]["host"] == host
    assert shadow.requests[0]["sha256"] == hashlib.sha256(body).hexdigest()


class H2Upstream:
    """tests/h2upstream.py (the `h2` package) on a free port: an HTTP/2 shadow cluster."""

    def __init__(self) -> None:
        import subprocess
        import sys
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "h2upstream.py"),
                                      str(self.port)], stdout=subprocess.PIPE)
        assert self.proc.stdout.readline().strip() == b"ready"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stats(self) -> dict:
        with httpx.Client(http1=False, http2=True, timeout=5) as c:
            return c.get(f"http://127.0.0.1:{self.port}/stats").json()

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def h2shadow():
    u = H2Upstream()
    yield u
    u.stop()


@pytest.mark.parametrize("client", ["http1", "http2"])
def test_an_http2_shadow_cluster_gets_the_copy(start_sluice, recorders, h2shadow, client):
    primary = recorders("primary")
    config = mirror_config(primary.address, h2shadow.address, protocols=["http2", "http1"])
    config["clusters"][1]["protocol"] = "http2"
    s = start_sluice(config)
    body = os.urandom(150_000)
    with httpx.Client(http1=client == "http1", http2=client == "http2", base_url=s.url,
                      timeout=10) as c:
        r = c.post("/upload", content=body, headers={"host": "svc.local:81"})
        assert r.text == "primary"
    eventually(lambda: h2shadow.stats()["requests"] >= 2)       # ours, and a /stats
    headers = dict(h2shadow.stats()["last_headers"])
    assert headers[":authority"] == "svc.local-shadow:81"
    assert headers[":path"] == "/upload" and headers[":method"] == "POST"
    assert primary.requests[0]["sha256"] == hashlib.sha256(body).hexdigest()


def test_an_http2_stream_reset_mid_body_cuts_its_shadow_only(start_sluice, recorders):
    """The client resets one stream mid-upload: that request's copy is cut with it (the rest of
    its body will never come); the connection's other stream, and its copy, go on."""
    from h2.errors import ErrorCodes
    from h2peer import H2Peer

    primary, shadow = recorders("primary"), recorders("shadow")
    s = start_sluice(mirror_config(primary.address, shadow.address, protocols=["http2", "http1"]))
    peer = H2Peer(s.port)
    cut = peer.request("/cut", "POST", headers=[("content-length", "100000")], body=b"a" * 5000,
                       authority="svc.test", end=False)
    eventually(lambda: primary.incomplete == 0 and len(primary.requests) == 0)
    time.sleep(0.3)
    peer.conn.reset_stream(cut, ErrorCodes.CANCEL)
    peer.flush()
    whole = peer.request("/whole", "POST", body=b"b" * 7000, authority="svc.test")
    status, _, body, _ = peer.response(whole)
    assert (status, body) == (200, b"primary")
    eventually(lambda: shadow.incomplete == 1 and shadow.count() == 1)
    assert shadow.requests[0]["target"] == "/whole" and shadow.requests[0]["body"] == 7000
    assert shadow.requests[0]["headers"]["host"] == "svc.test-shadow"
    peer.close()

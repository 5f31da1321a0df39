"""engine/runtime/admin.py (+ metrics.py): the admin HTTP API over a real loopback socket.

The server runs on its own event loop in a thread, against a small fake Controller and a real
shared-memory Stats; the tests speak HTTP to it with httpx, or with a raw socket where the exact
bytes matter (100-continue, keep-alive, malformed requests)."""
from __future__ import annotations

import asyncio
import concurrent.futures as cf
import hashlib
import json
import socket
import threading
import time
import types

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine._fast import stats as S
from engine.runtime import admin as A


class FakeController:
    """The Controller protocol, with state a test can set and inspect."""

    def __init__(self, stats: S.Stats):
        self.stats = stats
        self.version = "v1"
        self.is_ready = False
        self.drains = 0
        self.applied: list[bytes] = []
        self.last_rejection = None
        self.broken = False

    def ready(self) -> bool:
        return self.is_ready

    def config_dump(self) -> dict:
        if self.broken:
            raise RuntimeError("boom")
        return {"version": self.version, "hash": "abc", "workers": [{"slot": 0, "version": "v1"}],
                "last_rejection": self.last_rejection, "config": {"listeners": []}}

    def clusters(self) -> dict:
        return {"clusters": {"web": {"endpoints": [
            {"address": "127.0.0.1:9004", "weight": 1, "health": "unknown",
             "active_requests": 0}]}}}

    async def apply_snapshot(self, data: bytes) -> tuple[bool, list[str]]:
        await asyncio.sleep(0)
        if data.startswith(b"bad"):
            self.last_rejection = {"reason": ["snapshot: truncated"]}
            return False, ["snapshot: truncated"]
        self.applied.append(data)
        self.version = hashlib.sha256(data).hexdigest()[:12]
        return True, []

    def drain(self) -> None:
        self.drains += 1
        self.is_ready = False


class Running:
    def __init__(self, controller, host: str = "127.0.0.1", token: str | None = None):
        self.controller = controller
        self.loop = asyncio.new_event_loop()
        self.server = A.AdminServer(controller, host, 0, token)
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.server.start())
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(10)
        self.host, self.port = host, self.server.port
        self.url = f"http://{host}:{self.port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def raw(self, data: bytes, expect_close: bool = True) -> bytes:
        """Send bytes on a new connection; everything read until it closes (or 2 s pass)."""
        with socket.create_connection((self.host, self.port), timeout=2) as s:
            s.sendall(data)
            chunks = []
            try:
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    chunks.append(b)
            except socket.timeout:
                assert not expect_close, "the server kept the connection open"
            return b"".join(chunks)


@pytest.fixture
def stats():
    s = S.Stats(max_workers=4)
    s.attach_worker(0, pid=4242)
    s.attach_worker(1, pid=4243)
    return s


@pytest.fixture
def serve(stats):
    running: list[Running] = []

    def start(controller=None, **kw) -> Running:
        r = Running(controller or FakeController(stats), **kw)
        running.append(r)
        return r

    yield start
    for r in running:
        r.stop()


# ---- endpoints ---------------------------------------------------------------------------------

def test_ready_is_503_until_the_controller_is_ready(serve):
    a = serve()
    r = httpx.get(a.url + "/ready")
    assert (r.status_code, r.text) == (503, "not ready\n")
    a.controller.is_ready = True
    r = httpx.get(a.url + "/ready")
    assert (r.status_code, r.text) == (200, "ready\n")
    r = httpx.head(a.url + "/ready")
    assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == "6"


def _families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def _value(fam, **labels) -> float:
    for s in fam.samples:
        if s.labels == labels and not s.name.endswith(("_created",)):
            return s.value
    raise KeyError(labels)


def test_prometheus_output_parses_and_sums_over_workers(serve, stats):
    api, web = stats.route_slot("api"), stats.route_slot("web")
    c = stats.cluster_slot("api-v1")
    e = stats.endpoint_slot(S.endpoint_key("api-v1", "127.0.0.1:9001"))
    stats.record_py(0, api, c, 200, 0.003, 10, 100)
    stats.record_py(1, api, c, 204, 0.2, 0, 50)
    stats.record_py(1, api, c, 502, 0.0004, 0, 20)
    stats.set_gauge_py(0, S.GAUGE_CONNECTIONS, 3)
    stats.set_gauge_py(1, S.GAUGE_CONNECTIONS, 2)
    stats.add_gauge_py(1, S.GAUGE_REQUESTS, 1)
    stats.endpoint_begin_py(0, e)
    a = serve()

    r = httpx.get(a.url + "/stats/prometheus")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    fams = _families(r.text)
    req = fams["sluice_requests"]
    assert req.type == "counter"
    assert _value(req, route="api", status_class="2xx") == 2
    assert _value(req, route="api", status_class="5xx") == 1
    assert _value(req, route="web", status_class="2xx") == 0      # linked, nothing yet: zeros
    assert not any(s.labels.get("status_class") == "other" for s in req.samples)
    assert not any(s.labels.get("route", "").startswith("_") for s in req.samples)
    assert _value(fams["sluice_cluster_requests"], cluster="api-v1", status_class="2xx") == 2

    hist = fams["sluice_request_duration_seconds"]
    assert hist.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in hist.samples
               if s.name.endswith("_bucket") and s.labels["route"] == "api"}
    assert buckets["0.0005"] == 1 and buckets["0.001"] == 1 and buckets["0.005"] == 2
    assert buckets["0.1"] == 2 and buckets["0.25"] == 3 and buckets["+Inf"] == 3
    assert len(buckets) == 15
    count = [s.value for s in hist.samples
             if s.name.endswith("_count") and s.labels["route"] == "api"]
    total = [s.value for s in hist.samples
             if s.name.endswith("_sum") and s.labels["route"] == "api"]
    assert count == [3] and total == [pytest.approx(0.2034)]

    assert _value(fams["sluice_bytes_received"], route="api") == 10
    assert _value(fams["sluice_bytes_sent"], route="api") == 170
    assert _value(fams["sluice_active_connections"]) == 5
    assert _value(fams["sluice_active_requests"]) == 1
    assert _value(fams["sluice_workers"]) == 2
    assert _value(fams["sluice_endpoint_active_requests"], cluster="api-v1",
                  endpoint="127.0.0.1:9001") == 1

    # a reserved row appears once it counted something, an odd status as class "other"
    stats.record_py(0, -1, -1, 404, 0.0001)
    stats.record_py(0, web, -1, 999, 0.0001)
    fams = _families(httpx.get(a.url + "/stats/prometheus").text)
    assert _value(fams["sluice_requests"], route=S.UNROUTED, status_class="4xx") == 1
    assert _value(fams["sluice_requests"], route="web", status_class="other") == 1


def test_prometheus_has_http2_counters_by_side_and_resets_by_rfc9113_code(serve, stats):
    stats.h2_counts_py(0, S.H2_DOWNSTREAM, {"streams_opened": 4, "frames_in": 30,
                                            "flood_rapid_reset": 1, "connection_errors": 1,
                                            "refused_streams": 2, "flow_stalls": 3})
    stats.h2_counts_py(1, S.H2_DOWNSTREAM, {"streams_opened": 1, "settings_timeouts": 1})
    stats.h2_counts_py(1, S.H2_UPSTREAM, {"streams_opened": 7, "ids_exhausted": 1,
                                          "stream_errors": 2, "rapid_resets": 5})
    stats.h2_reset_py(0, S.H2_DOWNSTREAM, False, 0x8)       # CANCEL from a client
    stats.h2_reset_py(1, S.H2_DOWNSTREAM, False, 0x8)
    stats.h2_reset_py(0, S.H2_DOWNSTREAM, True, 0x7)        # REFUSED_STREAM by us
    stats.h2_reset_py(1, S.H2_UPSTREAM, True, 0x1234)       # not an RFC 9113 code
    stats.h2_goaway_py(0, S.H2_DOWNSTREAM, True, 0xb)       # ENHANCE_YOUR_CALM
    stats.h2_goaway_py(1, S.H2_UPSTREAM, False, 0x0)
    stats.h2_gauge_py(0, S.H2_DOWNSTREAM, S.H2_GAUGE_CONNECTIONS, 2)
    stats.h2_gauge_py(1, S.H2_DOWNSTREAM, S.H2_GAUGE_CONNECTIONS, 1)
    stats.h2_gauge_py(1, S.H2_DOWNSTREAM, S.H2_GAUGE_STREAMS, 9)
    stats.h2_gauge_py(0, S.H2_UPSTREAM, S.H2_GAUGE_CONNECTIONS, 1)
    fams = _families(httpx.get(serve().url + "/stats/prometheus").text)

    def v(name, **labels):
        return _value(fams[name], **labels)

    assert v("sluice_http2_streams", side="downstream") == 5
    assert v("sluice_http2_streams", side="upstream") == 7
    assert v("sluice_http2_frames_received", side="downstream") == 30
    assert v("sluice_http2_refused_streams", side="downstream") == 2
    assert v("sluice_http2_rapid_resets", side="upstream") == 5
    assert v("sluice_http2_connection_errors", side="downstream") == 1
    assert v("sluice_http2_stream_errors", side="upstream") == 2
    assert v("sluice_http2_flow_control_stalls", side="downstream") == 3
    assert v("sluice_http2_settings_timeouts", side="downstream") == 1
    assert v("sluice_http2_stream_ids_exhausted", side="upstream") == 1
    floods = fams["sluice_http2_floods"]
    assert floods.type == "counter" and len(floods.samples) == 2 * 6     # every kind, zeros too
    assert v("sluice_http2_floods", side="downstream", kind="rapid_reset") == 1
    assert v("sluice_http2_floods", side="upstream", kind="continuation") == 0
    # a (direction, code) row only once it counted something
    resets = {(s.labels["side"], s.labels["direction"], s.labels["code"]): s.value
              for s in fams["sluice_http2_resets"].samples if s.name.endswith("_total")}
    assert resets == {("downstream", "received", "CANCEL"): 2,
                      ("downstream", "sent", "REFUSED_STREAM"): 1,
                      ("upstream", "sent", "unknown"): 1}
    assert v("sluice_http2_goaways", side="downstream", direction="sent",
             code="ENHANCE_YOUR_CALM") == 1
    assert v("sluice_http2_goaways", side="upstream", direction="received", code="NO_ERROR") == 1
    assert fams["sluice_http2_active_connections"].type == "gauge"
    assert v("sluice_http2_active_connections", side="downstream") == 3
    assert v("sluice_http2_active_connections", side="upstream") == 1
    assert v("sluice_http2_active_streams", side="downstream") == 9
    assert v("sluice_http2_active_streams", side="upstream") == 0


def test_prometheus_includes_the_limiters_counters_when_the_controller_has_buckets(serve, stats):
    from engine._fast.limiter import SharedBuckets

    c = FakeController(stats)
    c.buckets = SharedBuckets(64)
    fams = _families(httpx.get(serve(c).url + "/stats/prometheus").text)
    assert _value(fams["sluice_ratelimit_live_evictions"]) == 0
    assert _value(fams["sluice_ratelimit_lock_steals"]) == 0


def test_config_dump_and_clusters_are_json(serve):
    a = serve()
    r = httpx.get(a.url + "/config_dump")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["version"] == "v1" and r.json()["workers"] == [{"slot": 0, "version": "v1"}]
    r = httpx.get(a.url + "/clusters")
    assert r.json()["clusters"]["web"]["endpoints"][0]["health"] == "unknown"   # no checks yet


def test_put_snapshot_applies_or_reports_every_error(serve):
    a = serve()
    r = httpx.put(a.url + "/snapshot", content=b"\x85good snapshot")
    assert r.status_code == 200
    assert r.json() == {"applied": hashlib.sha256(b"\x85good snapshot").hexdigest()[:12]}
    assert a.controller.applied == [b"\x85good snapshot"]
    r = httpx.put(a.url + "/snapshot", content=b"bad bytes")
    assert r.status_code == 400 and r.json() == {"errors": ["snapshot: truncated"]}
    r = httpx.put(a.url + "/snapshot", content=b"")
    assert r.status_code == 400 and "empty body" in r.json()["errors"][0]
    assert len(a.controller.applied) == 1


def test_put_snapshot_over_the_size_limit_is_413_and_not_applied(serve, monkeypatch):
    monkeypatch.setattr(A.ENDPOINTS["/snapshot"]["PUT"], "max_body", 1000)
    a = serve()
    # declared too large: refused before the body is read
    r = httpx.put(a.url + "/snapshot", content=b"x" * 1001)
    assert r.status_code == 413 and r.headers["connection"] == "close"
    # chunked, no length declared: refused once it passes the limit
    r = httpx.put(a.url + "/snapshot", content=iter([b"x" * 600, b"x" * 600]))
    assert r.status_code == 413
    assert a.controller.applied == []
    assert httpx.put(a.url + "/snapshot", content=b"x" * 1000).status_code == 200


def test_expect_100_continue_gets_100_then_the_answer(serve):
    a = serve()
    body = b"snapshot-bytes"
    out = a.raw(b"PUT /snapshot HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                b"Expect: 100-continue\r\nConnection: close\r\n\r\n" % len(body)
                + body)
    assert out.startswith(b"HTTP/1.1 100 ")
    assert b"HTTP/1.1 200 OK\r\n" in out and b'"applied"' in out


def test_drain_is_202_and_calls_the_controller(serve):
    a = serve()
    a.controller.is_ready = True
    r = httpx.post(a.url + "/drain")
    assert r.status_code == 202 and r.json() == {"draining": True}
    assert a.controller.drains == 1
    assert httpx.get(a.url + "/ready").status_code == 503


def test_unknown_path_is_404_and_wrong_method_is_405_with_allow(serve):
    a = serve()
    assert httpx.get(a.url + "/nope").status_code == 404
    assert httpx.get(a.url + "/").status_code == 404
    r = httpx.post(a.url + "/ready")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    r = httpx.get(a.url + "/snapshot")
    assert r.status_code == 405 and r.headers["allow"] == "PUT"
    r = httpx.get(a.url + "/drain")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert httpx.get(a.url + "/ready?verbose=1").status_code == 503   # the query is ignored


def test_keep_alive_serves_several_requests_on_one_connection(serve):
    a = serve()
    req = b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n"
    last = b"GET /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
    out = a.raw(req + req + last)
    assert out.count(b"HTTP/1.1 503 ") == 2 and out.count(b"HTTP/1.1 404 ") == 1


def test_an_early_answer_reads_a_small_body_and_keeps_the_connection(serve):
    a = serve()
    with httpx.Client() as c:
        assert c.post(a.url + "/nope", content=b"x" * 100).status_code == 404
        assert c.get(a.url + "/ready").status_code == 503


def test_a_malformed_request_is_400_and_closes(serve):
    a = serve()
    out = a.raw(b"GET /ready HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ")
    out = a.raw(b"\x00\x01garbage\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ")


def test_a_failing_controller_is_500_and_the_server_goes_on(serve):
    a = serve()
    a.controller.broken = True
    r = httpx.get(a.url + "/config_dump")
    assert r.status_code == 500 and "boom" in r.json()["errors"][0]
    assert httpx.get(a.url + "/ready").status_code == 503


# ---- the bearer token --------------------------------------------------------------------------

def test_with_a_token_every_request_needs_the_bearer_header(serve):
    a = serve(host="127.0.0.2", token="s3cret-token")
    with httpx.Client() as c:           # one keep-alive connection: a 401 does not close it
        for method, path in (("GET", "/ready"), ("GET", "/stats/prometheus"),
                             ("GET", "/config_dump"), ("GET", "/clusters"),
                             ("PUT", "/snapshot"), ("POST", "/drain"), ("GET", "/nope")):
            for auth in (None, "Bearer wrong", "Basic czNjcmV0LXRva2Vu", "Bearer s3cret-token2",
                         "Bearer", "Bearer s3cret-toke"):
                headers = {"authorization": auth} if auth else {}
                r = c.request(method, a.url + path, headers=headers, content=b"x")
                assert r.status_code == 401, (method, path, auth)
                assert r.headers["www-authenticate"].startswith("Bearer")
    assert a.controller.applied == [] and a.controller.drains == 0
    ok = {"authorization": "Bearer s3cret-token"}
    assert httpx.get(a.url + "/ready", headers=ok).status_code == 503
    assert httpx.get(a.url + "/config_dump", headers=ok).status_code == 200
    assert httpx.get(a.url + "/stats/prometheus", headers=ok).status_code == 200
    assert httpx.put(a.url + "/snapshot", headers=ok, content=b"snap").status_code == 200
    assert httpx.get(a.url + "/ready", headers={"authorization": "bearer s3cret-token"}
                     ).status_code == 503         # the scheme is case-insensitive


def test_an_unauthenticated_large_body_is_not_read(serve):
    a = serve(host="127.0.0.2", token="t")
    out = a.raw(b"PUT /snapshot HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"
                + b"x" * 100_000)
    assert out.startswith(b"HTTP/1.1 401 ") and b"connection: close" in out.lower()


def test_a_non_loopback_address_without_a_token_is_refused():
    c = FakeController(S.Stats(max_workers=1))
    for host in ("0.0.0.0", "10.1.2.3", "::", "example.com"):
        with pytest.raises(ValueError, match="token"):
            A.AdminServer(c, host, 9901)
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        A.AdminServer(c, host, 9901)
    with pytest.raises(ValueError, match="empty"):
        A.AdminServer(c, "127.0.0.1", 9901, token="")


def test_the_server_takes_address_and_token_from_the_config():
    from engine.policy import load_config_text

    cfg = load_config_text(_CONFIG, "c.yaml")
    server = A.AdminServer.for_config(FakeController(S.Stats(max_workers=1)), cfg.admin)
    assert (server.host, server.port, server.token) == ("127.0.0.1", 9901, "s3cret")


# ---- the supervisor adapter --------------------------------------------------------------------

_CONFIG = """
admin: {address: 127.0.0.1:9901, token: s3cret}
listeners: [{name: main, address: 127.0.0.1:8080, routes: [web]}]
routes: [{name: web, match: {path_prefix: /}, to: [{cluster: web}]}]
clusters:
  - name: web
    balancer: least_request
    endpoints: [{address: 127.0.0.1:9004, weight: 2}, {address: 127.0.0.1:9005}]
"""


def _fake_supervisor(stats):
    from engine._fast.endpoints import Endpoints
    from engine.policy import load_config_text

    config = load_config_text(_CONFIG, "c.yaml")
    handle = types.SimpleNamespace(slot=0, pid=4242, version="v2", ready=True)
    stale = types.SimpleNamespace(slot=1, pid=4243, version="v1", ready=True)
    sup = types.SimpleNamespace(
        config=config, version="v2", snapshot=b"snapshot-bytes", source="c.yaml",
        applied_at=1700000000.0, last_rejection={"reason": ["routes[0]: nope"], "time": 1.0},
        handles={4242: handle, 4243: stale}, stopping=False, stats=stats,
        endpoints=Endpoints(stats.max_endpoints),
        load_snapshot=lambda b: ({"schema": 1, "config_version": "v2", "sha256": "feed"}, config),
        shutdowns=0,
    )
    sup.ready = lambda: False
    sup.shutdown = lambda: setattr(sup, "shutdowns", sup.shutdowns + 1)
    return sup


def test_supervisor_controller_dumps_versions_rejection_and_a_redacted_config(stats):
    stats.beat(0)
    c = A.SupervisorController(_fake_supervisor(stats))
    dump = json.loads(A.to_json(c.config_dump()))
    assert dump["version"] == "v2" and dump["hash"] == "feed"
    assert dump["last_rejection"]["reason"] == ["routes[0]: nope"]
    assert [(w["slot"], w["version"], w["current"]) for w in dump["workers"]] == [
        (0, "v2", True), (1, "v1", False)]
    assert dump["workers"][0]["heartbeat_age"] >= 0 and dump["workers"][1]["heartbeat_age"] is None
    assert dump["config"]["admin"]["token"] == "<redacted>"
    assert "s3cret" not in A.to_json(c.config_dump()).decode()
    assert dump["config"]["clusters"][0]["endpoints"][0] == {"address": "127.0.0.1:9004",
                                                             "weight": 2}
    c.drain()
    assert c.sup.shutdowns == 1


def test_supervisor_controller_lists_endpoints_with_in_flight_counts(stats):
    e = stats.endpoint_slot(S.endpoint_key("web", "127.0.0.1:9005"))
    stats.endpoint_begin_py(0, e)
    stats.endpoint_begin_py(1, e)
    stats.endpoint_end_py(1, e)
    w = stats.cluster_slot("web")
    stats.cluster_begin_py(0, w)
    stats.cluster_begin_py(1, w)
    stats.cluster_begin_py(1, w, True)
    stats.cluster_event_py(0, w, "overflow_requests")
    stats.cluster_event_py(1, w, "retry_5xx")
    c = A.SupervisorController(_fake_supervisor(stats))
    unchecked = {"health": "unknown", "ejected": False,
                 "health_transitions": {"healthy": 0, "unhealthy": 0}, "ejections": 0,
                 "health_checks": {"passed": 0, "failed": 0}}
    assert c.clusters() == {"version": "v2", "clusters": {"web": {
        "balancer": "least_request", "health_check": None, "panic_threshold": 50,
        "panic": False,
        "circuit_breakers": {"max_requests": 1024, "max_retries": 3, "max_connections": 1024,
                             "max_pending": 1024, "active_requests": 2, "active_retries": 1,
                             "overflows": {"requests": 1, "pending": 0, "retries": 0}},
        "retry_budget": None,
        "retries": {"connect_failure": 0, "reset": 0, "per_try_timeout": 0,
                    "refused_stream": 0, "gateway_error": 0, "5xx": 1, "retriable_status": 0},
        "endpoints": [
            {"address": "127.0.0.1:9004", "weight": 2, **unchecked,
             "active_requests": 0, "requests": 0, "connect_failures": 0, "resets": 0},
            {"address": "127.0.0.1:9005", "weight": 1, **unchecked,
             "active_requests": 1, "requests": 2, "connect_failures": 0, "resets": 0},
        ]}}}


def test_supervisor_controller_reads_a_real_snapshot_header(stats):
    from engine.policy.snapshot import encode_snapshot, load_snapshot

    sup = _fake_supervisor(stats)
    sup.snapshot = encode_snapshot(sup.config, "c.yaml")
    sup.load_snapshot = load_snapshot
    header, _ = load_snapshot(sup.snapshot)
    dump = A.SupervisorController(sup).config_dump()
    assert dump["hash"] == header.sha256 and dump["header"]["source"] == "c.yaml"


def test_supervisor_controller_over_http(serve, stats):
    a = serve(A.SupervisorController(_fake_supervisor(stats)))
    r = httpx.get(a.url + "/config_dump")
    assert r.status_code == 200 and r.json()["version"] == "v2"
    assert httpx.get(a.url + "/clusters").json()["clusters"]["web"]["balancer"] == "least_request"
    assert httpx.get(a.url + "/ready").status_code == 503


# ---- staying reachable: deadlines, eviction, caps (security issue, item 8) ----------------------

def _recv_all(sock: socket.socket) -> bytes:
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    return out


def test_a_body_that_does_not_arrive_in_time_is_408(serve, monkeypatch):
    monkeypatch.setattr(A, "REQUEST_TIMEOUT", 0.5)
    a = serve()
    with socket.create_connection((a.host, a.port), timeout=10) as s:
        s.sendall(b"PUT /snapshot HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        out = _recv_all(s)
    assert out.startswith(b"HTTP/1.1 408 ") and b"connection: close" in out
    assert a.controller.applied == []


def test_the_oldest_pending_connection_is_evicted_and_an_operator_gets_through(serve,
                                                                             monkeypatch):
    monkeypatch.setattr(A, "MAX_PENDING", 3)
    a = serve()
    silent = [socket.create_connection((a.host, a.port), timeout=5) for _ in range(3)]
    try:
        for s in silent:
            s.sendall(b"GET /re")                   # a head begun, never finished
        assert httpx.get(a.url + "/ready").status_code == 503   # answered: it evicted one
        assert silent[0].recv(10) == b""            # the oldest, closed
        with httpx.Client() as c:                   # keep-alive: one connection, many requests
            for _ in range(5):
                assert c.get(a.url + "/ready").status_code == 503
    finally:
        for s in silent:
            s.close()


class SlowController(FakeController):
    """Applies a snapshot only once `release` is set."""

    def __init__(self, stats):
        super().__init__(stats)
        self.release = threading.Event()

    async def apply_snapshot(self, data: bytes):
        while not self.release.is_set():
            await asyncio.sleep(0.01)
        return await super().apply_snapshot(data)


def test_snapshot_uploads_beyond_the_cap_wait_then_get_503(serve, monkeypatch, stats):
    monkeypatch.setattr(A, "MAX_UPLOADS", 1)
    monkeypatch.setattr(A, "REQUEST_TIMEOUT", 0.5)
    a = serve(SlowController(stats))
    with httpx.Client(timeout=10) as first:
        with cf.ThreadPoolExecutor(1) as ex:
            held = ex.submit(first.put, a.url + "/snapshot", content=b"one")  # holds the slot
            time.sleep(0.2)
            r = httpx.put(a.url + "/snapshot", content=b"two", timeout=10)
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert "snapshot uploads are in progress" in r.json()["errors"][0]
            a.controller.release.set()
            assert held.result().status_code == 200
    assert httpx.put(a.url + "/snapshot", content=b"three").status_code == 200   # slot freed
    assert a.controller.applied == [b"one", b"three"]

"""Retries (issue 11, item 1 and 2): a route's retry policy against real faulty upstreams
(tests/make_backends.py) — what is retried and what is not, the body replayed, x-sluice-attempt, the
attempts in the access log, per-try timeouts, and the retry budget against a storm
(engine/_fast/exchange.pyx may_retry / schedule_retry / retry_now)."""
from __future__ import annotations

import http.client
import threading
import time

import pytest

from backends import InFlight
from support import free_port, metric, simple_config


def request(s, method="GET", path="/work", body=None, headers=None, timeout=20):
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read(), dict(r.getheaders())
    finally:
        c.close()


def config(addresses, retry=None, timeout=None, **cluster):
    route = {"name": "all", "match": {"path_prefix": "/"}, "to": [{"cluster": "up"}]}
    if retry is not None:
        route["retry"] = retry
    if timeout is not None:
        route["timeout"] = timeout
    return simple_config(free_port(), {"up": addresses}, routes=[route], **cluster)


def dead_address() -> str:
    return f"127.0.0.1:{free_port()}"          # nothing listens there: connections are refused


def test_a_refused_connection_is_retried_on_another_endpoint(make_backends, start_sluice):
    good, = make_backends(1)
    s = start_sluice(config([dead_address(), good.address],
                            retry={"attempts": 2, "on": ["connect-failure"]}))
    statuses = [request(s)[0] for _ in range(20)]
    assert statuses == [200] * 20
    attempts = [r["headers"]["x-sluice-attempt"] for r in good.requests]
    # (round robin: each retry moves the cursor on, so the next first try is the dead one again)
    assert "2" in attempts and len(good.requests) == 20, attempts
    log = s.access_log()
    assert {rec["attempts"] for rec in log} <= {1, 2} and 2 in {rec["attempts"] for rec in log}
    assert all(rec["upstream"] == good.address for rec in log)
    assert metric(s, "sluice_retries_total", cluster="up", reason="connect_failure") == \
        attempts.count("2")


def test_without_a_policy_nothing_is_retried(make_backends, start_sluice):
    good, bad = make_backends(2)
    bad.status = 503
    s = start_sluice(config([good.address, bad.address]))
    statuses = [request(s)[0] for _ in range(10)]
    assert statuses.count(503) == 5
    assert all("x-sluice-attempt" not in r["headers"] for r in good.requests + bad.requests)
    assert {rec["attempts"] for rec in s.access_log()} == {1}


def test_a_503_is_retried_and_never_reaches_the_client(make_backends, start_sluice):
    good, bad = make_backends(2)
    bad.status = 503
    s = start_sluice(config([good.address, bad.address],
                            retry={"attempts": 1, "on": ["gateway-error"]}))
    assert [request(s)[0] for _ in range(20)] == [200] * 20
    assert bad.served >= 5                         # it was tried, and its 503s were dropped
    assert metric(s, "sluice_retries_total", cluster="up", reason="gateway_error") >= 5
    assert metric(s, "sluice_retry_successes_total", cluster="up") >= 5


def test_a_retriable_status_is_retried_only_when_listed(make_backends, start_sluice):
    good, bad = make_backends(2)
    bad.status = 409
    s = start_sluice(config([good.address, bad.address],
                            retry={"attempts": 1, "on": ["retriable-status"],
                                   "retriable_statuses": [409]}))
    assert [request(s)[0] for _ in range(10)] == [200] * 10
    bad.status = 500                               # a 5xx, but only 409 is asked for
    assert sorted(request(s)[0] for _ in range(10)) == [200] * 5 + [500] * 5


def test_attempts_run_out_and_the_last_answer_goes_to_the_client(make_backends, start_sluice):
    one, two = make_backends(2)
    one.status = two.status = 503
    s = start_sluice(config([one.address, two.address],
                            retry={"attempts": 3, "on": ["5xx"],
                                   "backoff": {"base": "1ms", "max": "2ms"}}))
    status, _, _ = request(s)
    assert status == 503
    assert len(one.requests) + len(two.requests) == 4          # the try and three retries
    assert sorted(r["headers"]["x-sluice-attempt"] for r in one.requests + two.requests) == \
        ["1", "2", "3", "4"]
    # a new endpoint for each try: they alternate
    assert len(one.requests) == 2 and len(two.requests) == 2
    assert s.access_log()[-1]["attempts"] == 4


def test_post_is_not_retried_unless_the_route_says_so(make_backends, start_sluice):
    good, bad = make_backends(2)
    bad.status = 503
    s = start_sluice(config([good.address, bad.address],
                            retry={"attempts": 1, "on": ["5xx"]}))
    statuses = [request(s, "POST", body=b"x" * 100)[0] for _ in range(10)]
    assert statuses.count(503) == 5                  # not idempotent: not retried by default


def test_a_retried_body_arrives_whole_and_a_long_one_is_not_retried(make_backends, start_sluice):
    good, bad = make_backends(2)
    bad.status = 503
    s = start_sluice(config([good.address, bad.address],
                            retry={"attempts": 1, "on": ["5xx"], "methods": ["POST"]}))
    body = bytes(range(256)) * 160                     # 40 KiB: within the replay buffer
    assert [request(s, "POST", body=body)[0] for _ in range(6)] == [200] * 6
    assert all(r["body"] == body for r in good.requests)
    assert any(r["headers"]["x-sluice-attempt"] == "2" for r in good.requests)
    # 100 KiB went out whole to the first try: it cannot be sent again
    big = b"y" * 102400
    statuses = [request(s, "POST", body=big)[0] for _ in range(6)]
    assert statuses.count(503) == 3 and statuses.count(200) == 3
    # a chunked body (no Content-Length) is replayed the same way
    def gen():
        yield b"a" * 1000
        yield b"b" * 1000
    for _ in range(4):
        assert request(s, "POST", body=gen())[0] == 200      # http.client sends it chunked
    assert good.requests[-1]["body"] == b"a" * 1000 + b"b" * 1000


def test_a_reset_before_the_response_is_retried_and_one_after_is_not(make_backends, start_sluice):
    good, bad = make_backends(2)
    bad.fault = "reset"
    s = start_sluice(config([good.address, bad.address],
                            retry={"attempts": 1, "on": ["reset"]}))
    assert [request(s)[0] for _ in range(10)] == [200] * 10
    assert metric(s, "sluice_retries_total", cluster="up", reason="reset") >= 5
    bad.fault = "mid_body"                 # the response started: it cannot be taken back
    broken = 0
    for _ in range(10):
        try:
            status, body, _ = request(s)
            assert status == 200
        except (http.client.IncompleteRead, ConnectionError):
            broken += 1
    assert broken == 5


def test_connect_failure_only_policy_does_not_retry_a_503(make_backends, start_sluice):
    good, bad = make_backends(2)
    bad.status = 503
    s = start_sluice(config([good.address, bad.address],
                            retry={"attempts": 2, "on": ["connect-failure"]}))
    assert sorted(request(s)[0] for _ in range(10)) == [200] * 5 + [503] * 5


def test_a_per_try_timeout_is_retried_like_a_reset(make_backends, start_sluice):
    good, slow = make_backends(2)
    slow.fault = "hang"
    s = start_sluice(config([good.address, slow.address], timeout="10s",
                            retry={"attempts": 1, "on": ["reset"], "per_try_timeout": "500ms"}))
    started = time.monotonic()
    assert [request(s)[0] for _ in range(6)] == [200] * 6
    elapsed = time.monotonic() - started
    # each request whose first try hit the hanging endpoint waited one per-try timeout
    hung = len(slow.requests)
    assert hung >= 3 and elapsed >= hung * 0.5 * 0.9, (hung, elapsed)
    assert metric(s, "sluice_per_try_timeouts_total", cluster="up") == hung
    assert metric(s, "sluice_retries_total", cluster="up", reason="per_try_timeout") == hung


@pytest.mark.parametrize("per_try", [0.5, 1.0])
def test_a_per_try_timeout_fires_at_its_value(make_backends, start_sluice, per_try):
    """Two hanging endpoints, one retry: the client's 504 comes after two per-try timeouts
    (and at most one backoff of 2 ms), within 10%."""
    one, two = make_backends(2)
    one.fault = two.fault = "hang"
    s = start_sluice(config([one.address, two.address], timeout="30s",
                            retry={"attempts": 1, "on": ["reset"],
                                   "per_try_timeout": f"{int(per_try * 1000)}ms",
                                   "backoff": {"base": "1ms", "max": "2ms"}}))
    started = time.monotonic()
    status, body, _ = request(s)
    elapsed = time.monotonic() - started
    assert status == 504 and body == b"upstream request timeout\n"
    assert 2 * per_try * 0.9 <= elapsed <= 2 * per_try * 1.1 + 0.05, elapsed
    assert len(one.requests) == 1 and len(two.requests) == 1


def test_the_route_timeout_bounds_every_try_and_backoff(make_backends, start_sluice):
    one, two = make_backends(2)
    one.fault = two.fault = "hang"
    s = start_sluice(config([one.address, two.address], timeout="1s",
                            retry={"attempts": 5, "on": ["reset"], "per_try_timeout": "400ms"}))
    started = time.monotonic()
    status, _, _ = request(s)
    elapsed = time.monotonic() - started
    assert status == 504
    assert 0.9 <= elapsed <= 1.15, elapsed


def test_a_retry_storm_stays_within_the_retry_budget(make_backends, start_sluice):
    """Every endpoint fails slowly, 24 clients at once, 3 retries each allowed: retries in
    flight at the upstreams never pass the budget (20% of the requests in flight, at least 2),
    node-wide over 2 workers, and the refused retries are counted."""
    one, two = make_backends(2)
    retries = InFlight()
    for b in (one, two):
        b.status = 503
        b.delay = 0.3
        b.retries = retries
    s = start_sluice(config([one.address, two.address], timeout="30s",
                            retry={"attempts": 3, "on": ["5xx"],
                                   "backoff": {"base": "1ms", "max": "2ms"}},
                            retry_budget={"percent": 20, "min_concurrency": 2},
                            circuit_breakers={"max_requests": 1000, "max_retries": 1000}),
                     workers=2)
    statuses: list[int] = []

    def client():
        for _ in range(3):
            statuses.append(request(s)[0])

    threads = [threading.Thread(target=client) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [503] * 72
    # 24 requests in flight allow 4 retries; two workers may each pass the check at once
    assert 2 <= retries.peak <= 5, retries.peak
    tries = len(one.requests) + len(two.requests)
    assert tries < 72 * 2                      # without a budget: 72 * 4
    assert metric(s, "sluice_circuit_breaker_overflows_total", cluster="up",
                  breaker="retries") > 0


def test_max_retries_caps_retries_in_flight(make_backends, start_sluice):
    one, = make_backends(1)
    one.status = 503
    one.delay = 0.3
    s = start_sluice(config([one.address], timeout="30s",
                            retry={"attempts": 2, "on": ["5xx"],
                                   "backoff": {"base": "1ms", "max": "2ms"}},
                            circuit_breakers={"max_requests": 1000, "max_retries": 1}))
    threads = [threading.Thread(target=request, args=(s,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert one.peak_retries == 1
    assert metric(s, "sluice_circuit_breaker_overflows_total", cluster="up",
                  breaker="retries") > 0


def test_an_http2_client_upload_is_replayed_on_the_retry(make_backends, start_sluice):
    import httpx

    good, bad = make_backends(2)
    bad.status = 503
    c = config([good.address, bad.address],
               retry={"attempts": 1, "on": ["5xx"], "methods": ["POST"]})
    c["listeners"][0]["protocols"] = ["http1", "http2"]
    s = start_sluice(c)
    body = bytes(range(256)) * 100

    def gen():
        yield b"a" * 30000
        yield b"b" * 30000

    with httpx.Client(http1=False, http2=True, timeout=10) as client:
        statuses = [client.post(f"{s.url}/up", content=body).status_code for _ in range(4)]
        statuses += [client.post(f"{s.url}/up", content=gen()).status_code for _ in range(4)]
    assert statuses == [200] * 8
    assert len(good.requests) == 8 and len(bad.requests) >= 4
    assert [r["body"] for r in good.requests] == [body] * 4 + [b"a" * 30000 + b"b" * 30000] * 4

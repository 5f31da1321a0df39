"""Fault injection (issue 11, item 6): a route's `fault` delays or aborts requests by percent,
optionally only those carrying a header, as Istio users do for chaos testing
(engine/_fast/exchange.pyx inject_fault)."""
from __future__ import annotations

import http.client
import time


from support import free_port, metric, simple_config


def request(s, headers=None, method="GET", body=None):
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=20)
    try:
        c.request(method, "/work", body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read(), dict(r.getheaders())
    finally:
        c.close()


def config(backend, fault, timeout=None):
    route = {"name": "all", "match": {"path_prefix": "/"}, "to": [{"cluster": "up"}],
             "fault": fault}
    if timeout is not None:
        route["timeout"] = timeout
    return simple_config(free_port(), {"up": [backend.address]}, routes=[route])


def test_abort_answers_for_the_upstream(backend, start_sluice):
    s = start_sluice(config(backend, {"abort": {"status": 418, "percent": 100}}))
    for _ in range(5):
        status, body, _ = request(s)
        assert status == 418 and body == b"fault filter abort\n"
    # with a body too: the connection stays usable, the upstream sees nothing
    assert request(s, method="POST", body=b"x" * 50000)[0] == 418
    assert backend.requests == []
    assert metric(s, "sluice_faults_injected_total", route="all", kind="abort") == 6
    log = s.access_log()
    assert {rec["status"] for rec in log} == {418} and {rec["attempts"] for rec in log} == {0}


def test_abort_only_with_the_header(backend, start_sluice):
    s = start_sluice(config(backend, {"abort": {"status": 503}, "only_with_header":
                                      "x-chaos"}))
    assert request(s)[0] == 200
    assert request(s, {"x-chaos": "1"})[0] == 503
    assert request(s, {"X-Chaos": ""})[0] == 503          # present, whatever its value
    assert len(backend.requests) == 1


def test_abort_percent_is_about_right(backend, start_sluice):
    s = start_sluice(config(backend, {"abort": {"status": 500, "percent": 30}}))
    statuses = [request(s)[0] for _ in range(300)]
    # binomial(300, 0.3): mean 90, sd 8; six sd either way
    assert 40 <= statuses.count(500) <= 140, statuses.count(500)
    assert statuses.count(200) == len(backend.requests)


def test_delay_holds_the_request_then_proxies_it(backend, start_sluice):
    s = start_sluice(config(backend, {"delay": {"fixed": "400ms"}}))
    started = time.monotonic()
    status, body, _ = request(s, method="POST", body=b"y" * 20000)
    elapsed = time.monotonic() - started
    assert status == 200 and 0.36 <= elapsed < 2, elapsed
    assert backend.requests[0]["body"] == b"y" * 20000
    assert metric(s, "sluice_faults_injected_total", route="all", kind="delay") == 1


def test_delay_then_abort(backend, start_sluice):
    s = start_sluice(config(backend, {"delay": {"fixed": "300ms"},
                                      "abort": {"status": 429}}))
    started = time.monotonic()
    assert request(s)[0] == 429
    assert time.monotonic() - started >= 0.27
    assert backend.requests == []


def test_a_client_that_leaves_during_the_delay_costs_nothing(backend, start_sluice):
    s = start_sluice(config(backend, {"delay": {"fixed": "500ms"}}))
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
    c.request("GET", "/work")
    c.close()
    time.sleep(0.8)
    assert backend.requests == []
    assert request(s)[0] == 200
    assert [rec["status"] for rec in s.access_log()] == [499, 200]


def test_grpc_status_abort_is_a_grpc_answer(backend, start_sluice):
    s = start_sluice(config(backend, {"abort": {"grpc_status": 14}}))
    status, body, headers = request(s, {"content-type": "application/grpc"}, method="POST",
                                    body=b"\0\0\0\0\0")
    assert status == 200
    assert headers["grpc-status"] == "14" and headers["content-type"] == "application/grpc"
    # a client that did not say gRPC still gets the gRPC form: the route asked for a status
    status, _, headers = request(s)
    assert status == 200 and headers["grpc-status"] == "14"
    assert backend.requests == []

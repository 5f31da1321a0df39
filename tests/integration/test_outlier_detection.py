"""Outlier detection (issue 11, item 4): endpoints that keep failing are ejected node-wide,
from the outcomes every worker reports (engine/_fast/exchange.pyx report_outcome into
engine/_fast/endpoints.pyx), and come back when the ejection ends."""
from __future__ import annotations

import http.client
import json

from support import eventually, free_port, simple_config


def get(s, path="/work") -> int:
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def endpoints(s) -> dict:
    body = json.loads(s.admin("/clusters").body)
    return {ep["address"]: ep for ep in body["clusters"]["up"]["endpoints"]}


def od_config(backends, **od) -> dict:
    return simple_config(free_port(), {"up": [b.address for b in backends]},
                         outlier_detection={"consecutive_gateway_errors": 3,
                                            "base_ejection_time": "2s", **od})


def test_an_endpoint_answering_503_is_ejected_on_every_worker_and_comes_back(
        backends, start_sluice):
    bad = backends[0]
    bad.status = 503
    s = start_sluice(od_config(backends), workers=2)
    statuses = [get(s) for _ in range(30)]
    # 3 consecutive gateway errors node-wide eject it (both workers report to one count): a
    # few 503s reach clients before that, none after
    assert statuses.count(503) <= 4, statuses
    ejected = eventually(lambda: endpoints(s)[bad.address]["ejected"])
    assert ejected
    before = bad.served
    assert all(get(s) == 200 for _ in range(30))
    assert bad.served == before                      # skipped by every worker
    bad.status = 200
    eventually(lambda: not endpoints(s)[bad.address]["ejected"], timeout=15)
    eventually(lambda: get(s) == 200 and bad.served > before, timeout=15)


def test_a_dead_endpoint_is_ejected_after_consecutive_connect_failures(backends, start_sluice):
    dead = backends[1]
    dead.stop()
    s = start_sluice(od_config(backends))
    statuses = [get(s) for _ in range(20)]
    assert statuses.count(502) <= 3, statuses
    assert eventually(lambda: endpoints(s)[dead.address]["ejected"])
    assert all(get(s) == 200 for _ in range(20))


def test_max_ejection_percent_keeps_the_cluster_serving(backends, start_sluice):
    for b in backends:
        b.status = 503
    s = start_sluice(od_config(backends, max_ejection_percent=34))
    for _ in range(40):
        get(s)
    ejected = [a for a, ep in endpoints(s).items() if ep["ejected"]]
    assert len(ejected) == 1                         # 34% of 3: one endpoint at most


def test_sluices_own_refusals_do_not_count(backends, start_sluice):
    c = od_config(backends)
    c["routes"][0]["rate_limit"] = {"rate": 0.01, "burst": 1}
    s = start_sluice(c)
    statuses = [get(s) for _ in range(10)]
    assert statuses.count(429) == 9
    assert not any(ep["ejected"] for ep in endpoints(s).values())

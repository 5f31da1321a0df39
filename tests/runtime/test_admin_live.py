"""The admin API of a running binary with two workers: metrics aggregated over workers from
shared memory, /config_dump after a reload, and state kept across a reload."""

from __future__ import annotations

import time

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from support import eventually, free_port, simple_config


def admin_url(s) -> str:
    return "http://" + s.config["admin"]["address"]


def wait_ready(s, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(admin_url(s) + "/ready").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("never ready")


def requests_by_route(s) -> dict[str, float]:
    text = httpx.get(admin_url(s) + "/stats/prometheus").text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "sluice_requests":
            for sample in family.samples:
                if sample.name == "sluice_requests_total":
                    route = sample.labels["route"]
                    out[route] = out.get(route, 0) + sample.value
    return out


def test_prometheus_counts_requests_over_both_workers(upstream, start_sluice):
    s = start_sluice(simple_config(free_port(), {"up": [upstream.address]}), workers=2)
    wait_ready(s)
    for _ in range(40):                      # fresh connections: the kernel spreads them
        assert httpx.get(s.url + "/echo").status_code == 200
    eventually(lambda: requests_by_route(s).get("all") == 40)
    dump = httpx.get(admin_url(s) + "/config_dump").json()
    assert len(dump["workers"]) == 2


def test_reload_keeps_pools_and_buckets_of_unchanged_clusters_and_limits(upstream, start_sluice):
    def config(body: str) -> dict:
        routes = [{"name": "v", "match": {"path": "/version"},
                   "direct_response": {"status": 200, "body": body}},
                  {"name": "all", "match": {"path_prefix": "/"},
                   "rate_limit": {"rate": 0.01, "burst": 3},
                   "to": [{"cluster": "up"}]}]
        return simple_config(free_port(), {"up": [upstream.address]}, routes)

    first = config("v1")
    s = start_sluice(first)
    wait_ready(s)
    with httpx.Client() as c:
        assert [c.get(s.url + "/echo").status_code for _ in range(3)] == [200] * 3
        second = config("v2")
        second["listeners"] = first["listeners"]
        second["admin"] = first["admin"]
        s.path.write_text(yaml.safe_dump(second))
        deadline = time.monotonic() + 10
        while c.get(s.url + "/version").text != "v2" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.get(s.url + "/version").text == "v2"
        # the bucket of the unchanged limit is still empty, the pooled connection still in use
        assert c.get(s.url + "/echo").status_code == 429
    assert upstream.stats()["connections"] == 1
    dump = httpx.get(admin_url(s) + "/config_dump").json()
    assert dump["last_rejection"] is None

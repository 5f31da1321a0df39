"""Rate limits hold for the whole node: two workers share one bucket in shared memory."""

from __future__ import annotations

import concurrent.futures as cf
import time

import httpx

from support import free_port, simple_config, upstream_connections


def limited(upstream, per="route", rate=20, burst=5):
    routes = [{"name": "all", "match": {"path_prefix": "/"},
               "rate_limit": {"rate": rate, "burst": burst, "per": per},
               "to": [{"cluster": "up"}]}]
    return simple_config(free_port(), {"up": [upstream.address]}, routes)


def test_refusal_is_429_with_retry_after_and_ratelimit_headers(upstream, start_sluice):
    s = start_sluice(limited(upstream, rate=1, burst=2))
    with httpx.Client() as c:
        codes = [c.get(s.url + "/echo") for _ in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 429]
    r = codes[2]
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["ratelimit-limit"] == "2"
    assert r.headers["ratelimit-remaining"] == "0"
    assert int(r.headers["ratelimit-reset"]) >= 1


def test_per_header_limits_are_independent(upstream, start_sluice):
    s = start_sluice(limited(upstream, per="header:x-user", rate=1, burst=1))
    with httpx.Client() as c:
        assert c.get(s.url + "/echo", headers={"x-user": "a"}).status_code == 200
        assert c.get(s.url + "/echo", headers={"x-user": "a"}).status_code == 429
        assert c.get(s.url + "/echo", headers={"x-user": "b"}).status_code == 200


def test_admitted_rate_with_two_workers_matches_the_configured_rate(upstream, start_sluice):
    rate, burst, seconds = 50, 10, 3.0
    s = start_sluice(limited(upstream, rate=rate, burst=burst), workers=2)

    def hammer() -> tuple[int, int]:
        ok = refused = 0
        end = time.monotonic() + seconds
        with httpx.Client() as c:   # one connection each: the kernel spreads them over workers
            while time.monotonic() < end:
                code = c.get(s.url + "/echo").status_code
                ok += code == 200
                refused += code == 429
        return ok, refused

    start = time.monotonic()
    with cf.ThreadPoolExecutor(6) as ex:
        results = list(ex.map(lambda _: hammer(), range(6)))
    elapsed = time.monotonic() - start
    admitted = sum(ok for ok, _ in results)
    expected = burst + rate * elapsed
    assert sum(r for _, r in results) > 0
    # the bucket is shared only if both workers took from it: each proxied some requests,
    # so each holds pooled connections to the upstream
    pids = s.worker_pids()
    assert len(pids) == 2
    assert all(upstream_connections(pid, upstream.port) > 0 for pid in pids), \
        {pid: upstream_connections(pid, upstream.port) for pid in pids}
    assert 0.8 * expected <= admitted <= 1.1 * expected, (admitted, expected)

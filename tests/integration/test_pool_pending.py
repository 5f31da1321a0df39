"""`clusters[].pool.max_pending`: how many requests may wait for a connection of a full pool;
one more is answered 503 at once instead of queueing."""

from __future__ import annotations

import concurrent.futures as cf

import httpx

from support import eventually, free_port, simple_config


def start_with_pool(upstream, start_sluice, **pool):
    cfg = simple_config(free_port(), {"up": [upstream.address]})
    cfg["clusters"][0]["pool"] = {"max_connections": 1, **pool}
    return start_sluice(cfg)


def test_max_pending_0_answers_503_while_the_only_connection_is_busy(upstream, start_sluice):
    s = start_with_pool(upstream, start_sluice, max_pending=0)
    with cf.ThreadPoolExecutor(2) as ex:
        slow = ex.submit(httpx.get, s.url + "/slow/1000", timeout=10)
        eventually(lambda: upstream.stats()["slow_started"] == 1)
        r = httpx.get(s.url + "/echo", timeout=10)
        assert r.status_code == 503
        assert r.text == "upstream connection pool overflow\n"
        assert slow.result().status_code == 200
    assert httpx.get(s.url + "/echo", timeout=10).status_code == 200   # free again: served


def test_a_request_within_max_pending_waits_for_the_connection(upstream, start_sluice):
    s = start_with_pool(upstream, start_sluice, max_pending=1)
    with cf.ThreadPoolExecutor(2) as ex:
        slow = ex.submit(httpx.get, s.url + "/slow/500", timeout=10)
        eventually(lambda: upstream.stats()["slow_started"] == 1)
        assert httpx.get(s.url + "/echo", timeout=10).status_code == 200
        assert slow.result().status_code == 200
    assert upstream.stats()["connections"] == 1

"""Circuit breakers (issue 11, item 5): each one sheds at its limit with 503 and
`x-sluice-overloaded: true`, node-wide, and nothing queues without bound
(engine/_fast/exchange.pyx proxy_to; counts in engine/_fast/stats.pyx)."""
from __future__ import annotations

import http.client
import threading

import pytest

from support import eventually, free_port, metric, simple_config


def request(s, timeout=20):
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=timeout)
    try:
        c.request("GET", "/work")
        r = c.getresponse()
        return r.status, r.read(), r.getheader("x-sluice-overloaded")
    finally:
        c.close()


def concurrently(s, n: int) -> list[tuple]:
    out: list[tuple] = []
    threads = [threading.Thread(target=lambda: out.append(request(s))) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_max_requests_sheds_at_its_limit(backend, start_sluice, workers):
    backend.delay = 1.0                          # every request stays in flight a second
    s = start_sluice(simple_config(free_port(), {"up": [backend.address]},
                                   circuit_breakers={"max_requests": 5}), workers=workers)
    results = concurrently(s, 12)
    ok = [r for r in results if r[0] == 200]
    shed = [r for r in results if r[0] == 503]
    assert len(ok) + len(shed) == 12
    assert backend.peak <= 5                     # never more in flight at the upstream
    if workers == 1:
        assert len(ok) == 5 and len(shed) == 7
    else:                                        # node-wide: the two workers share the count
        assert 5 <= len(ok) <= 6, results
    assert all(r[1] == b"upstream overflow (circuit breaker)\n" and r[2] == "true"
               for r in shed)
    assert metric(s, "sluice_circuit_breaker_overflows_total", cluster="up",
                  breaker="requests") == len(shed)
    # the count goes back to zero: the next requests pass
    eventually(lambda: metric(s, "sluice_cluster_active_requests", cluster="up") == 0)
    backend.delay = 0
    assert [request(s)[0] for _ in range(8)] == [200] * 8


def test_the_pool_breakers_shed_with_the_overloaded_header(backend, start_sluice):
    """pool.max_connections and max_pending (per endpoint and worker): one in flight, one
    waiting, the rest shed at once."""
    backend.delay = 1.0
    s = start_sluice(simple_config(free_port(), {"up": [backend.address]},
                                   pool={"max_connections": 1, "max_pending": 1}))
    results = concurrently(s, 6)
    assert sorted(r[0] for r in results) == [200, 200, 503, 503, 503, 503]
    assert all(r[2] == "true" for r in results if r[0] == 503)
    assert backend.peak == 1
    assert metric(s, "sluice_circuit_breaker_overflows_total", cluster="up",
                  breaker="pending") == 4


def test_a_failed_upstream_is_not_told_as_overload(start_sluice):
    s = start_sluice(simple_config(free_port(), {"up": [f"127.0.0.1:{free_port()}"]}))
    status, _, overloaded = request(s)
    assert status == 502 and overloaded is None

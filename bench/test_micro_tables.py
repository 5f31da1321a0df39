"""Micro benchmarks of the per-request table lookups: balancer pick, limiter take, router match
(1,000 routes, the match at the end)."""

from __future__ import annotations

import pytest

from engine._fast import balancer as lb
from engine._fast.limiter import Limiter, SharedBuckets, monotonic
from engine._fast.router import (
    HOST_ANY,
    HOST_EXACT,
    HOST_SUFFIX,
    PATH_EXACT,
    PATH_PREFIX,
    PATH_REGEX,
    Router,
)

# --- balancer ---------------------------------------------------------------------------------

POLICIES = {"round_robin": lb.LB_ROUND_ROBIN, "least_request": lb.LB_LEAST_REQUEST,
            "ring_hash": lb.LB_RING_HASH, "random": lb.LB_RANDOM}


@pytest.mark.benchmark(group="balancer pick (8 endpoints)")
@pytest.mark.parametrize("policy", list(POLICIES))
def test_balancer_pick(benchmark, policy):
    keys = [b"10.0.0.%d:8080" % i for i in range(8)]
    b = lb.Balancer(POLICIES[policy], [1, 2, 3, 4, 1, 2, 3, 4], keys)
    key = b"user-4242" if policy == "ring_hash" else None
    assert 0 <= benchmark(b.pick_py, key) < 8


# --- limiter ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def buckets():
    shm = SharedBuckets(65536)
    yield shm
    shm.unlink()


@pytest.mark.benchmark(group="limiter take")
def test_limiter_take_one_key(benchmark, buckets):
    lim = Limiter(buckets, 1, 1e9, 1_000_000_000)
    now = monotonic()
    admitted, *_ = benchmark(lim.take_py, b"10.1.2.3", now)
    assert admitted


@pytest.mark.benchmark(group="limiter take")
def test_limiter_take_1000_keys(benchmark, buckets):
    """1,000 client IPs in turn: the bucket table's probing, not one hot slot."""
    lim = Limiter(buckets, 2, 1e9, 1_000_000_000)
    keys = [b"10.1.%d.%d" % (i // 256, i % 256) for i in range(1000)]
    now = monotonic()
    state = [0]

    def run():
        i = state[0] = (state[0] + 1) % 1000
        return lim.take_py(keys[i], now)

    assert benchmark(run)[0]


# --- router -----------------------------------------------------------------------------------


def table(n: int, kind: int) -> list:
    if kind == PATH_PREFIX:
        return [(HOST_ANY, b"", PATH_PREFIX, b"/svc%d/" % i, None, ()) for i in range(n)]
    if kind == PATH_EXACT:
        return [(HOST_ANY, b"", PATH_EXACT, b"/svc%d/items" % i, (b"GET",), ())
                for i in range(n)]
    # mixed: exact hosts, wildcard hosts and a regex, a gateway's table
    out = []
    for i in range(n):
        host = (HOST_EXACT, b"svc%d.example.com" % i) if i % 2 else (HOST_SUFFIX,
                                                                      b".t%d.example.com" % i)
        path = (PATH_PREFIX, b"/api/") if i % 3 else (PATH_REGEX, rb"/v[0-9]+/svc%d/.*" % i)
        out.append((*host, *path, None, ()))
    return out


CASES = {
    "10 prefixes": (10, PATH_PREFIX, b"/svc9/x", 9),
    "1000 prefixes": (1000, PATH_PREFIX, b"/svc999/x", 999),
    "1000 exact paths": (1000, PATH_EXACT, b"/svc999/items", 999),
    "1000 mixed hosts": (1000, None, b"/api/x", 997),   # an exact host, a prefix
}


@pytest.mark.benchmark(group="router match (match at the end)")
@pytest.mark.parametrize("case", list(CASES))
def test_router_match(benchmark, case):
    n, kind, path, want = CASES[case]
    r = Router(table(n, kind))
    host = b"svc%d.example.com" % want if kind is None else b"api.example.com"
    assert benchmark(r.match_py, host, path, b"GET", None) == want


# --- router build (per reload, while the worker serves nothing: issue 7) ------------------------


@pytest.mark.benchmark(group="router build (10,000 routes)")
@pytest.mark.parametrize("kind", ["prefixes", "exact paths", "mixed hosts and regexes"])
def test_router_build(benchmark, kind):
    rows = table(10_000, {"prefixes": PATH_PREFIX, "exact paths": PATH_EXACT}.get(kind))
    assert len(benchmark(Router, rows)) == 10_000


@pytest.mark.benchmark(group="router match (match at the end)")
def test_router_match_regex_first_use_then_kept(benchmark):
    """A regex route is compiled by RE2 on the first request that reaches it, then kept."""
    r = Router(table(1000, None))
    assert benchmark(r.match_py, b"svc999.example.com", b"/v2/svc999/a", b"GET", None) == 999

"""Micro benchmarks of the policy layer's per-reload work at scale (issue 7): the linter's
shadowed-route check (it compared every pair: 8,000 routes took 23 s to a minute) and `link`,
which a worker runs while its event loop serves nothing."""

from __future__ import annotations

import json

import pytest

from bench.reload_stall import generate
from engine.policy import load_config_text
from engine.policy.lint import check
from engine.policy.model import Config


def config(n: int) -> Config:
    return Config.model_validate(generate(n, 8080, 9901))


@pytest.mark.benchmark(group="lint (shadowed routes and the rest)")
@pytest.mark.parametrize("n", [2000, 8000])
def test_lint(benchmark, n):
    cfg = config(n)
    assert benchmark(check, cfg) == []


@pytest.mark.benchmark(group="link (10,000 routes)")
def test_link_10000_routes(benchmark, tmp_path):
    from engine._fast.limiter import SharedBuckets
    from engine.policy.link import link

    cfg = load_config_text(json.dumps(generate(10_000, 8080, 9901)))
    buckets = SharedBuckets(1024)
    try:
        tables = link(cfg, buckets)
        out = benchmark(link, cfg, buckets, previous=tables)
        assert len(out.listeners["main"].routes) == 10_000
    finally:
        buckets.unlink()

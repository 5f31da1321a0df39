"""engine/policy/link.py, issue 11: a route's `retry`, `fault` and `mirror` and a cluster's
`circuit_breakers` and `retry_budget` become the fields of `tables.Route` and `tables.Cluster`
(engine/_fast/tables.pxd) exactly as the hot path reads them."""
import typing

import pytest

from engine._fast import tables as T
from engine._fast.limiter import SharedBuckets
from engine.policy import load_config_text, model
from engine.policy.link import link

CONFIG = """
listeners: [{name: main, address: "127.0.0.1:8080", routes: [full, defaults, plain, status,
                                                              health]}]
routes:
  - name: full
    match: {path_prefix: /full/}
    timeout: 5s
    retry:
      attempts: 3
      on: [connect-failure, 5xx, retriable-status]
      retriable_statuses: [409, 429]
      per_try_timeout: 1s
      backoff: {base: 10ms, max: 300ms}
      methods: [get, POST]
    fault:
      delay: {fixed: 150ms, percent: 2.5}
      abort: {grpc_status: 14, percent: 0.1}
      only_with_header: X-Sluice-Fault
    mirror: {cluster: shadow, percent: 10}
    to: [{cluster: api}]
  - name: defaults
    match: {path_prefix: /defaults/}
    retry: {}
    fault: {abort: {status: 503}}
    mirror: {cluster: shadow}
    to: [{cluster: api}]
  - {name: plain, match: {path_prefix: /plain/}, to: [{cluster: api}]}
  - name: status
    match: {path_prefix: /status/}
    fault: {delay: {fixed: 2s}}
    to: [{cluster: budget}]
  - {name: health, match: {path: /healthz}, direct_response: {status: 200}}
clusters:
  - name: api
    endpoints: [{address: "127.0.0.1:9001"}]
  - name: budget
    circuit_breakers: {max_requests: 50, max_retries: 0}
    retry_budget: {percent: 25, min_concurrency: 1}
    endpoints: [{address: "127.0.0.1:9002"}]
  - name: shadow
    retry_budget: {}
    endpoints: [{address: "127.0.0.1:9003"}]
"""


@pytest.fixture(scope="module")
def tables():
    return link(load_config_text(CONFIG), SharedBuckets(64))


def bits(*names: str) -> int:
    out = 0
    for name in names:
        out |= T.RETRY_ON[name]
    return out


def test_retry_on_names_are_distinct_bits():
    values = list(T.RETRY_ON.values())
    assert all(v and v & (v - 1) == 0 for v in values) and len(set(values)) == len(values)


def routes(tables) -> dict:
    return {r.name: r for r in tables.listeners["main"].routes}


def test_the_models_retry_conditions_are_the_tables_names():
    assert set(typing.get_args(model.RetryOn)) == set(T.RETRY_ON)


def test_a_full_retry_policy(tables):
    r = routes(tables)["full"]
    assert r.retry_attempts == 3
    assert r.retry_on == bits("connect-failure", "5xx", "retriable-status")
    assert r.retry_statuses == frozenset({409, 429})
    assert r.retry_methods == frozenset({b"GET", b"POST"})
    assert (r.per_try_timeout, r.backoff_base, r.backoff_max) == (1.0, 0.01, 0.3)


def test_an_empty_retry_block_links_envoys_defaults(tables):
    r = routes(tables)["defaults"]
    assert r.retry_attempts == 1
    assert r.retry_on == bits("connect-failure", "reset", "gateway-error", "refused-stream")
    assert r.retry_statuses == frozenset()
    assert r.retry_methods == frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"})
    # per_try_timeout 0 = none; the backoff's max defaults to 10 times its base
    assert (r.per_try_timeout, r.backoff_base, r.backoff_max) == (0.0, 0.025, 0.25)


def test_no_retry_fault_or_mirror_when_absent(tables):
    for name in ("plain", "health"):
        r = routes(tables)[name]
        assert r.retry_attempts == 0 and r.retry_on == 0
        assert r.retry_methods == frozenset() and r.retry_statuses == frozenset()
        assert not r.fault and r.fault_abort_grpc == -1
        assert r.mirror_cluster is None


def test_a_full_fault(tables):
    r = routes(tables)["full"]
    assert r.fault
    assert (r.fault_delay, r.fault_delay_percent) == (0.15, 2.5)
    assert (r.fault_abort_status, r.fault_abort_grpc, r.fault_abort_percent) == (0, 14, 0.1)
    assert r.fault_header == b"x-sluice-fault"


def test_an_abort_only_fault(tables):
    r = routes(tables)["defaults"]
    assert r.fault
    assert (r.fault_delay, r.fault_delay_percent) == (0.0, 0.0)
    assert (r.fault_abort_status, r.fault_abort_grpc, r.fault_abort_percent) == (503, -1, 100.0)
    assert r.fault_header is None


def test_a_delay_only_fault(tables):
    r = routes(tables)["status"]
    assert (r.fault_delay, r.fault_delay_percent) == (2.0, 100.0)
    assert (r.fault_abort_status, r.fault_abort_grpc, r.fault_abort_percent) == (0, -1, 0.0)


def test_the_mirror_points_at_the_linked_shadow_cluster(tables):
    full, defaults = routes(tables)["full"], routes(tables)["defaults"]
    assert full.mirror_cluster is tables.clusters["shadow"]
    assert defaults.mirror_cluster is tables.clusters["shadow"]
    assert (full.mirror_percent, defaults.mirror_percent) == (10.0, 100.0)
    # a cluster only mirrored to is linked like any other: endpoints, pools, balancer
    shadow = tables.clusters["shadow"]
    assert len(shadow.endpoints) == 1 and shadow.endpoints[0].pool in tables.pools.values()


def test_every_cluster_gets_circuit_breakers_envoys_defaults_when_absent(tables):
    api = tables.clusters["api"]
    assert (api.max_requests, api.max_retries) == (1024, 3)
    assert (api.budget_percent, api.budget_min) == (-1.0, 0)      # no retry budget


def test_circuit_breakers_and_a_retry_budget(tables):
    budget = tables.clusters["budget"]
    assert (budget.max_requests, budget.max_retries) == (50, 0)
    assert (budget.budget_percent, budget.budget_min) == (25.0, 1)
    shadow = tables.clusters["shadow"]
    assert (shadow.budget_percent, shadow.budget_min) == (20.0, 3)


def test_a_relink_keeps_the_pools_of_clusters_whose_breakers_changed():
    """The caps are not part of a pool's identity: changing them keeps warm connections."""
    first = link(load_config_text(CONFIG), SharedBuckets(64))
    changed = CONFIG.replace("max_requests: 50", "max_requests: 60")
    second = link(load_config_text(changed), SharedBuckets(64), previous=first)
    assert second.clusters["budget"].max_requests == 60
    assert second.clusters["budget"].endpoints[0].pool is first.clusters["budget"].endpoints[0].pool

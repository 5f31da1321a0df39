"""engine/policy/explain.py, issue 11: the matched route's retry policy, fault injection and
mirror, and each cluster's circuit breakers, health check and outlier detection, as `sluice
explain` prints them."""
import pytest

from engine.policy import load_config_text
from engine.policy.explain import explain

CONFIG = """\
listeners: [{name: main, address: 127.0.0.1:8080, routes: [api, health, plain]}]
routes:
  - name: api
    match: {path_prefix: /api/}
    timeout: 5s
    retry:
      attempts: 2
      on: [reset, retriable-status]
      retriable_statuses: [409]
      per_try_timeout: 1s
      backoff: {base: 50ms}
    fault:
      delay: {fixed: 100ms, percent: 1}
      abort: {grpc_status: 14, percent: 0.5}
      only_with_header: X-Sluice-Fault
    mirror: {cluster: shadow, percent: 10}
    to: [{cluster: api}]
  - {name: health, match: {path: /healthz}, direct_response: {status: 200}}
  - {name: plain, match: {path_prefix: /}, to: [{cluster: budget}]}
clusters:
  - name: api
    circuit_breakers: {max_requests: 100}
    endpoints: [{address: 127.0.0.1:9001}]
  - name: budget
    retry_budget: {percent: 25, min_concurrency: 2}
    endpoints: [{address: 127.0.0.1:9002}]
  - {name: shadow, endpoints: [{address: 127.0.0.1:9003}]}
"""


@pytest.fixture(scope="module")
def config():
    return load_config_text(CONFIG)


def lines(config, request: str, headers=()) -> list[str]:
    return explain(config, request, headers).text().splitlines()


def test_the_retry_policy_and_whether_this_method_is_retried(config):
    got = lines(config, "GET http://h/api/x")
    assert "retry:       up to 2 retries on reset, retriable-status (409)" in got
    assert ("  methods:   GET, HEAD, OPTIONS, PUT, DELETE; this request's GET may be retried"
            in got)
    assert "  per try:   1s timeout; backoff 50ms doubling up to 500ms (jittered)" in got
    assert ("  methods:   GET, HEAD, OPTIONS, PUT, DELETE; this request's POST is never retried"
            in lines(config, "POST http://h/api/x"))


def test_the_fault_and_whether_this_request_carries_its_header(config):
    without = lines(config, "GET http://h/api/x")
    assert ("fault:       delay 100ms on 1% of requests; abort with grpc-status 14 on 0.5% of "
            "requests") in without
    assert "  only with header x-sluice-fault: this request has not (no fault)" in without
    assert "  only with header x-sluice-fault: this request has it" in \
        lines(config, "GET http://h/api/x", ["X-Sluice-Fault: 1"])


def test_the_mirror(config):
    assert ("mirror:      10% of requests copied to cluster shadow (host + '-shadow'; fire and "
            "forget, answers dropped)") in lines(config, "GET http://h/api/x")


def test_a_route_without_them_says_no_retry_and_nothing_else(config):
    got = lines(config, "GET http://h/other")
    assert "retry:       none" in got
    one = lines(load_config_text(CONFIG.replace("attempts: 2", "attempts: 1")),
                "GET http://h/api/x")
    assert "retry:       up to 1 retry on reset, retriable-status (409)" in one
    assert not any(line.startswith(("fault:", "mirror:")) for line in got)


def test_the_clusters_circuit_breakers_or_retry_budget(config):
    assert ("  in flight: at most 100 requests, 3 retries (circuit breakers, all workers)"
            in lines(config, "GET http://h/api/x"))
    assert ("  in flight: at most 1024 requests, retries at most 25% of them (at least 2) "
            "(circuit breakers, all workers)") in lines(config, "GET http://h/other")


def test_a_direct_response_shows_none_of_them(config):
    got = lines(config, "GET http://h/healthz")
    assert not any(line.startswith(("retry:", "fault:", "mirror:")) for line in got)


def test_the_clusters_health_check_outlier_detection_and_panic_threshold():
    text = CONFIG.replace("""    retry_budget: {percent: 25, min_concurrency: 2}
""", """    retry_budget: {percent: 25, min_concurrency: 2}
    health_check: {http: {path: /healthz, host: api.internal}, interval: 2s}
    outlier_detection: {consecutive_5xx: 0, base_ejection_time: 10s}
    panic_threshold: 0
""")
    got = lines(load_config_text(text), "GET http://h/other")
    assert ("  health:    HTTP GET /healthz (host api.internal) expecting 200-399 every 2s "
            "(timeout 1s); unhealthy after 3 failures, healthy again after 2 passes") in got
    assert ("  outliers:  ejected after 5 consecutive gateway errors, for 10s x times ejected "
            "(at most 5m), at most 10% of the endpoints at once") in got
    assert "  panic:     never (no endpoint available: 503)" in got
    # a cluster with neither says nothing of them
    assert not any(line.startswith(("  health:", "  outliers:", "  panic:"))
                   for line in lines(load_config_text(CONFIG), "GET http://h/other"))

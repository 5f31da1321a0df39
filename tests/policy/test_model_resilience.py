"""The resilience fields of the model (engine/policy/model.py, issue 11): `routes[].retry`,
`routes[].fault`, `routes[].mirror`, `clusters[].circuit_breakers` and `clusters[].retry_budget`,
through the loader: defaults, normalisation, and every refusal as one `FILE: path: reason` line
naming the field to fix. A checked config survives a compiled snapshot."""
from __future__ import annotations

import copy

import pytest

from config_check import config, errors
from engine.policy.snapshot import decode_snapshot, snapshot_of, trusted_config

BASE = {
    "listeners": [{"name": "main", "address": "127.0.0.1:8080", "routes": ["web", "health"]}],
    "routes": [
        {"name": "web", "match": {"path_prefix": "/"}, "to": [{"cluster": "api"}]},
        {"name": "health", "match": {"path": "/healthz"}, "direct_response": {"status": 200}},
    ],
    "clusters": [
        {"name": "api", "endpoints": [{"address": "127.0.0.1:9002"}]},
        {"name": "shadow", "endpoints": [{"address": "127.0.0.1:9003"}]},
    ],
}


def data(route: dict | None = None, cluster: dict | None = None, index: int = 0) -> dict:
    out = copy.deepcopy(BASE)
    out["routes"][index].update(route or {})
    out["clusters"][0].update(cluster or {})
    return out


# -- routes[].retry ----------------------------------------------------------------------------


def test_no_retry_fault_or_mirror_by_default():
    route = config(data()).routes[0]
    assert route.retry is None and route.fault is None and route.mirror is None


def test_an_empty_retry_block_takes_envoys_defaults():
    retry = config(data({"retry": {}})).routes[0].retry
    assert retry.attempts == 1
    assert retry.on == ("connect-failure", "reset", "gateway-error", "refused-stream")
    assert retry.retriable_statuses == () and retry.per_try_timeout == 0.0
    assert retry.methods == ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")
    assert (retry.backoff.base, retry.backoff.max, retry.backoff.ceiling) == (0.025, None, 0.25)


def test_a_full_retry_block_is_normalised():
    retry = config(data({"timeout": "5s", "retry": {
        "attempts": 2, "on": ["5xx", "retriable-status"], "retriable_statuses": [409, 429],
        "per_try_timeout": "1s", "backoff": {"base": "10ms", "max": "1s"},
        "methods": ["get", "Post"]}})).routes[0].retry
    assert (retry.attempts, retry.on, retry.retriable_statuses) == \
        (2, ("5xx", "retriable-status"), (409, 429))
    assert retry.per_try_timeout == 1.0 and retry.methods == ("GET", "POST")
    assert (retry.backoff.base, retry.backoff.ceiling) == (0.01, 1.0)


def test_attempts_zero_switches_retries_off_and_ten_is_the_most():
    assert config(data({"retry": {"attempts": 0}})).routes[0].retry.attempts == 0
    assert config(data({"retry": {"attempts": 10}})).routes[0].retry.attempts == 10
    assert errors(data({"retry": {"attempts": 11}})) == [
        "cfg.yaml: routes[0].retry.attempts: must be at most 10, got 11"]


def test_negative_attempts_are_refused():
    assert errors(data({"retry": {"attempts": -1}})) == [
        "cfg.yaml: routes[0].retry.attempts: must be at least 0, got -1"]


@pytest.mark.parametrize("attempts", [1.0, "2", True])
def test_attempts_is_a_strict_integer(attempts):
    (message,) = errors(data({"retry": {"attempts": attempts}}))
    assert message.startswith("cfg.yaml: routes[0].retry.attempts: ")


def test_an_unknown_retry_condition_names_the_choices():
    assert errors(data({"retry": {"on": ["reset", "timeout"]}})) == [
        "cfg.yaml: routes[0].retry.on[1]: expected one of connect-failure, reset, gateway-error, "
        "5xx, retriable-status, refused-stream; got 'timeout'"]


def test_retry_conditions_methods_and_statuses_are_not_repeated():
    assert errors(data({"retry": {
        "on": ["reset", "5xx", "reset", "retriable-status"], "retriable_statuses": [503, 503],
        "methods": ["GET", "get"]}})) == [
        "cfg.yaml: routes[0].retry.on[2]: 'reset' is already on[0]",
        "cfg.yaml: routes[0].retry.methods[1]: 'GET' is already methods[0]",
        "cfg.yaml: routes[0].retry.retriable_statuses[1]: 503 is already retriable_statuses[0]"]


def test_empty_conditions_or_methods_are_refused():
    assert [e.split(": ")[1] for e in errors(data({"retry": {"on": [], "methods": []}}))] == \
        ["routes[0].retry.on", "routes[0].retry.methods"]


def test_retriable_status_needs_its_statuses():
    assert errors(data({"retry": {"on": ["retriable-status"]}})) == [
        "cfg.yaml: routes[0].retry.retriable_statuses: required with on: retriable-status "
        "(which statuses to retry)"]


def test_statuses_without_retriable_status_are_an_error():
    assert errors(data({"retry": {"retriable_statuses": [409]}})) == [
        "cfg.yaml: routes[0].retry.retriable_statuses: has no effect unless 'on' lists "
        "retriable-status; add it there"]


@pytest.mark.parametrize("status", [399, 600, 200])
def test_retriable_statuses_are_400_to_599(status):
    (message,) = errors(data({"retry": {"on": ["retriable-status"],
                                        "retriable_statuses": [status]}}))
    assert message.startswith("cfg.yaml: routes[0].retry.retriable_statuses[0]: must be")


def test_a_per_try_timeout_above_the_route_timeout_is_refused():
    assert errors(data({"timeout": "2s", "retry": {"per_try_timeout": "3s"}})) == [
        "cfg.yaml: routes[0].retry.per_try_timeout: 3s is longer than the route's timeout (2s), "
        "which ends every try first"]


def test_a_per_try_timeout_equal_to_the_route_timeout_or_without_one_is_accepted():
    config(data({"timeout": "2s", "retry": {"per_try_timeout": "2s"}}))
    config(data({"timeout": "0s", "retry": {"per_try_timeout": "1h"}}))


def test_the_per_try_timeout_is_checked_against_the_default_route_timeout():
    (message,) = errors(data({"retry": {"per_try_timeout": "20s"}}))
    assert message.startswith("cfg.yaml: routes[0].retry.per_try_timeout: 20s is longer than "
                              "the route's timeout (15s)")


def test_per_try_timeout_is_a_timeout():
    assert errors(data({"retry": {"per_try_timeout": "5"}})) == [
        "cfg.yaml: routes[0].retry.per_try_timeout: '5' has no unit: write '5s' or '5ms'"]


def test_backoff_base_must_be_above_zero_and_max_at_least_base():
    assert errors(data({"retry": {"backoff": {"base": "0s"}}})) == [
        "cfg.yaml: routes[0].retry.backoff.base: a duration must be greater than zero, got 0s"]
    assert errors(data({"retry": {"backoff": {"base": "100ms", "max": "50ms"}}})) == [
        "cfg.yaml: routes[0].retry.backoff.max: 50ms is shorter than base (100ms)"]
    assert config(data({"retry": {"backoff": {"base": "1s"}}})).routes[0].retry.backoff \
        .ceiling == 10.0


def test_an_unknown_retry_field_gets_a_suggestion():
    (message,) = errors(data({"retry": {"attempt": 2}}))
    assert message.startswith("cfg.yaml: routes[0].retry.attempt: unknown field")
    assert "attempts" in message


# -- routes[].fault ----------------------------------------------------------------------------


def test_a_fault_with_its_defaults():
    fault = config(data({"fault": {"delay": {"fixed": "100ms"}, "abort": {"status": 503},
                                   "only_with_header": "X-Sluice-Fault"}})).routes[0].fault
    assert (fault.delay.fixed, fault.delay.percent) == (0.1, 100.0)
    assert (fault.abort.status, fault.abort.grpc_status, fault.abort.percent) == \
        (503, None, 100.0)
    assert fault.only_with_header == "x-sluice-fault"


def test_percentages_are_floats_and_an_integer_is_read_as_one():
    fault = config(data({"fault": {"delay": {"fixed": "1s", "percent": 1},
                                   "abort": {"grpc_status": 14, "percent": 0.1}}})).routes[0].fault
    assert fault.delay.percent == 1.0 and type(fault.delay.percent) is float
    assert (fault.abort.grpc_status, fault.abort.percent) == (14, 0.1)


def test_a_fault_needs_a_delay_or_an_abort():
    assert errors(data({"fault": {"only_with_header": "x-fault"}})) == [
        "cfg.yaml: routes[0].fault: needs 'delay', 'abort' or both (the fault to inject)"]


def test_a_delay_needs_its_duration():
    (message,) = errors(data({"fault": {"delay": {"percent": 5}}}))
    assert message.startswith("cfg.yaml: routes[0].fault.delay.fixed: ")


def test_an_abort_has_exactly_one_status():
    assert errors(data({"fault": {"abort": {"percent": 5}}})) == [
        "cfg.yaml: routes[0].fault.abort: needs one of 'status' (HTTP) and 'grpc_status' (gRPC)"]
    assert errors(data({"fault": {"abort": {"status": 503, "grpc_status": 14}}})) == [
        "cfg.yaml: routes[0].fault.abort.grpc_status: has both 'status' and 'grpc_status'; "
        "keep one"]


@pytest.mark.parametrize("abort, field", [
    ({"status": 199}, "status"), ({"status": 600}, "status"),
    ({"grpc_status": -1}, "grpc_status"), ({"grpc_status": 17}, "grpc_status"),
])
def test_abort_statuses_out_of_range(abort, field):
    (message,) = errors(data({"fault": {"abort": abort}}))
    assert message.startswith(f"cfg.yaml: routes[0].fault.abort.{field}: must be")


def test_a_percent_above_100_is_refused():
    assert errors(data({"fault": {"abort": {"status": 503, "percent": 100.5}}})) == [
        "cfg.yaml: routes[0].fault.abort.percent: must be at most 100, got 100.5"]


@pytest.mark.parametrize("percent", [-1, "5", True, ".nan"])
def test_a_percent_is_a_number_from_0_to_100(percent):
    value = float("nan") if percent == ".nan" else percent
    (message,) = errors(data({"fault": {"delay": {"fixed": "1s", "percent": value}}}))
    assert message.startswith("cfg.yaml: routes[0].fault.delay.percent: ")


def test_only_with_header_must_be_a_header_name():
    (message,) = errors(data({"fault": {"abort": {"status": 500},
                                        "only_with_header": "x fault"}}))
    assert message.startswith("cfg.yaml: routes[0].fault.only_with_header: ")


# -- routes[].mirror ---------------------------------------------------------------------------


def test_a_mirror_with_its_default_percent():
    mirror = config(data({"mirror": {"cluster": "shadow"}})).routes[0].mirror
    assert (mirror.cluster, mirror.percent) == ("shadow", 100.0)


def test_the_mirror_cluster_must_be_defined():
    assert errors(data({"mirror": {"cluster": "shadwo", "percent": 10}})) == [
        "cfg.yaml: routes[0].mirror.cluster: cluster 'shadwo' is not defined; did you mean "
        "'shadow'?"]


def test_a_bad_mirror_reference_is_reported_beside_other_errors():
    """The loader's tolerant cross-reference pass finds it in a config that has other errors."""
    broken = data({"mirror": {"cluster": "nowhere"}})
    broken["clusters"][0]["pol"] = {}
    assert sorted(errors(broken)) == [
        "cfg.yaml: clusters[0].pol: unknown field; did you mean 'pool'?",
        "cfg.yaml: routes[0].mirror.cluster: cluster 'nowhere' is not defined"]


def test_a_mirror_percent_above_100_is_refused():
    assert errors(data({"mirror": {"cluster": "shadow", "percent": 150}})) == [
        "cfg.yaml: routes[0].mirror.percent: must be at most 100, got 150"]


# -- nothing to retry, fault or mirror on a direct response ------------------------------------


@pytest.mark.parametrize("field, value, what", [
    ("retry", {}, "nothing to retry"),
    ("fault", {"abort": {"status": 503}}, "nothing goes upstream to delay or abort"),
    ("mirror", {"cluster": "shadow"}, "nothing to mirror"),
])
def test_resilience_on_a_direct_response_is_an_error(field, value, what):
    assert errors(data({field: value}, index=1)) == [
        f"cfg.yaml: routes[1].{field}: a route with direct_response has no upstream ({what})"]


# -- clusters[].circuit_breakers and clusters[].retry_budget -----------------------------------


def test_every_cluster_has_envoys_circuit_breakers_and_no_retry_budget_by_default():
    cluster = config(data()).clusters[0]
    cb = cluster.circuit_breakers
    assert (cb.max_requests, cb.max_retries) == (1024, 3)
    assert cluster.retry_budget is None


def test_circuit_breakers_and_a_retry_budget():
    cluster = config(data(cluster={"circuit_breakers": {"max_requests": 10, "max_retries": 0},
                                   "retry_budget": {}})).clusters[0]
    assert (cluster.circuit_breakers.max_requests, cluster.circuit_breakers.max_retries) == \
        (10, 0)
    assert (cluster.retry_budget.percent, cluster.retry_budget.min_concurrency) == (20.0, 3)
    budget = config(data(cluster={"retry_budget": {"percent": 50, "min_concurrency": 0}})) \
        .clusters[0].retry_budget
    assert (budget.percent, budget.min_concurrency) == (50.0, 0)


def test_circuit_breaker_bounds():
    assert errors(data(cluster={"circuit_breakers": {"max_requests": 0, "max_retries": -1}})) \
        == ["cfg.yaml: clusters[0].circuit_breakers.max_requests: must be at least 1, got 0",
            "cfg.yaml: clusters[0].circuit_breakers.max_retries: must be at least 0, got -1"]


def test_retry_budget_bounds():
    assert errors(data(cluster={"retry_budget": {"percent": 101, "min_concurrency": -2}})) == [
        "cfg.yaml: clusters[0].retry_budget.percent: must be at most 100, got 101",
        "cfg.yaml: clusters[0].retry_budget.min_concurrency: must be at least 0, got -2"]


# -- through a snapshot ------------------------------------------------------------------------


def test_the_fields_survive_a_compiled_snapshot():
    checked = config(data({"timeout": "5s", "retry": {
        "attempts": 3, "on": ["retriable-status", "reset"], "retriable_statuses": [409],
        "per_try_timeout": "1s", "backoff": {"base": "50ms"}, "methods": ["GET", "POST"]},
        "fault": {"delay": {"fixed": "100ms", "percent": 1},
                  "abort": {"grpc_status": 14, "percent": 0.5}, "only_with_header": "X-F"},
        "mirror": {"cluster": "shadow", "percent": 10}},
        cluster={"circuit_breakers": {"max_requests": 100}, "retry_budget": {"percent": 25}}))
    header, snap = snapshot_of(checked, "cfg.yaml", created_at=0)
    assert decode_snapshot(snap)[1] == checked
    trusted = trusted_config(snap, header.sha256)[1]
    assert trusted == checked
    assert type(trusted.routes[0].fault.delay.percent) is float
    assert trusted.routes[0].retry.backoff.max is None

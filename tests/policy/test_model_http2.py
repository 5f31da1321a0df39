"""The HTTP/2 fields of the model (engine/policy/model.py): `listeners[].protocols` with http2,
`listeners[].http2`, `clusters[].protocol: http2` and `clusters[].http2`, through the loader:
every refusal is one `FILE: path: reason` line naming the field."""
from __future__ import annotations

import copy

import pytest

from config_check import config, errors
from engine.policy import check_data, check_text
from engine.policy.model import ClusterHTTP2, ListenerHTTP2

BASE = {
    "listeners": [{"name": "main", "address": "127.0.0.1:8080", "routes": ["web"]}],
    "routes": [{"name": "web", "match": {"path_prefix": "/"}, "to": [{"cluster": "api"}]}],
    "clusters": [{"name": "api", "endpoints": [{"address": "127.0.0.1:9002"}]}],
}


def data(listener: dict | None = None, cluster: dict | None = None) -> dict:
    out = copy.deepcopy(BASE)
    out["listeners"][0].update(listener or {})
    out["clusters"][0].update(cluster or {})
    return out


# -- listeners[].protocols ---------------------------------------------------------------------


@pytest.mark.parametrize("protocols", [["http1"], ["http2"], ["http2", "http1"],
                                       ["http1", "http2"]])
def test_http1_and_http2_are_accepted_in_any_order(protocols):
    assert config(data({"protocols": protocols})).listeners[0].protocols == tuple(protocols)


def test_protocols_default_to_http1_only():
    assert config(data()).listeners[0].protocols == ("http1",)


def test_a_repeated_protocol_is_refused_at_the_repeat():
    assert errors(data({"protocols": ["http2", "http1", "http2"]})) == [
        "cfg.yaml: listeners[0].protocols[2]: 'http2' is already protocols[0]"]


def test_an_empty_or_unknown_protocol_list_is_refused():
    (error,) = errors(data({"protocols": []}))
    assert error.startswith("cfg.yaml: listeners[0].protocols: "), error
    (error,) = errors(data({"protocols": ["h2"]}))
    assert error.startswith("cfg.yaml: listeners[0].protocols[0]: expected one of http1, "
                            "http2"), error


# -- listeners[].http2 -------------------------------------------------------------------------


def test_listener_http2_defaults():
    h2 = config(data({"protocols": ["http2", "http1"]})).listeners[0].http2
    assert (h2.max_concurrent_streams, h2.initial_stream_window,
            h2.initial_connection_window) == (128, 65535, 1048576)
    assert h2 == ListenerHTTP2()


def test_listener_http2_settings_are_read_from_yaml():
    result = check_text("""
listeners:
  - name: main
    address: 127.0.0.1:8080
    routes: [web]
    protocols: [http2]
    http2: {max_concurrent_streams: 1000, initial_stream_window: 1048576,
            initial_connection_window: 16777216}
routes: [{name: web, match: {}, direct_response: {status: 200}}]
""", "cfg.yaml")
    assert result.ok, [str(p) for p in result.problems]
    h2 = result.config.listeners[0].http2
    assert (h2.max_concurrent_streams, h2.initial_stream_window,
            h2.initial_connection_window) == (1000, 1048576, 16777216)


@pytest.mark.parametrize("field, value, reason", [
    ("max_concurrent_streams", 0, "must be at least 1, got 0"),
    ("max_concurrent_streams", 2**31, "must be at most 2147483647, got 2147483648"),
    # a window below the protocol's initial 65535 is refused: the connection window can only
    # grow, and a smaller stream window would stall every upload at once
    ("initial_stream_window", 65534, "must be at least 65535, got 65534"),
    ("initial_stream_window", 2**31, "must be at most 2147483647, got 2147483648"),
    ("initial_connection_window", 1024, "must be at least 65535, got 1024"),
    ("initial_connection_window", 2**31, "must be at most 2147483647, got 2147483648"),
    ("max_concurrent_streams", "100", "expected an integer, got '100'"),
    ("initial_stream_window", 65535.0, "expected an integer, got the number 65535.0"),
    ("max_streams", 1, "unknown field; did you mean 'max_concurrent_streams'?"),
])
def test_listener_http2_settings_are_bounded_with_their_path(field, value, reason):
    assert errors(data({"protocols": ["http2"], "http2": {field: value}})) == [
        f"cfg.yaml: listeners[0].http2.{field}: {reason}"]


def test_listener_http2_settings_at_their_bounds_are_accepted():
    h2 = config(data({"protocols": ["http2"], "http2": {
        "max_concurrent_streams": 2**31 - 1, "initial_stream_window": 2**31 - 1,
        "initial_connection_window": 65535}})).listeners[0].http2
    assert (h2.max_concurrent_streams, h2.initial_stream_window,
            h2.initial_connection_window) == (2**31 - 1, 2**31 - 1, 65535)


def test_a_listener_http2_block_without_http2_loads_with_a_warning():
    """Not an error: a rollout may take http2 out of protocols and put it back without
    deleting its settings (engine/policy/lint.py says they do nothing meanwhile)."""
    result = check_data(data({"http2": {"max_concurrent_streams": 10}}), "cfg.yaml")
    assert result.ok
    assert [str(p) for p in result.warnings] == [
        "cfg.yaml: listeners[0].http2: warning: has no effect: protocols does not list http2"]


# -- clusters[].protocol and clusters[].http2 --------------------------------------------------


def test_an_http2_cluster_is_accepted_with_its_defaults():
    cluster = config(data(cluster={"protocol": "http2"})).clusters[0]
    assert cluster.protocol == "http2"
    h2 = cluster.http2
    assert (h2.max_concurrent_streams, h2.initial_stream_window, h2.initial_connection_window,
            h2.ping_interval, h2.ping_timeout) == (100, 65535, 1048576, 30.0, 5.0)
    assert h2 == ClusterHTTP2()


def test_cluster_http2_durations_are_parsed_and_ping_interval_0s_is_never():
    cluster = config(data(cluster={"protocol": "http2", "http2": {
        "ping_interval": "0s", "ping_timeout": "250ms", "max_concurrent_streams": 1,
        "initial_stream_window": 4194304, "initial_connection_window": 16777216}})).clusters[0]
    h2 = cluster.http2
    assert (h2.ping_interval, h2.ping_timeout) == (0.0, 0.25)
    assert (h2.max_concurrent_streams, h2.initial_stream_window,
            h2.initial_connection_window) == (1, 4194304, 16777216)


@pytest.mark.parametrize("field, value, reason", [
    ("max_concurrent_streams", 0, "must be at least 1, got 0"),
    ("initial_stream_window", 100, "must be at least 65535, got 100"),
    ("initial_connection_window", 2**31, "must be at most 2147483647, got 2147483648"),
    ("ping_timeout", "0s", "a duration must be greater than zero, got 0s"),
    ("ping_interval", "5", "'5' has no unit: write '5s' or '5ms'"),
    ("ping_interval", -1, "a duration must be greater than zero, got -1"),
    ("ping", "1s", "unknown field; expected one of: max_concurrent_streams, "
                             "initial_stream_window, initial_connection_window, ping_interval, "
                             "ping_timeout"),
])
def test_cluster_http2_settings_are_bounded_with_their_path(field, value, reason):
    (error,) = errors(data(cluster={"protocol": "http2", "http2": {field: value}}))
    assert error.startswith(f"cfg.yaml: clusters[0].http2.{field}: {reason}"), error


def test_an_unknown_cluster_protocol_is_refused():
    (error,) = errors(data(cluster={"protocol": "h2c"}))
    assert error.startswith("cfg.yaml: clusters[0].protocol: expected one of http1, http2"), error


def test_the_http2_blocks_are_in_the_snapshot_content_and_round_trip():
    from engine.policy.snapshot import decode_snapshot, encode_snapshot

    original = config(data({"protocols": ["http2", "http1"],
                            "http2": {"max_concurrent_streams": 64}},
                           {"protocol": "http2", "http2": {"ping_interval": "10s"}}))
    _, decoded = decode_snapshot(encode_snapshot(original, "cfg.yaml"))
    assert decoded == original
    assert decoded.listeners[0].http2.max_concurrent_streams == 64
    assert decoded.clusters[0].http2.ping_interval == 10.0

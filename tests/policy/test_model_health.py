"""The health-check fields of the model (engine/policy/model.py): `clusters[].health_check` and
`clusters[].panic_threshold`, through the loader: every refusal is one `FILE: path: reason`
line naming the field, and a checked config survives a compiled snapshot."""
from __future__ import annotations

import copy

import pytest

from config_check import config, errors
from engine.policy.model import status_ranges

BASE = {
    "listeners": [{"name": "main", "address": "127.0.0.1:8080", "routes": ["web"]}],
    "routes": [{"name": "web", "match": {"path_prefix": "/"}, "to": [{"cluster": "api"}]}],
    "clusters": [{"name": "api", "endpoints": [{"address": "127.0.0.1:9002"}]}],
}
WHERE = "cfg.yaml: clusters[0]"


def data(**cluster) -> dict:
    out = copy.deepcopy(BASE)
    out["clusters"][0].update(cluster)
    return out


def test_defaults_no_health_check_and_a_panic_threshold_of_50():
    c = config(data()).clusters[0]
    assert c.health_check is None and c.panic_threshold == 50


def test_an_http_check_with_its_defaults():
    hc = config(data(health_check={"http": {"path": "/healthz"}})).clusters[0].health_check
    assert hc.kind == "http" and hc.http.path == "/healthz" and hc.http.host is None
    assert hc.http.expect == ("200-399",) and hc.http.ranges == ((200, 399),)
    assert (hc.interval, hc.timeout, hc.healthy_threshold, hc.unhealthy_threshold) == \
        (5.0, 1.0, 2, 3)


def test_the_config_md_example_is_accepted():
    hc = config(data(health_check={
        "http": {"path": "/healthz", "host": "api.internal", "expect": ["200-399"]},
        "interval": "5s", "timeout": "1s", "healthy_threshold": 2,
        "unhealthy_threshold": 3})).clusters[0].health_check
    assert hc.http.host == "api.internal"


def test_a_tcp_check_and_statuses_given_as_numbers():
    assert config(data(health_check={"tcp": {}})).clusters[0].health_check.kind == "tcp"
    hc = config(data(health_check={"http": {"path": "/", "expect": [204, "300-301"]}}))
    assert hc.clusters[0].health_check.http.ranges == ((204, 204), (300, 301))
    assert status_ranges(("200", "500-503")) == ((200, 200), (500, 503))


@pytest.mark.parametrize("check, where, reason", [
    ({"tcp": {}, "interval": "0s"}, "interval", "greater than zero"),
    ({"tcp": {}, "interval": "1s", "timeout": "2s"}, "timeout",
     "2s is longer than the interval (1s)"),
    ({"http": {"path": "healthz"}}, "http.path", "starts with '/'"),
    ({"http": {"path": "/a b"}}, "http.path", "a space"),
    ({"tcp": {}, "healthy_threshold": 0}, "healthy_threshold", "at least 1"),
    ({"tcp": {}, "unhealthy_threshold": 0}, "unhealthy_threshold", "at least 1"),
    ({"http": {"path": "/", "expect": ["600-100"]}}, "http.expect[0]", "600 is not an HTTP"),
    ({"http": {"path": "/", "expect": ["300-200"]}}, "http.expect[0]", "runs backwards"),
    ({"http": {"path": "/", "expect": ["2xx"]}}, "http.expect[0]", "not a status"),
    ({"http": {"path": "/", "expect": []}}, "http.expect", "at least one"),
    ({"http": {"path": "/", "host": "*.example.com"}}, "http.host", "not a wildcard"),
    ({"interval": "1s"}, "", "exactly one of 'http' and 'tcp'"),
    ({"http": {"path": "/"}, "tcp": {}}, "", "has both 'http' and 'tcp'"),
    ({"tcp": {"port": 1}}, "tcp.port", ""),
])
def test_nonsense_settings_are_errors_at_their_path(check, where, reason):
    found = errors(data(health_check=check))
    path = f"{WHERE}.health_check" + (f".{where}" if where else "")
    assert any(e.startswith(path + ":") and reason in e for e in found), found


@pytest.mark.parametrize("value", [-1, 101, 12.5, "50%"])
def test_panic_threshold_is_a_whole_percent(value):
    found = errors(data(panic_threshold=value))
    assert found and all(e.startswith(f"{WHERE}.panic_threshold:") for e in found), found


def test_a_checked_cluster_survives_a_compiled_snapshot():
    from engine.policy.snapshot import snapshot_of, trusted_config

    cfg = config(data(health_check={"http": {"path": "/h?x=1", "expect": ["200", "301-302"]},
                                    "interval": "2s"}, panic_threshold=0))
    header, blob = snapshot_of(cfg, "cfg.yaml")
    _, again = trusted_config(blob, header.sha256, "cfg.yaml")
    assert again.clusters[0].health_check == cfg.clusters[0].health_check
    tcp = config(data(health_check={"tcp": {}}))
    header, blob = snapshot_of(tcp, "cfg.yaml")
    assert trusted_config(blob, header.sha256, "cfg.yaml")[1].clusters[0].health_check.kind == "tcp"

"""`routes[].match.grpc` (engine/policy/model.py): a gRPC service or method written as the path
condition it is, refused with its path when wrong, and kept through a compiled snapshot (both
the validating load and the worker's trusted one)."""
from __future__ import annotations

import copy

import pytest

from engine.policy import check_data
from engine.policy.snapshot import encode_snapshot, load_snapshot, trusted_config

BASE = {
    "listeners": [{"name": "main", "address": "127.0.0.1:8080", "routes": ["rpc"],
                   "protocols": ["http2", "http1"]}],
    "routes": [{"name": "rpc", "match": {}, "to": [{"cluster": "api"}]}],
    "clusters": [{"name": "api", "endpoints": [{"address": "127.0.0.1:9002"}],
                  "protocol": "http2"}],
}


def check(match: dict):
    value = copy.deepcopy(BASE)
    value["routes"][0]["match"] = match
    return check_data(value, "cfg.yaml")


def test_a_method_is_an_exact_path_and_a_service_a_prefix():
    m = check({"grpc": {"service": "shop.v1.Cart", "method": "Get"}}).config.routes[0].match
    assert (m.path, m.path_prefix) == ("/shop.v1.Cart/Get", None)
    m = check({"grpc": {"service": "shop.v1.Cart"}}).config.routes[0].match
    assert (m.path, m.path_prefix) == (None, "/shop.v1.Cart/")


@pytest.mark.parametrize("match, where, reason", [
    ({"grpc": {"service": "shop.Cart"}, "path": "/x"}, "routes[0].match.grpc",
     "use only one of path, path_prefix, path_regex, grpc"),
    ({"grpc": {"service": "9shop"}}, "routes[0].match.grpc.service", "pattern"),
    ({"grpc": {"service": "shop.Cart", "method": "a.b"}}, "routes[0].match.grpc.method",
     "pattern"),
    ({"grpc": {"method": "Get"}}, "routes[0].match.grpc.service", "required"),
])
def test_a_bad_grpc_match_is_refused_with_its_path(match, where, reason):
    errors = [str(p) for p in check(match).errors]
    assert any(e.startswith(f"cfg.yaml: {where}: ") and reason in e for e in errors), errors


def test_a_grpc_match_survives_a_compiled_snapshot():
    config = check({"grpc": {"service": "shop.Cart"}}).config
    blob = encode_snapshot(config, "cfg.yaml", created_at=1714564800)
    header, loaded = load_snapshot(blob)
    assert loaded == config and loaded.routes[0].match.path_prefix == "/shop.Cart/"
    _, trusted = trusted_config(blob, header.sha256)
    assert trusted.routes[0].match == config.routes[0].match

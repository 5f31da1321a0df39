"""engine/policy/trusted.py and snapshot.trusted_config: a snapshot's content built back into the
model without validation is the very config validation builds from it, type for type."""
from __future__ import annotations

import hashlib
import json
import typing
from pathlib import Path

import msgpack
import pytest
from pydantic import BaseModel

from engine.policy import load_config, load_config_text
from engine.policy.addresses import Address
from engine.policy.fields import RequestKey
from engine.policy.model import Config
from engine.policy.snapshot import (
    CONTENT_KEY,
    MAGIC_KEY,
    SnapshotError,
    load_snapshot,
    snapshot_of,
    trusted_config,
)
from engine.policy.trusted import ShapeError, _decoder, construct

ROOT = Path(__file__).resolve().parents[2]

# every field of the model written at least once, most with a value other than the default
EVERYTHING = """\
admin: {address: "[::1]:9901", token: s3cret}
access_log: {path: /tmp/sluice-access.log, format: combined}
listeners:
  - name: main
    address: 0.0.0.0:8080
    routes: [exact, prefix, regex, direct, split, limited, by-header]
    limits: {max_head_bytes: 32768, max_headers: 50, max_uri_bytes: 4096, max_connections: 10}
    timeouts: {header: 5s, idle: 2m, request_body: 250ms, send: 0s, max_connection_duration: 1h}
    paths: {normalize: false, merge_slashes: false, escaped_slashes: keep}
  - name: v6
    address: "[::1]:8081"
    routes: [mtls, direct]
    protocols: [http1]
    tls:
      certificates: [{cert: CERTS/server.crt, key: CERTS/server.key},
                     {cert: CERTS/client.crt, key: CERTS/client.key}]
      min_version: "1.3"
      client_ca: CERTS/ca.crt
      forward_client_cert: sanitize_set
routes:
  - name: mtls
    match: {client_identity: "spiffe://demo.local/ns/demo/*"}
    to: [{cluster: least}]
  - name: exact
    match: {host: API.example.com, path: /exact, methods: [get, Post],
            headers: {X-Tenant: acme, x-env: prod}}
    to: [{cluster: ring-cookie}]
  - name: prefix
    match: {host: "*.example.com", path_prefix: /api/}
    rewrite: {path_prefix: /v2/, set_headers: {X-Gateway: sluice}, remove_headers: [X-Internal]}
    timeout: 0s
    to: [{cluster: ring-header}]
    filters: [auth]
  - {name: regex, match: {path_regex: "/r/[0-9]+"}, to: [{cluster: ring-ip}]}
  - name: direct
    match: {path: /health}
    direct_response: {status: 204, headers: {cache-control: no-store}}
  - name: split
    match: {path_prefix: /split}
    to: [{cluster: ring-cookie, weight: 3}, {cluster: least, weight: 1}]
  - name: limited
    match: {path_prefix: /limited}
    rate_limit: {rate: 2.5, burst: 5, per: client_ip}
    to: [{cluster: least}]
  - name: by-header
    match: {path_prefix: /}
    rate_limit: {rate: 100, burst: 20, per: "header:X-Api-Key"}
    direct_response: {status: 503, body: "down\\n"}
clusters:
  - name: ring-cookie
    balancer: ring_hash
    hash_on: cookie:Session
    connect_timeout: 250ms
    pool: {max_connections: 8, idle_timeout: 5s, max_requests_per_connection: 100}
    endpoints: [{address: "127.0.0.1:9001", weight: 3}, {address: "[::1]:9002"},
                {address: "backend.internal:9003"}]
  - {name: ring-header, balancer: ring_hash, hash_on: "header:X-User",
     endpoints: [{address: "127.0.0.1:9004"}]}
  - {name: ring-ip, balancer: ring_hash, hash_on: client_ip,
     endpoints: [{address: "127.0.0.1:9005"}]}
  - name: least
    balancer: least_request
    tls: {ca: CERTS/ca.crt, sni: api.internal, cert: CERTS/client.crt, key: CERTS/client.key}
    endpoints: [{address: "127.0.0.1:9006"}]
filters:
  - name: auth
    python: "my_filters:Auth"
    config: {keys: [a, b, [1, 2.5]], nested: {deep: [{x: null}]}, flag: true}
"""


_CERTS: list[str] = []


def everything() -> str:
    """EVERYTHING with real certificate files (made once, by config/make_demo_certs.py)."""
    if not _CERTS:
        import subprocess
        import sys
        import tempfile

        directory = tempfile.mkdtemp(prefix="sluice-trusted-")
        subprocess.run([sys.executable, str(ROOT / "config" / "make_demo_certs.py"), directory],
                       check=True, capture_output=True)
        _CERTS.append(directory)
    return EVERYTHING.replace("CERTS", _CERTS[0])


def same(a, b, where="config") -> None:
    """a and b are equal with the same types all the way down (== alone would take a list for a
    tuple's equal or 1 for 1.0). Only a model's field order may differ (trusted.py: a trusted
    instance keeps the content's sorted order)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, BaseModel):
        assert sorted(a.__dict__) == sorted(b.__dict__), where
        assert a.model_fields_set == b.model_fields_set, where
        assert a.__pydantic_extra__ == b.__pydantic_extra__ and \
            a.__pydantic_private__ == b.__pydantic_private__, where
        for name in a.__dict__:
            same(a.__dict__[name], b.__dict__[name], f"{where}.{name}")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _bench_config(n: int) -> Config:
    from bench.reload_stall import generate

    return load_config_text(json.dumps(generate(n, 8080, 9901)))


CONFIGS = {
    "everything": lambda: load_config_text(everything()),
    "config/example.yaml": lambda: load_config(ROOT / "config" / "example.yaml"),
    "CONFIG.md example": lambda: load_config(ROOT / "tests/policy/fixtures/config_md_example.yaml"),
    "bench, 500 routes": lambda: _bench_config(500),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_trusted_is_what_validation_builds_from_the_same_snapshot(name):
    config = CONFIGS[name]()
    header, data = snapshot_of(config, "c.yaml")
    got_header, got = trusted_config(data, header.sha256)
    assert got_header == header
    same(got, load_snapshot(data)[1])
    assert got == config


@pytest.mark.parametrize("name", list(CONFIGS))
def test_a_snapshot_round_trips_through_the_trusted_path(name):
    config = CONFIGS[name]()
    header, data = snapshot_of(config, "c.yaml", created_at=0)
    again = snapshot_of(trusted_config(data, header.sha256)[1], "c.yaml", created_at=0)[1]
    assert again == data


def test_key_specs_are_typed_and_normalised_but_written_as_the_user_writes_them():
    config = load_config_text(everything())
    header, data = snapshot_of(config, "c.yaml")
    for c in (config, trusted_config(data, header.sha256)[1]):
        assert c.cluster("ring-cookie").hash_on == RequestKey("cookie", "Session")
        assert c.cluster("ring-header").hash_on == RequestKey("header", "x-user")
        assert c.cluster("ring-ip").hash_on == RequestKey("client_ip")
        assert c.cluster("least").hash_on is None
        assert c.route("by-header").rate_limit.per == RequestKey("header", "x-api-key")
        assert c.route("limited").rate_limit.per == RequestKey("client_ip")
        assert c.listeners[1].address == Address("::1", 8081)
    plain = config.model_dump(mode="json")
    assert plain["clusters"][0]["hash_on"] == "cookie:Session"
    assert plain["routes"][-1]["rate_limit"]["per"] == "header:x-api-key"
    assert str(config.route("limited").rate_limit.per) == "client_ip"
    # a python-mode dump validates back to the same key, and so does a key given typed
    limit = config.route("by-header").rate_limit
    assert type(limit).model_validate(limit.model_dump()) == limit
    assert type(limit).model_validate({"rate": 1, "burst": 1,
                                       "per": RequestKey("header", "X-A")}).per == \
        RequestKey("header", "x-a")


def test_every_model_field_has_a_trusted_decoder():
    """A field type added to the model without a decoder here would refuse every snapshot in
    every worker: it must fail in this test instead."""
    seen: set[type] = set()

    def walk(cls: type[BaseModel]) -> None:
        if cls in seen:
            return
        seen.add(cls)
        for name, info in cls.model_fields.items():
            _decoder(info.annotation)     # raises TypeError when there is none
            for t in _types_in(info.annotation):
                if isinstance(t, type) and issubclass(t, BaseModel):
                    walk(t)

    walk(Config)
    assert len(seen) > 10


def _types_in(annotation):
    yield annotation
    for arg in typing.get_args(annotation):
        yield from _types_in(arg)


def _resigned(content_plain) -> tuple[bytes, str]:
    """A snapshot of arbitrary content with a correct digest (as if the validator had made
    it): what the shape checks alone must refuse."""
    content = msgpack.packb(content_plain, use_bin_type=True)
    digest = hashlib.sha256(content).hexdigest()
    header = {"schema_version": 1, "config_version": digest[:12], "sha256": digest,
              "created_at": "2024-01-01T00:00:00Z", "source": "x"}
    return msgpack.packb({MAGIC_KEY: header, CONTENT_KEY: content}, use_bin_type=True), digest


@pytest.mark.parametrize("change, message", [
    (lambda p: p["routes"][0].update(tmeout=p["routes"][0].pop("timeout")),
     "Route: no field 'timeout'"),
    (lambda p: p["routes"][0].update(extra=1), r"Route: expected a map of its \d+ fields"),
    (lambda p: p.update(listeners="main"), "does not fit this build's config model"),
    (lambda p: p["clusters"][0].update(endpoints=[{"address": 5, "weight": 1}]),
     "does not fit this build's config model"),
])
def test_content_not_of_the_models_shape_is_refused(change, message):
    plain = load_config_text(everything()).model_dump(mode="json")
    change(plain)
    data, digest = _resigned(plain)
    with pytest.raises(SnapshotError, match=message):
        trusted_config(data, digest)


def test_a_digest_the_header_does_not_carry_is_refused():
    config = load_config_text(everything())
    header, data = snapshot_of(config, "c.yaml")
    with pytest.raises(SnapshotError, match="does not match the digest it was validated with"):
        trusted_config(data, "0" * 64)


def test_construct_refuses_what_is_not_a_map():
    with pytest.raises(ShapeError, match="Config: expected a map"):
        construct(Config, [])

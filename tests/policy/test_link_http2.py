"""engine/policy/link.py: a listener's `protocols` and `http2` block reach its compiled Listener,
a cluster's `protocol` and `http2` block reach its Pools, and the pool key gives new pools when
an HTTP/2 setting changes (the SETTINGS of an open connection were announced when it opened)."""
from __future__ import annotations

import pytest

from engine._fast.limiter import SharedBuckets
from engine._fast.pool import PROTOCOL
from engine.policy.link import link
from engine.policy.model import Config
from engine.policy.tls_client import ClientContexts
from tls_certs import CA


def config(listener: dict | None = None, cluster: dict | None = None,
           tls: dict | None = None) -> Config:
    c = {"name": "api", "endpoints": [{"address": "10.0.0.5:8443"},
                                      {"address": "api-2.internal:8443"}], **(cluster or {})}
    if tls is not None:
        c["tls"] = tls
    return Config.model_validate({
        "listeners": [{"name": "main", "address": "127.0.0.1:8080", "routes": ["web"],
                       **(listener or {})}],
        "routes": [{"name": "web", "match": {"path_prefix": "/"}, "to": [{"cluster": "api"}]}],
        "clusters": [c],
    })


def linked(cfg: Config, previous=None, contexts=None):
    return link(cfg, SharedBuckets(8), previous, tls_contexts=contexts or ClientContexts())


def pools(tables) -> list:
    return [ep.pool for ep in tables.clusters["api"].endpoints]


# -- listeners ---------------------------------------------------------------------------------


@pytest.mark.parametrize("protocols, http1, http2", [
    (["http1"], True, False),
    (["http2"], False, True),
    (["http2", "http1"], True, True),
    (["http1", "http2"], True, True),
])
def test_protocols_become_the_listeners_http1_and_http2_flags(protocols, http1, http2):
    lst = linked(config({"protocols": protocols})).listeners["main"]
    assert (lst.http1, lst.http2) == (http1, http2)


def test_a_listener_announces_the_default_http2_settings():
    lst = linked(config({"protocols": ["http2", "http1"]})).listeners["main"]
    assert (lst.h2_max_streams, lst.h2_stream_window, lst.h2_conn_window) == \
        (128, 65535, 1048576)


def test_a_listener_announces_its_http2_settings():
    lst = linked(config({"protocols": ["http2"], "http2": {
        "max_concurrent_streams": 7, "initial_stream_window": 131072,
        "initial_connection_window": 2**31 - 1}})).listeners["main"]
    assert (lst.h2_max_streams, lst.h2_stream_window, lst.h2_conn_window) == \
        (7, 131072, 2**31 - 1)


def test_the_default_listener_serves_http1_only():
    lst = linked(config()).listeners["main"]
    assert (lst.http1, lst.http2) == (True, False)


# -- clusters and pools ------------------------------------------------------------------------


def test_an_http1_cluster_has_http1_pools():
    for pool in pools(linked(config())):
        assert pool.protocol == PROTOCOL["http1"]


def test_an_http2_cluster_has_http2_pools_with_the_default_settings():
    for pool in pools(linked(config(cluster={"protocol": "http2"}))):
        assert pool.protocol == PROTOCOL["http2"]
        assert (pool.h2_max_streams, pool.h2_stream_window, pool.h2_conn_window,
                pool.h2_ping_interval, pool.h2_ping_timeout) == (100, 65535, 1048576, 30.0, 5.0)


def test_an_http2_cluster_passes_its_settings_to_every_pool():
    tables = linked(config(cluster={"protocol": "http2", "http2": {
        "max_concurrent_streams": 250, "initial_stream_window": 1048576,
        "initial_connection_window": 8388608, "ping_interval": "0s", "ping_timeout": "1500ms"}}))
    for pool in pools(tables):
        assert (pool.h2_max_streams, pool.h2_stream_window, pool.h2_conn_window,
                pool.h2_ping_interval, pool.h2_ping_timeout) == (250, 1048576, 8388608, 0.0, 1.5)


@pytest.mark.parametrize("change", [
    {"max_concurrent_streams": 50},
    {"initial_stream_window": 131072},
    {"initial_connection_window": 65535},
    {"ping_interval": "10s"},
    {"ping_timeout": "1s"},
])
def test_a_changed_http2_setting_gets_new_pools(change):
    first = linked(config(cluster={"protocol": "http2"}))
    again = linked(config(cluster={"protocol": "http2"}), first)
    assert all(a is b for a, b in zip(pools(again), pools(first)))
    changed = linked(config(cluster={"protocol": "http2", "http2": change}), again)
    assert all(a is not b for a, b in zip(pools(changed), pools(again)))
    assert set(changed.pools) & set(again.pools) == set()


def test_switching_a_cluster_to_http2_gets_new_pools():
    first = linked(config())
    switched = linked(config(cluster={"protocol": "http2"}), first)
    assert all(a is not b for a, b in zip(pools(switched), pools(first)))
    assert {p.protocol for p in pools(switched)} == {PROTOCOL["http2"]}


def test_an_http1_clusters_unused_http2_block_does_not_replace_its_pools():
    """The block has no effect on an http1 cluster (a lint warning says so): editing it must
    not throw away warm HTTP/1.1 connections."""
    first = linked(config())
    edited = linked(config(cluster={"http2": {"max_concurrent_streams": 5}}), first)
    assert all(a is b for a, b in zip(pools(edited), pools(first)))


@pytest.fixture(scope="module")
def ca_path(tmp_path_factory):
    return str(CA(tmp_path_factory.mktemp("pki")).cert_path)


def test_an_http2_tls_cluster_gets_an_h2_only_context_and_new_pools(ca_path):
    contexts = ClientContexts()
    h1 = linked(config(tls={"ca": ca_path}), None, contexts)
    h2 = linked(config(cluster={"protocol": "http2"}, tls={"ca": ca_path}), h1, contexts)
    (a, b) = pools(h2)
    assert a.ssl_context is b.ssl_context
    assert a.ssl_context is not pools(h1)[0].ssl_context
    assert a is not pools(h1)[0] and b is not pools(h1)[1]
    # kept while nothing changes
    again = linked(config(cluster={"protocol": "http2"}, tls={"ca": ca_path}), h2, contexts)
    assert all(x is y for x, y in zip(pools(again), pools(h2)))

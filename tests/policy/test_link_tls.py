"""engine/policy/link.py: a cluster's `tls`, `protocol` and `pool.max_pending` reach its Pools,
and the pool key keeps warm pools across a relink exactly when the TLS identity is unchanged."""
from __future__ import annotations

import pytest

from engine.policy.link import link
from engine.policy.model import Config
from engine.policy.tls_client import ClientContexts
from tls_certs import CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    ca = CA(root)
    return {"ca": ca.cert_path, "client": ca.issue("client", uri="spiffe://td/sa/sluice",
                                                   client=True)}


def config(tls: dict | None, pool: dict | None = None) -> Config:
    cluster = {"name": "api", "endpoints": [{"address": "10.0.0.5:8443"},
                                            {"address": "api-2.internal:8443"}]}
    if tls is not None:
        cluster["tls"] = tls
    if pool is not None:
        cluster["pool"] = pool
    return Config.model_validate({
        "listeners": [{"name": "main", "address": "127.0.0.1:8080", "routes": ["web"]}],
        "routes": [{"name": "web", "match": {"path_prefix": "/"}, "to": [{"cluster": "api"}]}],
        "clusters": [cluster],
    })


def pools(tables) -> list:
    return [ep.pool for ep in tables.clusters["api"].endpoints]


def test_a_plaintext_cluster_has_no_ssl_context_and_its_max_pending(pki):
    (a, b) = pools(link(config(None, {"max_pending": 7}), None, tls_contexts=ClientContexts()))
    assert (a.ssl_context, a.server_hostname, a.max_waiters) == (None, None, 7)
    assert b.max_waiters == 7


def test_tls_pools_share_one_context_and_verify_each_endpoint_host(pki):
    (a, b) = pools(link(config({"ca": str(pki["ca"])}), None,
                        tls_contexts=ClientContexts()))
    assert a.ssl_context is not None and a.ssl_context is b.ssl_context
    assert (a.server_hostname, b.server_hostname) == ("10.0.0.5", "api-2.internal")
    (a, b) = pools(link(config({"ca": str(pki["ca"]), "sni": "api.internal"}), None,
                        tls_contexts=ClientContexts()))
    assert (a.server_hostname, b.server_hostname) == ("api.internal", "api.internal")


def test_a_relink_keeps_pools_when_tls_is_unchanged_and_replaces_them_when_it_changes(pki):
    contexts = ClientContexts()
    tls = {"ca": str(pki["ca"]), "cert": str(pki["client"][0]),
           "key": str(pki["client"][1])}
    first = link(config(tls), None, tls_contexts=contexts)
    same = link(config(dict(tls)), None, first, tls_contexts=contexts)
    assert pools(same) == pools(first) and all(
        x is y for x, y in zip(pools(same), pools(first)))
    for changed in ({**tls, "sni": "api.internal"}, {**tls, "insecure_skip_verify": True},
                    {"ca": str(pki["ca"])}, None):
        other = link(config(changed), None, same, tls_contexts=contexts)
        assert not any(x is y for x, y in zip(pools(other), pools(same))), changed


def test_a_changed_max_pending_gets_new_pools(pki):
    contexts = ClientContexts()
    first = link(config(None), None, tls_contexts=contexts)
    other = link(config(None, {"max_pending": 1}), None, first, tls_contexts=contexts)
    assert [p.max_waiters for p in pools(other)] == [1, 1]
    assert not any(x is y for x, y in zip(pools(other), pools(first)))

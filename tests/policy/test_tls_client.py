"""engine/policy/tls_client.py: the files of a cluster's `tls` block checked at validate time
(errors name the file and the config path), and the client contexts built from them, shared and
kept across reloads while settings and files are unchanged."""
from __future__ import annotations

import os
import ssl
import warnings

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from engine.policy.load import check_data
from engine.policy.model import ClusterTLS, Config
from engine.policy.tls_client import ClientContexts, build_context, fingerprint, server_hostname
from tls_certs import CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    ca = CA(root)
    return {"ca": str(ca.cert_path),
            "client": tuple(map(str, ca.issue("client", uri="spiffe://td/ns/shop/sa/web",
                                              client=True))),
            "other": tuple(map(str, ca.issue("other", dns=["other.internal"])))}


def config(*tls_blocks, **cluster) -> dict:
    return {
        "listeners": [{"name": "main", "address": "127.0.0.1:8080", "routes": ["web"]}],
        "routes": [{"name": "web", "match": {"path_prefix": "/"},
                    "to": [{"cluster": f"c{i}"} for i in range(len(tls_blocks))]}],
        "clusters": [{"name": f"c{i}", "endpoints": [{"address": "api.internal:443"}],
                      "tls": tls, **cluster} for i, tls in enumerate(tls_blocks)],
    }


def errors(data: dict) -> list[str]:
    return [f"{p.path}: {p.reason}" for p in check_data(data, "t.yaml").errors]


# -- validation --------------------------------------------------------------------------------


def test_a_complete_tls_block_validates(pki):
    data = config({"ca": pki["ca"], "sni": "API.internal",
                   "cert": pki["client"][0], "key": pki["client"][1]})
    cluster = Config.model_validate(data).clusters[0]
    assert cluster.tls.sni == "api.internal"
    assert cluster.tls.insecure_skip_verify is False
    assert cluster.protocol == "http1"


def test_missing_ca_file_is_an_error_naming_the_file_and_the_field(tmp_path):
    missing = tmp_path / "nope.pem"
    assert errors(config({"ca": str(missing)})) == [
        f"clusters[0].tls.ca: {missing}: cannot read the file: No such file or directory"]


def test_a_ca_file_without_a_certificate_is_an_error(tmp_path):
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    assert errors(config({"ca": str(junk)})) == [
        f"clusters[0].tls.ca: {junk}: not a PEM CA bundle (no '-----BEGIN CERTIFICATE-----' "
        "line)"]


def test_cert_without_key_and_key_without_cert_are_errors(pki):
    assert errors(config({"cert": pki["client"][0]}, {"key": pki["client"][1]})) == [
        "clusters[0].tls.key: required with cert (the client certificate's private key)",
        "clusters[1].tls.cert: required with key (the client certificate the key belongs to)"]


def test_a_key_that_does_not_match_the_certificate_is_an_error(pki):
    cert, key = pki["client"][0], pki["other"][1]
    assert errors(config({"ca": pki["ca"]}, {"cert": str(cert), "key": str(key)})) == [
        f"clusters[1].tls.key: {key}: key does not match certificate {cert}"]


def test_an_encrypted_key_is_an_error_saying_so(pki, tmp_path):
    locked = tmp_path / "locked.key"
    key = load_pem_private_key(open(pki["client"][1], "rb").read(), None)
    locked.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    (problem,) = errors(config({"cert": pki["client"][0], "key": str(locked)}))
    assert problem.startswith(f"clusters[0].tls.key: {locked}: the key is encrypted")


def test_a_certificate_file_holding_a_key_is_an_error(pki):
    wrong = pki["client"][1]
    assert errors(config({"cert": str(wrong), "key": str(wrong)})) == [
        f"clusters[0].tls.cert: {wrong}: not a PEM certificate (no '-----BEGIN CERTIFICATE-----' "
        "line) (this is a private key: swap cert and key?)"]


@pytest.mark.parametrize("sni, reason", [
    ("10.0.0.1", "'10.0.0.1' is an IP address: SNI carries host names only"),
    ("*.internal", "'*.internal': a server name has no wildcard"),
    ("api internal", "'api internal' is not a valid host name"),
])
def test_sni_must_be_a_host_name(sni, reason):
    (problem,) = errors(config({"sni": sni}))
    assert problem.startswith(f"clusters[0].tls.sni: {reason}")


def test_insecure_skip_verify_is_off_unless_spelled_out_as_a_boolean():
    assert ClusterTLS().insecure_skip_verify is False
    assert errors(config({"insecure_skip_verify": "yes"})) == [
        "clusters[0].tls.insecure_skip_verify: expected true or false, got 'yes'"]
    assert errors(config({"insecure_skip_verify": 1})) == [
        "clusters[0].tls.insecure_skip_verify: expected true or false, got the number 1"]


def test_unknown_tls_fields_are_refused():
    (problem,) = errors(config({"verify": False}))
    assert problem.startswith("clusters[0].tls.verify: unknown field")


def test_an_http2_cluster_with_tls_validates():
    assert errors(config({}, protocol="http2")) == []
    assert Config.model_validate(config({}, protocol="http2")).clusters[0].protocol == "http2"


def test_pool_max_pending_defaults_to_1024_and_must_not_be_negative():
    data = config()
    data["clusters"] = [{"name": "c", "endpoints": [{"address": "127.0.0.1:1"}]}]
    data["routes"][0]["to"] = [{"cluster": "c"}]
    assert Config.model_validate(data).clusters[0].pool.max_pending == 1024
    data["clusters"][0]["pool"] = {"max_pending": -1}
    assert errors(data) == ["clusters[0].pool.max_pending: must be at least 0, got -1"]


# -- contexts ----------------------------------------------------------------------------------


def tls(**fields) -> ClusterTLS:
    return ClusterTLS.model_validate(fields)


def test_server_hostname_is_sni_else_the_endpoint_host():
    assert server_hostname(tls(sni="api.internal"), "10.0.0.1") == "api.internal"
    assert server_hostname(tls(), "backend.internal.") == "backend.internal"
    assert server_hostname(tls(), "10.0.0.1") == "10.0.0.1"       # verified against the IP SAN
    assert server_hostname(tls(), "::1") == "::1"


def test_the_context_verifies_with_tls_1_2_minimum(pki):
    ctx = build_context(tls(ca=pki["ca"]))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "sluice-test-ca"),),)]


def test_without_ca_the_context_uses_the_system_trust_store(monkeypatch, pki):
    # OpenSSL's default trust store, which SSL_CERT_FILE points at: prove it is what gets loaded
    monkeypatch.setenv("SSL_CERT_FILE", pki["ca"])
    ctx = build_context(tls())
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.cert_store_stats()["x509_ca"] >= 1


def test_insecure_skip_verify_turns_verification_off(pki):
    ctx = build_context(tls(insecure_skip_verify=True))
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname


def test_one_context_per_tls_identity_kept_across_resolves(pki):
    a = {"ca": pki["ca"]}
    data = config(a, dict(a), {**a, "sni": "other.internal"})
    contexts = ClientContexts()
    first = contexts.resolve(Config.model_validate(data).clusters)
    assert first["c0"][1] is first["c1"][1]            # same settings: one context
    assert first["c2"][1] is not first["c0"][1]        # another sni: another identity
    again = contexts.resolve(Config.model_validate(data).clusters)
    assert again["c0"][1] is first["c0"][1]            # a reload keeps it (and so the pools)
    assert len(contexts) == 2


def test_a_changed_file_is_a_new_identity_and_the_old_context_is_forgotten(pki, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_bytes(open(pki["ca"], "rb").read())
    block = tls(ca=str(ca))
    contexts = ClientContexts()
    before = contexts.resolve([Config.model_validate(config({"ca": str(ca)})).clusters[0]])
    other = CA(tmp_path / "rotated", "rotated CA")
    ca.write_bytes(other.cert_path.read_bytes())
    assert fingerprint(block) != before["c0"][0]
    after = contexts.resolve([Config.model_validate(config({"ca": str(ca)})).clusters[0]])
    assert after["c0"][1] is not before["c0"][1]
    assert [c["subject"] for c in after["c0"][1].get_ca_certs()] == [((("commonName",
                                                                         "rotated CA"),),)]
    assert len(contexts) == 1


def test_a_file_gone_since_validation_is_a_clear_error_at_link(pki, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_bytes(open(pki["ca"], "rb").read())
    clusters = Config.model_validate(config({"ca": str(ca)})).clusters
    ca.unlink()
    with pytest.raises(ValueError, match=rf"cluster 'c0': tls: {ca}: cannot read the file"):
        ClientContexts().resolve(clusters)



def test_files_lists_every_tls_file_once_for_a_watcher(pki):
    from engine.policy.tls_client import files

    ca, cert, key = (pki["ca"], pki["client"][0], pki["client"][1])
    data = config({"ca": ca}, {"ca": ca, "cert": cert, "key": key}, {})
    assert files(Config.model_validate(data).clusters) == [ca, cert, key]


def test_a_relative_path_is_relative_to_the_config_files_directory(pki, tmp_path):
    import yaml

    from engine.policy.load import check_file

    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "ca.pem").write_bytes(open(pki["ca"], "rb").read())
    path = tmp_path / "sluice.yaml"
    path.write_text(yaml.safe_dump(config({"ca": "tls/ca.pem"})))
    result = check_file(path)
    assert result.ok, [str(p) for p in result.problems]
    assert result.config.clusters[0].tls.ca == str(tmp_path / "tls" / "ca.pem")


SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@pytest.mark.skipif(not os.path.exists(SYSTEM_BUNDLE), reason="no Debian CA bundle here")
def test_the_system_ca_bundle_validates_without_a_warning():
    """Debian's bundle holds a root with a negative serial number, which `cryptography` parses
    only with a deprecation warning (an error in a later release): `sluice validate` would print
    it, then refuse the bundle. OpenSSL, which does the verifying, is the one asked."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert errors(config({"ca": SYSTEM_BUNDLE})) == []


def test_problems_rechecks_every_cluster_with_locations_from_the_root(pki, tmp_path):
    from engine.policy.tls_client import problems

    ca = tmp_path / "ca.pem"
    ca.write_bytes(open(pki["ca"], "rb").read())
    parsed = Config.model_validate(config({}, {"ca": str(ca)}))
    assert problems(parsed) == []
    ca.write_text("rotated into garbage\n")
    assert problems(parsed) == [(("clusters", 1, "tls", "ca"), f"{ca}: not a PEM CA bundle "
                                 "(no '-----BEGIN CERTIFICATE-----' line)")]


# -- ALPN by protocol --------------------------------------------------------------------------


def negotiated(pki, client: ssl.SSLContext) -> str | None:
    """The ALPN protocol a real loopback handshake selects between `client` and a server that
    offers both h2 and http/1.1 (as most HTTP/2-capable upstreams do)."""
    import socket
    import threading

    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*pki["other"])
    server_ctx.set_alpn_protocols(["h2", "http/1.1"])
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[str | None] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls_conn:
            seen.append(tls_conn.selected_alpn_protocol())
            tls_conn.recv(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        raw = socket.create_connection(listener.getsockname(), timeout=10)
        with client.wrap_socket(raw, server_hostname="other.internal") as tls_conn:
            chosen = tls_conn.selected_alpn_protocol()
            tls_conn.sendall(b".")
        thread.join(10)
    finally:
        listener.close()
    assert seen == [chosen]
    return chosen


def test_an_http2_cluster_offers_h2_alone_and_an_http1_cluster_http11(pki):
    block = tls(ca=pki["ca"])
    assert negotiated(pki, build_context(block, "http2")) == "h2"
    assert negotiated(pki, build_context(block, "http1")) == "http/1.1"
    assert negotiated(pki, build_context(block)) == "http/1.1"


def test_the_protocol_is_part_of_the_tls_identity(pki):
    """A cluster switched to http2 must not reuse pools whose connections negotiated http/1.1:
    the ALPN offer is in the fingerprint, so it gets a new context (and `link` new pools)."""
    block = tls(ca=pki["ca"])
    assert fingerprint(block, "http2") != fingerprint(block, "http1") == fingerprint(block)
    contexts = ClientContexts()
    h1 = contexts.resolve(Config.model_validate(config({"ca": pki["ca"]})).clusters)["c0"]
    h2 = contexts.resolve(Config.model_validate(
        config({"ca": pki["ca"]}, protocol="http2")).clusters)["c0"]
    assert h2[0] != h1[0] and h2[1] is not h1[1]
    assert h2[0] == fingerprint(block, "http2")
    assert negotiated(pki, h2[1]) == "h2"

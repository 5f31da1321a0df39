"""The TLS fields of the model (listener `tls`, `protocols`; route `match.client_identity`) and
the files they name (engine/policy/pem.py), through the loader: every refusal is one
`FILE: path: reason` line naming the field and, for a file, the file."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

from engine.policy import check_data, check_file
from engine.policy.pem import PemError, certificates, check_pair
from tls_certs import CA, NOW, DAY

BASE = {
    "listeners": [{"name": "main", "address": "127.0.0.1:8443", "routes": ["mesh", "web"]}],
    "routes": [
        {"name": "mesh", "match": {"path_prefix": "/mesh/"}, "to": [{"cluster": "web"}]},
        {"name": "web", "match": {"path_prefix": "/"}, "to": [{"cluster": "web"}]},
    ],
    "clusters": [{"name": "web", "endpoints": [{"address": "127.0.0.1:9002"}]}],
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    ca = CA(directory)
    server = ca.issue("server", dns=["localhost"])
    other = ca.issue("other", dns=["www.example.test"])
    return directory, ca, server, other


def _config(pki, **tls) -> dict:
    _, ca, (cert, key), _ = pki
    data = copy.deepcopy(BASE)
    data["listeners"][0]["tls"] = {"certificates": [{"cert": str(cert), "key": str(key)}], **tls}
    return data


def _errors(data, base_dir=None) -> list[str]:
    result = check_data(data, "cfg.yaml", base_dir=base_dir)
    return [str(p) for p in result.errors]


def test_a_listener_with_a_certificate_validates_with_the_defaults(pki):
    result = check_data(_config(pki), "cfg.yaml")
    assert result.ok, [str(p) for p in result.problems]
    listener = result.config.listeners[0]
    assert listener.protocols == ("http1",)
    assert listener.tls.min_version == "1.2"
    assert listener.tls.client_ca is None
    assert listener.tls.forward_client_cert == "sanitize"


def test_a_plaintext_listener_has_no_tls():
    result = check_data(copy.deepcopy(BASE), "cfg.yaml")
    assert result.ok and result.config.listeners[0].tls is None


def test_relative_paths_are_relative_to_the_config_file_and_stored_absolute(pki, tmp_path):
    directory, _, (cert, key), _ = pki
    config_dir = tmp_path / "etc"
    (config_dir / "tls").mkdir(parents=True)
    os.symlink(cert, config_dir / "tls" / "a.crt")
    os.symlink(key, config_dir / "tls" / "a.key")
    data = copy.deepcopy(BASE)
    data["listeners"][0]["tls"] = {"certificates": [{"cert": "tls/a.crt", "key": "tls/a.key"}]}
    path = config_dir / "sluice.yaml"
    path.write_text(yaml.safe_dump(data))
    elsewhere = os.getcwd()
    result = check_file(path)             # from the working directory of the tests, not etc/
    assert os.getcwd() == elsewhere
    assert result.ok, [str(p) for p in result.problems]
    assert result.config.listeners[0].tls.certificates[0].cert == str(config_dir / "tls/a.crt")


def test_a_missing_certificate_file_names_the_file_and_the_field(pki, tmp_path):
    data = _config(pki)
    missing = tmp_path / "nope.crt"
    data["listeners"][0]["tls"]["certificates"][0]["cert"] = str(missing)
    assert _errors(data) == [
        f"cfg.yaml: listeners[0].tls.certificates[0].cert: {missing}: cannot read the file: "
        "No such file or directory"]


def test_a_key_that_is_not_the_certificates_is_refused_at_the_key(pki):
    _, _, (cert, _), (_, other_key) = pki
    data = copy.deepcopy(BASE)
    data["listeners"].append({"name": "edge", "address": "127.0.0.1:8444", "routes": ["web"],
                              "tls": {"certificates": [{"cert": str(cert),
                                                        "key": str(other_key)}]}})
    assert _errors(data) == [
        f"cfg.yaml: listeners[1].tls.certificates[0].key: {other_key}: key does not match "
        f"certificate {cert}"]


def test_an_unreadable_key_is_refused(pki, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    _, _, (cert, key), _ = pki
    locked = tmp_path / "locked.key"
    locked.write_bytes(key.read_bytes())
    locked.chmod(0)
    data = _config(pki)
    data["listeners"][0]["tls"]["certificates"][0]["key"] = str(locked)
    assert _errors(data) == [f"cfg.yaml: listeners[0].tls.certificates[0].key: {locked}: "
                             "cannot read the file: Permission denied"]


@pytest.mark.parametrize("content, field, reason", [
    (b"hello\n", "cert", "not a PEM certificate (no '-----BEGIN CERTIFICATE-----' line)"),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "cert",
     "not a valid PEM certificate"),
    (b"hello\n", "key", "not a PEM private key"),
])
def test_a_file_that_is_not_pem_is_refused(pki, tmp_path, content, field, reason):
    bad = tmp_path / f"bad.{field}"
    bad.write_bytes(content)
    data = _config(pki)
    data["listeners"][0]["tls"]["certificates"][0][field] = str(bad)
    (error,) = _errors(data)
    assert error.startswith(f"cfg.yaml: listeners[0].tls.certificates[0].{field}: {bad}: "
                            f"{reason}"), error


def test_cert_and_key_swapped_says_so(pki):
    _, _, (cert, key), _ = pki
    data = _config(pki)
    data["listeners"][0]["tls"]["certificates"][0] = {"cert": str(key), "key": str(cert)}
    (error,) = _errors(data)
    assert error.endswith("(this is a private key: swap cert and key?)"), error


def test_an_encrypted_key_is_refused_with_the_way_out(pki, tmp_path):
    from cryptography.hazmat.primitives import serialization

    _, _, (cert, key), _ = pki
    loaded = serialization.load_pem_private_key(key.read_bytes(), None)
    locked = tmp_path / "encrypted.key"
    locked.write_bytes(loaded.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    data = _config(pki)
    data["listeners"][0]["tls"]["certificates"][0]["key"] = str(locked)
    (error,) = _errors(data)
    assert f"{locked}: the key is encrypted" in error


def test_a_client_ca_that_is_not_a_certificate_is_refused(pki, tmp_path):
    _, _, _, (_, other_key) = pki
    data = _config(pki, client_ca=str(other_key))
    assert _errors(data) == [
        f"cfg.yaml: listeners[0].tls.client_ca: {other_key}: not a PEM CA certificate (no "
        "'-----BEGIN CERTIFICATE-----' line) (this is a private key: swap cert and key?)"]


def test_an_empty_certificate_list_is_refused(pki):
    data = _config(pki)
    data["listeners"][0]["tls"]["certificates"] = []
    (error,) = _errors(data)
    assert error.startswith("cfg.yaml: listeners[0].tls.certificates: "), error


@pytest.mark.parametrize("field, value, reason", [
    ("min_version", "1.1", "expected one of 1.2, 1.3; got '1.1'"),
    ("min_version", 1.2, "expected one of 1.2, 1.3; got the number 1.2"),
    ("forward_client_cert", "append", "expected one of sanitize, sanitize_set, forward_only"),
])
def test_enumerated_tls_settings(pki, field, value, reason):
    (error,) = _errors(_config(pki, **{field: value}))
    assert error.startswith(f"cfg.yaml: listeners[0].tls.{field}: {reason}"), error


def test_a_tls_listener_may_offer_http2_first(pki):
    data = _config(pki)
    data["listeners"][0]["protocols"] = ["http2", "http1"]
    result = check_data(data, "cfg.yaml")
    assert result.ok, [str(p) for p in result.problems]
    assert result.config.listeners[0].protocols == ("http2", "http1")


def test_protocols_are_a_known_non_empty_list_without_repeats():
    data = copy.deepcopy(BASE)
    data["listeners"][0]["protocols"] = ["http1", "http1"]
    assert _errors(data) == ["cfg.yaml: listeners[0].protocols[1]: 'http1' is already "
                             "protocols[0]"]
    data["listeners"][0]["protocols"] = []
    (error,) = _errors(data)
    assert error.startswith("cfg.yaml: listeners[0].protocols: "), error
    data["listeners"][0]["protocols"] = ["h3"]
    (error,) = _errors(data)
    assert error.startswith("cfg.yaml: listeners[0].protocols[0]: expected one of http1, "
                            "http2"), error


# -- match.client_identity ---------------------------------------------------------------------


def _with_identity(identity, listener_tls: dict | None) -> dict:
    data = copy.deepcopy(BASE)
    data["routes"][0]["match"]["client_identity"] = identity
    if listener_tls is not None:
        data["listeners"][0]["tls"] = listener_tls
    return data


def _mtls(pki) -> dict:
    _, ca, (cert, key), _ = pki
    return {"certificates": [{"cert": str(cert), "key": str(key)}],
            "client_ca": str(ca.cert_path)}


@pytest.mark.parametrize("identity", [
    "spiffe://cluster.local/ns/shop/sa/web", "spiffe://cluster.local/ns/shop/*",
    "spiffe://td/*", "spiffe://td"])
def test_client_identity_exact_or_prefix_on_an_mtls_listener(pki, identity):
    result = check_data(_with_identity(identity, _mtls(pki)), "cfg.yaml")
    assert result.ok, [str(p) for p in result.problems]
    assert result.config.routes[0].match.client_identity == identity


@pytest.mark.parametrize("identity, reason", [
    ("cluster.local/ns/shop", "a client identity is a SPIFFE ID"),
    ("https://td/ns/x", "a client identity is a SPIFFE ID"),
    ("spiffe://td/ns/*/sa/x", "'*' is only allowed as the last path segment"),
    ("spiffe://td/ns/x*", "'*' is only allowed as the last path segment"),
    ("spiffe://td/ns//x", "is not a SPIFFE ID"),
    ("spiffe://TD/ns/x", "is not a SPIFFE ID"),
    ("spiffe:///ns/x", "is not a SPIFFE ID"),
])
def test_a_malformed_client_identity_is_refused(pki, identity, reason):
    (error,) = _errors(_with_identity(identity, _mtls(pki)))
    assert error.startswith("cfg.yaml: routes[0].match.client_identity: ") and reason in error, \
        error


def test_client_identity_on_a_listener_without_client_ca_could_never_match(pki):
    _, _, (cert, key), _ = pki
    plain_tls = {"certificates": [{"cert": str(cert), "key": str(key)}]}
    expected = ("cfg.yaml: routes[0].match.client_identity: route 'mesh' is listed by listener "
                "'main' (listeners[0]), which has no tls.client_ca: without mutual TLS no client "
                "has an identity, so this route could never match there")
    assert _errors(_with_identity("spiffe://td/ns/x", plain_tls)) == [expected]
    assert _errors(_with_identity("spiffe://td/ns/x", None)) == [expected]


def test_client_identity_is_checked_even_when_other_parts_are_broken(pki):
    data = _with_identity("spiffe://td/ns/x", None)
    data["clusters"][0]["balancer"] = "nope"
    errors = _errors(data)
    assert any("routes[0].match.client_identity: route 'mesh'" in e for e in errors), errors


def test_a_route_without_client_identity_is_fine_anywhere(pki):
    result = check_data(_with_identity("spiffe://td/ns/x", _mtls(pki)) | {}, "cfg.yaml")
    assert result.ok


def test_an_identity_route_after_a_broader_one_is_shadowed_and_not_before(pki):
    data = _with_identity("spiffe://td/ns/x/sa/y", _mtls(pki))
    data["routes"].insert(0, {"name": "ns", "match": {"path_prefix": "/",
                                                      "client_identity": "spiffe://td/ns/x/*"},
                              "to": [{"cluster": "web"}]})
    data["listeners"][0]["routes"] = ["ns", "mesh", "web"]
    warnings = [str(p) for p in check_data(data, "cfg.yaml").warnings]
    assert warnings == ["cfg.yaml: listeners[0].routes[1]: warning: route 'mesh' is never "
                        "reached: route 'ns' before it (routes[0]) matches every request "
                        "'mesh' matches"]
    data["listeners"][0]["routes"] = ["mesh", "ns", "web"]
    assert check_data(data, "cfg.yaml").warnings == ()


# -- pem.py ------------------------------------------------------------------------------------


def test_check_pair_returns_the_leaf_with_its_names_and_expiry(pki):
    _, ca, _, _ = pki
    cert, key = ca.issue("named", dns=["a.test", "*.b.test"], uri="spiffe://td/ns/x/sa/y",
                         not_after=NOW + 3 * DAY)
    loaded = check_pair(str(cert), str(key))
    assert loaded.dns_names() == ("a.test", "*.b.test")
    assert loaded.uris() == ("spiffe://td/ns/x/sa/y",)
    assert abs(loaded.not_after - (NOW + 3 * DAY).timestamp()) < 1
    assert not loaded.expired()


def test_a_chain_file_keeps_its_order(pki):
    directory, ca, (cert, key), _ = pki
    chain = Path(directory) / "chain.crt"
    chain.write_bytes(Path(cert).read_bytes() + Path(ca.cert_path).read_bytes())
    loaded = check_pair(str(chain), str(key))
    assert [c.subject for c in loaded.chain] == [certificates(str(cert)).leaf.subject,
                                                 ca.cert.subject]


def test_a_directory_is_not_a_certificate(tmp_path):
    with pytest.raises(PemError, match="is a directory"):
        certificates(str(tmp_path))


def test_an_expired_certificate_is_a_warning_not_an_error(pki):
    _, ca, _, _ = pki
    cert, key = ca.issue("expired", dns=["localhost"], not_after=NOW - 2 * DAY)
    data = copy.deepcopy(BASE)
    data["listeners"][0]["tls"] = {"certificates": [{"cert": str(cert), "key": str(key)}]}
    result = check_data(data, "cfg.yaml")
    assert result.ok
    (warning,) = [str(p) for p in result.warnings]
    assert warning.startswith(f"cfg.yaml: listeners[0].tls.certificates[0].cert: warning: "
                              f"{cert}: expired on "), warning
    assert warning.endswith("UTC: clients will refuse it")


def test_explain_says_an_identity_route_needs_a_client_identity(pki):
    """sluice explain without --client-identity: an identity route is passed over with that
    reason, not as a disagreement with the router."""
    from engine.policy.explain import explain

    data = _with_identity("spiffe://td/ns/*", _mtls(pki))
    config = check_data(data, "cfg.yaml").raise_for_errors()
    e = explain(config, "GET http://x/mesh/a", [])
    assert e.route.name == "web"
    (skipped,) = e.passed_over
    assert skipped.reason.startswith("needs a client certificate with the identity "
                                     "'spiffe://td/ns/*'")
    assert e.disagreement is None

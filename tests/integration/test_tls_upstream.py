"""TLS origination end to end: the real binary proxies to a real HTTPS upstream (tests/upstream.py
with certificates made by tests/tls_certs.py) and the upstream reports what it saw: how many
connections, the SNI, ALPN and the client certificate."""

from __future__ import annotations

import http.client
import subprocess
import sys

import pytest
import yaml

from support import ROOT, Upstream, eventually, free_port, simple_config
from tls_certs import CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    ca = CA(root)
    rogue = CA(root / "rogue", "rogue-ca")
    return {
        "ca": ca.cert_path,
        "server": ca.issue("server", dns=["up.test", "localhost"], ip=["127.0.0.1"]),
        "client": ca.issue("client", uri="spiffe://cluster.local/ns/shop/sa/sluice", client=True),
        "rogue_server": rogue.issue("rogue-server", dns=["up.test", "localhost"],
                                    ip=["127.0.0.1"]),
    }


@pytest.fixture
def tls_upstream(pki):
    started = []

    def start(server="server", client_ca=None) -> Upstream:
        cert, key = pki[server]
        u = Upstream(cert, key, client_ca=client_ca, stats_cert=pki["client"])
        started.append(u)
        return u

    yield start
    for u in started:
        u.stop()


def config(upstream: Upstream, tls: dict, host: str = "127.0.0.1") -> dict:
    cfg = simple_config(free_port(), {"up": [f"{host}:{upstream.port}"]})
    cfg["clusters"][0]["tls"] = {k: str(v) if not isinstance(v, bool) else v
                                 for k, v in tls.items()}
    return cfg


def get(port: int, paths: list[str]) -> list[int]:
    """GET each path on one keep-alive client connection; the statuses."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    statuses = []
    try:
        for path in paths:
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            statuses.append(r.status)
    finally:
        c.close()
    return statuses


def test_get_over_tls_works_and_pooled_tls_connections_are_reused(pki, tls_upstream,
                                                                   start_sluice):
    up = tls_upstream()
    s = start_sluice(config(up, {"ca": pki["ca"]}))
    assert get(s.port, ["/echo"] * 10) == [200] * 10
    stats = up.stats()
    assert stats["requests"] - 1 == 10          # (less our own /stats)
    assert stats["connections"] == 1            # one handshake, nine reuses
    assert stats["alpn"] == ["http/1.1"]
    assert stats["sni"] == [None]               # an IP endpoint: no SNI, verified by IP SAN


def test_an_upstream_certificate_from_another_ca_is_502_with_a_log_line(pki, tls_upstream,
                                                                        start_sluice):
    up = tls_upstream(server="rogue_server")
    s = start_sluice(config(up, {"ca": pki["ca"]}))
    assert get(s.port, ["/echo"]) == [502]
    assert up.stats()["connections"] == 0       # no request reached it
    eventually(lambda: f"upstream 127.0.0.1:{up.port}: connect failed" in
               s.stderr_path.read_text())
    assert "CERTIFICATE_VERIFY_FAILED" in s.stderr_path.read_text()
    counter = (f'sluice_endpoint_connect_failures_total{{cluster="up",'
               f'endpoint="127.0.0.1:{up.port}"}} 1.0')
    eventually(lambda: counter in s.admin("/stats/prometheus").body.decode())


def test_the_configured_sni_is_sent_and_verified(pki, tls_upstream, start_sluice):
    up = tls_upstream()
    s = start_sluice(config(up, {"ca": pki["ca"], "sni": "up.test"}))
    assert get(s.port, ["/echo"]) == [200]
    assert up.stats()["sni"] == ["up.test"]


def test_an_sni_the_certificate_does_not_name_is_502(pki, tls_upstream, start_sluice):
    up = tls_upstream()
    s = start_sluice(config(up, {"ca": pki["ca"], "sni": "elsewhere.test"}))
    assert get(s.port, ["/echo"]) == [502]
    eventually(lambda: "elsewhere.test" in s.stderr_path.read_text())


def test_the_default_sni_is_the_endpoint_host_name(pki, tls_upstream, start_sluice):
    up = tls_upstream()
    s = start_sluice(config(up, {"ca": pki["ca"]}, host="localhost"))
    assert get(s.port, ["/echo"]) == [200]
    assert up.stats()["sni"] == ["localhost"]


def test_the_client_certificate_is_presented_when_configured(pki, tls_upstream, start_sluice):
    up = tls_upstream(client_ca=pki["ca"])
    s = start_sluice(config(up, {"ca": pki["ca"], "cert": pki["client"][0],
                                 "key": pki["client"][1]}))
    assert get(s.port, ["/echo", "/echo"]) == [200, 200]
    (seen,) = up.stats()["client_certs"]
    assert ["URI", "spiffe://cluster.local/ns/shop/sa/sluice"] in seen["subjectAltName"]


def test_an_upstream_that_requires_a_client_certificate_refuses_one_without(
        pki, tls_upstream, start_sluice):
    up = tls_upstream(client_ca=pki["ca"])
    s = start_sluice(config(up, {"ca": pki["ca"]}))
    assert get(s.port, ["/echo"]) == [502]
    assert up.stats()["connections"] == 0


def test_insecure_skip_verify_accepts_an_unknown_ca_only_when_spelled_out(pki, tls_upstream,
                                                                          start_sluice):
    up = tls_upstream(server="rogue_server")
    verifying = start_sluice(config(up, {}))        # the system trust store: rogue CA unknown
    assert get(verifying.port, ["/echo"]) == [502]
    verifying.stop()                                # (the next one writes the same config file)
    skipping = start_sluice(config(up, {"insecure_skip_verify": True}))
    assert get(skipping.port, ["/echo"] * 3) == [200] * 3
    assert up.stats()["connections"] == 1


def test_a_reload_keeps_pooled_tls_connections_unless_the_tls_settings_change(
        pki, tls_upstream, start_sluice):
    up = tls_upstream()
    cfg = config(up, {"ca": pki["ca"]})
    cfg["routes"][0]["rewrite"] = {"set_headers": {"x-config": "v1"}}
    s = start_sluice(cfg)
    assert get(s.port, ["/echo"]) == [200]

    def applied(version: str) -> bool:
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        c.request("GET", "/echo")
        seen = dict(yaml.safe_load(c.getresponse().read())["headers"]).get("x-config")
        c.close()
        return seen == version

    cfg["routes"][0]["rewrite"]["set_headers"]["x-config"] = "v2"    # TLS unchanged
    s.path.write_text(yaml.safe_dump(cfg))
    eventually(lambda: applied("v2"))
    assert up.stats()["connections"] == 1       # the warm TLS connection was kept

    cfg["clusters"][0]["tls"]["sni"] = "up.test"                     # TLS changed
    cfg["routes"][0]["rewrite"]["set_headers"]["x-config"] = "v3"
    s.path.write_text(yaml.safe_dump(cfg))
    eventually(lambda: applied("v3"))
    stats = up.stats()
    assert stats["connections"] == 2            # a new pool: a new handshake, with the new SNI
    assert stats["sni"] == [None, "up.test"]


def test_validate_names_the_bad_tls_files_and_their_config_paths(pki, tmp_path):
    missing = tmp_path / "missing-ca.pem"
    cfg = simple_config(free_port(), {"a": ["127.0.0.1:1"], "b": ["127.0.0.1:2"],
                                      "c": ["127.0.0.1:3"]},
                        routes=[{"name": "all", "match": {"path_prefix": "/"},
                                 "to": [{"cluster": n} for n in "abc"]}])
    cfg["clusters"][0]["tls"] = {"ca": str(missing)}
    cfg["clusters"][1]["tls"] = {"cert": str(pki["client"][0])}
    cfg["clusters"][2]["tls"] = {"cert": str(pki["client"][0]), "key": str(pki["server"][1])}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    done = subprocess.run([sys.executable, "-m", "engine", "validate", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"{path}: clusters[0].tls.ca: {missing}: cannot read the file: No such file or directory",
        f"{path}: clusters[1].tls.key: required with cert (the client certificate's private key)",
        f"{path}: clusters[2].tls.key: {pki['server'][1]}: key does not match certificate "
        f"{pki['client'][0]}",
    ]


def test_tls_to_a_plaintext_upstream_is_502_not_a_request_in_clear(upstream, start_sluice,
                                                                   pki):
    s = start_sluice(config(upstream, {"ca": pki["ca"]}))
    assert get(s.port, ["/echo"]) == [502]
    assert upstream.stats()["requests"] == 1     # only our /stats: no request went in clear
    eventually(lambda: f"upstream 127.0.0.1:{upstream.port}: connect failed" in
               s.stderr_path.read_text())


def test_an_upstream_that_never_answers_the_handshake_is_502_at_connect_timeout(
        pki, start_sluice):
    """A peer that accepts TCP and then says nothing: the handshake is part of the connect, so
    connect_timeout ends it (502), well before the route timeout would (504)."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        port = silent.getsockname()[1]
        cfg = simple_config(free_port(), {"up": [f"127.0.0.1:{port}"]},
                            routes=[{"name": "all", "match": {"path_prefix": "/"},
                                     "timeout": "30s", "to": [{"cluster": "up"}]}],
                            connect_timeout="200ms")
        cfg["clusters"][0]["tls"] = {"ca": str(pki["ca"])}
        s = start_sluice(cfg)
        assert get(s.port, ["/echo"]) == [502]
    finally:
        silent.close()


def _uri_of(seen: dict | None) -> str | None:
    return next((v for k, v in (seen or {}).get("subjectAltName", ()) if k == "URI"), None)


def test_a_rotated_client_certificate_is_presented_on_new_connections_without_a_reload(
        pki, tls_upstream, start_sluice, tmp_path):
    """Certificate rotation (issue 9 item 9) for a cluster: the files change, the config does
    not. New upstream connections present the new certificate; a bad pair written meanwhile is
    refused with its path and the certificate in use goes on."""
    ca = CA(tmp_path / "mesh", "mesh-ca")
    first = ca.issue("first", uri="spiffe://td/sa/first", client=True)
    second = ca.issue("second", uri="spiffe://td/sa/second", client=True)
    live = tmp_path / "live"
    live.mkdir()
    cert, key = live / "client.crt", live / "client.key"
    cert.write_bytes(first[0].read_bytes())
    key.write_bytes(first[1].read_bytes())
    up = tls_upstream(client_ca=ca.cert_path)
    up.stats_cert = first
    cfg = config(up, {"ca": pki["ca"], "cert": cert, "key": key})
    s = start_sluice(cfg)
    assert get(s.port, ["/echo"]) == [200]
    assert _uri_of(up.stats()["client_certs"][-1]) == "spiffe://td/sa/first"

    key.write_bytes(second[1].read_bytes())          # a key that is not the certificate's
    eventually(lambda: "certificate reload" in s.stderr_path.read_text()
               and f"{key}: key does not match certificate" in s.stderr_path.read_text())
    assert get(s.port, ["/echo"]) == [200]           # the old pair serves on

    cert.write_bytes(second[0].read_bytes())         # now the pair is whole again: applied

    def presents_second() -> bool:
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        c.request("GET", "/echo", headers={"connection": "close"})
        assert c.getresponse().status == 200
        c.close()
        return _uri_of(up.stats()["client_certs"][-1]) == "spiffe://td/sa/second"

    eventually(presents_second)
    assert s.proc.poll() is None

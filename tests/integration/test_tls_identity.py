"""Who called, over mutual TLS: the verified client certificate's SPIFFE ID routes requests
(`match.client_identity`), reaches Python filters, and reaches upstreams as
x-forwarded-client-cert in the mode the listener chose. Real binary, real TLS clients."""
from __future__ import annotations

import hashlib
import json
import shutil
import ssl

import pytest

from support import free_port
from tls_certs import CA

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")

SERVER_URI = "spiffe://td/ns/edge/sa/sluice"


@pytest.fixture
def pki(tmp_path):
    ca = CA(tmp_path / "pki")
    return {
        "ca": ca,
        "server": ca.issue("server", dns=["localhost"], uri=SERVER_URI),
        "web": ca.issue("web", uri="spiffe://td/ns/shop/sa/web", client=True),
        "cart": ca.issue("cart", uri="spiffe://td/ns/shop/sa/cart", client=True),
        "other": ca.issue("other", uri="spiffe://td/ns/shopping/sa/x", client=True),
    }


def mtls_config(pki, upstream, mode="sanitize", routes=None, filters=None) -> dict:
    routes = routes or [{"name": "web", "match": {"path_prefix": "/"}, "to": [{"cluster": "up"}]}]
    config = {
        "admin": {"address": f"127.0.0.1:{free_port()}"},
        "listeners": [{"name": "edge", "address": f"127.0.0.1:{free_port()}",
                       "routes": [r["name"] for r in routes],
                       "tls": {"certificates": [{"cert": str(pki["server"][0]),
                                                 "key": str(pki["server"][1])}],
                               "client_ca": str(pki["ca"].cert_path),
                               "forward_client_cert": mode}}],
        "routes": routes,
        "clusters": [{"name": "up", "endpoints": [{"address": upstream.address}]}],
    }
    if filters:
        config["filters"] = filters
    return config


def port_of(config) -> int:
    return int(config["listeners"][0]["address"].rsplit(":", 1)[1])


def request(port, pki, cert, path="/echo", extra=b""):
    import socket
    ctx = ssl.create_default_context(cafile=str(pki["ca"].cert_path))
    ctx.load_cert_chain(*map(str, pki[cert]))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
            tls.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nhost: localhost\r\n" + extra +
                        b"connection: close\r\n\r\n")
            data = b""
            while True:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def echoed(body: bytes) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in json.loads(body)["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out


def der_hash(pem_path) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem_path.read_text())).hexdigest()


def test_client_identity_routes_exact_then_prefix_and_keeps_namespaces_apart(pki, upstream,
                                                                             start_sluice):
    routes = [
        {"name": "web-only", "match": {"client_identity": "spiffe://td/ns/shop/sa/web"},
         "direct_response": {"status": 200, "body": "exact\n"}},
        {"name": "shop", "match": {"client_identity": "spiffe://td/ns/shop/*"},
         "direct_response": {"status": 200, "body": "prefix\n"}},
        {"name": "rest", "match": {"path_prefix": "/"},
         "direct_response": {"status": 403, "body": "nobody\n"}},
    ]
    config = mtls_config(pki, upstream, routes=routes)
    start_sluice(config)
    port = port_of(config)
    assert request(port, pki, "web") == (200, b"exact\n")
    assert request(port, pki, "cart") == (200, b"prefix\n")
    # ns/shopping is not ns/shop: the prefix ends at the slash
    assert request(port, pki, "other") == (403, b"nobody\n")


def test_sanitize_set_tells_the_upstream_who_called_in_envoys_format(pki, upstream, start_sluice):
    config = mtls_config(pki, upstream, mode="sanitize_set")
    start_sluice(config)
    status, body = request(port_of(config), pki, "web",
                           extra=b"x-forwarded-client-cert: By=spiffe://forged;URI=spiffe://admin\r\n")
    assert status == 200
    h = echoed(body)
    assert h["x-forwarded-client-cert"] == [
        f"By={SERVER_URI};Hash={der_hash(pki['web'][0])};Subject=\"CN=web\";"
        f"URI=spiffe://td/ns/shop/sa/web"]
    assert h["x-forwarded-proto"] == ["https"]


def test_sanitize_removes_what_the_client_sent_and_sets_nothing(pki, upstream, start_sluice):
    config = mtls_config(pki, upstream, mode="sanitize")
    start_sluice(config)
    status, body = request(port_of(config), pki, "web",
                           extra=b"x-forwarded-client-cert: URI=spiffe://admin\r\n")
    assert status == 200
    assert "x-forwarded-client-cert" not in echoed(body)


def test_forward_only_passes_the_clients_header_untouched(pki, upstream, start_sluice):
    config = mtls_config(pki, upstream, mode="forward_only")
    start_sluice(config)
    status, body = request(port_of(config), pki, "web",
                           extra=b"x-forwarded-client-cert: URI=spiffe://from-the-edge\r\n")
    assert status == 200
    assert echoed(body)["x-forwarded-client-cert"] == ["URI=spiffe://from-the-edge"]


def test_a_plaintext_listener_never_forwards_a_client_cert_header(upstream, start_sluice):
    import httpx
    from support import simple_config
    s = start_sluice(simple_config(free_port(), {"up": [upstream.address]}))
    r = httpx.get(s.url + "/echo", headers={"x-forwarded-client-cert": "URI=spiffe://admin"})
    assert r.status_code == 200
    assert "x-forwarded-client-cert" not in echoed(r.content)


def test_python_filters_see_the_callers_identity(pki, upstream, start_sluice, tmp_path):
    (tmp_path / "whoami_filter.py").write_text(
        "from engine import Filter, Reply\n"
        "class WhoAmI(Filter):\n"
        "    def request(self, ctx):\n"
        "        return Reply(200, f'{ctx.client_identity}|{ctx.client_subject}\\n')\n")
    routes = [{"name": "who", "match": {"path": "/whoami"}, "filters": ["whoami"],
               "to": [{"cluster": "up"}]}]
    config = mtls_config(pki, upstream, routes=routes,
                         filters=[{"name": "whoami", "python": "whoami_filter:WhoAmI"}])
    start_sluice(config)
    assert request(port_of(config), pki, "cart", path="/whoami") == (
        200, b"spiffe://td/ns/shop/sa/cart|CN=cart\n")


def test_a_rotated_server_certificate_is_the_by_of_new_connections(pki, upstream, start_sluice):
    import os
    import shutil as sh

    from support import eventually
    config = mtls_config(pki, upstream, mode="sanitize_set")
    start_sluice(config)
    port = port_of(config)
    new_cert, new_key = pki["ca"].issue("server2", dns=["localhost"],
                                         uri="spiffe://td/ns/edge/sa/sluice-2")
    for source, target in ((new_key, pki["server"][1]), (new_cert, pki["server"][0])):
        sh.copy(source, f"{target}.tmp")
        os.replace(f"{target}.tmp", target)

    def by():
        status, body = request(port, pki, "web")
        return echoed(body)["x-forwarded-client-cert"][0].split(";")[0]
    eventually(lambda: by() == "By=spiffe://td/ns/edge/sa/sluice-2", timeout=20)

"""`sluice explain` and the proxy give the same answer for the same request: the real binary is
the oracle, over generated requests (hosts in any case, with and without a port, in a Host
header or an absolute-form target; path-prefix rewrites; ring hashing on a cookie, a header and
the client address). Each case is explained, then sent; the route, the upstream target and the
endpoint a ring picked must be the ones explain said."""

from __future__ import annotations

import http.client
import json
import random

import pytest

from engine.policy import load_config_text
from engine.policy.explain import explain
from support import Upstream, free_port

SEED = 20261130
CASES = 120     # per kind of case


@pytest.fixture(scope="module")
def upstreams():
    ups = [Upstream() for _ in range(4)]
    yield ups
    for u in ups:
        u.stop()


def _config(port: int, ups: list[Upstream]) -> dict:
    ring = [{"address": u.address} for u in ups]
    direct = lambda name: {"status": 200, "body": name}            # noqa: E731
    routes = [
        {"name": "exact-root", "match": {"host": "api.example.com", "path": "/"},
         "direct_response": direct("exact-root")},
        {"name": "exact", "match": {"host": "api.example.com", "path_prefix": "/h/"},
         "direct_response": direct("exact")},
        {"name": "wild", "match": {"host": "*.example.com", "path_prefix": "/h/"},
         "direct_response": direct("wild")},
        {"name": "ip", "match": {"host": "127.0.0.1", "path_prefix": "/h/"},
         "direct_response": direct("ip")},
        {"name": "rw1", "match": {"path_prefix": "/rw1/"},
         "rewrite": {"path_prefix": "/"}, "to": [{"cluster": "echo"}]},
        {"name": "rw2", "match": {"path_prefix": "/rw2"},
         "rewrite": {"path_prefix": "/v2/"}, "to": [{"cluster": "echo"}]},
        {"name": "rw3", "match": {"path_prefix": "/rw3/x"},
         "rewrite": {"path_prefix": "/a/b"}, "to": [{"cluster": "echo"}]},
        {"name": "cookie", "match": {"path_prefix": "/ring/cookie"},
         "to": [{"cluster": "by-cookie"}]},
        {"name": "header", "match": {"path_prefix": "/ring/header"},
         "to": [{"cluster": "by-header"}]},
        {"name": "client", "match": {"path_prefix": "/ring/client"},
         "to": [{"cluster": "by-client"}]},
        {"name": "fallback", "match": {"path_prefix": "/"}, "direct_response": direct("fallback")},
    ]
    return {
        "admin": {"address": f"127.0.0.1:{free_port()}"},
        "listeners": [{"name": "main", "address": f"127.0.0.1:{port}",
                       "routes": [r["name"] for r in routes]}],
        "routes": routes,
        "clusters": [
            {"name": "echo", "endpoints": [{"address": ups[0].address}]},
            {"name": "by-cookie", "balancer": "ring_hash", "hash_on": "cookie:Session",
             "endpoints": ring},
            {"name": "by-header", "balancer": "ring_hash", "hash_on": "header:X-User",
             "endpoints": ring},
            {"name": "by-client", "balancer": "ring_hash", "hash_on": "client_ip",
             "endpoints": ring},
        ],
    }


@pytest.fixture(scope="module")
def proxy(upstreams, tmp_path_factory):
    from support import Sluice

    port = free_port()
    config = _config(port, upstreams)
    s = Sluice(config, tmp_path_factory.mktemp("explain"), extra=["--access-log", "off"])
    yield s, load_config_text(json.dumps(config))
    s.stop()


def _send(port: int, target: str, headers: list[tuple[str, str]]) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            c.putheader(name, value)
        c.endheaders()
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def _check(proxy, url: str, headers: list[tuple[str, str]], sent_target: str | None = None,
           client_ip: str | None = None) -> None:
    """Explain `GET url` with `headers`, send it, and hold the two to the same answer."""
    s, config = proxy
    e = explain(config, f"GET {url}", [f"{n}: {v}" for n, v in headers], client_ip=client_ip)
    status, body = _send(s.port, sent_target or url, headers)
    case = f"GET {url} {headers}: explain says {e.route.name if e.route else None}"
    assert status == 200, f"{case}; the proxy answered {status} {body[:200]!r}"
    route = e.route
    assert route is not None, case                    # the config has a catch-all
    if route.direct_response is not None:
        assert body.decode() == route.name, case
        return
    echo = json.loads(body)
    assert echo["path"] == e.upstream_target.decode(), case
    (share,) = e.split
    ports = [ep.address.port for ep in share.cluster.endpoints]
    assert echo["port"] in ports, case
    if share.picked is not None and not share.picked.startswith(("no ", "depends")):
        assert echo["port"] == int(share.picked.rsplit(":", 1)[1]), \
            f"{case}; explain picked {share.picked}, the proxy went to port {echo['port']}"


# -- generated requests -------------------------------------------------------------------------

LABELS = ["api", "API", "Api", "www", "x-1", "a.b"]
DOMAINS = ["example.com", "EXAMPLE.COM", "Example.Com", "example.org", "com"]
PORTS = ["", ":8080", ":80", ":1", ":65535", ":00080"]


def _host(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.1:
        host = "127.0.0.1"
    elif kind < 0.15:
        host = "[::1]"
    elif kind < 0.25:
        host = rng.choice(DOMAINS)
    else:
        host = f"{rng.choice(LABELS)}.{rng.choice(DOMAINS)}"
    return host + rng.choice(PORTS)


def _path(rng: random.Random) -> str:
    head = rng.choice(["/h/", "/h", "/H/", "/rw1/", "/rw1", "/rw2", "/rw2x/", "/rw2/",
                       "/rw3/x", "/rw3/xy/", "/rw3/", "/", "/x/../h/", "//h/", "/%68/"])
    tail = rng.choice(["", "a", "a/b", "a?q=1", "?q=/x", "../rw1/z", "%41b", "a//b/"])
    return head + tail


def test_host_and_rewrite_in_a_host_header(proxy):
    rng = random.Random(SEED)
    for _ in range(CASES):
        _check(proxy, _path(rng), [("Host", _host(rng))])


def test_host_and_rewrite_in_an_absolute_form_target(proxy):
    rng = random.Random(SEED + 1)
    for _ in range(CASES):
        scheme = rng.choice(["http", "HTTP", "https"])
        path = _path(rng)
        if rng.random() < 0.3:        # no path at all: the authority ends at '?' or the end
            path = rng.choice(["", "?q=1", "?q=/h/", "?"])
        # the authority wins over the Host header, which the proxy must ignore
        _check(proxy, f"{scheme}://{_host(rng)}{path}", [("Host", "ignored.invalid")])


def _cookie(rng: random.Random) -> str | None:
    if rng.random() < 0.1:
        return None
    parts = []
    for _ in range(rng.randint(0, 3)):
        parts.append(f"{rng.choice(['a', 'b', 'session', 'SESSION', 'Sess'])}="
                     f"{rng.randrange(1000)}")
    value = "".join(rng.choice("abcXYZ019-_") for _ in range(rng.randint(0, 12)))
    session = rng.choice([f"Session={value}", f"Session={value}", "Session=", "Session",
                          f" Session = {value}", f"Session={value}; Session=other"])
    parts.insert(rng.randint(0, len(parts)), session)
    return rng.choice(["; ", ";", " ;  "]).join(parts)


def test_ring_hash_on_a_cookie_picks_the_endpoint_explain_names(proxy):
    rng = random.Random(SEED + 2)
    picked = set()
    for _ in range(CASES):
        cookie = _cookie(rng)
        headers = [("Host", "h")] + ([("Cookie", cookie)] if cookie is not None else [])
        _check(proxy, "/ring/cookie", headers)
        e = explain(proxy[1], "GET /ring/cookie", [f"{n}: {v}" for n, v in headers])
        picked.add(e.split[0].picked)
    assert len([p for p in picked if p and p.startswith("127.0.0.1:")]) >= 3, picked


def test_ring_hash_on_a_header_and_on_the_client_address(proxy):
    rng = random.Random(SEED + 3)
    for _ in range(CASES // 2):
        value = "".join(rng.choice("abcXYZ019 -") for _ in range(rng.randint(0, 10))).strip()
        name = rng.choice(["X-User", "x-user", "X-USER"])
        _check(proxy, "/ring/header", [("Host", "h"), (name, value)])
    for _ in range(5):
        _check(proxy, "/ring/client", [("Host", "h")], client_ip="127.0.0.1")


@pytest.mark.parametrize("url, headers", [
    ("ftp://api.example.com/h/", []),                    # a scheme the proxy does not take
    ("/h/", [("Host", "a" * 256 + ".example.com")]),      # longer than a host can be
    ("http://" + "a" * 300 + "/h/", []),
])
def test_what_the_proxy_refuses_explain_refuses(proxy, url, headers):
    from engine.policy.explain import ExplainError

    s, config = proxy
    status, _ = _send(s.port, url, headers + ([] if headers else [("Host", "h")]))
    assert status == 400
    with pytest.raises(ExplainError, match="the proxy answers 400"):
        explain(config, f"GET {url}", [f"{n}: {v}" for n, v in headers])


def test_a_client_identity_route_as_the_proxy_takes_it_with_mutual_tls(tmp_path):
    """The one identity the demo certificates carry, through a real mutual-TLS handshake."""
    import ssl
    import subprocess
    import sys

    from support import ROOT, Sluice

    certs = tmp_path / "certs"
    subprocess.run([sys.executable, str(ROOT / "config" / "make_demo_certs.py"), str(certs)],
                   check=True, capture_output=True)
    port = free_port()
    direct = lambda name: {"status": 200, "body": name}            # noqa: E731
    routes = [
        {"name": "web", "match": {"client_identity": "spiffe://demo.local/ns/demo/sa/web"},
         "direct_response": direct("web")},
        {"name": "demo", "match": {"client_identity": "spiffe://demo.local/ns/demo/*"},
         "direct_response": direct("demo")},
        {"name": "other", "match": {"path_prefix": "/"}, "direct_response": direct("other")},
    ]
    config = {
        "admin": {"address": f"127.0.0.1:{free_port()}"},
        "listeners": [{"name": "mtls", "address": f"127.0.0.1:{port}",
                       "routes": [r["name"] for r in routes],
                       "tls": {"certificates": [{"cert": str(certs / "server.crt"),
                                                 "key": str(certs / "server.key")}],
                               "client_ca": str(certs / "ca.crt")}}],
        "routes": routes,
    }
    s = Sluice(config, tmp_path, extra=["--access-log", "off"])
    try:
        ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        ctx.load_cert_chain(str(certs / "client.crt"), str(certs / "client.key"))
        c = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
        c.request("GET", "/")
        body = c.getresponse().read().decode()
        c.close()
        e = explain(load_config_text(json.dumps(config)), "GET https://localhost/",
                    client_identity="spiffe://demo.local/ns/demo/sa/curl")
        assert body == e.route.name == "demo"
        assert e.passed_over[0].route == "web"
    finally:
        s.stop()

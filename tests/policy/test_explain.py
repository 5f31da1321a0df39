"""engine/policy/explain.py: the route the router picks, everything that follows, and why the
others did not match."""
import itertools
from pathlib import Path

import pytest

from engine.policy import explain as ex
from engine.policy import load_config, load_config_text
from engine.policy.explain import ExplainError, explain, first_failure, main, parse_request
from engine.policy.link import router_entry
from engine.policy.snapshot import encode_snapshot

EXAMPLE = Path(__file__).parent / "fixtures" / "config_md_example.yaml"

TWO_LISTENERS = """\
listeners:
  - {name: public, address: 0.0.0.0:8080, routes: [api, web]}
  - {name: internal, address: 127.0.0.1:9090, routes: [ops]}
routes:
  - name: api
    match: {host: api.example.com, path_prefix: /api/, methods: [GET]}
    rewrite: {path_prefix: /v2/}
    to: [{cluster: a, weight: 1}, {cluster: b, weight: 2}]
  - {name: web, match: {host: "*.example.com"}, to: [{cluster: b}]}
  - {name: ops, match: {path_regex: "/ops/[a-z]+"}, to: [{cluster: ring}]}
clusters:
  - {name: a, endpoints: [{address: 127.0.0.1:9001}]}
  - name: b
    balancer: least_request
    endpoints: [{address: 127.0.0.1:9002, weight: 2}, {address: 127.0.0.1:9003, weight: 1}]
  - name: ring
    balancer: ring_hash
    hash_on: cookie:session
    endpoints: [{address: 127.0.0.1:9004}, {address: 127.0.0.1:9005}, {address: 127.0.0.1:9006}]
"""


@pytest.fixture(scope="module")
def example():
    return load_config(EXAMPLE)


@pytest.fixture(scope="module")
def two():
    return load_config_text(TWO_LISTENERS)


def test_kinds_are_the_routers():
    from engine._fast import router
    assert (ex.HOST_ANY, ex.HOST_EXACT, ex.HOST_SUFFIX) == \
        (router.HOST_ANY, router.HOST_EXACT, router.HOST_SUFFIX)
    assert (ex.PATH_ANY, ex.PATH_EXACT, ex.PATH_PREFIX, ex.PATH_REGEX) == \
        (router.PATH_ANY, router.PATH_EXACT, router.PATH_PREFIX, router.PATH_REGEX)


# -- the request as the proxy sees it ----------------------------------------------------------


def test_absolute_url_host_is_lowercased_without_port_and_path_without_query():
    r = parse_request("GET http://API.Example.COM:8443/a/b?x=1#frag", ["X-Canary: 1 ",
                                                                       "x-canary: 2"])
    assert (r.method, r.host, r.port, r.path, r.target) == \
        (b"GET", b"api.example.com", 8443, b"/a/b", b"/a/b?x=1")
    assert r.headers == {b"x-canary": b"1"}  # the first value, as the parser reports it


def test_origin_form_takes_the_host_header_and_scheme_default_ports():
    r = parse_request("POST /p", ["Host: Web.example.com"])
    assert (r.method, r.host, r.port, r.path) == (b"POST", b"web.example.com", 80, b"/p")
    assert parse_request("https://h").port == 443
    assert parse_request("http://h").target == b"/"
    assert parse_request("GET /p").host == b""
    assert parse_request("GET /p").port is None


def test_an_absolute_target_is_split_as_the_proxy_splits_it():
    # the authority ends at '/' or '?' (engine/_fast/proxy.pyx); a bracketed IPv6 literal keeps
    # its brackets and loses its port (engine/_fast/semantics.pyx route_host)
    r = parse_request("GET HTTP://API.example.com:80?q=/x")
    assert (r.host, r.port, r.target, r.path) == (b"api.example.com", 80, b"/?q=/x", b"/")
    r = parse_request("GET http://[::1]:8080/a")
    assert (r.host, r.port, r.path) == (b"[::1]", 8080, b"/a")


def test_a_host_the_proxy_answers_400_is_an_explain_error():
    with pytest.raises(ExplainError, match="the proxy answers 400 to host"):
        parse_request("GET /", ["Host: " + "a" * 256])
    with pytest.raises(ExplainError, match="the proxy answers 400 to the scheme 'ftp'"):
        parse_request("GET ftp://h/")


@pytest.mark.parametrize("line, headers, message", [
    ("GET", [], "neither an absolute URL"),
    ("GET example.com/x", [], "neither an absolute URL"),
    ("GET http://h/ extra", [], "expected 'METHOD URL'"),
    ("G(T /x", [], "is not an HTTP method"),
    ("GET /x", ["no-colon"], "expected 'name: value'"),
])
def test_a_malformed_request_is_an_explain_error(line, headers, message):
    with pytest.raises(ExplainError, match=message):
        parse_request(line, headers)


# -- a match -----------------------------------------------------------------------------------


def test_config_md_example_api_request(example):
    e = explain(example, "GET http://api.example.com/api/users?page=2",
                ["x-canary: 1", "x-internal: yes"])
    assert e.matched and (e.listener.name, e.route.name, e.index) == ("main", "api", 1)
    assert [(m.index, m.route) for m in e.passed_over] == [(0, "health")]
    assert e.passed_over[0].reason == "path '/api/users' is not '/healthz'"
    assert e.upstream_target == b"/users?page=2"
    assert e.set_headers == {"x-gateway": "sluice"}
    assert e.removed_headers == ("x-internal",)
    assert [(s.cluster.name, s.weight, s.percent) for s in e.split] == \
        [("api-v1", 90, "90%"), ("api-v2", 10, "10%")]
    text = e.text()
    for line in [
        "listener:    main (127.0.0.1:8080; the only listener)",
        "route:       api (index 1 of listener main: 1 earlier route did not match)",
        "  [0] health: path '/api/users' is not '/healthz'",
        ("rate limit:  100 requests/s, burst 20, per client_ip (buckets shared by all workers; "
         "429 when empty)"),
        "timeout:     5s (whole request, upstream response included)",
        "upstream:    GET /users?page=2 (rewritten from /api/users?page=2)",
        "  set        x-gateway: sluice",
        "  remove     x-internal",
        "split:       api-v1 weight 90 (90%), api-v2 weight 10 (10%)",
        ("cluster api-v1: weighted_round_robin, connect timeout 1s, up to 1024 connections per "
         "worker"),
        "  127.0.0.1:9001  weight 3 (75%)",
        "  127.0.0.1:9002  weight 1 (25%)",
        "  127.0.0.1:9003  weight 1 (100%)",
    ]:
        assert line in text.splitlines(), (line, text)


def test_a_direct_response_route(example):
    e = explain(example, "HEAD http://anything/healthz")
    assert (e.route.name, e.index, e.passed_over, e.upstream_target) == ("health", 0, [], None)
    assert "direct response: 200, body 3 bytes, content-type: text/plain (answered by the " \
           "proxy, no upstream)" in e.text()


def test_the_catch_all_with_every_earlier_reason(example):
    e = explain(example, "DELETE http://api.example.com/api/x", ["x-canary: 1"])
    assert e.route.name == "web"
    assert e.passed_over[1].reason == "method DELETE is not one of GET, POST"
    assert "upstream:    DELETE /api/x (unchanged)" in e.text()
    e = explain(example, "GET http://api.example.com/api/x", ["x-canary: 0"])
    assert e.passed_over[1].reason == "header x-canary is '0', not '1'"
    e = explain(example, "GET http://api.example.com/api/x")
    assert e.passed_over[1].reason == "header x-canary is absent (needs '1')"


def test_rewrite_set_header_replaces_the_clients_value(example):
    text = explain(example, "POST http://api.example.com/api/", ["x-canary: 1",
                                                                 "X-Gateway: mine"]).text()
    assert "upstream:    POST / (rewritten from /api/)" in text
    assert "  set        x-gateway: sluice (replaces 'mine')" in text
    assert "  remove     x-internal (not in this request)" in text


def test_split_percentages_and_rewrite_to_another_prefix(two):
    e = explain(two, "GET http://api.example.com:8080/api/users")
    assert e.listener.name == "public" and e.route.name == "api"
    assert e.upstream_target == b"/v2/users"
    assert [s.percent for s in e.split] == ["33.3%", "66.7%"]
    assert "cluster b: least_request, connect timeout 1s" in e.text()
    assert "  127.0.0.1:9002  weight 2 (66.7%)" in e.text()


# -- no match ----------------------------------------------------------------------------------


def test_no_match_lists_each_route_with_its_first_failed_condition(two):
    e = explain(two, "POST http://example.com:8080/api/users")
    assert not e.matched and e.index == -1
    assert [(m.route, m.reason) for m in e.passed_over] == [
        ("api", "host 'example.com' is not 'api.example.com'"),
        ("web", ("host 'example.com' is not under '*.example.com' (the wildcard needs a label "
                 "before it)")),
    ]
    lines = e.text().splitlines()
    assert "no route matched host 'example.com' path '/api/users' method POST" in lines
    assert "  [1] web: host 'example.com' is not under '*.example.com' (the wildcard needs a " \
           "label before it)" in lines


def test_no_match_reasons_for_path_kinds_and_case_sensitive_methods(two):
    e = explain(two, "get http://api.example.com:8080/api/x")
    assert e.passed_over[0].reason == "method get is not GET (methods are case-sensitive)"
    e = explain(two, "GET http://x:9090/ops/Restart")
    assert e.passed_over[0].reason == \
        "path '/ops/Restart' does not match the regex '/ops/[a-z]+' (whole path)"
    e = explain(two, "GET /x", listener="public")
    assert e.passed_over[0].reason == "the request has no host (needs 'api.example.com')"


# -- listeners and hashing ---------------------------------------------------------------------


def test_the_listener_is_chosen_by_port_else_the_first(two):
    assert explain(two, "GET http://h:9090/ops/x").listener.name == "internal"
    e = explain(two, "GET http://www.example.com/")
    assert (e.listener.name, e.route.name) == ("public", "web")
    assert e.listener_reason.startswith("no listener on port 80: the first listener")
    assert explain(two, "GET http://h/ops/x", listener="internal").route.name == "ops"
    with pytest.raises(ExplainError, match="no listener named 'x' .the listeners: public, "
                                           "internal."):
        explain(two, "GET /", listener="x")


def test_ring_hash_shows_the_endpoint_the_ring_picks(two):
    from engine.policy.link import _link_cluster

    ring = _link_cluster(two.cluster("ring"), {}, {}).balancer
    seen = set()
    for session in ("a", "b", "c", "d", "e", "f"):
        e = explain(two, "GET http://h:9090/ops/x", [f"cookie: x=1; session={session}"])
        expected = two.cluster("ring").endpoints[ring.pick_py(session.encode())].address
        assert e.split[0].picked == str(expected)
        assert f"  this request: {expected}" in e.text()
        seen.add(e.split[0].picked)
    assert len(seen) > 1
    assert "no cookie:session in the request" in explain(two, "GET http://h:9090/ops/x").text()


# -- the reasons agree with the router ---------------------------------------------------------


def test_reasons_agree_with_the_router_over_many_routes_and_requests():
    # more routes than the router scans linearly (8), so its index is exercised too
    routes = []
    hosts = [None, "a.test", "*.a.test", "*.b.a.test"]
    paths = [{}, {"path": "/x"}, {"path_prefix": "/x"}, {"path_prefix": "/x/"},
             {"path_regex": "/x/[0-9]+"}]
    for i, (host, path) in enumerate(itertools.product(hosts, paths)):
        match = dict(path)
        if host:
            match["host"] = host
        if i % 3 == 1:
            match["methods"] = ["POST"]
        if i % 4 == 2:
            match["headers"] = {"x-v": "2"}
        routes.append({"name": f"r{i}", "match": match, "to": [{"cluster": "c"}]})
    del routes[0]  # the catch-all: some requests match nothing
    routes.reverse()  # the narrowest hosts first
    config = load_config_text(__import__("json").dumps({
        "listeners": [{"name": "l", "address": "127.0.0.1:1",
                       "routes": [r["name"] for r in routes]}],
        "routes": routes,
        "clusters": [{"name": "c", "endpoints": [{"address": "127.0.0.1:2"}]}],
    }))
    entries = [router_entry(config.route(r["name"]).match) for r in routes]
    chosen = set()
    for host, path, method, headers in itertools.product(
            ["a.test", "z.a.test", "b.a.test", "c.b.a.test", "other", ""],
            ["/", "/x", "/x/", "/xy", "/x/12", "/x/1a"], ["GET", "POST"], [[], ["x-v: 2"]]):
        url = f"{method} http://{host}/{path.lstrip('/')}" if host else f"{method} {path}"
        e = explain(config, url, headers)
        request = parse_request(url, headers)
        scan = next((i for i, entry in enumerate(entries)
                     if first_failure(entry, request) is None), -1)
        assert e.index == scan, (url, headers)
        assert e.disagreement is None
        assert all("please report" not in m.reason for m in e.passed_over)
        chosen.add(e.index)
    assert len(chosen) > 10 and -1 in chosen


# -- the command -------------------------------------------------------------------------------


def test_command_exit_status_is_0_on_a_match_1_without_2_on_bad_input(tmp_path, capsys):
    config = tmp_path / "two.yaml"
    config.write_text(TWO_LISTENERS)
    assert main(["-c", str(config), "GET", "http://www.example.com/"]) == 0
    assert "route:       web" in capsys.readouterr().out
    assert main(["-c", str(config), "GET http://nope/"]) == 1
    assert "no route matched host 'nope'" in capsys.readouterr().out
    assert main(["-c", str(config), "GET nope"]) == 2
    assert capsys.readouterr().err.startswith("sluice explain: 'nope' is neither")
    assert main(["-c", str(config), "--listener", "x", "GET /"]) == 2
    assert "no listener named 'x'" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(TWO_LISTENERS.replace("weight: 2}", "weight: -2}"))
    assert main(["-c", str(bad), "GET /"]) == 2
    assert f"{bad}: routes[0].to[1].weight: must be at least 1, got -2\n" in \
        capsys.readouterr().err


def test_command_reads_a_snapshot(tmp_path, capsys, two):
    snap = tmp_path / "two.msgpack"
    snap.write_bytes(encode_snapshot(two, "two.yaml", created_at=0))
    assert main(["-s", str(snap), "-H", "cookie: session=a", "GET http://h:9090/ops/x"]) == 0
    assert "route:       ops" in capsys.readouterr().out
    snap.write_bytes(b"junk")
    assert main(["-s", str(snap), "GET /"]) == 2
    assert "not a sluice snapshot" in capsys.readouterr().err


def test_regex_reasons_use_the_routers_engine_re2():
    # `[[:digit:]]` is RE2 syntax that Python's re reads differently; `/(a+)+$` would make re
    # backtrack for ages on the second request: explain must answer as the router, at once
    config = load_config_text("""\
listeners: [{name: l, address: "127.0.0.1:1", routes: [digits, evil, rest]}]
routes:
  - {name: digits, match: {path_regex: "/d/[[:digit:]]+"}, to: [{cluster: c}]}
  - {name: evil, match: {path_regex: "/(a+)+$"}, to: [{cluster: c}]}
  - {name: rest, match: {path_prefix: /}, to: [{cluster: c}]}
clusters: [{name: c, endpoints: [{address: "127.0.0.1:2"}]}]
""")
    assert explain(config, "GET /d/123").route.name == "digits"
    e = explain(config, "GET /" + "a" * 40 + "!")
    assert e.route.name == "rest"
    assert e.disagreement is None
    assert [m.reason for m in e.passed_over] == [
        "path '/" + "a" * 40 + "!' does not match the regex '/d/[[:digit:]]+' (whole path)",
        "path '/" + "a" * 40 + "!' does not match the regex '/(a+)+$' (whole path)",
    ]
    assert explain(config, "GET /aaaa").route.name == "evil"


def test_explain_routes_the_path_the_proxy_normalises(example):
    result = explain(example, "GET http://api.example.com/x/../api/%68ello?q=%2e", ["x-canary: 1"])
    assert result.route.name == "api"
    assert result.request.path == b"/api/hello"
    assert result.request.raw_path == b"/x/../api/%68ello"
    assert result.upstream_target == b"/hello?q=%2e"      # rewritten, query as it came
    assert "(normalised from '/x/../api/%68ello')" in result.text()


def test_explain_says_when_the_proxy_answers_400_to_the_path(example):
    with pytest.raises(ExplainError, match="400.*escaped slash"):
        explain(example, "GET http://api.example.com/x/..%2fapi/")


# -- mutual TLS: match.client_identity ---------------------------------------------------------


@pytest.fixture(scope="module")
def mtls(tmp_path_factory):
    import subprocess
    import sys

    certs = tmp_path_factory.mktemp("certs")
    subprocess.run([sys.executable, str(Path(__file__).resolve().parents[2] / "config" /
                                        "make_demo_certs.py"), str(certs)],
                   check=True, capture_output=True)
    return load_config_text(f"""\
listeners:
  - name: mtls
    address: 127.0.0.1:8443
    routes: [curl, demo, other]
    tls:
      certificates: [{{cert: {certs}/server.crt, key: {certs}/server.key}}]
      client_ca: {certs}/ca.crt
routes:
  - {{name: curl, match: {{client_identity: "spiffe://demo.local/ns/demo/sa/curl"}},
     direct_response: {{status: 200, body: curl}}}}
  - {{name: demo, match: {{client_identity: "spiffe://demo.local/ns/demo/*"}},
     direct_response: {{status: 200, body: demo}}}}
  - {{name: other, match: {{path_prefix: /}}, direct_response: {{status: 403}}}}
""")


def test_a_client_identity_route_matches_the_identity_given(mtls):
    e = explain(mtls, "GET https://h/", client_identity="spiffe://demo.local/ns/demo/sa/curl")
    assert e.route.name == "curl" and e.passed_over == []
    assert "client identity spiffe://demo.local/ns/demo/sa/curl" in e.text()
    e = explain(mtls, "GET https://h/", client_identity="spiffe://demo.local/ns/demo/sa/web")
    assert e.route.name == "demo"
    assert e.passed_over[0].reason == ("client identity 'spiffe://demo.local/ns/demo/sa/web' "
                                       "is not 'spiffe://demo.local/ns/demo/sa/curl'")


def test_without_a_client_identity_the_identity_routes_are_passed_over_and_why(mtls):
    e = explain(mtls, "GET https://h/")
    assert e.route.name == "other"
    assert [m.reason for m in e.passed_over] == [
        "needs a client certificate with the identity 'spiffe://demo.local/ns/demo/sa/curl' "
        "(mutual TLS; give one with --client-identity)",
        "needs a client certificate with the identity 'spiffe://demo.local/ns/demo/*' "
        "(mutual TLS; give one with --client-identity)"]
    # the prefix keeps its slash: ns/demox is not under ns/demo/*
    e = explain(mtls, "GET https://h/", client_identity="spiffe://demo.local/ns/demox/sa/a")
    assert e.route.name == "other"
    assert e.passed_over[1].reason == ("client identity 'spiffe://demo.local/ns/demox/sa/a' is "
                                       "not under 'spiffe://demo.local/ns/demo/*'")

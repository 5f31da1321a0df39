"""engine/policy/lint.py: warnings on configs that load."""
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.policy.lint import check
from engine.policy.matching import covers
from engine.policy.model import Config


def config(routes, listener_routes, clusters=("web",)):
    return Config.model_validate({
        "listeners": [{"name": "main", "address": "127.0.0.1:8080", "routes": listener_routes}],
        "routes": routes,
        "clusters": [{"name": c, "endpoints": [{"address": "127.0.0.1:9000"}]} for c in clusters],
    })


def route(name, **match):
    return {"name": name, "match": match, "to": [{"cluster": "web"}]}


def test_clean_config_has_no_warnings():
    assert check(config([route("a", path="/a"), route("b", path_prefix="/")], ["a", "b"])) == []


def test_routes_after_a_catch_all_are_shadowed():
    found = check(config([route("all"), route("a", path="/a"), route("b", methods=["GET"])],
                         ["all", "a", "b"]))
    assert found == [
        (("listeners", 0, "routes", 1),
         "route 'a' is never reached: route 'all' before it (routes[0]) matches every request"),
        (("listeners", 0, "routes", 2),
         "route 'b' is never reached: route 'all' before it (routes[0]) matches every request"),
    ]


def test_a_broader_prefix_shadows_a_narrower_one():
    found = check(config([route("api", path_prefix="/api"), route("v1", path_prefix="/api/v1")],
                         ["api", "v1"]))
    assert found == [(("listeners", 0, "routes", 1),
                      "route 'v1' is never reached: route 'api' before it (routes[0]) matches "
                      "every request 'v1' matches")]


def test_narrower_first_is_fine():
    assert check(config([route("v1", path_prefix="/api/v1"), route("api", path_prefix="/api")],
                        ["v1", "api"])) == []


def test_no_effect_fields_on_direct_response_routes():
    routes = [{"name": "h", "match": {"path": "/h"}, "timeout": "1s",
               "rewrite": {"set_headers": {"x": "1"}}, "direct_response": {"status": 200}},
              route("w", path_prefix="/")]
    assert check(config(routes, ["h", "w"])) == [
        (("routes", 0, "rewrite"),
         "has no effect on a route with direct_response (nothing goes upstream)"),
        (("routes", 0, "timeout"),
         "has no effect on a route with direct_response (nothing goes upstream)"),
    ]


def test_hash_on_without_ring_hash_is_ignored():
    cfg = Config.model_validate({
        "listeners": [{"name": "main", "address": "127.0.0.1:8080", "routes": ["w"]}],
        "routes": [route("w")],
        "clusters": [{"name": "web", "balancer": "least_request", "hash_on": "client_ip",
                      "endpoints": [{"address": "127.0.0.1:9000"}]}],
    })
    assert check(cfg) == [(("clusters", 0, "hash_on"),
                           "has no effect with balancer: least_request (only ring_hash uses it)")]


# --- the indexed shadow check answers as the pairwise comparison it replaced ---


def pairwise_shadowed(cfg):
    """The reference: every route against every earlier one, the first that covers it wins."""
    routes = {r.name: r for r in cfg.routes}
    found = []
    for i, listener in enumerate(cfg.listeners):
        earlier = []
        for j, name in enumerate(listener.routes):
            if name not in routes or any(name == seen for _, seen in earlier):
                continue
            for k, seen in earlier:
                if covers(routes[seen].match, routes[name].match):
                    what = "matches every request" if routes[seen].match.is_catch_all \
                        else f"matches every request '{name}' matches"
                    found.append((("listeners", i, "routes", j),
                                  f"route '{name}' is never reached: route '{seen}' before it "
                                  f"(routes[{k}]) {what}"))
                    break
            earlier.append((j, name))
    return found


def shadow_warnings(cfg):
    return [w for w in check(cfg) if w[0][0] == "listeners"]


HOSTS = [None, "a.com", "b.a.com", "*.a.com", "*.b.a.com", "x.b.a.com", "c.com"]
PATHS = ["/", "/a", "/a/", "/a/b", "/ab", "/a/b/c", "/b", "/a1", "/a/1"]
REGEXES = ["/a.*", "/a/[0-9]+", "/(a|b)", "/a/b/?c?", "/[a-z]+1", "(/a)+"]

match_strategy = st.fixed_dictionaries({}, optional={
    "host": st.sampled_from(HOSTS[1:]),
    "methods": st.lists(st.sampled_from(["GET", "POST", "PUT"]), min_size=1, max_size=3,
                        unique=True),
    "headers": st.dictionaries(st.sampled_from(["x-a", "x-b"]), st.sampled_from(["1", "2"]),
                               max_size=2),
}).flatmap(lambda base: st.one_of(
    st.just(base),
    st.sampled_from(PATHS).map(lambda p: {**base, "path": p}),
    st.sampled_from(PATHS).map(lambda p: {**base, "path_prefix": p}),
    st.sampled_from(REGEXES).map(lambda p: {**base, "path_regex": p}),
))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(match_strategy, min_size=1, max_size=14), st.randoms(use_true_random=False))
def test_shadow_warnings_equal_the_pairwise_reference(matches, rnd):
    names = [f"r{i}" for i in range(len(matches))]
    order = names[:]
    rnd.shuffle(order)
    cfg = Config.model_validate({
        "listeners": [{"name": "main", "address": "127.0.0.1:8080", "routes": order},
                      {"name": "two", "address": "127.0.0.1:8081", "routes": names[::-1]}],
        "routes": [{"name": n, "match": mt, "to": [{"cluster": "web"}]}
                   for n, mt in zip(names, matches)],
        "clusters": [{"name": "web", "endpoints": [{"address": "127.0.0.1:9000"}]}],
    })
    assert shadow_warnings(cfg) == pairwise_shadowed(cfg)


def large_config(n, seed):
    """n routes mixing every kind of condition, with many real shadowings among them."""
    rnd = random.Random(seed)
    routes = []
    for i in range(n):
        mt = {}
        if rnd.random() < 0.3:
            mt["host"] = rnd.choice(["*.example.com", f"h{rnd.randrange(50)}.example.com",
                                     "*.a.example.com", f"x.a.example.com"])
        if rnd.random() < 0.2:
            mt["methods"] = rnd.sample(["GET", "POST", "PUT", "DELETE"], rnd.randint(1, 3))
        if rnd.random() < 0.2:
            mt["headers"] = {"x-tenant": str(rnd.randrange(20))}
        kind = rnd.random()
        depth = "/".join(f"s{rnd.randrange(8)}" for _ in range(rnd.randint(1, 4)))
        if kind < 0.35:
            mt["path"] = f"/{depth}"
        elif kind < 0.75:
            mt["path_prefix"] = f"/{depth}"
        elif kind < 0.9:
            mt["path_regex"] = f"/{depth}/[0-9]+"
        routes.append({"name": f"r{i}", "match": mt, "to": [{"cluster": "web"}]})
    names = [r["name"] for r in routes]
    return Config.model_validate({
        "listeners": [{"name": "main", "address": "127.0.0.1:8080", "routes": names}],
        "routes": routes,
        "clusters": [{"name": "web", "endpoints": [{"address": "127.0.0.1:9000"}]}],
    })


@pytest.mark.parametrize("seed", range(3))
def test_large_config_gives_the_pairwise_warnings(seed):
    cfg = large_config(1500, seed)
    found = shadow_warnings(cfg)
    assert found == pairwise_shadowed(cfg)
    assert len(found) > 100  # the config exercises the index, not just clean routes


@pytest.mark.parametrize("kind,value,fixed", [
    ("path", "/a//b", "/a/b"), ("path", "/a/./b", "/a/b"), ("path", "/%7euser", "/~user"),
    ("path_prefix", "/api//v1/", "/api/v1/"), ("path_prefix", "/x/./", "/x/"),
    ("path", "/a%2fb", None),
])
def test_a_route_path_the_listener_never_routes_is_warned(kind, value, fixed):
    found = check(config([route("a", **{kind: value})], ["a"]))
    assert [loc for loc, _ in found] == [("routes", 0, "match", kind)]
    reason = found[0][1]
    assert (f"write '{fixed}'" in reason) if fixed else ("never matches" in reason and "400" in reason)


@pytest.mark.parametrize("kind,value", [("path_prefix", "/api/."), ("path_prefix", "/a/.well"),
                                        ("path", "/a/b"), ("path_prefix", "/%3B")])
def test_a_normal_route_path_is_not_warned(kind, value):
    assert check(config([route("a", **{kind: value})], ["a"])) == []


def test_a_listener_that_keeps_paths_as_they_came_warns_nothing():
    cfg = Config.model_validate({
        "listeners": [{"name": "main", "address": "127.0.0.1:8080", "routes": ["a"],
                       "paths": {"normalize": False, "merge_slashes": False}}],
        "routes": [route("a", path="/a//./b")],
        "clusters": [{"name": "web", "endpoints": [{"address": "127.0.0.1:9000"}]}],
    })
    assert check(cfg) == []


def test_insecure_skip_verify_is_a_warning_and_says_a_ca_is_then_ignored(tmp_path):
    from tls_certs import CA

    ca = CA(tmp_path)
    data = config([route("a")], ["a"]).model_dump(mode="json")
    data["clusters"][0]["tls"] = {"insecure_skip_verify": True}
    assert check(Config.model_validate(data)) == [
        (("clusters", 0, "tls", "insecure_skip_verify"),
         "the upstream's certificate is not verified: anyone on the path can pose as it "
         "(for tests only)")]
    data["clusters"][0]["tls"] = {"insecure_skip_verify": True, "ca": str(ca.cert_path)}
    assert check(Config.model_validate(data))[0][1].endswith("; tls.ca has no effect")
    data["clusters"][0]["tls"] = {"ca": str(ca.cert_path)}
    assert check(Config.model_validate(data)) == []


def test_an_expired_cluster_client_certificate_is_a_warning_naming_the_file(tmp_path):
    import datetime

    from tls_certs import CA

    ca = CA(tmp_path)
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=2)
    cert, key = ca.issue("old", uri="spiffe://td/sa/old", client=True, not_after=past)
    data = config([route("a")], ["a"]).model_dump(mode="json")
    data["clusters"][0]["tls"] = {"ca": str(ca.cert_path), "cert": str(cert), "key": str(key)}
    ((loc, reason),) = check(Config.model_validate(data))
    assert loc == ("clusters", 0, "tls", "cert")
    assert reason.startswith(f"{cert}: expired on ") and reason.endswith(
        "UTC: upstreams will refuse it")
    fresh = ca.issue("fresh", uri="spiffe://td/sa/fresh", client=True)
    data["clusters"][0]["tls"].update(cert=str(fresh[0]), key=str(fresh[1]))
    assert check(Config.model_validate(data)) == []


# -- HTTP/2 ------------------------------------------------------------------------------------


def h2_config(listener: dict | None = None, cluster: dict | None = None) -> Config:
    data = config([route("a")], ["a"]).model_dump(mode="json")
    data["listeners"][0].update(listener or {})
    data["clusters"][0].update(cluster or {})
    return Config.model_validate(data)


def test_http2_with_http1_and_an_http2_cluster_warn_nothing():
    assert check(h2_config({"protocols": ["http2", "http1"], "http2": {
        "max_concurrent_streams": 10}}, {"protocol": "http2", "http2": {
            "ping_interval": "0s"}})) == []


def test_a_plaintext_http2_only_listener_warns_that_http11_clients_are_refused():
    assert check(h2_config({"protocols": ["http2"]})) == [
        (("listeners", 0, "protocols"),
         "HTTP/1.1 clients cannot use this listener (on plaintext it serves only HTTP/2 with "
         "prior knowledge, h2c); add http1 to serve them")]


def test_a_tls_http2_only_listener_warns_that_http11_only_clients_are_refused(tmp_path):
    from tls_certs import CA

    cert, key = CA(tmp_path).issue("server", dns=["localhost"])
    assert check(h2_config({"protocols": ["http2"], "tls": {
        "certificates": [{"cert": str(cert), "key": str(key)}]}})) == [
        (("listeners", 0, "protocols"),
         "HTTP/1.1-only clients cannot use this listener (it serves only clients that "
         "negotiate h2 by ALPN); add http1 to serve them")]


def test_http2_settings_where_http2_is_not_spoken_have_no_effect():
    assert check(h2_config({"http2": {"initial_stream_window": 131072}},
                           {"http2": {"ping_timeout": "1s"}})) == [
        (("listeners", 0, "http2"), "has no effect: protocols does not list http2"),
        (("clusters", 0, "http2"), "has no effect with protocol: http1 (only http2 uses it)")]


def test_default_http2_blocks_written_out_warn_nothing():
    """A config that went through model_dump (a snapshot) has every block written out: only a
    setting that differs from its default is worth a warning."""
    assert check(h2_config({"http2": {"max_concurrent_streams": 128}},
                           {"http2": {"ping_interval": "30s"}})) == []

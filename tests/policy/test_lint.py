"""engine/policy/lint.py: warnings on configs that load."""
from engine.policy.lint import check
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

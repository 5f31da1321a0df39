"""engine/policy/model.py: the model built from Python data (the loader's messages are tested in
test_load.py)."""
import pydantic
import pytest

from engine.policy import Address
from engine.policy.fields import RequestKey
from engine.policy.errors import RuleViolation
from engine.policy.model import (
    Admin,
    Cluster,
    Config,
    DirectResponse,
    Limits,
    Match,
    Paths,
    Pool,
    Route,
)

MINIMAL = {
    "listeners": [{"name": "main", "address": "127.0.0.1:8080", "routes": ["web"]}],
    "routes": [{"name": "web", "match": {"path_prefix": "/"}, "to": [{"cluster": "web"}]}],
    "clusters": [{"name": "web", "endpoints": [{"address": "127.0.0.1:9000"}]}],
}


def _rules(error: pydantic.ValidationError) -> list:
    """The (loc, reason) pairs of the RuleViolations inside a ValidationError."""
    out = []
    for item in error.errors():
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, RuleViolation):
            out.extend((tuple(item["loc"]) + loc, reason) for loc, reason in cause.items)
    return out


def test_defaults_of_a_minimal_config():
    config = Config.model_validate(MINIMAL)
    assert config.admin == Admin(address=Address("127.0.0.1", 9901), token=None)
    assert config.access_log.path == "stdout"      # text logs go to stderr: never interleaved
    assert config.access_log.format == "json"
    assert config.listeners[0].limits == Limits(max_head_bytes=65536, max_headers=100,
                                                max_uri_bytes=8192)
    cluster = config.clusters[0]
    assert cluster.balancer == "weighted_round_robin"
    assert cluster.hash_on is None
    assert cluster.connect_timeout == 1.0
    assert cluster.pool == Pool(max_connections=1024, idle_timeout=60.0,
                                max_requests_per_connection=0)
    assert cluster.endpoints[0].weight == 1
    route = config.routes[0]
    assert route.to[0].weight == 1
    assert (route.rewrite, route.rate_limit, route.direct_response) == (None,) * 3
    assert route.timeout == 15.0          # Envoy's default route timeout; 0s = none


def test_values_are_normalised():
    match = Match.model_validate({"host": "API.Example.COM", "methods": ["get", "Post"],
                                  "headers": {"X-Canary": "1"}, "path_prefix": "/api/"})
    assert match.host == "api.example.com"
    assert match.methods == ("GET", "POST")
    assert match.headers == {"x-canary": "1"}
    cluster = Cluster.model_validate({"name": "c", "balancer": "ring_hash",
                                      "hash_on": "header:X-User", "connect_timeout": "250ms",
                                      "endpoints": [{"address": "[::1]:9000"}]})
    assert cluster.hash_on == RequestKey("header", "x-user")
    assert cluster.connect_timeout == 0.25
    assert cluster.endpoints[0].address == Address("::1", 9000)


def test_models_are_frozen_and_sequences_are_tuples():
    config = Config.model_validate(MINIMAL)
    with pytest.raises(pydantic.ValidationError):
        config.routes = ()  # type: ignore[misc]
    assert isinstance(config.listeners[0].routes, tuple)


def test_dump_in_json_mode_is_plain_data_that_loads_back_equal():
    config = Config.model_validate(MINIMAL)
    dumped = config.model_dump(mode="json")
    assert dumped["listeners"][0]["address"] == "127.0.0.1:8080"
    assert dumped["clusters"][0]["connect_timeout"] == 1.0
    assert Config.model_validate(dumped) == config


def test_config_checks_cross_references_when_built_directly():
    data = {**MINIMAL, "routes": [{"name": "web", "match": {}, "to": [{"cluster": "wbe"}]}]}
    with pytest.raises(pydantic.ValidationError) as caught:
        Config.model_validate(data)
    assert _rules(caught.value) == [
        (("routes", 0, "to", 0, "cluster"), "cluster 'wbe' is not defined; did you mean 'web'?")]


def test_config_defers_cross_references_on_request():
    from engine.policy.model import DEFER_CROSSREF
    data = {**MINIMAL, "routes": [{"name": "web", "match": {}, "to": [{"cluster": "wbe"}]}]}
    config = Config.model_validate(data, context={DEFER_CROSSREF: True})
    assert config.routes[0].to[0].cluster == "wbe"


def test_rule_violations_point_below_the_object():
    with pytest.raises(pydantic.ValidationError) as caught:
        Cluster.model_validate({"name": "c", "balancer": "ring_hash",
                                "endpoints": [{"address": "a:1"}, {"address": "A:1"}]})
    assert _rules(caught.value) == [
        (("hash_on",), "required with balancer: ring_hash (what to hash on)"),
        (("endpoints", 1, "address"), "A:1 is already endpoints[0]; raise its weight instead"),
    ]


def test_hash_on_with_another_balancer_is_accepted():
    # CONFIG.md's example does this; lint warns instead (test_lint.py)
    cluster = Cluster.model_validate({"name": "c", "hash_on": "client_ip",
                                      "endpoints": [{"address": "a:1"}]})
    assert cluster.hash_on == RequestKey("client_ip")


def test_admin_off_loopback_needs_a_token():
    assert Admin.model_validate({"address": "0.0.0.0:9901", "token": "s3cret"}).token == "s3cret"
    with pytest.raises(pydantic.ValidationError) as caught:
        Admin.model_validate({"address": "0.0.0.0:9901"})
    assert _rules(caught.value)[0][0] == ("token",)


def test_direct_response_rules():
    assert DirectResponse.model_validate({"status": 204}).body == ""
    with pytest.raises(pydantic.ValidationError) as caught:
        DirectResponse.model_validate({"status": 304, "body": "x",
                                       "headers": {"Transfer-Encoding": "chunked"}})
    assert _rules(caught.value) == [
        (("headers", "transfer-encoding"),
         "'transfer-encoding' is set by the proxy (from the body, or hop-by-hop)"),
        (("body",), "a 304 response has no body"),
    ]


def test_route_needs_exactly_one_action():
    with pytest.raises(pydantic.ValidationError) as caught:
        Route.model_validate({"name": "r", "match": {}})
    assert _rules(caught.value) == [((), "needs 'to' (clusters to forward to) or "
                                         "'direct_response'")]


def test_catch_all():
    assert Match().is_catch_all
    assert Match(path_prefix="/").is_catch_all
    assert not Match(path_prefix="/api").is_catch_all
    assert not Match(methods=("GET",)).is_catch_all


def test_lookup_by_name():
    config = Config.model_validate(MINIMAL)
    assert config.route("web").name == "web"
    assert config.cluster("web").endpoints[0].address.port == 9000
    with pytest.raises(KeyError):
        config.route("nope")


def test_path_normalisation_is_on_by_default_and_each_option_loosens_it():
    config = Config.model_validate(MINIMAL)
    assert config.listeners[0].paths == Paths(normalize=True, merge_slashes=True,
                                              escaped_slashes="reject")
    loose = dict(MINIMAL, listeners=[dict(MINIMAL["listeners"][0], paths={
        "normalize": False, "merge_slashes": False, "escaped_slashes": "keep"})])
    assert Config.model_validate(loose).listeners[0].paths == Paths(
        normalize=False, merge_slashes=False, escaped_slashes="keep")

"""engine/policy/load.py: every bad input gives exactly its one-line message, all at once."""
import copy
import logging
from pathlib import Path

import pytest

from engine.policy import (
    Config,
    ConfigError,
    check_data,
    check_file,
    check_text,
    load_config,
    load_config_text,
    validate_file,
)
from engine.policy.fields import RequestKey

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLE = FIXTURES / "config_md_example.yaml"

BASE = {
    "listeners": [{"name": "main", "address": "127.0.0.1:8080", "routes": ["api", "web"]}],
    "routes": [
        {"name": "api", "match": {"path_prefix": "/api/"}, "to": [{"cluster": "api"}]},
        {"name": "web", "match": {"path_prefix": "/"}, "to": [{"cluster": "web"}]},
    ],
    "clusters": [
        {"name": "api", "endpoints": [{"address": "127.0.0.1:9001"}]},
        {"name": "web", "endpoints": [{"address": "127.0.0.1:9002"}]},
    ],
}

DELETE = object()


def edited(**changes):
    """BASE with changes at dotted paths: edited(**{"routes.0.timeout": "5s"}); an index one past
    the end of a list appends, DELETE removes."""
    data = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, last = [int(p) if p.isdigit() else p for p in dotted.split(".")]
        node = data
        for part in parents:
            node = node[part]
        if value is DELETE:
            del node[last]
        elif isinstance(node, list) and last == len(node):
            node.append(value)
        else:
            node[last] = value
    return data


def lines(data, severity="error"):
    result = check_data(data, "cfg.yaml")
    chosen = result.errors if severity == "error" else result.warnings
    return [str(p) for p in chosen]


def test_base_is_valid_and_clean():
    result = check_data(edited(), "cfg.yaml")
    assert result.ok and result.problems == ()


# -- the CONFIG.md example ---------------------------------------------------------------------


def test_config_md_example_loads():
    config = load_config(EXAMPLE)
    assert [listener.name for listener in config.listeners] == ["main"]
    assert [r.name for r in config.routes] == ["health", "api", "web"]
    api = config.route("api")
    assert api.match.host == "api.example.com"
    assert api.match.methods == ("GET", "POST")
    assert api.rewrite.set_headers == {"x-gateway": "sluice"}
    assert api.rate_limit.per == RequestKey("client_ip") and api.rate_limit.rate == 100.0
    assert api.timeout == 5.0
    assert [(t.cluster, t.weight) for t in api.to] == [("api-v1", 90), ("api-v2", 10)]
    assert config.route("health").direct_response.body == "ok\n"
    assert [e.weight for e in config.cluster("api-v1").endpoints] == [3, 1]
    assert str(config.cluster("web").endpoints[0].address) == "127.0.0.1:9004"


def test_config_md_example_warns_that_hash_on_is_ignored(caplog):
    # the example sets hash_on on a weighted_round_robin cluster to show the field
    assert [str(p) for p in validate_file(EXAMPLE)] == [
        f"{EXAMPLE}: clusters[0].hash_on: warning: has no effect with balancer: "
        "weighted_round_robin (only ring_hash uses it)"]
    with caplog.at_level(logging.WARNING, logger="engine.policy.load"):
        load_config(EXAMPLE)
    assert "clusters[0].hash_on" in caplog.text


# -- one bad input, one exact message ----------------------------------------------------------

CASES = [
    # types
    ({"listeners": "main"},
     "cfg.yaml: listeners: expected a list, got 'main'"),
    ({"routes.0.match": ["/api"]},
     "cfg.yaml: routes[0].match: expected a mapping, got a list"),
    ({"clusters.0.pool": {"max_connections": "10"}},
     "cfg.yaml: clusters[0].pool.max_connections: expected an integer, got '10'"),
    ({"clusters.0.pool": {"max_connections": True}},
     "cfg.yaml: clusters[0].pool.max_connections: expected an integer, got the boolean true"),
    ({"routes.0.match": {"path_prefix": 5}},
     "cfg.yaml: routes[0].match.path_prefix: expected a string, got the number 5 "
     "(quote it: \"5\")"),
    ({"routes.0.match": {"headers": {"x-canary": 1}}},
     "cfg.yaml: routes[0].match.headers.x-canary: expected a string, got the number 1 "
     "(quote it: \"1\")"),
    ({"listeners.0.name": None},
     "cfg.yaml: listeners[0].name: expected a string, got an empty value (null)"),
    # required and unknown fields
    ({"routes.0.match": DELETE},
     "cfg.yaml: routes[0].match: required field is missing"),
    ({"clusters.0.endpoints": DELETE},
     "cfg.yaml: clusters[0].endpoints: required field is missing"),
    ({"routes.0.match": {"pathprefix": "/api/"}},
     "cfg.yaml: routes[0].match.pathprefix: unknown field; did you mean 'path_prefix'?"),
    ({"clusters.0.endpoint": [{"address": "127.0.0.1:1"}]},
     "cfg.yaml: clusters[0].endpoint: unknown field; did you mean 'endpoints'?"),
    ({"routes.0.zzz": 1},
     "cfg.yaml: routes[0].zzz: unknown field; expected one of: name, match, rewrite, "
     "rate_limit, timeout, direct_response, to, filters, retry, fault, mirror"),
    ({"acces_log": {"path": "off"}},
     "cfg.yaml: acces_log: unknown field; did you mean 'access_log'?"),
    # enums and ranges
    ({"clusters.0.balancer": "round_robin"},
     "cfg.yaml: clusters[0].balancer: expected one of weighted_round_robin, least_request, "
     "ring_hash, random; got 'round_robin'; did you mean 'weighted_round_robin'?"),
    ({"routes.0.to.0.weight": 0},
     "cfg.yaml: routes[0].to[0].weight: must be at least 1, got 0"),
    ({"clusters.0.endpoints.0.weight": 70000},
     "cfg.yaml: clusters[0].endpoints[0].weight: must be at most 65535, got 70000"),
    ({"routes.0.rate_limit": {"rate": 0, "burst": 1}},
     "cfg.yaml: routes[0].rate_limit.rate: must be greater than 0, got 0"),
    ({"routes.0.rate_limit": {"rate": 10, "burst": 0}},
     "cfg.yaml: routes[0].rate_limit.burst: must be at least 1, got 0"),
    ({"routes.0.rate_limit": {"rate": 10, "burst": 5, "per": "ip"}},
     "cfg.yaml: routes[0].rate_limit.per: expected one of route, client_ip, header:NAME; "
     "got 'ip'"),
    ({"listeners.0.routes": []},
     "cfg.yaml: listeners[0].routes: must not be empty"),
    ({"listeners.0.limits": {"max_headers": 300}},
     "cfg.yaml: listeners[0].limits.max_headers: must be at most 256, got 300"),
    ({"listeners.0.limits": {"max_head_bytes": 4096, "max_uri_bytes": 8192}},
     "cfg.yaml: listeners[0].limits.max_uri_bytes: 8192 is larger than max_head_bytes (4096), "
     "which contains it"),
    ({"listeners.0.paths": {"escaped_slashes": "decode"}},
     "cfg.yaml: listeners[0].paths.escaped_slashes: expected one of reject, keep; got 'decode'"),
    ({"listeners.0.paths": {"normalize": "no"}},
     "cfg.yaml: listeners[0].paths.normalize: expected true or false, got 'no'"),
    # formats
    ({"routes.0.timeout": "5"},
     "cfg.yaml: routes[0].timeout: '5' has no unit: write '5s' or '5ms'"),
    ({"clusters.0.connect_timeout": "1 sec"},
     "cfg.yaml: clusters[0].connect_timeout: expected a duration such as '250ms', '5s', '2m' "
     "or '1h', got '1 sec'"),
    ({"listeners.0.address": "8080"},
     "cfg.yaml: listeners[0].address: expected 'host:port', got '8080' (no port)"),
    ({"clusters.0.endpoints.0.address": "::1:9000"},
     "cfg.yaml: clusters[0].endpoints[0].address: an IPv6 address needs brackets: "
     "'[::1]:9000'"),
    ({"clusters.0.endpoints.0.address": "127.0.0.1:0"},
     "cfg.yaml: clusters[0].endpoints[0].address: an endpoint needs a port other than 0"),
    ({"routes.0.match": {"path_prefix": "api/"}},
     "cfg.yaml: routes[0].match.path_prefix: a path starts with '/', got 'api/'"),
    ({"routes.0.match": {"path": "/a?b=1"}},
     "cfg.yaml: routes[0].match.path: '?' starts a query: paths are matched without it"),
    ({"routes.0.match": {"path_regex": "/api/(v1"}},
     "cfg.yaml: routes[0].match.path_regex: invalid regular expression: missing ), "
     "unterminated subpattern at position 5"),
    ({"routes.0.match": {"host": "api.*.com"}},
     "cfg.yaml: routes[0].match.host: 'api.*.com': only a leading '*.' wildcard is allowed"),
    ({"routes.0.match": {"methods": ["GET", "BAD METHOD"]}},
     "cfg.yaml: routes[0].match.methods[1]: 'BAD METHOD' is not a valid HTTP method"),
    ({"routes.0.match": {"headers": {"X-A": "1", "x-a": "2"}}},
     "cfg.yaml: routes[0].match.headers.x-a: header 'x-a' is already given as 'X-A' "
     "(header names are case-insensitive)"),
    ({"routes.0.rewrite": {"set_headers": {"x-a": "1\r\nx-evil: 1"}}},
     "cfg.yaml: routes[0].rewrite.set_headers.x-a: header value contains '\\r': only "
     "printable ASCII, space and tab"),
    ({"listeners.0.name": "web site"},
     "cfg.yaml: listeners[0].name: 'web site' is not a valid name: use letters, digits, '_', '.' "
     "and '-', starting with a letter or digit"),
    # rules inside one object
    ({"routes.0.match": {"path": "/a", "path_prefix": "/a"}},
     "cfg.yaml: routes[0].match.path_prefix: use only one of path, path_prefix, path_regex "
     "(found path and path_prefix)"),
    ({"routes.0.to": DELETE},
     "cfg.yaml: routes[0]: needs 'to' (clusters to forward to) or 'direct_response'"),
    ({"routes.0.direct_response": {"status": 200}},
     "cfg.yaml: routes[0].direct_response: a route has either 'to' or 'direct_response', "
     "not both"),
    ({"routes.0.direct_response": {"status": 101}, "routes.0.to": DELETE},
     "cfg.yaml: routes[0].direct_response.status: must be at least 200, got 101"),
    ({"routes.0.direct_response": {"status": 200, "headers": {"Content-Length": "3"}},
      "routes.0.to": DELETE},
     "cfg.yaml: routes[0].direct_response.headers.content-length: 'content-length' is set by "
     "the proxy (from the body, or hop-by-hop)"),
    ({"routes.0.match": {"path": "/api"}, "routes.0.rewrite": {"path_prefix": "/v2/"}},
     "cfg.yaml: routes[0].rewrite.path_prefix: needs match.path_prefix: it replaces the "
     "matched prefix"),
    ({"routes.0.rewrite": {"set_headers": {"Connection": "close"}}},
     "cfg.yaml: routes[0].rewrite.set_headers.connection: 'connection' is managed by the proxy "
     "(hop-by-hop or framing)"),
    ({"routes.0.rewrite": {"set_headers": {"x-a": "1"}, "remove_headers": ["X-A"]}},
     "cfg.yaml: routes[0].rewrite.remove_headers[0]: 'x-a' is also in set_headers; keep one"),
    ({"routes.0.to": [{"cluster": "api"}, {"cluster": "api"}]},
     "cfg.yaml: routes[0].to[1].cluster: cluster 'api' is already a target (to[0]); add the "
     "weights together instead"),
    ({"clusters.0.balancer": "ring_hash"},
     "cfg.yaml: clusters[0].hash_on: required with balancer: ring_hash (what to hash on)"),
    ({"clusters.0.endpoints": [{"address": "127.0.0.1:1"}, {"address": "127.0.0.1:1"}]},
     "cfg.yaml: clusters[0].endpoints[1].address: 127.0.0.1:1 is already endpoints[0]; raise "
     "its weight instead"),
    ({"admin": {"address": "0.0.0.0:9901"}},
     "cfg.yaml: admin.token: required because admin.address 0.0.0.0:9901 is not a loopback "
     "address (the admin API can replace the running config)"),
    # across objects
    ({"listeners.0.routes": ["api", "wbe"]},
     "cfg.yaml: listeners[0].routes[1]: route 'wbe' is not defined; did you mean 'web'?"),
    ({"listeners.0.routes": ["api", "web", "api"]},
     "cfg.yaml: listeners[0].routes[2]: route 'api' is already listed at routes[0]"),
    ({"routes.0.to": [{"cluster": "apii"}]},
     "cfg.yaml: routes[0].to[0].cluster: cluster 'apii' is not defined; did you mean 'api'?"),
    ({"clusters.1.name": "api", "routes.1.to": [{"cluster": "api"}]},
     "cfg.yaml: clusters[1].name: duplicate cluster name 'api' (first defined at clusters[0])"),
    ({"listeners.1": {"name": "alt", "address": "127.0.0.1:8080", "routes": ["web"]}},
     "cfg.yaml: listeners[1].address: 127.0.0.1:8080 is already used by listener 'main' "
     "(listeners[0])"),
    ({"listeners.1": {"name": "alt", "address": "0.0.0.0:8080", "routes": ["web"]}},
     "cfg.yaml: listeners[1].address: 0.0.0.0:8080 is already used by listener 'main' "
     "(listeners[0]) (127.0.0.1:8080)"),
    ({"listeners.0.address": "127.0.0.1:9901"},
     "cfg.yaml: listeners[0].address: 127.0.0.1:9901 is already used by the admin API"),
]


@pytest.mark.parametrize("changes, message", CASES, ids=[m.split(": ")[1] for _, m in CASES])
def test_bad_input_gives_exactly_one_message(changes, message):
    assert lines(edited(**changes)) == [message]


def test_listeners_on_other_ports_and_port_zero_do_not_collide():
    data = edited()
    data["listeners"][0]["address"] = "127.0.0.1:0"
    data["listeners"].append({"name": "b", "address": "127.0.0.1:0", "routes": ["web"]})
    data["listeners"].append({"name": "c", "address": "[::]:8080", "routes": ["web"]})
    data["listeners"].append({"name": "d", "address": "0.0.0.0:8080", "routes": ["web"]})
    assert lines(data) == []


def test_non_loopback_admin_with_a_token_is_fine():
    assert lines(edited(admin={"address": "0.0.0.0:9901", "token": "t0k3n"})) == []


# -- whole-file shapes -------------------------------------------------------------------------


@pytest.mark.parametrize("text, message", [
    ("", "cfg.yaml: <root>: the config is empty: expected a mapping with listeners, routes and "
         "clusters"),
    ("- a\n- b\n", "cfg.yaml: <root>: expected a mapping with listeners, routes and clusters "
                   "at the top level, got a list"),
    ("listeners: []\nroutes: []\n", None),
])
def test_whole_file_shapes(text, message):
    result = check_text(text, "cfg.yaml")
    if message is None:
        assert [str(p) for p in result.errors] == [
            "cfg.yaml: listeners: must not be empty", "cfg.yaml: routes: must not be empty"]
    else:
        assert [str(p) for p in result.errors] == [message]


def test_yaml_syntax_error_names_the_key_line_and_column():
    text = "listeners:\n  - name: main\n    address: 127.0.0.1:8080\n    routes: [web\n"
    (problem,) = check_text(text, "cfg.yaml").errors
    assert problem.path == "listeners[0].routes[1]"  # the item being parsed
    assert problem.reason.startswith("invalid YAML at line 5, column 1: ")
    assert (problem.line, problem.column) == (5, 1)
    assert str(problem).startswith("cfg.yaml: listeners[0].routes[1]: invalid YAML at line 5")


def test_yaml_duplicate_key_is_an_error_with_the_rest():
    text = ("listeners:\n  - name: main\n    name: other\n    address: 127.0.0.1:8080\n"
            "    routes: [web]\nroutes:\n  - {name: web, match: {}, to: [{cluster: wbe}]}\n"
            "clusters:\n  - {name: web, endpoints: [{address: '127.0.0.1:1'}]}\n")
    assert [str(p) for p in check_text(text, "cfg.yaml").errors] == [
        "cfg.yaml: listeners[0].name: duplicate key 'name' (first given at line 2)",
        "cfg.yaml: routes[0].to[0].cluster: cluster 'wbe' is not defined; did you mean 'web'?",
    ]


def test_yaml_1_1_booleans_are_not_a_trap():
    text = EXAMPLE.read_text() + "access_log: {path: off}\n"
    assert load_config_text(text).access_log.path == "off"


# -- every error at once, in file order --------------------------------------------------------

BROKEN = """\
admin:
  address: 0.0.0.0:9901
listeners:
  - name: main
    address: 127.0.0.1:8080
    routes: [health, apii, web]
    limits: {max_headers: 300}
  - name: main
    address: 127.0.0.1:8080
    routes: [web]
routes:
  - name: health
    match: {path: /healthz, pathprefix: /x}
    direct_response: {status: 200}
  - name: api
    match: {path_prefix: /api/}
    timeout: 5
    to: [{cluster: api-v3, weight: 0}]
  - name: web
    match: {path_prefix: /}
    to: [{cluster: web}]
clusters:
  - name: web
    balancer: round_robin
    endpoints: [{address: 127.0.0.1:9004}]
  - name: api-v2
    connect_timeout: 1x
    endpoints: []
"""


def test_every_error_is_reported_at_once_in_file_order():
    result = check_text(BROKEN, "broken.yaml")
    assert result.config is None
    assert [str(p) for p in result.errors] == [
        "broken.yaml: admin.token: required because admin.address 0.0.0.0:9901 is not a "
        "loopback address (the admin API can replace the running config)",
        "broken.yaml: listeners[0].routes[1]: route 'apii' is not defined; did you mean 'api'?",
        "broken.yaml: listeners[0].limits.max_headers: must be at most 256, got 300",
        "broken.yaml: listeners[1].name: duplicate listener name 'main' (first defined at "
        "listeners[0])",
        "broken.yaml: listeners[1].address: 127.0.0.1:8080 is already used by listener 'main' "
        "(listeners[0])",
        "broken.yaml: routes[0].match.pathprefix: unknown field; did you mean 'path_prefix'?",
        "broken.yaml: routes[1].to[0].cluster: cluster 'api-v3' is not defined; did you mean "
        "'api-v2'?",
        "broken.yaml: routes[1].to[0].weight: must be at least 1, got 0",
        "broken.yaml: clusters[0].balancer: expected one of weighted_round_robin, "
        "least_request, ring_hash, random; got 'round_robin'; did you mean "
        "'weighted_round_robin'?",
        "broken.yaml: clusters[1].connect_timeout: expected a duration such as '250ms', '5s', "
        "'2m' or '1h', got '1x'",
        "broken.yaml: clusters[1].endpoints: must not be empty",
    ]
    assert [p.line for p in result.errors] == [1, 6, 7, 8, 9, 13, 18, 18, 24, 27, 28]
    assert result.warnings == ()  # warnings wait until the errors are fixed


def test_load_config_raises_with_every_problem(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert len(caught.value.errors) == 11
    assert str(caught.value).splitlines()[0].startswith(f"{path}: admin.token: required")


def test_load_config_text_raises():
    with pytest.raises(ConfigError) as caught:
        load_config_text("listeners: 1\n", "inline.yaml")
    assert "inline.yaml: listeners: expected a list, got the number 1" in str(caught.value)


# -- warnings ----------------------------------------------------------------------------------


def test_unused_route_is_a_warning_and_still_loads():
    data = edited(**{"listeners.0.routes": ["web"]})
    result = check_data(data, "cfg.yaml")
    assert result.ok
    assert [str(p) for p in result.warnings] == [
        "cfg.yaml: routes[0]: warning: route 'api' is not used by any listener"]


def test_unused_cluster_is_a_warning():
    data = edited()
    data["clusters"].append({"name": "spare", "endpoints": [{"address": "127.0.0.1:7"}]})
    assert lines(data, "warning") == [
        "cfg.yaml: clusters[2]: warning: cluster 'spare' is not used by any route"]


def test_route_after_a_catch_all_is_a_warning():
    data = edited(**{"listeners.0.routes": ["web", "api"]})
    assert lines(data, "warning") == [
        "cfg.yaml: listeners[0].routes[1]: warning: route 'api' is never reached: route 'web' "
        "before it (routes[0]) matches every request"]


def test_warnings_carry_yaml_positions_and_come_after_errors_in_validate_file(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text(
        "listeners:\n  - {name: main, address: '127.0.0.1:8080', routes: [all, api]}\n"
        "routes:\n  - {name: all, match: {}, to: [{cluster: web}]}\n"
        "  - {name: api, match: {path: /api}, to: [{cluster: web}]}\n"
        "clusters:\n  - {name: web, endpoints: [{address: '127.0.0.1:1'}]}\n")
    (problem,) = validate_file(path)
    assert str(problem) == (f"{path}: listeners[0].routes[1]: warning: route 'api' is never "
                            "reached: route 'all' before it (routes[0]) matches every request")
    assert problem.line == 2
    assert isinstance(load_config(path), Config)


# -- reading files -----------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    assert [str(p) for p in validate_file(path)] == [
        f"{path}: <root>: cannot read the file: No such file or directory"]


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"listeners: caf\xe9\n")
    assert [str(p) for p in validate_file(path)] == [
        f"{path}: <root>: not UTF-8 text (byte 0xe9 at offset 14)"]


def test_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + EXAMPLE.read_bytes())
    assert check_file(path).ok

"""engine/policy/link.py: link reads the model's typed, normalised values as they are (no
string is split or case-folded again here)."""
import pytest

from engine._fast.limiter import SharedBuckets
from engine._fast.router import HOST_EXACT, HOST_SUFFIX
from engine._fast.tables import HASH_ON, LIMIT_PER
from engine.policy import load_config_text
from engine.policy.link import link, router_entry

CONFIG = """
listeners: [{name: main, address: "127.0.0.1:8080", routes: [a, b, c]}]
routes:
  - name: a
    match: {host: API.Example.com, path_prefix: /a/}
    rewrite: {path_prefix: /, set_headers: {X-Gateway: sluice}, remove_headers: [X-Internal]}
    rate_limit: {rate: 10, burst: 5, per: "header:X-Api-Key"}
    to: [{cluster: by-header}]
  - name: b
    match: {host: "*.Example.COM"}
    rate_limit: {rate: 10, burst: 5}
    to: [{cluster: by-cookie}]
  - {name: c, match: {path_prefix: /}, to: [{cluster: plain}]}
clusters:
  - {name: by-header, balancer: ring_hash, hash_on: "header:X-User",
     endpoints: [{address: "127.0.0.1:9001"}]}
  - {name: by-cookie, balancer: ring_hash, hash_on: "cookie:Session",
     endpoints: [{address: "127.0.0.1:9002"}]}
  - {name: plain, endpoints: [{address: "127.0.0.1:9003"}]}
"""


@pytest.fixture(scope="module")
def linked():
    config = load_config_text(CONFIG)
    return config, link(config, SharedBuckets(64))


def test_hash_on_becomes_the_kind_and_the_normalised_name(linked):
    _, tables = linked
    by_header, by_cookie, plain = (tables.clusters[n] for n in ("by-header", "by-cookie", "plain"))
    assert (by_header.hash_kind, by_header.hash_name) == (HASH_ON["header"], b"x-user")
    # cookie names are case-sensitive (RFC 6265): kept as written
    assert (by_cookie.hash_kind, by_cookie.hash_name) == (HASH_ON["cookie"], b"Session")
    assert (plain.hash_kind, plain.hash_name) == (HASH_ON[""], b"")


def test_rate_limit_per_becomes_the_kind_and_the_header(linked):
    _, tables = linked
    a, b, c = tables.listeners["main"].routes
    assert (a.limit_per, a.limit_header) == (LIMIT_PER["header"], b"x-api-key")
    assert (b.limit_per, b.limit_header) == (LIMIT_PER["route"], b"")
    assert c.limiter is None


def test_rewrite_and_host_are_taken_as_the_model_normalised_them(linked):
    config, tables = linked
    a = tables.listeners["main"].routes[0]
    assert (a.prefix_from, a.prefix_to) == (b"/a/", b"/")
    assert a.add_headers == [b"x-gateway", b"sluice"]
    assert a.drop_names == (b"x-gateway", b"x-internal")
    assert router_entry(config.route("a").match)[:2] == (HOST_EXACT, b"api.example.com")
    assert router_entry(config.route("b").match)[:2] == (HOST_SUFFIX, b".example.com")


def test_the_limiter_identity_spells_per_as_the_user_does():
    """Bucket identity must not change with the field's type: a reload keeps the buckets."""
    from engine.policy.link import stable_id

    config = load_config_text(CONFIG)
    route = config.route("a")
    rl = route.rate_limit
    limiter = link(config, SharedBuckets(64)).listeners["main"].routes[0].limiter
    assert limiter.limit_id == stable_id("limit", "a", rl.rate, rl.burst, "header:x-api-key")


def test_methods_and_header_conditions_are_taken_as_the_model_normalised_them():
    config = load_config_text(CONFIG.replace(
        "match: {path_prefix: /}", "match: {path_prefix: /, methods: [get, Post], "
                                   "headers: {X-Env: prod}}"))
    entry = router_entry(config.route("c").match)
    assert entry[4] == (b"GET", b"POST")
    assert entry[5] == ((b"x-env", b"prod"),)

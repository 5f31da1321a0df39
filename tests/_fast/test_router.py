"""engine/_fast/router.pyx: route matching, and that the index always answers as a linear scan."""
import random
import re

import pytest
import re2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine._fast.router import (
    HOST_ANY,
    HOST_EXACT,
    HOST_SUFFIX,
    PATH_ANY,
    PATH_EXACT,
    PATH_PREFIX,
    PATH_REGEX,
    Router,
)


@pytest.fixture(params=["indexed", "scanned"])
def make(request):
    """Every behaviour test runs on the index (even for tiny tables) and on a plain scan."""
    scan_max = 0 if request.param == "indexed" else 1 << 30
    return lambda routes: Router(routes, scan_max=scan_max)


def route(host_kind=HOST_ANY, host=b"", path_kind=PATH_ANY, path=b"", methods=None, headers=()):
    return (host_kind, host, path_kind, path, methods, headers)


class CountingHeaders:
    def __init__(self, values=None):
        self.values = dict(values or {})
        self.calls = []

    def get(self, name):
        self.calls.append(name)
        return self.values.get(name)


def naive(routes, host, path, method, headers):
    """The oracle: a plain linear scan of the documented semantics."""
    for i, (hk, h, pk, p, methods, hdrs) in enumerate(routes):
        if hk == HOST_EXACT:
            if host != h:
                continue
        elif hk == HOST_SUFFIX:
            if not (host.endswith(h) and len(host) > len(h)):
                continue
        elif hk != HOST_ANY:
            continue
        if pk == PATH_EXACT:
            if path != p:
                continue
        elif pk == PATH_PREFIX:
            if not path.startswith(p):
                continue
        elif pk == PATH_REGEX:
            if re2.fullmatch(p, path) is None:  # the router's engine, through its public API
                continue
        elif pk != PATH_ANY:
            continue
        if methods is not None and method not in methods:
            continue
        if not all((headers or {}).get(n) == v for n, v in hdrs):
            continue
        return i
    return -1


# --- host ---

def test_exact_host_matches_only_that_host(make):
    r = make([route(HOST_EXACT, b"api.example.com")])
    assert r.match_py(b"api.example.com", b"/", b"GET") == 0
    assert r.match_py(b"x.api.example.com", b"/", b"GET") == -1
    assert r.match_py(b"example.com", b"/", b"GET") == -1
    assert r.match_py(b"", b"/", b"GET") == -1


def test_host_comparison_is_bytewise_the_caller_lowercases_and_strips_the_port(make):
    r = make([route(HOST_EXACT, b"api.example.com"), route(HOST_SUFFIX, b".example.com")])
    assert r.match_py(b"API.Example.COM".lower(), b"/", b"GET") == 0
    assert r.match_py(b"API.example.com", b"/", b"GET") == 1       # only the wildcard holds
    assert r.match_py(b"api.example.com:8080", b"/", b"GET") == -1
    assert r.match_py(b"A.EXAMPLE.COM", b"/", b"GET") == -1


def test_wildcard_host_matches_subdomains_at_any_depth_but_not_the_bare_domain(make):
    r = make([route(HOST_SUFFIX, b".example.com")])
    assert r.match_py(b"a.example.com", b"/", b"GET") == 0
    assert r.match_py(b"a.b.example.com", b"/", b"GET") == 0
    assert r.match_py(b"example.com", b"/", b"GET") == -1
    assert r.match_py(b".example.com", b"/", b"GET") == -1
    assert r.match_py(b"aexample.com", b"/", b"GET") == -1
    assert r.match_py(b"a.example.org", b"/", b"GET") == -1


def test_more_specific_wildcard_does_not_win_over_an_earlier_broader_one(make):
    r = make([route(HOST_SUFFIX, b".com"), route(HOST_SUFFIX, b".example.com"),
                route(HOST_EXACT, b"a.example.com")])
    assert r.match_py(b"a.example.com", b"/", b"GET") == 0
    r = make([route(HOST_EXACT, b"a.example.com"), route(HOST_SUFFIX, b".example.com"),
                route(HOST_SUFFIX, b".com")])
    assert r.match_py(b"a.example.com", b"/", b"GET") == 0
    assert r.match_py(b"b.example.com", b"/", b"GET") == 1
    assert r.match_py(b"example.com", b"/", b"GET") == 2


def test_any_host_matches_every_host_including_none(make):
    r = make([route(HOST_ANY)])
    for host in (b"", b"a", b"a.example.com"):
        assert r.match_py(host, b"/", b"GET") == 0


# --- path ---

def test_exact_path(make):
    r = make([route(path_kind=PATH_EXACT, path=b"/healthz")])
    assert r.match_py(b"h", b"/healthz", b"GET") == 0
    assert r.match_py(b"h", b"/healthz/", b"GET") == -1
    assert r.match_py(b"h", b"/health", b"GET") == -1


def test_prefix_with_trailing_slash_does_not_match_the_bare_segment(make):
    r = make([route(path_kind=PATH_PREFIX, path=b"/api/")])
    assert r.match_py(b"h", b"/api/", b"GET") == 0
    assert r.match_py(b"h", b"/api/v1/x", b"GET") == 0
    assert r.match_py(b"h", b"/api", b"GET") == -1
    assert r.match_py(b"h", b"/apix/", b"GET") == -1


def test_prefix_without_trailing_slash_is_a_byte_prefix(make):
    r = make([route(path_kind=PATH_PREFIX, path=b"/api")])
    for path in (b"/api", b"/api/", b"/apix", b"/api/v1"):
        assert r.match_py(b"h", path, b"GET") == 0
    assert r.match_py(b"h", b"/ap", b"GET") == -1


def test_regex_must_match_the_whole_path(make):
    r = make([route(path_kind=PATH_REGEX, path=rb"/users/\d+")])
    assert r.match_py(b"h", b"/users/42", b"GET") == 0
    assert r.match_py(b"h", b"/users/42/x", b"GET") == -1
    assert r.match_py(b"h", b"/v1/users/42", b"GET") == -1
    assert r.match_py(b"h", b"/users/", b"GET") == -1


def test_regex_accepts_a_precompiled_pattern(make):
    r = make([route(path_kind=PATH_REGEX, path=re.compile(rb"/a|/b"))])
    assert r.match_py(b"h", b"/b", b"GET") == 0
    assert r.match_py(b"h", b"/ab", b"GET") == -1


def test_a_python_pattern_runs_on_re2_not_re(make):
    # recompiled from its source: re would backtrack for ages on this path, RE2 is linear
    r = make([route(path_kind=PATH_REGEX, path=re.compile(rb"/(a+)+$"))])
    assert r.match_py(b"h", b"/" + b"a" * 40 + b"!", b"GET") == -1
    assert r.match_py(b"h", b"/" + b"a" * 40, b"GET") == 0


def test_accepts_a_pattern_compiled_by_re2(make):
    r = make([route(path_kind=PATH_REGEX, path=re2.compile("/a|/b"))])
    assert r.match_py(b"h", b"/b", b"GET") == 0
    assert r.match_py(b"h", b"/ab", b"GET") == -1


@pytest.mark.parametrize("length", [29, 10_000, 100_000])
def test_catastrophic_backtracking_pattern_answers_correctly(make, length):
    """Attack: `/(a+)+$` takes `re` time exponential in the a's; RE2 answers at once. No clock:
    before the fix this test did not finish."""
    r = make([route(path_kind=PATH_REGEX, path=rb"/(a+)+$"),
              route(path_kind=PATH_PREFIX, path=b"/")])
    assert r.match_py(b"h", b"/" + b"a" * length + b"!", b"GET") == 1
    assert r.match_py(b"h", b"/" + b"a" * length, b"GET") == 0


def test_a_pattern_re2_cannot_run_never_matches(make):
    # the policy layer refuses it with a message; the router only must not crash or use `re`
    r = make([route(path_kind=PATH_REGEX, path=rb"/(a)\1"),
              route(path_kind=PATH_PREFIX, path=b"/")])
    assert r.match_py(b"h", b"/aa", b"GET") == 1
    assert r.match_py(b"h", b"/aa", b"GET") == 1


def test_each_pattern_is_compiled_once_on_first_use(make):
    r = make([route(path_kind=PATH_REGEX, path=b"/a/[0-9]+"),
              route(path_kind=PATH_REGEX, path="/b/[0-9]+")])
    for _ in range(3):
        assert r.match_py(b"h", b"/b/12", b"GET") == 1
        assert r.match_py(b"h", b"/a/12", b"GET") == 0
        assert r.match_py(b"h", b"/a/x", b"GET") == -1


def test_any_path_matches_the_empty_path(make):
    assert make([route()]).match_py(b"", b"", b"") == 0


# --- methods and headers ---

def test_methods_are_exact_and_case_sensitive(make):
    r = make([route(methods=(b"GET", b"POST"))])
    assert r.match_py(b"h", b"/", b"GET") == 0
    assert r.match_py(b"h", b"/", b"POST") == 0
    assert r.match_py(b"h", b"/", b"PUT") == -1
    assert r.match_py(b"h", b"/", b"get") == -1
    assert r.match_py(b"h", b"/", b"GETX") == -1


def test_empty_method_tuple_matches_nothing(make):
    assert make([route(methods=())]).match_py(b"h", b"/", b"GET") == -1


def test_header_conditions_need_every_header_present_with_the_exact_value(make):
    r = make([route(headers=((b"x-canary", b"1"), (b"x-env", b"prod"))), route()])
    assert r.match_py(b"h", b"/", b"GET", {b"x-canary": b"1", b"x-env": b"prod"}) == 0
    assert r.match_py(b"h", b"/", b"GET", {b"x-canary": b"1"}) == 1
    assert r.match_py(b"h", b"/", b"GET", {b"x-canary": b"2", b"x-env": b"prod"}) == 1
    assert r.match_py(b"h", b"/", b"GET", {b"x-canary": b"1 ", b"x-env": b"prod"}) == 1
    assert r.match_py(b"h", b"/", b"GET", {}) == 1
    assert r.match_py(b"h", b"/", b"GET", None) == 1


def test_header_lookup_is_never_called_for_routes_without_header_conditions(make):
    routes = [route(HOST_EXACT, b"a.com", PATH_PREFIX, b"/x", (b"GET",)),
              route(path_kind=PATH_REGEX, path=rb"/r/.*"),
              route(path_kind=PATH_EXACT, path=b"/e"),
              route(path_kind=PATH_PREFIX, path=b"/")]
    r = make(routes)
    for host, path, method in [(b"a.com", b"/x", b"GET"), (b"b.com", b"/r/1", b"PUT"),
                               (b"b.com", b"/e", b"GET"), (b"b.com", b"/zzz", b"GET"),
                               (b"", b"", b"GET")]:
        h = CountingHeaders({b"x-canary": b"1"})
        assert r.match_py(host, path, method, h) == naive(routes, host, path, method, h.values)
        assert h.calls == []


def test_header_lookup_happens_only_for_candidates_with_header_conditions_in_order(make):
    r = make([route(path_kind=PATH_PREFIX, path=b"/a", headers=((b"x-a", b"1"),)),
                route(path_kind=PATH_PREFIX, path=b"/b", headers=((b"x-b", b"1"),)),
                route(path_kind=PATH_PREFIX, path=b"/a"),
                route(headers=((b"x-late", b"1"),))])
    h = CountingHeaders()
    assert r.match_py(b"h", b"/a", b"GET", h) == 2
    assert h.calls == [b"x-a"]          # /b is not a candidate; the winner stops the scan


def test_a_failing_header_lookup_propagates(make):
    class Boom:
        def get(self, name):
            raise RuntimeError(name)
    r = make([route(headers=((b"x", b"1"),))])
    with pytest.raises(RuntimeError):
        r.match_py(b"h", b"/", b"GET", Boom())


# --- order ---

def test_catch_all_first_shadows_every_later_route(make):
    r = make([route(path_kind=PATH_PREFIX, path=b"/"),
                route(path_kind=PATH_EXACT, path=b"/healthz"),
                route(HOST_EXACT, b"api.example.com", PATH_PREFIX, b"/api/")])
    assert r.match_py(b"api.example.com", b"/api/x", b"GET") == 0
    assert r.match_py(b"h", b"/healthz", b"GET") == 0


def test_first_match_in_listener_order_across_index_kinds(make):
    routes = [route(HOST_EXACT, b"a.com", PATH_EXACT, b"/x", (b"POST",)),
              route(HOST_SUFFIX, b".com", PATH_PREFIX, b"/x"),
              route(HOST_EXACT, b"a.com", PATH_PREFIX, b"/"),
              route(path_kind=PATH_REGEX, path=b"/x"),
              route(path_kind=PATH_EXACT, path=b"/x")]
    r = make(routes)
    assert r.match_py(b"a.com", b"/x", b"POST") == 0
    assert r.match_py(b"a.com", b"/x", b"GET") == 1
    assert r.match_py(b"a.com", b"/y", b"GET") == 2
    assert r.match_py(b"b.org", b"/x", b"GET") == 3


def test_many_matching_prefixes_spill_past_the_stack_cursor_array(make):
    routes = [route(path_kind=PATH_PREFIX, path=b"/" + b"a" * n, methods=(b"M%d" % n,))
              for n in range(100, 0, -1)]
    routes.append(route(headers=((b"x", b"1"),)))
    r = make(routes)
    path = b"/" + b"a" * 100
    for n in (1, 37, 100):
        assert r.match_py(b"h", path, b"M%d" % n) == 100 - n
    assert r.match_py(b"h", path, b"GET", {b"x": b"1"}) == 100
    with pytest.raises(ZeroDivisionError):          # the spilled array is freed on errors too

        class Boom:
            def get(self, name):
                1 / 0
        r.match_py(b"h", path, b"GET", Boom())


def test_keys_of_every_length_around_the_hash_block_size(make):
    lengths = range(0, 26)
    routes = [route(path_kind=PATH_EXACT, path=b"/e" + b"x" * n) for n in lengths]
    routes += [route(path_kind=PATH_PREFIX, path=b"/p" + b"y" * n) for n in lengths]
    routes += [route(HOST_EXACT, b"h" * (n + 1), PATH_EXACT, b"/host") for n in lengths]
    routes += [route(HOST_SUFFIX, b"." + b"s" * n, PATH_EXACT, b"/suffix") for n in lengths]
    r = make(routes)
    for n in lengths:
        assert r.match_py(b"h", b"/e" + b"x" * n, b"GET") == n
        assert r.match_py(b"h", b"/e" + b"x" * n + b"x", b"GET") == (n + 1 if n < 25 else -1)
        assert r.match_py(b"h", b"/p" + b"y" * n + b"/z", b"GET") == 26      # "/p" wins: first
        assert r.match_py(b"h" * (n + 1), b"/host", b"GET") == 52 + n
        assert r.match_py(b"a." + b"s" * n, b"/suffix", b"GET") == 78 + n
        assert r.match_py(b"s" * 9 + b"." + b"s" * n, b"/suffix", b"GET") == 78 + n
        assert r.match_py(b"." + b"s" * n, b"/suffix", b"GET") == -1
    exact_only = make(routes[:26])                   # no prefix probe hashes the path first
    for n in lengths:
        assert exact_only.match_py(b"h", b"/e" + b"x" * n, b"GET") == n
    longest_first = make(routes[51:25:-1])           # prefixes "/p" + 25 "y" down to "/p"
    for n in lengths:
        assert longest_first.match_py(b"h", b"/p" + b"y" * n, b"GET") == 25 - n
        assert longest_first.match_py(b"h", b"/p" + b"y" * n + b"z" * 9, b"GET") == 25 - n
    assert longest_first.match_py(b"h", b"/", b"GET") == -1


# --- construction ---

def test_empty_table_matches_nothing(make):
    r = make([])
    assert len(r) == 0
    assert r.match_py(b"", b"", b"") == -1
    assert r.match_py(b"a.com", b"/x", b"GET", {b"x": b"y"}) == -1


def test_unknown_kinds_never_match_and_odd_suffixes_fall_back_to_a_scan(make):
    routes = [route(host_kind=7), route(path_kind=9),
              route(HOST_SUFFIX, b"example.com"),     # no leading dot: a plain byte suffix
              route(HOST_SUFFIX, b"")]
    r = make(routes)
    assert r.match_py(b"myexample.com", b"/", b"GET") == 2
    assert r.match_py(b"x", b"/", b"GET") == 3
    assert r.match_py(b"", b"/", b"GET") == -1


def test_a_router_never_built_or_whose_build_raised_matches_nothing():
    assert Router.__new__(Router).match_py(b"h", b"/", b"GET") == -1
    r = Router([route()])
    with pytest.raises(ValueError):
        r.__init__([route(), (HOST_ANY, b"")])
    assert r.match_py(b"h", b"/", b"GET") == -1


def test_rebuilding_with_init_replaces_the_table(make):
    r = make([route(path_kind=PATH_EXACT, path=b"/a")])
    r.__init__([route(path_kind=PATH_EXACT, path=b"/b")], scan_max=0)
    assert r.match_py(b"h", b"/a", b"GET") == -1
    assert r.match_py(b"h", b"/b", b"GET") == 0


# --- the index equals a linear scan ---

HOSTS = [b"", b"com", b"a.com", b"b.a.com", b"c.b.a.com", b"a.org", b".a.com", b"xa.com"]
SUFFIXES = [b".com", b".a.com", b".b.a.com", b".org", b"a.com", b".", b""]
SEGMENTS = [b"", b"/", b"/a", b"/a/", b"/ab", b"/a/b", b"/a/b/", b"/b", b"/api/", b"/api"]
REGEXES = [rb"/a.*", rb"/a", rb"/(a|b)/?", rb".*", rb"/a/\w+", rb"/b[0-9]*", rb""]
METHODS = [b"GET", b"POST", b"PUT"]
HEADERS = [(b"x-a", b"1"), (b"x-a", b"2"), (b"x-b", b"1")]


def random_route(rnd, broad):
    """A route over shared keys (overlaps, catch-alls) with probability `broad`, else over
    numbered keys, so that in big tables late routes can still be the first match."""
    def pick(pool, numbered):
        return rnd.choice(pool) if rnd.random() < broad else numbered % rnd.randrange(300)
    hk = rnd.choice([HOST_ANY, HOST_EXACT, HOST_SUFFIX]) if rnd.random() < broad else \
        rnd.choice([HOST_EXACT, HOST_SUFFIX])
    host = {HOST_ANY: b"",
            HOST_EXACT: pick(HOSTS, b"h%d.a.com"),
            HOST_SUFFIX: pick(SUFFIXES, b".s%d.a.com")}[hk]
    pk = rnd.choice([PATH_EXACT, PATH_EXACT, PATH_PREFIX, PATH_PREFIX, PATH_REGEX])
    if rnd.random() < broad / 4:
        pk = PATH_ANY
    if pk == PATH_REGEX:
        path = pick(REGEXES, rb"/r%d/\d+")
    elif pk == PATH_ANY:
        path = b""
    else:
        path = pick(SEGMENTS, b"/p%d") + rnd.choice([b"", b"", b"x", b"/%d" % rnd.randrange(50)])
    methods = None if rnd.random() < 0.6 else tuple(rnd.sample(METHODS, rnd.randrange(1, 3)))
    headers = () if rnd.random() < 0.7 else tuple(rnd.sample(HEADERS, rnd.randrange(1, 3)))
    return (hk, host, pk, path, methods, headers)


def random_request(rnd, routes):
    if routes and rnd.random() < 0.7:               # aim near a route: its keys, mutated a bit
        hk, host, pk, path, _, _ = rnd.choice(routes)
        if hk == HOST_SUFFIX:
            host = rnd.choice([b"", b"z", b"y.z"]) + host
        if pk == PATH_REGEX:
            path = rnd.choice([b"/r%d/1" % rnd.randrange(300), rnd.choice(SEGMENTS)])
        path = rnd.choice([path, path + b"/", path[:-1], path + b"x", path + b"/1"])
    else:
        host = rnd.choice(HOSTS + [b"z" + s for s in SUFFIXES])
        path = rnd.choice(SEGMENTS) + rnd.choice([b"", b"x", b"/%d" % rnd.randrange(50)])
    method = rnd.choice(METHODS + [b"DELETE"])
    headers = dict(rnd.sample(HEADERS, rnd.randrange(0, 3)))
    return host, path, method, headers


def check_against_scan(routes, rnd, n_requests):
    indexed, default = Router(routes, scan_max=0), Router(routes)
    for _ in range(n_requests):
        host, path, method, headers = random_request(rnd, routes)
        want = naive(routes, host, path, method, headers)
        assert indexed.match_py(host, path, method, headers) == want, (host, path, method)
        assert default.match_py(host, path, method, headers) == want, (host, path, method)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(
    st.sampled_from([HOST_ANY, HOST_EXACT, HOST_SUFFIX]),
    st.sampled_from(HOSTS + SUFFIXES),
    st.sampled_from([PATH_ANY, PATH_EXACT, PATH_PREFIX, PATH_REGEX]),
    st.sampled_from(SEGMENTS),
    st.none() | st.lists(st.sampled_from(METHODS), max_size=2).map(tuple),
    st.lists(st.sampled_from(HEADERS), max_size=2).map(tuple)), max_size=12),
    st.sampled_from(HOSTS), st.sampled_from(SEGMENTS + [b"/a/bc", b"/apix", b"/b7"]),
    st.sampled_from(METHODS), st.dictionaries(st.sampled_from([b"x-a", b"x-b"]),
                                             st.sampled_from([b"1", b"2"])))
def test_small_tables_answer_as_a_linear_scan(routes, host, path, method, headers):
    want = naive(routes, host, path, method, headers)
    assert Router(routes, scan_max=0).match_py(host, path, method, headers) == want
    assert Router(routes).match_py(host, path, method, headers) == want


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from([1, 5, 40, 1000]), st.sampled_from([0.01, 0.3, 0.8]))
def test_random_tables_up_to_1000_routes_answer_as_a_linear_scan(seed, n_routes, broad):
    rnd = random.Random(seed)
    routes = [random_route(rnd, broad) for _ in range(n_routes)]
    check_against_scan(routes, rnd, 60)


def test_1000_route_table_with_the_match_at_the_end(make):
    routes = [route(HOST_EXACT, b"svc%d.example.com" % i, PATH_PREFIX, b"/svc%d/" % i)
              for i in range(500)]
    routes += [route(path_kind=PATH_EXACT, path=b"/exact/%d" % i, methods=(b"GET",))
               for i in range(499)]
    routes.append(route(HOST_SUFFIX, b".example.com", PATH_PREFIX, b"/api/"))
    r = make(routes)
    assert r.match_py(b"svc9.example.com", b"/svc9/x", b"GET") == 9
    assert r.match_py(b"x.example.com", b"/exact/498", b"GET") == 998
    assert r.match_py(b"x.example.com", b"/api/v1", b"GET") == 999
    assert r.match_py(b"example.com", b"/api/v1", b"GET") == -1
    check_against_scan(routes, random.Random(1), 200)


def test_client_identity_exact_and_prefix_conditions():
    from engine._fast.router import Router, HOST_ANY, PATH_PREFIX
    r = Router([
        (HOST_ANY, b"", PATH_PREFIX, b"/", None, (), b"spiffe://td/ns/shop/sa/web"),
        (HOST_ANY, b"", PATH_PREFIX, b"/", None, (), b"spiffe://td/ns/shop/*"),
        (HOST_ANY, b"", PATH_PREFIX, b"/", None, ()),
    ])
    assert r.match_py(b"h", b"/x", b"GET", None, b"spiffe://td/ns/shop/sa/web") == 0
    assert r.match_py(b"h", b"/x", b"GET", None, b"spiffe://td/ns/shop/sa/cart") == 1
    # the slash is part of the prefix: ns/shopping is another namespace
    assert r.match_py(b"h", b"/x", b"GET", None, b"spiffe://td/ns/shopping/sa/x") == 2
    assert r.match_py(b"h", b"/x", b"GET", None, None) == 2

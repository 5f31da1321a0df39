"""engine/policy/matching.py: when one match covers another."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.policy.matching import covers
from engine.policy.model import Match


def m(**fields):
    return Match.model_validate(fields)


@pytest.mark.parametrize("a, b", [
    (m(), m(path="/x", host="a.com", methods=["GET"])),
    (m(path_prefix="/"), m(path_regex="^/x$")),
    (m(path_prefix="/api"), m(path_prefix="/api/v1")),
    (m(path_prefix="/api"), m(path="/api/x")),
    (m(path="/x"), m(path="/x", methods=["GET"])),
    (m(path_regex="/x[0-9]"), m(path="/x1")),
    (m(host="*.example.com"), m(host="a.example.com")),
    (m(host="*.example.com"), m(host="*.a.example.com")),
    (m(methods=["GET", "POST"]), m(methods=["GET"])),
    (m(headers={"x-a": "1"}), m(headers={"x-a": "1", "x-b": "2"})),
])
def test_covers(a, b):
    assert covers(a, b)


@pytest.mark.parametrize("a, b", [
    (m(path_prefix="/api/v1"), m(path_prefix="/api")),
    (m(path_prefix="/api"), m(path_regex="^/api.*")),  # undecided: not a warning
    (m(path_prefix="/api"), m()),
    (m(path="/x"), m(path_prefix="/x")),
    (m(path_regex="/x[0-9]"), m(path="/xa")),
    (m(host="*.example.com"), m(host="example.com")),
    (m(host="*.example.com"), m()),
    (m(host="a.com"), m(host="b.com")),
    (m(methods=["GET"]), m(methods=["GET", "POST"])),
    (m(methods=["GET"]), m()),
    (m(headers={"x-a": "1"}), m(headers={"x-a": "2"})),
    (m(headers={"x-a": "1"}), m()),
])
def test_does_not_cover(a, b):
    assert not covers(a, b)


# --- transitivity: lint indexes only the routes nothing earlier covers, relying on it ---

_fields = st.fixed_dictionaries({}, optional={
    "host": st.sampled_from(["a.com", "b.a.com", "*.a.com", "*.b.a.com", "x.b.a.com"]),
    "methods": st.lists(st.sampled_from(["GET", "POST"]), min_size=1, max_size=2, unique=True),
    "headers": st.dictionaries(st.sampled_from(["x-a", "x-b"]), st.sampled_from(["1", "2"]),
                               max_size=2),
}).flatmap(lambda base: st.one_of(
    st.just(base),
    st.sampled_from(["/", "/a", "/a/", "/a/1", "/ab"]).map(lambda p: {**base, "path": p}),
    st.sampled_from(["/", "/a", "/a/", "/ab"]).map(lambda p: {**base, "path_prefix": p}),
    st.sampled_from(["/a.*", "/a/[0-9]+", "/(a|b)"]).map(lambda p: {**base, "path_regex": p}),
))


@settings(max_examples=500, deadline=None)
@given(_fields, _fields, _fields)
def test_covers_is_transitive(a, b, c):
    a, b, c = m(**a), m(**b), m(**c)
    if covers(a, b) and covers(b, c):
        assert covers(a, c)

"""engine/policy/matching.py: when one match covers another."""
import pytest

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

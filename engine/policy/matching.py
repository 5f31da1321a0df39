"""When one route's match covers another's: the basis of the shadowed-route warning.

`covers(a, b)` is True when every request that `b` matches is also matched by `a`, so `b` listed
after `a` can never be chosen. It is conservative: when coverage cannot be decided cheaply (a
prefix against a regex) the answer is False, so a warning is never wrong, only sometimes missing.

`covers` is transitive (a covers b and b covers c: a covers c), which the linter relies on to
index only the routes nothing earlier covers (tests/policy/test_matching.py checks it).

The semantics are those documented in `engine.policy.model` and implemented by the router; this
module does not match requests (the router is the only matcher, see STYLE.md), it compares
conditions.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .pathregex import fullmatch

if TYPE_CHECKING:
    from .model import Match


def covers(a: Match, b: Match) -> bool:
    return (_host_covers(a.host, b.host) and _path_covers(a, b)
            and _methods_cover(a.methods, b.methods)
            and a.headers.items() <= b.headers.items()
            and _identity_covers(a.client_identity, b.client_identity))


def _identity_covers(a: str | None, b: str | None) -> bool:
    """`spiffe://td/ns/*` covers itself, `spiffe://td/ns/x` and `spiffe://td/ns/x/*`."""
    if a is None or a == b:
        return True
    return b is not None and a.endswith("/*") and b.startswith(a[:-1])


def _host_covers(a: str | None, b: str | None) -> bool:
    if a is None or a == b:
        return True
    if b is None or not a.startswith("*."):
        return False
    suffix = a[1:]  # ".example.com"
    return b[1:].endswith(suffix) if b.startswith("*.") else \
        (b.endswith(suffix) and len(b) > len(suffix))


def _path_covers(a: Match, b: Match) -> bool:
    if a.path_prefix is not None:
        if a.path_prefix == "/":
            return True  # every request path starts with '/'
        known = b.path if b.path is not None else b.path_prefix
        return known is not None and known.startswith(a.path_prefix)
    if a.path is not None:
        return b.path == a.path
    if a.path_regex is not None:
        # RE2, as the router: an exact path the regex matches is always taken by `a`
        return b.path is not None and fullmatch(a.path_regex, b.path)
    return True


def _methods_cover(a: tuple[str, ...] | None, b: tuple[str, ...] | None) -> bool:
    if a is None:
        return True
    return b is not None and set(b) <= set(a)

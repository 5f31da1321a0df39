"""Warnings: a config that loads but probably does not do what its author meant.

Run only on a config that validated (on a broken one the findings would be noise, and some
would vanish once the errors are fixed). Each finding is `(loc, reason)` from the file's root.
Warnings never block a load: an unused route is harmless, and a rollout may add a route before
the listener that uses it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .errors import Loc
from .matching import covers
from .durations import format_duration
from .model import (
    IDEMPOTENT_METHODS, CircuitBreakers, ClusterHTTP2, Config, ListenerHTTP2, Match,
)
from .pathregex import matcher


def check(config: Config) -> list[tuple[Loc, str]]:
    return [*_shadowed_routes(config), *_unused(config), *_no_effect(config),
            *_ignored_hash_on(config), *_not_normal_paths(config), *_expired_certificates(config),
            *_unverified_tls(config), *_expired_client_certificates(config),
            *_http2_only_listeners(config), *_unused_http2_settings(config),
            *_retried_unsafe_methods(config), *_retries_past_the_deadline(config),
            *_mirror_to_a_target(config), *_retries_cap_replaced(config)]


def _retried_unsafe_methods(config: Config) -> Iterable[tuple[Loc, str]]:
    """A method that is not idempotent (RFC 9110 section 9.2.2) in `retry.methods` is allowed
    (an upstream with idempotency keys can take it), but a try that failed after the upstream
    acted on it is sent again: the author should know that duplicates are possible."""
    for i, route in enumerate(config.routes):
        if route.retry is None or route.retry.attempts == 0:
            continue
        for j, method in enumerate(route.retry.methods):
            if method not in IDEMPOTENT_METHODS:
                yield (("routes", i, "retry", "methods", j),
                       f"{method} is not idempotent: a try that failed after the upstream acted "
                       "on it (a reset, a timeout, a 5xx) is sent again, so the upstream may "
                       "act twice")


def _retries_past_the_deadline(config: Config) -> Iterable[tuple[Loc, str]]:
    """Every try at its per-try timeout does not fit in the route's timeout: the route's
    deadline, which counts from the start of the request, cuts the later tries short (or leaves
    no time for them). Not an error: a try rarely takes its whole per-try timeout."""
    for i, route in enumerate(config.routes):
        retry = route.retry
        if retry is None or not retry.attempts or not retry.per_try_timeout \
                or not route.timeout:
            continue
        tries = retry.attempts + 1
        worst = tries * retry.per_try_timeout
        if worst > route.timeout:
            yield (("routes", i, "retry", "per_try_timeout"),
                   f"{tries} tries of up to {format_duration(retry.per_try_timeout)} each take "
                   f"up to {format_duration(worst)}, longer than the route's timeout "
                   f"({format_duration(route.timeout)}): the later tries are cut short by the "
                   "route's deadline")


def _mirror_to_a_target(config: Config) -> Iterable[tuple[Loc, str]]:
    """Mirroring to a cluster the route also sends to doubles that share of its load on the
    same endpoints (and their writes, for a request with side effects): a shadow is usually a
    cluster of its own."""
    for i, route in enumerate(config.routes):
        if route.mirror is None:
            continue
        if any(target.cluster == route.mirror.cluster for target in route.to):
            yield (("routes", i, "mirror", "cluster"),
                   f"cluster '{route.mirror.cluster}' is also a target of this route (to): "
                   "the copies go to the same endpoints as the requests themselves, which "
                   "then handle both")


def _retries_cap_replaced(config: Config) -> Iterable[tuple[Loc, str]]:
    """`circuit_breakers.max_retries` does nothing on a cluster with a `retry_budget`, which
    replaces it. Judged by its value, not by whether it was written (a snapshot writes every
    default out)."""
    default = CircuitBreakers().max_retries
    for i, cluster in enumerate(config.clusters):
        if cluster.retry_budget is not None \
                and cluster.circuit_breakers.max_retries != default:
            yield (("clusters", i, "circuit_breakers", "max_retries"),
                   "has no effect: retry_budget replaces it (retries in flight are capped by "
                   "the budget)")


def _expired_certificates(config: Config) -> Iterable[tuple[Loc, str]]:
    """A listener certificate that has expired, or is not valid yet: it loads (nginx serves one
    too, and refusing it would turn a late renewal into an outage at the next reload), but
    clients that check dates will refuse it."""
    from datetime import datetime, timezone

    from . import pem

    now = datetime.now(timezone.utc)
    for i, listener in enumerate(config.listeners):
        for j, item in enumerate(listener.tls.certificates if listener.tls is not None else ()):
            try:
                leaf = pem.certificates(item.cert).leaf
            except pem.PemError:
                continue          # an error already (the model)
            loc = ("listeners", i, "tls", "certificates", j, "cert")
            end, start = leaf.not_valid_after_utc, leaf.not_valid_before_utc
            if end < now:
                yield loc, (f"{item.cert}: expired on {end:%Y-%m-%d %H:%M} UTC: clients will "
                            "refuse it")
            elif start > now:
                yield loc, (f"{item.cert}: not valid before {start:%Y-%m-%d %H:%M} UTC: clients "
                            "will refuse it until then")


def _not_normal_paths(config: Config) -> Iterable[tuple[Loc, str]]:
    """A route's `path` or `path_prefix` that a normalising listener never passes to the
    router (`/a//b`, `/a/./b`, `/%7euser`, lower-case escapes): the route silently stops
    matching. Uses the proxy's own normaliser (engine/_fast/paths.pyx); where it is not built
    (`sluice validate` without a compiler), this check is skipped."""
    try:
        from engine._fast.paths import PathError, normalize

        from .link import path_flags
    except ImportError:
        return
    index = {route.name: i for i, route in enumerate(config.routes)}
    warned: set[tuple[int, str]] = set()
    for listener in config.listeners:
        flags = path_flags(listener.paths)
        for name in listener.routes:
            i = index.get(name)
            if i is None:
                continue
            match = config.routes[i].match
            for field_name in ("path", "path_prefix"):
                value = getattr(match, field_name)
                if value is None or (i, field_name) in warned:
                    continue
                # a prefix may end inside a segment ("/api/." matches "/api/.well-known"):
                # complete it before asking, and take the completion off the answer
                tail = b"x" if field_name == "path_prefix" else b""
                raw = value.encode() + tail
                try:
                    normal = normalize(raw, flags)
                except PathError as exc:
                    why = f"is a 400 on listener '{listener.name}' ({exc}): it never matches"
                else:
                    if normal == raw:
                        continue
                    normal = normal[:len(normal) - len(tail)]
                    why = (f"never matches on listener '{listener.name}', which normalises "
                           f"request paths before routing: write '{normal.decode()}'")
                warned.add((i, field_name))
                yield ("routes", i, "match", field_name), why


def _shadowed_routes(config: Config) -> Iterable[tuple[Loc, str]]:
    """A route is never reached when an earlier route of its listener covers it; the warning
    names the first such route. Near-linear: earlier routes are indexed by what they can cover
    (`_CoverIndex`), so each route is compared with the few earlier ones that might cover it,
    not with all of them (8,000 routes took 23 s pairwise)."""
    routes = {route.name: route for route in config.routes}
    for i, listener in enumerate(config.listeners):
        listed = [routes[name] for name in listener.routes if name in routes]
        index = _CoverIndex(matcher(r.match.path_regex for r in listed
                                    if r.match.path_regex is not None))
        seen: set[str] = set()
        for j, name in enumerate(listener.routes):
            route = routes.get(name)
            if route is None or name in seen:
                continue  # an error already (crossref)
            seen.add(name)
            hit = index.first_cover(route.match)
            if hit is None:
                index.add(j, name, route.match)
                continue
            # Not indexed: whatever it covers, the route covering it covers too (`covers` is
            # transitive), and that one comes first.
            k, seen_name = hit
            what = "matches every request" if routes[seen_name].match.is_catch_all \
                else f"matches every request '{name}' matches"
            yield (("listeners", i, "routes", j),
                   f"route '{name}' is never reached: route '{seen_name}' before it "
                   f"(routes[{k}]) {what}")


@dataclass
class _PathIndex:
    """Earlier routes by their path condition, for one (host, header, method) key."""

    anything: list[tuple[int, str, Match]] = field(default_factory=list)  # no path, or prefix '/'
    exact: dict[str, list[tuple[int, str, Match]]] = field(default_factory=dict)
    prefix: dict[str, list[tuple[int, str, Match]]] = field(default_factory=dict)
    prefix_lens: set[int] = field(default_factory=set)
    regex: dict[str, list[tuple[int, str, Match]]] = field(default_factory=dict)

    def add(self, entry: tuple[int, str, Match]) -> None:
        m = entry[2]
        if m.path is not None:
            self.exact.setdefault(m.path, []).append(entry)
        elif m.path_prefix is not None and m.path_prefix != "/":
            self.prefix.setdefault(m.path_prefix, []).append(entry)
            self.prefix_lens.add(len(m.path_prefix))
        elif m.path_regex is not None:
            self.regex.setdefault(m.path_regex, []).append(entry)
        else:
            self.anything.append(entry)

    def candidates(self, b: Match, regex_hits: set[str]) -> Iterable[list[tuple[int, str, Match]]]:
        """Lists (each in listener order) holding every indexed route whose path condition
        covers b's; other conditions are for the caller to check."""
        yield self.anything
        known = b.path if b.path is not None else b.path_prefix
        if known is None:
            return  # b has a regex or no path: only a route matching every path covers it
        if b.path is not None:
            yield self.exact.get(b.path, ())
            for pattern in regex_hits:
                yield self.regex.get(pattern, ())
        for length in self.prefix_lens:
            if length <= len(known):
                yield self.prefix.get(known[:length], ())


class _CoverIndex:
    """The routes seen so far in one listener, keyed so that the routes that may cover a given
    route are found by a few lookups: by host (the route's own host, no host, and each wildcard
    that could contain it), by one header pair (a coverer's headers are a subset of the
    covered route's), by one method (a coverer's methods contain all of the covered route's),
    then by path (`_PathIndex`). Every candidate is confirmed with `covers` itself, so the index
    only decides which pairs are compared, never the answer."""

    def __init__(self, regex_matches: Callable[[str], set[str]]):
        self.buckets: dict[tuple, _PathIndex] = {}
        self.regex_matches = regex_matches
        self.regex_cache: dict[str, set[str]] = {}

    def add(self, position: int, name: str, m: Match) -> None:
        header = min(m.headers.items()) if m.headers else None
        for method in (m.methods or (None,)):
            key = (m.host, header, method)
            bucket = self.buckets.get(key)
            if bucket is None:
                bucket = self.buckets[key] = _PathIndex()
            bucket.add((position, name, m))

    def first_cover(self, b: Match) -> tuple[int, str] | None:
        """(listener position, name) of the first indexed route that covers `b`, or None."""
        buckets = list(self._buckets(b))
        hits: set[str] = set()
        if b.path is not None and any(bucket.regex for bucket in buckets):
            cached = self.regex_cache.get(b.path)
            if cached is None:
                cached = self.regex_cache[b.path] = self.regex_matches(b.path)
            hits = cached
        best: tuple[int, str] | None = None
        for bucket in buckets:
            for entries in bucket.candidates(b, hits):
                for position, name, a in entries:
                    if best is not None and position >= best[0]:
                        break
                    if covers(a, b):
                        best = (position, name)
                        break
        return best

    def _buckets(self, b: Match) -> Iterable[_PathIndex]:
        hosts: list[str | None] = [None]
        if b.host is not None:
            hosts.append(b.host)
            text = b.host[1:] if b.host.startswith("*.") else b.host
            hosts += ["*" + text[i:] for i, char in enumerate(text) if char == "."]
        headers = [None, *b.headers.items()]
        methods = [None] if not b.methods else [None, b.methods[0]]
        for host in dict.fromkeys(hosts):
            for header in headers:
                for method in methods:
                    bucket = self.buckets.get((host, header, method))
                    if bucket is not None:
                        yield bucket


def _unused(config: Config) -> Iterable[tuple[Loc, str]]:
    listed = {name for listener in config.listeners for name in listener.routes}
    for i, route in enumerate(config.routes):
        if route.name not in listed:
            yield ("routes", i), f"route '{route.name}' is not used by any listener"
    targeted = {target.cluster for route in config.routes for target in route.to}
    targeted |= {route.mirror.cluster for route in config.routes if route.mirror is not None}
    for i, cluster in enumerate(config.clusters):
        if cluster.name not in targeted:
            yield ("clusters", i), f"cluster '{cluster.name}' is not used by any route"


def _no_effect(config: Config) -> Iterable[tuple[Loc, str]]:
    for i, route in enumerate(config.routes):
        if route.direct_response is None:
            continue
        for field in ("rewrite", "timeout"):
            if field in route.model_fields_set and getattr(route, field) is not None:
                yield (("routes", i, field),
                       "has no effect on a route with direct_response (nothing goes upstream)")


def _ignored_hash_on(config: Config) -> Iterable[tuple[Loc, str]]:
    """Not an error, because CONFIG.md's own example sets hash_on on a weighted_round_robin
    cluster to show the field; the user should still learn that it does nothing there."""
    for i, cluster in enumerate(config.clusters):
        if cluster.hash_on is not None and cluster.balancer != "ring_hash":
            yield (("clusters", i, "hash_on"),
                   f"has no effect with balancer: {cluster.balancer} (only ring_hash uses it)")


def _unverified_tls(config: Config) -> Iterable[tuple[Loc, str]]:
    """`insecure_skip_verify: true` is allowed (tests against self-signed upstreams) but must
    never pass unnoticed: every validate and start says what it costs."""
    for i, cluster in enumerate(config.clusters):
        if cluster.tls is not None and cluster.tls.insecure_skip_verify:
            yield (("clusters", i, "tls", "insecure_skip_verify"),
                   "the upstream's certificate is not verified: anyone on the path can pose "
                   "as it (for tests only)" + (
                       "; tls.ca has no effect" if cluster.tls.ca is not None else ""))


def _expired_client_certificates(config: Config) -> Iterable[tuple[Loc, str]]:
    """A cluster's client certificate out of its dates: it loads, but an upstream that checks
    dates refuses the handshake (502), as clients refuse an expired listener certificate."""
    from datetime import datetime, timezone

    from . import pem

    now = datetime.now(timezone.utc)
    for i, cluster in enumerate(config.clusters):
        if cluster.tls is None or cluster.tls.cert is None:
            continue
        try:
            leaf = pem.certificates(cluster.tls.cert).leaf
        except pem.PemError:
            continue              # an error already (the model)
        loc = ("clusters", i, "tls", "cert")
        end, start = leaf.not_valid_after_utc, leaf.not_valid_before_utc
        if end < now:
            yield loc, (f"{cluster.tls.cert}: expired on {end:%Y-%m-%d %H:%M} UTC: upstreams "
                        "will refuse it")
        elif start > now:
            yield loc, (f"{cluster.tls.cert}: not valid before {start:%Y-%m-%d %H:%M} UTC: "
                        "upstreams will refuse it until then")


def _http2_only_listeners(config: Config) -> Iterable[tuple[Loc, str]]:
    """A listener without http1 is valid (a gRPC-only port), but every HTTP/1.1 client, curl
    without --http2 and most health checkers among them, is turned away: say so once."""
    for i, listener in enumerate(config.listeners):
        if "http1" in listener.protocols:
            continue
        if listener.tls is not None:
            why = ("HTTP/1.1-only clients cannot use this listener (it serves only clients "
                   "that negotiate h2 by ALPN)")
        else:
            why = ("HTTP/1.1 clients cannot use this listener (on plaintext it serves only "
                   "HTTP/2 with prior knowledge, h2c)")
        yield ("listeners", i, "protocols"), why + "; add http1 to serve them"


def _unused_http2_settings(config: Config) -> Iterable[tuple[Loc, str]]:
    """An `http2` block where HTTP/2 is not spoken is not an error (a rollout may take http2
    out and put it back without deleting its settings), but it does nothing meanwhile. Judged
    by its values, not by whether it was written: a config that went through `model_dump` (a
    snapshot, a test) has every field written out."""
    for i, listener in enumerate(config.listeners):
        if "http2" not in listener.protocols and listener.http2 != ListenerHTTP2():
            yield (("listeners", i, "http2"),
                   "has no effect: protocols does not list http2")
    for i, cluster in enumerate(config.clusters):
        if cluster.protocol != "http2" and cluster.http2 != ClusterHTTP2():
            yield (("clusters", i, "http2"),
                   f"has no effect with protocol: {cluster.protocol} (only http2 uses it)")

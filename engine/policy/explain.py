"""`sluice explain`: what the data plane would do with one request, and why.

Theory of operation
-------------------
Who calls it. `sluice explain -c FILE.yaml 'GET http://host/path' [-H 'name: value']...` (or
`-s FILE.msgpack`) through `cmd_explain`; tests and tools through `explain(config, request)`,
which returns an `Explanation` (data, plus `text()` for people).

One matcher, one set of request rules. The route is chosen by the compiled `Router` itself,
built from the same `link.router_entry` tuples a worker builds, and fed what the proxy feeds it
(engine/_fast/proxy.pyx): the host from the absolute-form URL (else the Host header) as
`semantics.route_host` makes it (lowercase, port removed: the proxy's own function); the path
normalised by `paths.normalize` (the listener's settings), up to `?`; the method exactly as typed
(methods are case-sensitive); each header's first value. The upstream target comes from
`semantics.rewrite_target` and a ring-hash cookie key from `semantics.cookie_value`, the
functions the proxy calls. So explain answers what serving answers, and there is no copy of a
rule here to drift (tests/integration/test_explain_agrees_with_the_proxy.py holds the two to the
same answers over generated requests, with the real binary as the oracle). What is still
explain's own: splitting an absolute-form target (the authority ends at `/` or `?`; http and
https only), and the port, which only picks a listener. The only
Python judgement of conditions here is the *reason* a route was passed over: for every route
before the winner (or every route, when none matched) it names the first condition that fails,
checked in the order host, path, methods, headers. The two must agree; when they do not, the
line says so instead of guessing (the tests hold them together).

What it shows: the listener (the one whose port is the request's port, else the first; or
`--listener NAME`) and why; the matched route with its index in the listener; the rewrite as
the proxy applies it (the upstream request target, headers set and removed); the rate limit and
the bucket key this request falls in; the timeout; the retry policy (and whether this
request's method may be retried), the fault injection (and whether this request carries the
header it needs) and the mirror; the filters; the traffic split with weights and percentages;
each cluster's balancer, circuit breakers and endpoints with weights and percentages (for a
ring_hash cluster with the request's hash key, the endpoint the ring picks: the ring never
depends on the worker). A direct response is shown instead of the upstream part. Without a
match: the request as the router saw it and, per route of the listener, the first failed
condition.

Exit status: 0 when a route matches, 1 when none does (CONFIG.md), 2 when there is nothing to
explain: an invalid config or snapshot (its problems on stderr, one per line), a malformed
request line or header, or an unknown `--listener` (as grep: 0 found, 1 not found, 2 error).

This module imports the compiled modules (router, paths, semantics) only inside the functions
that use them: `engine.policy` must import without a compiler (tests/policy/test_init.py), and
explain, whose whole point is to run the proxy's own code, needs them only when it explains.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from .durations import format_duration
from .errors import ConfigError
from .fields import RequestKey
from .model import Cluster, Config, Listener, Route
from .pathregex import fullmatch

# router.pyx's kinds, as router.pyi declares them (checked against the module in the tests)
HOST_ANY, HOST_EXACT, HOST_SUFFIX = 0, 1, 2
PATH_ANY, PATH_EXACT, PATH_PREFIX, PATH_REGEX = 0, 1, 2, 3

DEFAULT_PORTS = {"http": 80, "https": 443}

# what the proxy adds to every upstream request (engine/_fast/proxy.pyx, start_proxy)
PROXY_HEADERS = ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
                 "x-request-id (when the client sent none)")


class ExplainError(ValueError):
    """Nothing to explain: a malformed request line or header, or an unknown listener."""


# -- the request -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request as the proxy sees it. `host` and `path` are what the router matches."""

    method: bytes
    target: bytes                      # request target with its query, as sent upstream
    path: bytes                        # target up to '?'
    host: bytes                        # lowercase, port removed; b"" when there is none
    port: int | None                   # from the URL or Host header (scheme default), if any
    headers: dict[bytes, bytes]        # lowercase name -> first value
    authority: bytes | None = None     # from an absolute-form URL
    raw_path: bytes | None = None      # the path as typed, when the listener normalised it
    identity: bytes | None = None      # the client certificate's SPIFFE ID (mutual TLS)

    def header(self, name: str) -> str | None:
        value = self.headers.get(name.encode())
        return None if value is None else value.decode("utf-8", "replace")

    def shown(self, what: bytes) -> str:
        return what.decode("utf-8", "replace")


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")


def parse_header(text: str) -> tuple[bytes, bytes]:
    """'name: value' -> (lowercase name, value without surrounding whitespace)."""
    name, sep, value = text.partition(":")
    if not sep or not _TOKEN.match(name):
        raise ExplainError(f"-H '{text}': expected 'name: value'")
    return name.lower().encode(), value.strip(" \t").encode()


def routing_host(authority: bytes) -> tuple[bytes, int | None]:
    """The host the proxy routes by (`semantics.route_host`, the proxy's own function), and the
    port the authority names, if any (only for choosing a listener: the proxy's listener is
    the socket a request arrives on). ExplainError when the proxy answers 400 instead."""
    from engine._fast.semantics import route_host

    host = route_host(authority)
    if host is None:
        raise ExplainError(f"the proxy answers 400 to host '{authority.decode('utf-8', 'replace')}"
                           "': longer than a host can be")
    digits = authority[len(host) + 1:]
    port = int(digits) if len(authority) > len(host) and digits.isdigit() else None
    return host, port


def parse_request(line: str, headers: Sequence[str] = ()) -> Request:
    """`'GET http://host/path?q'`, `'GET /path'` (with a Host header), or a bare URL (GET)."""
    parts = line.split()
    if len(parts) == 1:
        method, url = "GET", parts[0]
    elif len(parts) == 2:
        method, url = parts
    else:
        raise ExplainError(f"expected 'METHOD URL', got '{line}'")
    if not _TOKEN.match(method):
        raise ExplainError(f"'{method}' is not an HTTP method")
    pairs = [parse_header(h) for h in headers]
    first: dict[bytes, bytes] = {}
    for name, value in pairs:
        first.setdefault(name, value)
    raw = url.encode()
    authority = None
    scheme = ""
    if raw.startswith(b"/") or raw == b"*":
        target = raw
        host_value = first.get(b"host", b"")
    else:
        i = raw.find(b"://")
        if i <= 0:
            raise ExplainError(f"'{url}' is neither an absolute URL (http://host/path) nor a "
                               "path starting with '/'")
        scheme = raw[:i].decode().lower()
        if scheme not in DEFAULT_PORTS:
            raise ExplainError(f"the proxy answers 400 to the scheme '{scheme}' (http and "
                               "https only)")
        # as the proxy splits an absolute-form target: the authority ends at '/' or '?'
        end = i + 3
        while end < len(raw) and raw[end] not in b"/?":
            end += 1
        authority = raw[i + 3:end]
        target = raw[end:] if raw[end:end + 1] == b"/" else b"/" + raw[end:]
        host_value = authority
    if b"#" in target:
        target = target[:target.index(b"#")]  # a client never sends the fragment
    host, port = routing_host(host_value)
    if port is None and host:
        port = DEFAULT_PORTS.get(scheme or "http")
    path = target.partition(b"?")[0]
    return Request(method.encode(), target, path, host, port, first, authority)


# -- why a route did not match -----------------------------------------------------------------


def first_failure(entry: tuple, request: Request) -> str | None:
    """The first condition of a router entry (`link.router_entry`) the request fails, in words;
    None when every condition holds. Semantics of engine/_fast/router.pyx."""
    hk, hv, pk, pv, methods, headers = entry[:6]
    host = request.shown(request.host)
    if hk == HOST_EXACT and request.host != hv:
        if not host:
            return f"the request has no host (needs '{hv.decode()}')"
        return f"host '{host}' is not '{hv.decode()}'"
    if hk == HOST_SUFFIX and not (request.host.endswith(hv) and len(request.host) > len(hv)):
        if not host:
            return f"the request has no host (needs one under '*{hv.decode()}')"
        if request.host == hv[1:]:
            return f"host '{host}' is not under '*{hv.decode()}' (the wildcard needs a label " \
                   "before it)"
        return f"host '{host}' does not match '*{hv.decode()}'"
    path = request.shown(request.path)
    if pk == PATH_EXACT and request.path != pv:
        return f"path '{path}' is not '{pv.decode()}'"
    if pk == PATH_PREFIX and not request.path.startswith(pv):
        return f"path '{path}' does not start with '{pv.decode()}'"
    if pk == PATH_REGEX:
        pattern = pv.pattern if hasattr(pv, "pattern") else pv   # the source of a compiled one
        pattern = pattern.decode() if isinstance(pattern, bytes) else pattern
        if not fullmatch(pattern, request.path):  # RE2, as the router
            return f"path '{path}' does not match the regex '{pattern}' (whole path)"
    if pk not in (PATH_ANY, PATH_EXACT, PATH_PREFIX, PATH_REGEX) or \
            hk not in (HOST_ANY, HOST_EXACT, HOST_SUFFIX):
        return "an unknown match kind (never produced by the policy layer)"
    if methods is not None and request.method not in methods:
        allowed = ", ".join(m.decode() for m in methods)
        hint = " (methods are case-sensitive)" if request.method.upper() in methods else ""
        return f"method {request.shown(request.method)} is not {allowed}{hint}" \
            if len(methods) == 1 else \
            f"method {request.shown(request.method)} is not one of {allowed}{hint}"
    for name, value in headers:
        got = request.headers.get(name)
        if got is None:
            return f"header {name.decode()} is absent (needs '{value.decode()}')"
        if got != value:
            return f"header {name.decode()} is '{request.shown(got)}', not '{value.decode()}'"
    want = entry[6] if len(entry) > 6 else None
    if want is not None:
        shown = want.decode()
        if request.identity is None:
            return f"needs a client certificate with the identity '{shown}' (mutual TLS; " \
                   "give one with --client-identity)"
        if want.endswith(b"/*"):
            if not request.identity.startswith(want[:-1]):
                return f"client identity '{request.shown(request.identity)}' is not under " \
                       f"'{shown}'"
        elif request.identity != want:
            return f"client identity '{request.shown(request.identity)}' is not '{shown}'"
    return None


# -- the explanation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Miss:
    index: int        # in the listener's routes
    route: str
    reason: str


@dataclass(frozen=True)
class ClusterShare:
    cluster: Cluster
    weight: int
    percent: str
    picked: str | None = None   # ring_hash: the endpoint this request's key maps to


@dataclass
class Explanation:
    request: Request
    listener: Listener
    listener_reason: str
    index: int                            # in the listener's routes; -1 when none matched
    route: Route | None
    passed_over: list[Miss] = field(default_factory=list)  # routes before it, or all of them
    upstream_target: bytes | None = None  # after the rewrite (None for a direct response)
    set_headers: dict[str, str] = field(default_factory=dict)
    removed_headers: tuple[str, ...] = ()
    split: list[ClusterShare] = field(default_factory=list)
    config: Config | None = field(default=None, repr=False)
    disagreement: str | None = None  # the router and the reasons disagree: a bug

    @property
    def matched(self) -> bool:
        return self.route is not None

    def text(self) -> str:
        return "\n".join(_render(self)) + "\n"


def choose_listener(config: Config, request: Request,
                    name: str | None = None) -> tuple[Listener, str]:
    """The listener a request would arrive on, and why it was chosen."""
    if name is not None:
        for listener in config.listeners:
            if listener.name == name:
                return listener, "chosen with --listener"
        known = ", ".join(listener.name for listener in config.listeners)
        raise ExplainError(f"no listener named '{name}' (the listeners: {known})")
    if len(config.listeners) == 1:
        return config.listeners[0], "the only listener"
    on_port = [lst for lst in config.listeners if lst.address.port == request.port]
    if len(on_port) == 1:
        return on_port[0], f"the listener on port {request.port}"
    if on_port:
        return on_port[0], (f"the first of {len(on_port)} listeners on port {request.port}; "
                            "choose another with --listener")
    where = f"on port {request.port}" if request.port is not None else "for a request without " \
                                                                       "a port"
    return config.listeners[0], (f"no listener {where}: the first listener; choose another "
                                 "with --listener")


def explain(config: Config, request: Request | str, headers: Sequence[str] = (), *,
            listener: str | None = None, client_ip: str | None = None,
            client_identity: str | None = None) -> Explanation:
    """Which route of which listener `request` takes, with everything that follows from it.
    `request` is a `Request` or a request line (then `headers` are its `-H` values);
    `client_identity` is the SPIFFE ID of the client's certificate, for routes that match on
    `match.client_identity` (None: no client certificate)."""
    from engine._fast.router import Router

    from .link import router_entry

    if isinstance(request, str):
        request = parse_request(request, headers)
    chosen, reason = choose_listener(config, request, listener)
    request = normalized(request, chosen)
    if client_identity is not None:
        request = replace(request, identity=client_identity.encode())
    routes = [config.route(name) for name in chosen.routes]
    entries = [router_entry(route.match) for route in routes]
    index = Router(entries).match_py(request.host, request.path, request.method,
                                     request.headers, request.identity)
    misses = []
    for i in range(len(routes) if index < 0 else index):
        reason_i = first_failure(entries[i], request) or (
            "every condition seems to hold, yet the router passed it over (please report "
            "this as a bug)")
        misses.append(Miss(i, routes[i].name, reason_i))
    result = Explanation(request, chosen, reason, index, None if index < 0 else routes[index],
                         misses, config=config)
    if index >= 0:
        why = first_failure(entries[index], request)
        if why is not None:  # never, unless the two disagree
            result.disagreement = f"the router chose it, but {why} (please report this as a bug)"
        _follow(result, config, routes[index], client_ip)
    return result


def normalized(request: Request, listener: Listener) -> Request:
    """The request with the path the proxy routes and forwards on this listener
    (engine/_fast/paths.pyx: the same code); ExplainError when the proxy would answer 400."""
    from engine._fast.paths import PathError, normalize

    from .link import path_flags

    try:
        path = normalize(request.path, path_flags(listener.paths))
    except PathError as exc:
        raise ExplainError(f"the proxy answers 400 to path '{request.shown(request.path)}': "
                           f"{exc} (listener {listener.name}, paths: "
                           f"escaped_slashes={listener.paths.escaped_slashes})") from None
    if path == request.path:
        return request
    query = request.target[len(request.path):]
    return replace(request, path=path, target=path + query, raw_path=request.path)


def _follow(result: Explanation, config: Config, route: Route, client_ip: str | None) -> None:
    if route.direct_response is not None:
        return
    request = result.request
    target = request.target
    rewrite = route.rewrite
    if rewrite is not None:
        if rewrite.path_prefix is not None:    # the model: only with match.path_prefix
            from engine._fast.semantics import rewrite_target

            target = rewrite_target(route.match.path_prefix.encode(),
                                    rewrite.path_prefix.encode(), target)
        result.set_headers = dict(rewrite.set_headers)           # names lowercase (the model's)
        result.removed_headers = rewrite.remove_headers
    result.upstream_target = target
    total = sum(t.weight for t in route.to)
    for target_spec in route.to:
        cluster = config.cluster(target_spec.cluster)
        result.split.append(ClusterShare(cluster, target_spec.weight,
                                         _percent(target_spec.weight, total),
                                         _ring_pick(cluster, request, client_ip)))


def _ring_pick(cluster: Cluster, request: Request, client_ip: str | None) -> str | None:
    """For ring_hash, the endpoint the request's key maps to (the ring is the same in every
    worker); a reason when it cannot be known here."""
    on = cluster.hash_on
    if cluster.balancer != "ring_hash" or on is None:
        return None
    if on.kind == "header":
        key = request.headers.get(on.name.encode())
    elif on.kind == "cookie":
        from engine._fast.semantics import cookie_value

        key = cookie_value(request.headers.get(b"cookie"), on.name.encode())
    else:
        if client_ip is None:
            return "depends on the client's address (give one with --client-ip)"
        key = client_ip.encode()
    if not key:
        return f"no {on} in the request: a weighted random endpoint"
    from .link import _link_cluster

    index = _link_cluster(cluster, {}, {}).balancer.pick_py(key)
    return str(cluster.endpoints[index].address) if index >= 0 else None


def _percent(part: int, total: int) -> str:
    text = f"{100 * part / total:.1f}" if total else "0"
    return text.removesuffix(".0") + "%"


# -- rendering ---------------------------------------------------------------------------------


def _render(e: Explanation) -> list[str]:
    r = e.request
    method, host, path = r.shown(r.method), r.shown(r.host), r.shown(r.path)
    lines = [f"request:     {method} host '{host}' path '{path}'"
             + ("" if r.host else " (no host)")
             + (f" (normalised from '{r.shown(r.raw_path)}')" if r.raw_path is not None else "")]
    lines.append(f"listener:    {e.listener.name} ({e.listener.address}; {e.listener_reason})")
    if e.route is None:
        lines.append(f"no route matched host '{host}' path '{path}' method {method}")
        lines.append(f"routes of listener {e.listener.name}, in order:")
        lines += [f"  [{m.index}] {m.route}: {m.reason}" for m in e.passed_over]
        return lines
    route = e.route
    lines.append(f"route:       {route.name} (index {e.index} of listener {e.listener.name}: "
                 + (f"{_count(len(e.passed_over), 'earlier route')} did not match)"
                    if e.passed_over
                    else "the first route)"))
    for m in e.passed_over:
        lines.append(f"  [{m.index}] {m.route}: {m.reason}")
    lines.append(f"  match:     {_match_text(route)}")
    if e.disagreement:
        lines.append(f"  warning:   {e.disagreement}")
    if route.rate_limit is None:
        lines.append("rate limit:  none")
    else:
        rl = route.rate_limit
        lines.append(f"rate limit:  {_number(rl.rate)} requests/s, burst {rl.burst}, per "
                     f"{rl.per} (buckets shared by all workers; 429 when empty)")
        lines.append(f"  bucket:    {_bucket(rl.per, r)}")
    if route.filters:
        specs = {spec.name: spec for spec in (e.config.filters if e.config else ())}
        shown = [f"{name} ({specs[name].python})" if name in specs and specs[name].python
                 else f"{name} (provided by the embedding program)" for name in route.filters]
        lines.append(f"filters:     {', '.join(shown)}, in this order (they may change the "
                     "request or answer it)")
    if route.direct_response is not None:
        d = route.direct_response
        extra = "".join(f", {k}: {v}" for k, v in d.headers.items())
        lines.append(f"direct response: {d.status}, body {len(d.body.encode())} bytes{extra} "
                     "(answered by the proxy, no upstream)")
        return lines
    lines.append("timeout:     " + (f"{format_duration(route.timeout)} (whole request, upstream "
                                    "response included)" if route.timeout else "none"))
    lines += _retry_lines(route, r)
    lines += _fault_lines(route, r)
    if route.mirror is not None:
        m = route.mirror
        lines.append(f"mirror:      {_number(m.percent)}% of requests copied to cluster "
                     f"{m.cluster} (host + '-shadow'; fire and forget, answers dropped)")
    rewritten = e.upstream_target != r.target
    lines.append(f"upstream:    {method} {r.shown(e.upstream_target or b'')}"
                 + (f" (rewritten from {r.shown(r.target)})" if rewritten else " (unchanged)"))
    for name, value in e.set_headers.items():
        had = r.header(name)
        lines.append(f"  set        {name}: {value}"
                     + (f" (replaces '{had}')" if had is not None else ""))
    for name in e.removed_headers:
        present = r.header(name) is not None
        lines.append(f"  remove     {name}" + ("" if present else " (not in this request)"))
    lines.append(f"  and the proxy adds {', '.join(PROXY_HEADERS)}")
    if len(e.split) > 1:
        lines.append("split:       " + ", ".join(
            f"{s.cluster.name} weight {s.weight} ({s.percent})" for s in e.split))
    for share in e.split:
        lines += _cluster_lines(share)
    return lines


def _cluster_lines(share: ClusterShare) -> list[str]:
    c = share.cluster
    how = c.balancer + (f" on {c.hash_on}" if c.hash_on and c.balancer == "ring_hash" else "")
    lines = [(f"cluster {c.name}: {how}, connect timeout {format_duration(c.connect_timeout)}, "
              f"up to {c.pool.max_connections} connections per worker")]
    cb, rb = c.circuit_breakers, c.retry_budget
    retries = (f"retries at most {_number(rb.percent)}% of them (at least {rb.min_concurrency})"
               if rb is not None else f"{cb.max_retries} retries")
    lines.append(f"  in flight: at most {cb.max_requests} requests, {retries} "
                 "(circuit breakers, all workers)")
    lines += _endpoint_health_lines(c)
    total = sum(ep.weight for ep in c.endpoints)
    for ep in c.endpoints:
        lines.append(f"  {ep.address}  weight {ep.weight} ({_percent(ep.weight, total)})")
    if share.picked is not None:
        lines.append(f"  this request: {share.picked}")
    return lines


def _endpoint_health_lines(c) -> list[str]:
    """How the cluster decides which endpoints are picked: its active health check, outlier
    detection and panic threshold (explain reads the config; the verdicts are GET /clusters')."""
    lines = []
    hc, od = c.health_check, c.outlier_detection
    if hc is not None:
        probe = (f"HTTP GET {hc.http.path}" + (f" (host {hc.http.host})" if hc.http.host else "")
                 + f" expecting {', '.join(hc.http.expect)}" if hc.http is not None
                 else "TCP connect")
        lines.append(f"  health:    {probe} every {format_duration(hc.interval)} (timeout "
                     f"{format_duration(hc.timeout)}); unhealthy after {hc.unhealthy_threshold} "
                     f"failures, healthy again after {hc.healthy_threshold} passes")
    if od is not None:
        when = [f"{od.consecutive_5xx} consecutive 5xx" if od.consecutive_5xx else "",
                f"{od.consecutive_gateway_errors} consecutive gateway errors"
                if od.consecutive_gateway_errors else ""]
        when = [w for w in when if w]
        lines.append(f"  outliers:  ejected after {' or '.join(when) or 'nothing (both off)'}, "
                     f"for {format_duration(od.base_ejection_time)} x times ejected (at most "
                     f"{format_duration(od.max_ejection_time)}), at most "
                     f"{od.max_ejection_percent}% of the endpoints at once")
    if hc is not None or od is not None:
        lines.append(f"  panic:     below {c.panic_threshold}% of the endpoints available, all "
                     "of them get traffic" if c.panic_threshold else
                     "  panic:     never (no endpoint available: 503)")
    return lines


def _retry_lines(route: Route, request: Request) -> list[str]:
    retry = route.retry
    if retry is None or retry.attempts == 0:
        return ["retry:       none"]
    b = retry.backoff
    retries = "1 retry" if retry.attempts == 1 else f"{retry.attempts} retries"
    lines = [f"retry:       up to {retries} on {', '.join(retry.on)}"
             + (f" ({', '.join(map(str, retry.retriable_statuses))})"
                if retry.retriable_statuses else "")]
    lines.append(f"  methods:   {', '.join(retry.methods)}; this request's "
                 + (f"{request.shown(request.method)} may be retried"
                    if request.shown(request.method) in retry.methods
                    else f"{request.shown(request.method)} is never retried"))
    lines.append("  per try:   " + (f"{format_duration(retry.per_try_timeout)} timeout"
                                    if retry.per_try_timeout else "no timeout of its own")
                 + f"; backoff {format_duration(b.base)} doubling up to "
                   f"{format_duration(b.ceiling)} (jittered)")
    return lines


def _fault_lines(route: Route, request: Request) -> list[str]:
    fault = route.fault
    if fault is None:
        return []
    parts = []
    if fault.delay is not None:
        parts.append(f"delay {format_duration(fault.delay.fixed)} on "
                     f"{_number(fault.delay.percent)}% of requests")
    if fault.abort is not None:
        a = fault.abort
        what = f"{a.status}" if a.status is not None else f"grpc-status {a.grpc_status}"
        parts.append(f"abort with {what} on {_number(a.percent)}% of requests")
    lines = ["fault:       " + "; ".join(parts)]
    header = fault.only_with_header
    if header is not None:
        has = request.header(header) is not None
        lines.append(f"  only with header {header}: "
                     + ("this request has it" if has else "this request has not (no fault)"))
    return lines


def _match_text(route: Route) -> str:
    m = route.match
    parts = []
    if m.host is not None:
        parts.append(f"host {m.host}")
    for kind in ("path", "path_prefix", "path_regex"):
        if getattr(m, kind) is not None:
            parts.append(f"{kind} {getattr(m, kind)}")
    if m.methods is not None:
        parts.append("methods " + " ".join(m.methods))
    parts += [f"header {k}: {v}" for k, v in m.headers.items()]
    if m.client_identity is not None:
        parts.append(f"client identity {m.client_identity}")
    return ", ".join(parts) or "any request"


def _bucket(per: RequestKey, request: Request) -> str:
    if per.kind == "route":
        return "one bucket for the route"
    if per.kind == "client_ip":
        return "one bucket per client address"
    name = per.name
    value = request.header(name)
    if value is None:
        return f"one bucket per {name} value; this request has none (the empty key, shared by " \
               f"all requests without {name})"
    return f"one bucket per {name} value; this request's is '{value}'"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


# -- command line ------------------------------------------------------------------------------


def add_explain_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "explain", help="show which route, rewrite, limits and cluster a request would get",
        description="Exit status: 0 when a route matches, 1 when none does, 2 when the config "
                    "or the request is invalid.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("-c", "--config", help="YAML config file")
    source.add_argument("-s", "--snapshot", help="compiled msgpack snapshot")
    parser.add_argument("request", nargs="+",
                        help="'METHOD URL', e.g. 'GET http://api.example.com/api/users'")
    parser.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
                        help="a request header (repeatable)")
    parser.add_argument("--listener", help="the listener's name (default: by the URL's port)")
    parser.add_argument("--client-ip", help="the client's address (for ring_hash on client_ip)")
    parser.add_argument("--client-identity", metavar="SPIFFE_ID",
                        help="the SPIFFE ID of the client's certificate (for routes that match "
                             "on match.client_identity; default: no client certificate)")
    parser.set_defaults(handler=cmd_explain)
    return parser


def cmd_explain(args: argparse.Namespace) -> int:
    config = _load(args)
    if config is None:
        return 2
    try:
        result = explain(config, " ".join(args.request), args.header,
                         listener=args.listener, client_ip=args.client_ip,
                         client_identity=args.client_identity)
    except ExplainError as error:
        print(f"sluice explain: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(result.text())
    return 0 if result.matched else 1


def _load(args: argparse.Namespace) -> Config | None:
    try:
        if args.snapshot:
            from .snapshot import load_snapshot

            return load_snapshot(args.snapshot)[1]
        from .load import check_file

        return check_file(args.config).raise_for_errors()
    except ConfigError as error:  # SnapshotError is one too
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    """`python -m engine.policy.explain -c FILE.yaml 'GET http://host/path'` (before the CLI
    wires it)."""
    parser = argparse.ArgumentParser(prog="sluice")
    add_explain_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["explain", *(sys.argv[1:] if argv is None else argv)])
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())

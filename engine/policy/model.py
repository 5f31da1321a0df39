"""The config model: what a sluice YAML file means, as frozen pydantic models.

Field names are exactly those of CONFIG.md (schema version 1), which is the user contract. This
module adds, beyond CONFIG.md:
- `Listener.limits` (`Limits`): the HTTP/1.1 head limits the codec enforces (`max_head_bytes`
  -> 413/431, `max_headers` -> 431, `max_uri_bytes` -> 414); `max_headers` is capped by the
  codec's hard array size (256, engine/_fast/http1.pxd).
- `Listener.paths` (`Paths`): request-path normalisation before routing (`normalize`,
  `merge_slashes`: true; `escaped_slashes`: reject), linked to `tables.Listener.path_flags`.
- `Config.access_log` (`AccessLog`): where access log lines go (`stdout` by default, `stderr`,
  `off`, or a file path) and their `format` (`json` or nginx's `combined`).
- `Config.overload` (`Overload`, issue 11): `max_loop_delay`, the event-loop lag past which a
  worker sheds new requests (503); `0s`, the default, is off, as Envoy's overload manager is
  unless configured. The runtime side is engine/runtime/overload.py.
- TLS (issue 9; names from CONFIG.md): `Listener.tls` (`ListenerTLS`: certificates chosen by
  SNI, `min_version`, `client_ca` for mutual TLS, `forward_client_cert`) and
  `Match.client_identity`. The files are read at
  validation (`pem`): a missing, unreadable, non-PEM or mismatched file is an error at the field
  naming it, and the paths are stored absolute (a relative one is relative to the config file's
  directory, `fields.BASE_DIR`).
- `Cluster.tls.insecure_skip_verify` (issue 9): verification off, only when spelled out.
- HTTP/2 (issue 10): `Listener.protocols` (CONFIG.md: `http1`, `http2`, the ALPN offer in this
  order with tls; h2c prior knowledge on plaintext when `http2` is listed), `Cluster.protocol:
  http2` (h2 by ALPN with tls, h2c prior knowledge without), and the SETTINGS we announce,
  `Listener.http2` (`ListenerHTTP2`) and `Cluster.http2` (`ClusterHTTP2`, with PING liveness of
  idle upstream connections). A `http2` block where the protocol is not HTTP/2 is a warning
  (`lint`), not an error: a rollout may switch the protocol off and on without deleting it.
- Health checks (issue 11): `Cluster.health_check` as CONFIG.md spells it (`http: {path, host,
  expect}` or `tcp: {}`, `interval`, `timeout`, thresholds; `expect` defaults to `["200-399"]`),
  and `Cluster.panic_threshold` (percent, default 50, Envoy's healthy panic threshold), an
  addition: on the cluster because it governs the cluster's load balancing whatever took the
  endpoints out (health checks or outlier ejections).
- Resilience (issue 11; names from CONFIG.md, Envoy's semantics): `Route.retry` (`Retry`, with
  its `Backoff`), `Route.fault` (`Fault`: `FaultDelay`, `FaultAbort`), `Route.mirror`
  (`Mirror`), `Cluster.circuit_breakers` (`CircuitBreakers`, always present: Envoy applies its
  defaults to every cluster) and `Cluster.retry_budget` (`RetryBudget`, absent = none). Rules
  across a route's own fields (a per-try timeout longer than the route's timeout; retry, fault
  or mirror on a direct response) are the route's; `mirror.cluster` naming a cluster is a
  cross-reference (`crossref`). Percentages are floats from 0 to 100 (`Percent`).
- Defaults that CONFIG.md leaves implicit: `admin` defaults to 127.0.0.1:9901,
  `rate_limit.per` to `route`, `clusters` to none (a config of direct responses needs none),
  `Cluster.protocol` to `http1`,
  `pool.max_pending` to 1024.
- The model reads files: a cluster's `tls` PEM files are checked when it is validated
  (`tls_client.check`), so a bad file is a config error at validate, compile, start and reload.

What the model guarantees once built:
- Values are normalised: durations are float seconds, addresses are `Address`, header names
  and `match.host` lowercase, methods uppercase. Sequences are tuples.
- Every rule about one object holds (one path condition per match, `to` xor
  `direct_response`, `hash_on` with `ring_hash`, ...); rules that look across objects (names,
  references, addresses) live in `crossref` and are applied by `Config` itself, except when the
  loader validates with `DEFER_CROSSREF` in the context to run them on partial configs too.

Matching semantics the router must share (also used by `lint` to find shadowed routes):
`path` is an exact match, `path_prefix` a plain string prefix (`/api` matches `/apix`),
`path_regex` must match the whole path (RE2, see `pathregex`), all against the path without its
query.
`host` is compared with the request host with its port removed; `*.example.com` matches names
ending in `.example.com`. `headers` values match exactly. Conditions combine with AND.

Rule errors are raised as `RuleViolation`s carrying paths relative to the object, so a message
lands on the field to fix (`clusters[0].hash_on`) rather than on the object.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

from . import crossref, durations, pem, syntax, tls_client
from .addresses import Address
from .errors import Loc, RuleCollector, RuleViolation, violation
from .fields import (
    AddressField,
    ClientIdentity,
    Count,
    Duration,
    FilePath,
    HashKey,
    HeaderMap,
    HeaderName,
    Host,
    Method,
    Name,
    NameRef,
    Path,
    PathRegex,
    RateKey,
    ServerName,
    Timeout,
    Weight,
)

# Validation context key: skip the cross-reference rules in `Config` (the loader runs them
# itself, over whatever parts of a broken config did validate).
DEFER_CROSSREF = "sluice_defer_crossref"

Balancer = Literal["weighted_round_robin", "least_request", "ring_hash", "random"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- admin and listeners -----------------------------------------------------------------------


class Admin(_Model):
    """The admin HTTP API. It can replace the running config, so off loopback it needs a token."""

    address: AddressField = Field(
        Address("127.0.0.1", 9901),
        description="Where the admin API listens; a non-loopback address needs admin.token.")
    token: str | None = Field(
        None, min_length=1,
        description="Bearer token required by the admin API (required off loopback).")

    @model_validator(mode="after")
    def _token_off_loopback(self) -> Admin:
        if self.token is None and not self.address.is_loopback:
            raise violation(("token",), (
                f"required because admin.address {self.address} is not a loopback address "
                "(the admin API can replace the running config)"))
        return self


class Limits(_Model):
    """Limits on a request head, enforced by the HTTP/1.1 codec (an addition to CONFIG.md)."""

    max_head_bytes: Count = Field(
        65536, ge=1024, le=1048576,
        description="Largest request head (request line + headers) in bytes; larger is 431.")
    max_headers: Count = Field(
        100, ge=1, le=256, description="Most header lines in a request head; more is 431.")
    max_uri_bytes: Count = Field(
        8192, ge=16, le=1048576, description="Longest request target in bytes; longer is 414.")
    max_connections: Count = Field(
        0, ge=0, description="Most open client connections per worker; a connection over it is "
        "closed at once and counted. 0 = no limit other than the worker's file descriptors.")

    @model_validator(mode="after")
    def _uri_fits_head(self) -> Limits:
        if self.max_uri_bytes > self.max_head_bytes:
            raise violation(("max_uri_bytes",), (
                f"{self.max_uri_bytes} is larger than max_head_bytes ({self.max_head_bytes}), "
                "which contains it"))
        return self


class Timeouts(_Model):
    """How long a client connection may take over each phase; `0s` switches one off. The
    defaults protect a worker from clients that connect and stall (slowloris), that stop
    reading, or that keep idle connections forever."""

    header: Timeout = Field(
        10.0, description="From accept (first request) or the first byte of a head (later "
        "requests) to the end of the head; then 408 and close.")
    idle: Timeout = Field(
        60.0, description="A keep-alive connection with no request in flight, or a tunnel "
        "(WebSocket) with no bytes either way, is closed after this long.")
    request_body: Timeout = Field(
        30.0, description="No request body bytes for this long while the body is due: 408 "
        "(or a closed connection once the response started).")
    send: Timeout = Field(
        30.0, description="The client reads nothing of what we send for this long: the "
        "connection is dropped (the upstream read was paused at the buffer's high-water mark).")
    max_connection_duration: Timeout = Field(
        0.0, description="Close a connection this long after accept, after the exchange in "
        "flight (0s = never).")


class Paths(_Model):
    """How the request path is normalised before it is routed and forwarded (engine/_fast/paths.pyx,
    README.md "Path normalisation"). The defaults are the safe choice; each option only loosens."""

    normalize: Annotated[bool, Strict()] = Field(
        True, description=(
            "Decode percent-escapes of unreserved characters, upper-case the hex of the others, "
            "and remove '.' and '..' segments (RFC 3986 5.2.4), so /%61dmin and /x/../admin "
            "route as /admin."))
    merge_slashes: Annotated[bool, Strict()] = Field(
        True, description="Collapse runs of '/' into one (//admin routes as /admin).")
    escaped_slashes: Literal["reject", "keep"] = Field(
        "reject", description=(
            "%2F, %5C and a raw backslash in a path: 'reject' answers 400; 'keep' passes them "
            "to the upstream as they came, never as separators (only for upstreams that do not "
            "decode them)."))


class TLSCertificate(_Model):
    """A certificate (PEM; the leaf first, then its chain) and its private key (PEM,
    unencrypted). Both files are read when the config is validated: a missing, unreadable or
    non-PEM file, or a key that is not the certificate's, is an error naming the file."""

    cert: FilePath = Field(description="PEM certificate chain file, the leaf first.")
    key: FilePath = Field(description="PEM private key file (unencrypted) of the certificate.")

    @model_validator(mode="after")
    def _usable_pair(self) -> TLSCertificate:
        try:
            pem.check_pair(self.cert, self.key)
        except pem.PemError as error:
            raise violation(("key" if error.path == self.key else "cert",), str(error)) \
                from None
        return self


ForwardClientCert = Literal["sanitize", "sanitize_set", "forward_only"]


class ListenerTLS(_Model):
    """TLS termination on a listener (an addition to schema version 1, issue 9): certificates
    chosen by SNI, the lowest TLS version accepted, and mutual TLS."""

    certificates: tuple[TLSCertificate, ...] = Field(
        min_length=1, description="The first is the default; the others are chosen by SNI "
        "(the client's server name against each certificate's DNS names, wildcards included).")
    min_version: Literal["1.2", "1.3"] = Field(
        "1.2", description="The lowest TLS version accepted: '1.2' or '1.3'.")
    client_ca: FilePath | None = Field(
        None, description="PEM bundle of the CAs that sign client certificates: mutual TLS, "
        "a client certificate signed by one of them is required.")
    forward_client_cert: ForwardClientCert = Field(
        "sanitize", description="x-forwarded-client-cert to the upstream: 'sanitize' removes the "
        "client's; 'sanitize_set' replaces it with the verified peer's; 'forward_only' passes "
        "the client's through.")

    @model_validator(mode="after")
    def _readable_ca(self) -> ListenerTLS:
        if self.client_ca is not None:
            try:
                pem.certificates(self.client_ca, "CA certificate")
            except pem.PemError as error:
                raise violation(("client_ca",), str(error)) from None
        return self


Protocol = Literal["http1", "http2"]

# RFC 9113 section 6.5.2: SETTINGS_MAX_CONCURRENT_STREAMS and SETTINGS_INITIAL_WINDOW_SIZE are
# 31-bit; section 6.9.1: a flow-control window never exceeds 2^31-1. A connection window starts
# at 65535 and only grows (WINDOW_UPDATE), so 65535 is also the smallest connection window.
H2_MAX = 2**31 - 1
H2_MIN_WINDOW = 65535


class ListenerHTTP2(_Model):
    """The HTTP/2 SETTINGS a listener announces to its clients (used when `protocols` lists
    http2): how many streams a client may have open at once and how much body it may send
    ahead, per stream and per connection, before the proxy reads it."""

    max_concurrent_streams: Count = Field(
        128, ge=1, le=H2_MAX,
        description="SETTINGS_MAX_CONCURRENT_STREAMS: requests one client connection may have "
                    "in flight at once; a stream over it is a stream error (RFC 9113 5.1.2).")
    initial_stream_window: Count = Field(
        H2_MIN_WINDOW, ge=H2_MIN_WINDOW, le=H2_MAX,
        description="SETTINGS_INITIAL_WINDOW_SIZE in bytes: request body a client may send on "
                    "one stream ahead of the upstream reading it.")
    initial_connection_window: Count = Field(
        1048576, ge=H2_MIN_WINDOW, le=H2_MAX,
        description="Request body bytes a client may send ahead on the whole connection, all "
                    "streams together (the connection's flow-control window).")


class Listener(_Model):
    name: Name
    address: AddressField = Field(description="host:port to accept on; [::1]:8080 for IPv6.")
    routes: tuple[NameRef, ...] = Field(
        min_length=1, description="Route names, tried in this order; the first match wins.")
    limits: Limits = Field(default_factory=Limits)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    paths: Paths = Field(default_factory=Paths)
    protocols: tuple[Protocol, ...] = Field(
        ("http1",), min_length=1, description="HTTP versions served: http1 (HTTP/1.1 and 1.0), "
        "http2. With tls, the ALPN offer in this order ('h2', 'http/1.1'); on plaintext, "
        "HTTP/2 with prior knowledge (h2c) is detected when http2 is listed.")
    http2: ListenerHTTP2 = Field(
        default_factory=ListenerHTTP2,
        description="HTTP/2 settings announced to clients (when protocols lists http2).")
    tls: ListenerTLS | None = Field(
        None, description="Terminate TLS on this listener; absent = plaintext.")

    @model_validator(mode="after")
    def _distinct_protocols(self) -> Listener:
        rules = RuleCollector()
        seen: dict[str, int] = {}
        for j, protocol in enumerate(self.protocols):
            if protocol in seen:
                rules.add(("protocols", j), f"'{protocol}' is already protocols[{seen[protocol]}]")
            seen.setdefault(protocol, j)
        rules.raise_if_any()
        return self


# -- routes ------------------------------------------------------------------------------------


GRPC_NAME = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
GRPC_METHOD = r"^[A-Za-z_][A-Za-z0-9_]*$"


class GrpcMatch(_Model):
    """A gRPC service, or one of its methods: the request path `/service/method` gRPC (and
    gRPC-Web) calls carry. Written as the path condition it is (see Match)."""

    service: str = Field(pattern=GRPC_NAME, description="Fully qualified service name, "
                         "as in the .proto: package.Service.")
    method: str | None = Field(None, pattern=GRPC_METHOD,
                               description="One method of the service; absent = every method.")


class Match(_Model):
    """What a request must look like to take a route; an absent condition matches anything."""

    host: Host | None = Field(
        None, description="Exact host, or a leading wildcard '*.example.com'; no port.")
    path: Path | None = Field(None, description="Exact path.")
    path_prefix: Path | None = Field(None, description="Path prefix (plain string prefix).")
    path_regex: PathRegex | None = Field(
        None, description="RE2 regular expression (linear-time: no backreferences or "
                          "lookaround) matched against the whole path.")
    methods: tuple[Method, ...] | None = Field(None, min_length=1)
    headers: HeaderMap = Field(
        default_factory=dict, description="Headers that must be present with exactly this value.")
    client_identity: ClientIdentity | None = Field(
        None, description="The mutual-TLS client's SPIFFE ID (its certificate's URI SAN): "
        "exact, or a prefix ending in '/*'. Only on listeners with tls.client_ca.")
    grpc: GrpcMatch | None = Field(
        None, description="A gRPC service ({service: pkg.Svc}) or method "
        "({service: pkg.Svc, method: Get}): the same as path_prefix '/pkg.Svc/' or path "
        "'/pkg.Svc/Get', which a compiled snapshot stores beside it.")

    @model_validator(mode="before")
    @classmethod
    def _grpc_is_a_path(cls, data: Any) -> Any:
        """match.grpc becomes the path condition it means, so routing, lint, explain and the
        snapshot see one kind of path condition."""
        if not isinstance(data, dict) or data.get("grpc") is None:
            return data
        g = data["grpc"]
        if isinstance(g, BaseModel):
            g = g.model_dump()
        service = g.get("service") if isinstance(g, dict) else None
        method = g.get("method") if isinstance(g, dict) else None
        if not (isinstance(service, str) and re.match(GRPC_NAME, service)) or not (
                method is None or (isinstance(method, str) and re.match(GRPC_METHOD, method))):
            return data            # the grpc field's own validation says what is wrong
        field, value = ("path", f"/{service}/{method}") if method is not None else \
            ("path_prefix", f"/{service}/")
        others = [f for f in ("path", "path_prefix", "path_regex") if data.get(f) is not None]
        if others == [field] and data[field] == value:
            return data            # normalised already (a compiled snapshot read back)
        if others:
            raise violation(("grpc",), f"use only one of path, path_prefix, path_regex, grpc "
                                       f"(found grpc and {others[0]})")
        return {**data, field: value}

    @model_validator(mode="after")
    def _one_path_condition(self) -> Match:
        given = [f for f in ("path", "path_prefix", "path_regex") if getattr(self, f) is not None]
        if len(given) > 1:
            raise violation((given[1],), (
                f"use only one of path, path_prefix, path_regex (found {' and '.join(given)})"))
        return self

    @property
    def is_catch_all(self) -> bool:
        """True when the match takes every request (no condition, or only `path_prefix: /`)."""
        return (self.host is None and self.methods is None and not self.headers
                and self.client_identity is None and self.path is None and self.path_regex is None
                and self.path_prefix in (None, "/"))


class Rewrite(_Model):
    """Changes made to the request before it goes upstream."""

    path_prefix: Path | None = Field(
        None, description="Replaces the part of the path matched by match.path_prefix.")
    set_headers: HeaderMap = Field(default_factory=dict)
    remove_headers: tuple[HeaderName, ...] = ()

    @model_validator(mode="after")
    def _headers_consistent(self) -> Rewrite:
        rules = RuleCollector()
        for header in self.set_headers:
            if header in syntax.MANAGED_HEADERS:
                rules.add(("set_headers", header),
                          f"'{header}' is managed by the proxy (hop-by-hop or framing)")
        for i, header in enumerate(self.remove_headers):
            if header in self.set_headers:
                rules.add(("remove_headers", i),
                          f"'{header}' is also in set_headers; keep one")
        rules.raise_if_any()
        return self


class RateLimit(_Model):
    """A token bucket: `rate` requests per second refill a bucket of `burst` requests. One bucket
    per node (shared by all workers) for each key `per` selects."""

    rate: Annotated[float, Strict()] = Field(gt=0, allow_inf_nan=False,
                                             description="Requests per second.")
    burst: Count = Field(ge=1, description="Bucket size: requests allowed at once.")
    per: RateKey = Field("route", validate_default=True,    # the default parsed as written
                         description="route | client_ip | header:NAME")


class DirectResponse(_Model):
    """Answer from the proxy itself, without an upstream."""

    status: Count = Field(ge=200, le=599, description="A final status (1xx are interim).")
    body: str = ""
    headers: HeaderMap = Field(default_factory=dict)

    @model_validator(mode="after")
    def _valid_response(self) -> DirectResponse:
        rules = RuleCollector()
        for header in self.headers:
            if header in syntax.MANAGED_HEADERS:
                rules.add(("headers", header),
                          f"'{header}' is set by the proxy (from the body, or hop-by-hop)")
        if self.body and (self.status in (204, 304)):
            rules.add(("body",), f"a {self.status} response has no body")
        rules.raise_if_any()
        return self


class Target(_Model):
    cluster: NameRef
    weight: Weight = Field(1, description="Share of the traffic, relative to the other targets.")


Percent = Annotated[float, Strict(), Field(ge=0, le=100, allow_inf_nan=False)]

# routes[].retry.on, the names of tables.RETRY_ON (engine/_fast/tables.pyx; a test holds the two
# equal): what a failed try may have failed with and still be retried
RetryOn = Literal["connect-failure", "reset", "gateway-error", "5xx", "retriable-status",
                  "refused-stream"]
RETRY_ON_DEFAULT: tuple[str, ...] = ("connect-failure", "reset", "gateway-error",
                                     "refused-stream")
# RFC 9110 section 9.2.2: the methods whose repetition has the effect of one request
IDEMPOTENT_METHODS: tuple[str, ...] = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")

RetryStatus = Annotated[int, Strict(), Field(ge=400, le=599)]


def _duplicates(items: tuple, where: str) -> list[tuple[Loc, str]]:
    """`(loc, reason)` for each item of a list that repeats an earlier one."""
    out: list[tuple[Loc, str]] = []
    first: dict[Any, int] = {}
    for j, item in enumerate(items):
        if item in first:
            shown = f"'{item}'" if isinstance(item, str) else str(item)
            out.append(((where, j), f"{shown} is already {where}[{first[item]}]"))
        first.setdefault(item, j)
    return out


class Backoff(_Model):
    """The wait before each retry: full-jitter exponential backoff (Envoy's), a random time
    between 0 and base * 2^(retry - 1), at most `max`."""

    base: Duration = Field(0.025, description="The first retry waits up to this long; each "
                           "later one up to twice as long as the one before.")
    max: Duration | None = Field(
        None, description="The longest wait before a retry; absent = 10 times base.")

    @model_validator(mode="after")
    def _consistent(self) -> Backoff:
        if self.max is not None and self.max < self.base:
            raise violation(("max",), f"{durations.format_duration(self.max)} is shorter than "
                            f"base ({durations.format_duration(self.base)})")
        return self

    @property
    def ceiling(self) -> float:
        """`max`, or its default: 10 times base (as Envoy)."""
        return self.max if self.max is not None else 10 * self.base


class Retry(_Model):
    """Retries of a failed try on another pick of the route's clusters (Envoy's retry policy).
    Only a request whose body was not streamed past the buffer can be retried, and only before
    any of the response went to the client."""

    attempts: Count = Field(
        1, ge=0, le=10, description="Retries after the first try (so attempts + 1 tries at "
                                    "most); 0 = none.")
    on: tuple[RetryOn, ...] = Field(
        RETRY_ON_DEFAULT, min_length=1,
        description="What a try may fail with and still be retried: connect-failure, reset, "
                    "gateway-error (502, 503, 504), 5xx, retriable-status (a status of "
                    "retriable_statuses), refused-stream (HTTP/2 REFUSED_STREAM).")
    retriable_statuses: tuple[RetryStatus, ...] = Field(
        (), description="Statuses (400..599) retried with on: retriable-status.")
    per_try_timeout: Timeout = Field(
        0.0, description="Each try's own timeout (a timed-out try is retried as a reset); "
                         "0s = none, only the route's timeout.")
    backoff: Backoff = Field(default_factory=Backoff,
                             description="The wait before each retry (jittered exponential).")
    methods: tuple[Method, ...] = Field(
        IDEMPOTENT_METHODS, min_length=1,
        description="Methods that may be retried; the default is the idempotent ones.")

    @model_validator(mode="after")
    def _consistent(self) -> Retry:
        rules = RuleCollector()
        for loc, reason in [*_duplicates(self.on, "on"), *_duplicates(self.methods, "methods"),
                            *_duplicates(self.retriable_statuses, "retriable_statuses")]:
            rules.add(loc, reason)
        if "retriable-status" in self.on and not self.retriable_statuses:
            rules.add(("retriable_statuses",), "required with on: retriable-status (which "
                      "statuses to retry)")
        elif self.retriable_statuses and "retriable-status" not in self.on:
            rules.add(("retriable_statuses",), "has no effect unless 'on' lists "
                      "retriable-status; add it there")
        rules.raise_if_any()
        return self


class FaultDelay(_Model):
    """A fixed delay before a request goes upstream."""

    fixed: Duration = Field(description="How long the request is held.")
    percent: Percent = Field(100.0, description="Percent of the requests delayed (0 to 100).")


class FaultAbort(_Model):
    """An answer from the proxy instead of the upstream: an HTTP status, or a gRPC status (a
    200 with grpc-status, as a gRPC server answers an error). Exactly one of the two."""

    status: Count | None = Field(None, ge=200, le=599,
                                 description="The HTTP status answered (200 to 599).")
    grpc_status: Count | None = Field(None, ge=0, le=16,
                                      description="The gRPC status answered (0 to 16, "
                                                  "14 = UNAVAILABLE).")
    percent: Percent = Field(100.0, description="Percent of the requests aborted (0 to 100).")

    @model_validator(mode="after")
    def _one_status(self) -> FaultAbort:
        if self.status is None and self.grpc_status is None:
            raise violation((), "needs one of 'status' (HTTP) and 'grpc_status' (gRPC)")
        if self.status is not None and self.grpc_status is not None:
            raise violation(("grpc_status",), "has both 'status' and 'grpc_status'; keep one")
        return self


class Fault(_Model):
    """Fault injection (chaos testing): delay some requests, answer some with an error, or both
    (Envoy's fault filter). A delay comes first, then the abort."""

    delay: FaultDelay | None = Field(None, description="Hold requests before they go upstream.")
    abort: FaultAbort | None = Field(None, description="Answer requests with an error instead "
                                                       "of forwarding them.")
    only_with_header: HeaderName | None = Field(
        None, description="Only requests carrying this header (any value) are faulted; "
                          "absent = every request of the route.")

    @model_validator(mode="after")
    def _something(self) -> Fault:
        if self.delay is None and self.abort is None:
            raise violation((), "needs 'delay', 'abort' or both (the fault to inject)")
        return self


class Mirror(_Model):
    """Traffic shadowing: a copy of some requests goes to another cluster, fire and forget (its
    answer is dropped, its failures never reach the client). The copy's Host gets "-shadow"
    appended, as Envoy does, so the shadow can tell copies from real traffic."""

    cluster: NameRef = Field(description="The cluster the copies go to.")
    percent: Percent = Field(100.0, description="Percent of the requests copied (0 to 100).")


class Route(_Model):
    name: Name
    match: Match
    rewrite: Rewrite | None = None
    rate_limit: RateLimit | None = None
    timeout: Timeout = Field(
        15.0, description="For the whole request, upstream response included: 504 before the "
        "response starts, a closed connection after. 15s by default (as Envoy); 0s = none.")
    direct_response: DirectResponse | None = None
    to: tuple[Target, ...] = Field((), description="Weighted targets: a split across clusters.")
    filters: tuple[NameRef, ...] = Field(
        (), description="Python filters (names from the top-level 'filters'), run in this order.")
    retry: Retry | None = Field(None, description="Retry failed tries; absent = none.")
    fault: Fault | None = Field(None, description="Inject delays and errors (chaos testing); "
                                                  "absent = none.")
    mirror: Mirror | None = Field(None, description="Copy requests to another cluster, fire "
                                                    "and forget; absent = none.")

    @model_validator(mode="after")
    def _one_action(self) -> Route:
        rules = RuleCollector()
        if self.direct_response is None and not self.to:
            rules.add((), "needs 'to' (clusters to forward to) or 'direct_response'")
        elif self.direct_response is not None and self.to:
            rules.add(("direct_response",),
                      "a route has either 'to' or 'direct_response', not both")
        if self.direct_response is not None:
            for field_name, what in (("retry", "nothing to retry"),
                                     ("fault", "nothing goes upstream to delay or abort"),
                                     ("mirror", "nothing to mirror")):
                if getattr(self, field_name) is not None:
                    rules.add((field_name,), f"a route with direct_response has no upstream "
                                             f"({what})")
        retry = self.retry
        if retry is not None and self.timeout and retry.per_try_timeout > self.timeout:
            rules.add(("retry", "per_try_timeout"), (
                f"{durations.format_duration(retry.per_try_timeout)} is longer than the route's "
                f"timeout ({durations.format_duration(self.timeout)}), which ends every try "
                "first"))
        if self.rewrite is not None and self.rewrite.path_prefix is not None \
                and self.match.path_prefix is None:
            rules.add(("rewrite", "path_prefix"),
                      "needs match.path_prefix: it replaces the matched prefix")
        seen: dict[str, int] = {}
        for i, target in enumerate(self.to):
            if target.cluster in seen:
                rules.add(("to", i, "cluster"), (
                    f"cluster '{target.cluster}' is already a target (to[{seen[target.cluster]}]); "
                    "add the weights together instead"))
            seen.setdefault(target.cluster, i)
        rules.raise_if_any()
        return self


# -- clusters ----------------------------------------------------------------------------------


class Pool(_Model):
    """Upstream connection pool, per worker."""

    max_connections: Count = Field(1024, ge=1)
    max_pending: Count = Field(
        1024, ge=0, le=1048576,
        description="Requests that may wait for a connection when the pool is at "
                    "max_connections (per endpoint and worker); one more gets 503. 0 = none wait.")
    idle_timeout: Duration = Field(60.0, description="Close a pooled connection idle this long.")
    max_requests_per_connection: Count = Field(
        0, ge=0, description="Recycle a connection after this many requests; 0 = unlimited.")


class Endpoint(_Model):
    address: AddressField = Field(description="host:port; a host name is resolved at connect.")
    weight: Weight = 1

    @model_validator(mode="after")
    def _real_port(self) -> Endpoint:
        if self.address.port == 0:
            raise violation(("address",), "an endpoint needs a port other than 0")
        return self


class ClusterTLS(_Model):
    """TLS to a cluster's endpoints (origination). The files are PEM and are read when the config
    is validated: a missing, unreadable or mismatched file is an error naming it (`tls_client`)."""

    ca: FilePath | None = Field(
        None, description="CA bundle that verifies the upstream's certificate; absent = the "
                          "system's default trust store.")
    sni: ServerName | None = Field(
        None, description="Server name sent in SNI and verified in the certificate; absent = "
                          "the endpoint's host (an IP endpoint is verified against its IP SAN).")
    cert: FilePath | None = Field(
        None, description="Client certificate (chain) presented to the upstream (mutual TLS); "
                          "needs key.")
    key: FilePath | None = Field(
        None, description="Private key of cert (unencrypted PEM); needs cert.")
    insecure_skip_verify: Annotated[bool, Strict()] = Field(
        False, description="Accept any certificate and name (still encrypted, not "
                           "authenticated): for tests only.")

    @model_validator(mode="after")
    def _files(self) -> ClusterTLS:
        rules = RuleCollector()
        if self.cert is not None and self.key is None:
            rules.add(("key",), "required with cert (the client certificate's private key)")
        if self.key is not None and self.cert is None:
            rules.add(("cert",), "required with key (the client certificate the key belongs to)")
        for loc, reason in tls_client.check(self):
            rules.add(loc, reason)
        rules.raise_if_any()
        return self


class ClusterHTTP2(_Model):
    """Our side of the HTTP/2 connections to a cluster's endpoints (used with `protocol:
    http2`): the SETTINGS we announce, our own cap on streams per connection, and PING-based
    liveness of idle connections (so that a connection the peer stopped answering is found
    while it is idle, rather than by the timeout of the next request put on it)."""

    max_concurrent_streams: Count = Field(
        100, ge=1, le=H2_MAX,
        description="Most requests in flight at once on one upstream connection (the "
                    "endpoint's own SETTINGS_MAX_CONCURRENT_STREAMS may lower it).")
    initial_stream_window: Count = Field(
        H2_MIN_WINDOW, ge=H2_MIN_WINDOW, le=H2_MAX,
        description="SETTINGS_INITIAL_WINDOW_SIZE in bytes: response body the endpoint may "
                    "send on one stream ahead of the client reading it.")
    initial_connection_window: Count = Field(
        1048576, ge=H2_MIN_WINDOW, le=H2_MAX,
        description="Response body bytes the endpoint may send ahead on the whole connection, "
                    "all streams together.")
    ping_interval: Timeout = Field(
        30.0, description="PING a connection that has been idle this long (no frame "
        "received); 0s = never.")
    ping_timeout: Duration = Field(
        5.0, description="Close the connection when a PING is not acknowledged within this "
        "long.")


_STATUS_RANGE = re.compile(r"^([0-9]{3})(?:-([0-9]{3}))?$")


def status_ranges(expect: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    """A health check's `expect` as inclusive (low, high) pairs: "200-399" -> (200, 399),
    "204" -> (204, 204). The model has checked every entry."""
    out = []
    for text in expect:
        m = _STATUS_RANGE.match(text)
        low = int(m.group(1))
        out.append((low, int(m.group(2)) if m.group(2) else low))
    return tuple(out)


def _status_range(value: Any) -> Any:
    """One `expect` entry: "200-399", "204", or the number 204 (read as "204")."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return value                 # pydantic's "expected a string"
    m = _STATUS_RANGE.match(value.strip())
    if m is None:
        raise ValueError(f"'{value}' is not a status or a range of statuses such as "
                         "'200-399' or '204'")
    low, high = int(m.group(1)), int(m.group(2) or m.group(1))
    for n in (low, high):
        if not 100 <= n <= 599:
            raise ValueError(f"'{value}': {n} is not an HTTP status (100..599)")
    if low > high:
        raise ValueError(f"'{value}': the range runs backwards (write '{high}-{low}')")
    return value.strip()


StatusRange = Annotated[
    str,
    BeforeValidator(_status_range),
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": r"^[1-5][0-9]{2}(-[1-5][0-9]{2})?$"},
                              {"type": "integer", "minimum": 100, "maximum": 599}],
                    "examples": ["200-399", "204"]}),
]


def _probe_path(value: str) -> str:
    """A health check's request target: an origin-form path, a query allowed (RFC 9112 3.2.1)."""
    if not value.startswith("/"):
        raise ValueError(f"a health check path starts with '/', got '{value}'")
    if re.search(r"[\x00-\x20\x7f-\xff#]", value):
        raise ValueError("a health check path contains a space, a control character, a "
                         "non-ASCII character or a fragment ('#')")
    return value


class HTTPCheck(_Model):
    """An HTTP/1.1 health check: GET `path` with Host `host`; healthy when the status is in one of
    the `expect` ranges. A refused connection, a timeout, a reset and an answer that is not
    HTTP are failures."""

    path: Annotated[str, AfterValidator(_probe_path),
                    WithJsonSchema({"type": "string", "pattern": "^/"})] = Field(
        description="Request target of the probe, starting with '/' (a query is allowed).")
    host: Annotated[str, AfterValidator(syntax.host)] | None = Field(
        None, description="Host header of the probe; absent = the endpoint's host.")
    expect: tuple[StatusRange, ...] = Field(
        ("200-399",),
        description="Statuses that mean healthy: 'NNN' or 'NNN-MMM' ranges (inclusive).")

    @model_validator(mode="after")
    def _consistent(self) -> HTTPCheck:
        rules = RuleCollector()
        if self.host is not None and self.host.startswith("*"):
            rules.add(("host",), f"'{self.host}': a probe is sent to one host, not a wildcard")
        if not self.expect:
            rules.add(("expect",), "needs at least one status or range (default: '200-399')")
        rules.raise_if_any()
        return self

    @property
    def ranges(self) -> tuple[tuple[int, int], ...]:
        return status_ranges(self.expect)


class TCPCheck(_Model):
    """A TCP connect check: healthy when a connection opens within the timeout (nothing is
    sent)."""


class OutlierDetection(_Model):
    """Passive health: endpoints whose responses keep failing are ejected for a while,
    node-wide (every worker reports to and reads the same shared table). Envoy's semantics."""

    consecutive_5xx: Count = Field(
        5, ge=0, description="Consecutive 5xx answers (gateway errors included) that eject; "
                             "0 = off.")
    consecutive_gateway_errors: Count = Field(
        5, ge=0, description="Consecutive gateway errors (connect failure, reset, timeout, "
                             "502, 503, 504) that eject; 0 = off.")
    base_ejection_time: Duration = Field(
        30.0, gt=0, description="An ejection lasts this times the number of times the "
                                "endpoint was ejected before, plus one.")
    max_ejection_time: Duration = Field(
        300.0, gt=0, description="The longest an ejection lasts.")
    max_ejection_percent: Count = Field(
        10, ge=0, le=100, description="At most this percent of the cluster's endpoints are "
                                      "ejected at once (at least one, as Envoy does).")

    @model_validator(mode="after")
    def _consistent(self) -> OutlierDetection:
        if self.max_ejection_time < self.base_ejection_time:
            raise violation(("max_ejection_time",),
                            "must be at least base_ejection_time")
        return self


class HealthCheck(_Model):
    """Active health checking of a cluster's endpoints, once per node (the supervisor probes;
    every worker's balancer reads the verdicts from shared memory). Exactly one of `http` and
    `tcp`."""

    http: HTTPCheck | None = Field(None, description="Probe with an HTTP/1.1 GET.")
    tcp: TCPCheck | None = Field(None, description="Probe by opening a TCP connection.")
    interval: Duration = Field(
        5.0, description="Time between two probes of one endpoint (each wait is jittered by "
                         "up to 10%).")
    timeout: Duration = Field(
        1.0, description="A probe that has not passed by then fails; at most the interval.")
    healthy_threshold: Count = Field(
        2, ge=1, description="Consecutive passes that make an unhealthy endpoint healthy.")
    unhealthy_threshold: Count = Field(
        3, ge=1, description="Consecutive failures that make a healthy endpoint unhealthy.")

    @model_validator(mode="after")
    def _consistent(self) -> HealthCheck:
        rules = RuleCollector()
        if (self.http is None) == (self.tcp is None):
            rules.add((), "needs exactly one of 'http' and 'tcp' (what to probe with)"
                      if self.http is None else "has both 'http' and 'tcp'; keep one")
        if self.timeout > self.interval:
            rules.add(("timeout",), f"{durations.format_duration(self.timeout)} is longer than "
                      f"the interval ({durations.format_duration(self.interval)}): a probe "
                      "would still run when the next one is due")
        rules.raise_if_any()
        return self

    @property
    def kind(self) -> str:
        return "http" if self.http is not None else "tcp"


class CircuitBreakers(_Model):
    """Node-wide caps on what one cluster may have in flight (Envoy's circuit breakers): every
    worker counts into one shared table, so the caps hold whatever the number of workers. A
    request over `max_requests` is answered 503 at once; a retry over `max_retries` is not made
    (the failed try's answer goes to the client). With `pool.max_connections` and
    `pool.max_pending`, which cap each endpoint's connections and waiters per worker."""

    max_requests: Count = Field(
        1024, ge=1, le=2**31 - 1,
        description="Requests in flight to the cluster at once, all workers together; one more "
                    "is answered 503.")
    max_retries: Count = Field(
        3, ge=0, le=2**31 - 1,
        description="Retries in flight to the cluster at once, all workers together (replaced "
                    "by retry_budget when the cluster has one).")


class RetryBudget(_Model):
    """Retries in flight may be at most `percent` of the requests in flight to the cluster, and
    never fewer than `min_concurrency` (Envoy's retry budget): unlike a fixed
    `circuit_breakers.max_retries`, it grows with the traffic, and it stops retry storms
    whatever the traffic. It replaces `circuit_breakers.max_retries`."""

    percent: Percent = Field(
        20.0, description="Retries in flight, as a percent of the requests in flight (0 to 100).")
    min_concurrency: Count = Field(
        3, ge=0, le=2**31 - 1,
        description="Retries in flight allowed whatever the traffic (a quiet cluster can still "
                    "retry).")


class Cluster(_Model):
    name: Name
    balancer: Balancer = "weighted_round_robin"
    hash_on: HashKey | None = Field(
        None, description="ring_hash only: header:NAME | client_ip | cookie:NAME")
    connect_timeout: Duration = 1.0
    pool: Pool = Field(default_factory=Pool)
    protocol: Protocol = Field(
        "http1", description="How requests go to the endpoints: http1 (HTTP/1.1) or http2 "
                             "(h2 by ALPN with tls, h2c with prior knowledge without).")
    http2: ClusterHTTP2 = Field(
        default_factory=ClusterHTTP2,
        description="HTTP/2 connection settings (with protocol: http2).")
    tls: ClusterTLS | None = Field(
        None, description="Connect to the endpoints with TLS; absent = plaintext.")
    health_check: HealthCheck | None = Field(
        None, description="Active health checks, once per node; absent = none.")
    outlier_detection: OutlierDetection | None = Field(
        None, description="Passive health: eject endpoints that keep failing; absent = none.")
    panic_threshold: Count = Field(
        50, ge=0, le=100,
        description="Percent: when fewer of the endpoints than this are healthy (and not "
                    "ejected), route to all of them, as Envoy does. 0 = never: then a cluster "
                    "with none healthy answers 503.")
    circuit_breakers: CircuitBreakers = Field(
        default_factory=CircuitBreakers,
        description="Node-wide caps on requests and retries in flight to the cluster (Envoy's "
                    "defaults apply when absent).")
    retry_budget: RetryBudget | None = Field(
        None, description="Retries in flight as a share of the requests in flight, replacing "
                          "circuit_breakers.max_retries; absent = none.")
    endpoints: tuple[Endpoint, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Cluster:
        rules = RuleCollector()
        # hash_on with another balancer is only a warning (lint): CONFIG.md's own example
        # sets it on a weighted_round_robin cluster to show the field.
        if self.balancer == "ring_hash" and self.hash_on is None:
            rules.add(("hash_on",), "required with balancer: ring_hash (what to hash on)")
        seen: dict[tuple[str, int], int] = {}
        for i, endpoint in enumerate(self.endpoints):
            key = endpoint.address.same_socket_key()
            if key in seen:
                rules.add(("endpoints", i, "address"), (
                    f"{endpoint.address} is already endpoints[{seen[key]}]; "
                    "raise its weight instead"))
            seen.setdefault(key, i)
        rules.raise_if_any()
        return self


# -- the whole file ----------------------------------------------------------------------------


class AccessLog(_Model):
    """Where access log lines go, and in which format. Text logs go to stderr, so the access log
    defaults to stdout: the two never interleave on one stream unless asked to."""

    path: str = Field(
        "stdout", min_length=1,
        description="'stdout' (default), 'stderr', 'off', or a file path (opened for append; "
                    "SIGUSR1 reopens it, for logrotate).")
    format: Literal["json", "combined"] = Field(
        "json", description="'json' (one object per line) or 'combined' (nginx's combined "
                            "format, for existing log tooling).")


class FilterSpec(_Model):
    """A Python filter a route can name (an addition to CONFIG.md; see engine/filters/base.py).

    `python` is `module:Class`; the class is built once per snapshot as `Class(**config)`. An
    embedding program may instead provide the filter itself (`engine.Proxy(filters={name: ...})`),
    and then `python` can be left out."""

    name: Name
    python: str | None = Field(
        None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", description="module:Class")
    config: dict[str, Any] = Field(default_factory=dict,
                                   description="Keyword arguments of the filter's class.")


# Below this a worker's loop lags on scheduling noise alone (a garbage collection, a TLS
# handshake, a burst of a few hundred requests in one turn): shedding there would turn a busy
# but healthy worker away.
MIN_LOOP_DELAY = 0.010


class Overload(_Model):
    """Overload shedding (an addition to CONFIG.md, as Envoy's overload manager): while a
    worker's event loop runs late by more than `max_loop_delay`, that worker answers new
    requests 503 (`x-sluice-overloaded: true`) instead of queueing them behind the backlog."""

    max_loop_delay: Timeout = Field(
        0.0, description="Shed new requests (503) while the worker's event loop lags more than "
                         "this (measured every 50 ms); '0s' = never (default). At least 10ms.")

    @model_validator(mode="after")
    def _above_noise(self) -> Overload:
        if 0 < self.max_loop_delay < MIN_LOOP_DELAY:
            raise violation(("max_loop_delay",), (
                f"{durations.format_duration(self.max_loop_delay)} is below 10ms: an event loop "
                "lags that much on scheduling noise alone (a garbage collection, a burst of "
                "requests), so the worker would shed while healthy; use 10ms or more "
                "(100ms is a common choice), or 0s to switch shedding off"))
        return self


class Config(_Model):
    """A whole sluice config (schema version 1)."""

    admin: Admin = Field(default_factory=Admin)
    listeners: tuple[Listener, ...] = Field(min_length=1)
    routes: tuple[Route, ...] = Field(min_length=1)
    clusters: tuple[Cluster, ...] = ()
    access_log: AccessLog = Field(default_factory=AccessLog)
    filters: tuple[FilterSpec, ...] = ()
    overload: Overload = Field(
        default_factory=Overload,
        description="Overload shedding: new requests get 503 while a worker's event loop lags.")

    @model_validator(mode="after")
    def _cross_references(self, info: ValidationInfo) -> Config:
        if info.context and info.context.get(DEFER_CROSSREF):
            return self
        errors = crossref.check(crossref.Sections.of(self))
        if errors:
            raise RuleViolation(errors)
        return self

    def route(self, name: str) -> Route:
        """The route called `name` (KeyError if none)."""
        for route in self.routes:
            if route.name == name:
                return route
        raise KeyError(name)

    def cluster(self, name: str) -> Cluster:
        """The cluster called `name` (KeyError if none)."""
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        raise KeyError(name)

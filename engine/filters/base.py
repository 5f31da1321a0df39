"""Python filters: the extension point for embedders and for policies we have not compiled.

A filter is a class with phase methods, read as a timeline (Pingora's order):

* `request(ctx)`  after the route matched (and its rate limit admitted the request), before an
  endpoint is picked. Return `None` to go on, or a `Reply` to answer locally (e.g. 403).
* `response(ctx)` when the upstream's response head arrived, before it is sent to the client.

`ctx` (a `FilterContext`) carries the request's method, path, client address and headers, lets a
filter set or remove request headers (applied to what is sent upstream), set or remove response
headers, and keeps per-request state in `ctx.state`. One filter instance serves every request of
a snapshot: per-request data belongs in `ctx`, never on `self`.

Cost: a route lists its filters by name; the data plane builds, per route, the tuple of filters
that override `request` and the tuple that override `response`, and a route with none of either
checks one pointer and never enters Python. A `request` phase that raises answers that request
with a 500; a `response` phase that raises leaves the response as the upstream sent it. Either
way the connection lives on, the failure is counted per route (`sluice_filter_errors_total`)
and logged at most once per filter, phase and route every 10 seconds.
"""

from __future__ import annotations

from typing import Any, Iterable


class Reply:
    """A local answer from a filter: `Reply(403, "forbidden\\n", {"www-authenticate": "..."})`."""

    __slots__ = ("status", "body", "headers")

    def __init__(self, status: int, body: bytes | str = b"", headers: dict[str, str] | None = None):
        self.status = int(status)
        self.body = body.encode() if isinstance(body, str) else bytes(body)
        self.headers = dict(headers or {})

    def header_pairs(self) -> list[bytes]:
        """The headers as the flat [name, value, ...] list the proxy's encoders take."""
        out: list[bytes] = []
        for k, v in self.headers.items():
            out.append(k.lower().encode("latin-1"))
            out.append(str(v).encode("latin-1"))
        return out


class Filter:
    """Base class: override the phases you need; the ones you don't cost nothing."""

    def request(self, ctx: "FilterContext") -> Reply | None:
        return None

    def response(self, ctx: "FilterContext") -> None:
        return None


def overrides(instance: Filter, phase: str) -> bool:
    """True when the filter's class defines `phase` itself (the chain only calls those)."""
    method = getattr(type(instance), phase, None)
    return method is not None and method is not getattr(Filter, phase)


class FilterContext:
    """What a filter sees of one exchange. Header names are case-insensitive."""

    __slots__ = ("method", "path", "client_ip", "route", "state", "status",
                 "client_identity", "client_subject",
                 "_request_headers", "_response_headers", "set_request", "remove_request",
                 "set_response", "remove_response")

    def __init__(self, method: str, path: str, client_ip: str, route: str,
                 request_headers: list[tuple[bytes, bytes]]):
        self.method = method
        self.path = path              # with the query; a filter may assign a new one
        self.client_ip = client_ip
        self.route = route
        # mutual TLS: the verified client certificate's SPIFFE ID (URI SAN) and subject
        self.client_identity: str | None = None
        self.client_subject: str | None = None
        self.state: dict[str, Any] = {}
        self.status: int | None = None   # the upstream's status, in the response phase
        self._request_headers = request_headers
        self._response_headers: list[tuple[bytes, bytes]] = []
        self.set_request: dict[str, str] = {}
        self.remove_request: set[str] = set()
        self.set_response: dict[str, str] = {}
        self.remove_response: set[str] = set()

    # -- request headers -------------------------------------------------------------------
    def header(self, name: str, default: str | None = None) -> str | None:
        """The request header `name` as the client sent it (first value), or `default`."""
        return _first(self._request_headers, name, default)

    def headers(self) -> list[tuple[str, str]]:
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self._request_headers]

    def set_header(self, name: str, value: str) -> None:
        """Send `name: value` upstream instead of whatever the client sent."""
        self.set_request[name.lower()] = str(value)

    def remove_header(self, name: str) -> None:
        self.remove_request.add(name.lower())

    # -- response headers (response phase) --------------------------------------------------
    def response_header(self, name: str, default: str | None = None) -> str | None:
        return _first(self._response_headers, name, default)

    def set_response_header(self, name: str, value: str) -> None:
        self.set_response[name.lower()] = str(value)

    def remove_response_header(self, name: str) -> None:
        self.remove_response.add(name.lower())


def _first(headers: Iterable[tuple[bytes, bytes]], name: str, default: str | None) -> str | None:
    want = name.lower().encode("latin-1")
    for k, v in headers:
        if k.lower() == want:
            return v.decode("latin-1")
    return default

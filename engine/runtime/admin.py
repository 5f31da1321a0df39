"""The admin HTTP API (CONFIG.md, "Admin API"), served by the supervisor on `admin.address`.

    GET  /ready              200 "ready" once every worker serves the current snapshot, else 503
    GET  /stats/prometheus   Prometheus text, aggregated over the workers from shared memory
    GET  /config_dump        JSON: active config, version, hash, version per worker, last rejection,
                             configs being validated now
    GET  /clusters           JSON: each cluster's endpoints with weight, health, ejection, health
                             transitions, active requests; the cluster's check and panic state
    PUT  /snapshot           body: a compiled snapshot (msgpack); 200 {"applied": version} when
                             every worker applied it, 400 {"errors": [...]} when refused
    POST /drain              202: start a graceful drain (the process exits once it is done)
    GET  /debug/live         debug build only (404 otherwise): each worker's live objects

Anything else is 404, a known path with another method 405 (with Allow); HEAD works wherever GET
does. A query string is ignored.

Who calls it. The supervisor starts one `AdminServer` on its own event loop before it forks the
workers (so /ready answers 503 while they start) and talks to it only through the `Controller`
protocol below; `SupervisorController` adapts a `Supervisor` to it. The stats are read straight
from the shared memory the workers write (`engine._fast.stats`): a scrape is no IPC.

Security. The API can replace the running config, so it listens on loopback unless the config
names `admin.token` (the model refuses a non-loopback address without one, and so does this
server, for an address given on the command line). With a token, every request must carry
`Authorization: Bearer <token>` (compared in constant time) or gets 401; an unauthenticated
request's body is never read beyond MAX_BODY.

HTTP. h11 over asyncio streams: keep-alive, HEAD, `Expect: 100-continue` (curl sends it for a
large PUT), Content-Length checked before a body is read (413), bodies read with a bound. A
response sent before the request body was read closes the connection.

Staying reachable (security issue, item 8: 128 connections trickling a byte each used to lock
everyone out). A connection is *pending* until it has sent a complete head that is authenticated
(a valid Bearer token; on loopback without a token, any complete valid head), and again while it
idles between keep-alive requests. Pending connections are few (MAX_PENDING) and cheap to lose:
a new connection evicts the oldest pending one when they are full, and a head must be complete
HEAD_TIMEOUT after the connection opened or after its first byte (else 408, or a silent close if
nothing came; an idle keep-alive connection waits IDLE_TIMEOUT for that first byte). Only an
authenticated request counts against MAX_CONNECTIONS (beyond it: 503), and only while it is being
served. A body must arrive whole within REQUEST_TIMEOUT of its head (else 408). A snapshot body is
at most MAX_SNAPSHOT bytes (413 from its Content-Length, before any of it is read, or as soon as
a chunked one passes the limit) and at most MAX_UPLOADS are held at once (503 after waiting
REQUEST_TIMEOUT): the API never holds more than MAX_UPLOADS x MAX_SNAPSHOT of snapshot bodies.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http
import ipaddress
import json
import logging
import os
from typing import TYPE_CHECKING, Any, Protocol

import h11

from engine.runtime import metrics

if TYPE_CHECKING:
    from engine._fast.stats import Stats

log = logging.getLogger("sluice.admin")

MAX_SNAPSHOT = 16 * 1024 * 1024   # PUT /snapshot body (a 10,000-route snapshot is ~2 MiB)
MAX_UPLOADS = 4                   # snapshot bodies held at once
MAX_BODY = 64 * 1024              # any other request's body (read and dropped)
MAX_HEAD = 16 * 1024              # request line + headers
HEAD_TIMEOUT = 5.0                # a whole head, from the connection's start or its first byte
REQUEST_TIMEOUT = 30.0            # a whole body, from the end of its head
IDLE_TIMEOUT = 60.0               # a keep-alive connection with no next request is closed
MAX_CONNECTIONS = 128             # authenticated requests being served at once
MAX_PENDING = 64                  # connections without an authenticated head; the oldest goes

Reply = tuple[int, bytes, bytes]  # status, content type, body

TEXT = b"text/plain; charset=utf-8"
JSON = b"application/json"


class Controller(Protocol):
    """What the admin API needs from the process it administers (the supervisor)."""

    stats: "Stats"            # the shared-memory stats the workers write
    version: str              # the version of the snapshot in force

    def ready(self) -> bool:
        """Every worker serves the current snapshot (and we are not draining)."""

    def config_dump(self) -> dict:
        """Plain data: active config, version, hash, per-worker versions, last rejection."""

    def clusters(self) -> dict:
        """Plain data: each cluster's endpoints with weight, health and active requests."""

    async def apply_snapshot(self, data: bytes) -> tuple[bool, list[str]]:
        """Validate and apply snapshot bytes on every worker: (applied, problems)."""

    def drain(self) -> None:
        """Start a graceful drain."""


# ---- the endpoints, as data ----------------------------------------------------------------------

class _Endpoint:
    __slots__ = ("handler", "max_body")

    def __init__(self, handler: str, max_body: int = MAX_BODY):
        self.handler = handler      # name of an AdminServer method: async (body) -> Reply
        self.max_body = max_body


ENDPOINTS: dict[str, dict[str, _Endpoint]] = {
    "/ready": {"GET": _Endpoint("get_ready")},
    "/stats/prometheus": {"GET": _Endpoint("get_prometheus")},
    "/config_dump": {"GET": _Endpoint("get_config_dump")},
    "/clusters": {"GET": _Endpoint("get_clusters")},
    "/snapshot": {"PUT": _Endpoint("put_snapshot", MAX_SNAPSHOT)},
    "/drain": {"POST": _Endpoint("post_drain")},
    "/debug/live": {"GET": _Endpoint("get_debug_live")},
}


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost`: reachable from this machine only."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower().rstrip(".") == "localhost"


def to_json(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, default=_jsonable).encode() + b"\n"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).decode("utf-8", "replace")
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    dump = getattr(obj, "model_dump", None)
    if dump is not None:
        return dump(mode="json")
    return str(obj)


class AdminServer:
    """AdminServer(controller, host, port, token=None): `await start()`, `await close()`.

    `token` may be changed on a live server (a reload that rotates admin.token)."""

    def __init__(self, controller: Controller, host: str = "127.0.0.1", port: int = 9901,
                 token: str | None = None):
        if token is not None and not token:
            raise ValueError("admin.token is empty")
        if token is None and not is_loopback(host):
            raise ValueError(f"admin address {host}:{port} is not a loopback address: it needs "
                             "admin.token (the admin API can replace the running config)")
        self.controller = controller
        self.host = host
        self.port = port
        self.token = token
        self.server: asyncio.base_events.Server | None = None
        self.conns: set[asyncio.StreamWriter] = set()
        self.pending: dict[asyncio.Task, asyncio.StreamWriter] = {}   # oldest first
        self.active: set[asyncio.Task] = set()         # serving an authenticated request
        self.uploads: asyncio.Semaphore | None = None  # made in the serving loop
        self.registry = metrics.registry_for(controller.stats,
                                             getattr(controller, "buckets", None),
                                             getattr(controller, "reloads", None),
                                             getattr(controller, "tls", None),
                                             getattr(controller, "health", None))

    @classmethod
    def for_config(cls, controller: Controller, admin) -> AdminServer:
        """From the config's `admin` block (engine.policy.model.Admin)."""
        return cls(controller, admin.address.host, admin.address.port, admin.token)

    async def start(self) -> None:
        """Listen; raises OSError when the address cannot be bound."""
        self.uploads = asyncio.Semaphore(MAX_UPLOADS)
        self.server = await asyncio.start_server(self._connection, self.host, self.port,
                                                 reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is None:
            return
        self.server.close()
        for w in list(self.conns):
            w.close()
        await self.server.wait_closed()
        self.server = None

    def close_in_child(self) -> None:
        """In a process forked from the one serving (a worker): close our copies of the
        listening socket and of every open admin connection, without touching the event loop.
        Otherwise the child keeps them open, and a connection the server closes (Connection:
        close, idle timeout) never reaches its client as a FIN."""
        sockets = list(self.server.sockets) if self.server is not None else []
        sockets += [w.get_extra_info("socket") for w in self.conns]
        for sock in sockets:
            try:
                if sock is not None and sock.fileno() >= 0:
                    os.close(sock.fileno())
            except OSError:
                pass

    # ---- one connection --------------------------------------------------------------------

    def _park(self, task: asyncio.Task, writer: asyncio.StreamWriter) -> None:
        """Count `task` as pending (newest); evict the oldest pending connection if full."""
        self.pending[task] = writer
        while len(self.pending) > MAX_PENDING:
            oldest = next(iter(self.pending))
            # close first: a cancellation alone can be lost in asyncio.wait_for (Python < 3.12)
            self.pending.pop(oldest).close()
            oldest.cancel()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        me = asyncio.current_task()
        self.conns.add(writer)
        self._park(me, writer)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        first = True
        try:
            while True:
                event = await _read_head(conn, reader, first)
                first = False
                if not isinstance(event, h11.Request):
                    break
                authed = self._authorized(dict(event.headers).get(b"authorization"))
                if authed:
                    if len(self.active) >= MAX_CONNECTIONS:
                        await _send(conn, writer, 503, TEXT, b"too many admin requests at "
                                    b"once\n", [(b"retry-after", b"1")], close=True)
                        break
                    self.pending.pop(me, None)
                    self.active.add(me)
                try:
                    await self._exchange(conn, reader, writer, event, authed)
                finally:
                    self.active.discard(me)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    break
                conn.start_next_cycle()
                self._park(me, writer)
        except _Timeout as exc:
            if exc.started and conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                try:
                    writer.write(_TIMEOUT_REPLY)
                    await asyncio.wait_for(writer.drain(), 1.0)
                except (ConnectionError, asyncio.TimeoutError):
                    pass
        except h11.RemoteProtocolError as exc:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                try:
                    await _send(conn, writer, exc.error_status_hint, TEXT,
                                b"bad request: %s\n" % str(exc).encode(), close=True)
                except (ConnectionError, h11.LocalProtocolError):
                    pass
        except (asyncio.TimeoutError, ConnectionError, h11.LocalProtocolError):
            pass
        except Exception:      # a bug here must not take the supervisor's loop down
            log.exception("admin connection failed")
        finally:
            self.pending.pop(me, None)
            self.active.discard(me)
            self.conns.discard(writer)
            writer.close()

    async def _exchange(self, conn: h11.Connection, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter, req: h11.Request, authed: bool) -> None:
        method = req.method.decode("ascii", "replace")
        path = req.target.split(b"?", 1)[0].decode("ascii", "replace")
        headers = dict(req.headers)          # h11 lowercases names
        head_only = method == "HEAD"
        loop = asyncio.get_running_loop()
        # the whole body by then; an unauthenticated one (read and dropped) gets less time
        deadline = loop.time() + (REQUEST_TIMEOUT if authed else HEAD_TIMEOUT)

        async def reply(status: int, ctype: bytes, body: bytes, extra=(), *,
                        read_rest: bool = True) -> None:
            # An early answer (401, 404, 405) reads and drops a small body so that the
            # connection can carry the next request; a body not read (too large, or the client
            # waits for 100-continue) closes the connection.
            if (read_rest and conn.their_state is h11.SEND_BODY
                    and not conn.they_are_waiting_for_100_continue):
                await _read_body(conn, reader, MAX_BODY, deadline)
            await _send(conn, writer, status, ctype, body, extra, head_only=head_only,
                        close=conn.their_state is not h11.DONE)

        if not authed:
            await reply(401, TEXT, b"unauthorized: Authorization: Bearer <admin.token> "
                        b"required\n", [(b"www-authenticate", b'Bearer realm="sluice-admin"')])
            return
        methods = ENDPOINTS.get(path)
        if methods is None:
            await reply(404, TEXT, b"not found\n")
            return
        endpoint = methods.get("GET" if head_only else method)
        if endpoint is None:
            allow = sorted(methods) + (["HEAD"] if "GET" in methods else [])
            await reply(405, TEXT, b"method not allowed\n",
                        [(b"allow", ", ".join(allow).encode())])
            return
        length = _content_length(headers.get(b"content-length"))
        if length > endpoint.max_body:
            await reply(413, JSON, to_json({"errors": [
                f"request body of {length} bytes is over the limit of {endpoint.max_body}"]}),
                read_rest=False)
            return
        upload = endpoint.max_body > MAX_BODY and self.uploads is not None
        if upload:
            try:
                await asyncio.wait_for(self.uploads.acquire(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                await reply(503, JSON, to_json({"errors": [
                    f"{MAX_UPLOADS} snapshot uploads are in progress: try again"]}),
                    [(b"retry-after", b"1")], read_rest=False)
                return
        try:
            if conn.they_are_waiting_for_100_continue:
                writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
            body = await _read_body(conn, reader, endpoint.max_body, deadline)
            if body is None:
                await reply(413, JSON, to_json({"errors": [
                    f"request body over the limit of {endpoint.max_body} bytes"]}),
                    read_rest=False)
                return
            try:
                status, ctype, payload = await getattr(self, endpoint.handler)(body)
            except Exception as exc:
                log.exception("admin %s %s failed", method, path)
                status, ctype, payload = 500, JSON, to_json({"errors": [f"internal error: {exc!r}"]})
            del body
        finally:
            if upload:
                self.uploads.release()
        await reply(status, ctype, payload)

    def _authorized(self, value: bytes | None) -> bool:
        """Whether a complete head may be served: always without a token (loopback only)."""
        token = self.token
        if token is None:
            return True
        if value is None:
            return False
        scheme, _, given = value.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(given.strip(), token.encode())

    # ---- handlers: async (request body) -> (status, content type, body) --------------------

    async def get_ready(self, body: bytes) -> Reply:
        if self.controller.ready():
            return 200, TEXT, b"ready\n"
        return 503, TEXT, b"not ready\n"

    async def get_prometheus(self, body: bytes) -> Reply:
        return 200, metrics.CONTENT_TYPE.encode(), metrics.render(self.registry)

    async def get_config_dump(self, body: bytes) -> Reply:
        return 200, JSON, to_json(self.controller.config_dump())

    async def get_clusters(self, body: bytes) -> Reply:
        return 200, JSON, to_json(self.controller.clusters())

    async def put_snapshot(self, body: bytes) -> Reply:
        if not body:
            return 400, JSON, to_json({"errors": ["empty body: PUT a compiled snapshot (the "
                                                  "msgpack file `sluice compile` writes)"]})
        ok, problems = await self.controller.apply_snapshot(body)
        if ok:
            return 200, JSON, to_json({"applied": self.controller.version})
        return 400, JSON, to_json({"errors": list(problems)})

    async def post_drain(self, body: bytes) -> Reply:
        self.controller.drain()
        return 202, JSON, to_json({"draining": True})

    async def get_debug_live(self, body: bytes) -> Reply:
        """The debug build's live-object counters of every worker (engine/_fast/debug.pyx),
        which the test suite checks after each end-to-end test. A release build does not count:
        404, as for a path that does not exist."""
        from engine._fast import debug

        live = getattr(self.controller, "live_objects", None)
        if not debug.DEBUG_BUILD or live is None:
            return 404, TEXT, b"not found: /debug/live is served by a debug build only " \
                              b"(SLUICE_DEBUG=1 pip install -e .)\n"
        return 200, JSON, to_json(live())


def _content_length(value: bytes | None) -> int:
    """h11 has checked the syntax (and refused conflicting values); 0 when absent."""
    try:
        return int(value.split(b",")[0]) if value else 0
    except ValueError:
        return 0


class _Timeout(Exception):
    """A head or body did not arrive in time; `started` when some of it did (then 408)."""

    def __init__(self, started: bool):
        super().__init__("request timeout")
        self.started = started


_TIMEOUT_BODY = b"request timeout\n"
_TIMEOUT_REPLY = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                  b"content-length: %d\r\ncache-control: no-store\r\nconnection: close\r\n\r\n%s"
                  % (len(_TIMEOUT_BODY), _TIMEOUT_BODY))


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader, deadline: float,
                      started: bool = True):
    """The next h11 event, reading until `deadline` (loop time); _Timeout after it."""
    loop = asyncio.get_running_loop()
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise _Timeout(started)
        try:
            data = await asyncio.wait_for(reader.read(65536), remaining)
        except asyncio.TimeoutError:
            raise _Timeout(started) from None
        started = started or bool(data)
        conn.receive_data(data)       # b"" is EOF: h11 answers ConnectionClosed or an error


async def _read_head(conn: h11.Connection, reader: asyncio.StreamReader, first: bool):
    """The next request head (or ConnectionClosed). The first one on a connection must be
    complete within HEAD_TIMEOUT of the accept; a later one may wait IDLE_TIMEOUT for its first
    byte, then has HEAD_TIMEOUT from that byte."""
    loop = asyncio.get_running_loop()
    if first or conn.trailing_data[0]:
        return await _next_event(conn, reader, loop.time() + HEAD_TIMEOUT, started=not first)
    event = conn.next_event()
    if event is not h11.NEED_DATA:
        return event
    try:
        data = await asyncio.wait_for(reader.read(65536), IDLE_TIMEOUT)
    except asyncio.TimeoutError:
        raise _Timeout(False) from None
    conn.receive_data(data)
    return await _next_event(conn, reader, loop.time() + HEAD_TIMEOUT)


async def _read_body(conn: h11.Connection, reader: asyncio.StreamReader,
                     limit: int, deadline: float) -> bytes | None:
    """The request body, or None once it is over `limit` bytes (the rest is left unread);
    _Timeout when it is not complete by `deadline`."""
    body = bytearray()
    while True:
        event = await _next_event(conn, reader, deadline)
        if isinstance(event, h11.Data):
            if len(body) + len(event.data) > limit:
                return None
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return bytes(body)
        else:
            raise ConnectionError("the client went away in the middle of a request body")


async def _send(conn: h11.Connection, writer: asyncio.StreamWriter, status: int, ctype: bytes,
                body: bytes, extra=(), *, head_only: bool = False, close: bool = False) -> None:
    headers = [(b"content-type", ctype), (b"content-length", b"%d" % len(body)),
               (b"cache-control", b"no-store"), *extra]
    if close:
        headers.append((b"connection", b"close"))
    try:
        reason = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        reason = b""
    writer.write(conn.send(h11.Response(status_code=status, headers=headers, reason=reason)))
    if body and not head_only:
        writer.write(conn.send(h11.Data(data=body)))
    writer.write(conn.send(h11.EndOfMessage()))
    await writer.drain()


# ---- the supervisor as a Controller -------------------------------------------------------------

class SupervisorController:
    """Adapts `engine.runtime.supervisor.Supervisor` to `Controller`: reads its state, never
    changes it except through its own apply_snapshot and shutdown."""

    def __init__(self, supervisor):
        self.sup = supervisor
        self._header_for: tuple[str, dict] | None = None    # (version, snapshot header)

    @property
    def stats(self):
        return self.sup.stats

    @property
    def buckets(self):
        return getattr(self.sup, "buckets", None)

    @property
    def reloads(self) -> dict:
        """{"applied": n, "rejected": n} since start (a live dict: read at each scrape)."""
        return self.sup.reloads

    @property
    def tls(self) -> tuple[dict, dict]:
        """(certificate reloads {result: n}, expiry {(listener, file): notAfter}): live dicts."""
        return self.sup.tls_reloads, self.sup.tls_expiry

    @property
    def version(self) -> str:
        return self.sup.version

    def ready(self) -> bool:
        return self.sup.ready()

    async def apply_snapshot(self, data: bytes) -> tuple[bool, list[str]]:
        return await self.sup.apply_snapshot(data, "admin PUT /snapshot")

    def drain(self) -> None:
        self.sup.shutdown()

    def _header(self) -> dict:
        sup = self.sup
        if self._header_for is None or self._header_for[0] != sup.version:
            try:
                header, _ = sup.load_snapshot(sup.snapshot)
            except Exception:       # it loaded when it was applied; never fail a dump over it
                header = {}
            if hasattr(header, "as_dict"):          # engine.policy.snapshot.SnapshotHeader
                header = header.as_dict()
            self._header_for = (sup.version, header if isinstance(header, dict) else {})
        return self._header_for[1]

    def live_objects(self) -> dict:
        """GET /debug/live: the live-object records of the workers running now (a record of a
        worker that exited stays in shared memory until its slot is reused), and their sum."""
        from engine._fast import debug

        running = {(h.slot, h.pid) for h in self.sup.handles.values()}
        workers = [w for w in debug.workers() if (w["slot"], w["pid"]) in running]
        total = {kind: sum(w["live"][kind] for w in workers) for kind in debug.KINDS}
        return {"version": self.sup.version, "workers": workers, "total": total}

    def config_dump(self) -> dict:
        from engine._fast.stats import monotonic

        sup = self.sup
        header = self._header()
        beats = {w["slot"]: w for w in sup.stats.workers()}
        now = monotonic()
        workers = []
        for h in sorted(sup.handles.values(), key=lambda h: h.slot):
            beat = beats.get(h.slot, {}).get("heartbeat") or 0.0
            workers.append({
                "slot": h.slot, "pid": h.pid, "version": h.version, "ready": h.ready,
                "current": h.version == sup.version,
                "heartbeat_age": round(now - beat, 3) if beat > 0 else None,
            })
        return {
            "version": sup.version,
            "hash": (header.get("sha256") or header.get("hash")
                     or hashlib.sha256(sup.snapshot).hexdigest()),
            "source": sup.source,
            "applied_at": sup.applied_at,
            "header": header,
            "ready": sup.ready(),
            "draining": sup.stopping,
            "workers": workers,
            "last_rejection": sup.last_rejection,
            "validating": list(getattr(sup, "validating", ())),
            "config": plain_config(sup.config),
        }

    def health(self) -> dict:
        """engine.runtime.health.report() of the config served: endpoint health, ejections,
        panic (read live at each scrape)."""
        from engine.runtime.health import report

        sup = self.sup
        prober = getattr(sup, "health", None)
        return report(sup.config, sup.stats, sup.endpoints,
                      prober.results if prober is not None else None)

    def clusters(self) -> dict:
        from engine._fast.stats import endpoint_key

        sup = self.sup
        agg = sup.stats.aggregate()
        seen = agg["endpoints"]
        health = self.health()
        out = {}
        for c in sup.config.clusters:
            eps = []
            state = health[c.name]
            for ep in c.endpoints:
                s = seen.get(endpoint_key(c.name, ep.address), {})
                h = state["endpoints"][str(ep.address)]
                eps.append({
                    "address": str(ep.address),
                    "weight": ep.weight,
                    # unknown: not checked (no health_check) or no verdict yet; routable
                    "health": h["health"],
                    "ejected": h["ejected"],
                    "health_transitions": {"healthy": h["to_healthy"],
                                           "unhealthy": h["to_unhealthy"]},
                    "ejections": h["ejections"],
                    "health_checks": h["checks"],
                    "active_requests": s.get("active", 0),
                    "requests": s.get("requests", 0),
                    "connect_failures": s.get("connect_failures", 0),
                    "resets": s.get("resets", 0),
                })
            out[c.name] = {"balancer": c.balancer, "health_check": state["health_check"],
                           "panic_threshold": state["panic_threshold"],
                           "panic": state["panic"],
                           **_breaker_state(c, agg["clusters"].get(c.name)),
                           "endpoints": eps}
        return {"version": sup.version, "clusters": out}


def _breaker_state(cluster, counted: dict | None) -> dict:
    """/clusters' circuit-breaker and retry view of one cluster: its limits, what is in
    flight now (all workers), what was shed, and the retries made by reason."""
    from engine._fast.stats import RETRY_REASONS

    ev = (counted or {}).get("events", {})
    cb = cluster.circuit_breakers
    budget = cluster.retry_budget
    return {
        "circuit_breakers": {
            "max_requests": cb.max_requests, "max_retries": cb.max_retries,
            "max_connections": cluster.pool.max_connections,
            "max_pending": cluster.pool.max_pending,
            "active_requests": (counted or {}).get("active_requests", 0),
            "active_retries": (counted or {}).get("active_retries", 0),
            "overflows": {"requests": ev.get("overflow_requests", 0),
                          "pending": ev.get("overflow_pending", 0),
                          "retries": ev.get("retry_overflow", 0)},
        },
        "retry_budget": (None if budget is None else
                         {"percent": budget.percent, "min_concurrency": budget.min_concurrency}),
        "retries": {reason: ev.get("retry_" + reason, 0) for reason in RETRY_REASONS},
    }


def plain_config(config) -> dict:
    """The config as JSON-ready data, admin.token redacted."""
    dump = getattr(config, "model_dump", None)
    data = dump(mode="json") if dump is not None else json.loads(to_json(config))
    admin = data.get("admin") if isinstance(data, dict) else None
    if isinstance(admin, dict) and admin.get("token") is not None:
        admin["token"] = "<redacted>"
    return data

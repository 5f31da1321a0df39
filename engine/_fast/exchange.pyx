# cython: language_level=3
"""`Exchange`: one request's state and policy, knowing nothing of framing.

Theory of operation
-------------------
A codec turns bytes into a request head (a `HeaderBlock` plus method, target and authority) and
hands it to an Exchange; from there the policy is the same whatever the client spoke: host and
path as routed (semantics.pyx, paths.pyx), the router, limits, request filters, a cluster and an
endpoint, the forwarded headers as (name, value) edits, a lease on an upstream stream
(pool.acquire), response filters, and one exit, `finish()`, that writes the stats and the access
log and hands the codec back its connection or stream. What goes on the wire is the codec's
business (`Downstream.send_*` on the client side, `UpstreamConn.send_*` upstream), and every
answer the proxy gives itself comes from one row of the error table (errors.pyx).

States (X_*, exchange.pxd) and the only transitions there are::

                  route, limits, filters, direct reply, errors
       +--------+ ----------------------------------------------> +--------+
       |  IDLE  |                                                 | LOCAL  |---+
       +--------+ --+  a cluster and endpoint picked              +--------+   |
          ^  ^  ^   |                                              ^  ^  ^     |
          |  |  |   v                 pool overflow, connect error |  |  |     |
          |  |  | +---------+ -------------------------------------+  |  |     |
          |  |  +-| WAITING | <-----------------+ retry on a fresh    |  |     |
          |  |    +---------+                   | connection          |  |     |
          |  |      | lease granted             |                     |  |     |
          |  |      v                           |   broke before a    |  |     |
          |  |    +-----------+ ----------------+   response, timeout |  |     |
          |  +----| PROXYING  | ------------------------------------+  |     |
          |       +-----------+ --------+ response done, body      |     |
          |        | 101                |   still arriving          |     |
          |        v                    v                           |     |
          |     +--------+         +-----------+  timeout           |     |
          +-----| TUNNEL |         | BODY_WAIT | -------------------+     |
          |     +--------+         +-----------+                          |
          +-----------------------------+------------------- finish ------+

Every state but IDLE returns to IDLE through `finish()` only; LOCAL is also re-entered when a
late error (a timeout) answers an exchange that was already answering locally. `go()` checks
each transition against `ALLOWED`; anything else raises `TransitionError`: a bug, and the test
suite fails loudly on it.

The exchange object of an HTTP/1.1 connection is reused for each of its requests (`begin()`
resets it); HTTP/2 will take one per stream from the freelist.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport uint64_t, uint8_t
from libc.string cimport memcpy, memcmp

from engine._fast.accesslog cimport AccessLog, LogEntry, LOG_COMBINED
from engine._fast.balancer cimport Balancer
from engine._fast.debug cimport live_add, LIVE_EXCHANGE
from engine._fast.endpoints cimport (
    Endpoints, EP_OUTCOME_OK, EP_OUTCOME_5XX, EP_OUTCOME_GATEWAY,
)
from engine._fast.errors cimport (
    ErrorRow, error_row, error_body, E_NONE, E_BAD_HOST, E_BAD_PATH, E_NO_ROUTE, E_RATE_LIMITED,
    E_FILTER_ERROR, E_NO_HEALTHY_UPSTREAM, E_POOL_OVERFLOW, E_NO_FDS, E_CONNECT_FAILED,
    E_UPSTREAM_RESET, E_UPSTREAM_TIMEOUT, E_CLIENT_CLOSED, E_BAD_REQUEST, E_BAD_RESPONSE,
    E_OVERLOADED, E_CIRCUIT_OPEN, E_FAULT_ABORT,
)
from engine._fast.http1 cimport BODY_NONE, BODY_LENGTH, BODY_CHUNKED
from engine._fast.grpcwire cimport (
    G_NONE, G_PLAIN, G_WEB_TEXT, grpc_kind, timeout_of, status_of_http, message,
    response_content_type, upstream_content_type, trailer_message, trailer_pairs,
    TextDecoder, TextEncoder,
)
from engine._fast.headers cimport (
    HeaderBlock, H_X_FORWARDED_FOR, H_X_FORWARDED_PROTO, H_X_FORWARDED_HOST, H_X_REQUEST_ID,
    H_HOST, H_UPGRADE, H_X_FORWARDED_CLIENT_CERT, HF_DROP,
)
from engine._fast.limiter cimport TakeResult, format_headers, monotonic_now
from engine._fast.mirror cimport start_mirror, mirror_data, mirror_end, mirror_abort, mirror_recorded
from engine._fast.paths cimport path_normalized_bytes, path_error_text
from engine._fast.pool cimport Pool, PooledConn, LEASE_NOW, LEASE_OPEN, LEASE_PARKED, LEASE_FULL
from engine._fast.semantics cimport route_host_into, rewrite_prefix, cookie_value, MAX_HOST
from engine._fast.tls cimport peer_identity
from engine._fast.stats cimport (
    Stats, ST_GAUGE_REQUESTS, ST_EV_UPSTREAM_EXTRA_DATA, ST_EV_ACCEPT_FAILED, ST_EV_OVERLOAD_SHED,
    ST_CE_RETRY_CONNECT_FAILURE, ST_CE_RETRY_RESET, ST_CE_RETRY_PER_TRY_TIMEOUT,
    ST_CE_RETRY_REFUSED_STREAM, ST_CE_RETRY_GATEWAY_ERROR, ST_CE_RETRY_5XX, ST_CE_RETRY_STATUS,
    ST_CE_RETRY_OVERFLOW, ST_CE_RETRY_SUCCESS, ST_CE_OVERFLOW_REQUESTS, ST_CE_OVERFLOW_PENDING,
    ST_CE_PER_TRY_TIMEOUT,
)
from engine._fast.tables cimport (
    Tables, Listener, Route, Cluster, Endpoint,
    LIMIT_PER_ROUTE, LIMIT_PER_CLIENT_IP, LIMIT_PER_HEADER,
    HASH_HEADER, HASH_CLIENT_IP, HASH_COOKIE, XFCC_SANITIZE_SET, XFCC_FORWARD_ONLY,
    RETRY_CONNECT_FAILURE, RETRY_RESET, RETRY_GATEWAY_ERROR, RETRY_5XX, RETRY_STATUS,
    RETRY_REFUSED_STREAM,
)

import errno
import os

DEF PENDING_BODY_LIMIT = 1048576     # request body held while the upstream connects
DEF WARN_INTERVAL = 10.0             # seconds between two log lines about the same thing
DEF REPLAY_LIMIT = 65536             # request body kept for a retry; a longer one is not retried

cdef frozenset IDEMPOTENT = frozenset([b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"])

cdef bytes N_HOST = b"host"
cdef bytes N_XFF = b"x-forwarded-for"
cdef bytes N_XFP = b"x-forwarded-proto"
cdef bytes N_XFH = b"x-forwarded-host"
cdef bytes N_RID = b"x-request-id"
cdef bytes N_XFCC = b"x-forwarded-client-cert"
cdef bytes N_CONNECTION = b"connection"
cdef bytes N_UPGRADE = b"upgrade"
cdef bytes V_HTTP = b"http"
cdef bytes V_HTTPS = b"https"
cdef bytes V_UPGRADE = b"upgrade"
cdef bytes N_CONTENT_TYPE = b"content-type"
cdef bytes N_CONTENT_LENGTH = b"content-length"
cdef bytes N_GRPC_TIMEOUT = b"grpc-timeout"
cdef bytes N_GRPC_STATUS = b"grpc-status"
cdef bytes N_GRPC_MESSAGE = b"grpc-message"
cdef bytes N_TE = b"te"
cdef bytes N_ATTEMPT = b"x-sluice-attempt"
cdef bytes N_OVERLOADED = b"x-sluice-overloaded"
cdef bytes V_TRUE = b"true"
cdef bytes V_TRAILERS = b"trailers"


# --- the transition table ---------------------------------------------------------------------

cdef int ALLOWED[X_NSTATES]        # bit `to` of ALLOWED[from]: the transition exists

cdef void _allow(int frm, tuple tos) noexcept:
    cdef int to
    for to in tos:
        ALLOWED[frm] |= 1 << to

_allow(X_IDLE, (X_LOCAL, X_WAITING))
_allow(X_LOCAL, (X_IDLE, X_LOCAL))
_allow(X_WAITING, (X_PROXYING, X_LOCAL, X_IDLE))
_allow(X_PROXYING, (X_WAITING, X_LOCAL, X_TUNNEL, X_BODY_WAIT, X_IDLE))
_allow(X_TUNNEL, (X_IDLE,))
_allow(X_BODY_WAIT, (X_LOCAL, X_IDLE))

STATE_NAMES = ("IDLE", "LOCAL", "WAITING", "PROXYING", "TUNNEL", "BODY_WAIT")


class TransitionError(RuntimeError):
    """An exchange was asked to move along an edge the table does not have: a bug."""


def transitions():
    """The table as {from: {to, ...}} by state name (tests, docs)."""
    cdef int f, t
    return {STATE_NAMES[f]: {STATE_NAMES[t] for t in range(X_NSTATES) if ALLOWED[f] >> t & 1}
            for f in range(X_NSTATES)}


# --- request ids: UUIDv4 text from a per-process PRNG (no syscall, no Python objects) ---------
cdef uint64_t _rng_state = 0

cdef inline uint64_t _splitmix() noexcept:
    global _rng_state
    _rng_state += <uint64_t>0x9E3779B97F4A7C15
    cdef uint64_t z = _rng_state
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EB
    return z ^ (z >> 31)

def reseed_request_ids():
    """Called in each worker after fork so that workers never share a sequence."""
    global _rng_state
    _rng_state = int.from_bytes(os.urandom(8), "little")

reseed_request_ids()

cdef const char* HEXD = b"0123456789abcdef"

cdef bytes new_request_id():
    """A UUIDv4 as 36 bytes of text, in one allocation."""
    cdef uint64_t a = _splitmix(), b = _splitmix()
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 36)
    cdef char* p = PyBytes_AS_STRING(out)
    cdef int i, j = 0
    cdef uint8_t byte
    a = (a & <uint64_t>0xFFFFFFFFFFFF0FFF) | <uint64_t>0x4000         # version 4
    b = (b & <uint64_t>0x3FFFFFFFFFFFFFFF) | <uint64_t>0x8000000000000000  # variant 10
    for i in range(16):
        byte = <uint8_t>((a >> (56 - 8 * i)) if i < 8 else (b >> (56 - 8 * (i - 8))))
        if i == 4 or i == 6 or i == 8 or i == 10:
            p[j] = b'-'
            j += 1
        p[j] = HEXD[byte >> 4]
        p[j + 1] = HEXD[byte & 15]
        j += 2
    return out


def request_id_for_tests():
    return new_request_id()


cdef inline double uniform() noexcept:
    """A uniform draw in [0, 1) from the same per-process generator (backoff jitter, fault
    and mirror percentages)."""
    return <double>(_splitmix() >> 11) * (1.0 / 9007199254740992.0)


cdef bint chance(double percent) noexcept:
    """True for `percent` of the calls (0..100)."""
    if percent >= 100.0:
        return True
    if percent <= 0.0:
        return False
    return uniform() * 100.0 < percent


cdef inline bint valid_request_id(const char* s, Py_ssize_t n) noexcept:
    """A client's X-Request-Id is kept when it is 1..128 of [A-Za-z0-9._:-]."""
    cdef Py_ssize_t i
    cdef char c
    if n < 1 or n > 128:
        return False
    for i in range(n):
        c = s[i]
        if not ((c >= b'a' and c <= b'z') or (c >= b'A' and c <= b'Z') or
                (c >= b'0' and c <= b'9') or c == b'-' or c == b'_' or c == b'.' or c == b':'):
            return False
    return True


cdef bytes without_h2c(bytes value):
    """An Upgrade value without its h2c tokens: we do not do the h2c upgrade, and an upstream
    that did would take the connection out of our hands (h2c smuggling)."""
    if b"h2c" not in value.lower():
        return value
    return b", ".join([t.strip() for t in value.split(b",")
                       if t.strip() and t.strip().lower() != b"h2c"])


cdef int grpc_status_of(bytes trailers, int default):
    """The grpc-status in raw trailer lines (b"grpc-status: 0\\r\\n..."), or `default`."""
    for line in trailers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"grpc-status" and value.strip().isdigit():
            return int(value.strip())
    return default


cdef list header_pairs(bytes lines):
    """b"a: 1\\r\\nb: 2\\r\\n" -> [b"a", b"1", b"b", b"2"] (the limiter formats lines)."""
    cdef list out = []
    for line in lines.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b":")
            out.append(name.strip())
            out.append(value.strip())
    return out


# --- what the exchange talks to ---------------------------------------------------------------

cdef class Services:
    def __init__(self):
        self.warned = {}

    cdef bint warn(self, key, str msg, double interval=WARN_INTERVAL) except -1:
        """Log `msg` unless the same `key` was logged in the last `interval` seconds: a
        failing endpoint or a flood must not turn the log into the bottleneck."""
        cdef double now = monotonic_now()
        last = self.warned.get(key)
        if last is not None and now - <double>last < interval:
            return False
        self.warned[key] = now
        if len(self.warned) > 4096:
            self.warned.clear()
        if self.log_error is not None:
            self.log_error(msg)
        return True

    cdef void count(self, int event) noexcept:
        if self.stats is not None:
            self.stats.count_event(self.stats_worker, event)

    cdef void upstream_extra_data(self, Pool pool) except *:
        """A response was followed by bytes nobody asked for (more than its Content-Length, a
        body after HEAD/204/304, a second response): the connection is closed, never pooled,
        or the next client on it would read them as its own response."""
        self.count(ST_EV_UPSTREAM_EXTRA_DATA)
        self.warn(("extra", pool.address),
                  "upstream %s sent more data than its response: connection closed, not reused"
                  % pool.address.decode())

    cdef void upstream_failed(self, Pool pool, int ep_slot, bint reset, str why) except *:
        """An upstream connection failed to open (reset=False) or broke before its response
        was complete: counted per endpoint, logged at most once a second per endpoint."""
        if self.stats is not None:
            self.stats.endpoint_failed(self.stats_worker, ep_slot, reset)
        self.warn((reset, pool.address), "upstream %s: %s" % (pool.address.decode(), why), 1.0)

    cdef void open_upstream(self, Exchange x, Pool pool) except *:
        raise NotImplementedError


cdef class Downstream:
    cdef void send_local(self, Exchange x, int status, bytes body, list headers, bint close) except *:
        raise NotImplementedError
    cdef void send_direct(self, Exchange x, Route r) except *:
        raise NotImplementedError
    cdef void send_interim(self, Exchange x, int status) except *:
        raise NotImplementedError
    cdef void send_head(self, Exchange x, HeaderBlock h, int status, int body_kind,
                        list edits) except *:
        raise NotImplementedError
    cdef void send_data(self, Exchange x, bytes chunk) except *:
        raise NotImplementedError
    cdef void send_end(self, Exchange x, bytes trailers) except *:
        raise NotImplementedError
    cdef void start_tunnel(self, Exchange x, UpstreamConn up) except *:
        raise NotImplementedError
    cdef void broken(self, Exchange x) except *:
        raise NotImplementedError
    cdef void exchange_done(self, Exchange x) except *:
        raise NotImplementedError
    cdef void pause_client(self, Exchange x, int why) except *:
        pass
    cdef void resume_client(self, Exchange x, int why) except *:
        pass
    cdef void flush(self) except *:
        pass
    cdef void check_timeouts(self, double now) except *:
        pass
    cdef void drain_close(self) except *:
        pass

    cdef void identify(self, object transport) except *:
        cdef Listener l = self.listener
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is not None:
            # our own URI from the front context: it follows a certificate rotation, the
            # linked l.tls_uri only the last config reload
            self.peer_uri, self.peer_subject, self.xfcc_value = peer_identity(
                sslobj, getattr(l.ssl_context, "own_uri", l.tls_uri))


cdef class UpstreamConn(PooledConn):
    cdef void send_request(self, Exchange x) except *:
        raise NotImplementedError
    cdef void send_data(self, Exchange x, bytes chunk) except *:
        raise NotImplementedError
    cdef void send_pending(self, Exchange x, list chunks) except *:
        raise NotImplementedError
    cdef void send_end(self, Exchange x, bytes trailers) except *:
        raise NotImplementedError
    cdef void release(self, Exchange x, bint reusable) except *:
        raise NotImplementedError
    cdef void pause_reading(self) except *:
        if self.transport is not None and not self.paused_reading:
            self.paused_reading = True
            self.transport.pause_reading()
    cdef void resume_reading(self) except *:
        if self.transport is not None and self.paused_reading:
            self.paused_reading = False
            self.transport.resume_reading()


# --- the exchange ------------------------------------------------------------------------------

@cython.final
@cython.freelist(64)
cdef class Exchange:

    def __cinit__(self):
        live_add(LIVE_EXCHANGE, 1)

    def __dealloc__(self):
        live_add(LIVE_EXCHANGE, -1)

    def __init__(self, Services svc):
        self.svc = svc
        self.state = X_IDLE

    @property
    def state_name(self):
        return STATE_NAMES[self.state]

    def step(self, str to):
        """go() by state name, for the transition-table tests."""
        self.go(STATE_NAMES.index(to))

    cdef void go(self, int to) except *:
        if not (ALLOWED[self.state] >> to) & 1:
            raise TransitionError("exchange %s -> %s is not in the transition table"
                                  % (STATE_NAMES[self.state], STATE_NAMES[to]))
        self.state = to

    # --- begin -------------------------------------------------------------------------------

    cdef void begin(self, Downstream ds, HeaderBlock req, double now) except *:
        """A request head arrived on `ds`; the codec sets method, path, authority and the body
        facts next, then calls route_request()."""
        if self.state != X_IDLE:
            raise TransitionError("exchange begins in state %s" % STATE_NAMES[self.state])
        self.ds = ds
        self.tables = ds.tables
        self.listener = ds.listener
        self.req = req
        self.head_valid = req is not None
        self.route = None
        self.cluster = None
        self.pool = None
        self.up = None
        self.fctx = None
        self.edits = None
        self.target = None
        self.path = None
        self.path_changed = False
        self.authority = None
        self.request_id = None
        self.method = None
        self.pending = None
        self.pending_size = 0
        self.pending_end = False
        self.pending_trailers = None
        self.retried = False
        self.attempt = 0
        self.tried = 0
        self.replay = None
        self.replay_size = 0
        self.replay_trailers = None
        self.route_deadline = 0
        self.try_deadline = 0
        self.attempt_edit = -1
        self.codec_edits = None
        self.req_body_sent = False
        self.grpc = G_NONE
        self.grpc_type = None
        self.grpc_timeout = 0
        self.grpc_status = -1
        self.web_in = None
        self.web_out = None
        self.web_body = False
        self.req_done = False
        self.resp_started = False
        self.logged = False
        self.status = 0
        self.outcome = E_NONE
        self.bytes_in = 0
        self.bytes_out = 0
        self.t0 = now
        self.t_attach = 0
        self.deadline = 0
        self.req_body_kind = 0
        self.req_has_body = False
        self.method_head = False
        self.expect_continue = False
        self.upgrade = False
        self.mirror = None
        self.shadow = False
        if self.svc.stats is not None and not self.counted:
            self.counted = True
            self.svc.stats.add_gauge(self.svc.stats_worker, ST_GAUGE_REQUESTS, 1)

    cdef void begin_for_error(self, Downstream ds, double now) except *:
        """An exchange for an error before (or instead of) a usable head: logged as "- -"."""
        self.begin(ds, None, now)
        self.method = b"-"
        self.path = b"-"

    # --- policy: route, admit, filters, pick ------------------------------------------------

    cdef void route_request(self, const char* path, Py_ssize_t pl, const char* hp,
                            Py_ssize_t hl) except *:
        """Route the request whose target is path[:pl] (origin-form, query included) and whose
        host is hp[:hl] (Host or the absolute-form authority), then answer or proxy it."""
        cdef Listener l = self.listener
        cdef HeaderBlock h = self.req
        cdef char hostbuf[MAX_HOST + 1]
        cdef Py_ssize_t q
        cdef int idx, perr = 0
        cdef bytes normal, target
        cdef Route route
        cdef TakeResult tr

        if (h is not None and PyBytes_GET_SIZE(self.method) == 4
                and memcmp(PyBytes_AS_STRING(self.method), b"POST", 4) == 0):
            self.detect_grpc(h)        # gRPC calls are POSTs: nothing else pays for the lookup
        hl = route_host_into(hp, hl, hostbuf)
        if hl < 0:
            if self.path is None:
                self.path = PyBytes_FromStringAndSize(path, pl)
            self.local_error(E_BAD_HOST, b"host too long\n", True)
            return
        q = 0
        while q < pl and path[q] != b'?':
            q += 1
        # the path as the listener normalises it (paths.pyx): routed and forwarded as such, so
        # /%61dmin or /x/../admin cannot pass a /admin route by another spelling
        normal = path_normalized_bytes(path, q, l.path_flags, &perr)
        if normal is not None:
            target = normal + PyBytes_FromStringAndSize(path + q, pl - q) if q < pl else normal
            self.path = target
            self.path_changed = True
            path = PyBytes_AS_STRING(target)
            pl = PyBytes_GET_SIZE(target)
            q = PyBytes_GET_SIZE(normal)
        elif perr < -1:
            if self.path is None:
                self.path = PyBytes_FromStringAndSize(path, pl)
            self.local_error(E_BAD_PATH, b"bad path: " + path_error_text(perr) + b"\n", True)
            return
        idx = l.router.match(hostbuf, hl, path, q, PyBytes_AS_STRING(self.method),
                             PyBytes_GET_SIZE(self.method), h, self.ds.peer_uri)
        if self.path is None:
            self.path = PyBytes_FromStringAndSize(path, pl)
        if idx < 0:
            self.local_error(E_NO_ROUTE, None, False)
            return
        route = <Route>l.routes[idx]
        self.route = route
        if self.svc.overloaded:
            # the event loop lags (engine/runtime/overload.py): shed before any work
            self.svc.count(ST_EV_OVERLOAD_SHED)
            self.local_error(E_OVERLOADED, None, False)
            return

        if route.limiter is not None:
            if not self.admit(route, &tr):
                if self.svc.stats is not None:
                    self.svc.stats.route_limited(self.svc.stats_worker, route.stats_slot)
                self.outcome = E_RATE_LIMITED
                self.local(error_row(E_RATE_LIMITED).status, error_body(E_RATE_LIMITED),
                           header_pairs(format_headers(&tr, route.limiter.burst)), False)
                return

        if route.req_filters is not None and self.request_filters(route):
            return
        if route.direct:
            self.go(X_LOCAL)
            self.resp_started = True
            self.status = route.direct_status
            self.ds.send_direct(self, route)
            if self.req_done:
                self.finish()
            return
        self.start_proxy(route)

    cdef void detect_grpc(self, HeaderBlock h) except *:
        cdef bytes ct = h.get(N_CONTENT_TYPE)
        cdef int kind = grpc_kind(ct)
        if kind != G_NONE:
            self.grpc = kind
            self.grpc_type = ct
            self.grpc_timeout = timeout_of(h.get(N_GRPC_TIMEOUT))

    cdef bint admit(self, Route route, TakeResult* tr) except -1:
        cdef bytes key
        cdef object v
        if route.limit_per == LIMIT_PER_CLIENT_IP:
            key = self.ds.client_ip
        elif route.limit_per == LIMIT_PER_HEADER:
            v = self.req.get(route.limit_header)
            key = v if v is not None else b""
        else:
            key = b""
        return route.limiter.take(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key),
                                  monotonic_now(), tr) == 1

    cdef object filter_ctx(self):
        if self.fctx is None:
            self.fctx = self.svc.filter_context(
                self.method.decode("latin-1"), self.path.decode("latin-1"),
                self.ds.client_ip.decode("latin-1"), self.route.name, self.req.headers)
            if self.ds.peer_uri is not None or self.ds.peer_subject is not None:
                self.fctx.client_identity = (self.ds.peer_uri.decode("latin-1")
                                             if self.ds.peer_uri is not None else None)
                self.fctx.client_subject = (self.ds.peer_subject.decode("latin-1")
                                            if self.ds.peer_subject is not None else None)
        return self.fctx

    cdef void filter_failed(self, f, str phase, exc) except *:
        """Counted per route (sluice_filter_errors_total); logged at most once per filter,
        phase and route every WARN_INTERVAL, so a filter failing on every request does not
        flood the log."""
        if self.svc.stats is not None:
            self.svc.stats.route_filter_failed(self.svc.stats_worker, self.route.stats_slot)
        self.svc.warn(("filter", type(f), phase, self.route.name),
                      "filter %s.%s failed on route %s: %r"
                      % (type(f).__name__, phase, self.route.name, exc))

    cdef bint request_filters(self, Route route) except -1:
        """Run the route's request phases; True when one of them answered locally."""
        ctx = self.filter_ctx()
        for f in route.req_filters:
            try:
                reply = f.request(ctx)
            except Exception as exc:
                self.filter_failed(f, "request", exc)
                self.local_error(E_FILTER_ERROR, None, False)
                return True
            if reply is not None:
                self.local(reply.status, reply.body, reply.header_pairs(), False)
                return True
        return False

    cdef void filter_edits(self, HeaderBlock h, dict set_, set remove, list edits) except *:
        """Drop the headers a filter set or removed, and add what it set to `edits`."""
        for n in remove:
            h.drop(n.encode("latin-1"))
        for k, v in set_.items():
            h.drop(k.encode("latin-1"))
            edits.append(k.encode("latin-1"))
            edits.append(v.encode("latin-1"))

    cdef void start_proxy(self, Route route) except *:
        """Fault injection first (Envoy's fault filter sits before the router), then the
        upstream. A request the route may retry keeps its body for replay from here on."""
        if route.retry_attempts > 0 and self.method in route.retry_methods:
            self.replay = []
        if route.fault and self.inject_fault(route, False):
            return
        self.proxy_to(route)

    cdef bint inject_fault(self, Route route, bint delayed) except -1:
        """routes[].fault: True when it took the exchange over (a delay timer runs, or it was
        answered). As Envoy: the delay first, then the abort, each drawn with its percent."""
        cdef Stats st = self.svc.stats
        if route.fault_header is not None and self.req.get(route.fault_header) is None:
            return False
        if not delayed and route.fault_delay > 0 and chance(route.fault_delay_percent):
            if st is not None:
                st.route_fault(self.svc.stats_worker, route.stats_slot, False)
            self.go(X_WAITING)
            self.timer = self.svc.loop.call_later(route.fault_delay, self.fault_delay_over)
            return True
        if ((route.fault_abort_status > 0 or route.fault_abort_grpc >= 0)
                and chance(route.fault_abort_percent)):
            if st is not None:
                st.route_fault(self.svc.stats_worker, route.stats_slot, True)
            self.drop_pending()
            self.outcome = E_FAULT_ABORT
            if route.fault_abort_grpc >= 0 and self.grpc == G_NONE:
                # a gRPC status to a client that did not say gRPC: still the gRPC form, as Envoy
                self.grpc = G_PLAIN
                self.grpc_type = b"application/grpc"
            self.local(route.fault_abort_status if route.fault_abort_status > 0 else 200,
                       error_body(E_FAULT_ABORT), None, False)
            return True
        return False

    def fault_delay_over(self):
        """The fault delay passed: the abort draw, then the upstream."""
        self.timer = None
        if self.state != X_WAITING or self.up is not None or self.route is None:
            return
        if not self.inject_fault(self.route, True):
            self.proxy_to(self.route)
        self.ds.flush()

    cdef void drop_pending(self) except *:
        """The request body held for an upstream will not be sent: free it, read on."""
        if self.pending is not None:
            self.pending = None
            self.pending_size = 0
            self.ds.resume_client(self, PAUSE_PENDING)
        self.pending_end = False
        self.pending_trailers = None

    cdef int pick_endpoint(self) except -2:
        """An endpoint of self.cluster for this try (-1: none available). A retry skips the
        endpoints already tried when the balancer offers another within three draws (a hash
        key gives way to a plain pick then)."""
        cdef Cluster cluster = self.cluster
        cdef HeaderBlock h = self.req
        cdef bytes key = None
        cdef int ei, draws = 0, n
        cdef unsigned long long every
        if self.tried != 0:           # a retry (the first pick skips this)
            n = len(cluster.endpoints)
            every = (<unsigned long long>0xFFFFFFFFFFFFFFFF if n >= 64
                     else ((<unsigned long long>1) << n) - 1)
            if self.tried & every == every:
                self.tried = 0        # every one was tried: the balancer's own order again
        if cluster.hash_kind == HASH_HEADER:
            key = h.get(cluster.hash_name)
        elif cluster.hash_kind == HASH_CLIENT_IP:
            key = self.ds.client_ip
        elif cluster.hash_kind == HASH_COOKIE:
            key = cookie_value(h.get(b"cookie"), cluster.hash_name)
        while True:
            if key is not None:
                ei = cluster.balancer.pick(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))
            else:
                ei = cluster.balancer.pick(NULL, 0)
            if ei < 0 or ei >= 64 or not (self.tried >> ei) & 1 or draws >= 3:
                break
            draws += 1
            key = None
        if ei < 0:
            return -1
        if ei < 64:
            self.tried |= (<unsigned long long>1) << ei
        self.ep_index = ei
        self.ep_slot = (<Endpoint>cluster.endpoints[ei]).stats_slot
        self.pool = <Pool>(<Endpoint>cluster.endpoints[ei]).pool
        return ei

    cdef void proxy_to(self, Route route) except *:
        cdef HeaderBlock h = self.req
        cdef Downstream ds = self.ds
        cdef Listener l = self.listener
        cdef Cluster cluster
        cdef Stats st = self.svc.stats
        cdef int ci, i, hid
        cdef bytes xff, rid, target
        cdef object v
        cdef const char* head = PyBytes_AS_STRING(h.head)
        cdef list edits

        # pick the cluster (traffic split), then the endpoint
        if route.split is not None:
            ci = route.split.pick(NULL, 0)
            cluster = <Cluster>route.clusters[ci]
        else:
            cluster = <Cluster>route.clusters[0]
        self.cluster = cluster
        if st is not None and cluster.stats_slot >= 0:
            # circuit_breakers.max_requests, node-wide (every worker's count of the cluster)
            if st.cluster_active(cluster.stats_slot, False) >= cluster.max_requests:
                st.cluster_event(self.svc.stats_worker, cluster.stats_slot,
                                 ST_CE_OVERFLOW_REQUESTS)
                self.drop_pending()
                self.local_error(E_CIRCUIT_OPEN, None, False)
                return
            st.cluster_begin(self.svc.stats_worker, cluster.stats_slot, False)
            self.in_cluster = True
        if self.pick_endpoint() < 0:
            self.drop_pending()
            self.local_error(E_NO_HEALTHY_UPSTREAM, None, False)
            return

        # the upstream request: rewritten target, forwarded headers as (name, value) edits
        self.target = rewrite_prefix(self.path, route.prefix_from, route.prefix_to)
        xff = None
        rid = None
        for i in range(h.nheaders):
            hid = h.hdr_id[i]
            if hid == H_X_FORWARDED_FOR:
                v = h.header_value(i)
                xff = v if xff is None else xff + b", " + v
                h.hdr_flags[i] |= HF_DROP
            elif hid == H_X_FORWARDED_PROTO or hid == H_X_FORWARDED_HOST:
                h.hdr_flags[i] |= HF_DROP
            elif hid == H_X_REQUEST_ID:
                if rid is None and valid_request_id(head + h.value_s[i], h.value_e[i] - h.value_s[i]):
                    rid = h.header_value(i)
                else:
                    h.hdr_flags[i] |= HF_DROP
            elif hid == H_HOST and self.authority is not None:
                h.hdr_flags[i] |= HF_DROP
            elif hid == H_X_FORWARDED_CLIENT_CERT and l.xfcc != XFCC_FORWARD_ONLY:
                # only the proxy that verified the client may say who it is (Envoy: sanitize)
                h.hdr_flags[i] |= HF_DROP
            if route.drop_names:
                for name in route.drop_names:
                    if h.name_is(i, <bytes>name):
                        h.hdr_flags[i] |= HF_DROP
        edits = [] if self.codec_edits is None else list(self.codec_edits)
        if self.authority is not None:
            edits.append(N_HOST)
            edits.append(self.authority)
        elif h.host_index < 0:
            # an HTTP/1.0 request without Host: HTTP/1.1 upstreams require one (nginx sends
            # the upstream's address the same way)
            edits.append(N_HOST)
            edits.append(self.pool.address)
        edits.append(N_XFF)
        edits.append(ds.client_ip if xff is None else xff + b", " + ds.client_ip)
        edits.append(N_XFP)
        edits.append(V_HTTPS if l.tls else V_HTTP)
        if self.authority is not None:
            edits.append(N_XFH)
            edits.append(self.authority)
        elif h.host_index >= 0:
            # clients send the same Host on every request of a connection: keep its bytes once
            i = h.host_index
            if (ds.xfh_value is None or PyBytes_GET_SIZE(ds.xfh_value) != h.value_e[i] - h.value_s[i]
                    or memcmp(PyBytes_AS_STRING(ds.xfh_value), head + h.value_s[i],
                              h.value_e[i] - h.value_s[i]) != 0):
                ds.xfh_value = h.header_value(i)
            edits.append(N_XFH)
            edits.append(ds.xfh_value)
        if rid is None:
            rid = new_request_id()
            edits.append(N_RID)
            edits.append(rid)
        self.request_id = rid
        if l.xfcc == XFCC_SANITIZE_SET and ds.xfcc_value is not None:
            edits.append(N_XFCC)
            edits.append(ds.xfcc_value)
        if route.add_headers:
            edits.extend(route.add_headers)
        if route.retry_attempts > 0:
            edits.append(N_ATTEMPT)             # Envoy's x-envoy-attempt-count
            self.attempt_edit = len(edits)
            edits.append(b"1")
        if self.fctx is not None:
            ctx = self.fctx
            if ctx.set_request or ctx.remove_request:
                self.filter_edits(h, ctx.set_request, ctx.remove_request, edits)
            if ctx.path != self.path.decode("latin-1"):
                self.target = ctx.path.encode("latin-1")
        if self.upgrade:
            i = h.find(H_UPGRADE)
            if i >= 0:
                edits.append(N_CONNECTION)
                edits.append(V_UPGRADE)
                edits.append(N_UPGRADE)
                edits.append(without_h2c(h.header_value(i)))
        if self.grpc > G_PLAIN:
            # gRPC-Web: the upstream gets gRPC (grpcwire.pyx)
            h.drop(N_CONTENT_TYPE)
            edits.append(N_CONTENT_TYPE)
            edits.append(upstream_content_type(self.grpc_type))
            edits.append(N_TE)
            edits.append(V_TRAILERS)
            if self.grpc == G_WEB_TEXT:
                self.web_in = TextDecoder()
                self.web_out = TextEncoder()
                if self.req_body_kind == BODY_LENGTH:
                    h.drop(N_CONTENT_LENGTH)           # the decoded body is shorter
                    self.req_body_kind = BODY_CHUNKED
        self.edits = edits
        if route.timeout > 0:
            self.route_deadline = self.t0 + route.timeout   # checked by the codec's sweep
        if self.grpc_timeout > 0 and (self.route_deadline == 0 or
                                      self.t0 + self.grpc_timeout < self.route_deadline):
            self.route_deadline = self.t0 + self.grpc_timeout   # the client's, if sooner
        if route.mirror_cluster is not None:
            self.mirror = start_mirror(self, route)       # a shadow copy (mirror.pyx), or None
        if self.state != X_WAITING:
            self.go(X_WAITING)
        self.start_try()

    cdef void start_try(self) except *:
        """One upstream try on the endpoint picked: its per-try deadline, then a lease."""
        cdef Route route = self.route
        self.attempt += 1
        self.deadline = self.route_deadline
        self.try_deadline = 0
        if route.per_try_timeout > 0:
            self.try_deadline = monotonic_now() + route.per_try_timeout
            if self.deadline == 0 or self.try_deadline < self.deadline:
                self.deadline = self.try_deadline     # the sweep calls on_deadline at the first
        self.lb_begin()
        self.acquire(False)

    # --- retries ------------------------------------------------------------------------------

    cdef bint may_retry(self, int on) except -1:
        """Whether the try that just failed with `on` (RETRY_* bits of what happened) is
        retried: the route's policy allows it (reason, attempts left, method), nothing went to
        the client yet, the body can be sent again, the route deadline has not passed, and the
        cluster's retry budget (or max_retries) has room: retries in flight node-wide."""
        cdef Route r = self.route
        cdef Cluster c = self.cluster
        cdef Stats st = self.svc.stats
        cdef long limit, active
        if (r is None or c is None or self.attempt > r.retry_attempts
                or not (r.retry_on & on) or self.resp_started or self.shadow
                or (self.req_body_sent and self.replay is None)
                or self.method not in r.retry_methods):
            return False
        if self.route_deadline > 0 and monotonic_now() >= self.route_deadline:
            return False
        if st is not None and c.stats_slot >= 0:
            if c.budget_percent >= 0:
                limit = max(c.budget_min, <long>(c.budget_percent
                                                 * st.cluster_active(c.stats_slot, False) / 100.0))
            else:
                limit = c.max_retries
            active = st.cluster_active(c.stats_slot, True) - (1 if self.in_retry else 0)
            if active >= limit:
                st.cluster_event(self.svc.stats_worker, c.stats_slot, ST_CE_RETRY_OVERFLOW)
                return False
        return True

    cdef void schedule_retry(self, int why) except *:
        """The failed try is over (its upstream closed or never attached): wait a jittered
        exponential backoff (full jitter, as Envoy: uniform in [0, min(max, base * 2^n))),
        then retry_now()."""
        cdef Route r = self.route
        cdef Cluster c = self.cluster
        cdef Stats st = self.svc.stats
        cdef double ceiling
        self.lb_done()
        if st is not None and c.stats_slot >= 0:
            st.cluster_event(self.svc.stats_worker, c.stats_slot, why)
            if not self.in_retry:
                self.in_retry = True
                st.cluster_begin(self.svc.stats_worker, c.stats_slot, True)
        if self.state != X_WAITING:
            self.go(X_WAITING)
        self.try_deadline = 0
        self.deadline = self.route_deadline
        ceiling = r.backoff_base * <double>(1 << min(self.attempt - 1, 20))
        if ceiling > r.backoff_max:
            ceiling = r.backoff_max
        self.timer = self.svc.loop.call_later(ceiling * uniform(), self.retry_now)

    def retry_now(self):
        """The backoff passed: the next try, on another endpoint when there is one, with the
        request body replayed from the buffer."""
        self.timer = None
        if self.state != X_WAITING or self.up is not None or self.parked or self.ds is None:
            return
        if self.replay is None and self.req_body_sent:
            # the body outgrew the replay buffer during the backoff: what left with the failed
            # try cannot be sent again
            self.fail(E_UPSTREAM_RESET, None)
            self.ds.flush()
            return
        if self.attempt_edit >= 0:
            self.edits[self.attempt_edit] = b"%d" % (self.attempt + 1)
        if self.pick_endpoint() < 0:
            self.fail(E_NO_HEALTHY_UPSTREAM, None)
            self.ds.flush()
            return
        if self.replay is not None:
            self.pending = list(self.replay) if self.replay else None
            self.pending_size = self.replay_size
            self.pending_end = self.req_done
            self.pending_trailers = self.replay_trailers
            self.req_body_sent = False
        self.ds.resume_client(self, PAUSE_UPSTREAM)   # the old try's write buffer is gone
        self.start_try()
        self.ds.flush()

    cdef bint try_again(self, int on, int why, int od_kind) except -1:
        """A try failed with `on` before a response: retry it when allowed (True), telling
        outlier detection about the failed endpoint (`od_kind`, < 0: not its fault); when not
        retried, the caller ends the exchange and record() reports the last endpoint."""
        if not self.may_retry(on):
            return False
        if od_kind >= 0 and self.cluster.od:
            self.report_ep(od_kind)
        self.schedule_retry(why)
        return True

    cdef void abort_try(self) except *:
        """Stop the current try's upstream (a per-try timeout, a response to retry); the
        exchange goes on."""
        cdef UpstreamConn up = self.up
        self.cancel_lease()
        if up is not None:
            self.up = None
            up.x = None
            up.close_now()
        self.lb_done()

    cdef void release_cluster(self) except *:
        cdef Stats st = self.svc.stats
        if self.in_cluster:
            self.in_cluster = False
            st.cluster_end(self.svc.stats_worker, self.cluster.stats_slot, False)
        if self.in_retry:
            self.in_retry = False
            st.cluster_end(self.svc.stats_worker, self.cluster.stats_slot, True)

    # --- the upstream lease ------------------------------------------------------------------

    cdef void acquire(self, bint fresh) except *:
        cdef Pool pool = self.pool
        cdef int r = LEASE_FULL
        cdef PooledConn c = pool.acquire(self, fresh, &r)
        if r == LEASE_NOW:
            self.attach(<UpstreamConn>c)
        elif r == LEASE_PARKED:
            self.parked = True
        elif r == LEASE_OPEN:
            if self.svc.open_fds + 1 > self.svc.fd_limit:
                pool.connect_failed()
                self.svc.count(ST_EV_ACCEPT_FAILED)
                self.svc.warn("fds", "out of file descriptors: no new upstream connection")
                self.fail(E_NO_FDS, None)
                return
            self.svc.open_upstream(self, pool)
        elif r == LEASE_FULL:
            # (a retry never queues behind the pool: it already waited once)
            if self.svc.stats is not None and self.cluster.stats_slot >= 0:
                self.svc.stats.cluster_event(self.svc.stats_worker, self.cluster.stats_slot,
                                             ST_CE_OVERFLOW_PENDING)
            self.fail(E_POOL_OVERFLOW, None)

    def lease_ready(self):
        """The pool freed a slot or a connection while we were parked."""
        self.parked = False
        if self.state == X_WAITING:
            self.acquire(False)
            self.ds.flush()

    cdef void lease_granted(self, UpstreamConn up) except *:
        """A connection opened for us (svc.open_upstream) is ready."""
        cdef Pool pool = up.pool
        if self.state == X_WAITING and self.pool is pool and self.ds is not None and not self.ds.closed:
            self.attach(up)
            self.ds.flush()
        else:
            up.x = None
            pool.release(up, monotonic_now())   # nobody waits for it any more: keep it warm

    cdef void connect_failed(self, Pool pool, object exc) except *:
        pool.connect_failed()
        if self.state != X_WAITING or self.pool is not pool:
            return
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            self.svc.count(ST_EV_ACCEPT_FAILED)
            self.svc.warn("fds", "out of file descriptors: no new upstream connection")
            self.fail(E_NO_FDS, None)
        else:
            self.svc.upstream_failed(pool, self.ep_slot, False, "connect failed: %s"
                                     % (str(exc) or type(exc).__name__))
            if not self.try_again(RETRY_CONNECT_FAILURE | RETRY_GATEWAY_ERROR | RETRY_5XX,
                                  ST_CE_RETRY_CONNECT_FAILURE, EP_OUTCOME_GATEWAY):
                self.fail(E_CONNECT_FAILED, None)
        self.ds.flush()

    cdef void attach(self, UpstreamConn up) except *:
        self.cancel_lease()           # (a connection opened for an earlier try may come first)
        self.up = up
        self.go(X_PROXYING)
        self.t_attach = monotonic_now()
        up.x = self
        up.got_bytes = False
        up.send_request(self)
        if self.pending is not None:
            self.req_body_sent = True
            up.send_pending(self, self.pending)
            self.pending = None
            self.pending_size = 0
            self.ds.resume_client(self, PAUSE_PENDING)
        if self.pending_end:
            self.pending_end = False
            up.send_end(self, self.pending_trailers)
            self.pending_trailers = None

    cdef void lb_begin(self) except *:
        self.cluster.balancer.begin(self.ep_index)
        self.lb_active = True
        if self.svc.stats is not None:
            self.svc.stats.endpoint_begin(self.svc.stats_worker, self.ep_slot)

    cdef void lb_done(self) except *:
        if self.lb_active:
            self.lb_active = False
            self.cluster.balancer.end(self.ep_index)
            if self.svc.stats is not None:
                self.svc.stats.endpoint_end(self.svc.stats_worker, self.ep_slot)

    # --- request body -------------------------------------------------------------------------

    cdef void request_data(self, bytes chunk) except *:
        if self.mirror is not None:
            mirror_data(self.mirror, chunk)     # (the raw bytes: the shadow decodes its own)
        self.bytes_in += PyBytes_GET_SIZE(chunk)
        if self.state == X_LOCAL or self.state == X_BODY_WAIT:
            return          # answered already: drop the body
        if self.web_in is not None:
            try:
                chunk = (<TextDecoder>self.web_in).feed(chunk)
            except ValueError:              # binascii.Error: not base64
                self.web_in = None
                self.abort_upstream()
                if not self.resp_started:
                    self.fail(E_BAD_REQUEST, b"grpc-web-text body is not base64\n")
                else:
                    self.ds.broken(self)
                return
            if PyBytes_GET_SIZE(chunk) == 0:
                return
        if self.replay is not None:
            self.replay_size += PyBytes_GET_SIZE(chunk)
            if self.replay_size > REPLAY_LIMIT:
                self.replay = None        # too long to keep: once a byte has left, no retry
            else:
                self.replay.append(chunk)
        if self.up is not None:
            self.req_body_sent = True
            self.up.send_data(self, chunk)
            return
        if self.pending is None:
            self.pending = []
        self.pending.append(chunk)
        self.pending_size += PyBytes_GET_SIZE(chunk)
        if self.pending_size > PENDING_BODY_LIMIT:
            self.ds.pause_client(self, PAUSE_PENDING)

    cdef void request_end(self, bytes trailers) except *:
        self.req_done = True
        if self.mirror is not None:
            mirror_end(self.mirror, trailers)   # the shadow has its whole request: on its own
            self.mirror = None
        if self.state == X_LOCAL:
            if self.resp_started:
                self.finish()
            return
        if self.state == X_BODY_WAIT:
            self.finish()
            return
        self.replay_trailers = trailers
        if self.up is not None:
            self.up.send_end(self, trailers)
        else:
            self.pending_end = True
            self.pending_trailers = trailers

    # --- response -----------------------------------------------------------------------------

    cdef void response_head(self, HeaderBlock rp, int st, int body_kind) except *:
        cdef list edits
        cdef int on = 0, why = 0
        if st < 200 and st != 101:
            if st == 100 and self.expect_continue and not self.resp_started:
                self.ds.send_interim(self, 100)
            return
        if st >= 400 and self.route is not None and self.route.retry_attempts > 0:
            # a response the route retries on: dropped, never seen by the client
            if st >= 500:
                on, why = RETRY_5XX, ST_CE_RETRY_5XX
                if st == 502 or st == 503 or st == 504:
                    on, why = RETRY_5XX | RETRY_GATEWAY_ERROR, ST_CE_RETRY_GATEWAY_ERROR
            if st in self.route.retry_statuses:
                on |= RETRY_STATUS
                if why == 0:
                    why = ST_CE_RETRY_STATUS
            if on and self.may_retry(on):
                if self.cluster.od:
                    self.report_ep(EP_OUTCOME_GATEWAY if on & RETRY_GATEWAY_ERROR else
                                   EP_OUTCOME_5XX if on & RETRY_5XX else EP_OUTCOME_OK)
                self.abort_try()
                self.schedule_retry(why)
                return
        self.status = st
        self.try_deadline = 0                 # the try answered: only the route deadline now
        self.deadline = self.route_deadline
        edits = []
        if st != 101 and self.route is not None and self.route.resp_filters is not None:
            ctx = self.filter_ctx()
            ctx.status = st
            ctx._response_headers = rp.headers
            for f in self.route.resp_filters:
                try:
                    f.response(ctx)
                except Exception as exc:
                    self.filter_failed(f, "response", exc)
            if ctx.set_response or ctx.remove_response:
                self.filter_edits(rp, ctx.set_response, ctx.remove_response, edits)
        if self.grpc:
            v = rp.get(b"grpc-status")          # a trailers-only response carries it here
            if v is not None and (<bytes>v).isdigit():
                self.grpc_status = int(v)
        if self.grpc > G_PLAIN and st == 200:
            # gRPC-Web: the client's content type; trailers will be the body's last message
            rp.drop(N_CONTENT_TYPE)
            rp.drop(N_CONTENT_LENGTH)
            edits.append(N_CONTENT_TYPE)
            edits.append(response_content_type(self.grpc_type))
            if body_kind != BODY_NONE:
                self.web_body = True
                body_kind = BODY_CHUNKED
        if st == 101 and not self.upgrade:
            self.resp_started = True
            self.upstream_broke(self.up, True, False, E_BAD_RESPONSE)   # 101 nobody asked for
            return
        self.resp_started = True
        self.ds.send_head(self, rp, st, body_kind, edits)

    cdef void response_data(self, bytes chunk) except *:
        if self.web_out is not None:
            chunk = (<TextEncoder>self.web_out).feed(chunk)
            if PyBytes_GET_SIZE(chunk) == 0:
                return
        self.ds.send_data(self, chunk)

    cdef void response_end(self, UpstreamConn up, bytes trailers, bint reusable) except *:
        """The response is complete: its end goes to the client, the upstream back to its pool
        (when it can carry another request and ours was sent whole)."""
        cdef bytes tail
        if self.grpc and trailers:
            self.grpc_status = grpc_status_of(trailers, self.grpc_status)
        if self.web_body:
            # gRPC-Web: the trailers as the last message of the body (browsers cannot read
            # HTTP trailers)
            tail = trailer_message(trailer_pairs(trailers))
            if self.web_out is not None:
                tail = (<TextEncoder>self.web_out).feed(tail) + (<TextEncoder>self.web_out).finish()
            self.ds.send_data(self, tail)
            trailers = None
        self.ds.send_end(self, trailers)
        up.served += 1
        up.x = None
        self.up = None
        self.lb_done()
        up.release(self, reusable and self.req_done)
        if self.req_done:
            self.finish()
        else:
            # answered before the request body ended: read the rest of it and drop it
            self.go(X_BODY_WAIT)
            self.record()

    cdef void response_upgraded(self, UpstreamConn up) except *:
        """101 Switching Protocols completed: from now on bytes pass both ways untouched."""
        self.go(X_TUNNEL)
        self.deadline = 0
        self.ds.start_tunnel(self, up)

    cdef void upstream_lost(self, UpstreamConn up) except *:
        """The upstream connection closed under the exchange (a close-delimited response was
        ended by the codec before this)."""
        if self.state == X_TUNNEL:
            self.ds.flush()
            self.ds.broken(self)
            return
        self.upstream_broke(up, False, False, E_UPSTREAM_RESET)
        self.ds.flush()

    cdef void upstream_refused(self, UpstreamConn up) except *:
        """The upstream refused the stream before processing it (HTTP/2 REFUSED_STREAM, or
        above a GOAWAY's last stream id): the application never saw the request, so it is
        retried once on a fresh lease whatever its method, as long as all of it can be sent
        again (no body byte has left us)."""
        self.up = None
        if up is not None:
            up.x = None
        self.lb_done()
        if not self.retried and not self.req_body_sent and not self.resp_started:
            self.retried = True
            self.go(X_WAITING)
            self.lb_begin()
            self.acquire(True)
            return
        self.svc.upstream_failed(self.pool, self.ep_slot, True, "stream refused")
        if self.try_again(RETRY_REFUSED_STREAM | RETRY_5XX, ST_CE_RETRY_REFUSED_STREAM, -1):
            return
        if not self.resp_started:
            self.fail(E_UPSTREAM_RESET, None)
        else:
            self.outcome = E_UPSTREAM_RESET
            self.ds.flush()
            self.ds.broken(self)

    cdef void upstream_broke(self, UpstreamConn up, bint close_upstream, bint stale_bytes,
                             int kind) except *:
        """The upstream failed mid-exchange (kind: E_UPSTREAM_RESET, or E_BAD_RESPONSE for a
        response the codec refused): retry, 502, or abort the client. `stale_bytes`: the bytes
        read were not a response head (an earlier response's leftover)."""
        self.up = None
        if up is not None:
            up.x = None
            if close_upstream:
                up.close_now()
        self.lb_done()
        # Retry only on a connection that waited in the pool (idle_since is set by release):
        # the upstream may have closed it meanwhile. `served > 0` would miss one opened for a
        # client that left before it connected, pooled without ever serving.
        if (up is not None and (not up.got_bytes or stale_bytes) and up.idle_since > 0
                and not self.retried and not self.req_has_body and self.method in IDEMPOTENT):
            if stale_bytes:
                self.svc.upstream_extra_data(self.pool)
            self.retried = True
            self.resp_started = False
            self.go(X_WAITING)
            self.lb_begin()
            self.acquire(True)
            return
        self.svc.upstream_failed(self.pool, self.ep_slot, True,
                                 ("malformed response" if kind == E_BAD_RESPONSE else
                                  "connection broke") +
                                 (" after the response started" if self.resp_started else
                                  " before a response" if kind != E_BAD_RESPONSE else ""))
        if self.try_again(RETRY_RESET | RETRY_GATEWAY_ERROR | RETRY_5XX, ST_CE_RETRY_RESET,
                          EP_OUTCOME_GATEWAY):
            return
        if not self.resp_started:
            self.fail(kind, None)
        else:
            self.outcome = kind
            self.ds.flush()
            self.ds.broken(self)

    # --- local answers and failures -----------------------------------------------------------

    cdef void local(self, int status, bytes body, list headers, bint close) except *:
        """Answer this exchange ourselves; the rest of the request body is read and dropped.
        A gRPC call gets it in the trailers-only form (grpcwire.pyx)."""
        cdef int code
        if self.grpc != G_NONE:
            if self.outcome == E_FAULT_ABORT:
                code = (self.route.fault_abort_grpc if self.route.fault_abort_grpc >= 0
                        else status_of_http(status))
            else:
                code = (error_row(self.outcome).grpc_status if self.outcome != E_NONE
                        else status_of_http(status))
            self.grpc_status = code
            headers = [N_CONTENT_TYPE, response_content_type(self.grpc_type),
                       N_GRPC_STATUS, b"%d" % code,
                       N_GRPC_MESSAGE, message(body if body is not None else b"%d" % status)]
            status = 200
            body = b""
        self.status = status
        self.go(X_LOCAL)
        self.resp_started = True
        self.ds.send_local(self, status, body, headers, close)
        if self.req_done:
            self.finish()

    cdef void local_error(self, int kind, bytes body, bint close) except *:
        cdef const ErrorRow* row = error_row(kind)
        self.outcome = kind
        self.local(row.status, body if body is not None else error_body(kind),
                   [N_OVERLOADED, V_TRUE] if row.overloaded else None, close or row.close)

    cdef void fail(self, int kind, bytes body) except *:
        """A proxied exchange ends with a local error reply."""
        cdef bint unread = not self.req_done
        self.deadline = self.route_deadline = self.try_deadline = 0
        self.cancel_lease()
        self.lb_done()
        self.pending = None
        self.pending_end = False
        self.local_error(kind, body, unread)
        if unread:
            # we stop reading the body: the connection cannot carry another request
            self.req_done = True
            self.finish()

    cdef void cancel_lease(self) except *:
        """No more waiting: out of the pool's waiting list, and the retry backoff or fault
        delay timer cancelled."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.parked:
            self.parked = False
            if self.pool is not None:
                self.pool.cancel(self)

    cdef void on_deadline(self) except *:
        """The route timeout or the try's per_try_timeout fell due (the codec's sweep found
        `deadline`, the sooner of the two, passed). A per-try timeout is retried like a reset;
        not retried, it answers 504 like the route timeout."""
        cdef double now = monotonic_now()
        cdef Cluster c = self.cluster
        if (self.try_deadline > 0 and now >= self.try_deadline and not self.resp_started
                and (self.route_deadline == 0 or now < self.route_deadline)
                and (self.state == X_WAITING or self.state == X_PROXYING)):
            self.try_deadline = 0
            self.deadline = self.route_deadline
            if self.svc.stats is not None and c.stats_slot >= 0:
                self.svc.stats.cluster_event(self.svc.stats_worker, c.stats_slot,
                                             ST_CE_PER_TRY_TIMEOUT)
            self.abort_try()
            if self.try_again(RETRY_RESET | RETRY_GATEWAY_ERROR | RETRY_5XX,
                              ST_CE_RETRY_PER_TRY_TIMEOUT, EP_OUTCOME_GATEWAY):
                return
            self.fail(E_UPSTREAM_TIMEOUT, None)
            self.ds.flush()
            return
        self.deadline = 0
        if self.state == X_WAITING or self.state == X_PROXYING:
            self.abort_upstream()
            if not self.resp_started:
                self.fail(E_UPSTREAM_TIMEOUT, None)
                self.ds.flush()
            else:
                self.status = 504
                self.outcome = E_UPSTREAM_TIMEOUT
                self.ds.flush()
                self.ds.broken(self)

    cdef void timed_out(self, int kind) except *:
        """A client took too long with its request (E_HEADER_TIMEOUT, E_BODY_TIMEOUT): the
        error's status if no response has started, then the codec closes."""
        cdef const ErrorRow* row = error_row(kind)
        if self.state == X_WAITING or self.state == X_PROXYING:
            self.abort_upstream()
        if self.state == X_IDLE:
            self.begin_for_error(self.ds, monotonic_now())
        self.go(X_LOCAL)
        self.status = row.status
        self.outcome = kind
        if not self.resp_started:
            self.resp_started = True
            self.ds.send_local(self, row.status, error_body(kind), None, True)
        self.req_done = True
        self.finish()

    cdef void bad_request(self, int status, bytes body) except *:
        """The codec refused the request (status: its 4xx/5xx). If a response had started, the
        client connection is broken instead and finish() follows its close."""
        if self.state == X_WAITING or self.state == X_PROXYING:
            self.abort_upstream()
        self.status = status
        self.outcome = E_BAD_REQUEST
        if self.state == X_IDLE:
            self.begin_for_error(self.ds, monotonic_now())
        if self.resp_started:
            self.ds.broken(self)
            return
        self.go(X_LOCAL)
        self.resp_started = True
        self.ds.send_local(self, status, body, None, True)
        self.req_done = True
        self.finish()

    cdef void client_gone(self) except *:
        """The client connection closed with this exchange in flight: logged as 499 unless a
        status was already decided."""
        if self.state == X_IDLE:
            return
        if self.status == 0:
            self.status = 499
            self.outcome = E_CLIENT_CLOSED
        self.abort_upstream()
        self.finish()

    cdef void abort_upstream(self) except *:
        """Stop the upstream side of the exchange (client gone, timeout): never pool it."""
        self.deadline = self.route_deadline = self.try_deadline = 0
        self.abort_try()

    # --- the one exit ---------------------------------------------------------------------------

    cdef void finish(self) except *:
        """The exchange is over on both sides: stats and access log (once), the balancer and
        gauge released, then the codec goes on (next request, or close)."""
        if self.mirror is not None:
            mirror_abort(self.mirror)           # its request will never be complete
            self.mirror = None
        self.deadline = self.route_deadline = self.try_deadline = 0
        self.cancel_lease()
        self.lb_done()
        if not self.logged:
            self.record()
        if self.in_cluster or self.in_retry:
            self.release_cluster()
        self.svc.requests += 1
        if self.counted:
            self.counted = False
            self.svc.stats.add_gauge(self.svc.stats_worker, ST_GAUGE_REQUESTS, -1)
        self.go(X_IDLE)
        self.up = None
        self.pending = None
        self.replay = None
        self.replay_trailers = None
        self.route = None
        self.fctx = None
        self.edits = None
        self.ds.exchange_done(self)

    cdef void report_outcome(self) except *:
        """Outlier detection (the cluster's outlier_detection): how the picked endpoint did,
        into the node-wide table (endpoints.pyx); the report that makes a count cross its
        threshold ejects the endpoint, within max_ejection_percent. Only what the endpoint
        answered or failed counts: sluice's own refusals, and clients that left, do not."""
        cdef int kind, k = self.outcome, st = self.status
        if k == E_CONNECT_FAILED or k == E_UPSTREAM_RESET or k == E_BAD_RESPONSE \
                or k == E_UPSTREAM_TIMEOUT:
            kind = EP_OUTCOME_GATEWAY
        elif k != E_NONE or self.t_attach == 0:
            return
        elif st == 502 or st == 503 or st == 504:
            kind = EP_OUTCOME_GATEWAY
        elif st >= 500:
            kind = EP_OUTCOME_5XX
        else:
            kind = EP_OUTCOME_OK
        self.report_ep(kind)

    cdef void report_ep(self, int kind) except *:
        """One outcome (EP_OUTCOME_*) of the endpoint of the current try, for outlier
        detection; a retried try reports here, the last one through report_outcome()."""
        cdef Cluster c = self.cluster
        cdef Balancer b
        cdef Endpoints shared
        b = c.balancer
        shared = b.shared
        if shared is None or self.ep_slot <= 0:
            return
        if shared.outcome(self.ep_slot, kind, c.od_5xx, c.od_gateway) \
                and (shared.ejected_among(b.slots, b.n) + 1) * 100 <= max(
                    c.od_max_percent * b.n, 100):      # (one at least, as Envoy)
            if shared.eject(self.ep_slot, monotonic_now(), c.od_base, c.od_max_time):
                self.svc.warn(("ejected", self.pool.address),
                              "outlier detection: upstream %s of cluster %s ejected after %s"
                              % (self.pool.address.decode(), c.name,
                                 "consecutive gateway errors" if kind == EP_OUTCOME_GATEWAY
                                 else "consecutive 5xx"), 0.0)

    cdef void record(self) except *:
        """Once per exchange, when its response is complete: the stats, then the access log."""
        cdef double now = monotonic_now()
        cdef Stats st = self.svc.stats
        self.logged = True
        if self.cluster is not None and self.cluster.od:
            self.report_outcome()
        if (self.attempt > 1 and st is not None and self.outcome == E_NONE and self.status < 500
                and self.cluster.stats_slot >= 0):
            st.cluster_event(self.svc.stats_worker, self.cluster.stats_slot, ST_CE_RETRY_SUCCESS)
        if self.shadow:
            mirror_recorded(self)               # no route stats, no access log line
            return
        if st is not None:
            st.record(self.svc.stats_worker,
                      self.route.stats_slot if self.route is not None else -1,
                      self.cluster.stats_slot if self.cluster is not None else -1,
                      self.status, now - self.t0, self.bytes_in, self.bytes_out)
        cdef AccessLog log = self.svc.access_log
        if log is None:
            return
        cdef LogEntry e
        cdef HeaderBlock h = self.req
        cdef const char* head
        cdef bytes rid = self.request_id
        cdef bytes host = None
        cdef int i
        cdef Downstream ds = self.ds
        e.client_ip = PyBytes_AS_STRING(ds.client_ip)
        e.client_ip_len = PyBytes_GET_SIZE(ds.client_ip)
        e.client_port = ds.client_port
        e.method = PyBytes_AS_STRING(self.method) if self.method is not None else NULL
        e.method_len = PyBytes_GET_SIZE(self.method) if self.method is not None else 0
        e.path = PyBytes_AS_STRING(self.path) if self.path is not None else NULL
        e.path_len = PyBytes_GET_SIZE(self.path) if self.path is not None else 0
        e.http_minor = ds.http_minor
        e.host = e.user_agent = e.referer = NULL
        e.host_len = e.user_agent_len = e.referer_len = 0
        if self.head_valid and h is not None:
            head = PyBytes_AS_STRING(h.head)
            if self.authority is not None:
                e.host = PyBytes_AS_STRING(self.authority)
                e.host_len = PyBytes_GET_SIZE(self.authority)
            elif h.host_index >= 0:
                e.host = head + h.value_s[h.host_index]
                e.host_len = h.value_e[h.host_index] - h.value_s[h.host_index]
            for i in range(h.nheaders):
                if e.user_agent == NULL and h.name_is(i, b"user-agent"):
                    e.user_agent = head + h.value_s[i]
                    e.user_agent_len = h.value_e[i] - h.value_s[i]
                elif (e.referer == NULL and log.format == LOG_COMBINED    # json has no referer
                      and h.name_is(i, b"referer")):
                    e.referer = head + h.value_s[i]
                    e.referer_len = h.value_e[i] - h.value_s[i]
        if rid is None or PyBytes_GET_SIZE(rid) == 0:
            e.request_id, e.request_id_len = NULL, 0
        else:
            e.request_id, e.request_id_len = PyBytes_AS_STRING(rid), PyBytes_GET_SIZE(rid)
        e.status = self.status
        e.grpc_status = self.grpc_status    # -1: not gRPC, or no status seen
        e.attempts = self.attempt
        e.bytes_in = self.bytes_in
        e.bytes_out = self.bytes_out
        e.duration = now - self.t0
        if self.pool is not None:
            e.upstream = PyBytes_AS_STRING(self.pool.address)
            e.upstream_len = PyBytes_GET_SIZE(self.pool.address)
        else:
            e.upstream, e.upstream_len = NULL, 0
        if self.t_attach > 0:
            e.upstream_connect = self.t_attach - self.t0   # pool wait and connect; 0 when reused
            e.upstream_response = now - self.t0
        else:
            e.upstream_connect = e.upstream_response = -1.0
        if self.route is not None:
            e.route = PyUnicode_AsUTF8AndSize(self.route.name, &e.route_len)
        else:
            e.route, e.route_len = NULL, 0
        e.listener = PyUnicode_AsUTF8AndSize(ds.lname, &e.listener_len)
        log.record(&e)


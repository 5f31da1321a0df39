# cython: language_level=3
"""The protocol objects that move bytes: `Downstream` (a client connection) and `Upstream` (a
pooled connection to an endpoint), plus `Worker`, the per-process context they share.

Theory of operation
-------------------
* uvloop calls the protocol methods; everything a request touches runs here, compiled. A client
  connection carries one exchange at a time: its request parser is not advanced past the end of a
  request until the response to it is complete, so pipelined requests wait, parsed in order, in
  the parser's buffer (and the socket is paused if that buffer grows past PIPELINE_BUFFER).
* One exchange: EV_HEAD -> route (router) -> rate limit -> local reply, or: split -> balancer ->
  pool -> write the rewritten head (http1.build_head) -> stream the body. The response is parsed
  by the Upstream's parser and streamed back through the same Downstream, which decides the
  client-side framing (Content-Length kept, or re-chunked, or close-delimited for HTTP/1.0).
* Backpressure both ways: when one side's transport is above its high-water mark
  (pause_writing), the other side stops reading until resume_writing. Nothing buffers a body,
  except the request body that arrives before the upstream connection is ready, and that pauses
  the client at PENDING_BODY_LIMIT.
* Output to the client is collected per event batch and written once (writelines -> one writev).
* Errors map like Envoy's: 502 connection failure or a broken/malformed response before its
  head, 503 no endpoint or pool overflow, 504 route timeout, 404 no route. After a response has
  started, a failure can only abort the client connection.
* Retry: an idempotent request without a body that fails on a *reused* connection before any
  response byte arrived is sent once more on a fresh connection (the upstream closed a keep-alive
  connection while our request was in flight: the race every pool has).
* The clock: `limiter.monotonic_now()` (CLOCK_MONOTONIC through the vDSO: no syscall and no
  Python call), the same clock the pool's idle sweep and the limiter's buckets use.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport uint64_t, uint8_t
from libc.string cimport memcpy, memcmp

from engine._fast.http1 cimport (
    H1Parser, build_head, chunk_size_line, check_authority,
    EV_NEED_DATA, EV_HEAD, EV_BODY, EV_END, EV_ERROR, EV_PAUSED,
    BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_UNTIL_CLOSE,
    H_X_FORWARDED_FOR, H_X_FORWARDED_PROTO, H_X_FORWARDED_HOST, H_X_REQUEST_ID, H_UPGRADE,
    H_HOST, HF_DROP,
)
from engine._fast.accesslog cimport AccessLog, LogEntry, LOG_COMBINED
from engine._fast.semantics cimport route_host_into, rewrite_prefix, cookie_value, MAX_HOST
from engine._fast.paths cimport path_normalized_bytes, path_error_text
from engine._fast.pool cimport Pool, PooledConn
from engine._fast.tables cimport (
    Tables, Listener, Route, Cluster, Endpoint,
    LIMIT_PER_ROUTE, LIMIT_PER_CLIENT_IP, LIMIT_PER_HEADER,
    HASH_HEADER, HASH_CLIENT_IP, HASH_COOKIE,
)
from engine._fast.balancer cimport Balancer
from engine._fast.limiter cimport Limiter, TakeResult, format_headers, monotonic_now
from engine._fast.stats cimport (
    Stats, ST_GAUGE_CONNECTIONS, ST_GAUGE_REQUESTS, ST_EV_UPSTREAM_EXTRA_DATA, ST_EV_ACCEPT_FAILED,
    ST_EV_TIMEOUT_HEADER, ST_EV_TIMEOUT_BODY, ST_EV_TIMEOUT_SEND, ST_EV_TIMEOUT_IDLE,
    ST_EV_CONNECTION_LIMIT,
)

import errno
import http
import os
import resource
import asyncio
import ssl

DEF PENDING_BODY_LIMIT = 1048576     # request body held while the upstream connects
DEF PIPELINE_BUFFER = 1048576        # unparsed client bytes held before we stop reading it
DEF OUT_FLUSH = 65536                # collected output written before parsing on (see process)
DEF FD_RESERVE = 32                  # descriptors kept free for logs, reloads, the admin side
DEF WARN_INTERVAL = 10.0             # seconds between two log lines about the same thing
DEF LINGER = 2.0                     # seconds a closing connection reads and drops input
DEF TICK_MAX = 0.5                   # the timeout sweep runs at least this often (seconds)
DEF TICK_MIN = 0.01

# why the client's socket is not being read (Downstream.client_pause, a bit set)
cdef enum:
    PAUSE_UPSTREAM = 1   # the upstream's write buffer is above its high-water mark (upload)
    PAUSE_BACKLOG = 2    # unparsed input (pipelined requests) passed PIPELINE_BUFFER
    PAUSE_PENDING = 4    # body held while the upstream connects passed PENDING_BODY_LIMIT

cdef bytes CRLF = b"\r\n"
cdef bytes LAST_CHUNK = b"0\r\n"
cdef bytes CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
cdef bytes HDR_CLOSE = b"connection: close\r\n"
cdef bytes HDR_KEEP_ALIVE = b"connection: keep-alive\r\n"
cdef bytes HDR_CHUNKED = b"transfer-encoding: chunked\r\n"
cdef bytes HDR_XFP_HTTP = b"x-forwarded-proto: http\r\n"
cdef bytes HDR_CONN_UPGRADE = b"connection: upgrade\r\n"
cdef bytes HTTP11 = b" HTTP/1.1\r\n"

# reason phrases of local replies (a filter's Reply may use any status: RFC 9112 4 allows an
# empty reason for the ones without a standard phrase)
cdef dict REASONS = {s.value: s.phrase.encode() for s in http.HTTPStatus}
REASONS[413] = b"Content Too Large"     # RFC 9110's name (Python still says "Request Entity...")

cdef frozenset IDEMPOTENT = frozenset([b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"])

# exchange states
cdef enum:
    X_IDLE = 0          # between requests
    X_LOCAL = 1         # answered locally; discarding the rest of the request body
    X_CONNECTING = 2    # waiting for an upstream connection (pool slot or connect)
    X_PROXYING = 3      # attached to an Upstream
    X_TUNNEL = 4        # switched protocols: bytes pass both ways untouched
    X_DONE_WAIT = 5     # response sent, still reading the request body to its end


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

cdef bytes new_request_id_line():
    """b"x-request-id: <uuid4>\\r\\n" in one allocation (the id is line[14:50])."""
    cdef uint64_t a = _splitmix(), b = _splitmix()
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 52)
    cdef char* p = PyBytes_AS_STRING(out)
    cdef int i, j = 14
    memcpy(p, b"x-request-id: ", 14)
    p[50] = b'\r'
    p[51] = b'\n'
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


cdef inline bytes sub(bytes b, Py_ssize_t start, Py_ssize_t end):
    """b[start:end] without the slice object Cython's generic slicing builds."""
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(b) + start, end - start)


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


cdef inline bint name_is(const char* s, Py_ssize_t n, bytes lower) noexcept:
    """Case-insensitive compare of a header name in the head against a lowercase name."""
    cdef Py_ssize_t i
    cdef char c
    if n != PyBytes_GET_SIZE(lower):
        return False
    cdef const char* l = PyBytes_AS_STRING(lower)
    for i in range(n):
        c = s[i]
        if c >= b'A' and c <= b'Z':
            c = c + 32
        if c != l[i]:
            return False
    return True


cdef bint has_content_type(list lines):
    for x in lines:
        if (<bytes>x).startswith(b"content-type:"):
            return True
    return False


cpdef bytes local_reply(int status, bytes body=None, list extra=None, bint close=False):
    """A complete response generated by the proxy itself (errors, 429, 404, a filter's Reply).
    `extra` are complete header lines with lowercase names; one of them may replace the
    default content-type."""
    cdef bytes reason = REASONS.get(status, b"")
    if body is None:
        body = (b"%d %s\n" % (status, reason))
    parts = [b"HTTP/1.1 %d %s\r\ncontent-length: %d\r\n" % (status, reason, len(body))]
    if not extra or not has_content_type(extra):
        parts.append(b"content-type: text/plain\r\n")
    if extra:
        parts.extend(extra)
    if close:
        parts.append(HDR_CLOSE)
    parts.append(CRLF)
    parts.append(body)
    return b"".join(parts)


cdef class Downstream


@cython.final
cdef class Worker:
    """What one process (or one embedded proxy) serves with: the current Tables, the live client
    connections (for drain) and the access log sink."""
    cdef public Tables tables
    cdef public object loop
    cdef public AccessLog access_log     # or None (access_log.path: off)
    cdef public set conns
    cdef public bint draining
    cdef public long requests            # exchanges completed by this worker
    cdef public object on_idle           # called when draining and the last connection closed
    cdef public object filter_context    # the FilterContext class (engine.filters), set by runtime
    cdef public object log_error         # callable(msg) for errors raised by Python filters
    cdef public Stats stats              # shared-memory metrics, or None
    cdef public int stats_worker         # this process's worker slot in `stats`
    cdef dict listener_conns             # listener name -> open client connections
    cdef public long open_fds            # client + upstream sockets of this worker
    cdef public long fd_limit            # RLIMIT_NOFILE less what was open at start and a reserve
    cdef dict warned                     # what warn() said last, and when
    cdef double tick                     # seconds between two timeout sweeps
    cdef object ticker                   # the TimerHandle of the next sweep

    def __init__(self, loop, Tables tables, access_log=None, Stats stats=None,
                 int stats_worker=0):
        self.loop = loop
        self.access_log = access_log
        self.conns = set()
        self.draining = False
        self.requests = 0
        self.on_idle = None
        self.filter_context = None
        self.log_error = None
        self.stats = stats
        self.stats_worker = stats_worker
        self.listener_conns = {}
        self.warned = {}
        self.open_fds = 0
        self.refresh_fd_limit()
        self.swap(tables)
        self.ticker = loop.call_later(self.tick, self.sweep_timeouts)

    def refresh_fd_limit(self):
        """How many sockets this worker may open: the soft RLIMIT_NOFILE less the descriptors
        open now (logs, listeners, the control channel) and a reserve. A connection over it is
        closed at once, before accept() itself fails with EMFILE (which the event loop answers
        by closing connections silently); call again after raising the limit."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        try:
            base = len(os.listdir("/proc/self/fd"))
        except OSError:
            base = 64
        if soft == resource.RLIM_INFINITY:
            soft = 1 << 20
        self.fd_limit = max(soft - base - FD_RESERVE, 2)

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

    def sweep_timeouts(self):
        """Every `tick`: the listener timeouts (header, idle, request body, send, connection
        age) and route deadlines of every client connection. One sweep instead of a timer per
        request: arming and cancelling a loop timer costs more than the rest of a small
        request's policy, and these deadlines need no finer grain than the tick."""
        cdef double now = monotonic_now()
        cdef Downstream d
        for c in list(self.conns):
            d = <Downstream>c
            d.check_timeouts(now)
        self.ticker = self.loop.call_later(self.tick, self.sweep_timeouts)

    def close(self):
        """Stop the timeout sweep (an embedded proxy that is stopped)."""
        if self.ticker is not None:
            self.ticker.cancel()
            self.ticker = None

    def protocol_factory(self, str listener_name):
        """The factory for loop.create_server(): one Downstream per accepted connection."""
        worker = self
        def factory():
            return Downstream(worker, listener_name)
        return factory

    def swap(self, Tables tables):
        """Serve `tables` from the next request on; exchanges in flight keep theirs. The sweep
        runs often enough for the shortest timeout they configure (a fifth of it)."""
        cdef double shortest = TICK_MAX * 5
        cdef Listener l
        cdef Route r
        self.tables = tables
        for l in tables.listeners.values():
            for t in (l.header_timeout, l.idle_timeout, l.body_timeout, l.send_timeout):
                if 0 < t < shortest:
                    shortest = t
            for r in l.routes:
                if 0 < r.timeout < shortest:
                    shortest = r.timeout
        self.tick = min(TICK_MAX, max(TICK_MIN, shortest / 5))

    def drain(self):
        """Stop keeping connections alive: idle ones close now, busy ones after their response."""
        self.draining = True
        for c in list(self.conns):
            (<Downstream>c).drain_close()
        self._check_idle()

    def _check_idle(self):
        if self.draining and not self.conns and self.on_idle is not None:
            cb, self.on_idle = self.on_idle, None
            cb()

    cdef bint admit_connection(self, str lname, Listener l) except -1:
        """Count a new client connection; False (and a count and a log line) when the listener
        is at limits.max_connections or the worker is out of descriptors."""
        cdef long n = self.listener_conns.get(lname, 0)
        if l.max_connections > 0 and n >= l.max_connections:
            self.count(ST_EV_CONNECTION_LIMIT)
            self.warn(("limit", lname), "listener %s is at limits.max_connections (%d): "
                      "closing new connections" % (lname, l.max_connections))
            return False
        if self.open_fds + 2 > self.fd_limit:       # the client and, soon, its upstream
            self.count(ST_EV_ACCEPT_FAILED)
            self.warn("fds", "out of file descriptors (%d sockets open, RLIMIT_NOFILE allows "
                      "%d more): closing new connections until some close"
                      % (self.open_fds, self.fd_limit - self.open_fds))
            return False
        self.listener_conns[lname] = n + 1
        self.open_fds += 1
        return True

    cdef void release_connection(self, str lname) except *:
        self.listener_conns[lname] = self.listener_conns.get(lname, 1) - 1
        self.open_fds -= 1

    def connection_count(self, str lname):
        """Open client connections of a listener (tests, admin)."""
        return self.listener_conns.get(lname, 0)

    def sweep_pools(self):
        """Close pooled connections idle longer than their pool's idle_timeout."""
        cdef double now = monotonic_now()
        cdef Pool p
        for p in self.tables.pools.values():
            p.sweep(now)

    @property
    def active(self):
        return len(self.conns)


@cython.final
cdef class Upstream(PooledConn):
    cdef H1Parser parser
    cdef Downstream ds
    cdef bint got_bytes
    cdef bint paused_reading     # we paused its reading because the client is slow
    cdef object write            # transport.write, bound once (a lookup by name per call costs)
    cdef Worker worker

    def __init__(self, Pool pool, Worker worker):
        self.pool = pool
        self.worker = worker
        self.parser = H1Parser(is_request=False)

    def connection_made(self, transport):
        self.transport = transport
        self.write = transport.write
        self.worker.open_fds += 1

    def data_received(self, bytes data):
        cdef Downstream ds = self.ds
        if ds is None:
            # Bytes on an idle pooled connection: the upstream broke framing. Never reuse it.
            self.close_now()
            return
        self.got_bytes = True
        if ds.xstate == X_TUNNEL:
            ds.bytes_out += len(data)
            ds.last_read = monotonic_now()
            ds.transport.write(data)
            return
        self.parser.feed(data)
        ds.on_response_data(self)

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        cdef Downstream ds = self.ds
        self.worker.open_fds -= 1
        self.pool.forget(self)
        self.transport = None
        self.write = None
        if ds is not None:
            self.ds = None
            ds.on_upstream_lost(self)

    def pause_writing(self):
        if self.ds is not None:
            self.ds.pause_client(PAUSE_UPSTREAM)

    def resume_writing(self):
        if self.ds is not None:
            self.ds.resume_client(PAUSE_UPSTREAM)


@cython.final
cdef class Downstream:
    cdef Worker worker
    cdef str lname
    cdef Tables tables
    cdef Listener listener
    cdef object transport
    cdef object write              # transport.write and .writelines, bound once
    cdef object writelines
    cdef object loop
    cdef H1Parser parser
    cdef bytes client_ip
    cdef int client_port
    cdef list out                  # response bytes collected in this event batch
    cdef Py_ssize_t out_size       # ... and their size
    cdef bint in_process
    cdef bint closed
    cdef bint admitted             # counted by Worker.admit_connection (released at close)
    cdef int lslot                 # the listener's Stats slot it was counted under
    cdef int client_pause          # PAUSE_* bits: why we are not reading the client
    cdef bint write_paused         # the client's transport is above its high-water mark
    cdef bint fresh                # no request has started on this connection yet
    cdef bint aged                 # max_connection_duration passed: closing after this exchange
    cdef bint lingering            # closing (after linger() or close_now()): input is dropped
    cdef double born               # timeouts (monotonic seconds): accepted at,
    cdef double since              # idle or head phase started at,
    cdef public double last_read   # last bytes from the client (or, in a tunnel, either side),
    cdef double write_blocked      # the client stopped reading at (0: it reads),
    cdef double deadline           # the route timeout falls due at (0: none)
    cdef bint listener_gone        # a reload removed our listener: close after this exchange
    cdef object fctx               # the FilterContext of this exchange, when a filter ran

    # the exchange in flight
    cdef int xstate
    cdef bint req_done
    cdef bint resp_started
    cdef bint close_after
    cdef bint client_keep_alive
    cdef bint client_11
    cdef bint method_head
    cdef bint expect_continue
    cdef bint req_chunked
    cdef bint req_has_body
    cdef bint resp_chunked
    cdef bint retried
    cdef bint upgrade
    cdef Route route
    cdef Cluster cluster
    cdef Pool pool
    cdef int ep_index
    cdef bint lb_active            # balancer.begin() was called and end() is still due
    cdef int ep_slot               # the picked endpoint's Stats slot
    cdef bint counted              # this exchange is in the active_requests gauge
    cdef Upstream up
    cdef bytes up_head
    cdef list pending              # request body buffered until the upstream is attached
    cdef Py_ssize_t pending_size
    cdef object waiter
    cdef double t0
    cdef double t_attach           # an upstream connection was attached at (0: none yet)
    cdef bint head_valid           # the parser's head is this exchange's (not an error's)
    cdef bytes log_host            # an absolute-form authority (the Host the exchange used)
    cdef long bytes_in
    cdef public long bytes_out
    cdef int status
    cdef bytes method
    cdef bytes path
    cdef bint path_changed         # `path` is the normalised one, not the request line's
    cdef bytes request_id          # the id, or (request_id_line) the whole generated header line
    cdef bint request_id_line
    cdef bytes xff_line            # "x-forwarded-for: <client ip>" for requests that carry none
    cdef bytes xfh_value           # the last Host value seen, and its x-forwarded-host line
    cdef bytes xfh_line

    def __init__(self, Worker worker, str lname):
        self.worker = worker
        self.lname = lname
        self.loop = worker.loop
        self.out = []
        self.xstate = X_IDLE

    # --- transport callbacks ---------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.write = transport.write
        self.writelines = transport.writelines
        peer = transport.get_extra_info("peername")
        self.client_ip = (peer[0] if peer else "").encode()
        self.client_port = peer[1] if peer else 0
        self.refresh_tables()
        cdef Listener l = self.listener
        if not self.worker.admit_connection(self.lname, l):
            self.closed = True
            transport.abort()       # nothing was read: a reset, not a response we cannot afford
            return
        self.admitted = True
        self.lslot = l.stats_slot
        if self.worker.stats is not None:
            self.worker.stats.listener_connections(self.worker.stats_worker, self.lslot, 1)
        self.parser = H1Parser(is_request=True, max_head_bytes=l.max_head_bytes,
                               max_headers=l.max_headers, max_uri_bytes=l.max_uri_bytes)
        self.born = self.since = self.last_read = monotonic_now()
        self.fresh = True
        self.worker.conns.add(self)
        if self.worker.stats is not None:
            self.worker.stats.set_gauge(self.worker.stats_worker, ST_GAUGE_CONNECTIONS,
                                        len(self.worker.conns))

    def data_received(self, bytes data):
        cdef double now = monotonic_now()
        if self.closed or self.lingering:
            return
        self.last_read = now
        if self.xstate == X_TUNNEL:
            self.bytes_in += len(data)
            if self.up is not None and self.up.transport is not None:
                self.up.transport.write(data)
            return
        if self.xstate == X_IDLE and self.parser.buffered() == 0:
            self.since = now                 # a new head starts: the header timeout runs
        self.parser.feed(data)
        if (self.xstate != X_IDLE and self.req_done) or (self.write_paused and self.xstate == X_IDLE):
            # pipelined bytes behind a request still in flight, or behind replies the client
            # does not read: hold them, but not without bound
            if self.parser.buffered() > PIPELINE_BUFFER:
                self.pause_client(PAUSE_BACKLOG)
            return
        self.process()

    def eof_received(self):
        if self.xstate == X_TUNNEL and self.up is not None and self.up.transport is not None:
            if self.up.transport.can_write_eof():
                self.up.transport.write_eof()
            return True
        return False

    def connection_lost(self, exc):
        self.closed = True
        self.transport = None
        self.write = self.writelines = None
        if not self.admitted:
            return
        self.admitted = False
        self.worker.release_connection(self.lname)
        if self.worker.stats is not None:
            self.worker.stats.listener_connections(self.worker.stats_worker, self.lslot, -1)
        self.worker.conns.discard(self)
        if self.worker.stats is not None:
            self.worker.stats.set_gauge(self.worker.stats_worker, ST_GAUGE_CONNECTIONS,
                                        len(self.worker.conns))
        if self.xstate != X_IDLE:
            self.status = self.status or 499
            self.abort_upstream()
            self.end_exchange(log=True)
        self.worker._check_idle()

    def pause_writing(self):
        # The client does not read what we send: stop reading the upstream (its response waits
        # in the kernel, not here) and start no new exchange; the send timeout runs.
        self.write_paused = True
        self.write_blocked = monotonic_now()
        if self.up is not None and self.up.transport is not None:
            self.up.paused_reading = True
            self.up.transport.pause_reading()

    def resume_writing(self):
        self.write_paused = False
        self.write_blocked = 0
        if self.up is not None and self.up.transport is not None and self.up.paused_reading:
            self.up.paused_reading = False
            self.up.transport.resume_reading()
        if self.xstate == X_IDLE and not self.closed:
            self.resume_client(PAUSE_BACKLOG)
            if not self.in_process:
                self.process()

    cdef void pause_client(self, int why) except *:
        if self.client_pause == 0 and self.transport is not None:
            self.transport.pause_reading()
        self.client_pause |= why

    cdef void resume_client(self, int why) except *:
        if self.client_pause == 0:
            return
        self.client_pause &= ~why
        if self.client_pause == 0 and self.transport is not None:
            self.transport.resume_reading()
            self.last_read = monotonic_now()    # the body timeout starts again from here

    cdef void linger(self) except *:
        """Close after the last response: send it and a FIN (half-close), then read and drop
        what the client still sends until it closes or LINGER passes. Closing outright with
        unread input makes the kernel send a reset, which can destroy the response before the
        client reads it (a 400 for a pipelined bad request, say): nginx's lingering_close."""
        self.flush()
        if self.transport is None:
            return
        if self.lingering:
            return
        self.lingering = True
        self.since = monotonic_now()
        try:
            self.transport.write_eof()
        except (OSError, RuntimeError):
            self.transport.close()

    cdef void check_timeouts(self, double now) except *:
        """Called by Worker.sweep_timeouts. Listener timeouts (RFC 9112 9.5: a server may close
        an idle connection at any time; 408 where a request was under way) and the route
        deadline of the exchange in flight."""
        cdef Listener l = self.listener
        if self.closed or self.transport is None:
            return
        if self.lingering:
            if now - self.since > LINGER:
                self.transport.close()
            return
        if self.write_blocked > 0 and l.send_timeout > 0 and now - self.write_blocked > l.send_timeout:
            self.worker.count(ST_EV_TIMEOUT_SEND)
            self.abort()
            return
        if self.deadline > 0 and now >= self.deadline:
            self.deadline = 0
            self.on_timeout()
            if self.closed:
                return
        if self.xstate == X_IDLE:
            if self.fresh or self.parser.buffered() > 0:
                if l.header_timeout > 0 and now - self.since > l.header_timeout:
                    self.worker.count(ST_EV_TIMEOUT_HEADER)
                    if self.parser.buffered() > 0:
                        self.timed_out(408, b"request header timeout\n")
                    else:
                        self.close_now()
                    return
            elif l.idle_timeout > 0 and now - self.since > l.idle_timeout:
                self.worker.count(ST_EV_TIMEOUT_IDLE)
                self.close_now()
                return
        elif self.xstate == X_TUNNEL:
            if l.idle_timeout > 0 and now - self.last_read > l.idle_timeout:
                self.worker.count(ST_EV_TIMEOUT_IDLE)
                self.abort()
                return
        elif (not self.req_done and self.client_pause == 0 and l.body_timeout > 0
                and now - self.last_read > l.body_timeout
                and not (self.expect_continue and self.bytes_in == 0)):
            # (a client that asked for 100-continue waits for our 100, which waits for the
            # upstream: that is the route timeout's business, not a stalled body)
            self.worker.count(ST_EV_TIMEOUT_BODY)
            self.timed_out(408, b"request body timeout\n")
            return
        if l.max_duration > 0 and not self.aged and now - self.born > l.max_duration:
            self.aged = True
            self.drain_close()

    cdef void timed_out(self, int status, bytes body) except *:
        """A client took too long with its request: `status` if no response has started,
        then close (the rest of its request will not be read)."""
        if self.xstate == X_CONNECTING or self.xstate == X_PROXYING:
            self.abort_upstream()
        if self.xstate == X_IDLE:
            self.start_exchange_for_error()
        self.xstate = X_LOCAL
        self.status = status
        self.close_after = True
        if not self.resp_started:
            self.resp_started = True
            self.send(local_reply(status, body, None, True))
        self.req_done = True
        self.end_exchange(log=True)

    cdef void abort(self) except *:
        """Drop the connection now, unsent output included (a client that does not read it)."""
        self.out.clear()
        self.out_size = 0
        if self.transport is not None:
            self.transport.abort()

    # --- request side ----------------------------------------------------------------------

    cdef void refresh_tables(self):
        cdef Listener l = self.worker.tables.listeners.get(self.lname)
        if l is None:
            # the listener went away in a reload: finish this request on the old config, then
            # close (its socket no longer accepts)
            self.listener_gone = True
            if self.listener is None:
                raise RuntimeError("listener %r is not in the current tables" % self.lname)
            return
        self.tables = self.worker.tables
        self.listener = l

    cdef process(self):
        """Advance the request parser until it needs data or an exchange waits for its response."""
        cdef int ev
        if self.in_process:
            return
        self.in_process = True
        try:
            while not self.closed and not self.lingering:
                if self.xstate != X_IDLE and self.req_done:
                    break
                if self.write_paused and self.xstate == X_IDLE:
                    break           # the client does not read our replies: answer no more
                ev = self.parser.next_event()
                if ev == EV_NEED_DATA:
                    break
                elif ev == EV_HEAD:
                    self.on_head()
                elif ev == EV_BODY:
                    self.on_body()
                elif ev == EV_END:
                    self.on_request_end()
                elif ev == EV_PAUSED:
                    break
                else:
                    self.on_bad_request()
                    break
                if self.out_size > OUT_FLUSH:
                    # many pipelined local replies: hand them to the transport now, so that a
                    # client that does not read them stops us (pause_writing) after a bounded
                    # batch instead of after everything it sent
                    self.flush()
        finally:
            self.in_process = False
        self.flush()

    cdef void send(self, bytes b):
        self.out.append(b)
        self.out_size += PyBytes_GET_SIZE(b)
        self.bytes_out += PyBytes_GET_SIZE(b)

    cdef void flush(self):
        cdef list out = self.out
        if not out:
            return
        if self.transport is not None:
            if len(out) == 1:
                self.write(out[0])
            else:
                self.writelines(out)             # one writev
        out.clear()                              # the transport keeps the bytes, not the list
        self.out_size = 0

    cdef on_bad_request(self):
        cdef H1Parser p = self.parser
        if self.xstate == X_CONNECTING or self.xstate == X_PROXYING:
            self.abort_upstream()
        self.status = p.error_status
        if self.xstate == X_IDLE:
            self.start_exchange_for_error()
        if self.resp_started:
            self.close_now()
            return
        self.resp_started = True
        self.send(local_reply(p.error_status, (p.error_reason or "bad request").encode() + b"\n",
                              None, True))
        self.close_after = True
        self.req_done = True
        self.finish_local()

    cdef void start_exchange_for_error(self):
        self.xstate = X_LOCAL
        self.head_valid = False
        self.t_attach = 0
        self.log_host = None
        self.begin_counted()
        self.t0 = monotonic_now()
        self.method = b"-"
        self.path = b"-"
        self.request_id = b""
        self.request_id_line = False
        self.route = None
        self.cluster = None
        self.pool = None

    cdef inline void begin_counted(self):
        if self.worker.stats is not None and not self.counted:
            self.counted = True
            self.worker.stats.add_gauge(self.worker.stats_worker, ST_GAUGE_REQUESTS, 1)

    cdef on_head(self):
        cdef H1Parser p = self.parser
        cdef Listener l
        cdef const char* head
        cdef const char* hp
        cdef const char* path
        cdef Py_ssize_t hl, pl, i, q
        cdef char hostbuf[MAX_HOST + 1]
        cdef int idx
        cdef Route route
        cdef bytes target, authority = None, normal
        cdef TakeResult tr
        cdef int perr = 0

        if self.tables is not self.worker.tables:
            self.refresh_tables()
        l = self.listener
        self.xstate = X_LOCAL
        self.req_done = False
        self.resp_started = False
        self.resp_chunked = False
        self.retried = False
        self.up = None
        self.pool = None
        self.route = None
        self.cluster = None
        self.fctx = None
        self.begin_counted()
        self.fresh = False
        self.deadline = 0
        self.t_attach = 0
        self.head_valid = True
        self.log_host = None
        self.status = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.t0 = monotonic_now()
        self.client_11 = p.version_minor == 1
        self.client_keep_alive = p.keep_alive and not self.worker.draining
        self.close_after = not self.client_keep_alive or self.listener_gone
        self.method_head = p.method_is_head
        self.expect_continue = p.expect_continue
        self.req_chunked = p.body_kind == BODY_CHUNKED
        self.req_has_body = p.body_kind != BODY_NONE and not (
            p.body_kind == BODY_LENGTH and p.content_length == 0)
        self.upgrade = p.upgrade
        head = PyBytes_AS_STRING(p.head)
        self.method = sub(p.head, p.method_s, p.method_e)
        self.request_id = b""
        self.request_id_line = False

        if self.upgrade and p.method_e - p.method_s == 7 and self.method == b"CONNECT":
            self.path = sub(p.head, p.target_s, p.target_e)
            self.local(501, b"CONNECT is not supported\n", None, True)
            return

        # request-target: origin-form, or absolute-form whose authority replaces Host
        # (RFC 9112 section 3.2.2)
        path = head + p.target_s
        pl = p.target_e - p.target_s
        if pl > 0 and path[0] != b'/' and path[0] != b'*':
            target = sub(p.head, p.target_s, p.target_e)
            i = target.find(b"://")
            if i < 0 or target[:i].lower() not in (b"http", b"https"):
                self.path = target
                self.local(400, b"bad request-target\n", None, True)
                return
            q = i + 3
            while q < pl and path[q] != b'/' and path[q] != b'?':
                q += 1
            authority = target[i + 3:q]
            target = target[q:] if q < pl and path[q] == b'/' else b"/" + target[q:]
            if check_authority(<const unsigned char*>PyBytes_AS_STRING(authority), 0,
                               PyBytes_GET_SIZE(authority)) != 0:
                # RFC 9110 4.2.4: no userinfo; the authority replaces Host, so it gets the
                # checks a Host gets
                self.path = target
                self.local(400, b"bad host in request-target\n", None, True)
                return
            path = PyBytes_AS_STRING(target)
            pl = PyBytes_GET_SIZE(target)
            self.path = target
            self.log_host = authority
            hp = PyBytes_AS_STRING(authority)
            hl = PyBytes_GET_SIZE(authority)
        else:
            self.path = None
            if p.host_index >= 0:
                hp = head + p.value_s[p.host_index]
                hl = p.value_e[p.host_index] - p.value_s[p.host_index]
            else:
                hp = b""
                hl = 0

        # host for routing: lowercase, port removed
        hl = route_host_into(hp, hl, hostbuf)
        if hl < 0:
            self.local(400, b"host too long\n", None, True)
            return

        # path without the query for matching
        q = 0
        while q < pl and path[q] != b'?':
            q += 1

        # the path as the listener normalises it (paths.pyx): routed and forwarded as such, so
        # /%61dmin or /x/../admin cannot pass a /admin route by another spelling
        self.path_changed = False
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
                self.path = sub(p.head, p.target_s, p.target_e)
            self.local(400, b"bad path: " + path_error_text(perr) + b"\n", None, True)
            return
        idx = l.router.match(hostbuf, hl, path, q, head + p.method_s, p.method_e - p.method_s, p)
        if self.path is None:
            self.path = sub(p.head, p.target_s, p.target_e)
        if idx < 0:
            self.local(404, b"no route\n", None, False)
            return
        route = <Route>l.routes[idx]
        self.route = route

        if route.limiter is not None:
            if not self.admit(route, &tr):
                if self.worker.stats is not None:
                    self.worker.stats.route_limited(self.worker.stats_worker, route.stats_slot)
                self.local(429, b"rate limited\n", [format_headers(&tr, route.limiter.burst)], False)
                return

        if route.req_filters is not None and self.request_filters(route):
            return
        if route.direct:
            self.direct(route)
            return
        self.start_proxy(route, authority)

    # --- Python filters (only routes that name some ever get here) --------------------------

    cdef object filter_ctx(self):
        if self.fctx is None:
            self.fctx = self.worker.filter_context(
                self.method.decode("latin-1"), self.path.decode("latin-1"),
                self.client_ip.decode("latin-1"), self.route.name, self.parser.headers)
        return self.fctx

    cdef void filter_failed(self, f, str phase, exc):
        """Counted per route (sluice_filter_errors_total); logged at most once per filter,
        phase and route every WARN_INTERVAL, so a filter failing on every request does not
        flood the log."""
        if self.worker.stats is not None:
            self.worker.stats.route_filter_failed(self.worker.stats_worker, self.route.stats_slot)
        self.worker.warn(("filter", type(f), phase, self.route.name),
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
                self.local(500, b"filter error\n", None, False)
                return True
            if reply is not None:
                self.local(reply.status, reply.body, reply.header_lines(), False)
                return True
        return False

    cdef list filter_edits(self, H1Parser p, dict set_, set remove):
        """Drop the headers a filter set or removed; the lines to add instead."""
        cdef int i
        cdef const char* head = PyBytes_AS_STRING(p.head)
        names = [n.encode("latin-1") for n in remove] + [n.encode("latin-1") for n in set_]
        for i in range(p.nheaders):
            for name in names:
                if name_is(head + p.name_s[i], p.name_e[i] - p.name_s[i], <bytes>name):
                    p.hdr_flags[i] |= HF_DROP
        return [("%s: %s\r\n" % (k, v)).encode("latin-1") for k, v in set_.items()]

    cdef bint admit(self, Route route, TakeResult* tr):
        cdef bytes key
        cdef object v
        if route.limit_per == LIMIT_PER_CLIENT_IP:
            key = self.client_ip
        elif route.limit_per == LIMIT_PER_HEADER:
            v = self.parser.get(route.limit_header)
            key = v if v is not None else b""
        else:
            key = b""
        return route.limiter.take(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key),
                                  monotonic_now(), tr) == 1

    cdef local(self, int status, bytes body, list extra, bint close):
        """Answer this exchange ourselves; the rest of the request body is read and dropped."""
        self.status = status
        self.xstate = X_LOCAL
        if close:
            self.close_after = True
        self.resp_started = True
        if self.method_head:
            r = local_reply(status, body, extra, self.close_after)
            self.send(r[:len(r) - len(body)])
        else:
            self.send(local_reply(status, body, extra, self.close_after))
        if self.req_done:
            self.finish_local()

    cdef direct(self, Route route):
        self.xstate = X_LOCAL
        self.resp_started = True
        self.status = route.direct_status
        if self.client_11 and not self.close_after and not self.method_head:
            self.send(route.direct_full)
            return
        parts = [route.direct_head]
        if self.close_after:
            parts.append(HDR_CLOSE)
        elif not self.client_11:
            parts.append(HDR_KEEP_ALIVE)
        parts.append(CRLF)
        if not self.method_head:
            parts.append(route.direct_body)
        self.send(b"".join(parts))

    cdef void finish_local(self):
        self.end_exchange(log=True)

    # --- proxying --------------------------------------------------------------------------

    cdef start_proxy(self, Route route, bytes authority):
        cdef H1Parser p = self.parser
        cdef Cluster cluster
        cdef int ci, ei, i, hid
        cdef bytes key = None
        cdef object v
        cdef const char* head = PyBytes_AS_STRING(p.head)
        cdef list extra
        cdef bytes target, xff, rid, first

        # pick the cluster (traffic split), then the endpoint
        if route.split is not None:
            ci = route.split.pick(NULL, 0)
            cluster = <Cluster>route.clusters[ci]
        else:
            cluster = <Cluster>route.clusters[0]
        self.cluster = cluster
        if cluster.hash_kind == HASH_HEADER:
            v = p.get(cluster.hash_name)
            key = v
        elif cluster.hash_kind == HASH_CLIENT_IP:
            key = self.client_ip
        elif cluster.hash_kind == HASH_COOKIE:
            key = cookie_value(p.get(b"cookie"), cluster.hash_name)
        if key is not None:
            ei = cluster.balancer.pick(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))
        else:
            ei = cluster.balancer.pick(NULL, 0)
        if ei < 0:
            self.local(503, b"no healthy upstream\n", None, False)
            return
        self.ep_index = ei
        self.ep_slot = (<Endpoint>cluster.endpoints[ei]).stats_slot
        self.pool = <Pool>(<Endpoint>cluster.endpoints[ei]).pool

        # the upstream head: rewritten target, forwarded headers, framing
        target = rewrite_prefix(self.path, route.prefix_from, route.prefix_to)
        xff = None
        rid = None
        for i in range(p.nheaders):
            hid = p.hdr_id[i]
            if hid == H_X_FORWARDED_FOR:
                v = p.header_value(i)
                xff = v if xff is None else xff + b", " + v
                p.hdr_flags[i] |= HF_DROP
            elif hid == H_X_FORWARDED_PROTO or hid == H_X_FORWARDED_HOST:
                p.hdr_flags[i] |= HF_DROP
            elif hid == H_X_REQUEST_ID:
                if rid is None and valid_request_id(head + p.value_s[i], p.value_e[i] - p.value_s[i]):
                    rid = p.header_value(i)
                else:
                    p.hdr_flags[i] |= HF_DROP
            elif hid == H_HOST and authority is not None:
                p.hdr_flags[i] |= HF_DROP
            if route.drop_names:
                for name in route.drop_names:
                    if name_is(head + p.name_s[i], p.name_e[i] - p.name_s[i], <bytes>name):
                        p.hdr_flags[i] |= HF_DROP
        extra = []
        if authority is not None:
            extra.append(b"host: " + authority + CRLF)
        elif p.host_index < 0:
            # an HTTP/1.0 request without Host: HTTP/1.1 upstreams require one (nginx sends
            # the upstream's address the same way)
            extra.append(b"host: " + self.pool.address + CRLF)
        if xff is None:
            if self.xff_line is None:
                self.xff_line = b"x-forwarded-for: " + self.client_ip + CRLF
            extra.append(self.xff_line)
        else:
            extra.append(b"x-forwarded-for: " + xff + b", " + self.client_ip + CRLF)
        extra.append(HDR_XFP_HTTP)
        if p.host_index >= 0 and authority is None:
            # clients send the same Host on every request of a connection: build its line once
            i = p.host_index
            if (self.xfh_value is None or PyBytes_GET_SIZE(self.xfh_value) != p.value_e[i] - p.value_s[i]
                    or memcmp(PyBytes_AS_STRING(self.xfh_value), head + p.value_s[i],
                              p.value_e[i] - p.value_s[i]) != 0):
                self.xfh_value = p.header_value(i)
                self.xfh_line = b"x-forwarded-host: " + self.xfh_value + CRLF
            extra.append(self.xfh_line)
        elif authority is not None:
            extra.append(b"x-forwarded-host: " + authority + CRLF)
        if rid is None:
            rid = new_request_id_line()
            extra.append(rid)
            self.request_id_line = True
        self.request_id = rid
        if route.add_lines:
            extra.extend(route.add_lines)
        if self.fctx is not None:
            ctx = self.fctx
            if ctx.set_request or ctx.remove_request:
                extra.extend(self.filter_edits(p, ctx.set_request, ctx.remove_request))
            if ctx.path != self.path.decode("latin-1"):
                target = ctx.path.encode("latin-1")
        if self.req_chunked:
            extra.append(HDR_CHUNKED)
        if self.upgrade:
            i = p.find(H_UPGRADE)
            if i >= 0:
                extra.append(HDR_CONN_UPGRADE)
                extra.append(b"upgrade: " + without_h2c(p.header_value(i)) + CRLF)
        if target is self.path and authority is None and not self.path_changed and p.version_minor == 1:
            first = sub(p.head, p.method_s, p.target_e + 11)   # "METHOD target HTTP/1.1\r\n" as received
        else:
            first = self.method + b" " + target + HTTP11
        self.up_head = build_head(p, first, extra)
        self.pending = None
        self.pending_size = 0
        if route.timeout > 0:
            self.deadline = self.t0 + route.timeout     # checked by Worker.sweep_timeouts
        self.lb_begin()
        self.xstate = X_CONNECTING
        self.get_connection(False)

    cdef get_connection(self, bint fresh):
        cdef Pool pool = self.pool
        cdef Upstream up = None
        if not fresh:
            up = <Upstream>pool.take_idle()
        if up is not None:
            self.attach(up)
            return
        if pool.may_open():
            if self.worker.open_fds + 1 > self.worker.fd_limit:
                self.worker.count(ST_EV_ACCEPT_FAILED)
                self.worker.warn("fds", "out of file descriptors: no new upstream connection")
                self.fail(503, b"proxy out of file descriptors\n")
                return
            pool.opened()
            self.loop.create_task(self.connect(pool))
            return
        if fresh:
            # a retry must not queue behind the pool: it already waited once
            self.fail(503, b"upstream connection pool overflow\n")
            return
        self.waiter = self.on_pool_free
        if not pool.add_waiter(self.waiter):
            self.waiter = None
            self.fail(503, b"upstream connection pool overflow\n")

    def on_pool_free(self):
        self.waiter = None
        if self.xstate == X_CONNECTING:
            self.get_connection(False)
            self.flush()

    async def connect(self, Pool pool):
        loop = self.loop
        worker = self.worker
        try:
            _, up = await asyncio.wait_for(
                loop.create_connection(lambda: Upstream(pool, worker), pool.host, pool.port,
                                       ssl=pool.ssl_context,
                                       server_hostname=pool.server_hostname
                                       if pool.ssl_context is not None else None),
                pool.connect_timeout)
        except (OSError, asyncio.TimeoutError, ssl.SSLError, ssl.CertificateError) as exc:
            pool.connect_failed()
            if self.xstate == X_CONNECTING and self.pool is pool:
                if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
                    self.worker.count(ST_EV_ACCEPT_FAILED)
                    self.worker.warn("fds", "out of file descriptors: no new upstream connection")
                    self.fail(503, b"proxy out of file descriptors\n")
                else:
                    self.worker.upstream_failed(pool, self.ep_slot, False, "connect failed: %s"
                                                % (str(exc) or type(exc).__name__))
                    self.fail(502, b"upstream connect error\n")
                self.flush()
            return
        if self.xstate == X_CONNECTING and self.pool is pool and not self.closed:
            self.attach(<Upstream>up)
            self.flush()
        else:
            pool.release(<Upstream>up, monotonic_now())   # nobody waits for it any more: keep it warm

    cdef attach(self, Upstream up):
        cdef H1Parser rp = up.parser
        self.up = up
        self.xstate = X_PROXYING
        self.t_attach = monotonic_now()
        up.ds = self
        up.got_bytes = False
        rp.expect_response(self.method_head)
        up.write(self.up_head)
        if self.pending is not None:
            up.transport.writelines(self.pending)
            self.pending = None
            self.pending_size = 0
            self.resume_client(PAUSE_PENDING)

    cdef void lb_begin(self):
        self.cluster.balancer.begin(self.ep_index)
        self.lb_active = True
        if self.worker.stats is not None:
            self.worker.stats.endpoint_begin(self.worker.stats_worker, self.ep_slot)

    cdef void lb_done(self):
        if self.lb_active:
            self.lb_active = False
            self.cluster.balancer.end(self.ep_index)
            if self.worker.stats is not None:
                self.worker.stats.endpoint_end(self.worker.stats_worker, self.ep_slot)

    cdef void to_upstream(self, bytes b):
        if self.up is not None:
            self.up.write(b)
        else:
            if self.pending is None:
                self.pending = []
            self.pending.append(b)
            self.pending_size += PyBytes_GET_SIZE(b)
            if self.pending_size > PENDING_BODY_LIMIT:
                self.pause_client(PAUSE_PENDING)

    cdef on_body(self):
        cdef H1Parser p = self.parser
        cdef Py_ssize_t n = p.ev_end - p.ev_start
        cdef bytes chunk
        self.bytes_in += n
        if self.xstate == X_LOCAL or self.xstate == X_DONE_WAIT:
            return          # answered already: drop the body
        if p.ev_start == 0 and n == PyBytes_GET_SIZE(p.data):
            chunk = p.data
        else:
            chunk = sub(p.data, p.ev_start, p.ev_end)
        if self.req_chunked:
            self.to_upstream(chunk_size_line(n))
            self.to_upstream(chunk)
            self.to_upstream(CRLF)
        else:
            self.to_upstream(chunk)

    cdef on_request_end(self):
        self.req_done = True
        if self.xstate == X_LOCAL:
            if self.resp_started:
                self.finish_local()
            return
        if self.xstate == X_DONE_WAIT:
            self.end_exchange(log=False)
            return
        if self.req_chunked:
            self.to_upstream(LAST_CHUNK + self.parser.trailers_raw + CRLF)

    # --- response side ---------------------------------------------------------------------

    cdef on_response_data(self, Upstream up):
        cdef H1Parser rp = up.parser
        cdef int ev
        cdef Py_ssize_t n
        while up.ds is self:
            ev = rp.next_event()
            if ev == EV_NEED_DATA:
                break
            elif ev == EV_HEAD:
                self.on_response_head(rp)
            elif ev == EV_BODY:
                n = rp.ev_end - rp.ev_start
                if rp.ev_start == 0 and n == PyBytes_GET_SIZE(rp.data):
                    chunk = rp.data
                else:
                    chunk = sub(rp.data, rp.ev_start, rp.ev_end)
                if self.resp_chunked:
                    self.send(chunk_size_line(n))
                    self.send(chunk)
                    self.send(CRLF)
                else:
                    self.send(chunk)
            elif ev == EV_END:
                if rp.status < 200 and not rp.upgrade:
                    continue       # an interim response ended; the real one follows
                if self.resp_chunked:
                    self.send(LAST_CHUNK + rp.trailers_raw + CRLF)
                if rp.upgrade:
                    self.start_tunnel(up)
                    break
                self.response_complete(up, rp.keep_alive)
                break
            elif ev == EV_PAUSED:
                break
            else:
                # Garbage where a reused connection's first response head should be is most
                # likely what an earlier response left behind, arriving late (a body after
                # HEAD in its own segment): that connection is broken, not the request.
                self.upstream_broke(up, True, self.status == 0 and not self.resp_started)
                break
        self.flush()

    cdef on_response_head(self, H1Parser rp):
        cdef int st = rp.status
        cdef list extra
        cdef int kind
        if st < 200 and st != 101:
            if st == 100 and self.expect_continue and not self.resp_started:
                self.send(CONTINUE_100)
            return
        self.status = st
        extra = []
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
                extra.extend(self.filter_edits(rp, ctx.set_response, ctx.remove_response))
        self.resp_started = True
        if st == 101:
            if not self.upgrade:
                self.upstream_broke(self.up, True)
                return
            i = rp.find(H_UPGRADE)
            extra.append(HDR_CONN_UPGRADE)
            if i >= 0:
                extra.append(b"upgrade: " + rp.header_value(i) + CRLF)
        else:
            if self.upgrade:
                self.close_after = True     # the request parser is paused: no next request
            kind = rp.body_kind
            if kind == BODY_CHUNKED or kind == BODY_UNTIL_CLOSE:
                if self.client_11:
                    self.resp_chunked = True
                    extra.append(HDR_CHUNKED)
                else:
                    self.close_after = True  # HTTP/1.0: the body ends at close
            if self.worker.draining:
                self.close_after = True
            if self.close_after:
                extra.append(HDR_CLOSE)
            elif not self.client_11:
                extra.append(HDR_KEEP_ALIVE)
        self.send(build_head(rp, status_line(rp), extra))

    cdef start_tunnel(self, Upstream up):
        """101 Switching Protocols: from now on bytes pass both ways untouched."""
        cdef bytes rest
        self.xstate = X_TUNNEL
        self.cancel_timer()
        rest = up.parser.leftover()
        if rest:
            self.send(rest)
        rest = self.parser.leftover()
        if rest and up.transport is not None:
            up.transport.write(rest)

    cdef response_complete(self, Upstream up, bint upstream_keep_alive):
        cdef Pool pool = self.pool
        up.served += 1
        up.ds = None
        self.up = None
        self.lb_done()
        if up.paused_reading and up.transport is not None:
            up.paused_reading = False
            up.transport.resume_reading()
        if up.parser.buffered() > 0:
            # bytes past the end of the response: pooled, they would be the next client's
            self.worker.upstream_extra_data(pool)
            up.close_now()
        elif upstream_keep_alive and self.req_done and up.transport is not None:
            pool.release(up, monotonic_now())
        else:
            up.close_now()
        if self.req_done:
            self.end_exchange(log=True)
        else:
            # answered before the request body ended: read the rest of it and drop it
            self.xstate = X_DONE_WAIT
            self.log_exchange()

    cdef on_upstream_lost(self, Upstream up):
        cdef H1Parser rp = up.parser
        cdef int ev
        if self.xstate == X_TUNNEL:
            self.flush()
            self.close_now()
            return
        # a response delimited by close ends here
        if up.got_bytes and rp.body_kind == BODY_UNTIL_CLOSE and self.resp_started:
            up.ds = self
            ev = rp.feed_eof()
            up.ds = None
            if ev == EV_END:
                if self.resp_chunked:
                    self.send(LAST_CHUNK + CRLF)
                self.up = None
                self.lb_done()
                if self.req_done:
                    self.end_exchange(log=True)
                else:
                    self.xstate = X_DONE_WAIT
                    self.log_exchange()
                self.flush()
                return
        self.upstream_broke(up, False)
        self.flush()

    cdef upstream_broke(self, Upstream up, bint close_upstream, bint stale_bytes=False):
        """The upstream failed mid-exchange: retry, 502, or abort the client. `stale_bytes`:
        the bytes read were not a response head (see on_response_data)."""
        self.up = None
        up.ds = None
        if close_upstream:
            up.close_now()
        self.lb_done()
        # Retry only on a connection that waited in the pool (idle_since is set by release):
        # the upstream may have closed it meanwhile. `served > 0` would miss one opened for a
        # client that left before it connected, pooled without ever serving.
        if ((not up.got_bytes or stale_bytes) and up.idle_since > 0 and not self.retried
                and not self.req_has_body and self.method in IDEMPOTENT):
            if stale_bytes:
                self.worker.upstream_extra_data(self.pool)
            self.retried = True
            self.xstate = X_CONNECTING
            self.lb_begin()
            self.get_connection(True)
            return
        self.worker.upstream_failed(self.pool, self.ep_slot, True,
                                    "connection broke after the response started"
                                    if self.resp_started else
                                    "connection broke before a response")
        if not self.resp_started:
            self.fail(502, b"upstream connection broke before a response\n")
        else:
            self.flush()
            self.close_now()

    cdef fail(self, int status, bytes body):
        """A proxied exchange ends with a local error reply."""
        self.cancel_timer()
        if self.waiter is not None:
            self.pool.remove_waiter(self.waiter)
            self.waiter = None
        self.lb_done()
        self.pending = None
        if not self.req_done:
            self.close_after = True
        self.local(status, body, None, self.close_after)
        if not self.req_done:
            # we stop reading the body: the connection cannot carry another request
            self.req_done = True
            self.finish_local()

    cdef void on_timeout(self) except *:
        """The route timeout fell due (see check_timeouts)."""
        if self.xstate == X_CONNECTING or self.xstate == X_PROXYING:
            self.abort_upstream()
            self.xstate = X_LOCAL
            if not self.resp_started:
                self.close_after = self.close_after or not self.req_done
                self.local(504, b"upstream request timeout\n", None, self.close_after)
                if not self.req_done:
                    self.req_done = True
                    self.finish_local()
                self.flush()
            else:
                self.status = 504
                self.flush()
                self.close_now()

    cdef inline void cancel_timer(self) noexcept:
        self.deadline = 0

    cdef abort_upstream(self):
        """Stop the upstream side of the exchange (client gone, timeout): never pool it."""
        cdef Upstream up = self.up
        self.cancel_timer()
        if self.waiter is not None:
            self.pool.remove_waiter(self.waiter)
            self.waiter = None
        if up is not None:
            self.up = None
            up.ds = None
            up.close_now()
        self.lb_done()

    cdef end_exchange(self, bint log):
        """The exchange is over on both sides: log it, then close or go on with the next."""
        self.cancel_timer()
        self.lb_done()
        if log:
            self.log_exchange()
        self.worker.requests += 1
        if self.counted:
            self.counted = False
            self.worker.stats.add_gauge(self.worker.stats_worker, ST_GAUGE_REQUESTS, -1)
        self.xstate = X_IDLE
        self.up = None
        self.pending = None
        self.route = None
        if self.closed:
            return
        if self.close_after or self.worker.draining:
            self.linger()
            return
        self.since = monotonic_now()       # idle from now, or a pipelined head is under way
        if self.client_pause:
            self.client_pause = PAUSE_BACKLOG  # the other reasons ended with the exchange
            if not self.write_paused:
                self.resume_client(PAUSE_BACKLOG)
        if not self.in_process:
            self.process()

    cdef log_exchange(self):
        """Once per exchange, when its response is complete: the stats, then the access log."""
        cdef double now = monotonic_now()
        cdef Stats st = self.worker.stats
        if st is not None:
            st.record(self.worker.stats_worker,
                      self.route.stats_slot if self.route is not None else -1,
                      self.cluster.stats_slot if self.cluster is not None else -1,
                      self.status, now - self.t0, self.bytes_in, self.bytes_out)
        cdef AccessLog log = self.worker.access_log
        if log is None:
            return
        cdef LogEntry e
        cdef H1Parser p = self.parser
        cdef const char* head
        cdef bytes rid = self.request_id
        cdef int i
        e.client_ip = PyBytes_AS_STRING(self.client_ip)
        e.client_ip_len = PyBytes_GET_SIZE(self.client_ip)
        e.client_port = self.client_port
        e.method = PyBytes_AS_STRING(self.method) if self.method is not None else NULL
        e.method_len = PyBytes_GET_SIZE(self.method) if self.method is not None else 0
        e.path = PyBytes_AS_STRING(self.path) if self.path is not None else NULL
        e.path_len = PyBytes_GET_SIZE(self.path) if self.path is not None else 0
        e.http_minor = 1 if self.client_11 else 0
        e.host = e.user_agent = e.referer = NULL
        e.host_len = e.user_agent_len = e.referer_len = 0
        if self.head_valid:
            head = PyBytes_AS_STRING(p.head)
            if self.log_host is not None:
                e.host = PyBytes_AS_STRING(self.log_host)
                e.host_len = PyBytes_GET_SIZE(self.log_host)
            elif p.host_index >= 0:
                e.host = head + p.value_s[p.host_index]
                e.host_len = p.value_e[p.host_index] - p.value_s[p.host_index]
            for i in range(p.nheaders):
                if e.user_agent == NULL and name_is(head + p.name_s[i], p.name_e[i] - p.name_s[i],
                                                    b"user-agent"):
                    e.user_agent = head + p.value_s[i]
                    e.user_agent_len = p.value_e[i] - p.value_s[i]
                elif (e.referer == NULL and log.format == LOG_COMBINED    # json has no referer
                      and name_is(head + p.name_s[i], p.name_e[i] - p.name_s[i], b"referer")):
                    e.referer = head + p.value_s[i]
                    e.referer_len = p.value_e[i] - p.value_s[i]
        if rid is None or PyBytes_GET_SIZE(rid) == 0:
            e.request_id, e.request_id_len = NULL, 0
        elif self.request_id_line:
            e.request_id, e.request_id_len = PyBytes_AS_STRING(rid) + 14, 36
        else:
            e.request_id, e.request_id_len = PyBytes_AS_STRING(rid), PyBytes_GET_SIZE(rid)
        e.status = self.status
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
        e.listener = PyUnicode_AsUTF8AndSize(self.lname, &e.listener_len)
        log.record(&e)

    cdef void close_now(self):
        self.flush()
        self.lingering = True           # nothing more is parsed or answered
        if self.transport is not None:
            self.transport.close()

    def drain_close(self):
        if self.xstate == X_IDLE:
            self.close_now()
        else:
            self.close_after = True


cdef bytes status_line(H1Parser rp):
    """The response's first line as HTTP/1.1 (we speak 1.1 to the client whatever the upstream).
    The line starts at rp.method_s, not at 0: the head buffer may begin with an interim (1xx)
    response that arrived in the same read."""
    cdef Py_ssize_t start = rp.method_s, n = rp.reason_e - rp.method_s
    cdef const char* src = PyBytes_AS_STRING(rp.head) + start
    cdef bytes line = PyBytes_FromStringAndSize(NULL, n + 2)
    cdef char* out = PyBytes_AS_STRING(line)
    memcpy(out, src, n)
    if rp.version_minor != 1:
        memcpy(out, b"HTTP/1.1", 8)
    out[n] = b'\r'
    out[n + 1] = b'\n'
    return line


cdef bytes without_h2c(bytes value):
    """An Upgrade value without its h2c tokens: we do not do the h2c upgrade, and an upstream
    that did would take the connection out of our hands (h2c smuggling)."""
    if b"h2c" not in value.lower():
        return value
    return b", ".join([t.strip() for t in value.split(b",")
                       if t.strip() and t.strip().lower() != b"h2c"])

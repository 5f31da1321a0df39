# cython: language_level=3
"""The HTTP/1.1 protocol objects that move bytes: `H1Downstream` (a client connection) and
`Upstream` (a pooled connection to an endpoint), plus `Worker`, the per-process context they
share. A request's policy is not here: it is the `Exchange`'s (exchange.pyx); these objects
only frame what it decides.

Theory of operation
-------------------
* uvloop calls the protocol methods; everything a request touches runs here, compiled. A client
  connection carries one exchange at a time (one `Exchange` object, reused): its request parser
  is not advanced past the end of a request until the response to it is complete, so pipelined
  requests wait, parsed in order, in the parser's buffer (and the socket is paused if that
  buffer grows past PIPELINE_BUFFER).
* H1Downstream turns a parsed head into the exchange's inputs (method, target, authority, body
  facts) and writes what the exchange answers: local replies and direct responses in their
  HTTP/1.1 wire form (cached per snapshot on the Route), and the upstream's response with the
  client-side framing (Content-Length kept, or re-chunked, or close-delimited for HTTP/1.0).
* Upstream writes the exchange's request head (headers.build_head over the request's
  HeaderBlock plus the exchange's edits) and body framing, parses the response and hands the
  exchange its head, data and end; at the end it goes back to its pool only with nothing
  unread (or the next client would read an earlier response's leftovers).
* Backpressure both ways: when one side's transport is above its high-water mark
  (pause_writing), the other side stops reading until resume_writing. Nothing buffers a body,
  except the request body that arrives before the upstream connection is ready, and that pauses
  the client at the exchange's PENDING_BODY_LIMIT.
* Output to the client is collected per event batch and written once (writelines -> one writev).
* Timeouts: one sweep per worker (Worker.sweep_timeouts) checks the listener timeouts and the
  route deadline of every connection; no timer per request.
* The clock: `limiter.monotonic_now()` (CLOCK_MONOTONIC through the vDSO: no syscall and no
  Python call), the same clock the pool's idle sweep and the limiter's buckets use.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from libc.string cimport memcpy

from engine._fast.debug cimport (
    live_add, SLUICE_DEBUG, LIVE_DOWNSTREAM, LIVE_UPSTREAM, LIVE_TLS,
)
from engine._fast.errors cimport (
    E_CONNECT_METHOD, E_BAD_TARGET, E_BAD_HOST, E_HEADER_TIMEOUT, E_BODY_TIMEOUT, E_BAD_RESPONSE,
)
from engine._fast.exchange cimport (
    Exchange, Services, Downstream, UpstreamConn,
    X_IDLE, X_LOCAL, X_WAITING, X_PROXYING, X_TUNNEL, X_BODY_WAIT,
    PAUSE_UPSTREAM, PAUSE_BACKLOG, PAUSE_PENDING,
)
from engine._fast.headers cimport (
    HeaderBlock, build_head, H_UPGRADE, H_CONTENT_LENGTH, HF_DROP, HF_HOP,
)
from engine._fast.http1 cimport (
    H1Parser, chunk_size_line, check_authority,
    EV_NEED_DATA, EV_HEAD, EV_BODY, EV_END, EV_ERROR, EV_PAUSED,
    BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_UNTIL_CLOSE,
)
from engine._fast.limiter cimport monotonic_now
from engine._fast.pool cimport Pool, PROTO_HTTP2
from engine._fast.stats cimport (
    ST_GAUGE_CONNECTIONS, ST_EV_ACCEPT_FAILED, ST_EV_TIMEOUT_HEADER, ST_EV_TIMEOUT_BODY,
    ST_EV_TIMEOUT_SEND, ST_EV_TIMEOUT_IDLE, ST_EV_CONNECTION_LIMIT,
)
from engine._fast.tables cimport Tables, Listener, Route

import http
import os
import resource
import asyncio
import ssl

from engine._fast.exchange import reseed_request_ids

DEF PIPELINE_BUFFER = 1048576        # unparsed client bytes held before we stop reading it
DEF OUT_FLUSH = 65536                # collected output written before parsing on (see process)
DEF FD_RESERVE = 32                  # descriptors kept free for logs, reloads, the admin side
DEF LINGER = 2.0                     # seconds a closing connection reads and drops input
DEF TICK_MAX = 0.5                   # the timeout sweep runs at least this often (seconds)
DEF TICK_MIN = 0.01

cdef bytes CRLF = b"\r\n"
cdef bytes LAST_CHUNK = b"0\r\n"
cdef bytes CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
cdef bytes HDR_CLOSE = b"connection: close\r\n"
cdef bytes HDR_KEEP_ALIVE = b"connection: keep-alive\r\n"
cdef bytes HTTP11 = b" HTTP/1.1\r\n"
cdef bytes N_CONNECTION = b"connection"
cdef bytes N_UPGRADE = b"upgrade"
cdef bytes N_TE = b"transfer-encoding"
cdef bytes N_CONTENT_LENGTH = b"content-length"
cdef bytes V_ZERO = b"0"
cdef bytes V_CLOSE = b"close"
cdef bytes V_KEEP_ALIVE = b"keep-alive"
cdef bytes V_UPGRADE = b"upgrade"
cdef bytes V_CHUNKED = b"chunked"
cdef bytes CONNECT = b"CONNECT"

# reason phrases of local replies (a filter's Reply may use any status: RFC 9112 4 allows an
# empty reason for the ones without a standard phrase, which is what nginx sends)
cdef dict REASONS = {s.value: s.phrase.encode() for s in http.HTTPStatus}
REASONS[413] = b"Content Too Large"     # RFC 9110's name (Python still says "Request Entity...")


cdef inline bytes sub(bytes b, Py_ssize_t start, Py_ssize_t end):
    """b[start:end] without the slice object Cython's generic slicing builds."""
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(b) + start, end - start)


cpdef bytes local_reply(int status, bytes body=None, list headers=None, bint close=False):
    """The HTTP/1.1 wire form of a reply the proxy generates itself (an error-table row, 429, a
    filter's Reply). `headers` is a flat [name, value, ...] list with lowercase names; a
    content-type among them replaces the default text/plain."""
    cdef bytes reason = REASONS.get(status, b"")
    cdef Py_ssize_t i
    cdef bint typed = False
    if body is None:
        body = (b"%d %s\n" % (status, reason))
    parts = [b"HTTP/1.1 %d %s\r\ncontent-length: %d\r\n" % (status, reason, len(body))]
    if headers:
        for i in range(0, len(headers), 2):
            if headers[i] == b"content-type":
                typed = True
            parts.append(headers[i] + b": " + headers[i + 1] + CRLF)
    if not typed:
        parts.append(b"content-type: text/plain\r\n")
    if close:
        parts.append(HDR_CLOSE)
    parts.append(CRLF)
    parts.append(body)
    return b"".join(parts)


cdef tuple direct_wire(Route r):
    """A direct response in HTTP/1.1: (status line + headers, without the connection header
    and the empty line), and the whole keep-alive reply an HTTP/1.1 client gets as one object."""
    cdef Py_ssize_t i
    cdef list h = r.direct_headers
    lines = [b"HTTP/1.1 %d %s\r\n" % (r.direct_status, REASONS.get(r.direct_status, b""))]
    for i in range(0, len(h), 2):
        lines.append(h[i] + b": " + h[i + 1] + CRLF)
    if r.direct_status not in (204, 304):
        lines.append(b"content-length: %d\r\n" % len(r.direct_body))
    head = b"".join(lines)
    return (head, head + CRLF + r.direct_body)


cdef bint has_length(HeaderBlock h):
    """A content-length field that goes out (not dropped)."""
    cdef int i
    for i in range(h.nheaders):
        if h.hdr_id[i] == H_CONTENT_LENGTH and not (h.hdr_flags[i] & (HF_DROP | HF_HOP)):
            return True
    return False


cdef bytes status_line(HeaderBlock h, int status):
    """The response's first line as HTTP/1.1 (we speak 1.1 to the client whatever the upstream).
    From an HTTP/1.x upstream the line is copied from rp.method_s, not from 0: the head buffer
    may begin with an interim (1xx) response that arrived in the same read."""
    cdef H1Parser rp
    cdef Py_ssize_t start, n
    cdef bytes line
    cdef char* out
    if type(h) is not H1Parser:
        return b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b""))
    rp = <H1Parser>h
    start = rp.method_s
    n = rp.reason_e - rp.method_s
    line = PyBytes_FromStringAndSize(NULL, n + 2)
    out = PyBytes_AS_STRING(line)
    memcpy(out, PyBytes_AS_STRING(rp.head) + start, n)
    if rp.version_minor != 1:
        memcpy(out, b"HTTP/1.1", 8)
    out[n] = b'\r'
    out[n + 1] = b'\n'
    return line


cdef class H1Downstream

H2Downstream = None                  # h2server.H2Downstream, imported on first use (it cimports us)
cdef bytes H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@cython.final
cdef class Worker(Services):
    """What one process (or one embedded proxy) serves with: the current Tables, the live client
    connections (for drain) and the access log sink."""

    def __init__(self, loop, Tables tables, access_log=None, stats=None,
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

    cdef void open_upstream(self, Exchange x, Pool pool) except *:
        if pool.protocol == PROTO_HTTP2:
            # an HTTP/2 connection, shared by the streams of many exchanges (h2client.pyx)
            from engine._fast.h2client import open_connection
            open_connection(self, x, pool)
            return
        self.loop.create_task(self.connect(x, pool))

    async def connect(self, Exchange x, Pool pool):
        """Open a connection to `pool`'s endpoint (TLS when the pool has a context) for `x`,
        which decides what becomes of it (exchange.lease_granted / connect_failed)."""
        worker = self
        try:
            _, up = await asyncio.wait_for(
                self.loop.create_connection(lambda: Upstream(pool, worker), pool.host, pool.port,
                                            ssl=pool.ssl_context,
                                            server_hostname=pool.server_hostname
                                            if pool.ssl_context is not None else None),
                pool.connect_timeout)
        except (OSError, asyncio.TimeoutError, ssl.SSLError, ssl.CertificateError) as exc:
            x.connect_failed(pool, exc)
            return
        x.lease_granted(<UpstreamConn>up)

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
        """The factory for loop.create_server(): one H1Downstream per accepted connection."""
        worker = self
        def factory():
            return H1Downstream(worker, listener_name)
        return factory

    def swap(self, Tables tables):
        """Serve `tables` from the next request on; exchanges in flight keep theirs. The sweep
        runs often enough for the shortest timeout they configure (a tenth of it: a timeout
        fires within 10% of its value)."""
        cdef double shortest = TICK_MAX * 10
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
                if 0 < r.per_try_timeout < shortest:
                    shortest = r.per_try_timeout
        self.tick = min(TICK_MAX, max(TICK_MIN, shortest / 10))

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

    cdef void conn_opened(self, object conn, int lslot) except *:
        self.conns.add(conn)
        if self.stats is not None:
            self.stats.listener_connections(self.stats_worker, lslot, 1)
            self.stats.set_gauge(self.stats_worker, ST_GAUGE_CONNECTIONS, len(self.conns))

    cdef void conn_closed(self, object conn, str lname, int lslot) except *:
        self.release_connection(lname)
        self.conns.discard(conn)
        if self.stats is not None:
            self.stats.listener_connections(self.stats_worker, lslot, -1)
            self.stats.set_gauge(self.stats_worker, ST_GAUGE_CONNECTIONS, len(self.conns))

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
cdef class Upstream(UpstreamConn):
    """An HTTP/1.1 connection to an endpoint, leased whole to one exchange at a time."""
    cdef H1Parser parser
    cdef object write            # transport.write, bound once (a lookup by name per call costs)
    cdef Worker worker
    cdef bint tls_live           # counted under LIVE_TLS (debug build)

    def __cinit__(self):
        live_add(LIVE_UPSTREAM, 1)

    def __dealloc__(self):
        live_add(LIVE_UPSTREAM, -1)
        if self.tls_live:
            live_add(LIVE_TLS, -1)

    def __init__(self, Pool pool, Worker worker):
        self.pool = pool
        self.worker = worker
        self.parser = H1Parser(is_request=False)

    def connection_made(self, transport):
        self.transport = transport
        self.write = transport.write
        self.worker.open_fds += 1
        if SLUICE_DEBUG and transport.get_extra_info("ssl_object") is not None:
            self.tls_live = True
            live_add(LIVE_TLS, 1)

    def data_received(self, bytes data):
        cdef Exchange x = self.x
        if x is None:
            # Bytes on an idle pooled connection: the upstream broke framing. Never reuse it.
            self.close_now()
            return
        self.got_bytes = True
        if x.state == X_TUNNEL:
            (<H1Downstream>x.ds).tunnel_out(x, data)
            return
        self.parser.feed(data)
        self.parse_response(x)

    cdef void parse_response(self, Exchange x) except *:
        cdef H1Parser rp = self.parser
        cdef int ev
        cdef Py_ssize_t n
        cdef bytes chunk
        while self.x is x:
            ev = rp.next_event()
            if ev == EV_NEED_DATA:
                break
            elif ev == EV_HEAD:
                x.response_head(rp, rp.status, rp.body_kind)
            elif ev == EV_BODY:
                n = rp.ev_end - rp.ev_start
                if rp.ev_start == 0 and n == PyBytes_GET_SIZE(rp.data):
                    chunk = rp.data
                else:
                    chunk = sub(rp.data, rp.ev_start, rp.ev_end)
                x.response_data(chunk)
            elif ev == EV_END:
                if rp.status < 200 and not rp.upgrade:
                    continue       # an interim response ended; the real one follows
                if rp.upgrade:
                    x.response_upgraded(self)
                    break
                x.response_end(self, rp.trailers_raw, rp.keep_alive)
                break
            elif ev == EV_PAUSED:
                break
            else:
                # Garbage where a reused connection's first response head should be is most
                # likely what an earlier response left behind, arriving late (a body after
                # HEAD in its own segment): that connection is broken, not the request.
                x.upstream_broke(self, True, x.status == 0 and not x.resp_started, E_BAD_RESPONSE)
                break
        x.ds.flush()

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        cdef Exchange x = self.x
        cdef int ev
        self.worker.open_fds -= 1
        self.pool.forget(self)
        self.transport = None
        self.write = None
        if x is None:
            return
        # a response delimited by close ends here
        if (self.got_bytes and x.state == X_PROXYING and x.resp_started
                and self.parser.body_kind == BODY_UNTIL_CLOSE):
            ev = self.parser.feed_eof()
            if ev == EV_END:
                x.response_end(self, b"", False)
                x.ds.flush()
                return
        self.x = None
        x.upstream_lost(self)

    def pause_writing(self):
        if self.x is not None:
            self.x.ds.pause_client(self.x, PAUSE_UPSTREAM)

    def resume_writing(self):
        if self.x is not None:
            self.x.ds.resume_client(self.x, PAUSE_UPSTREAM)

    # --- what the exchange asks of its upstream -----------------------------------------------

    cdef void send_request(self, Exchange x) except *:
        cdef HeaderBlock h = x.req
        cdef H1Parser p
        cdef bytes first
        cdef list edits = x.edits
        if x.req_body_kind == BODY_CHUNKED:
            edits = edits + [N_TE, V_CHUNKED]
        if (x.target is x.path and x.authority is None and not x.path_changed
                and type(h) is H1Parser and (<H1Parser>h).version_minor == 1):
            p = <H1Parser>h
            first = sub(p.head, p.method_s, p.target_e + 11)   # "METHOD target HTTP/1.1\r\n" as received
        else:
            first = x.method + b" " + x.target + HTTP11
        self.parser.expect_response(x.method_head)
        self.write(build_head(h, first, edits))

    cdef void send_data(self, Exchange x, bytes chunk) except *:
        if self.transport is None:
            return
        if x.req_body_kind == BODY_CHUNKED:
            self.transport.writelines([chunk_size_line(PyBytes_GET_SIZE(chunk)), chunk, CRLF])
        else:
            self.write(chunk)

    cdef void send_pending(self, Exchange x, list chunks) except *:
        cdef list framed
        if self.transport is None:
            return
        if x.req_body_kind == BODY_CHUNKED:
            framed = []
            for c in chunks:
                framed.append(chunk_size_line(PyBytes_GET_SIZE(<bytes>c)))
                framed.append(c)
                framed.append(CRLF)
            self.transport.writelines(framed)
        else:
            self.transport.writelines(chunks)

    cdef void send_end(self, Exchange x, bytes trailers) except *:
        if self.transport is not None and x.req_body_kind == BODY_CHUNKED:
            self.write(LAST_CHUNK + (trailers or b"") + CRLF)

    cdef void release(self, Exchange x, bint reusable) except *:
        if self.paused_reading:
            self.resume_reading()
        if self.parser.buffered() > 0:
            # bytes past the end of the response: pooled, they would be the next client's
            self.worker.upstream_extra_data(self.pool)
            self.close_now()
        elif reusable and self.transport is not None:
            self.pool.release(self, monotonic_now())
        else:
            self.close_now()


@cython.final
cdef class H1Downstream(Downstream):
    """One client connection speaking HTTP/1.x."""
    cdef Worker worker
    cdef object write              # transport.write and .writelines, bound once
    cdef object writelines
    cdef H1Parser parser
    cdef Exchange x                # the exchange of this connection (reused per request)
    cdef list out                  # response bytes collected in this event batch
    cdef Py_ssize_t out_size       # ... and their size
    cdef bint in_process
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
    cdef double write_blocked      # the client stopped reading at (0: it reads)
    cdef bint listener_gone        # a reload removed our listener: close after this exchange
    # framing of the exchange in flight
    cdef bint close_after
    cdef bint client_11
    cdef bint resp_chunked
    cdef bint tls_live             # counted under LIVE_TLS (debug build)
    cdef bint sniffing             # the first bytes may be an HTTP/2 preface (h2c listener)
    cdef bytes sniffed             # ... a prefix of it, held until the rest arrives

    def __cinit__(self):
        live_add(LIVE_DOWNSTREAM, 1)

    def __dealloc__(self):
        live_add(LIVE_DOWNSTREAM, -1)
        if self.tls_live:
            live_add(LIVE_TLS, -1)

    def __init__(self, Worker worker, str lname):
        self.worker = worker
        self.svc = worker
        self.lname = lname
        self.out = []

    @property
    def exchange_state(self):
        return self.x.state_name if self.x is not None else None

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
        if l.http2 and (l.tls or not l.http1) and self.speaks_h2(transport):
            self.switch_to_h2(transport, None)     # ALPN h2, or an HTTP/2-only listener
            return
        if not self.worker.admit_connection(self.lname, l):
            self.closed = True
            transport.abort()       # nothing was read: a reset, not a response we cannot afford
            return
        self.admitted = True
        # the exchange and this connection point at each other from here to connection_lost,
        # which breaks the cycle (a TLS handshake that fails never gets here: nothing to break)
        self.x = Exchange(self.worker)
        self.x.ds = self
        self.lslot = l.stats_slot
        if l.tls:
            if SLUICE_DEBUG and transport.get_extra_info("ssl_object") is not None:
                self.tls_live = True
                live_add(LIVE_TLS, 1)
            self.identify(transport)
        self.parser = H1Parser(is_request=True, max_head_bytes=l.max_head_bytes,
                               max_headers=l.max_headers, max_uri_bytes=l.max_uri_bytes)
        self.born = self.since = self.last_read = monotonic_now()
        self.fresh = True
        self.sniffing = l.http2 and not l.tls
        self.worker.conn_opened(self, self.lslot)

    cdef bint speaks_h2(self, transport):
        """A TLS client that chose h2 by ALPN; or, on a listener without HTTP/1.1, any client
        (one that offered no ALPN at all is taken to know HTTP/2 from elsewhere)."""
        sslobj = transport.get_extra_info("ssl_object")
        alpn = sslobj.selected_alpn_protocol() if sslobj is not None else None
        return alpn == "h2" or (alpn is None and not self.listener.http1)

    cdef void switch_to_h2(self, transport, bytes data) except *:
        """Hand the connection to the HTTP/2 codec (h2server.pyx), with what it sent so far."""
        global H2Downstream
        if H2Downstream is None:
            from engine._fast.h2server import H2Downstream
        if self.admitted:
            # sniffed h2c: undo this codec's accounting; the HTTP/2 one counts it again
            self.admitted = False
            self.worker.conn_closed(self, self.lname, self.lslot)
            self.x.ds = None
            self.x = None
        self.closed = True
        self.transport = None
        self.write = self.writelines = None
        h2 = H2Downstream(self.worker, self.lname)
        transport.set_protocol(h2)
        h2.connection_made(transport)
        if data:
            h2.data_received(data)

    def data_received(self, bytes data):
        cdef double now = monotonic_now()
        cdef Exchange x = self.x
        if self.closed or self.lingering:
            return
        self.last_read = now
        if self.sniffing:
            # a listener with HTTP/2 and HTTP/1.1 in plaintext: h2c prior knowledge starts with
            # the 24-byte client preface (RFC 9113 3.3), which no HTTP/1.1 request does
            if self.sniffed is not None:
                data = self.sniffed + data
                self.sniffed = None
            n = min(PyBytes_GET_SIZE(data), 24)
            if data[:n] == H2_PREFACE[:n]:
                if n < 24:
                    self.sniffed = data
                    return
                self.switch_to_h2(self.transport, data)
                return
            self.sniffing = False
        if x.state == X_TUNNEL:
            x.bytes_in += len(data)
            if x.up is not None and x.up.transport is not None:
                x.up.transport.write(data)
            return
        if x.state == X_IDLE and self.parser.buffered() == 0:
            self.since = now                 # a new head starts: the header timeout runs
        self.parser.feed(data)
        if (x.state != X_IDLE and x.req_done) or (self.write_paused and x.state == X_IDLE):
            # pipelined bytes behind a request still in flight, or behind replies the client
            # does not read: hold them, but not without bound
            if self.parser.buffered() > PIPELINE_BUFFER:
                self.pause_client(self.x, PAUSE_BACKLOG)
            return
        self.process()

    def eof_received(self):
        cdef Exchange x = self.x
        if x is not None and x.state == X_TUNNEL and x.up is not None and x.up.transport is not None:
            if x.up.transport.can_write_eof():
                x.up.transport.write_eof()
            return True
        return False

    def connection_lost(self, exc):
        self.closed = True
        self.transport = None
        self.write = self.writelines = None
        if not self.admitted:
            return
        self.admitted = False
        self.worker.conn_closed(self, self.lname, self.lslot)
        self.x.client_gone()
        self.x.ds = None               # (the exchange is idle: nothing reaches for the client)
        self.worker._check_idle()

    def pause_writing(self):
        # The client does not read what we send: stop reading the upstream (its response waits
        # in the kernel, not here) and start no new exchange; the send timeout runs.
        self.write_paused = True
        self.write_blocked = monotonic_now()
        if self.x is not None and self.x.up is not None:
            self.x.up.pause_reading()

    def resume_writing(self):
        self.write_paused = False
        self.write_blocked = 0
        if self.x is None:
            return
        if self.x.up is not None:
            self.x.up.resume_reading()
        if self.x.state == X_IDLE and not self.closed:
            self.resume_client(self.x, PAUSE_BACKLOG)
            if not self.in_process:
                self.process()

    cdef void pause_client(self, Exchange x, int why) except *:
        if self.client_pause == 0 and self.transport is not None:
            self.transport.pause_reading()
        self.client_pause |= why

    cdef void resume_client(self, Exchange x, int why) except *:
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
        cdef Exchange x = self.x
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
        if x.deadline > 0 and now >= x.deadline:
            x.on_deadline()
            if self.closed:
                return
        if x.state == X_IDLE:
            if self.fresh or self.parser.buffered() > 0:
                if l.header_timeout > 0 and now - self.since > l.header_timeout:
                    self.worker.count(ST_EV_TIMEOUT_HEADER)
                    if self.parser.buffered() > 0:
                        x.timed_out(E_HEADER_TIMEOUT)
                        self.flush()
                    else:
                        self.close_now()
                    return
            elif l.idle_timeout > 0 and now - self.since > l.idle_timeout:
                self.worker.count(ST_EV_TIMEOUT_IDLE)
                self.close_now()
                return
        elif x.state == X_TUNNEL:
            if l.idle_timeout > 0 and now - self.last_read > l.idle_timeout:
                self.worker.count(ST_EV_TIMEOUT_IDLE)
                self.abort()
                return
        elif (not x.req_done and self.client_pause == 0 and l.body_timeout > 0
                and now - self.last_read > l.body_timeout
                and not (x.expect_continue and x.bytes_in == 0)):
            # (a client that asked for 100-continue waits for our 100, which waits for the
            # upstream: that is the route timeout's business, not a stalled body)
            self.worker.count(ST_EV_TIMEOUT_BODY)
            x.timed_out(E_BODY_TIMEOUT)
            self.flush()
            return
        if l.max_duration > 0 and not self.aged and now - self.born > l.max_duration:
            self.aged = True
            self.drain_close()

    cdef void abort(self):
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
        cdef Exchange x = self.x
        if self.in_process:
            return
        self.in_process = True
        try:
            while not self.closed and not self.lingering:
                if x.state != X_IDLE and x.req_done:
                    break
                if self.write_paused and x.state == X_IDLE:
                    break           # the client does not read our replies: answer no more
                ev = self.parser.next_event()
                if ev == EV_NEED_DATA:
                    break
                elif ev == EV_HEAD:
                    self.on_head()
                elif ev == EV_BODY:
                    self.on_body()
                elif ev == EV_END:
                    x.request_end(self.parser.trailers_raw)
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
        self.x.bytes_out += PyBytes_GET_SIZE(b)

    cdef void flush(self) except *:
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
        self.x.bad_request(p.error_status,
                           (p.error_reason or "bad request").encode() + b"\n")

    cdef on_head(self):
        cdef H1Parser p = self.parser
        cdef Exchange x = self.x
        cdef const char* head
        cdef const char* hp
        cdef const char* path
        cdef Py_ssize_t hl, pl, i, q
        cdef bytes target, authority

        if self.tables is not self.worker.tables:
            self.refresh_tables()
        x.begin(self, p, monotonic_now())
        self.fresh = False
        self.resp_chunked = False
        self.client_11 = p.version_minor == 1
        self.http_minor = 1 if self.client_11 else 0
        self.close_after = not (p.keep_alive and not self.worker.draining) or self.listener_gone
        x.method_head = p.method_is_head
        x.expect_continue = p.expect_continue
        x.req_body_kind = p.body_kind
        x.req_has_body = p.body_kind != BODY_NONE and not (
            p.body_kind == BODY_LENGTH and p.content_length == 0)
        x.upgrade = p.upgrade
        head = PyBytes_AS_STRING(p.head)
        x.method = sub(p.head, p.method_s, p.method_e)

        if x.upgrade and p.method_e - p.method_s == 7 and x.method == CONNECT:
            x.path = sub(p.head, p.target_s, p.target_e)
            x.local_error(E_CONNECT_METHOD, None, True)
            return

        # request-target: origin-form, or absolute-form whose authority replaces Host
        # (RFC 9112 section 3.2.2)
        path = head + p.target_s
        pl = p.target_e - p.target_s
        if pl > 0 and path[0] != b'/' and path[0] != b'*':
            target = sub(p.head, p.target_s, p.target_e)
            i = target.find(b"://")
            if i < 0 or target[:i].lower() not in (b"http", b"https"):
                x.path = target
                x.local_error(E_BAD_TARGET, None, True)
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
                x.path = target
                x.local_error(E_BAD_HOST, b"bad host in request-target\n", True)
                return
            x.path = target
            x.authority = authority
            x.route_request(PyBytes_AS_STRING(target), PyBytes_GET_SIZE(target),
                            PyBytes_AS_STRING(authority), PyBytes_GET_SIZE(authority))
            return
        if p.host_index >= 0:
            hp = head + p.value_s[p.host_index]
            hl = p.value_e[p.host_index] - p.value_s[p.host_index]
        else:
            hp = b""
            hl = 0
        x.route_request(path, pl, hp, hl)

    cdef on_body(self):
        cdef H1Parser p = self.parser
        cdef Py_ssize_t n = p.ev_end - p.ev_start
        cdef Exchange x = self.x
        if x.state == X_LOCAL or x.state == X_BODY_WAIT:
            x.bytes_in += n
            return          # answered already: drop the body
        if p.ev_start == 0 and n == PyBytes_GET_SIZE(p.data):
            x.request_data(p.data)
        else:
            x.request_data(sub(p.data, p.ev_start, p.ev_end))

    # --- what the exchange asks of the client side -----------------------------------------

    cdef void send_local(self, Exchange x, int status, bytes body, list headers, bint close) except *:
        cdef bytes r
        if close:
            self.close_after = True
        if body is None:
            body = b"%d %s\n" % (status, REASONS.get(status, b""))
        r = local_reply(status, body, headers, self.close_after)
        if x.method_head:
            self.send(r[:len(r) - len(body)])
        else:
            self.send(r)

    cdef void send_direct(self, Exchange x, Route r) except *:
        cdef tuple wire = <tuple>r.h1_wire if r.h1_wire is not None else None
        if wire is None:
            wire = direct_wire(r)
            r.h1_wire = wire
        if self.client_11 and not self.close_after and not x.method_head:
            self.send(<bytes>wire[1])
            return
        parts = [wire[0]]
        if self.close_after:
            parts.append(HDR_CLOSE)
        elif not self.client_11:
            parts.append(HDR_KEEP_ALIVE)
        parts.append(CRLF)
        if not x.method_head:
            parts.append(r.direct_body)
        self.send(b"".join(parts))

    cdef void send_interim(self, Exchange x, int status) except *:
        if status == 100:
            self.send(CONTINUE_100)

    cdef void send_head(self, Exchange x, HeaderBlock h, int status, int body_kind,
                        list edits) except *:
        cdef int i
        if status == 101:
            i = h.find(H_UPGRADE)
            edits.append(N_CONNECTION)
            edits.append(V_UPGRADE)
            if i >= 0:
                edits.append(N_UPGRADE)
                edits.append(h.header_value(i))
        else:
            if x.upgrade:
                self.close_after = True     # the request parser is paused: no next request
            if body_kind == BODY_CHUNKED or body_kind == BODY_UNTIL_CLOSE:
                if self.client_11:
                    self.resp_chunked = True
                    edits.append(N_TE)
                    edits.append(V_CHUNKED)
                else:
                    self.close_after = True  # HTTP/1.0: the body ends at close
            elif (body_kind == BODY_NONE and status != 204 and status != 304
                    and not x.method_head and not has_length(h)):
                # an HTTP/2 head that ended its stream (a gRPC trailers-only answer, say):
                # HTTP/1.1 must be told the body is empty, or the client reads until close
                edits.append(N_CONTENT_LENGTH)
                edits.append(V_ZERO)
            if self.worker.draining:
                self.close_after = True
            if self.close_after:
                edits.append(N_CONNECTION)
                edits.append(V_CLOSE)
            elif not self.client_11:
                edits.append(N_CONNECTION)
                edits.append(V_KEEP_ALIVE)
        self.send(build_head(h, status_line(h, status), edits))

    cdef void send_data(self, Exchange x, bytes chunk) except *:
        if self.resp_chunked:
            self.send(chunk_size_line(PyBytes_GET_SIZE(chunk)))
            self.send(chunk)
            self.send(CRLF)
        else:
            self.send(chunk)

    cdef void send_end(self, Exchange x, bytes trailers) except *:
        if self.resp_chunked:
            self.send(LAST_CHUNK + (trailers or b"") + CRLF)

    cdef void start_tunnel(self, Exchange x, UpstreamConn up) except *:
        """101 Switching Protocols: from now on bytes pass both ways untouched."""
        cdef bytes rest = (<Upstream>up).parser.leftover()
        if rest:
            self.send(rest)
        rest = self.parser.leftover()
        if rest and up.transport is not None:
            up.transport.write(rest)

    cdef void tunnel_out(self, Exchange x, bytes data) except *:
        """Upgraded-protocol bytes from the upstream to the client."""
        x.bytes_out += PyBytes_GET_SIZE(data)
        self.last_read = monotonic_now()
        if self.transport is not None:
            self.transport.write(data)

    cdef void broken(self, Exchange x) except *:
        self.close_now()

    cdef void exchange_done(self, Exchange x) except *:
        """The exchange is over on both sides: close, or go on with the next request."""
        if self.closed:
            return
        if self.close_after or self.worker.draining:
            self.linger()
            return
        self.since = monotonic_now()       # idle from now, or a pipelined head is under way
        if self.client_pause:
            self.client_pause = PAUSE_BACKLOG  # the other reasons ended with the exchange
            if not self.write_paused:
                self.resume_client(self.x, PAUSE_BACKLOG)
        if not self.in_process:
            self.process()

    cdef void close_now(self):
        self.flush()
        self.lingering = True           # nothing more is parsed or answered
        if self.transport is not None:
            self.transport.close()

    cdef void drain_close(self) except *:
        if self.x is None or self.x.state == X_IDLE:
            self.close_now()
        else:
            self.close_after = True



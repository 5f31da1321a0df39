# cython: language_level=3
"""`H2Downstream`: a client connection speaking HTTP/2 (RFC 9113), one `Exchange` per stream.

Theory of operation
-------------------
* The codec only moves frames: http2.H2Connection (server role) turns bytes into events and
  queues frames, hpack.Decoder/Encoder turn header blocks into HeaderBlocks and back. This
  object maps events to exchanges and what exchanges answer to frames; the policy is the
  exchange's, exactly as for HTTP/1.1.
* How a connection gets here: proxy.H1Downstream takes every accepted connection and hands it
  over (transport.set_protocol) when TLS chose "h2" by ALPN, when the listener serves only
  HTTP/2, or when a plaintext listener that allows HTTP/2 sees the 24-byte client preface
  (h2c with prior knowledge). The h2c Upgrade is never offered (RFC 9113 deprecates it).
* A request head (RFC 9113 8.3.1) is checked before it becomes an exchange: pseudo-headers
  (exactly :method, :scheme, :path, :authority for a request, before the other fields, none
  twice), no connection-specific field (8.2.2: Connection, Keep-Alive, Proxy-Connection,
  Transfer-Encoding, Upgrade; TE only as "trailers"), no field the HPACK decoder found
  malformed (8.2.1: uppercase, CR, LF, NUL...), Content-Length digits and equal when repeated,
  Host equal to :authority when both come. A malformed request is a stream error
  PROTOCOL_ERROR (RST_STREAM, no response), logged as a 400. The DATA a stream carries is
  counted against its Content-Length: more, or an END_STREAM short of it, is the same stream
  error, and the exchange's upstream is cut before it could see a byte too many (no H2.CL
  smuggling into an HTTP/1.1 upstream; a body without Content-Length goes chunked).
* Translation to the neutral exchange: :authority plays the absolute-form authority of
  HTTP/1.1 (it replaces Host upstream), cookie crumbs are joined (8.2.3), trailers become
  HTTP/1.1 trailer lines. Responses go out as HEADERS (+ DATA, + trailers HEADERS): a
  response without a body ends with its HEADERS.
* Backpressure is per stream. Request DATA is credited back to the client (WINDOW_UPDATE)
  only once handed to the upstream and while the exchange does not pause the client
  (PAUSE_UPSTREAM: the upstream's socket is full; PAUSE_PENDING: the upstream is not
  connected yet), so a slow upstream closes that stream's window and no other. Response DATA
  the client's window does not admit waits on its stream, and that exchange's upstream stops
  being read until WINDOW_UPDATE: one slow reader never stalls the others.
* Answering before the request ended (a local reply, a direct response, an upstream response
  complete while the body still arrives) ends the stream with RST_STREAM NO_ERROR (8.1),
  so the client stops sending. Such follow-ups, and the end of an exchange whose stream
  broke, run in `flush()` (the `cut` list) rather than inside the exchange call that caused
  them: every entry point (client bytes, upstream events, the timeout sweep) ends with a
  flush, and the exchange's own call has returned by then.
* gRPC needs nothing of its own here: the exchange answers a gRPC call's local errors in the
  trailers-only form and honours grpc-timeout (grpcwire.pyx); trailers are HEADERS frames.
* Timeouts (the worker's sweep, `check_timeouts`): the route deadline and the request body
  timeout per stream; a stream whose response waits on a zero window longer than the
  listener's send timeout is reset (CANCEL); the connection's idle timeout (no stream),
  header timeout (no request at all), send timeout (the client reads nothing), SETTINGS ACK
  timeout (the codec's tick) and max_connection_duration (a graceful GOAWAY).
* Drain: the codec's two-step GOAWAY (a PING round trip between the two); streams already
  open finish; the connection closes when none is left.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport int64_t

from engine._fast.debug cimport live_add, SLUICE_DEBUG, LIVE_DOWNSTREAM, LIVE_TLS
from engine._fast.errors cimport (
    error_row, E_NONE, E_BAD_REQUEST, E_BAD_HOST, E_CONNECT_METHOD, E_BODY_TIMEOUT,
)
from engine._fast.exchange cimport (
    Exchange, Downstream, UpstreamConn, X_IDLE, X_LOCAL, X_WAITING, X_PROXYING, X_BODY_WAIT,
    PAUSE_PENDING,
)
from engine._fast.headers cimport (
    HeaderBlock, H_CONTENT_LENGTH, H_CONNECTION, H_KEEP_ALIVE, H_PROXY_CONNECTION,
    H_TRANSFER_ENCODING, H_UPGRADE, H_TE, H_COOKIE, H_EXPECT, H_HTTP2_SETTINGS, HF_DROP,
)
from engine._fast.hpack cimport (
    Decoder, Encoder, HPACK_OK, hpack_h2_error, hpack_is_connection_error,
    PS_METHOD, PS_SCHEME, PS_AUTHORITY, PS_PATH, PS_STATUS, PS_PROTOCOL,
)
from engine._fast.http1 cimport check_authority, BODY_NONE, BODY_LENGTH, BODY_CHUNKED
from engine._fast.http2 cimport (
    H2Connection, C_COUNT, EV_HEADERS, EV_HEADERS_IGNORED, EV_DATA, EV_RESET, EV_STREAM_ERROR,
    EV_WINDOW_UPDATE, EV_SETTINGS, EV_GOAWAY, EV_CONNECTION_ERROR,
    NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, CANCEL,
)
from engine._fast.limiter cimport monotonic_now
from engine._fast.proxy cimport Worker
from engine._fast.stats cimport (
    Stats, ST_EV_TIMEOUT_HEADER, ST_EV_TIMEOUT_BODY, ST_EV_TIMEOUT_SEND, ST_EV_TIMEOUT_IDLE,
    ST_H2_DOWNSTREAM, ST_H2_GAUGE_CONNECTIONS, ST_H2_GAUGE_STREAMS,
)
from engine._fast.tables cimport Listener, Route

import http

DEF LINGER = 2.0                     # seconds a closing connection reads and drops input
DEF DRAIN_PING_WAIT = 2.0            # seconds the graceful GOAWAY waits for its PING's ACK

cdef bytes S_STATUS = b":status"
cdef bytes N_CONTENT_TYPE = b"content-type"
cdef bytes N_CONTENT_LENGTH = b"content-length"
cdef bytes N_COOKIE = b"cookie"
cdef bytes V_TEXT = b"text/plain"
cdef bytes V_TRAILERS = b"trailers"
cdef bytes V_100_CONTINUE = b"100-continue"
cdef bytes CONNECT = b"CONNECT"
cdef bytes HEAD = b"HEAD"
cdef bytes OPTIONS = b"OPTIONS"

cdef dict REASONS = {s.value: s.phrase.encode() for s in http.HTTPStatus}
# :status values as bytes, built once
cdef list STATUS_BYTES = [b"%d" % i for i in range(600)]

cdef inline bytes status_bytes(int status):
    return <bytes>STATUS_BYTES[status] if 0 <= status < 600 else b"%d" % status


cdef list trailer_lines_to_pairs(bytes trailers):
    """HTTP/1.1 trailer lines (b"name: value\\r\\n"...) -> [name, value, ...], lowercase names,
    without fields HTTP/2 forbids (8.2.2)."""
    cdef list out = []
    for line in trailers.split(b"\r\n"):
        if not line:
            continue
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if not name or name in (b"connection", b"keep-alive", b"proxy-connection",
                                b"transfer-encoding", b"upgrade", b"te", b"trailer"):
            continue
        out.append(name)
        out.append(value.strip())
    return out


@cython.final
@cython.freelist(64)
cdef class H2Req:
    """The HTTP/2 side of one exchange: its stream and what the codec tracks for it."""
    cdef Exchange x
    cdef int64_t sid
    cdef int64_t cl                # the request's Content-Length, -1 when none
    cdef int64_t received          # request DATA bytes so far
    cdef int64_t owed              # ... taken but not yet credited back (client paused)
    cdef int pause                 # PAUSE_* bits from the exchange
    cdef bint remote_open          # the client has not ended its side of the stream
    cdef bint local_done           # our END_STREAM (or RST_STREAM) is queued
    cdef int reset_code            # >= 0: answer with RST_STREAM(reset_code), not a response
    cdef list blocked              # response DATA the flow-control windows do not admit yet
    cdef bint end_pending          # ... and the response's end behind it
    cdef bytes end_trailers
    cdef bint broke                # the response broke: reset, the exchange ends in flush()
    cdef double last_read          # last request bytes (body timeout)
    cdef bytes held                # the response's latest DATA, not sent yet (see send_data)


@cython.final
cdef class H2Downstream(Downstream):
    """One client connection speaking HTTP/2."""
    cdef Worker worker
    cdef H2Connection conn
    cdef Decoder dec
    cdef Encoder enc
    cdef dict streams              # stream id -> H2Req of exchanges in flight
    cdef list cut                  # H2Reqs with a follow-up for flush() (see the docstring)
    cdef set waiting               # H2Reqs with response DATA blocked on flow control
    cdef list holding              # H2Reqs holding a chunk back (send_data), until write_out
    cdef HeaderBlock scratch       # where ignored header blocks are decoded (HPACK sync)
    cdef object write
    cdef bint admitted
    cdef int lslot
    cdef bint tls_live
    cdef bint draining
    cdef bint peer_goaway          # the client sent GOAWAY: no more streams from it
    cdef bint closing              # a connection error: close once the GOAWAY is written
    cdef bint write_paused
    cdef bint any_request          # a request head arrived on this connection
    cdef double born
    cdef double last_active        # last stream activity (idle timeout)
    cdef double write_blocked
    cdef bint in_flush
    cdef bint write_scheduled      # write_out() is due in this turn of the loop
    cdef bint lingering            # our last frames and a FIN are sent: input is dropped
    cdef double closing_since
    cdef double drain_since
    cdef int64_t flushed[C_COUNT]  # the codec's counters as last added to Stats

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
        self.streams = {}
        self.cut = []
        self.waiting = set()
        self.holding = []
        self.http_minor = 2

    @property
    def open_streams(self):
        return len(self.streams)

    # --- transport callbacks ---------------------------------------------------------------

    def connection_made(self, transport):
        cdef Listener l
        self.transport = transport
        self.write = transport.write
        peer = transport.get_extra_info("peername")
        self.client_ip = (peer[0] if peer else "").encode()
        self.client_port = peer[1] if peer else 0
        self.refresh_tables()
        l = self.listener
        if not self.worker.admit_connection(self.lname, l):
            self.closed = True
            transport.abort()
            return
        self.admitted = True
        self.lslot = l.stats_slot
        if l.tls:
            if SLUICE_DEBUG and transport.get_extra_info("ssl_object") is not None:
                self.tls_live = True
                live_add(LIVE_TLS, 1)
            self.identify(transport)
        self.conn = H2Connection(False, max_concurrent_streams=l.h2_max_streams,
                                 initial_window_size=l.h2_stream_window,
                                 connection_window=l.h2_conn_window,
                                 max_header_list_size=l.max_head_bytes,
                                 max_header_block=l.max_head_bytes,
                                 settings_timeout=l.header_timeout if l.header_timeout > 0 else 10.0)
        self.dec = Decoder(max_list_size=l.max_head_bytes, max_headers=l.max_headers)
        self.enc = Encoder()
        self.scratch = HeaderBlock()
        self.born = self.last_active = monotonic_now()
        self.conn.initiate(self.born)
        self.worker.conn_opened(self, self.lslot)
        self.gauge(ST_H2_GAUGE_CONNECTIONS, 1)
        self.flush()

    def data_received(self, bytes data):
        cdef double now
        if self.closed or self.closing:
            return
        now = monotonic_now()
        self.last_active = now
        self.handle(self.conn.receive_data(data, now), now)
        self.flush()

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        cdef H2Req s
        self.closed = True
        self.transport = None
        self.write = None
        if not self.admitted:
            return
        self.admitted = False
        for s in list(self.streams.values()):
            if s.x is not None:
                s.local_done = True
                s.remote_open = False
                s.x.client_gone()
        self.gauge(ST_H2_GAUGE_STREAMS, -len(self.streams))
        self.streams.clear()
        self.cut.clear()
        self.waiting.clear()
        self.holding.clear()
        self.flush_counts()
        self.gauge(ST_H2_GAUGE_CONNECTIONS, -1)
        self.worker.conn_closed(self, self.lname, self.lslot)
        self.worker._check_idle()

    def pause_writing(self):
        # The client reads nothing: stop reading every upstream of this connection (their
        # responses wait in the kernel, not here); the send timeout runs.
        cdef H2Req s
        self.write_paused = True
        self.write_blocked = monotonic_now()
        for s in self.streams.values():
            if s.x is not None and s.x.up is not None:
                s.x.up.pause_reading()

    def resume_writing(self):
        cdef H2Req s
        self.write_paused = False
        self.write_blocked = 0
        for s in self.streams.values():
            if s.x is not None and s.x.up is not None and not s.blocked:
                s.x.up.resume_reading()

    # --- counting (stats.pyx: sluice_http2_* with side="downstream") ---------------------------

    cdef inline void gauge(self, int which, long delta) noexcept:
        cdef Stats st = self.worker.stats
        if st is not None:
            st.h2_gauge(self.worker.stats_worker, ST_H2_DOWNSTREAM, which, delta)

    cdef void counted_reset(self, int64_t sid, int code, bint sent) noexcept:
        cdef Stats st = self.worker.stats
        if st is not None:
            st.h2_reset(self.worker.stats_worker, ST_H2_DOWNSTREAM, sent, code)

    cdef void counted_goaway(self, int code, bint sent) noexcept:
        cdef Stats st = self.worker.stats
        if st is not None:
            st.h2_goaway(self.worker.stats_worker, ST_H2_DOWNSTREAM, sent, code)

    cdef void reset(self, int64_t sid, int code) except *:
        """RST_STREAM, counted by code."""
        if self.conn.reset_stream(sid, code):
            self.counted_reset(sid, code, True)

    cdef void close_conn(self, int code, bytes debug) except *:
        """GOAWAY (code, last stream id) and no more frames: counted by code."""
        if not self.conn.closed:
            self.conn.close(code, debug)
            self.counted_goaway(code, True)

    cdef void flush_counts(self) noexcept:
        cdef Stats st = self.worker.stats
        if st is not None and self.conn is not None:
            st.h2_flush(self.worker.stats_worker, ST_H2_DOWNSTREAM, &self.conn.counts[0],
                        &self.flushed[0])

    cdef void refresh_tables(self) except *:
        cdef Listener l = self.worker.tables.listeners.get(self.lname)
        if l is None:
            if self.listener is None:
                raise RuntimeError("listener %r is not in the current tables" % self.lname)
            if not self.draining:
                self.drain_close()      # the listener went away in a reload
            return
        self.tables = self.worker.tables
        self.listener = l

    # --- events ----------------------------------------------------------------------------

    cdef void handle(self, list events, double now) except *:
        cdef tuple ev
        cdef int kind
        cdef int64_t sid
        cdef H2Req s
        for ev in events:
            kind = ev[0]
            sid = ev[1]
            try:
                if kind == EV_DATA:
                    self.on_data(sid, <bytes>ev[2], ev[3], now)
                elif kind == EV_HEADERS:
                    s = self.streams.get(sid)
                    if s is None:
                        self.on_request(sid, <bytes>ev[2], ev[3], now)
                    elif s.x is None:
                        self.decode_ignored(<bytes>ev[2])
                    else:
                        self.on_trailers(s, <bytes>ev[2], ev[3], now)
                elif kind == EV_HEADERS_IGNORED:
                    self.decode_ignored(<bytes>ev[2])
                elif kind == EV_WINDOW_UPDATE or kind == EV_SETTINGS:
                    if kind == EV_SETTINGS:
                        self.enc.set_peer_max_table_size(ev[2])
                    if sid == 0:
                        for s in list(self.waiting):
                            self.unblock(s)
                    else:
                        s = self.streams.get(sid)
                        if s is not None and s.blocked:
                            self.unblock(s)
                elif kind == EV_RESET or kind == EV_STREAM_ERROR:
                    self.counted_reset(sid, ev[2], kind == EV_STREAM_ERROR)
                    s = self.streams.get(sid)
                    if s is not None:
                        s.remote_open = False
                        s.local_done = True          # the stream is gone: nothing more is sent
                        s.blocked = None
                        self.waiting.discard(s)
                        if s.x is None:
                            self.retire(s)
                        else:
                            self.end_exchange(s)
                elif kind == EV_GOAWAY:
                    self.counted_goaway(ev[2], False)
                    self.peer_goaway = True
                elif kind == EV_CONNECTION_ERROR:
                    self.counted_goaway(ev[2], True)
                    self.fail_connection()
                    return
            except Exception as exc:
                if kind != EV_DATA and kind != EV_HEADERS:
                    raise
                # a bug or a filter's surprise in one stream's handling: that stream is
                # reset, the connection's other streams go on
                self.stream_failed(sid, exc)
            if self.closed or self.closing:
                return

    cdef void stream_failed(self, int64_t sid, exc) except *:
        """An exception escaped the handling of one stream: log it, reset that stream
        (INTERNAL_ERROR) and end its exchange as a 500; nothing else is touched."""
        cdef H2Req s = self.streams.get(sid)
        cdef Exchange x
        self.worker.warn(("h2-stream-failed", type(exc)),
                         "HTTP/2 stream %d of client %s failed (%r): stream reset"
                         % (sid, self.client_ip.decode(), exc))
        self.reset(sid, INTERNAL_ERROR)
        if s is None:
            return
        s.local_done = True
        s.remote_open = False
        s.blocked = None
        s.held = None
        self.waiting.discard(s)
        x = s.x
        if x is not None and x.stream is s:
            if x.status == 0 or not x.resp_started:
                x.status = 500
            try:
                if x.state == X_IDLE:
                    # (it failed before routing went anywhere: logged all the same)
                    x.go(X_LOCAL)
                    x.resp_started = True
                    x.req_done = True
                    x.finish()
                else:
                    x.client_gone()
            except Exception:
                x.stream = None
                s.x = None
        if self.streams.get(sid) is s:
            s.x = None
            self.retire(s)

    cdef void decode_ignored(self, bytes block) except *:
        """A header block of a stream we do not serve still changes the HPACK table."""
        cdef int rc = self.dec.decode(self.scratch, <const unsigned char*>PyBytes_AS_STRING(block),
                                      PyBytes_GET_SIZE(block))
        if hpack_is_connection_error(rc):
            self.close_conn(hpack_h2_error(rc), b"header block")
            self.fail_connection()

    cdef void fail_connection(self) except *:
        """A connection error (its GOAWAY is queued): every stream ends now, the GOAWAY is
        written, and the connection lingers (see linger())."""
        cdef H2Req s
        for s in list(self.streams.values()):
            s.local_done = True
            s.remote_open = False
            s.blocked = None
            if s.x is not None:
                s.x.client_gone()
        self.gauge(ST_H2_GAUGE_STREAMS, -len(self.streams))
        self.streams.clear()
        self.waiting.clear()
        self.closing = True
        self.flush()

    cdef void linger(self) except *:
        """Close after our last frames: send them and a FIN, then read and drop what the client
        still sends (frames in flight) until it closes or LINGER passes. Closing with unread
        input makes the kernel send a reset, which can destroy the GOAWAY before the client
        reads it (the same reason as proxy.H1Downstream.linger)."""
        if self.transport is None or self.lingering:
            return
        self.lingering = True
        self.closing = True
        self.closing_since = monotonic_now()
        if self.transport.can_write_eof():
            try:
                self.transport.write_eof()
                return
            except (OSError, RuntimeError):
                pass
        self.transport.close()

    cdef void on_request(self, int64_t sid, bytes block, bint end_stream, double now) except *:
        cdef HeaderBlock hb = HeaderBlock()
        cdef Decoder dec = self.dec
        cdef Exchange x
        cdef H2Req s
        cdef int rc, i, hid, ncookies = 0, pi
        cdef int64_t cl = -1, v
        cdef bytes method = None, path = None, authority = None, value, host
        cdef const char* hp
        cdef Py_ssize_t hl
        cdef str bad = None

        rc = dec.decode(hb, <const unsigned char*>PyBytes_AS_STRING(block), PyBytes_GET_SIZE(block))
        if hpack_is_connection_error(rc):
            self.close_conn(hpack_h2_error(rc), b"header block")
            self.fail_connection()
            return
        if self.tables is not self.worker.tables:
            self.refresh_tables()
        self.any_request = True
        x = Exchange(self.worker)
        s = H2Req()
        s.x = x
        s.sid = sid
        s.cl = -1
        s.reset_code = -1
        s.remote_open = not end_stream
        s.last_read = now
        x.stream = s
        self.streams[sid] = s
        self.gauge(ST_H2_GAUGE_STREAMS, 1)
        if rc != HPACK_OK:
            # over max_headers or the header list size: 431, the connection lives on (10.5.1)
            x.begin_for_error(self, now)
            x.req_done = True
            x.bad_request(431, b"request header fields too large\n")
            return
        x.begin(self, hb, now)
        x.req_done = end_stream

        # RFC 9113 8.3.1: a request's pseudo-headers, then 8.2.1/8.2.2 on the fields
        if dec.pseudo_flags or dec.pseudo_idx[PS_STATUS] >= 0 or dec.pseudo_idx[PS_PROTOCOL] >= 0:
            bad = "pseudo-header fields"
        elif dec.malformed >= 0:
            bad = "a field with characters RFC 9113 forbids"
        pi = dec.pseudo_idx[PS_METHOD]
        if pi >= 0:
            method = hb.header_value(pi)
        pi = dec.pseudo_idx[PS_PATH]
        if pi >= 0:
            path = hb.header_value(pi)
        pi = dec.pseudo_idx[PS_AUTHORITY]
        if pi >= 0:
            authority = hb.header_value(pi)
        x.method = method if method is not None else b"-"
        x.path = path if path is not None else b"-"
        if bad is None and method is None:
            bad = "no :method"
        if bad is None and method != CONNECT:
            if path is None or dec.pseudo_idx[PS_SCHEME] < 0:
                bad = "no :scheme or :path"
            elif PyBytes_GET_SIZE(path) == 0 or not (
                    path[0] == 47 or (path == b"*" and method == OPTIONS)):   # '/'
                bad = "a :path that is not origin-form"
        if bad is None:
            for i in range(dec.pseudo_end, hb.nheaders):
                hid = hb.hdr_id[i]
                if (hid == H_CONNECTION or hid == H_KEEP_ALIVE or hid == H_PROXY_CONNECTION
                        or hid == H_TRANSFER_ENCODING or hid == H_UPGRADE):
                    bad = "a connection-specific field"
                    break
                elif hid == H_TE:
                    if hb.header_value(i) != V_TRAILERS:
                        bad = "TE other than trailers"
                        break
                elif hid == H_CONTENT_LENGTH:
                    value = hb.header_value(i)
                    if not value.isdigit() or PyBytes_GET_SIZE(value) > 18:
                        bad = "a malformed content-length"
                        break
                    v = int(value)
                    if cl >= 0 and v != cl:
                        bad = "conflicting content-length values"
                        break
                    cl = v
                elif hid == H_COOKIE:
                    ncookies += 1
                elif hid == H_EXPECT:
                    x.expect_continue = hb.header_value(i).lower() == V_100_CONTINUE
                elif hid == H_HTTP2_SETTINGS:
                    hb.hdr_flags[i] |= HF_DROP
        if bad is None and authority is not None and hb.host_index >= 0:
            host = hb.header_value(hb.host_index)
            if host.lower() != authority.lower():
                bad = "Host differs from :authority"
        if bad is None and cl >= 0 and end_stream and cl != 0:
            bad = "content-length with no body"
        if bad is not None:
            self.malformed(s, bad)
            return

        if method == CONNECT:
            x.local_error(E_CONNECT_METHOD, None, True)
            return
        x.method_head = method == HEAD
        s.cl = cl
        if cl >= 0:
            x.req_body_kind = BODY_LENGTH
            x.req_has_body = cl > 0
        elif end_stream:
            x.req_body_kind = BODY_NONE
        else:
            x.req_body_kind = BODY_CHUNKED
            x.req_has_body = True
        if ncookies > 1:
            x.codec_edits = [N_COOKIE, self.joined_cookies(hb)]

        if authority is not None:
            if check_authority(<const unsigned char*>PyBytes_AS_STRING(authority), 0,
                               PyBytes_GET_SIZE(authority)) != 0:
                x.local_error(E_BAD_HOST, b"bad :authority\n", True)
                return
            x.authority = authority
            hp = PyBytes_AS_STRING(authority)
            hl = PyBytes_GET_SIZE(authority)
        elif hb.host_index >= 0:
            hp = PyBytes_AS_STRING(hb.head) + hb.value_s[hb.host_index]
            hl = hb.value_e[hb.host_index] - hb.value_s[hb.host_index]
        else:
            hp = b""
            hl = 0
        x.path = None          # route_request sets it (normalised)
        x.route_request(PyBytes_AS_STRING(path), PyBytes_GET_SIZE(path), hp, hl)

    cdef bytes joined_cookies(self, HeaderBlock hb):
        """RFC 9113 8.2.3: crumbs become one field, "; "-joined, for HTTP/1.1 upstreams."""
        cdef list crumbs = []
        cdef int i
        for i in range(hb.nheaders):
            if hb.hdr_id[i] == H_COOKIE:
                crumbs.append(hb.header_value(i))
                hb.hdr_flags[i] |= HF_DROP
        return b"; ".join(crumbs)

    cdef void malformed(self, H2Req s, str why) except *:
        """A stream error PROTOCOL_ERROR (RFC 9113 8.1.1): RST_STREAM, no response; logged as
        a 400 with the reason kept for the debug log."""
        cdef Exchange x = s.x
        s.reset_code = PROTOCOL_ERROR
        self.worker.warn(("h2-malformed", why), "HTTP/2 client %s sent a malformed request "
                         "(%s): stream reset" % (self.client_ip.decode(), why), 10.0)
        x.status = 400
        x.outcome = E_BAD_REQUEST
        x.go(X_LOCAL)
        x.resp_started = True
        s.local_done = True
        s.remote_open = False
        self.reset(s.sid, PROTOCOL_ERROR)
        x.req_done = True
        x.finish()

    cdef void on_trailers(self, H2Req s, bytes block, bint end_stream, double now) except *:
        cdef HeaderBlock hb = HeaderBlock()
        cdef Exchange x = s.x
        cdef int rc = self.dec.decode(hb, <const unsigned char*>PyBytes_AS_STRING(block),
                                      PyBytes_GET_SIZE(block))
        cdef int i
        cdef list lines
        if hpack_is_connection_error(rc):
            self.close_conn(hpack_h2_error(rc), b"header block")
            self.fail_connection()
            return
        s.last_read = now
        if not end_stream or rc != HPACK_OK or self.dec.pseudo_end > 0 or self.dec.malformed >= 0:
            self.cut_midway(s, "malformed trailers")
            return
        s.remote_open = False
        if s.cl >= 0 and s.received != s.cl:
            self.cut_midway(s, "a body shorter than its content-length")
            return
        lines = []
        for i in range(hb.nheaders):
            if hb.hdr_id[i] in (H_CONNECTION, H_KEEP_ALIVE, H_PROXY_CONNECTION,
                                H_TRANSFER_ENCODING, H_UPGRADE, H_TE, H_CONTENT_LENGTH):
                continue
            lines.append(hb._slice(hb.name_s[i], hb.name_e[i]) + b": " + hb.header_value(i) + b"\r\n")
        if x.state != X_IDLE:
            x.request_end(b"".join(lines))

    cdef void cut_midway(self, H2Req s, str why) except *:
        """A stream turned malformed after its head (its body or trailers): reset it, and cut
        the upstream before it could take what the client sent wrong."""
        cdef Exchange x = s.x
        s.remote_open = False
        if x is None or x.state == X_IDLE:
            self.reset(s.sid, PROTOCOL_ERROR)
            return
        s.reset_code = PROTOCOL_ERROR
        self.worker.warn(("h2-malformed", why), "HTTP/2 client %s sent a malformed request "
                         "(%s): stream reset" % (self.client_ip.decode(), why), 10.0)
        x.bad_request(400, None)

    cdef void on_data(self, int64_t sid, bytes data, bint end_stream, double now) except *:
        cdef H2Req s = self.streams.get(sid)
        cdef Exchange x
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        if s is None or not s.remote_open:
            if n:
                self.conn.consumed(sid, n)          # the connection's window all the same
            return
        x = s.x
        s.last_read = now
        s.received += n
        if s.cl >= 0 and (s.received > s.cl or (end_stream and s.received != s.cl)):
            if n:
                self.conn.consumed(sid, n)
            self.cut_midway(s, "a body that does not match its content-length")
            return
        if n:
            # the connection window at once (a paused stream holds at most its own window),
            # the stream's once its upstream takes the bytes: backpressure per stream
            self.conn.consumed_connection(n)
            if x.state == X_WAITING and x.up is None:
                # no upstream yet: what arrives is held (exchange.pending), so the stream's
                # window stays shut until one is attached -- a stream window per stream at
                # most, not the exchange's PENDING_BODY_LIMIT
                s.pause |= PAUSE_PENDING
            x.request_data(data)
            if s.pause == 0 or x.state == X_LOCAL or x.state == X_BODY_WAIT:
                self.conn.consumed_stream(sid, n)
            else:
                s.owed += n
        if end_stream:
            s.remote_open = False
            if x.state != X_IDLE:
                x.request_end(b"")

    # --- what the exchange asks of the client side -----------------------------------------

    cdef void send_local(self, Exchange x, int status, bytes body, list headers, bint close) except *:
        cdef H2Req s = <H2Req>x.stream
        cdef list edits
        cdef int code, i
        cdef bint typed = False
        if s is None or s.local_done:
            return
        if s.reset_code >= 0:
            s.local_done = True
            self.reset(s.sid, s.reset_code)
            return
        if body is None:
            body = b"%d %s\n" % (status, REASONS.get(status, b""))
        edits = []
        if headers:
            for i in range(0, len(headers), 2):
                if headers[i] == N_CONTENT_TYPE:
                    typed = True
            edits.extend(headers)
        if not typed:
            edits.append(N_CONTENT_TYPE)
            edits.append(V_TEXT)
        edits.append(N_CONTENT_LENGTH)
        edits.append(b"%d" % PyBytes_GET_SIZE(body))
        self.send_block(s, [S_STATUS, status_bytes(status)], None, edits,
                        x.method_head or PyBytes_GET_SIZE(body) == 0)
        if not s.local_done:
            x.bytes_out += PyBytes_GET_SIZE(body)
            self.send_body(s, body, True)
        self.after_answer(s)

    cdef void send_direct(self, Exchange x, Route r) except *:
        cdef H2Req s = <H2Req>x.stream
        cdef list edits = list(r.direct_headers)
        cdef bint bodyless = r.direct_status == 204 or r.direct_status == 304
        if s is None or s.local_done:
            return
        if not bodyless:
            edits.append(N_CONTENT_LENGTH)
            edits.append(b"%d" % PyBytes_GET_SIZE(r.direct_body))
        self.send_block(s, [S_STATUS, status_bytes(r.direct_status)], None, edits,
                        bodyless or x.method_head or PyBytes_GET_SIZE(r.direct_body) == 0)
        if not s.local_done:
            x.bytes_out += PyBytes_GET_SIZE(r.direct_body)
            self.send_body(s, r.direct_body, True)
        self.after_answer(s)

    cdef void after_answer(self, H2Req s) except *:
        """Answered while the request still arrives: the stream ends in flush() with RST_STREAM
        NO_ERROR, which tells the client to stop sending (RFC 9113 8.1)."""
        if s.remote_open:
            self.cut.append(s)

    cdef void send_interim(self, Exchange x, int status) except *:
        cdef H2Req s = <H2Req>x.stream
        if s is not None and not s.local_done:
            self.send_block(s, [S_STATUS, status_bytes(status)], None, None, False)

    cdef void send_head(self, Exchange x, HeaderBlock h, int status, int body_kind,
                        list edits) except *:
        cdef H2Req s = <H2Req>x.stream
        if s is None or s.local_done:
            return
        self.send_block(s, [S_STATUS, status_bytes(status)], h, edits,
                        body_kind == BODY_NONE or x.method_head)

    cdef void send_block(self, H2Req s, list pseudo, HeaderBlock h, list edits, bint end) except *:
        cdef bytes block = self.enc.encode(h, pseudo, edits)
        self.conn.send_headers(s.sid, block, end)
        if end:
            s.local_done = True

    cdef void send_data(self, Exchange x, bytes chunk) except *:
        cdef H2Req s = <H2Req>x.stream
        if s is None or s.local_done:
            return
        x.bytes_out += PyBytes_GET_SIZE(chunk)
        # the last chunk is held until the next call or the end of this loop turn, so that a
        # response's END_STREAM rides on its last DATA frame instead of an empty one after it
        if s.held is not None:
            self.send_body(s, s.held, False)
        else:
            self.holding.append(s)
        s.held = chunk

    cdef void send_body(self, H2Req s, bytes chunk, bint end) except *:
        """DATA as far as the windows allow; the rest waits on the stream (unblock())."""
        cdef Py_ssize_t k
        if s.blocked:
            s.blocked.append(chunk)
            if end:
                s.end_pending = True
                s.end_trailers = None
            return
        k = self.conn.send_data(s.sid, chunk, end, monotonic_now())
        if k < 0:
            s.local_done = True              # the stream is gone (reset meanwhile)
            return
        if k < PyBytes_GET_SIZE(chunk):
            s.blocked = [chunk[k:]]
            s.end_pending = end
            s.end_trailers = None
            self.waiting.add(s)
            if s.x is not None and s.x.up is not None:
                s.x.up.pause_reading()       # this stream's upstream waits for the window
        elif end:
            s.local_done = True

    cdef void unblock(self, H2Req s) except *:
        """A window opened: send what waited, then the end, then read the upstream again."""
        cdef bytes chunk
        cdef Py_ssize_t k
        while s.blocked:
            chunk = <bytes>s.blocked[0]
            k = self.conn.send_data(s.sid, chunk, s.end_pending and len(s.blocked) == 1 and
                                    s.end_trailers is None, monotonic_now())
            if k < 0:
                s.blocked = None
                s.local_done = True
                self.waiting.discard(s)
                return
            if k < PyBytes_GET_SIZE(chunk):
                s.blocked[0] = chunk[k:]
                return
            s.blocked.pop(0)
        s.blocked = None
        self.waiting.discard(s)
        if s.end_pending:
            s.end_pending = False
            if s.end_trailers is not None:
                self.send_block(s, None, None, trailer_lines_to_pairs(s.end_trailers), True)
            else:
                s.local_done = True          # went with the last DATA frame
        if s.x is None:
            if s.local_done:
                self.retire(s)           # the exchange ended before its response's tail left
            return
        if s.x.up is not None and not self.write_paused:
            s.x.up.resume_reading()

    cdef void send_end(self, Exchange x, bytes trailers) except *:
        cdef H2Req s = <H2Req>x.stream
        cdef list pairs
        if s is None or s.local_done:
            return
        pairs = trailer_lines_to_pairs(trailers) if trailers else None
        if s.held is not None:
            held, s.held = s.held, None
            self.send_body(s, held, not pairs)
            if not pairs:
                if s.remote_open:
                    self.cut.append(s)
                return
        if s.blocked:
            s.end_pending = True
            s.end_trailers = trailers if pairs else None
        elif pairs:
            self.send_block(s, None, None, pairs, True)
        else:
            self.conn.send_data(s.sid, b"", True, 0.0)
            s.local_done = True
        if s.remote_open:
            self.cut.append(s)               # the response is complete: the body is moot

    cdef void start_tunnel(self, Exchange x, UpstreamConn up) except *:
        # HTTP/2 has no Upgrade (x.upgrade is never set here): a 101 is refused by the exchange
        raise AssertionError("no tunnels over HTTP/2")

    cdef void broken(self, Exchange x) except *:
        """The response broke after it started: reset this stream only; the exchange ends in
        flush()."""
        cdef H2Req s = <H2Req>x.stream
        cdef int code
        if s is None:
            return
        if not s.local_done:
            code = s.reset_code if s.reset_code >= 0 else error_row(x.outcome).h2_rst
            if code == NO_ERROR:
                code = INTERNAL_ERROR
            self.reset(s.sid, code)
        s.local_done = True
        s.remote_open = False
        s.blocked = None
        self.waiting.discard(s)
        s.broke = True
        self.cut.append(s)

    cdef void end_exchange(self, H2Req s) except *:
        """The stream is gone (reset by either side): the exchange ends as the client's."""
        cdef Exchange x = s.x
        if x is not None and x.stream is s and x.state != X_IDLE:
            x.client_gone()

    cdef void exchange_done(self, Exchange x) except *:
        cdef H2Req s = <H2Req>x.stream
        x.stream = None            # (x.ds stays: an upstream event still flushes through it)
        if s is None:
            return
        s.x = None
        if s.blocked:
            return         # the response's tail waits on the window: unblock() retires it
        self.retire(s)

    cdef void retire(self, H2Req s) except *:
        """The stream is done on our side: forget it, credit what it owed the connection
        window, and end it with RST_STREAM if either side is still open."""
        if self.streams.pop(s.sid, None) is not None:
            self.gauge(ST_H2_GAUGE_STREAMS, -1)
        self.waiting.discard(s)
        self.last_active = monotonic_now()
        if self.closed or self.conn is None:
            return
        s.owed = 0                 # (the connection window had it at once)
        if not s.local_done:
            s.local_done = True
            self.reset(s.sid, CANCEL)
        elif s.remote_open:
            s.remote_open = False
            self.reset(s.sid, NO_ERROR)

    cdef void pause_client(self, Exchange x, int why) except *:
        cdef H2Req s = <H2Req>x.stream
        if s is not None:
            s.pause |= why

    cdef void resume_client(self, Exchange x, int why) except *:
        cdef H2Req s = <H2Req>x.stream
        if s is None or not s.pause:
            return
        s.pause &= ~why
        if s.pause == 0:
            s.last_read = monotonic_now()
            if s.owed:
                self.conn.consumed_stream(s.sid, s.owed)
                s.owed = 0

    cdef void flush(self) except *:
        cdef H2Req s
        cdef Exchange x
        cdef bytes out
        if self.in_flush or self.conn is None:
            return
        self.in_flush = True
        try:
            while self.cut:
                s = <H2Req>self.cut.pop()
                x = s.x
                if x is None or x.stream is not s or x.state == X_IDLE:
                    continue
                if s.broke:
                    x.client_gone()
                elif s.remote_open and (x.state == X_LOCAL or x.state == X_BODY_WAIT) and s.local_done:
                    s.remote_open = False
                    self.reset(s.sid, NO_ERROR)
                    x.request_end(b"")
        finally:
            self.in_flush = False
        if not self.write_scheduled and self.transport is not None:
            # one write per turn of the event loop, whatever number of streams (and upstream
            # connections) produced frames in it: a syscall per response would cost more than
            # the rest of the exchange
            self.write_scheduled = True
            self.worker.loop.call_soon(self.write_out)

    def write_out(self):
        cdef bytes out
        cdef H2Req s
        self.write_scheduled = False
        if self.transport is None or self.conn is None:
            return
        for s in self.holding:
            if s.held is not None:
                held, s.held = s.held, None
                if not s.local_done:
                    self.send_body(s, held, False)
        self.holding.clear()
        out = self.conn.data_to_send()
        if out:
            self.write(out)
        if not self.streams and (self.closing or self.peer_goaway or self.conn.closed
                                 or (self.draining and self.conn.shutdown_step == 2)):
            self.linger()

    # --- the worker's sweep and drain ------------------------------------------------------

    cdef void check_timeouts(self, double now) except *:
        cdef Listener l = self.listener
        cdef H2Req s
        cdef Exchange x
        if self.closed or self.transport is None or self.conn is None:
            return
        if self.lingering:
            if now - self.closing_since > LINGER:
                self.transport.close()
            return
        self.flush_counts()
        self.handle(self.conn.tick(now), now)
        if self.closed or self.closing:
            return
        if self.write_blocked > 0 and l.send_timeout > 0 and now - self.write_blocked > l.send_timeout:
            self.worker.count(ST_EV_TIMEOUT_SEND)
            self.transport.abort()
            return
        for s in list(self.streams.values()):
            x = s.x
            if x is None:
                continue
            if x.deadline > 0 and now >= x.deadline:
                x.on_deadline()
            elif (s.remote_open and s.pause == 0 and l.body_timeout > 0
                    and (x.state == X_WAITING or x.state == X_PROXYING)
                    and now - s.last_read > l.body_timeout
                    and not (x.expect_continue and x.bytes_in == 0)):
                self.worker.count(ST_EV_TIMEOUT_BODY)
                x.timed_out(E_BODY_TIMEOUT)
        if l.send_timeout > 0:
            for sid in self.conn.stalled_before(now - l.send_timeout):
                # the client leaves this stream's window shut: give up on it alone
                s = self.streams.get(sid)
                if s is None:
                    continue
                self.worker.count(ST_EV_TIMEOUT_SEND)
                if s.x is not None:
                    s.reset_code = CANCEL
                    self.broken(s.x)
                else:
                    self.reset(s.sid, CANCEL)
                    s.local_done = True
                    s.blocked = None
                    self.retire(s)
        if not self.streams:
            if not self.any_request:
                if l.header_timeout > 0 and now - self.born > l.header_timeout:
                    self.worker.count(ST_EV_TIMEOUT_HEADER)
                    self.close_conn(NO_ERROR, b"no request")
                    self.closing = True
            elif l.idle_timeout > 0 and now - self.last_active > l.idle_timeout:
                self.worker.count(ST_EV_TIMEOUT_IDLE)
                self.close_conn(NO_ERROR, b"idle")
                self.closing = True
        if (self.draining and not self.streams and self.conn.shutdown_step == 1
                and now - self.drain_since > DRAIN_PING_WAIT):
            # the client never answered the shutdown PING: end with the final GOAWAY anyway
            self.close_conn(NO_ERROR, b"")
        if l.max_duration > 0 and not self.draining and now - self.born > l.max_duration:
            self.drain_close()
        self.flush()

    cdef void drain_close(self) except *:
        """Graceful shutdown: GOAWAY, a PING round trip, the final GOAWAY; open streams finish."""
        if self.closed or self.conn is None:
            return
        self.draining = True
        self.drain_since = monotonic_now()
        self.conn.shutdown()
        self.counted_goaway(NO_ERROR, True)
        self.flush()

# cython: language_level=3
"""HTTP/2 to the upstream: shared connections (`H2Upstream`) whose streams (`UpstreamStream`)
are leased to exchanges by the pool (pool.pyx, protocol PROTO_HTTP2).

Theory of operation
-------------------
* `open_connection(worker, x, pool)` (called by Worker.open_upstream after the pool said
  LEASE_OPEN) connects, TLS with ALPN "h2" when the pool has a context (anything else than h2
  selected fails the connect), and sends our preface (h2c with prior knowledge on plaintext,
  RFC 9113 3.3). The connection joins the pool when the peer's first SETTINGS arrives: only
  then is its MAX_CONCURRENT_STREAMS known. `x` gets the first stream (lease_granted), and the
  pool wakes the exchanges that parked behind the opening connection. No SETTINGS within
  `connect_timeout`, or a close before it, is a failed connect (x.connect_failed).
* An `UpstreamStream` is the exchange's `UpstreamConn`: the pool creates it with a slot on its
  connection (`new_stream`), `send_request` opens the HTTP/2 stream. The request head is
  translated from HTTP/1.1 (RFC 9113 8.3.1): :method, :scheme (https with TLS), :authority (the
  absolute-form authority or Host, which is then not sent as a field), :path; the hop-by-hop
  fields are flagged in the HeaderBlock and never encoded, `te: trailers` is the only TE sent;
  Content-Length is kept, a chunked body becomes DATA frames, request trailers a HEADERS frame
  with END_STREAM.
* The response head is checked before the exchange sees it (RFC 9113 8.3.2, 8.2.2, 8.2.1): a
  3-digit :status and no request pseudo-header, no connection-specific field, no CR/LF/NUL in
  a field, one Content-Length; anything else resets the stream (PROTOCOL_ERROR) and the client
  gets 502. 1xx are interim (101 does not exist in HTTP/2, 8.6). The body is framed for the
  HTTP/1.1 client by Content-Length, else chunked; HEAD, 204 and 304 have none. DATA beyond
  Content-Length, or an end before it, is a stream error too (never a response cut short and
  passed on as complete). Trailers become HTTP/1.1 trailer lines.
* Backpressure per stream, both ways. Response: a DATA payload's window is credited back
  (H2Connection.consumed) once it is handed to the client, except while the client's side
  paused us (pause_reading): then the upstream's stream window closes and only that stream
  stops. Request: what the windows do not take (send_data is partial) waits on the stream and
  the client is paused (PAUSE_UPSTREAM) until a WINDOW_UPDATE (or SETTINGS) lets it go; the
  connection's own write buffer above its high-water mark pauses every stream's client.
* A stream gives its slot back exactly once (`give_back`): at the response's end (after a
  RST_STREAM CANCEL when our request was still going), when the exchange aborts it (close_now),
  or when it breaks. A refused stream (REFUSED_STREAM, or above a GOAWAY's last stream id:
  the request never reached the application) is retried by the exchange when safe.
* GOAWAY: the connection takes no new stream (`draining`), the streams at or below its last
  id finish, then it closes; the pool opens another for new requests. Stream-id exhaustion
  does the same. A connection error (the codec's, or HPACK's COMPRESSION_ERROR) ends every
  stream of the connection.
* Liveness (Pool.sweep, once a second): a connection that received nothing for
  `h2_ping_interval` is PINGed; nothing back within `h2_ping_timeout` closes it (its streams
  fail over as on a lost connection). `idle_timeout` closes a connection without streams.
* Frames are written once per event batch (`flush`), and after each call of the exchange.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport int64_t

from engine._fast.debug cimport live_add, SLUICE_DEBUG, LIVE_UPSTREAM, LIVE_TLS
from engine._fast.errors cimport E_BAD_RESPONSE, E_UPSTREAM_RESET
from engine._fast.exchange cimport Exchange, Services, UpstreamConn, Downstream, PAUSE_UPSTREAM
from engine._fast.headers cimport (
    HeaderBlock, HF_DROP, HF_HOP, H_CONNECTION, H_KEEP_ALIVE, H_PROXY_CONNECTION,
    H_TRANSFER_ENCODING, H_UPGRADE, H_TE, H_CONTENT_LENGTH,
)
from engine._fast.hpack cimport (
    Decoder, Encoder, HPACK_OK, hpack_h2_error, hpack_is_connection_error,
    PS_METHOD, PS_SCHEME, PS_AUTHORITY, PS_PATH, PS_STATUS, PS_PROTOCOL,
)
from engine._fast.http1 cimport BODY_NONE, BODY_LENGTH, BODY_CHUNKED
from engine._fast.http2 cimport (
    H2Connection, EV_HEADERS, EV_HEADERS_IGNORED, EV_DATA, EV_RESET, EV_STREAM_ERROR,
    EV_REFUSED, EV_WINDOW_UPDATE, EV_SETTINGS, EV_PING_ACK, EV_GOAWAY, EV_CONNECTION_ERROR,
    NO_ERROR, PROTOCOL_ERROR, CANCEL, REFUSED_STREAM,
)
from engine._fast.stats cimport (
    Stats, ST_H2_UPSTREAM, ST_H2_GAUGE_CONNECTIONS, ST_H2_GAUGE_STREAMS,
)
from engine._fast.limiter cimport monotonic_now
from engine._fast.pool cimport Pool, PooledConn

import asyncio
import ssl

cdef bytes N_HOST = b"host"
cdef bytes N_TE = b"te"
cdef bytes V_TRAILERS = b"trailers"
cdef bytes P_METHOD = b":method"
cdef bytes P_SCHEME = b":scheme"
cdef bytes P_AUTHORITY = b":authority"
cdef bytes P_PATH = b":path"
cdef bytes HTTP = b"http"
cdef bytes HTTPS = b"https"
cdef bytes PING_OPAQUE = b"sluice\x00\x01"
# fields HTTP/2 forbids (RFC 9113 8.2.2) or that name HTTP/1.1 framing: never sent upstream as
# an edit or a trailer, even when a filter adds one
cdef frozenset CONNECTION_SPECIFIC = frozenset([
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"te",
    b"host", b"http2-settings",
])


def open_connection(Services svc, Exchange x, Pool pool):
    """Open an HTTP/2 connection to `pool`'s endpoint for `x` (the pool reserved the slot);
    `x` hears lease_granted(stream) or connect_failed(pool, exc)."""
    svc.loop.create_task(_connect(svc, x, pool))


async def _connect(Services svc, Exchange x, Pool pool):
    try:
        await asyncio.wait_for(
            svc.loop.create_connection(lambda: H2Upstream(pool, svc, x), pool.host, pool.port,
                                       ssl=pool.ssl_context,
                                       server_hostname=pool.server_hostname
                                       if pool.ssl_context is not None else None),
            pool.connect_timeout)
    except (OSError, asyncio.TimeoutError, ssl.SSLError, ssl.CertificateError) as exc:
        x.connect_failed(pool, exc)
    # (on success the connection took over in connection_made: the peer's SETTINGS may arrive
    # before this coroutine runs again)


cdef int64_t parse_length(const char* p, Py_ssize_t n) noexcept:
    """A Content-Length value: 1..18 digits, else -1."""
    cdef int64_t v = 0
    cdef Py_ssize_t i
    if n < 1 or n > 18:
        return -1
    for i in range(n):
        if p[i] < 48 or p[i] > 57:          # '0'..'9'
            return -1
        v = v * 10 + (p[i] - 48)
    return v


cdef bint connection_specific(HeaderBlock hb) noexcept:
    """A field RFC 9113 8.2.2 forbids in a response or trailers (TE is for requests only)."""
    cdef int i, hid
    for i in range(hb.nheaders):
        hid = hb.hdr_id[i]
        if (hid == H_CONNECTION or hid == H_KEEP_ALIVE or hid == H_PROXY_CONNECTION
                or hid == H_TRANSFER_ENCODING or hid == H_UPGRADE or hid == H_TE):
            return True
    return False


cdef str check_head(Decoder dec, HeaderBlock hb, int* status, int64_t* length):
    """Check a decoded response head (RFC 9113 8.3.2, 8.2): None and its status and
    Content-Length (-1: none), or why it is malformed."""
    cdef int i, k, st
    cdef const char* head
    cdef int64_t v
    if dec.pseudo_flags:
        return "misplaced, repeated or unknown pseudo-header"
    if dec.malformed >= 0:
        return "a field with a forbidden character (CR, LF, NUL, or an upper-case name)"
    for k in (PS_METHOD, PS_SCHEME, PS_AUTHORITY, PS_PATH, PS_PROTOCOL):
        if dec.pseudo_idx[k] >= 0:
            return "a request pseudo-header in a response"
    i = dec.pseudo_idx[PS_STATUS]
    if i < 0:
        return "no :status"
    head = PyBytes_AS_STRING(hb.head)
    if hb.value_e[i] - hb.value_s[i] != 3:
        return "a :status that is not three digits"
    st = 0
    for k in range(hb.value_s[i], hb.value_e[i]):
        if head[k] < 48 or head[k] > 57:    # '0'..'9'
            return "a :status that is not three digits"
        st = st * 10 + (head[k] - 48)
    if st < 100:
        return "a :status below 100"
    if st == 101:
        return ":status 101 (HTTP/2 has no protocol switch)"
    if connection_specific(hb):
        return "a connection-specific field"
    length[0] = -1
    for i in range(hb.nheaders):
        if hb.hdr_id[i] == H_CONTENT_LENGTH:
            v = parse_length(head + hb.value_s[i], hb.value_e[i] - hb.value_s[i])
            if v < 0 or (length[0] >= 0 and v != length[0]):
                return "a bad or repeated content-length"
            length[0] = v
    status[0] = st
    return None


cdef list trailer_pairs(bytes lines):
    """HTTP/1.1 trailer lines (b"name: value\\r\\n"...) as [name, value, ...] for HPACK,
    without the fields HTTP/2 forbids."""
    cdef list out = []
    for line in lines.split(b"\r\n"):
        if not line:
            continue
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name and name not in CONNECTION_SPECIFIC and name != b"content-length":
            out.append(name)
            out.append(value.strip())
    return out


@cython.final
cdef class UpstreamStream(UpstreamConn):
    """One stream of an H2Upstream, leased to one exchange."""

    # --- what the exchange asks of its upstream -----------------------------------------------

    cdef void send_request(self, Exchange x) except *:
        cdef H2Upstream conn = self.conn
        cdef HeaderBlock h = x.req
        cdef bytes authority = None, n, block
        cdef list edits = [], src = x.edits
        cdef Py_ssize_t i
        cdef bint end
        cdef bint te_sent = False
        if self.released or conn.h2.available_streams <= 0:
            # the connection went away or got a GOAWAY between the lease and now: the request
            # never left, so it may be retried (before encoding: HPACK state must not move)
            conn.draining = True
            self.cut(E_UPSTREAM_RESET, True)
            return
        if src is not None:
            for i in range(0, len(src), 2):
                n = (<bytes>src[i]).lower()
                if n == N_HOST:
                    authority = <bytes>src[i + 1]      # absolute-form, or the endpoint's address
                elif n == N_TE:
                    # only `te: trailers` (RFC 9113 8.2.2), e.g. the gRPC-Web translation's
                    if (<bytes>src[i + 1]).lower() == V_TRAILERS and not te_sent:
                        te_sent = True
                        edits.append(N_TE)
                        edits.append(V_TRAILERS)
                elif n not in CONNECTION_SPECIFIC:
                    edits.append(n)
                    edits.append(src[i + 1])
        if h is not None:
            if h.host_index >= 0:
                if authority is None:
                    authority = h.header_value(h.host_index)
                h.hdr_flags[h.host_index] |= HF_DROP     # :authority carries it (8.3.1)
            for i in range(h.nheaders):
                # an HTTP/1.1 TE is hop-by-hop (not encoded): only its "trailers" goes on; an
                # HTTP/2 client's `te: trailers` is not flagged and is forwarded as it is
                if (h.hdr_id[i] == H_TE and h.hdr_flags[i] & HF_HOP and not te_sent
                        and V_TRAILERS in h.header_value(i).lower()):
                    edits.append(N_TE)
                    edits.append(V_TRAILERS)
                    break
        if authority is None:
            authority = self.pool.address
        block = conn.enc.encode(h, [P_METHOD, x.method, P_SCHEME, conn.scheme,
                                    P_AUTHORITY, authority, P_PATH, x.target], edits)
        end = not x.req_has_body
        self.sid = conn.h2.open_stream(block, end)
        if self.sid:
            conn.gauge(ST_H2_GAUGE_STREAMS, 1)
        if self.sid == 0:          # (available_streams said yes: cannot happen, but be safe)
            # the block moved our HPACK table but was not sent: the connection cannot go on
            conn.fail(PROTOCOL_ERROR, "a request head was encoded but not sent")
            self.cut(E_UPSTREAM_RESET, True)
            return
        self.req_ended = end
        self.sent_any = True
        conn.streams[self.sid] = self
        if conn.write_paused and not end and not self.blocked:
            self.blocked = True
            x.ds.pause_client(x, PAUSE_UPSTREAM)
        conn.flush()

    cdef void send_data(self, Exchange x, bytes chunk) except *:
        cdef H2Upstream conn = self.conn
        cdef Py_ssize_t n
        if self.released or self.req_ended or self.sid == 0 or PyBytes_GET_SIZE(chunk) == 0:
            return
        if self.out:
            self.out.append(chunk)
            return
        n = conn.h2.send_data(self.sid, chunk, False, monotonic_now())
        if n < 0:
            return              # the stream is gone (reset): its end is reported separately
        if n < PyBytes_GET_SIZE(chunk):
            self.out = [chunk[n:]]
            if not self.blocked:
                self.blocked = True
                x.ds.pause_client(x, PAUSE_UPSTREAM)
        conn.flush()

    cdef void send_pending(self, Exchange x, list chunks) except *:
        for c in chunks:
            self.send_data(x, <bytes>c)

    cdef void send_end(self, Exchange x, bytes trailers) except *:
        if self.released or self.req_ended or self.sid == 0:
            return
        self.req_ended = True
        if self.out:
            self.out_end = True
            self.out_trailers = trailers
            return
        self.send_end_now(trailers)
        self.conn.flush()

    cdef void send_end_now(self, bytes trailers) except *:
        cdef H2Upstream conn = self.conn
        cdef list pairs = trailer_pairs(trailers) if trailers else None
        if pairs:
            conn.h2.send_headers(self.sid, conn.enc.encode(None, None, pairs), True)
        else:
            conn.h2.send_data(self.sid, b"", True, monotonic_now())

    cdef void release(self, Exchange x, bint reusable) except *:
        """The response is complete: a request still being sent is stopped (RFC 9113 8.1)."""
        cdef H2Upstream conn = self.conn
        if self.sid and not self.released:
            conn.reset(self.sid, CANCEL)             # (no-op when both sides ended)
        if self.blocked and x.ds is not None:
            self.blocked = False
            x.ds.resume_client(x, PAUSE_UPSTREAM)       # (the rest of the body is dropped)
        conn.served += 1
        self.give_back()
        conn.flush()

    cdef void close_now(self):
        """The exchange gives up on the stream (client gone, timeout): reset it, not the
        connection, which other streams share."""
        cdef H2Upstream conn = self.conn
        self.dead = True
        if self.released:
            return
        if self.sid:
            conn.reset(self.sid, CANCEL)
        self.give_back()
        conn.flush()

    cdef void end_lease(self, double now) except *:
        self.close_now()

    cdef void pause_reading(self) except *:
        self.paused_reading = True

    cdef void resume_reading(self) except *:
        self.paused_reading = False
        if self.unacked and self.sid:
            self.conn.h2.consumed_stream(self.sid, self.unacked)
            self.unacked = 0
            self.conn.flush()

    # --- the response ------------------------------------------------------------------------

    cdef void on_headers(self, bytes block, bint end_stream) except *:
        cdef H2Upstream conn = self.conn
        cdef Exchange x = self.x
        cdef HeaderBlock hb = HeaderBlock()
        cdef int rc, st = 0, kind, i
        cdef int64_t length = -1
        cdef str why
        cdef list lines
        cdef const char* head
        rc = conn.dec.decode(hb, <const unsigned char*>PyBytes_AS_STRING(block),
                             PyBytes_GET_SIZE(block))
        if hpack_is_connection_error(rc):
            conn.fail(hpack_h2_error(rc), "HPACK: the response head could not be decoded")
            return
        if x is None:
            return
        self.got_bytes = True
        if rc != HPACK_OK:
            self.bad_response(PROTOCOL_ERROR, "a response head over the header limits")
            return
        if self.head_seen:
            # trailers (RFC 9113 8.1): they end the stream, and carry no pseudo-header
            if not end_stream:
                self.bad_response(PROTOCOL_ERROR, "a second header section without END_STREAM")
                return
            if (dec_has_pseudo(conn.dec) or conn.dec.malformed >= 0
                    or connection_specific(hb)):
                self.bad_response(PROTOCOL_ERROR, "malformed trailers")
                return
            head = PyBytes_AS_STRING(hb.head)
            lines = []
            for i in range(hb.nheaders):
                lines.append(head[hb.name_s[i]:hb.name_e[i]] + b": " +
                             head[hb.value_s[i]:hb.value_e[i]] + b"\r\n")
            self.finish_response(b"".join(lines))
            return
        why = check_head(conn.dec, hb, &st, &length)
        if why is not None:
            self.bad_response(PROTOCOL_ERROR, "malformed response head: " + why)
            return
        if st < 200:
            if end_stream:
                self.bad_response(PROTOCOL_ERROR, "an interim response that ends the stream")
                return
            x.response_head(hb, st, BODY_NONE)      # 100 goes on when the client expects it
            return
        self.head_seen = True
        if x.method_head or st == 204 or st == 304 or (end_stream and length <= 0):
            # (a head that ends the stream has no body: gRPC's trailers-only responses must
            # reach the client that way, or it reads their grpc-status as lost)
            self.body_none = True
            kind = BODY_NONE
        elif length >= 0:
            kind = BODY_LENGTH
        else:
            kind = BODY_CHUNKED
        self.resp_length = length
        x.response_head(hb, st, kind)
        if end_stream and self.x is x:
            self.finish_response(b"")

    cdef void on_data(self, bytes data, bint end_stream) except *:
        cdef H2Upstream conn = self.conn
        cdef Exchange x = self.x
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        if x is None:
            conn.h2.consumed(self.sid, n)
            return
        if not self.head_seen:
            conn.h2.consumed(self.sid, n)
            self.bad_response(PROTOCOL_ERROR, "DATA before the response head")
            return
        self.resp_got += n
        if (self.body_none and n) or (self.resp_length >= 0 and self.resp_got > self.resp_length):
            conn.h2.consumed(self.sid, n)
            self.bad_response(PROTOCOL_ERROR, "more DATA than its content-length"
                              if not self.body_none else "DATA in a response without a body")
            return
        if n:
            # the connection window at once (a paused stream holds at most its own window:
            # paused streams cannot starve the others), the stream's once the client takes it
            conn.h2.consumed_connection(n)
            x.response_data(data)
            if x.ds is not None:
                x.ds.flush()            # (a slow client pauses us here: pause_reading)
            if self.paused_reading:
                self.unacked += n
            else:
                conn.h2.consumed_stream(self.sid, n)
        if end_stream and self.x is x:
            self.finish_response(b"")

    cdef void finish_response(self, bytes trailers) except *:
        cdef Exchange x = self.x
        if self.resp_length >= 0 and not self.body_none and self.resp_got != self.resp_length:
            self.bad_response(PROTOCOL_ERROR, "less DATA than its content-length")
            return
        x.response_end(self, trailers, True)

    cdef void bad_response(self, int code, str why) except *:
        """The upstream broke HTTP/2's rules on this stream: reset it; the client gets 502, or
        its connection is cut when the response had started."""
        cdef H2Upstream conn = self.conn
        cdef Exchange x = self.x
        if self.sid and code:
            conn.reset(self.sid, code)
        conn.svc.warn(("h2-bad", conn.pool.address), "upstream %s: %s (stream reset)"
                      % (conn.pool.address.decode(), why), 1.0)
        self.give_back()
        if x is None:
            return
        x.upstream_broke(self, False, False, E_BAD_RESPONSE)
        if x.ds is not None:
            x.ds.flush()

    cdef void cut(self, int kind, bint refused) except *:
        """The stream ended under its exchange: reset by the upstream, refused, or its
        connection lost or broken."""
        cdef Exchange x = self.x
        self.give_back()
        if x is None:
            return
        if kind == E_BAD_RESPONSE:
            x.upstream_broke(self, False, False, E_BAD_RESPONSE)
            if x.ds is not None:
                x.ds.flush()
            return
        if refused and not self.got_bytes:
            # the request never reached the application: the exchange retries it when it can
            x.upstream_refused(self)
        else:
            x.upstream_lost(self)
        if x.ds is not None:
            x.ds.flush()

    cdef void drain(self) except *:
        """The windows opened: send what they held back, then the request's end."""
        cdef H2Upstream conn = self.conn
        cdef bytes chunk
        cdef Py_ssize_t n
        while self.out:
            chunk = <bytes>self.out[0]
            n = conn.h2.send_data(self.sid, chunk, False, monotonic_now())
            if n < 0:
                self.out = None
                return
            if n < PyBytes_GET_SIZE(chunk):
                self.out[0] = chunk[n:]
                return
            self.out.pop(0)
        self.out = None
        if self.out_end:
            self.out_end = False
            self.send_end_now(self.out_trailers)
            self.out_trailers = None
        if self.blocked and not conn.write_paused and self.x is not None:
            self.blocked = False
            self.x.ds.resume_client(self.x, PAUSE_UPSTREAM)

    cdef void give_back(self) except *:
        cdef H2Upstream conn = self.conn
        if self.released:
            return
        self.released = True
        self.dead = True
        self.out = None
        if self.blocked and self.x is not None and self.x.ds is not None:
            self.x.ds.resume_client(self.x, PAUSE_UPSTREAM)
        self.blocked = False
        if self.sid:
            conn.gauge(ST_H2_GAUGE_STREAMS, -1)
            conn.streams.pop(self.sid, None)
            self.unacked = 0            # (the connection window had it at once)
        conn.stream_done(self)


cdef inline bint dec_has_pseudo(Decoder dec) noexcept:
    cdef int k
    if dec.pseudo_flags or dec.pseudo_end > 0:
        return True
    for k in range(6):
        if dec.pseudo_idx[k] >= 0:
            return True
    return False


@cython.final
cdef class H2Upstream(PooledConn):
    """One HTTP/2 connection to an endpoint, shared by the streams the pool leases on it."""

    def __cinit__(self):
        live_add(LIVE_UPSTREAM, 1)

    def __dealloc__(self):
        live_add(LIVE_UPSTREAM, -1)
        if self.tls_live:
            live_add(LIVE_TLS, -1)

    def __init__(self, Pool pool, Services svc, Exchange x=None):
        self.pool = pool
        self.svc = svc
        self.opener = x
        self.h2 = H2Connection(True, initial_window_size=pool.h2_stream_window,
                               connection_window=pool.h2_conn_window,
                               settings_timeout=max(pool.connect_timeout, 5.0))
        self.enc = Encoder()
        self.dec = Decoder()
        self.scratch = HeaderBlock()
        self.streams = {}
        self.scheme = HTTPS if pool.ssl_context is not None else HTTP
        self.capacity = 0

    # --- transport callbacks ---------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.write = transport.write
        self.svc.open_fds += 1
        if SLUICE_DEBUG and transport.get_extra_info("ssl_object") is not None:
            self.tls_live = True
            live_add(LIVE_TLS, 1)
        x, self.opener = self.opener, None
        self.start(<Exchange>x)

    cdef void start(self, Exchange x) except *:
        """Connected (and the TLS handshake done): check ALPN, send our preface, and wait for
        the peer's SETTINGS (at most connect_timeout)."""
        cdef Pool pool = self.pool
        sslobj = self.transport.get_extra_info("ssl_object")
        if sslobj is not None and sslobj.selected_alpn_protocol() != "h2":
            self.reported = True
            self.dead = True
            self.transport.close()
            x.connect_failed(pool, ConnectionError(
                "the upstream did not select h2 by ALPN (got %r): it does not speak HTTP/2 "
                "over TLS" % (sslobj.selected_alpn_protocol(),)))
            return
        self.opener = x
        self.h2.initiate(monotonic_now())
        self.flush()
        self.timer = self.svc.loop.call_later(pool.connect_timeout, self.settings_late)

    def settings_late(self):
        self.timer = None
        if self.ready or self.reported:
            return
        x, self.opener = self.opener, None
        self.reported = True
        self.dead = True
        if self.transport is not None:
            self.transport.abort()
        (<Exchange>x).connect_failed(self.pool, TimeoutError(
            "no HTTP/2 SETTINGS from the upstream within connect_timeout (does it speak h2c?)"))

    def data_received(self, bytes data):
        cdef double now = monotonic_now()
        cdef list events
        self.last_seen = now
        self.ping_sent = 0          # it answers: alive (a PING ACK may queue behind DATA)
        events = self.h2.receive_data(data, now)
        if events:
            self.handle(events)
        self.flush()

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        cdef Exchange x
        self.svc.open_fds -= 1
        self.flush_counts()
        if self.counted:
            self.counted = False
            self.gauge(ST_H2_GAUGE_CONNECTIONS, -1)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.transport = None
        self.write = None
        self.dead = True
        if not self.ready:
            if not self.reported and self.opener is not None:
                self.reported = True
                x, self.opener = self.opener, None
                x.connect_failed(self.pool, exc if exc is not None else ConnectionError(
                    "the upstream closed the connection before its HTTP/2 SETTINGS"))
            return
        self.pool.forget(self)
        self.break_all(E_UPSTREAM_RESET)

    def pause_writing(self):
        cdef UpstreamStream s
        self.write_paused = True
        for v in self.streams.values():
            s = <UpstreamStream>v
            if s.x is not None and not s.req_ended and not s.blocked:
                s.blocked = True
                s.x.ds.pause_client(s.x, PAUSE_UPSTREAM)

    def resume_writing(self):
        cdef UpstreamStream s
        self.write_paused = False
        for v in list(self.streams.values()):
            s = <UpstreamStream>v
            if s.blocked and not s.out and s.x is not None:
                s.blocked = False
                s.x.ds.resume_client(s.x, PAUSE_UPSTREAM)

    # --- frames in -------------------------------------------------------------------------

    cdef void handle(self, list events) except *:
        cdef int kind, rc
        cdef int64_t sid
        cdef UpstreamStream s
        cdef bytes block
        cdef Exchange x
        for ev in events:
            kind = ev[0]
            sid = ev[1]
            s = <UpstreamStream>self.streams.get(sid) if sid else None
            x = s.x if s is not None else None
            if kind == EV_DATA:
                if s is not None:
                    s.on_data(<bytes>ev[2], ev[3])
                else:
                    self.h2.consumed(sid, PyBytes_GET_SIZE(<bytes>ev[2]))
            elif kind == EV_HEADERS and s is not None:
                s.on_headers(<bytes>ev[2], ev[3])
            elif kind == EV_HEADERS or kind == EV_HEADERS_IGNORED:
                # nobody wants it, but HPACK state must follow every block (RFC 9113 4.3)
                block = <bytes>ev[2]
                rc = self.dec.decode(self.scratch, <const unsigned char*>PyBytes_AS_STRING(block),
                                     PyBytes_GET_SIZE(block))
                if hpack_is_connection_error(rc):
                    self.fail(hpack_h2_error(rc), "HPACK: a header block could not be decoded")
            elif kind == EV_RESET:
                self.count_reset(ev[2], False)
                if s is not None:
                    if ev[2] == REFUSED_STREAM:
                        s.cut(E_UPSTREAM_RESET, True)
                    else:
                        self.svc.warn(("h2-rst", self.pool.address),
                                      "upstream %s reset a stream (error code %d)"
                                      % (self.pool.address.decode(), ev[2]), 1.0)
                        s.cut(E_UPSTREAM_RESET, False)
            elif kind == EV_STREAM_ERROR:
                self.count_reset(ev[2], True)
                if s is not None:      # the codec reset it: the upstream broke a rule on it
                    s.cut(E_BAD_RESPONSE, False)
            elif kind == EV_REFUSED:
                if s is not None:
                    s.cut(E_UPSTREAM_RESET, True)
            elif kind == EV_WINDOW_UPDATE:
                if s is not None:
                    if s.out:
                        s.drain()
                elif sid == 0:
                    self.drain_all()
            elif kind == EV_SETTINGS:
                self.enc.set_peer_max_table_size(ev[2])
                self.capacity = <int>min(<int64_t>ev[3], <int64_t>self.pool.h2_max_streams)
                if not self.ready:
                    self.became_ready()
                else:
                    self.drain_all()            # (its INITIAL_WINDOW_SIZE may have grown)
                    self.pool.h2_wake()         # (its MAX_CONCURRENT_STREAMS may have)
            elif kind == EV_PING_ACK:
                self.ping_sent = 0
            elif kind == EV_GOAWAY:
                self.count_goaway(ev[2], False)
                self.draining = True
                if ev[2] != NO_ERROR:
                    self.svc.warn(("h2-goaway", self.pool.address),
                                  "upstream %s sent GOAWAY with error code %d: %r"
                                  % (self.pool.address.decode(), ev[2], ev[3]), 1.0)
                # (streams above its last id come as EV_REFUSED next; the others finish)
                self.drained()
                self.pool.h2_wake()
            elif kind == EV_CONNECTION_ERROR:
                self.count_goaway(ev[2], True)
                self.svc.warn(("h2-error", self.pool.address),
                              "upstream %s broke HTTP/2 (%s): connection closed"
                              % (self.pool.address.decode(), ev[3]), 1.0)
                self.fail(0, None)
                return
            if x is not None and x.ds is not None:
                x.ds.flush()        # what the event gave the client goes out with this batch

    cdef void drain_all(self) except *:
        cdef UpstreamStream s
        for v in list(self.streams.values()):
            s = <UpstreamStream>v
            if s.out:
                s.drain()

    cdef void became_ready(self) except *:
        """The peer's SETTINGS arrived: into the pool, the first stream for the exchange that
        asked for the connection, then the ones parked behind it."""
        cdef Exchange x = self.opener
        cdef PooledConn s
        cdef double now = monotonic_now()
        self.ready = True
        self.reported = True
        self.opener = None
        self.counted = True
        self.gauge(ST_H2_GAUGE_CONNECTIONS, 1)
        self.idle_since = self.last_seen = now
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.pool.h2_ready(self)
        s = self.new_stream()
        if s is not None:
            x.lease_granted(<UpstreamConn>s)
        else:
            x.lease_ready()        # (a peer that allows no stream: the pool decides anew)
        self.pool.h2_wake()

    # --- the pool's side -------------------------------------------------------------------

    cdef PooledConn new_stream(self):
        cdef UpstreamStream s
        if self.dead or self.draining or not self.ready or self.active >= self.capacity:
            return None
        if self.h2.available_streams <= 0:
            self.draining = True          # GOAWAY or ids exhausted: close when the rest end
            self.drained()
            return None
        s = UpstreamStream.__new__(UpstreamStream)
        s.conn = self
        s.pool = self.pool
        s.resp_length = -1
        # a reused connection's stream may be retried when it breaks before any response byte
        # (the exchange's rule for a pooled connection the upstream closed meanwhile)
        s.idle_since = self.idle_since if self.served > 0 else 0.0
        self.active += 1
        return s

    cdef void stream_done(self, UpstreamStream s) except *:
        cdef Pool pool = self.pool
        self.active -= 1
        if self.active == 0:
            self.idle_since = monotonic_now()
        if pool.max_requests > 0 and self.served >= pool.max_requests:
            self.draining = True
        self.drained()
        pool.h2_wake()

    cdef void drained(self) except *:
        """A draining connection closes once its last stream ended."""
        if self.draining and self.active == 0 and self.ready and not self.dead:
            self.close_now()

    cdef void tick(self, double now) except *:
        """Pool.sweep, once a second: the SETTINGS ACK deadline and PING liveness."""
        cdef list events
        if not self.ready or self.dead or self.transport is None:
            return
        self.flush_counts()
        events = self.h2.tick(now)
        if events:
            self.handle(events)
            self.flush()
            if self.dead:
                return
        if self.ping_sent > 0:
            if now - self.ping_sent >= self.pool.h2_ping_timeout:
                self.svc.warn(("h2-ping", self.pool.address),
                              "upstream %s did not answer a PING within %gs: connection closed"
                              % (self.pool.address.decode(), self.pool.h2_ping_timeout), 1.0)
                self.dead = True
                self.transport.abort()      # (connection_lost fails its streams over)
        elif self.pool.h2_ping_interval > 0 and now - self.last_seen >= self.pool.h2_ping_interval:
            self.h2.ping(PING_OPAQUE)
            self.ping_sent = now
            self.flush()

    cdef void close_now(self):
        """Close gracefully (GOAWAY NO_ERROR): idle, draining, or its pool went away."""
        self.dead = True
        self.draining = True
        if self.transport is not None:
            if not self.h2.closed:
                self.h2.close(NO_ERROR)
                self.count_goaway(NO_ERROR, True)
            self.flush_now()
            self.transport.close()

    # --- helpers -----------------------------------------------------------------------------

    cdef void reset(self, int64_t sid, int code) except *:
        """RST_STREAM, counted by code (sluice_http2_resets_total, side="upstream")."""
        if self.h2.reset_stream(sid, code):
            self.count_reset(code, True)

    cdef void count_reset(self, int code, bint sent) noexcept:
        cdef Stats st = self.svc.stats
        if st is not None:
            st.h2_reset(self.svc.stats_worker, ST_H2_UPSTREAM, sent, code)

    cdef void count_goaway(self, int code, bint sent) noexcept:
        cdef Stats st = self.svc.stats
        if st is not None:
            st.h2_goaway(self.svc.stats_worker, ST_H2_UPSTREAM, sent, code)

    cdef void gauge(self, int which, long delta) noexcept:
        cdef Stats st = self.svc.stats
        if st is not None:
            st.h2_gauge(self.svc.stats_worker, ST_H2_UPSTREAM, which, delta)

    cdef void flush_counts(self) noexcept:
        cdef Stats st = self.svc.stats
        if st is not None:
            st.h2_flush(self.svc.stats_worker, ST_H2_UPSTREAM, &self.h2.counts[0],
                        &self.flushed[0])

    cdef void flush(self) except *:
        """Frames go out once per turn of the event loop, whatever number of streams queued
        them in it: a write per request would cost more than the rest of the stream."""
        if self.write is None or self.write_scheduled:
            return
        self.write_scheduled = True
        self.svc.loop.call_soon(self.write_out)

    def write_out(self):
        self.write_scheduled = False
        self.flush_now()

    cdef void flush_now(self) except *:
        cdef bytes data
        if self.write is None:
            return
        data = self.h2.data_to_send()
        if data:
            self.write(data)

    cdef void fail(self, int code, str why) except *:
        """A connection error: GOAWAY (the codec queued it already when code is 0), every
        stream fails, the connection closes."""
        if code:
            self.svc.warn(("h2-error", self.pool.address), "upstream %s: %s: connection closed"
                          % (self.pool.address.decode(), why), 1.0)
            self.h2.close(code, (why or "").encode())
            self.count_goaway(code, True)
        self.dead = True
        self.draining = True
        self.flush_now()
        if self.ready:
            self.pool.forget(self)
        self.break_all(E_BAD_RESPONSE)
        if self.transport is not None:
            self.transport.close()

    cdef void break_all(self, int kind) except *:
        cdef UpstreamStream s
        for v in list(self.streams.values()):
            s = <UpstreamStream>v
            s.cut(kind, False)

    # --- tests and tools ---------------------------------------------------------------------

    @property
    def stream_count(self):
        return self.active

    def _set_next_stream_id(self, sid):
        """Tests only: jump to the end of the stream id space (exhaustion)."""
        self.h2._set_next_stream_id(sid)

    @property
    def is_draining(self):
        return self.draining

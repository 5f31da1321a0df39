# cython: language_level=3
"""HTTP/2 connection codec (RFC 9113): frames in, events out, frames out.

Theory of operation
===================

Who calls it
    `proxy` owns one H2Connection per HTTP/2 connection: server role (client=False) for a
    downstream connection, client role (client=True) for an upstream one. It calls
    ``initiate(now)`` once, then on every read ``receive_data(data, now)``, which returns a
    list of events; after every batch of events and sends it writes ``data_to_send()``.
    Once per timer turn it calls ``tick(now)`` (the SETTINGS acknowledgement deadline) and
    sweeps ``stalled_before(now - timeout)`` (zero-window stalls).

Events
    Tuples ``(kind, stream_id, a, b)`` (EV_* in http2.pxd say what a and b are), in a list
    per receive_data() call. Why tuples and not a C struct array: every event that matters
    carries a Python object the caller needs anyway (the header block to decode, the DATA
    payload to write to the other side), so a struct array would still allocate that
    object and add a second way to read the fields; a 4-tuple comes from CPython's tuple
    freelist and the list is one allocation per read, not per frame (the proxy needs the
    stream id as a Python int anyway, to find its Exchange). At most two events per frame (a dropped header block and its stream
    error), except GOAWAY (one EV_REFUSED per stream it refuses).

Frame size out
    We send frames of at most 16384 bytes, the SETTINGS_MAX_FRAME_SIZE every peer accepts,
    whatever larger value the peer announces. Larger frames save little, and h2 (so hypercorn, an upstream we must serve) applies a larger value it
    announced only from its next read after our ACK: a bigger frame in the same read as the
    ACK is refused with FRAME_SIZE_ERROR (found by the differential test).

Header blocks
    The codec never decodes HPACK (hpack.pyx does). A header block (HEADERS + CONTINUATIONs
    joined, padding and priority removed) is handed out whole as EV_HEADERS. When the codec
    drops a stream whose block arrived (refused, over a GOAWAY, reset by us, malformed) it
    still hands the block out, as EV_HEADERS_IGNORED: the caller MUST decode it and discard
    the result, or the HPACK dynamic tables of the two ends diverge (RFC 9113 4.3).
    Symmetrically send_headers() takes an encoded block and splits it into HEADERS and
    CONTINUATION frames (see "Frame size out"); blocks are never interleaved.

Stream states
    TRANSITIONS (below) is the RFC 9113 5.1 state machine as data: (state, input) -> state,
    for the legal pairs only. A received frame whose pair is absent gets the error RECV_ERROR
    names for the state (5.1: idle -> connection PROTOCOL_ERROR, half-closed (remote) ->
    stream STREAM_CLOSED, closed -> connection STREAM_CLOSED); a send whose pair is absent
    is the caller's bug (H2UsageError). END_STREAM is its own input, applied after the
    HEADERS or DATA that carried it. Closed streams leave `streams`; the last RECENT_CLOSED
    are remembered in `recent` with how they closed, so that frames the peer sent before it
    saw our RST_STREAM are ignored (with their flow control credited back and their header
    block still handed out) while frames on a stream it closed itself are errors.

Flow control (RFC 9113 5.2, 6.9)
    Receiving: DATA counts against the connection and the stream window; beyond either ->
    FLOW_CONTROL_ERROR (connection, resp. stream). Windows are credited back only when the
    application calls ``consumed(sid, n)`` (padding is credited at once), and a
    WINDOW_UPDATE goes out when half a window is owed: backpressure is per stream. Sending:
    ``send_data()`` sends what both windows allow and returns the count; the caller keeps the
    rest and retries on EV_WINDOW_UPDATE. A blocked stream records ``stalled_since``.

Defences (each has a counter, C_* in http2.pxd, and a test)
    * rapid reset (CVE-2023-44487): a peer RST_STREAM of a stream we were still answering is
      spent from a budget per `flood_window`; over it -> GOAWAY ENHANCE_YOUR_CALM.
    * CONTINUATION flood: a header block over max_header_block bytes or max_continuations
      frames -> GOAWAY ENHANCE_YOUR_CALM before it is buffered further.
    * SETTINGS, PING, empty DATA without END_STREAM and WINDOW_UPDATE floods: a budget each
      per window -> ENHANCE_YOUR_CALM. Our ACKs are only queued within budget, so output
      stays bounded even when the peer does not read.
    * max concurrent streams (ours): a stream over it -> RST_STREAM REFUSED_STREAM.
    * zero-window stall: stalled_since / stalled_before() for the caller's timeout sweep.
    * stream-id exhaustion (client role): open_stream() returns 0, `exhausted` is set and a
      GOAWAY goes out: the pool opens a new connection.
    Memory: the input buffer holds at most one frame (9 + max frame size), a header block at
    most max_header_block bytes, `recent` RECENT_CLOSED entries, streams max concurrent.

What it never does
    No I/O, clock reads, config or logging; no exceptions on bad input (violations become
    events and frames). H2UsageError only for a caller bug (sending on a stream in a state
    that forbids it). No pure-Python twin: h2 is the oracle in tests/oracles.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from libc.string cimport memcpy, memcmp
from libc.stdint cimport int64_t, uint8_t, uint32_t


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"      # RFC 9113 3.4
cdef const char* C_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

cdef enum:   # frame types (RFC 9113 6)
    F_DATA = 0x0
    F_HEADERS = 0x1
    F_PRIORITY = 0x2
    F_RST_STREAM = 0x3
    F_SETTINGS = 0x4
    F_PUSH_PROMISE = 0x5
    F_PING = 0x6
    F_GOAWAY = 0x7
    F_WINDOW_UPDATE = 0x8
    F_CONTINUATION = 0x9

cdef enum:   # frame flags
    FL_END_STREAM = 0x1
    FL_ACK = 0x1
    FL_END_HEADERS = 0x4
    FL_PADDED = 0x8
    FL_PRIORITY = 0x20

cdef enum:   # SETTINGS identifiers (RFC 9113 6.5.2)
    SET_HEADER_TABLE_SIZE = 0x1
    SET_ENABLE_PUSH = 0x2
    SET_MAX_CONCURRENT_STREAMS = 0x3
    SET_INITIAL_WINDOW_SIZE = 0x4
    SET_MAX_FRAME_SIZE = 0x5
    SET_MAX_HEADER_LIST_SIZE = 0x6

cdef enum:   # stream inputs: the columns of the transition table
    I_SEND_HEADERS = 0
    I_SEND_DATA = 1
    I_SEND_END = 2          # END_STREAM sent (after the HEADERS/DATA carrying it)
    I_SEND_RST = 3
    I_RECV_HEADERS = 4
    I_RECV_DATA = 5
    I_RECV_END = 6
    I_RECV_RST = 7
    I_COUNT = 8

cdef enum:   # outcomes of a table lookup that are not a state
    X_CONN_PROTOCOL = 16    # connection error PROTOCOL_ERROR
    X_STREAM_CLOSED = 17    # stream error STREAM_CLOSED
    X_CONN_CLOSED = 18      # connection error STREAM_CLOSED
    X_USAGE = 19            # a send the state forbids: the caller's bug

cdef enum:   # how a stream we no longer hold closed (values of `recent`)
    A_IDLE = 0              # never opened (not in `recent`: derived from the ids)
    A_CLOSED = 1            # closed by END_STREAM both ways (or implicitly, a skipped id)
    A_RESET_BY_US = 2       # we sent RST_STREAM: the peer may not have seen it yet
    A_RESET_BY_PEER = 3

cdef enum:   # budgets (indexes of budget[] / spent[])
    B_SETTINGS = 0
    B_PING = 1
    B_EMPTY_DATA = 2
    B_WINDOW_UPDATE = 3
    B_RAPID_RESET = 4

cdef enum:
    RECENT_CLOSED = 256     # closed streams remembered, for frames that crossed our RST
    DEFAULT_WINDOW = 65535  # RFC 9113 6.9.2
    DEFAULT_FRAME = 16384   # RFC 9113 6.5.2
    MAX_FRAME_LIMIT = 16777215

cdef int64_t MAX_WINDOW = 2147483647      # 2^31 - 1 (RFC 9113 6.9.1)
cdef int64_t MAX_SID = 2147483647
cdef bytes SHUTDOWN_PING = b"sluice\x00\x01"

# The stream state machine, RFC 9113 5.1 (figure 2), as data: the legal transitions only.
# Reserved states are unused: push is disabled both ways (PUSH_PROMISE is a connection error).
TRANSITIONS = {
    (S_IDLE, I_SEND_HEADERS): S_OPEN,
    (S_IDLE, I_RECV_HEADERS): S_OPEN,
    (S_OPEN, I_SEND_HEADERS): S_OPEN,
    (S_OPEN, I_SEND_DATA): S_OPEN,
    (S_OPEN, I_SEND_END): S_HALF_CLOSED_LOCAL,
    (S_OPEN, I_SEND_RST): S_CLOSED,
    (S_OPEN, I_RECV_HEADERS): S_OPEN,
    (S_OPEN, I_RECV_DATA): S_OPEN,
    (S_OPEN, I_RECV_END): S_HALF_CLOSED_REMOTE,
    (S_OPEN, I_RECV_RST): S_CLOSED,
    (S_HALF_CLOSED_LOCAL, I_SEND_RST): S_CLOSED,
    (S_HALF_CLOSED_LOCAL, I_RECV_HEADERS): S_HALF_CLOSED_LOCAL,
    (S_HALF_CLOSED_LOCAL, I_RECV_DATA): S_HALF_CLOSED_LOCAL,
    (S_HALF_CLOSED_LOCAL, I_RECV_END): S_CLOSED,
    (S_HALF_CLOSED_LOCAL, I_RECV_RST): S_CLOSED,
    (S_HALF_CLOSED_REMOTE, I_SEND_HEADERS): S_HALF_CLOSED_REMOTE,
    (S_HALF_CLOSED_REMOTE, I_SEND_DATA): S_HALF_CLOSED_REMOTE,
    (S_HALF_CLOSED_REMOTE, I_SEND_END): S_CLOSED,
    (S_HALF_CLOSED_REMOTE, I_SEND_RST): S_CLOSED,
    (S_HALF_CLOSED_REMOTE, I_RECV_RST): S_CLOSED,
    (S_CLOSED, I_RECV_RST): S_CLOSED,
}

# What a received frame not in TRANSITIONS is, per state (RFC 9113 5.1).
RECV_ERROR = {
    S_IDLE: X_CONN_PROTOCOL,            # "... other than HEADERS or PRIORITY ... PROTOCOL_ERROR"
    S_RESERVED_LOCAL: X_CONN_PROTOCOL,
    S_RESERVED_REMOTE: X_CONN_PROTOCOL,
    S_OPEN: X_CONN_PROTOCOL,            # (every receive is legal when open)
    S_HALF_CLOSED_LOCAL: X_CONN_PROTOCOL,
    S_HALF_CLOSED_REMOTE: X_STREAM_CLOSED,  # "... MUST respond with a stream error STREAM_CLOSED"
    S_CLOSED: X_CONN_CLOSED,            # after END_STREAM: "connection error STREAM_CLOSED"
}

cdef uint8_t TABLE[S_COUNT][I_COUNT]


cdef void _build_table():
    cdef int s, i
    for s in range(S_COUNT):
        for i in range(I_COUNT):
            if (s, i) in TRANSITIONS:
                TABLE[s][i] = TRANSITIONS[(s, i)]
            elif i >= I_RECV_HEADERS:
                TABLE[s][i] = RECV_ERROR[s]
            else:
                TABLE[s][i] = X_USAGE


_build_table()

COUNTER_NAMES = (
    "frames_in", "streams_opened", "resets_received", "resets_sent", "refused_streams",
    "rapid_resets", "goaway_sent", "goaway_received", "connection_errors", "stream_errors",
    "flood_settings", "flood_ping", "flood_empty_data", "flood_window_update",
    "flood_rapid_reset", "flood_continuation", "flow_stalls", "settings_timeouts",
    "ids_exhausted",
)
cdef int[5] FLOOD_COUNTER = [C_FLOOD_SETTINGS, C_FLOOD_PING, C_FLOOD_EMPTY_DATA,
                             C_FLOOD_WINDOW_UPDATE, C_FLOOD_RAPID_RESET]
FLOOD_REASONS = ("SETTINGS flood", "PING flood", "empty DATA flood", "WINDOW_UPDATE flood",
                 "rapid reset")


class H2UsageError(Exception):
    """The caller sent something the stream's state forbids (a bug in the caller, never
    the peer's doing)."""


cdef inline uint32_t _u32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline void _w32(char* p, uint32_t v) noexcept nogil:
    p[0] = <char>(v >> 24)
    p[1] = <char>(v >> 16)
    p[2] = <char>(v >> 8)
    p[3] = <char>v


@cython.final
@cython.freelist(64)
cdef class H2Stream:
    """One stream's state and windows. The connection creates and drops them."""

    def __repr__(self):
        return f"<H2Stream {self.sid} state={self.state} send={self.send_window} recv={self.recv_window}>"


@cython.final
cdef class H2Connection:
    """Sans-I/O HTTP/2 connection, either role. Limits are primitives from the caller's
    config; defaults are RFC 9113's (windows, frame size) or conservative (the rest)."""

    def __init__(self, bint client, *, int max_concurrent_streams=100,
                 int initial_window_size=65535, int max_frame_size=16384,
                 int header_table_size=4096, int max_header_list_size=65536,
                 int connection_window=1048576, int max_header_block=65536,
                 int max_continuations=32, double settings_timeout=10.0,
                 double flood_window=10.0, int max_settings=100, int max_pings=100,
                 int max_empty_data=1000, int max_window_updates=10000,
                 int max_rapid_resets=200):
        self.client = client
        self.inbuf = bytearray()
        self.out = bytearray()
        self.events = []
        self.streams = {}
        self.recent = {}
        self.recent_order = []
        self.block = bytearray()
        self.settings_deadlines = []
        self.local_max_concurrent = max_concurrent_streams
        self.local_initial_window = min(<int64_t>initial_window_size, MAX_WINDOW)
        self.local_max_frame = min(max(<int64_t>max_frame_size, DEFAULT_FRAME), MAX_FRAME_LIMIT)
        self.local_header_table_size = header_table_size
        self.local_max_header_list = max_header_list_size
        # RFC 9113 6.9.2: the peer applies our INITIAL_WINDOW_SIZE when it reads our SETTINGS,
        # we learn that from its ACK: until then a stream may take the larger of the two
        self.recv_initial = max(<int64_t>DEFAULT_WINDOW, self.local_initial_window)
        self.peer_max_concurrent = MAX_SID        # "initially, there is no limit" (6.5.2)
        self.peer_initial_window = DEFAULT_WINDOW
        self.peer_max_frame = DEFAULT_FRAME
        self.peer_header_table_size = 4096
        self.peer_max_header_list = -1            # unlimited until announced
        self.conn_send_window = DEFAULT_WINDOW
        self.conn_recv_window = DEFAULT_WINDOW
        self.conn_recv_target = max(min(<int64_t>connection_window, MAX_WINDOW), DEFAULT_WINDOW)
        self.next_local_sid = 1 if client else 2
        self.goaway_sent_last = -1
        self.goaway_recv_last = -1
        self.max_header_block = max_header_block
        self.max_continuations = max_continuations
        self.settings_timeout = settings_timeout
        self.flood_window = flood_window
        self.budget[B_SETTINGS] = max_settings
        self.budget[B_PING] = max_pings
        self.budget[B_EMPTY_DATA] = max_empty_data
        self.budget[B_WINDOW_UPDATE] = max_window_updates
        self.budget[B_RAPID_RESET] = max_rapid_resets

    # -----------------------------------------------------------------------------------------
    # Input

    def initiate(self, double now):
        """Queue our connection preface: the client magic (client role) and our SETTINGS,
        plus a connection WINDOW_UPDATE up to `connection_window` (RFC 9113 3.4, 6.9.2)."""
        cdef char buf[36]
        cdef int n = 0
        self.now = now
        if self.client:
            self._reserve(24)
            memcpy(PyByteArray_AS_STRING(self.out) + PyByteArray_GET_SIZE(self.out) - 24, C_PREFACE, 24)
        for ident, value in ((SET_ENABLE_PUSH, 0), (SET_MAX_CONCURRENT_STREAMS, self.local_max_concurrent),
                             (SET_INITIAL_WINDOW_SIZE, self.local_initial_window),
                             (SET_MAX_FRAME_SIZE, self.local_max_frame),
                             (SET_HEADER_TABLE_SIZE, self.local_header_table_size),
                             (SET_MAX_HEADER_LIST_SIZE, self.local_max_header_list)):
            if ident == SET_HEADER_TABLE_SIZE and value == 4096:
                continue
            buf[n] = 0
            buf[n + 1] = <char>ident
            _w32(buf + n + 2, <uint32_t>value)
            n += 6
        self._put_frame(F_SETTINGS, 0, 0, buf, n)
        self.settings_deadlines.append(now + self.settings_timeout)
        if self.conn_recv_target > DEFAULT_WINDOW:
            self._put_u32_frame(F_WINDOW_UPDATE, 0, <uint32_t>(self.conn_recv_target - DEFAULT_WINDOW))
            self.conn_recv_window = self.conn_recv_target

    cpdef list receive_data(self, bytes data, double now):
        """Take bytes read from the peer; return the events they complete (maybe none)."""
        cdef Py_ssize_t consumed = 0
        cdef list events = []
        self.events = events
        self.now = now
        if self.closed:
            return events
        if PyByteArray_GET_SIZE(self.inbuf) == 0:
            # the common case: parse the caller's bytes in place, keep only an incomplete tail
            self._process(<const uint8_t*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), &consumed)
            if consumed < PyBytes_GET_SIZE(data) and not self.closed:
                self.inbuf += data[consumed:]
        else:
            self.inbuf += data
            self._process(<const uint8_t*>PyByteArray_AS_STRING(self.inbuf),
                          PyByteArray_GET_SIZE(self.inbuf), &consumed)
            del self.inbuf[:consumed]
        if self.closed:
            self.inbuf = bytearray()
        return events

    cpdef list tick(self, double now):
        """The timer turn: SETTINGS unacknowledged past its deadline -> SETTINGS_TIMEOUT
        (RFC 9113 6.5.3). Returns the events (at most the connection error)."""
        cdef list events = []
        self.events = events
        self.now = now
        if not self.closed and self.settings_deadlines and now >= self.settings_deadlines[0]:
            self.counts[C_SETTINGS_TIMEOUTS] += 1
            self._conn_error(SETTINGS_TIMEOUT, "SETTINGS not acknowledged")
        return events

    cdef void _process(self, const uint8_t* p, Py_ssize_t n, Py_ssize_t* consumed):
        cdef Py_ssize_t pos = 0, length, k
        cdef int ftype, flags
        cdef int64_t sid
        if not self.client and self.preface_seen < 24:
            k = min(n, 24 - self.preface_seen)
            if memcmp(p, C_PREFACE + self.preface_seen, k) != 0:
                self._conn_error(PROTOCOL_ERROR, "invalid connection preface")
                consumed[0] = n
                return
            self.preface_seen += k
            pos = k
        while not self.closed and n - pos >= 9:
            length = (<Py_ssize_t>p[pos] << 16) | (<Py_ssize_t>p[pos + 1] << 8) | p[pos + 2]
            ftype = p[pos + 3]
            flags = p[pos + 4]
            sid = _u32(p + pos + 5) & 0x7fffffff          # the reserved bit is ignored (4.1)
            if length > self.local_max_frame:
                self._conn_error(FRAME_SIZE_ERROR, "frame larger than SETTINGS_MAX_FRAME_SIZE")
                break
            if n - pos - 9 < length:
                break
            pos += 9 + length
            self.counts[C_FRAMES_IN] += 1
            self._frame(ftype, flags, sid, p + pos - length, length)
        consumed[0] = pos

    cdef void _frame(self, int ftype, int flags, int64_t sid, const uint8_t* p, Py_ssize_t n):
        if not self.got_settings:
            # RFC 9113 3.4: the peer's preface is a SETTINGS frame (not an ACK)
            if ftype != F_SETTINGS or flags & FL_ACK:
                self._conn_error(PROTOCOL_ERROR, "connection preface is not SETTINGS")
                return
            self.got_settings = True
        if self.cont_sid and (ftype != F_CONTINUATION or sid != self.cont_sid):
            # RFC 9113 6.2, 6.10: a header block is contiguous
            self._conn_error(PROTOCOL_ERROR, "header block interrupted")
            return
        if ftype == F_DATA:
            self._data(flags, sid, p, n)
        elif ftype == F_HEADERS:
            self._headers(flags, sid, p, n)
        elif ftype == F_CONTINUATION:
            self._continuation(flags, sid, p, n)
        elif ftype == F_WINDOW_UPDATE:
            self._window_update(sid, p, n)
        elif ftype == F_RST_STREAM:
            self._rst_stream(sid, p, n)
        elif ftype == F_SETTINGS:
            self._settings(flags, sid, p, n)
        elif ftype == F_PING:
            self._ping(flags, sid, p, n)
        elif ftype == F_GOAWAY:
            self._goaway(sid, p, n)
        elif ftype == F_PRIORITY:
            self._priority(sid, p, n)
        elif ftype == F_PUSH_PROMISE:
            # 8.4: a server never accepts one; our client sent ENABLE_PUSH=0
            self._conn_error(PROTOCOL_ERROR, "PUSH_PROMISE refused")
        # unknown frame types are ignored (RFC 9113 4.1, 5.5)

    # -----------------------------------------------------------------------------------------
    # Frames received

    cdef void _data(self, int flags, int64_t sid, const uint8_t* p, Py_ssize_t n):
        cdef Py_ssize_t pad = 0, start = 0
        cdef H2Stream st
        cdef int r, how
        cdef bint end = flags & FL_END_STREAM
        if sid == 0:
            self._conn_error(PROTOCOL_ERROR, "DATA on stream 0")        # 6.1
            return
        if flags & FL_PADDED:
            if n < 1 or p[0] >= n:
                self._conn_error(PROTOCOL_ERROR, "DATA padding too long")   # 6.1
                return
            pad = p[0] + 1
            start = 1
        if n > self.conn_recv_window:
            self._conn_error(FLOW_CONTROL_ERROR, "DATA beyond the connection window")   # 6.9
            return
        self.conn_recv_window -= n
        st = self.streams.get(sid)
        if st is None:
            how = self._absent(sid)
            if how == A_IDLE:
                self._conn_error(PROTOCOL_ERROR, "DATA on an idle stream")            # 5.1
            elif how == A_CLOSED:
                self._conn_error(STREAM_CLOSED, "DATA on a closed stream")            # 5.1
            else:
                self._credit(None, n)
                if how == A_RESET_BY_PEER:
                    self._stream_error(sid, STREAM_CLOSED)                            # 5.1
            return
        r = TABLE[st.state][I_RECV_DATA]
        if r >= X_CONN_PROTOCOL:
            self._credit(None, n)
            if r == X_STREAM_CLOSED:
                self._stream_error(sid, STREAM_CLOSED)
            else:
                self._conn_error(PROTOCOL_ERROR if r == X_CONN_PROTOCOL else STREAM_CLOSED, "DATA not allowed")
            return
        if not st.got_head:
            # 8.1: a message starts with HEADERS (client role: DATA before the response head)
            self._credit(None, n)
            self._stream_error(sid, PROTOCOL_ERROR)
            return
        if n > st.recv_window:
            self._credit(None, n)
            self._stream_error(sid, FLOW_CONTROL_ERROR)                               # 6.9
            return
        st.recv_window -= n
        if n - pad == 0 and not end:
            if not self._spend(B_EMPTY_DATA):
                return
        if pad:
            self._credit(st, pad)
        self.events.append((EV_DATA, sid,
                            PyBytes_FromStringAndSize(<const char*>p + start, n - pad), end))
        if end:
            self._recv(st, I_RECV_END)

    cdef void _headers(self, int flags, int64_t sid, const uint8_t* p, Py_ssize_t n):
        cdef Py_ssize_t pos = 0, pad = 0
        cdef bint bad_priority = False
        if sid == 0:
            self._conn_error(PROTOCOL_ERROR, "HEADERS on stream 0")              # 6.2
            return
        if flags & FL_PADDED:
            if n < 1:
                self._conn_error(FRAME_SIZE_ERROR, "HEADERS too short")
                return
            pad = p[0]
            pos = 1
        if flags & FL_PRIORITY:
            if n - pos < 5:
                self._conn_error(FRAME_SIZE_ERROR, "HEADERS too short")
                return
            bad_priority = (_u32(p + pos) & 0x7fffffff) == sid                  # 5.3.1
            pos += 5
        if pad > n - pos:
            self._conn_error(PROTOCOL_ERROR, "HEADERS padding too long")        # 6.2
            return
        if n - pos - pad > self.max_header_block:
            self.counts[C_FLOOD_CONTINUATION] += 1
            self._conn_error(ENHANCE_YOUR_CALM, "header block too large")
            return
        if flags & FL_END_HEADERS:
            self._header_block(sid, flags & FL_END_STREAM,
                               PyBytes_FromStringAndSize(<const char*>p + pos, n - pos - pad), bad_priority)
            return
        self.cont_sid = sid
        self.cont_end_stream = flags & FL_END_STREAM
        self.cont_bad_priority = bad_priority
        self.cont_frames = 0
        self.block = bytearray(PyBytes_FromStringAndSize(<const char*>p + pos, n - pos - pad))

    cdef void _continuation(self, int flags, int64_t sid, const uint8_t* p, Py_ssize_t n):
        cdef bytes whole
        if self.cont_sid == 0:
            self._conn_error(PROTOCOL_ERROR, "CONTINUATION without HEADERS")     # 6.10
            return
        self.cont_frames += 1
        if self.cont_frames > self.max_continuations or \
                PyByteArray_GET_SIZE(self.block) + n > self.max_header_block:
            self.counts[C_FLOOD_CONTINUATION] += 1
            self._conn_error(ENHANCE_YOUR_CALM, "header block too large")
            return
        self.block += PyBytes_FromStringAndSize(<const char*>p, n)
        if flags & FL_END_HEADERS:
            whole = bytes(self.block)
            self.block = bytearray()
            self.cont_sid = 0
            self._header_block(sid, self.cont_end_stream, whole, self.cont_bad_priority)

    cdef void _header_block(self, int64_t sid, bint end_stream, bytes block, bint bad_priority):
        cdef H2Stream st = self.streams.get(sid)
        cdef int how, r
        if st is None:
            how = self._absent(sid)
            if how == A_RESET_BY_US:
                self.events.append((EV_HEADERS_IGNORED, sid, block, None))
                return
            if how == A_RESET_BY_PEER:
                self.events.append((EV_HEADERS_IGNORED, sid, block, None))
                self._stream_error(sid, STREAM_CLOSED)
                return
            if how == A_CLOSED:
                self._conn_error(STREAM_CLOSED if sid in self.recent else PROTOCOL_ERROR,
                                 "HEADERS on a closed stream")                     # 5.1, 5.1.1
                return
            if self.client or not self._peer_initiated(sid):
                # idle and ours to open, or a push (client role): never the peer's to open
                self._conn_error(PROTOCOL_ERROR, "HEADERS opening a stream the peer may not open")
                return
            # a new stream (5.1.1: higher than every earlier one, which _absent checked)
            self.highest_peer_sid = sid
            if self.goaway_sent_last >= 0 and sid > self.goaway_sent_last:
                # 6.8: after our GOAWAY, new streams are ignored (the peer retries them)
                self.events.append((EV_HEADERS_IGNORED, sid, block, None))
                return
            if self.open_peer >= self.local_max_concurrent:
                # 5.1.2: over our limit -> REFUSED_STREAM (the peer may retry it)
                self.events.append((EV_HEADERS_IGNORED, sid, block, None))
                self.counts[C_REFUSED_STREAMS] += 1
                self._stream_error(sid, REFUSED_STREAM)
                return
            st = H2Stream.__new__(H2Stream)
            st.sid = <int>sid
            st.state = S_OPEN
            st.send_window = self.peer_initial_window
            st.recv_window = self.recv_initial
            st.counted = True
            self.open_peer += 1
            self.streams[sid] = st
            self.counts[C_STREAMS_OPENED] += 1
            if bad_priority:
                self.events.append((EV_HEADERS_IGNORED, sid, block, None))
                self._stream_error(sid, PROTOCOL_ERROR)
                return
        else:
            r = TABLE[st.state][I_RECV_HEADERS]
            if r >= X_CONN_PROTOCOL:
                if r == X_STREAM_CLOSED:
                    self.events.append((EV_HEADERS_IGNORED, sid, block, None))
                    self._stream_error(sid, STREAM_CLOSED)
                else:
                    self._conn_error(PROTOCOL_ERROR, "HEADERS not allowed")
                return
            if bad_priority or (not self.client and st.got_head and not end_stream):
                # 8.1: a request has one head and at most one trailer section, which ends it
                self.events.append((EV_HEADERS_IGNORED, sid, block, None))
                self._stream_error(sid, PROTOCOL_ERROR)
                return
        st.got_head = True
        self.events.append((EV_HEADERS, sid, block, end_stream))
        if end_stream:
            self._recv(st, I_RECV_END)

    cdef void _rst_stream(self, int64_t sid, const uint8_t* p, Py_ssize_t n):
        cdef H2Stream st
        cdef int64_t code             # any 32-bit value: unknown codes are not errors (7)
        if n != 4:
            self._conn_error(FRAME_SIZE_ERROR, "RST_STREAM length")              # 6.4
            return
        if sid == 0:
            self._conn_error(PROTOCOL_ERROR, "RST_STREAM on stream 0")
            return
        st = self.streams.get(sid)
        if st is None:
            if self._absent(sid) == A_IDLE:
                self._conn_error(PROTOCOL_ERROR, "RST_STREAM on an idle stream")  # 6.4
            return                  # closed: a reset crossing ours or our END_STREAM (5.1)
        code = _u32(p)
        self.counts[C_RESETS_RECEIVED] += 1
        if not self.client and (st.state == S_OPEN or st.state == S_HALF_CLOSED_REMOTE):
            # CVE-2023-44487: the client cancels a stream we were still answering
            self.counts[C_RAPID_RESETS] += 1
            self._recv(st, I_RECV_RST)
            self.events.append((EV_RESET, sid, code, None))
            self._spend(B_RAPID_RESET)
            return
        self._recv(st, I_RECV_RST)
        self.events.append((EV_RESET, sid, code, None))

    cdef void _settings(self, int flags, int64_t sid, const uint8_t* p, Py_ssize_t n):
        cdef Py_ssize_t i
        cdef int ident
        cdef int64_t value, delta
        cdef H2Stream st
        if sid != 0:
            self._conn_error(PROTOCOL_ERROR, "SETTINGS on a stream")            # 6.5
            return
        if flags & FL_ACK:
            if n != 0:
                self._conn_error(FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
                return
            if self.settings_deadlines:
                del self.settings_deadlines[0]
                if not self.settings_deadlines and self.recv_initial != self.local_initial_window:
                    # our INITIAL_WINDOW_SIZE now applies to the streams the peer has open
                    delta = self.local_initial_window - self.recv_initial
                    self.recv_initial = self.local_initial_window
                    for st in self.streams.values():
                        st.recv_window += delta
            self.events.append((EV_SETTINGS_ACK, 0, None, None))
            return
        if n % 6:
            self._conn_error(FRAME_SIZE_ERROR, "SETTINGS length")
            return
        if not self._spend(B_SETTINGS):
            return
        for i in range(0, n, 6):
            ident = (p[i] << 8) | p[i + 1]
            value = _u32(p + i + 2)
            if ident == SET_HEADER_TABLE_SIZE:
                self.peer_header_table_size = value
            elif ident == SET_ENABLE_PUSH:
                if value > 1 or (self.client and value != 0):
                    self._conn_error(PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH")    # 6.5.2
                    return
            elif ident == SET_MAX_CONCURRENT_STREAMS:
                self.peer_max_concurrent = value
            elif ident == SET_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    self._conn_error(FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE")
                    return
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for st in self.streams.values():                                 # 6.9.2
                    st.send_window += delta
                    if st.send_window > MAX_WINDOW:
                        self._conn_error(FLOW_CONTROL_ERROR, "stream window overflow")
                        return
            elif ident == SET_MAX_FRAME_SIZE:
                if value < DEFAULT_FRAME or value > MAX_FRAME_LIMIT:
                    self._conn_error(PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE")
                    return
                self.peer_max_frame = value
            elif ident == SET_MAX_HEADER_LIST_SIZE:
                self.peer_max_header_list = value
            # unknown settings are ignored (6.5.2)
        self._put_frame(F_SETTINGS, FL_ACK, 0, NULL, 0)
        self.events.append((EV_SETTINGS, 0, self.peer_header_table_size, self.peer_max_concurrent))

    cdef void _ping(self, int flags, int64_t sid, const uint8_t* p, Py_ssize_t n):
        cdef bytes opaque
        if n != 8:
            self._conn_error(FRAME_SIZE_ERROR, "PING length")                   # 6.7
            return
        if sid != 0:
            self._conn_error(PROTOCOL_ERROR, "PING on a stream")
            return
        if flags & FL_ACK:
            opaque = PyBytes_FromStringAndSize(<const char*>p, 8)
            if self.shutdown_step == 1 and opaque == SHUTDOWN_PING:
                # graceful shutdown, step 2: the peer has seen the first GOAWAY
                self.shutdown_step = 2
                self._put_goaway(self.highest_peer_sid, NO_ERROR, b"")
            self.events.append((EV_PING_ACK, 0, opaque, None))
            return
        if not self._spend(B_PING):
            return
        self._put_frame(F_PING, FL_ACK, 0, <const char*>p, 8)

    cdef void _goaway(self, int64_t sid, const uint8_t* p, Py_ssize_t n):
        cdef int64_t last
        cdef H2Stream st
        if sid != 0:
            self._conn_error(PROTOCOL_ERROR, "GOAWAY on a stream")              # 6.8
            return
        if n < 8:
            self._conn_error(FRAME_SIZE_ERROR, "GOAWAY length")
            return
        last = _u32(p) & 0x7fffffff
        if self.goaway_recv_last < 0 or last < self.goaway_recv_last:
            self.goaway_recv_last = last
        self.counts[C_GOAWAY_RECEIVED] += 1
        self.events.append((EV_GOAWAY, last, <int64_t>_u32(p + 4),
                            PyBytes_FromStringAndSize(<const char*>p + 8, n - 8)))
        # streams we opened above `last` were never processed: refused, safe to retry
        for st in [s for s in self.streams.values()
                   if not self._peer_initiated((<H2Stream>s).sid) and (<H2Stream>s).sid > last]:
            self._forget(st, A_CLOSED)
            self.events.append((EV_REFUSED, st.sid, None, None))

    cdef void _window_update(self, int64_t sid, const uint8_t* p, Py_ssize_t n):
        cdef int64_t inc
        cdef H2Stream st
        if n != 4:
            self._conn_error(FRAME_SIZE_ERROR, "WINDOW_UPDATE length")          # 6.9
            return
        if not self._spend(B_WINDOW_UPDATE):
            return
        inc = _u32(p) & 0x7fffffff
        if sid == 0:
            if inc == 0:
                self._conn_error(PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
                return
            self.conn_send_window += inc
            if self.conn_send_window > MAX_WINDOW:
                self._conn_error(FLOW_CONTROL_ERROR, "connection window overflow")  # 6.9.1
                return
            self.events.append((EV_WINDOW_UPDATE, 0, self.conn_send_window, None))
            return
        st = self.streams.get(sid)
        if st is None:
            if self._absent(sid) == A_IDLE:
                self._conn_error(PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream")   # 5.1
            return              # closed: allowed for a short while (5.1)
        if inc == 0:
            self._stream_error(sid, PROTOCOL_ERROR)
            return
        st.send_window += inc
        if st.send_window > MAX_WINDOW:
            self._stream_error(sid, FLOW_CONTROL_ERROR)
            return
        self.events.append((EV_WINDOW_UPDATE, sid, st.send_window, None))

    cdef void _priority(self, int64_t sid, const uint8_t* p, Py_ssize_t n):
        # RFC 9113 5.3.2, 6.3: parsed and ignored; only its framing is checked
        if sid == 0:
            self._conn_error(PROTOCOL_ERROR, "PRIORITY on stream 0")
            return
        if n != 5:
            if sid in self.streams:
                self._stream_error(sid, FRAME_SIZE_ERROR)
            elif self._absent(sid) == A_IDLE:
                # no RST_STREAM for an idle stream (6.4): the connection answers instead
                self._conn_error(FRAME_SIZE_ERROR, "PRIORITY length")
            return
        if (_u32(p) & 0x7fffffff) == sid and sid in self.streams:
            self._stream_error(sid, PROTOCOL_ERROR)

    # -----------------------------------------------------------------------------------------
    # Stream bookkeeping

    cdef bint _peer_initiated(self, int64_t sid):
        return (sid & 1) == (0 if self.client else 1)

    cdef int _absent(self, int64_t sid):
        """How a stream not in `streams` stands: A_IDLE, or how it closed."""
        how = self.recent.get(sid)
        if how is not None:
            return how
        if self._peer_initiated(sid):
            return A_CLOSED if sid <= self.highest_peer_sid else A_IDLE
        return A_CLOSED if sid < self.next_local_sid else A_IDLE

    cdef int _recv(self, H2Stream st, int inp):
        cdef int r = TABLE[st.state][inp]
        if r < S_COUNT:
            st.state = r
            if r == S_CLOSED:
                self._forget(st, A_RESET_BY_PEER if inp == I_RECV_RST else A_CLOSED)
        return r

    cdef void _forget(self, H2Stream st, int how):
        cdef object old
        st.state = S_CLOSED
        if self.streams.pop(st.sid, None) is None:
            return
        if st.counted:
            if self._peer_initiated(st.sid):
                self.open_peer -= 1
            else:
                self.open_local -= 1
            st.counted = False
        self.recent[st.sid] = how
        self.recent_order.append(st.sid)
        if len(self.recent_order) > RECENT_CLOSED:
            old = self.recent_order.pop(0)
            self.recent.pop(old, None)

    cdef void _credit(self, H2Stream st, int64_t n):
        """The application is done with n flow-controlled bytes: give the window back, in a
        WINDOW_UPDATE once half a window is owed (fewer, larger updates)."""
        self.conn_recv_unacked += n
        if self.conn_recv_unacked >= self.conn_recv_target // 2 and not self.closed:
            self._put_u32_frame(F_WINDOW_UPDATE, 0, <uint32_t>self.conn_recv_unacked)
            self.conn_recv_window += self.conn_recv_unacked
            self.conn_recv_unacked = 0
        if st is not None and (st.state == S_OPEN or st.state == S_HALF_CLOSED_LOCAL):
            st.recv_unacked += n
            if st.recv_unacked >= self.local_initial_window // 2 or st.recv_window <= 0:
                self._put_u32_frame(F_WINDOW_UPDATE, st.sid, <uint32_t>st.recv_unacked)
                st.recv_window += st.recv_unacked
                st.recv_unacked = 0

    cdef bint _spend(self, int which):
        """Spend one from a flood budget; over it -> ENHANCE_YOUR_CALM (False)."""
        cdef int i
        if self.now >= self.flood_start + self.flood_window:
            self.flood_start = self.now
            for i in range(5):
                self.spent[i] = 0
        self.spent[which] += 1
        if self.spent[which] > self.budget[which]:
            self.counts[FLOOD_COUNTER[which]] += 1
            self._conn_error(ENHANCE_YOUR_CALM, FLOOD_REASONS[which])
            return False
        return True

    cdef void _conn_error(self, int code, str reason):
        """RFC 9113 5.4.1: GOAWAY with the last peer stream we processed, then stop reading."""
        if self.closed:
            return
        self.counts[C_CONNECTION_ERRORS] += 1
        self._put_goaway(self.highest_peer_sid, code, reason.encode())
        self.closed = True
        self.cont_sid = 0
        self.block = bytearray()
        self.events.append((EV_CONNECTION_ERROR, 0, code, reason))

    cdef void _stream_error(self, int64_t sid, int code):
        """RFC 9113 5.4.2: RST_STREAM; only this stream ends."""
        cdef H2Stream st = self.streams.get(sid)
        self.counts[C_STREAM_ERRORS] += 1
        self.counts[C_RESETS_SENT] += 1
        self._put_u32_frame(F_RST_STREAM, sid, code)
        if st is not None:
            self._forget(st, A_RESET_BY_US)
        elif sid not in self.recent:
            self.recent[sid] = A_RESET_BY_US
            self.recent_order.append(sid)
        else:
            self.recent[sid] = A_RESET_BY_US
        self.events.append((EV_STREAM_ERROR, sid, code, None))

    # -----------------------------------------------------------------------------------------
    # Output

    cdef char* _reserve(self, Py_ssize_t n):
        cdef Py_ssize_t size = PyByteArray_GET_SIZE(self.out)
        PyByteArray_Resize(self.out, size + n)
        return PyByteArray_AS_STRING(self.out) + size

    cdef void _put_frame(self, int ftype, int flags, int64_t sid, const char* p, Py_ssize_t n):
        cdef char* w = self._reserve(9 + n)
        w[0] = <char>(n >> 16)
        w[1] = <char>(n >> 8)
        w[2] = <char>n
        w[3] = <char>ftype
        w[4] = <char>flags
        _w32(w + 5, <uint32_t>sid)
        if n:
            memcpy(w + 9, p, n)

    cdef void _put_u32_frame(self, int ftype, int64_t sid, uint32_t value):
        cdef char buf[4]
        _w32(buf, value)
        self._put_frame(ftype, 0, sid, buf, 4)

    cdef void _put_goaway(self, int64_t last, int code, bytes debug):
        cdef bytes payload = bytes(8) + debug
        cdef char* w = PyBytes_AS_STRING(payload)
        _w32(w, <uint32_t>last)
        _w32(w + 4, <uint32_t>code)
        self._put_frame(F_GOAWAY, 0, 0, w, PyBytes_GET_SIZE(payload))
        if self.goaway_sent_last < 0 or last < self.goaway_sent_last:
            self.goaway_sent_last = last
        self.counts[C_GOAWAY_SENT] += 1

    cdef void _put_block(self, int64_t sid, bytes block, bint end_stream):
        cdef const char* p = PyBytes_AS_STRING(block)
        cdef Py_ssize_t limit = min(self.peer_max_frame, DEFAULT_FRAME)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(block), k = min(n, limit)
        cdef int flags = FL_END_STREAM if end_stream else 0
        cdef Py_ssize_t m
        self._put_frame(F_HEADERS, flags | (FL_END_HEADERS if k == n else 0), sid, p, k)
        while k < n:
            m = min(n - k, limit)
            self._put_frame(F_CONTINUATION, FL_END_HEADERS if k + m == n else 0, sid, p + k, m)
            k += m

    cpdef bytes data_to_send(self):
        """The frames queued since the last call, as one bytes (b"" when none)."""
        cdef bytes b
        if not self.out:
            return b""
        b = bytes(self.out)
        self.out = bytearray()
        return b

    # -----------------------------------------------------------------------------------------
    # Sending (the caller's side)

    cdef H2Stream _sendable(self, int64_t sid, int inp):
        cdef H2Stream st = self.streams.get(sid)
        if st is None or self.closed:
            return None             # gone (reset, refused, connection closed): nothing to send
        if TABLE[st.state][inp] == X_USAGE:
            raise H2UsageError(f"stream {sid}: input {inp} in state {st.state}")
        return st

    cdef void _sent_end(self, H2Stream st):
        cdef int r = TABLE[st.state][I_SEND_END]
        if r == X_USAGE:
            raise H2UsageError(f"stream {st.sid}: END_STREAM in state {st.state}")
        st.state = r
        st.stalled_since = 0
        if r == S_CLOSED:
            self._forget(st, A_CLOSED)

    cpdef int64_t open_stream(self, bytes block, bint end_stream=False) except -1:
        """Client role: open the next stream with this encoded request head. Returns its id,
        or 0 when no stream can be opened here: the peer's MAX_CONCURRENT_STREAMS is reached
        (wait, or use another connection), a GOAWAY arrived, the connection is closed, or the
        ids are exhausted (`exhausted` is then set and a GOAWAY queued: open a new one)."""
        cdef H2Stream st
        cdef int64_t sid = self.next_local_sid
        if not self.client:
            raise H2UsageError("a server does not open streams (push is disabled)")
        if self.closed or self.goaway_recv_last >= 0 or self.exhausted or \
                self.open_local >= self.peer_max_concurrent:
            return 0
        if sid > MAX_SID:
            self.exhausted = True
            self.counts[C_IDS_EXHAUSTED] += 1
            self._put_goaway(0, NO_ERROR, b"stream ids exhausted")       # 5.1.1
            return 0
        self.next_local_sid = sid + 2
        st = H2Stream.__new__(H2Stream)
        st.sid = <int>sid
        st.state = S_OPEN
        st.send_window = self.peer_initial_window
        st.recv_window = self.recv_initial
        st.counted = True
        self.open_local += 1
        self.streams[sid] = st
        self.counts[C_STREAMS_OPENED] += 1
        self._put_block(sid, block, end_stream)
        if end_stream:
            self._sent_end(st)
        return sid

    cpdef bint send_headers(self, int64_t sid, bytes block, bint end_stream=False) except -1:
        """Send an encoded header block (response head, or trailers with end_stream) on an
        open stream. False when the stream is gone (reset or refused meanwhile)."""
        cdef H2Stream st = self._sendable(sid, I_SEND_HEADERS)
        if st is None:
            return False
        self._put_block(sid, block, end_stream)
        if end_stream:
            self._sent_end(st)
        return True

    cpdef Py_ssize_t send_data(self, int64_t sid, bytes data, bint end_stream=False,
                               double now=0.0) except -2:
        """Send as much of `data` as both windows allow, in frames of at most the peer's
        SETTINGS_MAX_FRAME_SIZE (and 16384); END_STREAM goes with the last byte only if all was sent.
        Returns how many bytes were sent (the caller keeps the rest and retries after
        EV_WINDOW_UPDATE), or -1 when the stream is gone. A short send records
        `stalled_since = now` (once) for the caller's zero-window sweep."""
        cdef H2Stream st = self._sendable(sid, I_SEND_DATA)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data), allowed, k = 0, m
        cdef const char* p = PyBytes_AS_STRING(data)
        if st is None:
            return -1
        allowed = min(<int64_t>n, max(min(st.send_window, self.conn_send_window), 0))
        if n == 0 and end_stream:
            self._put_frame(F_DATA, FL_END_STREAM, sid, NULL, 0)
            self._sent_end(st)
            return 0
        while k < allowed:
            m = min(allowed - k, min(self.peer_max_frame, DEFAULT_FRAME))
            self._put_frame(F_DATA, FL_END_STREAM if end_stream and k + m == n else 0, sid, p + k, m)
            k += m
        st.send_window -= k
        self.conn_send_window -= k
        if k == n:
            st.stalled_since = 0
            if end_stream:
                self._sent_end(st)
        elif st.stalled_since == 0:
            st.stalled_since = now if now > 0 else self.now
            self.counts[C_FLOW_STALLS] += 1
        return k

    cpdef bint reset_stream(self, int64_t sid, int code=CANCEL) except -1:
        """Reset a stream (RST_STREAM); the others go on. False if it was already gone."""
        cdef H2Stream st = self.streams.get(sid)
        if st is None or self.closed:
            return False
        self.counts[C_RESETS_SENT] += 1
        self._put_u32_frame(F_RST_STREAM, sid, code)
        self._forget(st, A_RESET_BY_US)
        return True

    cpdef consumed(self, int64_t sid, int64_t n):
        """The application has taken n bytes of this stream's DATA (len of EV_DATA payloads):
        their window goes back to the peer (a stream that is gone still credits the
        connection)."""
        if n > 0 and not self.closed:
            self._credit(self.streams.get(sid), n)

    def ping(self, bytes opaque):
        """Send a PING (8 bytes of opaque data, e.g. for liveness); EV_PING_ACK answers it."""
        if len(opaque) != 8:
            raise ValueError("PING opaque data is 8 bytes")
        if not self.closed:
            self._put_frame(F_PING, 0, 0, PyBytes_AS_STRING(opaque), 8)

    def shutdown(self):
        """Graceful shutdown (RFC 9113 6.8). Server role, two steps: GOAWAY with 2^31-1 and a
        PING now; when its ACK arrives (a round trip: every stream the peer opened before it
        saw the GOAWAY has reached us) the real last stream id. Client role: GOAWAY 0 (no
        pushes). Streams at or below the last id finish; the caller closes when
        `open_streams` is 0."""
        if self.closed or self.shutdown_step:
            return
        if self.client:
            self.shutdown_step = 2
            self._put_goaway(0, NO_ERROR, b"")
            return
        self.shutdown_step = 1
        self._put_goaway(MAX_SID, NO_ERROR, b"")      # refuses nothing yet
        self._put_frame(F_PING, 0, 0, PyBytes_AS_STRING(SHUTDOWN_PING), 8)

    cpdef close(self, int code=NO_ERROR, bytes debug=b""):
        """Close now: GOAWAY with the last peer stream we processed and `code` (the caller's
        COMPRESSION_ERROR when HPACK decoding fails, INTERNAL_ERROR, ...)."""
        if self.closed:
            return
        if code != NO_ERROR:
            self.counts[C_CONNECTION_ERRORS] += 1
        self._put_goaway(self.highest_peer_sid if not self.client else 0, code, debug)
        self.closed = True

    # -----------------------------------------------------------------------------------------
    # Views for the caller and tests

    @property
    def settings_deadline(self):
        """When our oldest unacknowledged SETTINGS times out (0.0: none outstanding)."""
        return self.settings_deadlines[0] if self.settings_deadlines else 0.0

    @property
    def buffered(self):
        """Bytes of an incomplete frame held (at most 9 + our max frame size)."""
        return PyByteArray_GET_SIZE(self.inbuf)

    @property
    def open_streams(self):
        return len(self.streams)

    @property
    def available_streams(self):
        """Client role: how many more streams open_stream() would open now."""
        if self.closed or self.goaway_recv_last >= 0 or self.exhausted or not self.client:
            return 0
        return max(0, min(self.peer_max_concurrent - self.open_local,
                          (MAX_SID - self.next_local_sid) // 2 + 1))

    def stream(self, int64_t sid):
        """The H2Stream (state, windows, stalled_since), or None when it is not open."""
        return self.streams.get(sid)

    def stream_state(self, int64_t sid):
        cdef H2Stream st = self.streams.get(sid)
        if st is not None:
            return st.state
        return S_IDLE if self._absent(sid) == A_IDLE else S_CLOSED

    def stalled_before(self, double t):
        """Ids of the streams blocked on flow control since before t (the caller resets them,
        e.g. with CANCEL, once its stall timeout has passed)."""
        return [s.sid for s in self.streams.values()
                if (<H2Stream>s).stalled_since and (<H2Stream>s).stalled_since <= t]

    def counters(self):
        return {name: self.counts[i] for i, name in enumerate(COUNTER_NAMES)}

    def _set_next_stream_id(self, int64_t sid):
        """Tests only: jump to the end of the id space (stream-id exhaustion)."""
        self.next_local_sid = sid


# Event, error and state codes as Python ints (the cdef enums are C-only)
globals().update(
    EV_HEADERS=EV_HEADERS, EV_HEADERS_IGNORED=EV_HEADERS_IGNORED, EV_DATA=EV_DATA,
    EV_RESET=EV_RESET, EV_STREAM_ERROR=EV_STREAM_ERROR, EV_REFUSED=EV_REFUSED,
    EV_WINDOW_UPDATE=EV_WINDOW_UPDATE, EV_SETTINGS=EV_SETTINGS, EV_SETTINGS_ACK=EV_SETTINGS_ACK,
    EV_PING_ACK=EV_PING_ACK, EV_GOAWAY=EV_GOAWAY, EV_CONNECTION_ERROR=EV_CONNECTION_ERROR,
    NO_ERROR=NO_ERROR, PROTOCOL_ERROR=PROTOCOL_ERROR, INTERNAL_ERROR=INTERNAL_ERROR,
    FLOW_CONTROL_ERROR=FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT=SETTINGS_TIMEOUT,
    STREAM_CLOSED=STREAM_CLOSED, FRAME_SIZE_ERROR=FRAME_SIZE_ERROR, REFUSED_STREAM=REFUSED_STREAM,
    CANCEL=CANCEL, COMPRESSION_ERROR=COMPRESSION_ERROR, CONNECT_ERROR=CONNECT_ERROR,
    ENHANCE_YOUR_CALM=ENHANCE_YOUR_CALM, INADEQUATE_SECURITY=INADEQUATE_SECURITY,
    HTTP_1_1_REQUIRED=HTTP_1_1_REQUIRED,
    S_IDLE=S_IDLE, S_RESERVED_LOCAL=S_RESERVED_LOCAL, S_RESERVED_REMOTE=S_RESERVED_REMOTE,
    S_OPEN=S_OPEN, S_HALF_CLOSED_LOCAL=S_HALF_CLOSED_LOCAL,
    S_HALF_CLOSED_REMOTE=S_HALF_CLOSED_REMOTE, S_CLOSED=S_CLOSED,
)

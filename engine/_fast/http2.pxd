# The HTTP/2 connection codec's contract for other compiled modules (proxy, pool). See
# http2.pyx for the theory of operation. Sans-I/O: bytes in, events out, frames out; no
# sockets, clocks (`now` is passed in) or config (limits are constructor primitives) here.
# Header blocks are opaque bytes: hpack.pyx decodes and encodes them.

cimport cython
from libc.stdint cimport int64_t, uint8_t, uint32_t

# Events: tuples (kind, stream_id, a, b) in the list receive_data()/tick() return
cdef enum:
    EV_HEADERS = 1            # (sid, block: bytes, end_stream: bool)  decode it (HPACK)
    EV_HEADERS_IGNORED = 2    # (sid, block, None) decode it to keep HPACK in sync, then drop it
    EV_DATA = 3               # (sid, data: bytes, end_stream) call consumed(sid, len(data)) later
    EV_RESET = 4              # (sid, error_code, None) the peer reset the stream
    EV_STREAM_ERROR = 5       # (sid, error_code, None) we reset the stream (RST_STREAM queued)
    EV_REFUSED = 6            # (sid, None, None) our stream was above the peer's GOAWAY last id:
                              #   the peer never processed it; retrying it is safe
    EV_WINDOW_UPDATE = 7      # (sid or 0, new send window, None) blocked sends may resume
    EV_SETTINGS = 8           # (0, peer header_table_size, peer max_concurrent_streams); the
                              #   peer's INITIAL_WINDOW_SIZE may have grown: resume blocked sends
    EV_SETTINGS_ACK = 9       # (0, None, None) the peer acknowledged our SETTINGS
    EV_PING_ACK = 10          # (0, opaque: bytes, None)
    EV_GOAWAY = 11            # (last_stream_id, error_code, debug: bytes)
    EV_CONNECTION_ERROR = 12  # (0, error_code, reason: str) GOAWAY queued; flush, then close

# RFC 9113 section 7 error codes
cdef enum:
    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xa
    ENHANCE_YOUR_CALM = 0xb
    INADEQUATE_SECURITY = 0xc
    HTTP_1_1_REQUIRED = 0xd

# Stream states (RFC 9113 5.1)
cdef enum:
    S_IDLE = 0
    S_RESERVED_LOCAL = 1
    S_RESERVED_REMOTE = 2
    S_OPEN = 3
    S_HALF_CLOSED_LOCAL = 4
    S_HALF_CLOSED_REMOTE = 5
    S_CLOSED = 6
    S_COUNT = 7

# Counters (H2Connection.counters() names them, in this order)
cdef enum:
    C_FRAMES_IN = 0
    C_STREAMS_OPENED
    C_RESETS_RECEIVED
    C_RESETS_SENT
    C_REFUSED_STREAMS          # REFUSED_STREAM sent: over our max concurrent streams
    C_RAPID_RESETS             # peer resets of streams we were still answering
    C_GOAWAY_SENT
    C_GOAWAY_RECEIVED
    C_CONNECTION_ERRORS
    C_STREAM_ERRORS
    C_FLOOD_SETTINGS           # connection closed for a flood, by kind
    C_FLOOD_PING
    C_FLOOD_EMPTY_DATA
    C_FLOOD_WINDOW_UPDATE
    C_FLOOD_RAPID_RESET
    C_FLOOD_CONTINUATION       # header block over max_header_block bytes or max_continuations
    C_FLOW_STALLS              # a send_data() call blocked by a closed window
    C_SETTINGS_TIMEOUTS
    C_IDS_EXHAUSTED
    C_COUNT


@cython.final
cdef class H2Stream:
    cdef readonly int sid
    cdef readonly int state
    cdef readonly int64_t send_window      # what we may still send (may go negative, 6.9.2)
    cdef readonly int64_t recv_window      # what the peer may still send
    cdef int64_t recv_unacked              # consumed by the application, not yet credited
    cdef readonly double stalled_since     # when a send blocked on flow control; 0: not blocked
    cdef bint got_head                     # the peer's head (request or response) arrived
    cdef bint counted                      # counted in the open streams of its initiator


@cython.final
cdef class H2Connection:
    cdef readonly bint client
    cdef bytearray inbuf                   # an incomplete frame (at most 9 + max frame size)
    cdef bytearray out                     # frames to send, taken by data_to_send()
    cdef list events
    cdef dict streams                      # sid -> H2Stream, open or half-closed
    cdef dict recent                       # sid -> how it closed (A_*), the last RECENT_CLOSED
    cdef list recent_order
    cdef int preface_seen                  # server: bytes of the client preface matched
    cdef bint got_settings                 # the peer's first frame (its preface) was SETTINGS
    cdef readonly bint closed              # connection error or close(): nothing more is read
    cdef double now

    # our settings (advertised) and theirs
    cdef readonly int64_t local_max_concurrent, local_initial_window, local_max_frame
    cdef readonly int64_t local_header_table_size, local_max_header_list
    cdef int64_t recv_initial              # peer's view of our initial window (65535 until ACK)
    cdef readonly int64_t peer_max_concurrent, peer_initial_window, peer_max_frame
    cdef readonly int64_t peer_header_table_size, peer_max_header_list

    # connection flow control
    cdef readonly int64_t conn_send_window
    cdef readonly int64_t conn_recv_window
    cdef int64_t conn_recv_unacked, conn_recv_target

    # stream ids and counts
    cdef readonly int64_t highest_peer_sid
    cdef int64_t next_local_sid
    cdef readonly int open_peer, open_local
    cdef readonly bint exhausted           # client: no stream id left (GOAWAY sent)

    # a header block in progress (HEADERS without END_HEADERS, then CONTINUATIONs)
    cdef int64_t cont_sid
    cdef bint cont_end_stream, cont_bad_priority
    cdef int cont_frames
    cdef bytearray block

    # SETTINGS acknowledgement: the deadlines of our unacknowledged SETTINGS, oldest first
    cdef list settings_deadlines
    cdef double settings_timeout

    # GOAWAY
    cdef readonly int64_t goaway_sent_last     # -1: none sent
    cdef readonly int64_t goaway_recv_last     # -1: none received
    cdef readonly int shutdown_step            # 0, 1 (GOAWAY 2^31-1 + PING sent), 2 (final GOAWAY)

    # defences: budgets per window of `flood_window` seconds
    cdef int64_t max_header_block, max_continuations
    cdef double flood_window, flood_start
    cdef int64_t budget[5]
    cdef int64_t spent[5]
    cdef int64_t counts[C_COUNT]

    cpdef list receive_data(self, bytes data, double now)
    cpdef list tick(self, double now)
    cpdef bytes data_to_send(self)
    cpdef int64_t open_stream(self, bytes block, bint end_stream=*) except -1
    cpdef bint send_headers(self, int64_t sid, bytes block, bint end_stream=*) except -1
    cpdef Py_ssize_t send_data(self, int64_t sid, bytes data, bint end_stream=*,
                               double now=*) except -2
    cpdef bint reset_stream(self, int64_t sid, int code=*) except -1
    cpdef consumed(self, int64_t sid, int64_t n)
    cpdef close(self, int code=*, bytes debug=*)
    cdef void _process(self, const uint8_t* p, Py_ssize_t n, Py_ssize_t* consumed)
    cdef void _frame(self, int ftype, int flags, int64_t sid, const uint8_t* p, Py_ssize_t n)
    cdef void _data(self, int flags, int64_t sid, const uint8_t* p, Py_ssize_t n)
    cdef void _headers(self, int flags, int64_t sid, const uint8_t* p, Py_ssize_t n)
    cdef void _continuation(self, int flags, int64_t sid, const uint8_t* p, Py_ssize_t n)
    cdef void _header_block(self, int64_t sid, bint end_stream, bytes block, bint bad_priority)
    cdef void _rst_stream(self, int64_t sid, const uint8_t* p, Py_ssize_t n)
    cdef void _settings(self, int flags, int64_t sid, const uint8_t* p, Py_ssize_t n)
    cdef void _ping(self, int flags, int64_t sid, const uint8_t* p, Py_ssize_t n)
    cdef void _goaway(self, int64_t sid, const uint8_t* p, Py_ssize_t n)
    cdef void _window_update(self, int64_t sid, const uint8_t* p, Py_ssize_t n)
    cdef void _priority(self, int64_t sid, const uint8_t* p, Py_ssize_t n)
    cdef int _absent(self, int64_t sid)
    cdef bint _peer_initiated(self, int64_t sid)
    cdef bint _spend(self, int which)
    cdef void _conn_error(self, int code, str reason)
    cdef void _stream_error(self, int64_t sid, int code)
    cdef int _recv(self, H2Stream st, int inp)
    cdef void _forget(self, H2Stream st, int how)
    cdef void _credit(self, H2Stream st, int64_t n)
    cdef char* _reserve(self, Py_ssize_t n)
    cdef void _put_frame(self, int ftype, int flags, int64_t sid, const char* p, Py_ssize_t n)
    cdef void _put_u32_frame(self, int ftype, int64_t sid, uint32_t value)
    cdef void _put_goaway(self, int64_t last, int code, bytes debug)
    cdef void _put_block(self, int64_t sid, bytes block, bint end_stream)
    cdef H2Stream _sendable(self, int64_t sid, int inp)
    cdef void _sent_end(self, H2Stream st)

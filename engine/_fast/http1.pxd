# The HTTP/1.1 codec's contract for other compiled modules (proxy, bench). See http1.pyx for the
# theory of operation. Sans-I/O: bytes in, events out; no sockets, clocks or config here.

cimport cython
from libc.stdint cimport int64_t, uint8_t, int32_t

cdef enum:
    H1_MAX_HEADERS_HARD = 256      # hard ceiling of the header arrays; max_headers is <= this
    H1_INITIAL_HEADERS = 16        # header slots a new parser starts with (grown on demand)

# Events returned by H1Parser.next_event()
cdef enum:
    EV_NEED_DATA = 0   # feed() more bytes
    EV_HEAD = 1        # a head was parsed: the head fields below are valid until the next EV_HEAD
    EV_BODY = 2        # body bytes are self.data[self.ev_start:self.ev_end] (decoded: no chunk framing)
    EV_END = 3         # the message is complete (trailers parsed into trailers_raw)
    EV_ERROR = 4       # framing error: error_status + error_reason; the parser is dead afterwards
    EV_PAUSED = 5      # after EV_END of a message that switches protocols (Upgrade/CONNECT): the
                       # parser stops; the rest of the input is self.data[self.pos:] (see leftover())

# Body framing decided once per message at EV_HEAD (RFC 9112 section 6.3)
cdef enum:
    BODY_NONE = 0
    BODY_LENGTH = 1
    BODY_CHUNKED = 2
    BODY_UNTIL_CLOSE = 3   # responses only

# Header ids (H_*) and flags (HF_*) are headers.pxd's, re-exported here for the codec's users.
from engine._fast.headers cimport (
    HeaderBlock, build_head, header_id,
    H_OTHER, H_HOST, H_CONTENT_LENGTH, H_TRANSFER_ENCODING, H_CONNECTION, H_KEEP_ALIVE,
    H_UPGRADE, H_TE, H_TRAILER, H_PROXY_CONNECTION, H_EXPECT, H_X_FORWARDED_FOR,
    H_X_FORWARDED_PROTO, H_X_FORWARDED_HOST, H_X_REQUEST_ID, H_COOKIE, H_HTTP2_SETTINGS,
    H_X_FORWARDED_CLIENT_CERT, HF_HOP, HF_DROP,
)

cdef enum:
    H1_MAX_CHUNK_LINE = 4096       # chunk-size line incl. extensions; longer -> 400 (see pyx)


@cython.final
cdef class H1Parser(HeaderBlock):
    cdef readonly bint is_request
    cdef public Py_ssize_t max_head_bytes     # 431 when the head (or trailer section) grows past this
    cdef public Py_ssize_t max_headers        # 431 when exceeded
    cdef public Py_ssize_t max_uri_bytes      # 414 when exceeded

    # input: the parser owns `data`; pos is how far it has consumed
    cdef bytes data
    cdef Py_ssize_t pos
    cdef int state
    cdef Py_ssize_t scan_pos                  # head search resumes here (no rescans on 1-byte feeds)

    # the current head: the request or status line's offsets point into `head`, like the
    # header fields' (HeaderBlock: head, nheaders, the per-field arrays, host_index)
    cdef Py_ssize_t method_s, method_e, target_s, target_e
    cdef Py_ssize_t reason_s, reason_e
    cdef int version_minor                    # 0 or 1 (HTTP/1.0 or HTTP/1.1)
    cdef int status                           # responses: the status code

    # framing and connection semantics of the current message, valid from EV_HEAD
    cdef int body_kind
    cdef int64_t content_length               # BODY_LENGTH: declared length (-1 otherwise)
    cdef int64_t remaining                    # bytes of body (or of the current chunk) still due
    cdef bint keep_alive                      # this message allows another on the connection
    cdef bint expect_continue                 # request had "Expect: 100-continue"
    cdef bint upgrade                         # request: Upgrade + "Connection: upgrade", or CONNECT
                                              # response: status 101
    cdef bint method_is_head                  # request: method is HEAD
    cdef bint response_to_head                # response parser: set by expect_response()
    cdef bytes trailers_raw                   # trailer field lines, each ending CRLF ("" if none)

    # outputs of next_event()
    cdef Py_ssize_t ev_start, ev_end
    cdef public int error_status
    cdef public str error_reason

    # internal state (added by the codec; not part of the proxy contract)
    cdef bytearray acc                        # unconsumed input that spans feeds (see feed())
    cdef Py_ssize_t line_s                    # start of the line being scanned (head, trailers)
    cdef int nlines                           # lines of the current head / trailer section so far
    cdef bint method_is_connect               # request: method is CONNECT
    cdef bint response_to_connect             # response parser: set by expect_connect_response()

    cpdef feed(self, bytes data)
    cpdef int next_event(self) except -1
    cpdef expect_response(self, bint to_head)  # response parser: the next response answers a HEAD
    cpdef bytes leftover(self)                 # unconsumed input, for switching to a tunnel
    # additions
    cpdef int feed_eof(self)                   # EOF: EV_END (until-close body done), EV_ERROR
                                               # (truncated message) or EV_NEED_DATA (clean close)
    cpdef expect_connect_response(self)        # response parser: the next response answers a CONNECT
    cpdef resume(self)                         # after EV_PAUSED: the upgrade was refused, parse on
    cdef Py_ssize_t buffered(self) noexcept    # bytes fed and not consumed yet
    # internal
    cdef int _fail(self, int code) except -1
    cdef int _rebase(self, Py_ssize_t shift) noexcept
    cdef int _materialize(self) except -1
    cdef int _head(self) except -1
    cdef int _head_done(self, Py_ssize_t he) except -1
    cdef int _parse_head(self, const unsigned char* p, Py_ssize_t s, Py_ssize_t he) noexcept
    cdef int _chunk_size(self) except -1
    cdef int _chunk_crlf(self) except -1
    cdef int _trailers(self) except -1


# E_OK (0) when p[s:e] is a valid Host value / absolute-form authority (see http1.pyx)
cdef int check_authority(const unsigned char* p, Py_ssize_t s, Py_ssize_t e) noexcept nogil

# b"%x\r\n" % n: the chunk-size line of a chunked body
cdef bytes chunk_size_line(Py_ssize_t n)

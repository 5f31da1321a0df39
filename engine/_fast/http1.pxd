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

# Well-known header ids, set per header at parse time (hdr_id[i])
cdef enum:
    H_OTHER = 0
    H_HOST = 1
    H_CONTENT_LENGTH = 2
    H_TRANSFER_ENCODING = 3
    H_CONNECTION = 4
    H_KEEP_ALIVE = 5
    H_UPGRADE = 6
    H_TE = 7
    H_TRAILER = 8
    H_PROXY_CONNECTION = 9
    H_EXPECT = 10
    H_X_FORWARDED_FOR = 11
    H_X_FORWARDED_PROTO = 12
    H_X_FORWARDED_HOST = 13
    H_X_REQUEST_ID = 14
    H_COOKIE = 15
    H_HTTP2_SETTINGS = 16  # hop-by-hop (RFC 7540 3.2.1): an h2c upgrade is never forwarded

# Per-header flags (hdr_flags[i])
cdef enum:
    HF_HOP = 1     # hop-by-hop: Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
                   # Transfer-Encoding, Upgrade, and every header named in Connection
    HF_DROP = 2    # the caller asked build_head() to leave it out

cdef enum:
    H1_MAX_CHUNK_LINE = 4096       # chunk-size line incl. extensions; longer -> 400 (see pyx)


@cython.final
cdef class H1Parser:
    cdef readonly bint is_request
    cdef public Py_ssize_t max_head_bytes     # 431 when the head (or trailer section) grows past this
    cdef public Py_ssize_t max_headers        # 431 when exceeded
    cdef public Py_ssize_t max_uri_bytes      # 414 when exceeded

    # input: the parser owns `data`; pos is how far it has consumed
    cdef bytes data
    cdef Py_ssize_t pos
    cdef int state
    cdef Py_ssize_t scan_pos                  # head search resumes here (no rescans on 1-byte feeds)

    # the current head; every *_s/*_e offset points into `head`
    cdef bytes head
    cdef Py_ssize_t method_s, method_e, target_s, target_e
    cdef Py_ssize_t reason_s, reason_e
    cdef int version_minor                    # 0 or 1 (HTTP/1.0 or HTTP/1.1)
    cdef int status                           # responses: the status code
    cdef int nheaders
    # Per-header arrays, hcap entries each, in one malloc'd block that starts small and grows
    # (up to H1_MAX_HEADERS_HARD) when a head has more fields: an idle keep-alive connection
    # must not carry 4.6 KB of offsets for the 256 headers it will never send.
    cdef int hcap
    cdef int32_t* name_s
    cdef int32_t* name_e
    cdef int32_t* value_s                     # value with leading/trailing OWS removed
    cdef int32_t* value_e
    cdef uint8_t* hdr_id
    cdef uint8_t* hdr_flags
    cdef int host_index                       # index of the Host header, -1 if absent

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
    cpdef object get(self, bytes lower_name)   # first value of a header, or None (router, filters)
    cdef int find(self, int hid)               # index of the first header with this id, or -1
    cdef bytes header_value(self, int i)       # value of header i as bytes
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
    cdef int _grow(self, int need) except -1
    cdef int _parse_head(self, const unsigned char* p, Py_ssize_t s, Py_ssize_t he) noexcept
    cdef int _chunk_size(self) except -1
    cdef int _chunk_crlf(self) except -1
    cdef int _trailers(self) except -1
    cdef bytes _slice(self, Py_ssize_t s, Py_ssize_t e)


# Serialise a (possibly rewritten) head: first_line (e.g. b"GET /x HTTP/1.1\r\n"), then every header
# of `p` whose flags have neither HF_HOP nor HF_DROP, raw as received ("Name: value\r\n"), then each
# bytes object of `extra` (each already a complete "Name: value\r\n" line), then the final CRLF.
# One allocation, one pass.
cdef bytes build_head(H1Parser p, bytes first_line, list extra)

# E_OK (0) when p[s:e] is a valid Host value / absolute-form authority (see http1.pyx)
cdef int check_authority(const unsigned char* p, Py_ssize_t s, Py_ssize_t e) noexcept nogil

# b"%x\r\n" % n: the chunk-size line of a chunked body
cdef bytes chunk_size_line(Py_ssize_t n)

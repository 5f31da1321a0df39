# cython: language_level=3
"""HTTP/1.1 codec (RFC 9112): one pull parser for requests and responses, and the head serialiser.

Theory of operation
===================

Who calls it
    `proxy` owns one H1Parser per direction of a connection (is_request=True downstream,
    False upstream). On every read it calls ``feed(data)`` and then ``next_event()`` until it
    gets EV_NEED_DATA, EV_ERROR or EV_PAUSED. Tests, filters and the oracles use the Python
    properties at the end of the class; the proxy reads the C fields declared in http1.pxd.

Events (one per next_event() call)
    EV_HEAD  -> (EV_BODY)* -> EV_END, repeated for pipelined messages. EV_PAUSED follows the
    EV_END of a message that switches protocols (upgrade); EV_ERROR is final.
    A 1xx response other than 101 is its own EV_HEAD, EV_END; the real response follows.

Invariants
    * Input. ``data[pos:]`` is the unconsumed input. ``feed()`` takes the caller's bytes object
      as is when everything before it was consumed (zero copy, the common case). When a
      line-oriented section (head, chunk-size line, trailers) spans feeds, the unconsumed rest
      and later feeds go to ``acc``, a bytearray grown with amortised appends, so a client
      dribbling its head one byte per read costs O(n), not O(n^2). ``acc`` is turned back into
      bytes ("materialised", one copy) before any event that hands out offsets.
    * No rescans. The head search resumes at ``scan_pos``. The head is parsed once, in one
      pass, when its final CRLF has arrived; until then only the line ends are checked (strict
      CRLF) and the limits (414 for the request-line, 431 for the head) are enforced early.
    * Head fields are offsets into ``head``: the bytes object holding the whole head (the
      caller's own object when the head arrived in one read). They stay valid until the next
      EV_HEAD: the next head is only parsed into the arrays once it is complete.
    * Bodies are never buffered: EV_BODY is ``data[ev_start:ev_end]`` (chunk framing removed),
      valid until the next feed()/next_event().
    * Framing is decided once, at EV_HEAD, strictly (RFC 9112 section 6). Anything ambiguous
      is an error: a smuggling attempt must never reach an upstream.

What it never does
    No I/O, clocks, config or logging. No exceptions on the per-byte path: helpers return
    error codes (E_*), turned into error_status/error_reason by _fail(). No Python objects
    are created while parsing: properties build them lazily. No pure-Python twin exists
    (h11 and httptools are the oracles in tests/oracles).

Choices where RFC 9112 leaves room (all documented at the rule that implements them)
    * Transfer codings: sluice implements exactly one, ``chunked``. A request with any other
      coding -> 501 (RFC 9112 6.1), a response -> 502: forwarding it after dropping the
      hop-by-hop Transfer-Encoding field would corrupt the body.
    * Leading empty lines are skipped before a request-line (RFC 9112 2.2), not before a
      status-line.
    * A Connection header never makes Content-Length or Host hop-by-hop (dropping them would
      change the framing or the routing of what we forward).
    * Status codes outside 100..599 are refused (RFC 9110 15: invalid).
    * Versions other than HTTP/1.0 and HTTP/1.1 -> 505.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.bytearray cimport (PyByteArray_AS_STRING, PyByteArray_GET_SIZE,
                                PyByteArray_FromStringAndSize, PyByteArray_Resize)
from libc.string cimport memchr, memcpy, memcmp
from libc.stdlib cimport malloc, free
from libc.stdint cimport int64_t, uint8_t, int32_t, INT64_MAX, INT32_MAX


# ---------------------------------------------------------------------------------------------
# Internal constants

cdef enum:   # parser states
    ST_HEAD = 0          # scanning for the end of a head (pos = its first byte)
    ST_BODY_LENGTH = 1   # Content-Length body, `remaining` bytes due
    ST_CHUNK_SIZE = 2    # reading a chunk-size line (pos = its first byte)
    ST_CHUNK_DATA = 3    # chunk data, `remaining` bytes due
    ST_CHUNK_CRLF = 4    # the CRLF after chunk data
    ST_TRAILERS = 5      # trailer section (pos = its first byte)
    ST_UNTIL_CLOSE = 6   # response body delimited by EOF
    ST_MSG_DONE = 7      # next call returns EV_END
    ST_PAUSED = 8
    ST_ERROR = 9
    ST_CLOSED = 10       # after feed_eof()

cdef enum:
    EV_AGAIN = 100       # internal: state changed, run the loop again

cdef enum:   # character classes, bits of CT[]
    C_TCHAR = 1          # RFC 9110 5.6.2 tchar
    C_VCHAR = 2          # VCHAR %x21-7E: request-target bytes (RFC 9112 3.2)
    C_FVAL = 4           # field-vchar / SP / HTAB (RFC 9110 5.5); also reason-phrase, chunk-ext
    C_HOST = 8           # RFC 3986 host / port bytes: unreserved, pct, sub-delims, ":", "[", "]"
    C_SCHEME = 16        # RFC 3986 3.1 scheme bytes after the first ALPHA
    C_ALPHA = 32

cdef enum:   # error codes; ERR_STATUS / ERR_REASON give status and reason
    E_OK = 0
    E_BARE_LF
    E_BARE_CR
    E_URI_TOO_LONG
    E_HEAD_TOO_LARGE
    E_TOO_MANY_HEADERS
    E_BAD_METHOD
    E_BAD_TARGET
    E_BAD_VERSION
    E_VERSION
    E_BAD_STATUS_LINE
    E_BAD_STATUS
    E_OBS_FOLD
    E_BAD_NAME
    E_WS_BEFORE_COLON
    E_BAD_VALUE
    E_NO_HOST
    E_MULTI_HOST
    E_BAD_HOST
    E_BAD_CL
    E_MULTI_CL
    E_TE_AND_CL
    E_TE_HTTP10
    E_CHUNKED_TWICE
    E_TE_UNSUPPORTED
    E_BAD_TE
    E_CONNECT_BODY
    E_BAD_CHUNK_LINE
    E_BAD_CHUNK_SIZE
    E_CHUNK_OVERFLOW
    E_BAD_CHUNK_EXT
    E_CHUNK_LINE_TOO_LONG
    E_BAD_CHUNK_END
    E_TRAILERS_TOO_LARGE
    E_TOO_MANY_TRAILERS
    E_INCOMPLETE
    E_COUNT

cdef enum:
    CR = 13
    LF = 10
    SP = 32
    HTAB = 9
    MAX_SECTION = 1 << 30  # hard cap on max_head_bytes: offsets are int32

# Tables are data (STYLE.md): filled once at import by _init_tables() from the RFC grammar.
cdef uint8_t CT[256]
cdef uint8_t LOWER[256]
cdef uint8_t HEXVAL[256]        # 0..15, or 0xFF for a non-HEXDIG
cdef uint8_t HOP_BY_ID[32]      # HF_HOP for the ids that are hop-by-hop by definition
cdef int ERR_STATUS[E_COUNT]
cdef tuple ERR_REASON
cdef bytes EMPTY = b""
cdef const char* HEXDIGITS = b"0123456789abcdef"


cdef int _init_tables() except -1:
    global ERR_REASON
    cdef int c
    for c in range(256):
        CT[c] = 0
        LOWER[c] = c + 32 if 65 <= c <= 90 else c
        HEXVAL[c] = 0xFF
    for c in range(0x21, 0x7F):
        CT[c] |= C_VCHAR | C_FVAL
    for c in range(0x80, 0x100):
        CT[c] |= C_FVAL                           # obs-text
    CT[SP] |= C_FVAL
    CT[HTAB] |= C_FVAL
    for c in b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ":
        CT[c] |= C_TCHAR
    for c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;=:[]":
        CT[c] |= C_HOST
    for c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.":
        CT[c] |= C_SCHEME
    for c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ":
        CT[c] |= C_ALPHA
    for c in range(10):
        HEXVAL[48 + c] = c
    for c in range(6):
        HEXVAL[97 + c] = 10 + c
        HEXVAL[65 + c] = 10 + c
    for c in range(32):
        HOP_BY_ID[c] = 0
    for c in (H_CONNECTION, H_KEEP_ALIVE, H_PROXY_CONNECTION, H_TE, H_TRAILER,
              H_TRANSFER_ENCODING, H_UPGRADE, H_HTTP2_SETTINGS):
        HOP_BY_ID[c] = HF_HOP                     # RFC 9110 7.6.1, RFC 9112 7.4 and 6.1;
                                                  # HTTP2-Settings: RFC 7540 3.2.1
    errors = {
        E_OK: (0, ""),
        E_BARE_LF: (400, "bare LF"),
        E_BARE_CR: (400, "bare CR"),
        E_URI_TOO_LONG: (414, "request line too long"),
        E_HEAD_TOO_LARGE: (431, "head too large"),
        E_TOO_MANY_HEADERS: (431, "too many header fields"),
        E_BAD_METHOD: (400, "bad method"),
        E_BAD_TARGET: (400, "bad request target"),
        E_BAD_VERSION: (400, "bad http version"),
        E_VERSION: (505, "http version not supported"),
        E_BAD_STATUS_LINE: (502, "bad status line"),
        E_BAD_STATUS: (502, "bad status code"),
        E_OBS_FOLD: (400, "obs-fold"),
        E_BAD_NAME: (400, "bad field name"),
        E_WS_BEFORE_COLON: (400, "whitespace before colon"),
        E_BAD_VALUE: (400, "bad field value"),
        E_NO_HOST: (400, "missing host"),
        E_MULTI_HOST: (400, "multiple host"),
        E_BAD_HOST: (400, "bad host"),
        E_BAD_CL: (400, "bad content-length"),
        E_MULTI_CL: (400, "duplicate content-length"),
        E_TE_AND_CL: (400, "content-length and transfer-encoding"),
        E_TE_HTTP10: (400, "transfer-encoding in http/1.0"),
        E_CHUNKED_TWICE: (400, "chunked applied twice"),
        E_TE_UNSUPPORTED: (501, "unsupported transfer-encoding"),
        E_BAD_TE: (400, "bad transfer-encoding"),
        E_CONNECT_BODY: (400, "connect with a body"),
        E_BAD_CHUNK_LINE: (400, "bad chunk line"),
        E_BAD_CHUNK_SIZE: (400, "bad chunk size"),
        E_CHUNK_OVERFLOW: (400, "chunk size overflow"),
        E_BAD_CHUNK_EXT: (400, "bad chunk extension"),
        E_CHUNK_LINE_TOO_LONG: (400, "chunk line too long"),
        E_BAD_CHUNK_END: (400, "bad chunk terminator"),
        E_TRAILERS_TOO_LARGE: (431, "trailers too large"),
        E_TOO_MANY_TRAILERS: (431, "too many trailer fields"),
        E_INCOMPLETE: (400, "incomplete message"),
    }
    assert len(errors) == E_COUNT
    for c in range(E_COUNT):
        ERR_STATUS[c] = errors[c][0]
    ERR_REASON = tuple([errors[c][1] for c in range(E_COUNT)])
    return 0

_init_tables()


# ---------------------------------------------------------------------------------------------
# Byte helpers (no Python objects, no exceptions)

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* SWAR (8 bytes per step) pre-filters for the two longest runs of a head: field values
       and the request-target. Each test is exact as a boolean ("some byte of v is < n", for
       n <= 128; "some byte is zero"), so a word that passes needs no per-byte check. */
    static inline uint64_t sluice_load64(const unsigned char *p) {
        uint64_t v; memcpy(&v, p, 8); return v;
    }
    #define SLUICE_ONES  0x0101010101010101ULL
    #define SLUICE_HIGHS 0x8080808080808080ULL
    #define SLUICE_HASLESS(v, n) (((v) - SLUICE_ONES * (n)) & ~(v) & SLUICE_HIGHS)
    #define SLUICE_HASZERO(v) (((v) - SLUICE_ONES) & ~(v) & SLUICE_HIGHS)
    /* any byte < 0x20 (CTL, incl. HTAB: left to the byte loop) or == 0x7F (DEL) */
    static inline int sluice_fval_stop(uint64_t v) {
        return (SLUICE_HASLESS(v, 0x20) | SLUICE_HASZERO(v ^ (SLUICE_ONES * 0x7F))) != 0;
    }
    /* any byte outside VCHAR %x21-7E */
    static inline int sluice_vchar_stop(uint64_t v) {
        return (SLUICE_HASLESS(v, 0x21) | (v & SLUICE_HIGHS)
                | SLUICE_HASZERO(v ^ (SLUICE_ONES * 0x7F))) != 0;
    }
    """
    unsigned long long sluice_load64(const unsigned char* p) noexcept nogil
    int sluice_fval_stop(unsigned long long v) noexcept nogil
    int sluice_vchar_stop(unsigned long long v) noexcept nogil


cdef inline Py_ssize_t _skip_fval(const unsigned char* p, Py_ssize_t k, Py_ssize_t end) noexcept nogil:
    """First index >= k whose byte is not field-vchar / SP / HTAB. The caller guarantees
    that such a byte (the CR of the line) exists before `end`."""
    while k + 8 <= end and not sluice_fval_stop(sluice_load64(p + k)):
        k += 8
    while CT[p[k]] & C_FVAL:
        k += 1
    return k


cdef inline Py_ssize_t _skip_vchar(const unsigned char* p, Py_ssize_t k, Py_ssize_t end) noexcept nogil:
    """First index >= k whose byte is not VCHAR (same guarantee as _skip_fval)."""
    while k + 8 <= end and not sluice_vchar_stop(sluice_load64(p + k)):
        k += 8
    while CT[p[k]] & C_VCHAR:
        k += 1
    return k

cdef inline bint _ieq(const unsigned char* s, const char* lit, Py_ssize_t n) noexcept nogil:
    """s[:n] equals the lowercase literal `lit`, ASCII case-insensitively."""
    cdef Py_ssize_t i
    for i in range(n):
        if LOWER[s[i]] != <unsigned char>lit[i]:
            return False
    return True


cdef inline bint _ieq2(const unsigned char* a, const unsigned char* b, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if LOWER[a[i]] != LOWER[b[i]]:
            return False
    return True


cdef inline bint _ws(unsigned char c) noexcept nogil:
    return c == SP or c == HTAB


cdef inline Py_ssize_t _next_elem(const unsigned char* p, Py_ssize_t k, Py_ssize_t end,
                                  Py_ssize_t* es, Py_ssize_t* ee) noexcept nogil:
    """One element of a comma-separated list (RFC 9110 5.6.1) starting at k: its bounds
    without OWS go to es/ee (empty elements give es == ee). Returns the index after the comma,
    or end + 1 after the last element."""
    while k < end and _ws(p[k]):
        k += 1
    es[0] = k
    while k < end and p[k] != 44:             # ','
        k += 1
    cdef Py_ssize_t e = k
    while e > es[0] and _ws(p[e - 1]):
        e -= 1
    ee[0] = e
    return k + 1


cdef int _parse_cl(const unsigned char* p, Py_ssize_t vs, Py_ssize_t ve, int64_t* cl) noexcept nogil:
    """RFC 9110 8.6: Content-Length = 1*DIGIT. RFC 9110 allows a recipient to take a list of
    identical values (in one field or several) as one; we refuse it instead (as nginx does):
    forwarding such a head would pass the ambiguity on, and rewriting it costs every request.
    A second field is E_MULTI_CL (the caller checks), a list or overflow of int64 is E_BAD_CL."""
    cdef Py_ssize_t k = vs
    cdef int64_t v = 0
    cdef int d
    if k == ve:
        return E_BAD_CL
    while k < ve and 48 <= p[k] <= 57:
        d = p[k] - 48
        if v > (INT64_MAX - d) // 10:
            return E_BAD_CL
        v = v * 10 + d
        k += 1
    if k != ve:
        return E_BAD_CL
    cl[0] = v
    return E_OK


cdef inline int _field_line(const unsigned char* p, Py_ssize_t k, Py_ssize_t end, Py_ssize_t* ne,
                            Py_ssize_t* vs, Py_ssize_t* ve, Py_ssize_t* nxt) noexcept nogil:
    """One field line at k (RFC 9112 5, RFC 9110 5.5), known to end with LF before `end`:
    field-name ":" OWS field-value OWS CRLF. The name ends at ne, the value (OWS removed) is
    [vs, ve), the next line starts at nxt."""
    cdef Py_ssize_t s = k, v
    cdef unsigned char c = p[k]
    if c == SP or c == HTAB:
        return E_OBS_FOLD                     # RFC 9112 5.2: obs-fold is rejected
    while CT[p[k]] & C_TCHAR:
        k += 1
    if p[k] != 58:                            # ':'
        if k > s and _ws(p[k]):
            while _ws(p[k]):
                k += 1
            if p[k] == 58:
                return E_WS_BEFORE_COLON      # RFC 9112 5.1: MUST reject with 400
        return E_BAD_NAME
    if k == s:
        return E_BAD_NAME                     # empty field-name
    ne[0] = k
    k += 1
    while _ws(p[k]):
        k += 1
    vs[0] = k
    k = _skip_fval(p, k, end)                 # field-vchar, SP, HTAB; stops at CR/LF/CTL/DEL
    if p[k] != CR:
        return E_BAD_VALUE                    # NUL, CTL, DEL or bare LF inside the value
    if p[k + 1] != LF:
        return E_BARE_CR                      # RFC 9112 2.2: bare CR -> reject
    v = k
    while v > vs[0] and _ws(p[v - 1]):
        v -= 1
    ve[0] = v
    nxt[0] = k + 2
    return E_OK


cdef inline bint _ends_with_version(const unsigned char* p, Py_ssize_t s, Py_ssize_t e) noexcept nogil:
    """The line p[s:e] ends with SP "HTTP/" DIGIT "." DIGIT (the rest is checked by _version)."""
    return (e - s >= 12 and p[e - 8] == 72 and p[e - 7] == 84 and p[e - 6] == 84
            and p[e - 5] == 80 and p[e - 4] == 47 and p[e - 9] == SP)


cdef int check_authority(const unsigned char* p, Py_ssize_t s, Py_ssize_t e) noexcept nogil:
    """RFC 9110 7.2 / RFC 3986 3.2: Host = uri-host [ ":" port ], stricter than the grammar
    where the grammar only invites trouble: a reg-name is ALPHA / DIGIT / "-" "." "_" "~" (no
    userinfo "@", no percent-escapes, no sub-delims such as "," that make a host look like a
    list), an IP-literal is "[" HEXDIG / ":" / "." "]", and a port is 1 to 5 digits up to
    65535. Empty is refused (a proxy routes on it). Also used for an absolute-form authority."""
    cdef Py_ssize_t k = s
    cdef long port = 0
    if k == e:
        return E_BAD_HOST
    if p[k] == 91:                            # "[" IPv6 "]"
        k += 1
        while k < e and (HEXVAL[p[k]] != 0xFF or p[k] == 58 or p[k] == 46):
            k += 1
        if k == e or p[k] != 93 or k == s + 1:
            return E_BAD_HOST
        k += 1
    else:
        while k < e and (CT[p[k]] & C_ALPHA or 48 <= p[k] <= 57 or p[k] == 45 or p[k] == 46
                         or p[k] == 95 or p[k] == 126):
            k += 1
        if k == s:
            return E_BAD_HOST
    if k == e:
        return E_OK
    if p[k] != 58 or k + 1 == e or e - k - 1 > 5:
        return E_BAD_HOST
    k += 1
    while k < e:
        if not 48 <= p[k] <= 57:
            return E_BAD_HOST
        port = port * 10 + (p[k] - 48)
        k += 1
    return E_OK if port <= 65535 else E_BAD_HOST


cdef inline int _version(const unsigned char* p, Py_ssize_t k, int* minor) noexcept nogil:
    """RFC 9112 2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT (case-sensitive). Returns E_OK
    with minor set, E_VERSION for a well-formed version other than 1.0/1.1, or E_BAD_VERSION.
    Compares left to right and stops at the first mismatch, so it never reads past the CR
    that ends the line."""
    if not (p[k] == 72 and p[k + 1] == 84 and p[k + 2] == 84 and p[k + 3] == 80
            and p[k + 4] == 47 and 48 <= p[k + 5] <= 57 and p[k + 6] == 46
            and 48 <= p[k + 7] <= 57):
        return E_BAD_VERSION
    if p[k + 5] != 49 or p[k + 7] > 49:
        minor[0] = -1
        return E_VERSION
    minor[0] = p[k + 7] - 48
    return E_OK


cdef int _check_target(const unsigned char* p, Py_ssize_t ts, Py_ssize_t te,
                       bint is_connect, bint is_options) noexcept nogil:
    """RFC 9112 3.2: the four forms of request-target, each only where it is allowed."""
    cdef Py_ssize_t k, c
    if is_connect:
        # 3.2.3 authority-form = uri-host ":" port, and only for CONNECT
        c = te - 1
        while c > ts and p[c] != 58:
            c -= 1
        if c <= ts or c + 1 == te or te - c - 1 > 5:
            return E_BAD_TARGET
        for k in range(c + 1, te):
            if not 48 <= p[k] <= 57:
                return E_BAD_TARGET
        for k in range(ts, c):
            if not CT[p[k]] & C_HOST:
                return E_BAD_TARGET
        return E_OK
    if p[ts] == 47:                           # 3.2.1 origin-form
        return E_OK
    if te - ts == 1 and p[ts] == 42:          # 3.2.4 asterisk-form, only for OPTIONS
        return E_OK if is_options else E_BAD_TARGET
    # 3.2.2 absolute-form: absolute-URI = scheme ":" hier-part [ "?" query ]
    if not CT[p[ts]] & C_ALPHA:
        return E_BAD_TARGET
    k = ts + 1
    while k < te and CT[p[k]] & C_SCHEME:
        k += 1
    if k == te or p[k] != 58:
        return E_BAD_TARGET
    return E_OK


# ---------------------------------------------------------------------------------------------
# The parser

@cython.final
cdef class H1Parser:
    """Sans-I/O HTTP/1.x parser (requests if is_request, else responses). See the module
    docstring for the theory of operation."""

    def __cinit__(self, bint is_request=True, Py_ssize_t max_head_bytes=65536,
                  Py_ssize_t max_headers=100, Py_ssize_t max_uri_bytes=8192):
        self.is_request = is_request
        self.max_head_bytes = max_head_bytes
        self.max_headers = max_headers
        self.max_uri_bytes = max_uri_bytes
        self.data = EMPTY
        self.acc = None
        self.pos = 0
        self.state = ST_HEAD
        self.scan_pos = 0
        self.line_s = 0
        self.nlines = 0
        self.head = None
        self.method_s = self.method_e = self.target_s = self.target_e = 0
        self.reason_s = self.reason_e = 0
        self.version_minor = -1
        self.status = 0
        self.nheaders = 0
        self.host_index = -1
        self.body_kind = BODY_NONE
        self.content_length = -1
        self.remaining = 0
        self.keep_alive = False
        self.expect_continue = False
        self.upgrade = False
        self.method_is_head = False
        self.method_is_connect = False
        self.response_to_head = False
        self.response_to_connect = False
        self.trailers_raw = EMPTY
        self.ev_start = self.ev_end = 0
        self.error_status = 0
        self.error_reason = ""

    # -- input ----------------------------------------------------------------------------

    cpdef feed(self, bytes data):
        """Append input. Zero copy when everything fed before was consumed; otherwise the
        unconsumed rest and `data` are accumulated (amortised, see the module docstring)."""
        cdef Py_ssize_t n, rem, old
        if data is None:
            raise TypeError("feed() takes bytes, not None")
        n = PyBytes_GET_SIZE(data)
        if n == 0 or self.state == ST_ERROR or self.state == ST_CLOSED:
            return
        if self.acc is not None:
            rem = PyByteArray_GET_SIZE(self.acc) - self.pos
        else:
            rem = PyBytes_GET_SIZE(self.data) - self.pos
        if rem == 0:
            self.acc = None
            self._rebase(self.pos)
            self.data = data
            return
        if self.acc is None:
            self.acc = PyByteArray_FromStringAndSize(PyBytes_AS_STRING(self.data) + self.pos, rem)
            self._rebase(self.pos)
            self.data = EMPTY
        old = PyByteArray_GET_SIZE(self.acc)
        PyByteArray_Resize(self.acc, old + n)
        memcpy(PyByteArray_AS_STRING(self.acc) + old, PyBytes_AS_STRING(data), n)

    cdef int _rebase(self, Py_ssize_t shift) noexcept:
        """The input now starts `shift` bytes later: move the positions of unfinished work."""
        self.pos -= shift
        self.scan_pos -= shift
        self.line_s -= shift
        return 0

    cdef int _materialize(self) except -1:
        """Turn acc[pos:] into self.data (one copy) so offsets can be handed out."""
        cdef Py_ssize_t n = PyByteArray_GET_SIZE(self.acc)
        self.data = PyBytes_FromStringAndSize(PyByteArray_AS_STRING(self.acc) + self.pos,
                                              n - self.pos)
        self.acc = None
        self._rebase(self.pos)
        return 0

    cpdef int feed_eof(self):
        """The peer closed its side. Returns EV_END if that completes a message (a response
        body delimited by close, RFC 9112 6.3 item 8), EV_NEED_DATA if nothing was in progress
        (a clean close between messages, or of a tunnel), EV_ERROR if a message was cut
        short (RFC 9112 8: incomplete message). Call it after next_event() returned
        EV_NEED_DATA (or EV_PAUSED)."""
        cdef int st = self.state
        cdef Py_ssize_t n
        if st == ST_ERROR:
            return EV_ERROR
        if st == ST_CLOSED or st == ST_PAUSED:
            self.state = ST_CLOSED
            return EV_NEED_DATA
        if st == ST_UNTIL_CLOSE or st == ST_MSG_DONE:
            self.state = ST_CLOSED
            return EV_END
        n = PyByteArray_GET_SIZE(self.acc) if self.acc is not None else PyBytes_GET_SIZE(self.data)
        if st == ST_HEAD and self.pos == n:
            self.state = ST_CLOSED
            return EV_NEED_DATA
        return self._fail(E_INCOMPLETE)

    cdef Py_ssize_t buffered(self) noexcept:
        """Input held and not consumed yet: what a connection would carry into its next use."""
        if self.acc is not None:
            return PyByteArray_GET_SIZE(self.acc) - self.pos
        return PyBytes_GET_SIZE(self.data) - self.pos

    cpdef bytes leftover(self):
        """Unconsumed input (after EV_PAUSED: the first bytes of the tunnel)."""
        if self.acc is not None:
            self._materialize()
        if self.pos == 0:
            return self.data
        return PyBytes_FromStringAndSize(PyBytes_AS_STRING(self.data) + self.pos,
                                         PyBytes_GET_SIZE(self.data) - self.pos)

    cpdef expect_response(self, bint to_head):
        """Response parser: the next final response answers a HEAD request (RFC 9112 6.3
        item 1: it has no body whatever its fields say). Consumed by that response's EV_HEAD;
        1xx responses before it leave it set."""
        self.response_to_head = to_head

    cpdef expect_connect_response(self):
        """Response parser: the next final response answers a CONNECT: a 2xx has no body and
        turns the connection into a tunnel (RFC 9110 9.3.6, RFC 9112 6.3 item 2): upgrade is
        set and EV_PAUSED follows its EV_END."""
        self.response_to_connect = True

    cpdef resume(self):
        """After EV_PAUSED: the protocol switch did not happen (the upstream answered the
        Upgrade or CONNECT with a non-1xx/non-2xx): go on parsing HTTP/1.1 messages."""
        if self.state == ST_PAUSED:
            self.state = ST_HEAD
            self.upgrade = False
            self.line_s = self.scan_pos = self.pos
            self.nlines = 0

    # -- events ---------------------------------------------------------------------------

    cpdef int next_event(self) except -1:
        cdef int st, r
        cdef Py_ssize_t n, avail, take
        while True:
            st = self.state
            if st == ST_BODY_LENGTH or st == ST_CHUNK_DATA or st == ST_UNTIL_CLOSE:
                if self.acc is not None:
                    self._materialize()
                n = PyBytes_GET_SIZE(self.data)
                avail = n - self.pos
                if avail <= 0:
                    return EV_NEED_DATA
                if st == ST_UNTIL_CLOSE:
                    take = avail
                else:
                    take = <Py_ssize_t>self.remaining if self.remaining < avail else avail
                    self.remaining -= take
                    if self.remaining == 0:
                        self.state = ST_MSG_DONE if st == ST_BODY_LENGTH else ST_CHUNK_CRLF
                self.ev_start = self.pos
                self.pos += take
                self.ev_end = self.pos
                return EV_BODY
            elif st == ST_HEAD:
                r = self._head()
            elif st == ST_MSG_DONE:
                self.state = ST_PAUSED if self.upgrade else ST_HEAD
                self.line_s = self.scan_pos = self.pos
                self.nlines = 0
                return EV_END
            elif st == ST_CHUNK_SIZE:
                r = self._chunk_size()
            elif st == ST_CHUNK_CRLF:
                r = self._chunk_crlf()
            elif st == ST_TRAILERS:
                r = self._trailers()
            elif st == ST_PAUSED:
                return EV_PAUSED
            elif st == ST_ERROR:
                return EV_ERROR
            else:
                return EV_NEED_DATA
            if r != EV_AGAIN:
                return r

    cdef int _fail(self, int code) except -1:
        self.state = ST_ERROR
        self.error_status = ERR_STATUS[code] if self.is_request else 502
        self.error_reason = <str>ERR_REASON[code]
        return EV_ERROR

    cdef int _head(self) except -1:
        """Find the end of the head without rescanning (scan_pos), checking line ends and
        limits as bytes arrive; parse it in one pass once complete."""
        cdef const unsigned char* p
        cdef const unsigned char* q
        cdef Py_ssize_t n, pos, i, j, end, limit, line_s, known, max_head, max_uri
        cdef int nlines, maxh
        if self.acc is not None:
            p = <const unsigned char*>PyByteArray_AS_STRING(self.acc)
            n = PyByteArray_GET_SIZE(self.acc)
        else:
            p = <const unsigned char*>PyBytes_AS_STRING(self.data)
            n = PyBytes_GET_SIZE(self.data)
        pos = self.pos
        if pos == n:
            return EV_NEED_DATA
        if self.is_request and self.scan_pos == pos:
            # RFC 9112 2.2: a server SHOULD ignore at least one empty line (CRLF) received
            # prior to the request-line. Skipped lines are consumed, so they never pile up.
            while p[pos] == CR:
                if pos + 1 == n:
                    return EV_NEED_DATA
                if p[pos + 1] != LF:
                    return self._fail(E_BARE_CR)
                pos += 2
                if pos == n:
                    break
            self.pos = self.scan_pos = self.line_s = pos
            if pos == n:
                return EV_NEED_DATA
        max_head = self.max_head_bytes
        if max_head > MAX_SECTION:
            max_head = MAX_SECTION
        max_uri = self.max_uri_bytes
        maxh = <int>self.max_headers if self.max_headers < H1_MAX_HEADERS_HARD else H1_MAX_HEADERS_HARD
        limit = pos + max_head                # the head, final CRLF included, fits before this
        end = n if n < limit else limit
        i = self.scan_pos
        line_s = self.line_s
        nlines = self.nlines
        while i < end:
            q = <const unsigned char*>memchr(p + i, LF, <size_t>(end - i))
            if q == NULL:
                i = end
                break
            j = q - p
            if nlines == 0 and self.is_request:
                # checked before the line end so that the verdict is the one a split input
                # gets (see the 414 check below)
                known = j - line_s
                if known > 0 and p[j - 1] == CR:
                    known -= 1
                if known > max_uri:
                    return self._fail(E_URI_TOO_LONG)
            if j == line_s or p[j - 1] != CR:
                return self._fail(E_BARE_LF)  # RFC 9112 2.2: we require CRLF
            if nlines == 0 and self.is_request and j - 1 > line_s and not _ends_with_version(p, line_s, j - 1):
                # "GET /" alone is HTTP/0.9 (RFC 9112 2.3 leaves it out): 400 now, not a
                # connection held until the header timeout
                return self._fail(E_BAD_VERSION)
            if j - 1 == line_s:               # empty line: end of the head
                if nlines == 0:
                    return self._fail(E_BAD_STATUS_LINE)
                return self._head_done(j + 1)
            nlines += 1
            if nlines - 1 > maxh:
                return self._fail(E_TOO_MANY_HEADERS)
            line_s = i = j + 1
        self.scan_pos = i
        self.line_s = line_s
        self.nlines = nlines
        if nlines == 0 and self.is_request:
            # 414 as soon as the request-line is known to be too long, complete or not
            known = i - line_s
            if known > 0 and p[i - 1] == CR:
                known -= 1
            if known > max_uri:
                return self._fail(E_URI_TOO_LONG)
        if end == limit:
            return self._fail(E_HEAD_TOO_LARGE)
        return EV_NEED_DATA

    cdef int _head_done(self, Py_ssize_t he) except -1:
        cdef int err, bk, lines = 0
        cdef const char* q
        cdef const char* scan
        cdef const char* stop
        if self.acc is not None:
            he -= self.pos
            self._materialize()
        elif he > INT32_MAX:
            # offsets are int32: restart the buffer at this head (once per 2 GiB of input)
            he -= self.pos
            self.data = PyBytes_FromStringAndSize(PyBytes_AS_STRING(self.data) + self.pos,
                                                  PyBytes_GET_SIZE(self.data) - self.pos)
            self._rebase(self.pos)
        # at most one field per line of the head: make room before parsing (which cannot fail)
        scan = PyBytes_AS_STRING(self.data) + self.pos
        stop = PyBytes_AS_STRING(self.data) + he
        while scan < stop:
            q = <const char*>memchr(scan, LF, <size_t>(stop - scan))
            if q == NULL:
                break
            lines += 1
            scan = q + 1
        if lines > self.hcap:
            self._grow(lines if lines < H1_MAX_HEADERS_HARD else H1_MAX_HEADERS_HARD)
        err = self._parse_head(<const unsigned char*>PyBytes_AS_STRING(self.data), self.pos, he)
        if err:
            return self._fail(err)
        self.head = self.data
        self.pos = self.line_s = self.scan_pos = he
        self.nlines = 0
        self.trailers_raw = EMPTY
        bk = self.body_kind
        if bk == BODY_LENGTH:
            self.state = ST_BODY_LENGTH if self.remaining > 0 else ST_MSG_DONE
        elif bk == BODY_CHUNKED:
            self.state = ST_CHUNK_SIZE
        elif bk == BODY_UNTIL_CLOSE:
            self.state = ST_UNTIL_CLOSE
        else:
            self.state = ST_MSG_DONE
        return EV_HEAD

    cdef int _parse_head(self, const unsigned char* p, Py_ssize_t s, Py_ssize_t he) noexcept:
        """Parse the complete head p[s:he] (it ends with CRLF CRLF, every LF in it follows a
        CR) into the head fields and decide the framing. Returns an E_* code."""
        cdef Py_ssize_t k = s, ts, ns, ne = 0, vs = 0, ve = 0, nxt = 0, es = 0, ee = 0, m
        cdef int n = 0, i, j, err, nhost = 0, te_chunked = 0, minor = 0, st, hid
        cdef bint te_present = False, te_unknown = False, conn_close = False, conn_ka = False
        cdef bint conn_upgrade = False, conn_named = False, has_upgrade = False, expect = False
        cdef int64_t cl = -1
        cdef int body
        self.method_is_head = self.method_is_connect = False

        # -- start-line ------------------------------------------------------------------
        if self.is_request:
            # RFC 9112 3: request-line = method SP request-target SP HTTP-version CRLF
            while CT[p[k]] & C_TCHAR:         # method = token
                k += 1
            if k == s or p[k] != SP:
                return E_BAD_METHOD
            self.method_s = s
            self.method_e = k
            k += 1
            ts = k
            k = _skip_vchar(p, k, he)         # no CTL, SP, DEL or non-ASCII in the target
            if k == ts or p[k] != SP:
                return E_BAD_TARGET
            self.target_s = ts
            self.target_e = k
            k += 1
            err = _version(p, k, &minor)
            if err == E_BAD_VERSION or p[k + 8] != CR or p[k + 9] != LF:
                return E_BAD_VERSION
            if err:
                return err
            k += 10
            m = self.method_e - s
            self.method_is_head = m == 4 and memcmp(p + s, b"HEAD", 4) == 0
            self.method_is_connect = m == 7 and memcmp(p + s, b"CONNECT", 7) == 0
            err = _check_target(p, ts, self.target_e, self.method_is_connect,
                                m == 7 and memcmp(p + s, b"OPTIONS", 7) == 0)
            if err:
                return err
            self.status = 0
            self.reason_s = self.reason_e = k
        else:
            # RFC 9112 4: status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF
            # (a missing SP before an empty reason is tolerated, as most clients do)
            err = _version(p, k, &minor)
            if err or p[k + 8] != SP:
                return E_BAD_STATUS_LINE
            k += 9
            if not (48 <= p[k] <= 57 and 48 <= p[k + 1] <= 57 and 48 <= p[k + 2] <= 57):
                return E_BAD_STATUS
            st = (p[k] - 48) * 100 + (p[k + 1] - 48) * 10 + (p[k + 2] - 48)
            if st < 100 or st > 599:          # RFC 9110 15: outside 100..599 is invalid
                return E_BAD_STATUS
            self.status = st
            k += 3
            if p[k] == SP:
                k += 1
                self.reason_s = k
                while CT[p[k]] & C_FVAL:      # reason-phrase = 1*( HTAB / SP / VCHAR / obs-text )
                    k += 1
            else:
                self.reason_s = k
            self.reason_e = k
            if p[k] != CR or p[k + 1] != LF:
                return E_BAD_STATUS_LINE
            k += 2
            self.method_s = self.method_e = self.target_s = self.target_e = s
        self.version_minor = minor

        # -- field lines (RFC 9112 5) ----------------------------------------------------
        self.host_index = -1
        while p[k] != CR:
            if n >= self.hcap:
                return E_TOO_MANY_HEADERS
            err = _field_line(p, k, he, &ne, &vs, &ve, &nxt)
            if err:
                return err
            hid = header_id(p + k, ne - k)
            self.name_s[n] = <int32_t>k
            self.name_e[n] = <int32_t>ne
            self.value_s[n] = <int32_t>vs
            self.value_e[n] = <int32_t>ve
            self.hdr_id[n] = <uint8_t>hid
            self.hdr_flags[n] = HOP_BY_ID[hid]
            if hid != H_OTHER:
                if hid == H_HOST:
                    # RFC 9112 3.2: exactly one Host with a valid value
                    nhost += 1
                    if nhost == 1:
                        self.host_index = n
                    if check_authority(p, vs, ve) != E_OK:
                        return E_BAD_HOST
                elif hid == H_CONTENT_LENGTH:
                    if cl >= 0:
                        return E_MULTI_CL
                    err = _parse_cl(p, vs, ve, &cl)
                    if err:
                        return err
                elif hid == H_TRANSFER_ENCODING:
                    # RFC 9112 6.1: the codings of all fields, in order, form one list
                    te_present = True
                    m = vs
                    while m <= ve:
                        m = _next_elem(p, m, ve, &es, &ee)
                        if ee == es:
                            continue
                        if ee - es == 7 and _ieq(p + es, b"chunked", 7):
                            te_chunked += 1
                        else:
                            te_unknown = True
                elif hid == H_CONNECTION:
                    # RFC 9110 7.6.1: connection options
                    m = vs
                    while m <= ve:
                        m = _next_elem(p, m, ve, &es, &ee)
                        if ee - es == 5 and _ieq(p + es, b"close", 5):
                            conn_close = True
                        elif ee - es == 10 and _ieq(p + es, b"keep-alive", 10):
                            conn_ka = True
                        elif ee - es == 7 and _ieq(p + es, b"upgrade", 7):
                            conn_upgrade = True
                        elif ee > es:
                            conn_named = True
                elif hid == H_EXPECT:
                    # RFC 9110 10.1.1: the 100-continue expectation, case-insensitive
                    expect = ve - vs == 12 and _ieq(p + vs, b"100-continue", 12)
                elif hid == H_UPGRADE:
                    # An h2c upgrade is not done here and must never reach an upstream that
                    # might do it (h2c smuggling): an Upgrade naming only h2c is no upgrade.
                    m = vs
                    while m <= ve:
                        m = _next_elem(p, m, ve, &es, &ee)
                        if ee > es and not (ee - es == 3 and _ieq(p + es, b"h2c", 3)):
                            has_upgrade = True
            n += 1
            k = nxt
        if p[k + 1] != LF or k + 2 != he:
            return E_BARE_CR
        self.nheaders = n

        # -- fields named by Connection are hop-by-hop (RFC 9110 7.6.1) --------------------
        # Connection may name fields before or after it, hence a second pass. Content-Length
        # and Host are never dropped: that would change the framing or the routing.
        if conn_named:
            for i in range(n):
                if self.hdr_id[i] != H_CONNECTION:
                    continue
                m = self.value_s[i]
                while m <= self.value_e[i]:
                    m = _next_elem(p, m, self.value_e[i], &es, &ee)
                    if ee == es:
                        continue
                    for j in range(n):
                        if (self.name_e[j] - self.name_s[j] == ee - es
                                and self.hdr_id[j] != H_CONTENT_LENGTH
                                and self.hdr_id[j] != H_HOST
                                and _ieq2(p + self.name_s[j], p + es, ee - es)):
                            self.hdr_flags[j] |= HF_HOP

        # -- framing (RFC 9112 6.3) ------------------------------------------------------
        if self.is_request:
            if nhost > 1:
                return E_MULTI_HOST
            if nhost == 0 and minor == 1:
                return E_NO_HOST
            if te_present:
                if minor == 0:
                    return E_TE_HTTP10        # 6.1: HTTP/1.0 + Transfer-Encoding is faulty
                if cl >= 0:
                    return E_TE_AND_CL        # 6.3 item 3: smuggling risk -> reject
                if te_chunked > 1:
                    return E_CHUNKED_TWICE    # 6.1: MUST NOT apply chunked more than once
                if te_unknown:
                    return E_TE_UNSUPPORTED   # 6.1: a coding we do not implement -> 501
                if te_chunked == 0:
                    return E_BAD_TE           # empty Transfer-Encoding
                body = BODY_CHUNKED           # 6.3 item 4
            elif cl >= 0:
                body = BODY_LENGTH            # 6.3 item 6
            else:
                body = BODY_NONE              # 6.3 item 7
            if self.method_is_connect and (body == BODY_CHUNKED or cl > 0):
                return E_CONNECT_BODY         # RFC 9110 9.3.6: CONNECT has no content
            self.upgrade = self.method_is_connect or (minor == 1 and has_upgrade and conn_upgrade)
            self.expect_continue = minor == 1 and expect
        else:
            st = self.status
            self.expect_continue = False
            self.upgrade = False
            if st < 200:
                body = BODY_NONE              # 6.3 item 1
                self.upgrade = st == 101
            elif self.response_to_connect and st < 300:
                body = BODY_NONE              # 6.3 item 2: a tunnel follows
                self.upgrade = True
            elif st == 204 or st == 304 or self.response_to_head:
                body = BODY_NONE              # 6.3 item 1
            elif te_present:
                if minor == 0:
                    return E_TE_HTTP10
                if cl >= 0:
                    return E_TE_AND_CL
                if te_chunked > 1:
                    return E_CHUNKED_TWICE
                if te_unknown or te_chunked == 0:
                    return E_TE_UNSUPPORTED   # we could not forward it without the coding
                body = BODY_CHUNKED
            elif cl >= 0:
                body = BODY_LENGTH
            else:
                body = BODY_UNTIL_CLOSE       # 6.3 item 8
            if st >= 200:
                self.response_to_head = False
                self.response_to_connect = False

        # -- connection persistence (RFC 9112 9.3) -----------------------------------------
        if minor == 1:
            self.keep_alive = not conn_close
        else:
            self.keep_alive = conn_ka and not conn_close
        if body == BODY_UNTIL_CLOSE:
            self.keep_alive = False
        self.body_kind = body
        if body == BODY_LENGTH:
            self.content_length = cl
            self.remaining = cl
        else:
            self.content_length = -1
            self.remaining = 0
        return E_OK

    cdef int _chunk_size(self) except -1:
        """RFC 9112 7.1: chunk-size [ chunk-ext ] CRLF, chunk-size = 1*HEXDIG."""
        cdef const unsigned char* p
        cdef const unsigned char* q
        cdef Py_ssize_t n, pos, i, j, k, le, end, limit
        cdef int64_t v = 0
        cdef uint8_t h
        if self.acc is not None:
            p = <const unsigned char*>PyByteArray_AS_STRING(self.acc)
            n = PyByteArray_GET_SIZE(self.acc)
        else:
            p = <const unsigned char*>PyBytes_AS_STRING(self.data)
            n = PyBytes_GET_SIZE(self.data)
        pos = self.pos
        limit = pos + H1_MAX_CHUNK_LINE
        end = n if n < limit else limit
        i = self.scan_pos
        q = NULL
        if end > i:
            q = <const unsigned char*>memchr(p + i, LF, <size_t>(end - i))
        if q == NULL:
            self.scan_pos = end
            if end == limit:
                return self._fail(E_CHUNK_LINE_TOO_LONG)  # bounds extension abuse
            return EV_NEED_DATA
        j = q - p
        if j == pos or p[j - 1] != CR:
            return self._fail(E_BAD_CHUNK_LINE)
        le = j - 1
        k = pos
        while k < le:
            h = HEXVAL[p[k]]
            if h == 0xFF:
                break
            if v > (INT64_MAX >> 4):
                return self._fail(E_CHUNK_OVERFLOW)
            v = (v << 4) | h
            k += 1
        if k == pos:
            return self._fail(E_BAD_CHUNK_SIZE)
        if k < le:
            # 7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
            # Extensions are skipped; they must not hide a CTL, bare CR or bare LF.
            while k < le and _ws(p[k]):
                k += 1
            if k == le or p[k] != 59:         # ';'
                return self._fail(E_BAD_CHUNK_SIZE)
            while k < le:
                if not CT[p[k]] & C_FVAL:
                    return self._fail(E_BAD_CHUNK_EXT)
                k += 1
        self.pos = self.scan_pos = self.line_s = j + 1
        if v == 0:
            self.state = ST_TRAILERS          # last-chunk
            self.nlines = 0
        else:
            self.remaining = v
            self.state = ST_CHUNK_DATA
        return EV_AGAIN

    cdef int _chunk_crlf(self) except -1:
        """RFC 9112 7.1: chunk-data is followed by exactly CRLF."""
        cdef const unsigned char* p
        cdef Py_ssize_t n, pos = self.pos
        if self.acc is not None:
            p = <const unsigned char*>PyByteArray_AS_STRING(self.acc)
            n = PyByteArray_GET_SIZE(self.acc)
        else:
            p = <const unsigned char*>PyBytes_AS_STRING(self.data)
            n = PyBytes_GET_SIZE(self.data)
        if pos == n:
            return EV_NEED_DATA
        if p[pos] != CR:
            return self._fail(E_BAD_CHUNK_END)
        if pos + 1 == n:
            return EV_NEED_DATA
        if p[pos + 1] != LF:
            return self._fail(E_BAD_CHUNK_END)
        self.pos = self.scan_pos = self.line_s = pos + 2
        self.state = ST_CHUNK_SIZE
        return EV_AGAIN

    cdef int _trailers(self) except -1:
        """RFC 9112 7.1.2: trailer-section = *( field-line CRLF ) CRLF. Each line is checked
        like a header field line as soon as it is complete; the section is kept raw."""
        cdef const unsigned char* p
        cdef const unsigned char* q
        cdef Py_ssize_t n, pos, i, j, end, limit, line_s, max_head
        cdef Py_ssize_t ne = 0, vs = 0, ve = 0, nxt = 0
        cdef int err, nlines, maxh
        if self.acc is not None:
            p = <const unsigned char*>PyByteArray_AS_STRING(self.acc)
            n = PyByteArray_GET_SIZE(self.acc)
        else:
            p = <const unsigned char*>PyBytes_AS_STRING(self.data)
            n = PyBytes_GET_SIZE(self.data)
        pos = self.pos
        max_head = self.max_head_bytes
        if max_head > MAX_SECTION:
            max_head = MAX_SECTION
        maxh = <int>self.max_headers if self.max_headers < H1_MAX_HEADERS_HARD else H1_MAX_HEADERS_HARD
        limit = pos + max_head
        end = n if n < limit else limit
        i = self.scan_pos
        line_s = self.line_s
        nlines = self.nlines
        while i < end:
            q = <const unsigned char*>memchr(p + i, LF, <size_t>(end - i))
            if q == NULL:
                i = end
                break
            j = q - p
            if j == line_s or p[j - 1] != CR:
                return self._fail(E_BARE_LF)
            if j - 1 == line_s:
                if line_s > pos:
                    self.trailers_raw = PyBytes_FromStringAndSize(<const char*>p + pos, line_s - pos)
                self.pos = self.scan_pos = self.line_s = j + 1
                self.state = ST_MSG_DONE
                return EV_AGAIN
            err = _field_line(p, line_s, j + 1, &ne, &vs, &ve, &nxt)
            if err:
                return self._fail(err)
            nlines += 1
            if nlines > maxh:
                return self._fail(E_TOO_MANY_TRAILERS)
            line_s = i = j + 1
        self.scan_pos = i
        self.line_s = line_s
        self.nlines = nlines
        if end == limit:
            return self._fail(E_TRAILERS_TOO_LARGE)
        return EV_NEED_DATA

    # -- Python view (tests, filters, oracles): built lazily ----------------------------

    @property
    def method(self):
        return self._slice(self.method_s, self.method_e)

    @property
    def target(self):
        return self._slice(self.target_s, self.target_e)

    @property
    def http_version(self):
        if self.version_minor == 1:
            return b"1.1"
        if self.version_minor == 0:
            return b"1.0"
        return EMPTY

    @property
    def status_code(self):
        return self.status

    @property
    def reason(self):
        return self._slice(self.reason_s, self.reason_e)

    @property
    def body_kind(self):
        return self.body_kind

    @property
    def content_length(self):
        return self.content_length if self.body_kind == BODY_LENGTH else None

    @property
    def keep_alive(self):
        return self.keep_alive

    @property
    def expect_continue(self):
        return self.expect_continue

    @property
    def upgrade(self):
        return self.upgrade

    @property
    def trailers(self):
        out = []
        for line in self.trailers_raw.split(b"\r\n"):
            if line:
                name, _, value = line.partition(b":")
                out.append((name, value.strip(b" \t")))
        return out

    def event_slice(self):
        """The bytes of the current EV_BODY."""
        if self.ev_start == 0 and self.ev_end == PyBytes_GET_SIZE(self.data):
            return self.data
        return PyBytes_FromStringAndSize(PyBytes_AS_STRING(self.data) + self.ev_start,
                                         self.ev_end - self.ev_start)


# ---------------------------------------------------------------------------------------------
# Serialisation

cdef bytes chunk_size_line(Py_ssize_t n):
    cdef char buf[24]
    cdef int k = 22
    if n < 0:
        raise ValueError("negative chunk size")
    buf[22] = b'\r'
    buf[23] = b'\n'
    while True:
        k -= 1
        buf[k] = HEXDIGITS[n & 15]
        n >>= 4
        if n == 0:
            break
    return PyBytes_FromStringAndSize(buf + k, 24 - k)


def serialize_head(H1Parser parser not None, bytes first_line, list edits=None):
    """Python access to build_head() (tests): `edits` is a flat [name, value, ...] list."""
    return build_head(parser, first_line, edits if edits is not None else [])


def serialize_chunk_size(Py_ssize_t n):
    """Python access to chunk_size_line()."""
    return chunk_size_line(n)


# Event and framing codes as Python ints (the cdef enums are C-only)
globals().update(
    EV_NEED_DATA=EV_NEED_DATA, EV_HEAD=EV_HEAD, EV_BODY=EV_BODY, EV_END=EV_END,
    EV_ERROR=EV_ERROR, EV_PAUSED=EV_PAUSED,
    BODY_NONE=BODY_NONE, BODY_LENGTH=BODY_LENGTH, BODY_CHUNKED=BODY_CHUNKED,
    BODY_UNTIL_CLOSE=BODY_UNTIL_CLOSE,
)
# header ids and flags are headers.pyx's; re-exported for the codec's Python users (tests)
import engine._fast.headers as _headers
globals().update({name: getattr(_headers, name) for name in dir(_headers)
                  if name.startswith(("H_", "HF_"))})

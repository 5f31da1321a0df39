# cython: language_level=3
"""`HeaderBlock`: one message's header fields as offsets into one buffer, with a well-known id
and flags per field. Protocol-neutral: the HTTP/1.1 parser fills it in place (`H1Parser` is a
HeaderBlock, so parsing allocates nothing per field) and the HPACK decoder will fill the same
arrays, so routing, limits, filters and the forwarded headers read one structure whatever the
client spoke.

Theory of operation
-------------------
* Nothing here parses: a decoder writes `head`, the offsets, `hdr_id` (see `header_id`) and
  `hdr_flags` (HF_HOP for hop-by-hop fields, which no encoder ever forwards).
* The exchange edits a request or response without copying it: it sets HF_DROP on the fields it
  removes or replaces, and hands an encoder a flat list of (name, value) pairs to add. The
  HTTP/1.1 encoder is `build_head`; the HPACK encoder will take the same two inputs.
* Field names compare ASCII case-insensitively (RFC 9110 5.1).
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy

cdef bytes EMPTY = b""


cdef inline unsigned char _lower(unsigned char c) noexcept nogil:
    return c + 32 if c >= 65 and c <= 90 else c


cdef inline bint _ieq(const unsigned char* s, const char* lit, Py_ssize_t n) noexcept nogil:
    """s[:n] equals the lowercase literal `lit`, ASCII case-insensitively."""
    cdef Py_ssize_t i
    for i in range(n):
        if _lower(s[i]) != <unsigned char>lit[i]:
            return False
    return True


cdef inline bint _ieq2(const unsigned char* a, const unsigned char* b, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if _lower(a[i]) != _lower(b[i]):
            return False
    return True


cdef uint8_t header_id(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    """Well-known header id of the field name s[:n]: dispatch on length, then compare."""
    if n == 4:
        if _ieq(s, b"host", 4): return H_HOST
    elif n == 14:
        if _ieq(s, b"content-length", 14): return H_CONTENT_LENGTH
        if _ieq(s, b"http2-settings", 14): return H_HTTP2_SETTINGS
    elif n == 10:
        if _ieq(s, b"connection", 10): return H_CONNECTION
        if _ieq(s, b"keep-alive", 10): return H_KEEP_ALIVE
    elif n == 17:
        if _ieq(s, b"transfer-encoding", 17): return H_TRANSFER_ENCODING
        if _ieq(s, b"x-forwarded-proto", 17): return H_X_FORWARDED_PROTO
    elif n == 6:
        if _ieq(s, b"cookie", 6): return H_COOKIE
        if _ieq(s, b"expect", 6): return H_EXPECT
    elif n == 7:
        if _ieq(s, b"upgrade", 7): return H_UPGRADE
        if _ieq(s, b"trailer", 7): return H_TRAILER
    elif n == 2:
        if _ieq(s, b"te", 2): return H_TE
    elif n == 15:
        if _ieq(s, b"x-forwarded-for", 15): return H_X_FORWARDED_FOR
    elif n == 16:
        if _ieq(s, b"x-forwarded-host", 16): return H_X_FORWARDED_HOST
        if _ieq(s, b"proxy-connection", 16): return H_PROXY_CONNECTION
    elif n == 12:
        if _ieq(s, b"x-request-id", 12): return H_X_REQUEST_ID
    elif n == 23:
        if _ieq(s, b"x-forwarded-client-cert", 23): return H_X_FORWARDED_CLIENT_CERT
    return H_OTHER


cdef class HeaderBlock:
    """Header fields as offsets into `head`. Subclassed by codecs (H1Parser) that fill it."""

    def __cinit__(self, *args, **kwargs):
        self.hcap = 0
        self.nheaders = 0
        self.host_index = -1
        self.name_s = NULL
        self._grow(HB_INITIAL_HEADERS)

    def __dealloc__(self):
        free(self.name_s)

    cdef int _grow(self, int need) except -1:
        """Make room for `need` header fields (one block: 4 int32 arrays, then 2 uint8). The
        old offsets are gone afterwards: decoders grow before they fill a head."""
        cdef int cap = self.hcap if self.hcap > 0 else HB_INITIAL_HEADERS
        cdef char* block
        if need <= self.hcap:
            return 0
        while cap < need:
            cap *= 2
        if cap > HB_MAX_HEADERS_HARD:
            cap = HB_MAX_HEADERS_HARD
        block = <char*>malloc(<size_t>cap * (4 * sizeof(int32_t) + 2 * sizeof(uint8_t)))
        if block == NULL:
            raise MemoryError()
        free(self.name_s)
        self.name_s = <int32_t*>block
        self.name_e = self.name_s + cap
        self.value_s = self.name_e + cap
        self.value_e = self.value_s + cap
        self.hdr_id = <uint8_t*>(self.value_e + cap)
        self.hdr_flags = self.hdr_id + cap
        self.hcap = cap
        self.nheaders = 0
        return 0

    cdef int find(self, int hid):
        cdef int i
        for i in range(self.nheaders):
            if self.hdr_id[i] == hid:
                return i
        return -1

    cdef bytes header_value(self, int i):
        return PyBytes_FromStringAndSize(PyBytes_AS_STRING(self.head) + self.value_s[i],
                                         self.value_e[i] - self.value_s[i])

    cdef bint name_is(self, int i, bytes lower) noexcept:
        cdef Py_ssize_t n = PyBytes_GET_SIZE(lower)
        if self.name_e[i] - self.name_s[i] != n:
            return False
        return _ieq(<const unsigned char*>PyBytes_AS_STRING(self.head) + self.name_s[i],
                    PyBytes_AS_STRING(lower), n)

    cpdef object get(self, bytes lower_name):
        """First value of the header called `lower_name` (compared case-insensitively), or
        None."""
        cdef int i
        cdef Py_ssize_t ln
        cdef const unsigned char* h
        cdef const unsigned char* name
        if lower_name is None or self.nheaders == 0:
            return None
        ln = PyBytes_GET_SIZE(lower_name)
        h = <const unsigned char*>PyBytes_AS_STRING(self.head)
        name = <const unsigned char*>PyBytes_AS_STRING(lower_name)
        for i in range(self.nheaders):
            if (self.name_e[i] - self.name_s[i] == ln
                    and _ieq2(h + self.name_s[i], name, ln)):
                return self.header_value(i)
        return None

    cpdef int drop(self, bytes lower_name):
        """Set HF_DROP on every header called `lower_name`; returns how many."""
        cdef int i, c = 0
        for i in range(self.nheaders):
            if self.name_is(i, lower_name):
                self.hdr_flags[i] |= HF_DROP
                c += 1
        return c

    cdef HeaderBlock copy(self):
        """A plain HeaderBlock with this one's fields, ids and flags, for a request that
        outlives its codec's block (a mirror's shadow copy, mirror.pyx: an HTTP/1.1 connection
        refills its block with the next request). `head` is shared, not copied: bytes never
        change, and a decoder that moves on assigns a new object."""
        cdef HeaderBlock c = HeaderBlock()
        cdef int n = self.nheaders
        c._grow(n)
        if n > 0:
            memcpy(c.name_s, self.name_s, n * sizeof(int32_t))
            memcpy(c.name_e, self.name_e, n * sizeof(int32_t))
            memcpy(c.value_s, self.value_s, n * sizeof(int32_t))
            memcpy(c.value_e, self.value_e, n * sizeof(int32_t))
            memcpy(c.hdr_id, self.hdr_id, n * sizeof(uint8_t))
            memcpy(c.hdr_flags, self.hdr_flags, n * sizeof(uint8_t))
        c.nheaders = n
        c.head = self.head
        c.host_index = self.host_index
        return c

    def copy_block(self):
        """copy() for Python callers (tests)."""
        return self.copy()

    def drop_header(self, bytes lower_name):
        """drop() for Python callers (tests)."""
        return self.drop(lower_name)

    cdef bytes _slice(self, Py_ssize_t s, Py_ssize_t e):
        if self.head is None:
            return EMPTY
        return PyBytes_FromStringAndSize(PyBytes_AS_STRING(self.head) + s, e - s)

    @property
    def headers(self):
        """[(name, value)] as received, in order (filters, tests): built on each access."""
        cdef int i
        return [(self._slice(self.name_s[i], self.name_e[i]),
                 self._slice(self.value_s[i], self.value_e[i])) for i in range(self.nheaders)]

    @property
    def header_flags(self):
        """[(hdr_id, flags)] per header, in order (tests, debugging)."""
        cdef int i
        return [(self.hdr_id[i], self.hdr_flags[i]) for i in range(self.nheaders)]


cdef bytes build_head(HeaderBlock p, bytes first_line, list edits):
    """first_line, the kept headers of p as "Name: value\\r\\n", each edit pair, CRLF.
    One allocation (size computed first), one pass of memcpy."""
    cdef Py_ssize_t total, i, ln, lv, nx
    cdef int nh = p.nheaders
    cdef const char* h = NULL
    cdef char* out
    cdef bytes res, n, v
    if first_line is None:
        raise TypeError("first_line must be bytes")
    nx = len(edits) if edits is not None else 0
    if nx & 1:
        raise ValueError("edits must be name, value pairs")
    total = PyBytes_GET_SIZE(first_line) + 2
    for i in range(nh):
        if not p.hdr_flags[i] & (HF_HOP | HF_DROP | HF_PSEUDO):
            total += (p.name_e[i] - p.name_s[i]) + (p.value_e[i] - p.value_s[i]) + 4
    for i in range(nx):
        total += PyBytes_GET_SIZE(<bytes?>edits[i]) + 2
    res = PyBytes_FromStringAndSize(NULL, total)
    out = PyBytes_AS_STRING(res)
    ln = PyBytes_GET_SIZE(first_line)
    memcpy(out, PyBytes_AS_STRING(first_line), ln)
    out += ln
    if nh:
        h = PyBytes_AS_STRING(p.head)
    for i in range(nh):
        if p.hdr_flags[i] & (HF_HOP | HF_DROP | HF_PSEUDO):
            continue
        ln = p.name_e[i] - p.name_s[i]
        lv = p.value_e[i] - p.value_s[i]
        memcpy(out, h + p.name_s[i], ln)
        out += ln
        out[0] = b':'
        out[1] = b' '
        out += 2
        memcpy(out, h + p.value_s[i], lv)
        out += lv
        out[0] = b'\r'
        out[1] = b'\n'
        out += 2
    i = 0
    while i < nx:
        n = <bytes>edits[i]
        v = <bytes>edits[i + 1]
        ln = PyBytes_GET_SIZE(n)
        memcpy(out, PyBytes_AS_STRING(n), ln)
        out += ln
        out[0] = b':'
        out[1] = b' '
        out += 2
        lv = PyBytes_GET_SIZE(v)
        memcpy(out, PyBytes_AS_STRING(v), lv)
        out += lv
        out[0] = b'\r'
        out[1] = b'\n'
        out += 2
        i += 2
    out[0] = b'\r'
    out[1] = b'\n'
    return res


# ids and flags as Python ints (the cdef enums are C-only)
globals().update(
    HF_HOP=HF_HOP, HF_DROP=HF_DROP, HF_NEVER_INDEXED=HF_NEVER_INDEXED, HF_PSEUDO=HF_PSEUDO,
    H_OTHER=H_OTHER, H_HOST=H_HOST, H_CONTENT_LENGTH=H_CONTENT_LENGTH,
    H_TRANSFER_ENCODING=H_TRANSFER_ENCODING, H_CONNECTION=H_CONNECTION,
    H_KEEP_ALIVE=H_KEEP_ALIVE, H_UPGRADE=H_UPGRADE, H_TE=H_TE, H_TRAILER=H_TRAILER,
    H_PROXY_CONNECTION=H_PROXY_CONNECTION, H_EXPECT=H_EXPECT,
    H_X_FORWARDED_FOR=H_X_FORWARDED_FOR, H_X_FORWARDED_PROTO=H_X_FORWARDED_PROTO,
    H_X_FORWARDED_HOST=H_X_FORWARDED_HOST, H_X_REQUEST_ID=H_X_REQUEST_ID, H_COOKIE=H_COOKIE,
    H_HTTP2_SETTINGS=H_HTTP2_SETTINGS, H_X_FORWARDED_CLIENT_CERT=H_X_FORWARDED_CLIENT_CERT,
)


def build_head_py(HeaderBlock h, bytes first_line, list edits=None):
    """build_head for tests and the bench."""
    return build_head(h, first_line, edits if edits is not None else [])

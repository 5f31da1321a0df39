# The protocol-neutral header list (see headers.pyx). The HTTP/1.1 parser fills one in place
# (H1Parser is a HeaderBlock); the HPACK decoder will fill the same arrays. Encoders take a
# HeaderBlock plus edits: a flat list [name, value, name, value, ...] of bytes.

cimport cython
from libc.stdint cimport uint8_t, int32_t

cdef enum:
    HB_MAX_HEADERS_HARD = 256      # hard ceiling of the arrays; a codec's max_headers is <= this
    HB_INITIAL_HEADERS = 16        # slots a new block starts with (grown on demand)

# Well-known header ids, set per header by the decoder (hdr_id[i])
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
    H_X_FORWARDED_CLIENT_CERT = 17

# Per-header flags (hdr_flags[i])
cdef enum:
    HF_HOP = 1     # hop-by-hop: Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
                   # Transfer-Encoding, Upgrade, and every header named in Connection
    HF_DROP = 2    # an encoder leaves it out (the exchange removed or replaced it)
    HF_NEVER_INDEXED = 4   # HPACK: arrived "never indexed" (RFC 7541 6.2.3); re-encoded the same way
    HF_PSEUDO = 8  # an HTTP/2 pseudo-header (":method"...): the codec hands them over as method,
                   # target and authority, so no encoder writes one as a field


cdef class HeaderBlock:
    # every offset points into `head` (for HTTP/1.1: the head as received)
    cdef bytes head
    cdef int nheaders
    # Per-header arrays, hcap entries each, in one malloc'd block that starts small and grows
    # (up to HB_MAX_HEADERS_HARD) when a head has more fields: an idle keep-alive connection
    # must not carry 4.6 KB of offsets for the 256 headers it will never send.
    cdef int hcap
    cdef int32_t* name_s
    cdef int32_t* name_e
    cdef int32_t* value_s                     # value with leading/trailing OWS removed
    cdef int32_t* value_e
    cdef uint8_t* hdr_id
    cdef uint8_t* hdr_flags
    cdef int host_index                       # index of the Host header, -1 if absent

    cdef int _grow(self, int need) except -1
    cdef int find(self, int hid)               # index of the first header with this id, or -1
    cdef bytes header_value(self, int i)       # value of header i as bytes
    cdef bint name_is(self, int i, bytes lower) noexcept   # header i is called `lower`
    cpdef object get(self, bytes lower_name)   # first value of a header, or None (router, filters)
    cpdef int drop(self, bytes lower_name)     # HF_DROP on every header called lower_name
    cdef bytes _slice(self, Py_ssize_t s, Py_ssize_t e)
    cdef HeaderBlock copy(self)                # a plain HeaderBlock with the same fields and flags

cdef uint8_t header_id(const unsigned char* s, Py_ssize_t n) noexcept nogil

# Serialise a (possibly rewritten) HTTP/1.1 head: first_line (e.g. b"GET /x HTTP/1.1\r\n"), then
# every header of `h` whose flags have none of HF_HOP, HF_DROP, HF_PSEUDO, raw as received
# ("Name: value\r\n"), then each (name, value) of the flat `edits` list as "name: value\r\n",
# then the final CRLF. One allocation, one pass.
cdef bytes build_head(HeaderBlock h, bytes first_line, list edits)

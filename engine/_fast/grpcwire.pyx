# cython: language_level=3
"""gRPC's rules at the proxy: what makes a request gRPC or gRPC-Web, its grpc-timeout, the
"trailers-only" form of a local answer, and gRPC-Web (grpc/grpc PROTOCOL-WEB.md) translated to
gRPC for browser clients. The exchange (exchange.pyx) calls these; nothing here knows a socket
or a codec.

Local answers
-------------
A gRPC client reads the outcome of a call from grpc-status, not from the HTTP status, so every
answer the proxy gives a gRPC call itself (no route, rate limited, upstream down, timeout) is a
trailers-only response: HTTP 200, content-type as requested, grpc-status from the error table
(or mapped from the HTTP status of a filter's reply, grpc/doc/http-grpc-status-mapping.md) and
grpc-message percent-encoded, no body.

gRPC-Web
--------
A browser cannot read HTTP trailers, and a `-text` client cannot even send binary, so gRPC-Web
changes two things and keeps the rest of gRPC (the 5-byte length-prefixed messages, the
metadata as headers, grpc-status/grpc-message):

* trailers travel as one more message at the end of the body, whose flag byte has the high
  bit set (0x80) and whose payload is the trailer fields as HTTP/1.1 header lines;
* `application/grpc-web-text` bodies are base64, both ways.

Requests go upstream as `application/grpc` (with the client's `+proto`/`+json` suffix) with
`te: trailers`; responses come back with the client's content type, the trailers as that final
message, and no content-length (the body grows). A trailers-only response (grpc-status in the
head, no body) passes as it is: gRPC-Web clients read the status from the head too.

Base64 in a stream: a text request may arrive cut anywhere, and may be several base64 texts
one after the other, each with its own padding (clients encode message by message): it is
decoded in whole 4-character groups, the rest carried to the next chunk. Responses are encoded
in whole 3-byte groups, the rest carried, and padded once at the end.
"""

import binascii

from cpython.bytes cimport PyBytes_GET_SIZE

globals().update(G_NONE=G_NONE, G_PLAIN=G_PLAIN, G_WEB_BINARY=G_WEB_BINARY,
                 G_WEB_TEXT=G_WEB_TEXT)

cdef bytes CT_GRPC = b"application/grpc"
cdef bytes CT_WEB = b"application/grpc-web"
cdef bytes CT_WEB_TEXT = b"application/grpc-web-text"

# HTTP status of a reply that is not from the error table -> gRPC status
cdef dict GRPC_OF_HTTP = {400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14}
cdef int GRPC_UNKNOWN = 2

# grpc-timeout units (gRPC over HTTP/2: "TimeoutValue TimeoutUnit", at most 8 digits)
cdef dict UNITS = {ord("H"): 3600.0, ord("M"): 60.0, ord("S"): 1.0, ord("m"): 1e-3,
                   ord("u"): 1e-6, ord("n"): 1e-9}


cpdef int grpc_kind(bytes content_type):
    """G_PLAIN, G_WEB_BINARY, G_WEB_TEXT or G_NONE (not gRPC) for a request content-type."""
    if content_type is None or not content_type.lower().startswith(CT_GRPC):
        return G_NONE
    ct = content_type.lower()
    if ct.startswith(CT_WEB_TEXT):
        return G_WEB_TEXT
    if ct.startswith(CT_WEB):
        return G_WEB_BINARY
    return G_PLAIN


cpdef double timeout_of(bytes v):
    """Seconds of a grpc-timeout value, or 0 when absent or malformed (ignored, as gRPC does)."""
    if v is None or PyBytes_GET_SIZE(v) < 2 or PyBytes_GET_SIZE(v) > 9:
        return 0
    cdef Py_ssize_t n = PyBytes_GET_SIZE(v)
    digits = v[:n - 1]
    if not digits.isdigit():
        return 0
    unit = UNITS.get(v[n - 1])
    if unit is None:
        return 0
    return int(digits) * <double>unit


cpdef int status_of_http(int status):
    return GRPC_OF_HTTP.get(status, GRPC_UNKNOWN)


cpdef bytes message(bytes text):
    """grpc-message is percent-encoded UTF-8 (gRPC over HTTP/2, "Responses")."""
    out = bytearray()
    for c in text.rstrip(b"\n"):
        if 0x20 <= c <= 0x7e and c != 0x25:
            out.append(c)
        else:
            out += b"%%%02X" % c
    return bytes(out)


cpdef bytes response_content_type(bytes request_type):
    """What a call is answered with: gRPC as `application/grpc` with the request's suffix,
    gRPC-Web with the request's own type (PROTOCOL-WEB.md)."""
    if request_type is None:
        return CT_GRPC
    return request_type.lower()


cpdef bytes upstream_content_type(bytes content_type):
    """application/grpc-web[-text][+proto] -> application/grpc[+proto]."""
    ct = content_type.lower()
    cdef Py_ssize_t plus = ct.find(b"+")
    return b"application/grpc" + (ct[plus:] if plus >= 0 else b"")


cpdef bytes trailer_message(list pairs):
    """The trailers as gRPC-Web's final message: flag 0x80, length, "name:value\\r\\n" lines
    (lowercase names, as the spec's examples and grpc-web's parser expect)."""
    cdef list lines = []
    cdef Py_ssize_t i
    for i in range(0, len(pairs), 2):
        lines.append((<bytes>pairs[i]).lower() + b":" + <bytes>pairs[i + 1] + b"\r\n")
    payload = b"".join(lines)
    return b"\x80" + len(payload).to_bytes(4, "big") + payload


cpdef list trailer_pairs(bytes lines):
    """Raw HTTP/1.1 trailer lines -> [name, value, ...] (the exchange's trailer form)."""
    cdef list out = []
    if not lines:
        return out
    for line in lines.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep and name.strip():
            out.append(name.strip().lower())
            out.append(value.strip())
    return out


cdef class TextDecoder:
    """Streamed base64 for a -text request body (see the module docstring)."""

    def __cinit__(self):
        self.carry = b""

    cpdef bytes feed(self, bytes chunk):
        """Decoded bytes of the whole 4-character groups so far; binascii.Error on bad input."""
        cdef bytes data = self.carry + chunk.replace(b"\r", b"").replace(b"\n", b"")
        cdef Py_ssize_t n = len(data) - len(data) % 4
        cdef list out = []
        cdef Py_ssize_t start = 0, i
        self.carry = data[n:]
        if n == 0:
            return b""
        # several padded texts back to back: decode each up to the group holding its padding
        i = data.find(b"=", 0, n)
        while i >= 0:
            end = i - i % 4 + 4
            out.append(binascii.a2b_base64(data[start:end], strict_mode=True))
            start = end
            i = data.find(b"=", start, n)
        if start < n:
            out.append(binascii.a2b_base64(data[start:n], strict_mode=True))
        return b"".join(out)

    cpdef bint clean_end(self):
        """The body ended on a group boundary (anything else is a truncated request)."""
        return not self.carry


cdef class TextEncoder:
    """Streamed base64 for a -text response body: whole 3-byte groups, the end padded."""

    def __cinit__(self):
        self.carry = b""

    cpdef bytes feed(self, bytes chunk):
        cdef bytes data = self.carry + chunk
        cdef Py_ssize_t n = len(data) - len(data) % 3
        self.carry = data[n:]
        return binascii.b2a_base64(data[:n], newline=False) if n else b""

    cpdef bytes finish(self):
        cdef bytes rest = self.carry
        self.carry = b""
        return binascii.b2a_base64(rest, newline=False) if rest else b""

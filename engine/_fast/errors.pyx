# cython: language_level=3
"""The one error table: what the proxy answers when it answers itself.

Theory of operation
-------------------
An `ErrorKind` names why an exchange ended without an upstream response. Its row says what each
protocol makes of it: the HTTP status and body of the local reply (Envoy's mapping: 404 no route,
429 rate limited, 503 no healthy upstream / overflow, 502 connect failure or a broken response,
504 route timeout), whether an HTTP/1.1 connection must close after it (the rest of the request
was not read, or cannot be trusted), and the columns HTTP/2 and gRPC need: the RST_STREAM code
when a response had already started (RFC 9113 section 7) and the gRPC status of a trailers-only
reply (the mapping gRPC's own HTTP-to-gRPC table and Envoy use: 14 UNAVAILABLE for an upstream
that cannot be reached, 4 DEADLINE_EXCEEDED, 8 RESOURCE_EXHAUSTED, 12 UNIMPLEMENTED for no route).
Codecs never choose a status themselves: they ask `error_row(kind)`, so the three protocols
cannot disagree on what one failure means.
"""

from cpython.bytes cimport PyBytes_FromString

# RFC 9113 section 7 error codes
cdef enum:
    H2_NO_ERROR = 0x0
    H2_PROTOCOL_ERROR = 0x1
    H2_INTERNAL_ERROR = 0x2
    H2_REFUSED_STREAM = 0x7
    H2_CANCEL = 0x8

# gRPC status codes (grpc/doc/statuscodes.md)
cdef enum:
    GRPC_CANCELLED = 1
    GRPC_INVALID_ARGUMENT = 3
    GRPC_DEADLINE_EXCEEDED = 4
    GRPC_PERMISSION_DENIED = 7
    GRPC_RESOURCE_EXHAUSTED = 8
    GRPC_UNIMPLEMENTED = 12
    GRPC_INTERNAL = 13
    GRPC_UNAVAILABLE = 14

cdef ErrorRow ROWS[E_COUNT]

cdef void _row(int kind, int status, const char* body, int rst, int grpc, bint close,
               bint overloaded=False) noexcept:
    ROWS[kind].overloaded = overloaded
    ROWS[kind].status = status
    ROWS[kind].body = body
    ROWS[kind].h2_rst = rst
    ROWS[kind].grpc_status = grpc
    ROWS[kind].close = close

#    kind                   status  body                                  RST after start     gRPC status              close
_row(E_NONE,                   200, b"",                                  H2_NO_ERROR,        0,                       False)
_row(E_BAD_REQUEST,            400, b"bad request\n",                     H2_PROTOCOL_ERROR,  GRPC_INTERNAL,           True)
_row(E_BAD_TARGET,             400, b"bad request-target\n",              H2_PROTOCOL_ERROR,  GRPC_INTERNAL,           True)
_row(E_BAD_HOST,               400, b"bad host\n",                        H2_PROTOCOL_ERROR,  GRPC_INTERNAL,           True)
_row(E_BAD_PATH,               400, b"bad path\n",                        H2_PROTOCOL_ERROR,  GRPC_INTERNAL,           True)
_row(E_CONNECT_METHOD,         501, b"CONNECT is not supported\n",        H2_REFUSED_STREAM,  GRPC_UNIMPLEMENTED,      True)
_row(E_NO_ROUTE,               404, b"no route\n",                        H2_NO_ERROR,        GRPC_UNIMPLEMENTED,      False)
_row(E_RATE_LIMITED,           429, b"rate limited\n",                    H2_NO_ERROR,        GRPC_RESOURCE_EXHAUSTED, False)
_row(E_FILTER_ERROR,           500, b"filter error\n",                    H2_INTERNAL_ERROR,  GRPC_INTERNAL,           False)
_row(E_NO_HEALTHY_UPSTREAM,    503, b"no healthy upstream\n",             H2_NO_ERROR,        GRPC_UNAVAILABLE,        False)
_row(E_POOL_OVERFLOW,          503, b"upstream connection pool overflow\n", H2_NO_ERROR,      GRPC_UNAVAILABLE,        False, True)
_row(E_NO_FDS,                 503, b"proxy out of file descriptors\n",   H2_NO_ERROR,        GRPC_UNAVAILABLE,        False)
_row(E_CONNECT_FAILED,         502, b"upstream connect error\n",          H2_NO_ERROR,        GRPC_UNAVAILABLE,        False)
_row(E_UPSTREAM_RESET,         502, b"upstream connection broke before a response\n", H2_INTERNAL_ERROR, GRPC_UNAVAILABLE, False)
_row(E_UPSTREAM_TIMEOUT,       504, b"upstream request timeout\n",        H2_CANCEL,          GRPC_DEADLINE_EXCEEDED,  False)
_row(E_HEADER_TIMEOUT,         408, b"request header timeout\n",          H2_CANCEL,          GRPC_DEADLINE_EXCEEDED,  True)
_row(E_BODY_TIMEOUT,           408, b"request body timeout\n",            H2_CANCEL,          GRPC_DEADLINE_EXCEEDED,  True)
_row(E_CLIENT_CLOSED,          499, b"",                                  H2_CANCEL,          GRPC_CANCELLED,          True)
_row(E_BAD_RESPONSE,           502, b"upstream sent a malformed response\n", H2_INTERNAL_ERROR, GRPC_UNAVAILABLE,      False)
_row(E_OVERLOADED,             503, b"proxy overloaded\n",                H2_NO_ERROR,        GRPC_UNAVAILABLE,        False, True)
_row(E_CIRCUIT_OPEN,           503, b"upstream overflow (circuit breaker)\n", H2_NO_ERROR,    GRPC_UNAVAILABLE,        False, True)
_row(E_FAULT_ABORT,            503, b"fault filter abort\n",              H2_NO_ERROR,        GRPC_UNAVAILABLE,        False)


cdef const ErrorRow* error_row(int kind) noexcept nogil:
    if kind < 0 or kind >= E_COUNT:
        kind = E_BAD_REQUEST
    return &ROWS[kind]


cdef bytes error_body(int kind):
    return PyBytes_FromString(error_row(kind).body)


_NAMES = ["none", "bad_request", "bad_target", "bad_host", "bad_path", "connect_method",
          "no_route", "rate_limited", "filter_error", "no_healthy_upstream", "pool_overflow",
          "no_fds", "connect_failed", "upstream_reset", "upstream_timeout", "header_timeout",
          "body_timeout", "client_closed", "bad_response", "overloaded", "circuit_open",
          "fault_abort"]
assert len(_NAMES) == E_COUNT


def error_table():
    """{name: (kind, status, body, h2_rst, grpc_status, close, overloaded)} for tests and
    docs."""
    cdef int k
    return {_NAMES[k]: (k, ROWS[k].status, PyBytes_FromString(ROWS[k].body), ROWS[k].h2_rst,
                        ROWS[k].grpc_status, ROWS[k].close, ROWS[k].overloaded)
            for k in range(<int>E_COUNT)}

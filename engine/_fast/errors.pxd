# The one error table (see errors.pyx): every local reply of the proxy comes from a row.

cdef enum ErrorKind:
    E_NONE = 0
    E_BAD_REQUEST = 1         # malformed request (the codec's status: 400, 413, 414, 431, 501)
    E_BAD_TARGET = 2          # request-target neither origin- nor absolute-form http(s)
    E_BAD_HOST = 3            # Host / authority refused (too long, userinfo, bad characters)
    E_BAD_PATH = 4            # the listener's path normalisation refused the path
    E_CONNECT_METHOD = 5      # CONNECT (no forward-proxy tunnels)
    E_NO_ROUTE = 6
    E_RATE_LIMITED = 7
    E_FILTER_ERROR = 8        # a Python filter raised
    E_NO_HEALTHY_UPSTREAM = 9
    E_POOL_OVERFLOW = 10      # the pool and its waiting list are full
    E_NO_FDS = 11             # the worker is out of file descriptors
    E_CONNECT_FAILED = 12
    E_UPSTREAM_RESET = 13     # the upstream connection broke before a response head
    E_UPSTREAM_TIMEOUT = 14   # the route timeout fell due
    E_HEADER_TIMEOUT = 15     # the client took too long with its head
    E_BODY_TIMEOUT = 16       # ... or with its body
    E_CLIENT_CLOSED = 17      # the client went away (logged 499; nothing is sent)
    E_BAD_RESPONSE = 18       # the upstream's response was malformed
    E_OVERLOADED = 19         # the worker's event loop lags (overload.max_loop_delay): shed
    E_CIRCUIT_OPEN = 20       # the cluster is at circuit_breakers.max_requests
    E_FAULT_ABORT = 21        # fault injection (the route's abort status replaces the row's)
    E_COUNT = 22

ctypedef struct ErrorRow:
    int status                # HTTP status of the local reply
    const char* body          # its text/plain body
    int h2_rst                # RFC 9113 7 error code when the response has started (HTTP/2)
    int grpc_status           # gRPC status of a trailers-only reply (gRPC over HTTP/2)
    bint close                # HTTP/1.1: the connection cannot carry another request
    bint overloaded           # the reply says `x-sluice-overloaded: true` (Envoy's
                              #   x-envoy-overloaded): shed by a limit, not failed upstream

cdef const ErrorRow* error_row(int kind) noexcept nogil
cdef bytes error_body(int kind)

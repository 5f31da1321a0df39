# The immutable bundle a worker serves from (see tables.pyx).

from engine._fast.router cimport Router
from engine._fast.balancer cimport Balancer
from engine._fast.limiter cimport Limiter

cdef enum:
    LIMIT_PER_ROUTE = 0
    LIMIT_PER_CLIENT_IP = 1
    LIMIT_PER_HEADER = 2

    HASH_NONE = 0
    HASH_HEADER = 1
    HASH_CLIENT_IP = 2
    HASH_COOKIE = 3

    XFCC_NONE = 0          # plaintext listener: x-forwarded-client-cert is removed
    XFCC_SANITIZE = 1      # removed, never set (the default)
    XFCC_SANITIZE_SET = 2  # removed, then set to the verified peer's element
    XFCC_FORWARD_ONLY = 3  # passed through as the client sent it

    # routes[].retry.on: what a try may fail with and still be retried (Route.retry_on bits)
    RETRY_CONNECT_FAILURE = 1  # the connection could not be opened (refused, connect timeout)
    RETRY_RESET = 2            # it broke before a response head (reset, close, per-try timeout)
    RETRY_GATEWAY_ERROR = 4    # a 502/503/504 response; also connect failures and resets
    RETRY_5XX = 8              # any 5xx response; also connect failures, resets, refused streams
    RETRY_STATUS = 16          # a status in Route.retry_statuses (retriable-status)
    RETRY_REFUSED_STREAM = 32  # HTTP/2 REFUSED_STREAM (the upstream never processed it)


cdef class Endpoint:
    cdef readonly object pool          # engine._fast.pool.Pool
    cdef readonly int stats_slot       # Stats.endpoint_slot("cluster/host:port"), -1 = none


cdef class Cluster:
    cdef readonly str name
    cdef readonly Balancer balancer
    cdef readonly list endpoints       # [Endpoint]
    cdef readonly int hash_kind
    cdef readonly bytes hash_name      # lowercase header or cookie name
    cdef readonly int stats_slot       # Stats.cluster_slot(name), -1 = not counted
    # outlier_detection (exchange.report_outcome); od False = none
    cdef readonly bint od
    cdef readonly int od_5xx, od_gateway, od_max_percent
    cdef readonly double od_base, od_max_time
    # circuit_breakers, node-wide (every worker's count of this cluster, stats.pyx); always set
    # (Envoy's defaults apply when the config leaves them out)
    cdef readonly long max_requests    # requests in flight to the cluster
    cdef readonly long max_retries     # retries in flight (when there is no retry budget)
    # retry_budget: retries in flight at most max(budget_min, budget_percent% of the requests in
    # flight); replaces max_retries. budget_percent < 0: none
    cdef readonly double budget_percent
    cdef readonly long budget_min


cdef class Route:
    cdef readonly str name
    cdef readonly int index
    cdef readonly bint direct
    cdef readonly int direct_status    # direct_response as protocol-neutral data: status,
    cdef readonly list direct_headers  # [name, value, ...] (lowercase names),
    cdef readonly bytes direct_body    # and body; each codec caches its wire form below
    cdef public object h1_wire         # the HTTP/1.1 codec's (proxy.pyx), built on first use
    cdef readonly bytes prefix_from    # rewrite.path_prefix: the matched prefix, or None
    cdef readonly bytes prefix_to
    cdef readonly list add_headers     # [name, value, ...] from rewrite.set_headers
    cdef readonly tuple drop_names     # lowercase names removed (set_headers + remove_headers)
    cdef readonly Limiter limiter      # or None
    cdef readonly int limit_per
    cdef readonly bytes limit_header
    cdef readonly double timeout       # seconds; 0 = none
    cdef readonly Balancer split       # over `clusters`; None when there is one
    cdef readonly list clusters        # [Cluster]
    cdef readonly int stats_slot       # Stats.route_slot(name), -1 = counted as "_unrouted"
    cdef readonly tuple req_filters    # Python filters overriding request(), or None
    cdef readonly tuple resp_filters   # Python filters overriding response(), or None
    # retry: retry_attempts = retries after the first try (0: no retry policy)
    cdef readonly int retry_attempts
    cdef readonly int retry_on         # RETRY_* bits
    cdef readonly frozenset retry_statuses   # {int} for RETRY_STATUS
    cdef readonly frozenset retry_methods    # {bytes}: methods that may be retried
    cdef readonly double per_try_timeout     # seconds; 0 = none (the route timeout only)
    cdef readonly double backoff_base        # seconds: full-jitter exponential backoff
    cdef readonly double backoff_max
    # fault injection; fault False = none
    cdef readonly bint fault
    cdef readonly double fault_delay         # seconds (0: no delay)
    cdef readonly double fault_delay_percent # 0..100
    cdef readonly int fault_abort_status     # 0: no abort by HTTP status
    cdef readonly int fault_abort_grpc       # -1: no abort by gRPC status
    cdef readonly double fault_abort_percent # 0..100
    cdef readonly bytes fault_header         # lowercase: only requests carrying it; or None
    # mirror: a copy of percent% of the requests to mirror_cluster, host + "-shadow"; or None
    cdef readonly Cluster mirror_cluster
    cdef readonly double mirror_percent


cdef class Listener:
    cdef readonly str name
    cdef readonly str host
    cdef readonly int port
    cdef readonly Router router
    cdef readonly list routes          # [Route], in the listener's order
    cdef readonly Py_ssize_t max_head_bytes
    cdef readonly Py_ssize_t max_headers
    cdef readonly Py_ssize_t max_uri_bytes
    cdef readonly long max_connections   # client connections per worker; 0 = no limit
    # listener timeouts in seconds, 0 = none (checked by proxy.Worker.sweep_timeouts)
    cdef readonly double header_timeout   # accept or first byte of a head -> its end
    cdef readonly double idle_timeout     # no exchange and no bytes (also a quiet tunnel)
    cdef readonly double body_timeout     # no request body bytes while one is due
    cdef readonly double send_timeout     # the client reads nothing of what we send
    cdef readonly double max_duration     # connection age: close after the exchange in flight
    cdef readonly int stats_slot       # Stats.listener_slot(name), -1 = not counted
    cdef readonly int path_flags       # paths.PATH_* bits for paths.path_normalize()
    cdef readonly bint tls             # TLS terminated here: x-forwarded-proto is https
    cdef readonly int xfcc             # XFCC_*: what happens to x-forwarded-client-cert
    cdef readonly bytes tls_uri        # our certificate's URI SAN (the By= element of XFCC)
    cdef readonly object ssl_context   # the runtime's (create_server); never read per request
    # protocols: which codecs serve the listener's connections
    cdef readonly bint http1           # HTTP/1.1 (and 1.0)
    cdef readonly bint http2           # HTTP/2: ALPN h2 with TLS, h2c prior knowledge without
    # HTTP/2 settings we announce (listeners[].http2)
    cdef readonly int h2_max_streams   # SETTINGS_MAX_CONCURRENT_STREAMS
    cdef readonly int h2_stream_window # SETTINGS_INITIAL_WINDOW_SIZE: per-stream backpressure
    cdef readonly int h2_conn_window   # the connection window (WINDOW_UPDATE on stream 0)


cdef class Tables:
    cdef readonly object version
    cdef readonly dict listeners       # name -> Listener
    cdef readonly dict clusters        # name -> Cluster
    cdef readonly dict pools           # stable pool key -> Pool: idle sweep, drain, reuse on reload
    cdef readonly double max_loop_delay  # overload.max_loop_delay: shed new requests while the
                                       # worker's event loop lags more (seconds); 0 = never

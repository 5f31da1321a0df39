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

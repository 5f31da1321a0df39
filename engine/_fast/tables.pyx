# cython: language_level=3
"""The immutable bundle a worker serves from: listeners -> routes -> clusters -> endpoints.

Theory of operation
-------------------
`engine/policy/link.py` builds one `Tables` per snapshot from primitives; nothing here parses or
validates config (the policy layer owns every error message). Everything a request needs is
resolved at link time: a matched `Route` already points at its limiter, its rewrite program and
its `Cluster` objects, which point at their balancer and endpoint pools. Serving a request never
looks a name up. A worker swaps one reference to a new `Tables` on reload; a connection keeps
the `Listener` it was accepted with until its current request ends, so in-flight requests finish
on the config they started with.
"""

cimport cython

from engine._fast.paths cimport PATH_FLAGS_DEFAULT


@cython.final
cdef class Endpoint:
    def __init__(self, pool, int stats_slot=-1):
        self.pool = pool
        self.stats_slot = stats_slot


@cython.final
cdef class Cluster:
    def __init__(self, str name, Balancer balancer, list endpoints, int hash_kind=HASH_NONE,
                 bytes hash_name=b"", int stats_slot=-1, tuple outlier=None,
                 tuple breakers=(1024, 3), tuple budget=None):
        self.name = name
        self.max_requests, self.max_retries = breakers
        if budget is not None:
            self.budget_percent, self.budget_min = budget
        else:
            self.budget_percent = -1.0
            self.budget_min = 0
        if outlier is not None:
            self.od = True
            (self.od_5xx, self.od_gateway, self.od_base, self.od_max_time,
             self.od_max_percent) = outlier
        self.stats_slot = stats_slot
        self.balancer = balancer
        self.endpoints = endpoints
        self.hash_kind = hash_kind
        self.hash_name = hash_name


@cython.final
cdef class Route:
    def __init__(self, str name, int index, *, bint direct=False, int direct_status=200,
                 list direct_headers=None, bytes direct_body=b"", bytes prefix_from=None,
                 bytes prefix_to=None, list add_headers=None, tuple drop_names=(), Limiter limiter=None,
                 int limit_per=LIMIT_PER_ROUTE, bytes limit_header=b"", double timeout=0.0,
                 Balancer split=None, list clusters=None, tuple req_filters=None,
                 tuple resp_filters=None, int stats_slot=-1, tuple retry=None,
                 tuple fault=None, tuple mirror=None):
        """retry: (attempts, on bits, statuses, methods, per_try_timeout, backoff_base,
        backoff_max); fault: (delay, delay_percent, abort_status, abort_grpc, abort_percent,
        header or None); mirror: (Cluster, percent). None = not configured."""
        self.name = name
        if retry is not None:
            (self.retry_attempts, self.retry_on, statuses, methods, self.per_try_timeout,
             self.backoff_base, self.backoff_max) = retry
            self.retry_statuses = frozenset(statuses)
            self.retry_methods = frozenset(methods)
        else:
            self.retry_statuses = frozenset()
            self.retry_methods = frozenset()
        self.fault_abort_grpc = -1
        if fault is not None:
            self.fault = True
            (self.fault_delay, self.fault_delay_percent, self.fault_abort_status,
             self.fault_abort_grpc, self.fault_abort_percent, self.fault_header) = fault
        if mirror is not None:
            self.mirror_cluster, self.mirror_percent = mirror
        self.stats_slot = stats_slot
        self.index = index
        self.direct = direct
        self.direct_status = direct_status
        self.direct_headers = direct_headers if direct_headers is not None else []
        self.direct_body = direct_body
        self.h1_wire = None
        self.prefix_from = prefix_from
        self.prefix_to = prefix_to
        self.add_headers = add_headers if add_headers is not None else []
        self.drop_names = drop_names
        self.limiter = limiter
        self.limit_per = limit_per
        self.limit_header = limit_header
        self.timeout = timeout
        self.split = split
        self.clusters = clusters if clusters is not None else []
        self.req_filters = req_filters or None      # None, never (): one pointer test per request
        self.resp_filters = resp_filters or None


@cython.final
cdef class Listener:
    def __init__(self, str name, str host, int port, Router router, list routes,
                 Py_ssize_t max_head_bytes=65536, Py_ssize_t max_headers=100,
                 Py_ssize_t max_uri_bytes=8192, long max_connections=0,
                 double header_timeout=10.0, double idle_timeout=60.0,
                 double body_timeout=30.0, double send_timeout=30.0, double max_duration=0.0,
                 int path_flags=PATH_FLAGS_DEFAULT, int stats_slot=-1, bint tls=False,
                 int xfcc=XFCC_NONE, bytes tls_uri=b"", object ssl_context=None,
                 bint http1=True, bint http2=False, int h2_max_streams=128,
                 int h2_stream_window=65535, int h2_conn_window=1048576):
        self.name = name
        self.host = host
        self.port = port
        self.router = router
        self.routes = routes
        self.max_head_bytes = max_head_bytes
        self.max_headers = max_headers
        self.max_uri_bytes = max_uri_bytes
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.body_timeout = body_timeout
        self.send_timeout = send_timeout
        self.max_duration = max_duration
        self.path_flags = path_flags
        self.stats_slot = stats_slot
        self.tls = tls
        self.xfcc = xfcc
        self.tls_uri = tls_uri
        self.ssl_context = ssl_context
        self.http1 = http1
        self.http2 = http2
        self.h2_max_streams = h2_max_streams
        self.h2_stream_window = h2_stream_window
        self.h2_conn_window = h2_conn_window


@cython.final
cdef class Tables:
    def __init__(self, version, dict listeners, dict clusters, dict pools,
                 double max_loop_delay=0.0):
        self.version = version
        self.max_loop_delay = max_loop_delay
        self.listeners = listeners
        self.clusters = clusters
        self.pools = pools

LIMIT_PER = {"route": LIMIT_PER_ROUTE, "client_ip": LIMIT_PER_CLIENT_IP, "header": LIMIT_PER_HEADER}
XFCC = {"sanitize": XFCC_SANITIZE, "sanitize_set": XFCC_SANITIZE_SET,
        "forward_only": XFCC_FORWARD_ONLY}
RETRY_ON = {"connect-failure": RETRY_CONNECT_FAILURE, "reset": RETRY_RESET,
            "gateway-error": RETRY_GATEWAY_ERROR, "5xx": RETRY_5XX,
            "retriable-status": RETRY_STATUS, "refused-stream": RETRY_REFUSED_STREAM}
HASH_ON = {"": HASH_NONE, "header": HASH_HEADER, "client_ip": HASH_CLIENT_IP, "cookie": HASH_COOKIE}

# The shared-memory counters' contract for other compiled modules (proxy). See stats.pyx for the
# theory of operation. Every cdef method here is a handful of plain 64-bit loads and stores into
# the calling worker's own region: no Python objects, no locks, no exceptions, no clock reads.

cimport cython
from libc.stdint cimport int64_t


cdef enum:
    ST_GAUGE_CONNECTIONS = 0      # open downstream (client) connections of the worker
    ST_GAUGE_REQUESTS = 1         # exchanges in flight in the worker
    ST_GAUGE_LOOP_LAG_US = 2      # the event loop's recent peak lag (overload.py), microseconds
    ST_NGAUGES = 4                # gauges per worker (1 spare)

    # Per-worker event counters, summed over workers (EVENT_NAMES in stats.pyx)
    ST_EV_UPSTREAM_EXTRA_DATA = 0 # a response was followed by bytes nobody asked for
    ST_EV_ACCEPT_FAILED = 1       # accept() failed (out of file descriptors)
    ST_EV_TIMEOUT_HEADER = 2      # a client did not finish a request head in time
    ST_EV_TIMEOUT_BODY = 3        # a request body stalled
    ST_EV_TIMEOUT_SEND = 4        # a client stopped reading its response
    ST_EV_TIMEOUT_IDLE = 5        # an idle keep-alive connection was closed
    ST_EV_CONNECTION_LIMIT = 6    # a connection was refused at limits.max_connections
    ST_EV_TLS_HANDSHAKE_FAILED = 7  # a client's TLS handshake failed (engine/policy/tls_server.py)
    ST_EV_OVERLOAD_SHED = 8       # a request got 503 because the worker's event loop lagged
    ST_NEVENTS = 9

    # Per-cluster event counters (CLUSTER_EVENT_NAMES in stats.pyx); retries by the reason the
    # try failed, in the order of RETRY_REASONS
    ST_CE_RETRY_CONNECT_FAILURE = 0
    ST_CE_RETRY_RESET = 1
    ST_CE_RETRY_PER_TRY_TIMEOUT = 2
    ST_CE_RETRY_REFUSED_STREAM = 3
    ST_CE_RETRY_GATEWAY_ERROR = 4 # a 502/503/504 response
    ST_CE_RETRY_5XX = 5           # another 5xx response
    ST_CE_RETRY_STATUS = 6        # a retriable_statuses response
    ST_CE_RETRY_OVERFLOW = 7      # a retry not made: max_retries or the retry budget
    ST_CE_RETRY_SUCCESS = 8       # a retried request that got a response at last
    ST_CE_OVERFLOW_REQUESTS = 9   # 503: circuit_breakers.max_requests
    ST_CE_OVERFLOW_PENDING = 10   # 503: the pool and its waiting list are full
    ST_CE_MIRROR_SENT = 11        # a mirror copy started (routes[].mirror; counted on the shadow)
    ST_CE_MIRROR_FAILED = 12      # ... that failed or was dropped
    ST_CE_PER_TRY_TIMEOUT = 13    # per_try_timeout fired (retried or not)
    ST_CE_COUNT = 16
    ST_NBOUNDS = 14               # finite histogram bucket bounds (seconds); one +Inf bucket more
    ST_NBUCKETS = 15
    ST_NCLASSES = 6               # status classes: 0 = outside 100..599, then 1xx..5xx
    ST_VERSION_BYTES = 64         # a worker's snapshot version field
    ST_NAME_BYTES = 128           # longest registered name (the config's NAME_MAX)
    ST_MAX_LISTENERS = 64         # listener name slots (open connections are counted per listener)

    # HTTP/2, per worker and side (H2_* in stats.pyx name them for Python)
    ST_H2_DOWNSTREAM = 0          # side: connections from clients (the h2 server)
    ST_H2_UPSTREAM = 1            # side: connections to upstreams (the h2 client)
    ST_H2_SIDES = 2
    ST_H2_NCOUNTERS = 19          # http2.pxd's C_COUNT: h2_counts() takes deltas in C_* order
    ST_H2_CODES = 15              # RFC 9113 error codes 0x0..0xd, then one "unknown"
    ST_H2_GAUGE_CONNECTIONS = 0   # open HTTP/2 connections
    ST_H2_GAUGE_STREAMS = 1       # open streams on them
    ST_H2_NGAUGES = 2

    # reserved slots, registered when the table is created
    ST_OTHER = 0                  # "_other": the overflow slot of every name table
    ST_UNROUTED = 1               # route "_unrouted": answered before a route matched (404, 400)


# One table per node, mapped by the supervisor before it forks the workers (anonymous MAP_SHARED).
# Its C layout is private to stats.pyx; other modules go through these methods.
@cython.final
cdef class Stats:
    cdef char* mem                 # the mapping (released in __dealloc__)
    cdef size_t size
    cdef char* workers_base             # st_worker[max_workers]
    cdef char* routes_base              # st_route[max_workers][max_routes]
    cdef char* clusters_base            # st_cluster[max_workers][max_clusters]
    cdef char* endpoints_base           # st_endpoint[max_workers][max_endpoints]
    cdef char* listeners_base           # int64 connections[max_workers][ST_MAX_LISTENERS]
    cdef char* h2_base                  # st_h2side[max_workers][ST_H2_SIDES]
    cdef readonly int max_workers
    cdef readonly int max_routes
    cdef readonly int max_clusters
    cdef readonly int max_endpoints

    # One finished exchange of `worker`: counted by (route, status class), by (cluster, status
    # class) and in the route's latency histogram and byte counters. route_slot < 0 counts under
    # ST_UNROUTED; cluster_slot < 0 (answered locally) skips the cluster counters; a slot out of
    # range counts under ST_OTHER; a worker out of range records nothing.
    cdef void record(self, int worker, int route_slot, int cluster_slot, int status,
                     double seconds, long bytes_in, long bytes_out) noexcept nogil
    # Per-worker gauges (ST_GAUGE_*): set to a value, or move by a delta.
    cdef void set_gauge(self, int worker, int which, long value) noexcept nogil
    cdef void add_gauge(self, int worker, int which, long delta) noexcept nogil
    # Requests in flight to an endpoint (balancer begin/end): active +1 and requests +1 on begin,
    # active -1 on end.
    # A request refused by its route's rate limit (429).
    cdef void route_limited(self, int worker, int route_slot) noexcept nogil
    # A Python filter phase raised on the route.
    cdef void route_filter_failed(self, int worker, int route_slot) noexcept nogil
    # An upstream connection to the endpoint failed to open (reset=False) or broke mid-exchange.
    cdef void endpoint_failed(self, int worker, int endpoint_slot, bint reset) noexcept nogil
    # Open client connections of a listener in `worker`: +1 on accept, -1 on close.
    cdef void listener_connections(self, int worker, int listener_slot, long delta) noexcept nogil
    # One more ST_EV_* event of `worker`.
    cdef void count_event(self, int worker, int which) noexcept nogil
    cdef void endpoint_begin(self, int worker, int endpoint_slot) noexcept nogil
    cdef void endpoint_end(self, int worker, int endpoint_slot) noexcept nogil
    # `now` is the caller's CLOCK_MONOTONIC reading (limiter.monotonic_now()).
    cdef void heartbeat(self, int worker, double now) noexcept nogil

    # Circuit breakers, node-wide: requests (retry=False) or retries (retry=True) in flight to
    # a cluster, +1 / -1 in the worker's own row; cluster_active sums the rows of every worker
    # slot ever attached (a dead worker's rows are zeroed when its slot is released).
    cdef void cluster_begin(self, int worker, int cluster_slot, bint retry) noexcept nogil
    cdef void cluster_end(self, int worker, int cluster_slot, bint retry) noexcept nogil
    cdef long cluster_active(self, int cluster_slot, bint retry) noexcept nogil
    # One more ST_CE_* event of the cluster.
    cdef void cluster_event(self, int worker, int cluster_slot, int which) noexcept nogil
    # One finished exchange counted for a cluster only (a mirror's shadow: no route counts).
    cdef void record_cluster(self, int worker, int cluster_slot, int status) noexcept nogil
    # A fault injected on the route: delayed (abort=False) or aborted.
    cdef void route_fault(self, int worker, int route_slot, bint abort) noexcept nogil

    # HTTP/2 codecs of `worker`, by side (ST_H2_DOWNSTREAM | ST_H2_UPSTREAM; any other side
    # records nothing). h2_counts adds ST_H2_NCOUNTERS deltas in the order of http2.pxd's C_*
    # enum (C_FRAMES_IN .. C_IDS_EXHAUSTED): a codec flushes what its counts() grew by since
    # its last flush; a delta <= 0 is skipped.
    cdef void h2_counts(self, int worker, int side, const int64_t* deltas) noexcept nogil
    # The same from a codec's running totals: adds `totals` - `flushed` (H2Connection.counts
    # and the caller's copy of what it last flushed), then copies `totals` into `flushed`.
    cdef void h2_flush(self, int worker, int side, const int64_t* totals,
                       int64_t* flushed) noexcept nogil
    # One RST_STREAM sent (sent=True) or received, by its error code (outside 0x0..0xd:
    # "unknown"). The codec's C_RESETS_* counts are the same frames, unlabelled.
    cdef void h2_reset(self, int worker, int side, bint sent, int code) noexcept nogil
    # One GOAWAY sent or received, by its error code (like h2_reset).
    cdef void h2_goaway(self, int worker, int side, bint sent, int code) noexcept nogil
    # Open HTTP/2 connections (ST_H2_GAUGE_CONNECTIONS) or streams (ST_H2_GAUGE_STREAMS):
    # move by a delta (+1 on open, -1 on close; zeroed when the worker's slot is attached or
    # released, like the other gauges).
    cdef void h2_gauge(self, int worker, int side, int which, long delta) noexcept nogil

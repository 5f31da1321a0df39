# The upstream connection pool's contract (see pool.pyx).

# what acquire() did
cdef enum:
    LEASE_NOW = 0      # an idle connection is returned
    LEASE_OPEN = 1     # a slot is reserved: the caller opens a connection (connect_failed() if not)
    LEASE_PARKED = 2   # the holder waits; holder.lease_ready() is called when something frees
    LEASE_FULL = 3     # at max_connections with max_pending waiting: refuse (503)

# upstream protocols (Pool.protocol)
cdef enum:
    PROTO_HTTP1 = 1    # exclusive connections, one exchange at a time
    PROTO_HTTP2 = 2    # shared connections, one stream per exchange

cdef class PooledConn:
    cdef object transport
    cdef Pool pool
    cdef int served              # requests completed on this connection
    cdef double idle_since       # loop time when it went idle
    cdef bint in_pool            # currently on the idle stack
    cdef bint dead               # closed or closing: never hand out again
    # HTTP/2 (h2client.pyx): a shared connection, or one stream leased on it
    cdef int active              # connection: streams leased on it now
    cdef int capacity            # connection: streams it may carry (ours and the peer's limit)
    cdef bint draining           # connection: GOAWAY, ids exhausted or pool drain: no new stream
    cdef void close_now(self)
    cdef PooledConn new_stream(self)               # connection: lease one stream (None: no room)
    cdef void end_lease(self, double now) except * # stream: leased and never used, give it back
    cdef void tick(self, double now) except *      # connection: PING liveness (Pool.sweep)


cdef class Pool:
    cdef readonly str host
    cdef readonly int port
    cdef readonly bytes address          # b"host:port", for logs and the X-Forwarded headers
    cdef readonly int max_connections
    cdef readonly int max_requests       # per connection; 0 = unlimited
    cdef readonly double idle_timeout
    cdef readonly double connect_timeout
    cdef list idle                       # LIFO stack of PooledConn
    cdef readonly int total              # open + connecting connections
    cdef readonly int connects           # connections ever opened (tests count reuse with it)
    cdef list waiters                    # FIFO of holders (exchanges) waiting for a free slot
    cdef readonly int max_waiters
    cdef readonly object ssl_context     # ssl.SSLContext for TLS to the endpoint, or None
    cdef readonly str server_hostname    # SNI and the name verified (None: no SNI)
    cdef readonly int protocol           # PROTO_HTTP1 | PROTO_HTTP2 (clusters[].protocol)
    # clusters[].http2: our side of an HTTP/2 upstream connection
    cdef readonly int h2_max_streams     # our cap on streams per connection (and the peer's)
    cdef readonly int h2_stream_window   # SETTINGS_INITIAL_WINDOW_SIZE we announce
    cdef readonly int h2_conn_window
    cdef readonly double h2_ping_interval  # PING an idle connection this often (0: never)
    cdef readonly double h2_ping_timeout   # ... and close it when no ACK comes within this
    cdef list h2conns                    # HTTP/2: connections that said SETTINGS (oldest first)
    cdef readonly int connecting         # HTTP/2: connections opening (counted in total)
    cdef bint h2_failing                 # HTTP/2: the last connect failed (no parking behind one)

    cdef PooledConn acquire(self, object holder, bint fresh, int* how)
    cdef void cancel(self, object holder) except *
    cdef PooledConn take_idle(self)
    cdef bint may_open(self)
    cdef void opened(self)
    cdef void connect_failed(self)
    cdef void release(self, PooledConn c, double now)
    cdef void forget(self, PooledConn c)
    cdef void notify_waiter(self) except *
    cpdef int sweep(self, double now)
    cpdef close_idle(self)
    # HTTP/2 leasing (see pool.pyx)
    cdef PooledConn h2_acquire(self, object holder, bint fresh, int* how)
    cdef PooledConn h2_room(self)
    cdef void h2_ready(self, PooledConn c) except *
    cdef void h2_wake(self) except *

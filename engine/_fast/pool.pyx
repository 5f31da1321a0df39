# cython: language_level=3
"""Upstream connection pool: one `Pool` per (worker, endpoint).

Theory of operation
-------------------
* The pool leases connections to exchanges and is bookkeeping only: it never opens sockets
  itself. `acquire(holder)` hands out the warmest idle connection (LEASE_NOW), or reserves a
  slot for the caller to open one (LEASE_OPEN; `connect_failed()` gives it back), or parks the
  holder in a FIFO of at most `max_waiters` (pool.max_pending) until `release`/`forget` frees
  something (LEASE_PARKED, then `holder.lease_ready()`), or refuses (LEASE_FULL). Parking is
  the slow path (a pool at its limit), so the wake-up is a plain method call. So `total`
  counts open + connecting connections and never exceeds `max_connections`. A pool is keyed by
  endpoint, upstream protocol and TLS settings (link.py): this is the HTTP/1.1 pool, whose
  connections carry one exchange at a time; an HTTP/2 pool leases streams of shared
  connections behind the same acquire/release.
* Idle connections form a LIFO stack: the most recently used socket is the warmest (its peer
  has not timed it out, its TCP window is open) and the ones at the bottom age out together,
  which lets `sweep()` close them in one pass.
* A connection the upstream closed while idle removes itself (`forget`) from `connection_lost`;
  `take_idle()` also skips any connection marked `dead`, so a closed socket is never handed out.
* `release()` retires a connection that reached `max_requests`, otherwise pushes it, then wakes
  one waiter (a request parked because the pool was at `max_connections`).
* `idle_timeout` is enforced by `sweep(now)`, called by the worker once a second for every
  pool; there is no timer per connection (a timer per request would cost an allocation and a
  heap operation on the hot path).
* The clock is passed in (`now`), never read here.
"""

cimport cython

LEASE = {"now": LEASE_NOW, "open": LEASE_OPEN, "parked": LEASE_PARKED, "full": LEASE_FULL}
PROTOCOL = {"http1": PROTO_HTTP1, "http2": PROTO_HTTP2}


cdef class PooledConn:
    """Base of the upstream protocol object (`proxy.Upstream`): the fields the pool needs."""

    def __init__(self, Pool pool=None, transport=None):
        # (proxy.Upstream has its own; this one serves tests that lease fake connections)
        self.pool = pool
        self.transport = transport

    cdef void close_now(self):
        self.dead = True
        if self.transport is not None:
            self.transport.close()


@cython.final
cdef class Pool:
    def __cinit__(self, str host, int port, int max_connections=1024, int max_requests=0,
                  double idle_timeout=60.0, double connect_timeout=1.0, int max_waiters=1024,
                  object ssl_context=None, str server_hostname=None, int protocol=PROTO_HTTP1,
                  int h2_max_streams=100, int h2_stream_window=65535,
                  int h2_conn_window=1048576, double h2_ping_interval=30.0,
                  double h2_ping_timeout=5.0):
        self.host = host
        self.port = port
        self.address = (("[%s]:%d" if ":" in host else "%s:%d") % (host, port)).encode()
        self.max_connections = max_connections if max_connections > 0 else 1
        self.max_requests = max_requests
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.idle = []
        self.waiters = []
        self.total = 0
        self.connects = 0
        self.max_waiters = max_waiters
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.protocol = protocol
        self.h2_max_streams = h2_max_streams
        self.h2_stream_window = h2_stream_window
        self.h2_conn_window = h2_conn_window
        self.h2_ping_interval = h2_ping_interval
        self.h2_ping_timeout = h2_ping_timeout

    cdef PooledConn acquire(self, object holder, bint fresh, int* how):
        """A connection for `holder` (how = LEASE_NOW), or a reserved slot (LEASE_OPEN), or
        `holder` parked (LEASE_PARKED: `holder.lease_ready()` follows), or no (LEASE_FULL).
        `fresh`: a retry, which wants a new connection and never waits."""
        cdef PooledConn c
        if not fresh:
            c = self.take_idle()
            if c is not None:
                how[0] = LEASE_NOW
                return c
        if self.total < self.max_connections:
            self.opened()
            how[0] = LEASE_OPEN
        elif fresh or len(self.waiters) >= self.max_waiters:
            how[0] = LEASE_FULL
        else:
            self.waiters.append(holder)
            how[0] = LEASE_PARKED
        return None

    cdef void cancel(self, object holder) except *:
        """A parked holder no longer waits (its client left, its deadline passed)."""
        try:
            self.waiters.remove(holder)
        except ValueError:
            pass

    cdef PooledConn take_idle(self):
        cdef PooledConn c
        while self.idle:
            c = <PooledConn>self.idle.pop()
            c.in_pool = False
            if not c.dead:
                return c
        return None

    cdef bint may_open(self):
        return self.total < self.max_connections

    cdef void opened(self):
        self.total += 1
        self.connects += 1

    cdef void connect_failed(self):
        self.total -= 1
        self.notify_waiter()

    cdef void release(self, PooledConn c, double now):
        if c.dead:
            return
        if self.max_requests > 0 and c.served >= self.max_requests:
            c.close_now()   # connection_lost will call forget()
            return
        c.idle_since = now
        c.in_pool = True
        self.idle.append(c)
        if self.waiters:
            self.notify_waiter()

    cdef void forget(self, PooledConn c):
        """The connection is gone (closed by either side): free its slot."""
        if c.in_pool:
            c.in_pool = False
            try:
                self.idle.remove(c)
            except ValueError:
                pass
        c.dead = True
        self.total -= 1
        self.notify_waiter()

    cdef void notify_waiter(self) except *:
        if self.waiters:
            self.waiters.pop(0).lease_ready()

    cpdef int sweep(self, double now):
        """Close idle connections older than idle_timeout; returns how many."""
        cdef int closed = 0
        cdef PooledConn c
        if not self.idle:
            return 0
        # The stack is ordered by idle_since (oldest at the bottom): stop at the first young one.
        while self.idle:
            c = <PooledConn>self.idle[0]
            if now - c.idle_since < self.idle_timeout:
                break
            self.idle.pop(0)
            c.in_pool = False
            c.close_now()
            closed += 1
        return closed

    cpdef close_idle(self):
        """Close every idle connection (drain, or the pool's config went away)."""
        cdef PooledConn c
        while self.idle:
            c = <PooledConn>self.idle.pop()
            c.in_pool = False
            c.close_now()

    # -- Python access (tests and tools): the lease protocol on fake connections ---------------

    def lease(self, holder, bint fresh=False):
        """acquire() from Python: (LEASE_* code, connection or None)."""
        cdef int how = LEASE_FULL
        c = self.acquire(holder, fresh, &how)
        return how, c

    def give_back(self, PooledConn c not None, double now):
        self.release(c, now)

    def lost(self, PooledConn c not None):
        self.forget(c)

    def open_failed(self):
        self.connect_failed()

    @property
    def idle_count(self):
        return len(self.idle)

    @property
    def waiting(self):
        return len(self.waiters)

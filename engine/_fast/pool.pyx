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

HTTP/2 (protocol == PROTO_HTTP2)
--------------------------------
The same acquire/release face leases *streams* of a few shared connections (h2client.pyx):
* A connection joins `h2conns` when the peer's first SETTINGS arrived (`h2_ready`): only then
  is its MAX_CONCURRENT_STREAMS known, so its `capacity` is min(that, `h2_max_streams`).
  `acquire` hands out a new stream object (`c.new_stream()`) on the oldest connection with room
  (filling connections in order leaves the newer ones idle, to age out); a connection that got
  GOAWAY or ran out of stream ids is `draining` and gets no new stream.
* None with room: while a connection is opening, a holder parks behind it (up to
  `h2_max_streams` per opening connection) instead of opening one more: a second connection
  for every request of a burst would defeat multiplexing. Otherwise a slot is reserved
  (LEASE_OPEN, `total` counts connections as for HTTP/1.1), or the holder parks, or LEASE_FULL.
  After a failed connect nobody parks behind the next attempt (`h2_failing`): each request
  tries its own, as with HTTP/1.1, instead of waiting for the one before to time out.
* `h2_wake()` runs whenever room may have appeared (a stream ended, a connection became ready,
  a connection or a connect attempt went away, the peer raised its limit): it wakes parked
  holders while a connection has room, or one to open a connection when none is opening.
* `release(stream)` (an exchange that no longer wanted the stream it was granted) gives the
  stream back through `stream.end_lease()`; a stream that was used gives itself back.
* `sweep(now)` closes connections without streams idle past `idle_timeout` and calls
  `c.tick(now)` on the others (PING liveness); `close_idle()` closes the idle ones and marks
  the busy ones draining (they close after their last stream).
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
        """Never to be used again. With bytes still queued for the upstream the connection is
        aborted (reset): a close would wait for them to be written, forever when the upstream
        stopped reading, holding the socket and its buffer meanwhile."""
        self.dead = True
        if self.transport is not None:
            if self.transport.get_write_buffer_size() > 0:
                self.transport.abort()
            else:
                self.transport.close()

    cdef PooledConn new_stream(self):
        return None

    cdef void end_lease(self, double now) except *:
        pass

    cdef void tick(self, double now) except *:
        pass


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
        self.h2conns = []
        self.connecting = 0

    cdef PooledConn acquire(self, object holder, bint fresh, int* how):
        """A connection for `holder` (how = LEASE_NOW), or a reserved slot (LEASE_OPEN), or
        `holder` parked (LEASE_PARKED: `holder.lease_ready()` follows), or no (LEASE_FULL).
        `fresh`: a retry, which wants a new connection and never waits."""
        cdef PooledConn c
        if self.protocol == PROTO_HTTP2:
            return self.h2_acquire(holder, fresh, how)
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
        if self.protocol == PROTO_HTTP2:
            self.connecting -= 1
            self.h2_failing = True
            self.h2_wake()
            return
        self.notify_waiter()

    cdef void release(self, PooledConn c, double now):
        if self.protocol == PROTO_HTTP2:
            c.end_lease(now)      # a stream nobody used: its slot goes back to its connection
            return
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
        if self.protocol == PROTO_HTTP2:
            c.dead = True
            try:
                self.h2conns.remove(c)
            except ValueError:
                return            # (never ready: connect_failed counted it; or forgotten)
            self.total -= 1
            self.h2_wake()
            return
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
        if self.protocol == PROTO_HTTP2:
            for c in list(self.h2conns):
                if c.dead:
                    continue
                if c.active == 0 and now - c.idle_since >= self.idle_timeout:
                    c.close_now()
                    closed += 1
                else:
                    c.tick(now)
            return closed
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
        if self.protocol == PROTO_HTTP2:
            for c in list(self.h2conns):
                c.draining = True          # no new stream: the busy ones close after their last
                if c.active == 0:
                    c.close_now()
            return
        while self.idle:
            c = <PooledConn>self.idle.pop()
            c.in_pool = False
            c.close_now()

    # -- HTTP/2 --------------------------------------------------------------------------------

    cdef PooledConn h2_acquire(self, object holder, bint fresh, int* how):
        cdef PooledConn c, s
        while True:
            c = self.h2_room()
            if c is None:
                break
            s = c.new_stream()
            if s is not None:
                how[0] = LEASE_NOW
                return s
            c.draining = True            # (its codec says no: a GOAWAY or no stream id left)
        # (a retry parks too: waiting for a connect is what it would do on its own one)
        if (not self.h2_failing and self.connecting > 0
                and len(self.waiters) < self.connecting * self.h2_max_streams
                and len(self.waiters) < self.max_waiters):
            self.waiters.append(holder)          # a connection is opening: ride on it
            how[0] = LEASE_PARKED
        elif self.total < self.max_connections:
            self.opened()
            self.connecting += 1
            how[0] = LEASE_OPEN
        elif fresh or len(self.waiters) >= self.max_waiters:
            how[0] = LEASE_FULL
        else:
            self.waiters.append(holder)
            how[0] = LEASE_PARKED
        return None

    cdef PooledConn h2_room(self):
        """The oldest connection that can take one more stream, or None."""
        cdef PooledConn c
        for c in self.h2conns:
            if not c.dead and not c.draining and c.active < c.capacity:
                return c
        return None

    cdef void h2_ready(self, PooledConn c) except *:
        """A connection opened for `acquire`'s LEASE_OPEN got the peer's SETTINGS."""
        self.connecting -= 1
        self.h2_failing = False
        self.h2conns.append(c)

    cdef void h2_wake(self) except *:
        """Wake parked holders while a connection has room; or one, to open a connection, when
        none is opening and the pool may open one. Each woken holder acquires at once (and
        parks again, at the end, if it finds nothing after all)."""
        cdef list woken
        if not self.waiters:
            return
        if self.h2_failing and self.connecting == 0 and self.h2_room() is None:
            # the connect failed: each waiter tries its own (or parks again behind the first)
            woken, self.waiters = self.waiters, []
            for h in woken:
                h.lease_ready()
            return
        while self.waiters:
            if self.h2_room() is None and (self.connecting > 0
                                           or self.total >= self.max_connections):
                break
            self.waiters.pop(0).lease_ready()

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
        if self.protocol == PROTO_HTTP2:
            return sum(1 for c in self.h2conns if (<PooledConn>c).active == 0)
        return len(self.idle)

    @property
    def h2_connections(self):
        return list(self.h2conns)

    @property
    def waiting(self):
        return len(self.waiters)

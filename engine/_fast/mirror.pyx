# cython: language_level=3
"""Request mirroring (`routes[].mirror`): a copy of `percent`% of a route's requests goes to a
shadow cluster, fire and forget, with "-shadow" appended to its host (Envoy's
request_mirror_policies).

Theory of operation
-------------------
A shadow is an ordinary `Exchange` (exchange.pyx) whose client side is a `MirrorSink`: the
pool, the upstream codecs (HTTP/1.1 or HTTP/2, whatever the shadow cluster speaks), the balancer,
outlier detection and the route deadline all work on it as on any exchange, and everything it
would send a client is discarded. Only the way in differs: `start_mirror` builds the shadow from
the primary exchange once the primary knows its target and forwarded headers, and the primary
hands the shadow its request body as it arrives (`mirror_data`, `mirror_end`). Once the shadow
has its whole request it lives on by itself; until then, the primary finishing early (its client
left, its request was refused or timed out, a local error stopped the body) ends the shadow
(`mirror_abort`), which would otherwise wait forever for the rest of its body.

What the shadow must never do to the primary -- the whole point of "fire and forget":
* slow it: the sink never pauses the client. Where a codec would pause the client (the shadow's
  upstream write buffer passed its high-water mark, or body held while it connects passed
  PENDING_BODY_LIMIT), the sink instead counts what it hands the shadow meanwhile, and drops the
  shadow when that passes MIRROR_HELD_LIMIT. A shadow that cannot keep up is dropped, never
  waited for.
* fail it: the shadow's errors end in its own `finish()` and a counter. The primary calls in
  only at the four hooks above; an exception there (a bug) drops the shadow and is logged once
  in a while, it never reaches the primary.
* change its answer: the shadow's response is read (so its upstream connection can be pooled
  again) and dropped; it writes no access log line (`mirror_recorded` replaces the route stats
  and the log line in `Exchange.record()`).
The shadow's head is its own copy (`HeaderBlock.copy()`): an HTTP/1.1 connection refills its
block with the next request while the shadow may still be sending. The copy is taken after the
primary's forwarded-header edits, so the shadow carries the same X-Forwarded-*, X-Request-Id and
filter edits, with only Host (or :authority) changed and Expect dropped (the shadow waits for no
100 Continue: its body comes as the primary's client sends it). Shadows run no filters (their
route is a bare copy of the primary's: name, stats slot, timeout), no retries, no faults.

Deadlines: a shadow is in no client connection, so the worker's sweep (proxy.Worker
.sweep_timeouts over its connections) never sees it. Each worker keeps its shadows in flight in
one `Shadows` registry with one loop timer that checks their deadlines every `tick` (a fifth of
the shortest route timeout seen, 0.01..0.5 s, as the worker's own sweep) while any are in
flight. One timer per worker rather than one per shadow for the worker's reason: arming and
cancelling a loop timer per request costs more than the rest of a small request's policy, and a
route deadline needs no finer grain than the tick.

Sampling draws from the exchange's per-process generator (`exchange.chance`, no Python `random`
per request), which every worker reseeds after fork, so forked workers do not draw in step.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

from engine._fast.errors cimport E_NONE, E_CLIENT_CLOSED, E_CIRCUIT_OPEN, E_NO_HEALTHY_UPSTREAM
from engine._fast.exchange cimport (
    Exchange, Downstream, Services, UpstreamConn, X_IDLE, X_WAITING,
    PAUSE_UPSTREAM, PAUSE_PENDING, chance,
)
from engine._fast.grpcwire cimport G_NONE, G_PLAIN, TextDecoder
from engine._fast.headers cimport HeaderBlock
from engine._fast.limiter cimport monotonic_now
from engine._fast.pool cimport Pool, PROTO_HTTP1
from engine._fast.stats cimport (
    Stats, ST_GAUGE_REQUESTS, ST_CE_MIRROR_SENT, ST_CE_MIRROR_FAILED, ST_CE_OVERFLOW_REQUESTS,
)
from engine._fast.tables cimport Route, Cluster


DEF MIRROR_HELD_LIMIT = 1048576   # body bytes handed to a shadow whose upstream is not keeping up
DEF TICK_MAX = 0.5                # the deadline sweep runs at least this often (seconds)
DEF TICK_MIN = 0.01
DEF ROUTES_MAX = 256              # shadow routes cached per worker (old snapshots' fall out)

cdef bytes N_HOST = b"host"
cdef bytes N_EXPECT = b"expect"
cdef bytes SHADOW = b"-shadow"


# --- counters ---------------------------------------------------------------------------------
# sluice_mirror_requests_total{cluster, result}: per shadow cluster, in the shared-memory stats.

cdef inline void count(Services svc, Cluster c, int which) noexcept:
    """ST_CE_MIRROR_SENT: a shadow started (sampled in). ST_CE_MIRROR_FAILED: it ended without
    the shadow cluster's answer (circuit open, no endpoint, pool full, connect error, reset,
    timeout, dropped, its primary gone)."""
    if svc.stats is not None and c.stats_slot >= 0:
        svc.stats.cluster_event(svc.stats_worker, c.stats_slot, which)


# --- sampling -----------------------------------------------------------------------------------

cdef inline bint sampled(double percent) noexcept:
    return chance(percent)      # exchange.pyx's generator, reseeded in each worker after fork

def sampled_count(double percent, int n):
    """How many of `n` draws at `percent` are mirrored (tests)."""
    cdef int i, k = 0
    for i in range(n):
        k += sampled(percent)
    return k


# --- the shadow's host --------------------------------------------------------------------------

cpdef bytes shadow_host(bytes host):
    """`host` with "-shadow" appended to its host part, as Envoy's shadowAppendedHost():
    api.example.com -> api.example.com-shadow, api.example.com:8080 ->
    api.example.com-shadow:8080, [::1]:80 -> [::1]-shadow:80, [::1] -> [::1]-shadow. The port
    starts at the last ':' unless a ']' follows it (an IPv6 literal, RFC 3986 3.2.2)."""
    cdef Py_ssize_t colon = host.rfind(b":")
    if colon < 0 or host.rfind(b"]") > colon:
        return host + SHADOW
    return host[:colon] + SHADOW + host[colon:]


cdef list shadow_edits(Exchange x, HeaderBlock h, Pool pool):
    """The primary's edits with Host replaced by the shadow's. The host the primary sends is
    the last Host edit (an absolute-form authority, a filter's or set_headers'), else the
    request's Host; an HTTP/1.0 request without one got the primary endpoint's address, so the
    shadow gets its own endpoint's."""
    cdef list src = x.edits, out = []
    cdef bytes base = None, n
    cdef Py_ssize_t i
    if src is not None:
        for i in range(0, len(src), 2):
            n = <bytes>src[i]
            if PyBytes_GET_SIZE(n) == 4 and n.lower() == N_HOST:
                base = <bytes>src[i + 1]
            else:
                out.append(n)
                out.append(src[i + 1])
    if base is None and h.host_index >= 0:
        base = h.header_value(h.host_index)
    elif base is None or (x.authority is None and h.host_index < 0
                          and x.pool is not None and base is x.pool.address):
        base = pool.address
    h.drop(N_HOST)
    out.append(N_HOST)
    out.append(shadow_host(base))
    return out


# --- starting a shadow --------------------------------------------------------------------------

cdef Exchange start_mirror(Exchange x, Route route):
    cdef Services svc = x.svc
    cdef Cluster c = route.mirror_cluster
    if c is None or x.upgrade or svc.overloaded or svc.draining:
        return None             # (a tunnel cannot be shadowed; an overloaded worker sheds work)
    if not sampled(route.mirror_percent):
        return None
    try:
        return _start(x, route, c)
    except Exception as exc:
        svc.warn(("mirror", route.name), "mirror of route %s failed: %r" % (route.name, exc))
        return None


cdef Exchange _start(Exchange x, Route route, Cluster c):
    cdef Services svc = x.svc
    cdef Stats st = svc.stats
    cdef Shadows reg = shadows_of(svc)
    cdef Downstream ds = x.ds
    cdef HeaderBlock h = x.req.copy()
    cdef MirrorSink sink = MirrorSink.__new__(MirrorSink)
    cdef Exchange s = Exchange(svc)

    count(svc, c, ST_CE_MIRROR_SENT)
    sink.svc = svc
    sink.lname = ds.lname
    sink.tables = x.tables
    sink.listener = x.listener
    sink.client_ip = ds.client_ip
    sink.client_port = ds.client_port
    sink.http_minor = ds.http_minor

    h.drop(N_EXPECT)
    s.begin(sink, h, monotonic_now())
    if s.counted:
        # in flight, but not a client's request: the gauge counts those
        s.counted = False
        st.add_gauge(svc.stats_worker, ST_GAUGE_REQUESTS, -1)
    s.shadow = True
    s.route = reg.shadow_route(route)
    s.cluster = c
    s.method = x.method
    s.path = x.path
    s.path_changed = x.path_changed
    s.target = x.target
    s.request_id = x.request_id
    s.req_body_kind = x.req_body_kind
    s.req_has_body = x.req_has_body
    s.method_head = x.method_head
    if x.grpc != G_NONE:
        s.grpc = G_PLAIN           # what goes upstream is gRPC (a gRPC-Web request translated)
        s.grpc_type = x.grpc_type
    if x.web_in is not None:
        s.web_in = TextDecoder()   # fed the client's base64 by request_data, as the primary's
        (<TextDecoder>s.web_in).carry = (<TextDecoder>x.web_in).carry
    # body that arrived before the primary got here (held for a fault delay): the same bytes
    s.bytes_in = x.bytes_in
    if x.pending is not None:
        s.pending = list(x.pending)
        s.pending_size = x.pending_size
    s.pending_end = x.pending_end
    s.pending_trailers = x.pending_trailers
    s.req_done = x.req_done
    s.route_deadline = x.route_deadline   # the route timeout (or the client's grpc-timeout)
    sink.x = s
    reg.add(sink, route.timeout)

    try:
        s.go(X_WAITING)
        # the shadow cluster's circuit breaker and endpoint pick, as Exchange.proxy_to does
        if st is not None and c.stats_slot >= 0:
            if st.cluster_active(c.stats_slot, False) >= c.max_requests:
                st.cluster_event(svc.stats_worker, c.stats_slot, ST_CE_OVERFLOW_REQUESTS)
                s.fail(E_CIRCUIT_OPEN, None)
                return None
            st.cluster_begin(svc.stats_worker, c.stats_slot, False)
            s.in_cluster = True
        if s.pick_endpoint() < 0:
            s.fail(E_NO_HEALTHY_UPSTREAM, None)
            return None
        s.edits = shadow_edits(x, h, s.pool)
        s.start_try()
    except BaseException:
        sink.drop()                # (a bug: never leave a half-started shadow behind)
        raise
    if s.state == X_IDLE or s.req_done:
        return None                # failed at once, or it has its whole request already
    return s


# --- the primary's hooks -------------------------------------------------------------------------

cdef void _failed(MirrorSink sink, exc) except *:
    """A bug in the shadow's handling: drop it, say so now and then, never raise."""
    cdef Services svc = sink.svc
    try:
        svc.warn(("mirror", type(exc)), "mirror: shadow dropped after an error: %r" % (exc,))
        sink.drop()
    except Exception:
        pass


cdef void mirror_data(Exchange s, bytes chunk) except *:
    cdef MirrorSink sink = <MirrorSink>s.ds
    if s.state == X_IDLE or sink.dropped:
        return
    try:
        if sink.paused & PAUSE_UPSTREAM:
            sink.held += PyBytes_GET_SIZE(chunk)
            if sink.held > MIRROR_HELD_LIMIT:
                sink.drop()      # its upstream does not keep up: never buffer for it
                return
        s.request_data(chunk)
        if sink.paused & PAUSE_PENDING:
            sink.drop()          # still connecting, and the held body passed its bound
    except Exception as exc:
        _failed(sink, exc)


cdef void mirror_end(Exchange s, bytes trailers) except *:
    cdef MirrorSink sink = <MirrorSink>s.ds
    if s.state == X_IDLE or sink.dropped:
        return
    try:
        s.request_end(trailers)
    except Exception as exc:
        _failed(sink, exc)


cdef void mirror_abort(Exchange s) except *:
    cdef MirrorSink sink = <MirrorSink>s.ds
    if s.state == X_IDLE or sink.dropped:
        return
    try:
        if not s.req_has_body and s.pending is None:
            # nothing more was to come (a GET whose primary failed at once): it is whole
            s.request_end(None)
        else:
            sink.drop()
    except Exception as exc:
        _failed(sink, exc)


cdef void mirror_recorded(Exchange s) except *:
    """Counted under the shadow cluster by status (sluice_cluster_requests_total, never the
    route's counts), and as failed when the shadow cluster's answer never came (any response,
    5xx included, is an answer)."""
    if s.svc.stats is not None and s.cluster is not None:
        s.svc.stats.record_cluster(s.svc.stats_worker, s.cluster.stats_slot, s.status)
    if s.outcome != E_NONE:
        count(s.svc, s.cluster, ST_CE_MIRROR_FAILED)


# --- the shadow's client side ------------------------------------------------------------------

cdef inline void cut(Exchange x) except *:
    """Reset the shadow's HTTP/1.1 connection rather than close it: a close waits until what
    is buffered for the upstream has been written, forever if the upstream does not read (the
    usual reason a shadow is dropped), with its socket and buffer held meanwhile. An HTTP/2
    stream is reset by the exchange (the connection is shared, and PINGs watch it)."""
    cdef UpstreamConn up = x.up
    if up is not None and up.transport is not None and up.pool is not None \
            and up.pool.protocol == PROTO_HTTP1:
        up.transport.abort()


cdef class Shadows


@cython.final
cdef class MirrorSink(Downstream):
    """The client side of one shadow exchange: what the exchange sends is discarded."""
    cdef Exchange x                # the shadow while it is in flight (None once it is over)
    cdef Shadows shadows           # the worker's registry it is in while in flight
    cdef int paused                # PAUSE_* bits the shadow's upstream side asked for
    cdef Py_ssize_t held           # body bytes given to the shadow since its upstream paused
    cdef bint dropped              # ended by us (cannot keep up, primary gone): counted failed

    cdef void drop(self) except *:
        """End the shadow now, whatever it was doing (its upstream is closed, never pooled)."""
        cdef Exchange x = self.x
        if x is None or x.state == X_IDLE:
            return
        self.dropped = True
        cut(x)
        x.abort_upstream()
        if x.outcome == E_NONE and not x.logged:
            x.outcome = E_CLIENT_CLOSED
            if x.status == 0:
                x.status = 499
        x.req_done = True
        x.finish()

    # what an exchange sends its client: nobody to send it to
    cdef void send_local(self, Exchange x, int status, bytes body, list headers, bint close) except *:
        pass
    cdef void send_direct(self, Exchange x, Route r) except *:
        pass
    cdef void send_interim(self, Exchange x, int status) except *:
        pass
    cdef void send_head(self, Exchange x, HeaderBlock h, int status, int body_kind,
                        list edits) except *:
        pass
    cdef void send_data(self, Exchange x, bytes chunk) except *:
        pass
    cdef void send_end(self, Exchange x, bytes trailers) except *:
        pass

    cdef void start_tunnel(self, Exchange x, UpstreamConn up) except *:
        # (upgrades are never mirrored; a 101 anyway ends the shadow)
        self.drop()

    cdef void broken(self, Exchange x) except *:
        """The shadow's response broke after it started (reset, deadline): it is over."""
        if x.state != X_IDLE:
            x.abort_upstream()
            x.req_done = True
            x.finish()

    cdef void exchange_done(self, Exchange x) except *:
        if self.shadows is not None:
            self.shadows.remove(self)
        self.x = None                 # (the shadow keeps its `ds`: codecs call ds.flush() late)
        self.svc.requests -= 1        # finish() counted it: not a request this worker served

    cdef void pause_client(self, Exchange x, int why) except *:
        # never the client: the primary's; mirror_data drops the shadow if this lasts
        self.paused |= why

    cdef void resume_client(self, Exchange x, int why) except *:
        self.paused &= ~why
        if not self.paused & PAUSE_UPSTREAM:
            self.held = 0

    cdef void check_timeouts(self, double now) except *:
        cdef Exchange x = self.x
        if x is not None and x.deadline > 0 and now >= x.deadline:
            cut(x)
            x.on_deadline()


# --- a worker's shadows in flight ---------------------------------------------------------------

cdef dict _registries = {}        # Services -> Shadows, while it has shadows in flight


cdef Shadows shadows_of(Services svc):
    cdef Shadows r = _registries.get(svc)
    if r is None:
        r = Shadows.__new__(Shadows)
        r.svc = svc
        r.live = set()
        r.routes = {}
        r.tick = TICK_MAX
        _registries[svc] = r
    return r


@cython.final
cdef class Shadows:
    """A worker's shadows in flight, and the one timer that checks their deadlines."""
    cdef Services svc
    cdef set live                  # {MirrorSink}
    cdef dict routes               # primary Route -> the Route its shadows run on
    cdef object timer              # the loop's TimerHandle while armed, or None
    cdef double tick               # seconds between two sweeps

    cdef Route shadow_route(self, Route route):
        """The route a shadow runs on: the primary's name, stats slot and timeout, and nothing
        that belongs to the primary's client (filters, retries, faults, a mirror)."""
        cdef Route r = self.routes.get(route)
        if r is None:
            if len(self.routes) >= ROUTES_MAX:
                self.routes.clear()
            r = Route(route.name, route.index, timeout=route.timeout,
                      clusters=[route.mirror_cluster], stats_slot=route.stats_slot)
            self.routes[route] = r
        return r

    cdef void add(self, MirrorSink sink, double timeout) except *:
        cdef double t
        self.live.add(sink)
        sink.shadows = self
        if timeout > 0:
            t = min(TICK_MAX, max(TICK_MIN, timeout / 5))
            if t < self.tick:
                self.tick = t
            if self.timer is None and self.svc.loop is not None:
                self.timer = self.svc.loop.call_later(self.tick, self.sweep)

    cdef void remove(self, MirrorSink sink) except *:
        self.live.discard(sink)

    def sweep(self):
        """Every `tick` while shadows are in flight: their route deadlines. With none left the
        registry goes (the next shadow makes a new one)."""
        cdef double now = monotonic_now()
        cdef MirrorSink sink
        self.timer = None
        for obj in list(self.live):
            sink = <MirrorSink>obj
            try:
                sink.check_timeouts(now)
            except Exception as exc:
                _failed(sink, exc)
        if self.live:
            self.timer = self.svc.loop.call_later(self.tick, self.sweep)
        elif _registries.get(self.svc) is self:
            del _registries[self.svc]

    @property
    def in_flight(self):
        return len(self.live)


def shadows_in_flight():
    """Shadows in flight in this process (tests)."""
    cdef Shadows r
    return sum([(<Shadows>r).in_flight for r in _registries.values()])

# One request's policy, protocol-neutral (see exchange.pyx), and the two faces it talks to: the
# client-side codec (`Downstream`) and the upstream stream it leases from a pool (`UpstreamConn`).

cimport cython
from engine._fast.accesslog cimport AccessLog
from engine._fast.headers cimport HeaderBlock
from engine._fast.limiter cimport TakeResult
from engine._fast.pool cimport Pool, PooledConn
from engine._fast.stats cimport Stats
from engine._fast.tables cimport Tables, Listener, Route, Cluster

# Exchange states (the transition table is in exchange.pyx)
cdef enum:
    X_IDLE = 0        # no request: between the requests of a connection, or a fresh stream
    X_LOCAL = 1       # answered (or answering) by the proxy; the rest of the request is dropped
    X_WAITING = 2     # waiting for an upstream lease: parked in the pool, or connecting
    X_PROXYING = 3    # holds an upstream stream: request and response flow through it
    X_TUNNEL = 4      # switched protocols (101): bytes pass both ways untouched
    X_BODY_WAIT = 5   # the response is complete; the request body still arrives and is dropped
    X_NSTATES = 6

# why the client is not being read (Downstream.pause_client / resume_client, a bit set)
cdef enum:
    PAUSE_UPSTREAM = 1   # the upstream's write buffer is above its high-water mark (upload)
    PAUSE_BACKLOG = 2    # unparsed input (pipelined requests) passed the codec's bound
    PAUSE_PENDING = 4    # body held while the upstream connects passed PENDING_BODY_LIMIT

cdef class Exchange
cdef class Downstream

# True for `percent` (0..100) of the calls: the per-process generator of request ids (reseeded
# in each worker after fork), for fault injection and mirror sampling
cdef bint chance(double percent) noexcept
cdef class UpstreamConn


cdef class Services:
    """What every exchange of a worker shares; proxy.Worker is one."""
    cdef public object loop
    cdef public AccessLog access_log     # or None (access_log.path: off)
    cdef public Stats stats              # shared-memory metrics, or None
    cdef public int stats_worker         # this process's worker slot in `stats`
    cdef public bint draining
    cdef public long requests            # exchanges completed by this worker
    cdef public object filter_context    # the FilterContext class (engine.filters), set by runtime
    cdef public object log_error         # callable(msg) for errors raised by Python filters
    cdef public long open_fds            # client + upstream sockets of this worker
    cdef public long fd_limit            # RLIMIT_NOFILE less what was open at start and a reserve
    cdef dict warned                     # what warn() said last, and when
    cdef public bint overloaded          # the event loop lags past overload.max_loop_delay:
                                         #   new requests get 503 x-sluice-overloaded (set by
                                         #   engine/runtime/overload.py)

    cdef bint warn(self, key, str msg, double interval=*) except -1
    cdef void count(self, int event) noexcept
    cdef void upstream_extra_data(self, Pool pool) except *
    cdef void upstream_failed(self, Pool pool, int ep_slot, bint reset, str why) except *
    # open a connection to `pool`'s endpoint for `x` (a slot is reserved already); the result
    # arrives as x.lease_granted(up) or x.connect_failed(pool, exc)
    cdef void open_upstream(self, Exchange x, Pool pool) except *


cdef class Downstream:
    """The client side of exchanges: a codec (HTTP/1.1 connection, HTTP/2 stream) seen by the
    exchange. Connection facts the policy reads are fields; what the exchange asks of it are the
    methods, each overridden by the codec."""
    cdef Services svc
    cdef str lname
    cdef Tables tables
    cdef Listener listener
    cdef object transport
    cdef bytes client_ip
    cdef int client_port
    cdef bint closed
    cdef bytes peer_uri            # mTLS: the verified peer's SPIFFE ID (URI SAN), or None
    cdef bytes peer_subject        # ... and its subject (RFC 4514), or None
    cdef bytes xfcc_value          # the x-forwarded-client-cert element of this connection
    cdef bytes xfh_value           # the last Host seen (clients repeat it): its bytes, reused
    cdef int http_minor            # for the access log: 0 or 1 (HTTP/1.x); 2 when HTTP/2

    # the response, in order: [interim] head, data..., end -- or one local reply
    cdef void send_local(self, Exchange x, int status, bytes body, list headers, bint close) except *
    cdef void send_direct(self, Exchange x, Route r) except *
    cdef void send_interim(self, Exchange x, int status) except *
    cdef void send_head(self, Exchange x, HeaderBlock h, int status, int body_kind,
                        list edits) except *
    cdef void send_data(self, Exchange x, bytes chunk) except *
    cdef void send_end(self, Exchange x, bytes trailers) except *
    cdef void start_tunnel(self, Exchange x, UpstreamConn up) except *
    # the response broke after it started: HTTP/1.1 closes the connection, HTTP/2 resets the stream
    cdef void broken(self, Exchange x) except *
    # the exchange is over (finish ran): go on with the next request, or close
    cdef void exchange_done(self, Exchange x) except *
    # stop / go on reading the client's request (body) for exchange x: HTTP/1.1 pauses the
    # socket, HTTP/2 withholds the stream's flow-control credit
    cdef void pause_client(self, Exchange x, int why) except *
    cdef void resume_client(self, Exchange x, int why) except *
    cdef void flush(self) except *
    # the worker's timeout sweep and drain
    cdef void check_timeouts(self, double now) except *
    cdef void drain_close(self) except *
    # TLS: the verified peer's identity (peer_uri, peer_subject, xfcc_value) from the transport
    cdef void identify(self, object transport) except *


cdef class UpstreamConn(PooledConn):
    """The upstream side of one exchange: an HTTP/1.1 connection (proxy.Upstream), leased
    whole, or an HTTP/2 stream of a shared connection (h2client.UpstreamStream)."""
    cdef Exchange x                # the exchange it serves, or None while pooled
    cdef bint got_bytes            # a byte of the response arrived
    cdef bint paused_reading       # we paused its reading because the client is slow

    cdef void send_request(self, Exchange x) except *        # the head, from x.req + x.edits
    cdef void send_data(self, Exchange x, bytes chunk) except *
    cdef void send_pending(self, Exchange x, list chunks) except *
    cdef void send_end(self, Exchange x, bytes trailers) except *
    # the response ended: back to the pool if `reusable` and nothing unread, else closed
    cdef void release(self, Exchange x, bint reusable) except *
    cdef void pause_reading(self) except *
    cdef void resume_reading(self) except *


@cython.final
cdef class Exchange:
    cdef Services svc
    cdef Downstream ds
    cdef Tables tables
    cdef Listener listener
    cdef int state
    cdef HeaderBlock req           # the request head (the codec's; valid while head_valid)
    cdef bint head_valid           # req is this exchange's (not a parse error's)

    # request facts the codec sets at the head
    cdef bytes method
    cdef bytes path                # the target as routed (normalised), query included
    cdef bint path_changed         # `path` differs from what the client sent
    cdef bytes authority           # an absolute-form request's authority (replaces Host)
    cdef int req_body_kind         # http1 BODY_*: how the request body is delimited
    cdef bint req_has_body
    cdef bint req_done             # the request (body included) has been read to its end
    cdef bint method_head
    cdef bint expect_continue
    cdef bint upgrade              # asks to switch protocols (Upgrade + Connection: upgrade)

    cdef object stream             # the codec's per-exchange state (HTTP/2: its stream), or None
    cdef list codec_edits          # edits the client codec needs upstream (HTTP/2: cookie crumbs
                                   #   joined into one field, RFC 9113 8.2.3), or None
    cdef int grpc                  # grpcwire.G_*: gRPC or gRPC-Web (local errors as gRPC status)
    cdef bytes grpc_type           # ... the request's content-type
    cdef double grpc_timeout       # grpc-timeout in seconds (0: none): caps the route timeout
    cdef int grpc_status           # the response's grpc-status, for the access log (-1: none)
    cdef object web_in             # gRPC-Web text: grpcwire.TextDecoder of the request body
    cdef object web_out            # ... and TextEncoder of the response body
    cdef bint web_body             # gRPC-Web: the response has a body (trailers go at its end)

    # policy decisions
    cdef Route route
    cdef Cluster cluster
    cdef Pool pool
    cdef int ep_index
    cdef int ep_slot               # the picked endpoint's Stats slot
    cdef bint lb_active            # balancer.begin() was called and end() is still due
    cdef bint counted              # this exchange is in the active_requests gauge
    cdef bytes target              # the upstream request-target (rewritten)
    cdef list edits                # header edits for the upstream head: [name, value, ...]
    cdef bytes request_id
    cdef object fctx               # the FilterContext of this exchange, when a filter ran
    cdef Exchange mirror           # the shadow copy of this request (mirror.pyx), or None
    cdef bint shadow               # this exchange is a mirror's: no access log line, no answer

    # upstream side
    cdef UpstreamConn up
    cdef bint parked               # waiting in the pool's list (pool.acquire said LEASE_PARKED)
    cdef list pending              # request body held until the upstream is attached
    cdef Py_ssize_t pending_size
    cdef bint pending_end          # ... and its end (with `pending_trailers`)
    cdef bytes pending_trailers
    cdef bint retried              # the one silent retry of a stale pooled connection was made
    cdef bint req_body_sent        # a byte of the request body went to an upstream

    # retries (the route's retry policy), per-try timeouts, circuit breakers
    cdef int attempt               # upstream tries begun (1: the first); 0: none
    cdef unsigned long long tried  # bit i: the cluster's endpoint i was tried (i < 64)
    cdef list replay               # the request body kept for a retry (<= REPLAY_LIMIT), or None
    cdef Py_ssize_t replay_size
    cdef bytes replay_trailers
    cdef double route_deadline     # the route timeout (or grpc-timeout) falls due at (0: none)
    cdef double try_deadline       # the current try's per_try_timeout falls due at (0: none)
    cdef object timer              # a loop timer: the retry backoff or the fault delay
    cdef int attempt_edit          # index in `edits` of x-sluice-attempt's value (-1: none)
    cdef bint in_cluster           # counted in the cluster's requests in flight (breakers)
    cdef bint in_retry             # counted in the cluster's retries in flight

    # response and accounting
    cdef bint resp_started
    cdef bint logged               # stats and access log written (record())
    cdef int status
    cdef int outcome               # errors.ErrorKind the exchange ended with (E_NONE: a response)
    cdef double t0
    cdef double t_attach           # an upstream connection was attached at (0: none yet)
    cdef double deadline           # the route timeout falls due at (0: none)
    cdef long bytes_in
    cdef long bytes_out

    cdef void go(self, int to) except *
    cdef void begin(self, Downstream ds, HeaderBlock req, double now) except *
    cdef void begin_for_error(self, Downstream ds, double now) except *
    cdef void route_request(self, const char* path, Py_ssize_t pl, const char* host,
                            Py_ssize_t hl) except *
    cdef void local(self, int status, bytes body, list headers, bint close) except *
    cdef void local_error(self, int kind, bytes body, bint close) except *
    cdef void fail(self, int kind, bytes body) except *
    cdef void request_data(self, bytes chunk) except *
    cdef void request_end(self, bytes trailers) except *
    cdef void response_head(self, HeaderBlock h, int status, int body_kind) except *
    cdef void response_data(self, bytes chunk) except *
    cdef void response_end(self, UpstreamConn up, bytes trailers, bint reusable) except *
    cdef void response_upgraded(self, UpstreamConn up) except *
    cdef void upstream_broke(self, UpstreamConn up, bint close_upstream, bint stale_bytes,
                             int kind) except *
    cdef void upstream_lost(self, UpstreamConn up) except *
    cdef void upstream_refused(self, UpstreamConn up) except *
    cdef void lease_granted(self, UpstreamConn up) except *
    cdef void connect_failed(self, Pool pool, object exc) except *
    cdef void timed_out(self, int kind) except *
    cdef void on_deadline(self) except *
    cdef void bad_request(self, int status, bytes body) except *
    cdef void client_gone(self) except *
    cdef void abort_upstream(self) except *
    cdef void finish(self) except *
    cdef void record(self) except *
    cdef void report_outcome(self) except *
    cdef void report_ep(self, int kind) except *
    # internal steps
    cdef void detect_grpc(self, HeaderBlock h) except *
    cdef bint admit(self, Route route, TakeResult* tr) except -1
    cdef object filter_ctx(self)
    cdef void filter_failed(self, f, str phase, exc) except *
    cdef bint request_filters(self, Route route) except -1
    cdef void filter_edits(self, HeaderBlock h, dict set_, set remove, list edits) except *
    cdef void start_proxy(self, Route route) except *
    cdef bint inject_fault(self, Route route, bint delayed) except -1
    cdef void proxy_to(self, Route route) except *
    cdef int pick_endpoint(self) except -2
    cdef void start_try(self) except *
    cdef bint may_retry(self, int on) except -1
    cdef void schedule_retry(self, int why) except *
    cdef bint try_again(self, int on, int why, int od_kind) except -1
    cdef void abort_try(self) except *
    cdef void drop_pending(self) except *
    cdef void release_cluster(self) except *
    cdef void acquire(self, bint fresh) except *
    cdef void attach(self, UpstreamConn up) except *
    cdef void lb_begin(self) except *
    cdef void lb_done(self) except *
    cdef void cancel_lease(self) except *

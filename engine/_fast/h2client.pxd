# HTTP/2 upstream connections (see h2client.pyx): one `H2Upstream` per connection (the asyncio
# protocol, owning the client-role H2Connection and the HPACK pair), one `UpstreamStream` per
# stream leased to an exchange (the exchange's `UpstreamConn`).

cimport cython
from libc.stdint cimport int64_t
from engine._fast.exchange cimport Exchange, Services, UpstreamConn
from engine._fast.headers cimport HeaderBlock
from engine._fast.hpack cimport Decoder, Encoder
from engine._fast.http2 cimport H2Connection, C_COUNT
from engine._fast.pool cimport Pool, PooledConn

cdef class H2Upstream


@cython.final
cdef class UpstreamStream(UpstreamConn):
    cdef H2Upstream conn
    cdef int64_t sid                # 0 until send_request opened it
    cdef bint released              # its slot went back to the connection
    cdef bint req_ended             # END_STREAM sent, or queued behind `out`
    cdef list out                   # request body the flow-control windows held back
    cdef bint out_end               # ... followed by the end of the request
    cdef bytes out_trailers
    cdef bint blocked               # we paused the client (PAUSE_UPSTREAM) for `out`
    cdef bint head_seen             # the final (non-1xx) response head arrived
    cdef bint body_none             # HEAD, 204, 304: no DATA may follow
    cdef int64_t resp_length        # content-length of the response, -1 when absent
    cdef int64_t resp_got           # DATA bytes of the response so far
    cdef int64_t unacked            # DATA handed on while reading was paused: not yet credited
    cdef bint sent_any              # a byte of the request went out (HEADERS included)

    cdef void on_headers(self, bytes block, bint end_stream) except *
    cdef void on_data(self, bytes data, bint end_stream) except *
    cdef void finish_response(self, bytes trailers) except *
    cdef void bad_response(self, int code, str why) except *
    cdef void cut(self, int kind, bint refused) except *
    cdef void drain(self) except *
    cdef void send_end_now(self, bytes trailers) except *
    cdef void give_back(self) except *


@cython.final
cdef class H2Upstream(PooledConn):
    cdef Services svc
    cdef H2Connection h2
    cdef Encoder enc
    cdef Decoder dec
    cdef HeaderBlock scratch        # decodes the header blocks of streams nobody waits for
    cdef dict streams               # sid -> UpstreamStream with an exchange or a response under way
    cdef Exchange opener            # the exchange that asked for this connection (until ready)
    cdef bint ready                 # the peer's SETTINGS arrived: in the pool
    cdef bint reported              # the opener was told (lease_granted / connect_failed)
    cdef bint write_paused          # our transport is above its high-water mark
    cdef bint tls_live
    cdef bytes scheme               # b"http" | b"https"
    cdef object write
    cdef object timer               # SETTINGS wait while connecting
    cdef double last_seen           # a frame arrived at (PING liveness)
    cdef double ping_sent           # our PING is unanswered since (0: none out)
    cdef int64_t flushed[C_COUNT]   # the codec's counters as last added to Stats
    cdef bint counted               # in the open-connections gauge
    cdef bint write_scheduled       # write_out() is due in this turn of the loop

    cdef void start(self, Exchange x) except *
    cdef void flush(self) except *
    cdef void handle(self, list events) except *
    cdef void became_ready(self) except *
    cdef void stream_done(self, UpstreamStream s) except *
    cdef void fail(self, int code, str why) except *
    cdef void break_all(self, int kind) except *
    cdef void drained(self) except *
    cdef void drain_all(self) except *
    cdef void reset(self, int64_t sid, int code) except *
    cdef void count_reset(self, int code, bint sent) noexcept
    cdef void count_goaway(self, int code, bint sent) noexcept
    cdef void gauge(self, int which, long delta) noexcept
    cdef void flush_counts(self) noexcept
    cdef void flush_now(self) except *

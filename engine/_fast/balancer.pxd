# The load balancer's contract for other compiled modules (proxy, tables). See balancer.pyx for
# the theory of operation. One Balancer per cluster per worker (and one per route traffic split);
# pick() touches no Python object and never raises.

cimport cython
from libc.stdint cimport int32_t, int64_t, uint64_t
from engine._fast.endpoints cimport Endpoints

cpdef enum:
    LB_ROUND_ROBIN = 0      # smooth weighted round robin (nginx's algorithm)
    LB_LEAST_REQUEST = 1    # weighted least-request, power of two choices (Envoy's)
    LB_RING_HASH = 2        # consistent hashing ring (Ketama-style, virtual nodes by weight)
    LB_RANDOM = 3           # weighted random

# Tunables (move to consts.pxi when it exists).
cpdef enum:
    LB_RING_POINTS_PER_WEIGHT = 160    # virtual nodes per unit of weight (nginx/Ketama's 160)
    LB_RING_MAX_POINTS = 131072        # ring cap (12 bytes a point: 1.5 MiB); above it, scaled
    LB_MAX_WEIGHT = 0x7FFFFFFF         # weights are clamped to 1..this (keeps products in int64)

# XXH64 (the xxHash spec) of key[0:key_len]: the ring's hash, for callers that must agree with it.
cdef uint64_t lb_hash(const char* key, Py_ssize_t key_len, uint64_t seed) noexcept nogil


@cython.final
cdef class Balancer:
    cdef readonly int policy
    cdef readonly int n
    cdef readonly int n_up            # endpoints currently available
    cdef readonly Py_ssize_t ring_size

    cdef int64_t* w                   # [n], weights clamped to 1..LB_MAX_WEIGHT
    cdef int64_t* act                 # [n], requests in flight (begin - end)
    cdef int64_t* cur                 # [n], smooth WRR current weights
    cdef char* is_up                  # [n], 1 = may be picked
    cdef int32_t* up_idx              # [n_up], the available endpoints in index order
    cdef int64_t* up_cum              # [n_up], running sum of their weights (weighted draws)
    cdef int64_t up_total             # sum of the available weights
    cdef bint up_uniform              # every available weight is equal: draws skip the search
    cdef uint64_t* ring_hash          # [ring_size], ascending: the points' positions
    cdef int32_t* ring_idx            # [ring_size], the endpoint owning each point
    cdef uint64_t rng                 # splitmix64 state
    cdef tuple _keys                  # endpoint identities, for introspection only
    # health: set_available's verdicts, and the node-wide state when the cluster is watched
    cdef char* man_up                 # [n], set_available(i, up)
    cdef Endpoints shared             # engine._fast.endpoints state, or None (nothing to watch)
    cdef uint64_t* shared_gen         # shared's generation counter, NULL when not watched
    cdef int* slots                   # [n], each endpoint's slot in `shared`
    cdef uint64_t seen_gen            # the generation the availability was last computed at
    cdef readonly int panic           # panic threshold, percent: below it, route to all (0 = off)
    cdef readonly bint panicking      # the last sync found fewer available than `panic`

    # endpoint index, -1 if none is available. key is read by LB_RING_HASH only; NULL or
    # key_len <= 0 means "no key" and falls back to a weighted random pick.
    cdef int pick(self, const char* key, Py_ssize_t key_len) noexcept nogil
    cdef void begin(self, int i) noexcept nogil   # a request started on endpoint i
    cdef void end(self, int i) noexcept nogil     # it ended (never drops below zero)
    cpdef set_available(self, int i, bint up)  # health: unavailable endpoints are never picked

    cdef uint64_t _next(self) noexcept nogil
    cdef int _draw(self) noexcept nogil
    cdef int _draw_two(self, int* second) noexcept nogil
    cdef int _pick_wrr(self) noexcept nogil
    cdef int _pick_least(self) noexcept nogil
    cdef int _pick_ring(self, const char* key, Py_ssize_t key_len) noexcept nogil
    cdef void _rebuild_up(self) noexcept nogil
    cdef void _sync(self) noexcept nogil
    cdef _build_ring(self)
    cdef Py_ssize_t _ring_count(self, Py_ssize_t i, double scale)

# The node-wide endpoint state's contract for other compiled modules (balancer, exchange). See
# endpoints.pyx for the theory of operation. Every cdef method is a few loads and stores (and,
# for outcomes and ejections, one atomic add) on the shared mapping: no Python objects, no
# locks, no clock reads (callers pass `now`).

cimport cython
from libc.stdint cimport uint32_t, uint64_t

cpdef enum:
    EP_UNKNOWN = 0        # not checked (yet): routable. Also every endpoint of an unchecked cluster
    EP_HEALTHY = 1        # the active health check passes
    EP_UNHEALTHY = 2      # it fails: the balancer skips the endpoint (outside panic)

    # outcomes an exchange reports for outlier detection (Endpoints.outcome)
    EP_OUTCOME_OK = 0         # a response below 500 (or 5xx that is not the endpoint's fault:
                              # the caller decides)
    EP_OUTCOME_5XX = 1        # a 5xx response other than 502..504
    EP_OUTCOME_GATEWAY = 2    # connect failure, reset, 502, 503, 504: counts as 5xx too


@cython.final
cdef class Endpoints:
    cdef char* mem                 # the mapping (released in __dealloc__)
    cdef size_t size
    cdef readonly int max_endpoints
    cdef uint64_t* gen             # bumped (release) on every change of who may be picked

    # The generation: any change of health or ejection of any endpoint moves it. A balancer
    # keeps the last one it synced at and compares once per pick.
    cdef uint64_t generation(self) noexcept nogil
    # Whether the endpoint in `slot` may be picked: not unhealthy and not ejected. Slots out of
    # range and slot 0 (the stats table's "_other" overflow, shared by many names) always are.
    cdef bint available(self, int slot) noexcept nogil
    # Health (EP_*) of `slot`; EP_UNKNOWN out of range.
    cdef int health(self, int slot) noexcept nogil
    # Outlier detection, from any worker: the outcome of one exchange with the endpoint. Keeps
    # node-wide running counts of consecutive 5xx and consecutive gateway errors (an OK resets
    # both; a gateway error also counts as a 5xx). Returns 1 when this outcome made a count reach
    # its threshold (`max_5xx` or `max_gateway`; 0 = that check is off); the count restarts at 0
    # then, so exactly one caller sees it. The caller then decides whether to eject (max
    # ejection percent: `ejected_among`) and calls `eject`.
    cdef int outcome(self, int slot, int kind, int max_5xx, int max_gateway) noexcept nogil
    # Eject `slot` until now + base * (1 + times ejected before), capped at max_seconds (0 = no
    # cap). Returns 0 when it already is ejected (another worker won the race). Bumps the
    # generation: every worker's balancer skips it from its next pick.
    cdef int eject(self, int slot, double now, double base, double max_seconds) noexcept nogil
    # How many of `slots[0:n]` are ejected now (for max_ejection_percent).
    cdef int ejected_among(self, const int* slots, int n) noexcept nogil

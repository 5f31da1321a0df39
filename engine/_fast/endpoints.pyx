# cython: language_level=3
"""Node-wide endpoint state in shared memory: health (active checks), ejection (outlier
detection), and the counters of their transitions.

Theory of operation
===================

Who calls it. The supervisor creates one `Endpoints` before it forks the workers (an anonymous
MAP_SHARED mapping, like `stats.Stats` and the limiter's buckets), so every worker, a restarted
one included, maps the same memory. Records are indexed by the endpoint's stats slot
(`Stats.endpoint_slot("cluster/host:port")`): `link.py` computes that slot for every endpoint
already, it is the same in every process and across reloads, and a name is never removed, so a
slot means one endpoint for the life of the node. Reusing it saves a second name table and a
second lock; the price is that both tables have `Stats.max_endpoints` records.

Writers.
  * Health: the prober (engine/runtime/health.py), one asyncio task set in the supervisor, is the
    only writer (`set_health`). One writer: plain relaxed stores.
  * Ejection: any worker (`outcome`, `eject`: atomic add and compare-and-swap, since several
    workers report on the same endpoint) and the supervisor (`sweep`, which lifts ejections whose
    time is up: workers never read the clock for this).
  * Every change of who may be picked bumps one generation counter (atomic add, release).

Readers. A worker's `Balancer` (balancer.pyx) of a cluster that has a health check or outlier
detection holds its endpoints' slots and the generation it last synced at. Per pick it loads the
generation (one load of a cache line that changes only on a transition, so it stays shared in
every core's cache) and, only when it moved, re-reads the records of its endpoints and rebuilds
its dense list of available ones. Nothing per request touches Python, and a cluster without
either feature holds no `Endpoints` at all: its picks never look.

Slot 0 is the stats table's "_other" overflow, shared by every name registered after the table
filled up: it is never tracked (always available, health unknown), rather than letting one
endpoint's failure remove a crowd of unrelated ones.

Layout: header (64 bytes: magic, max, the generation on its own cache line) | ep_rec[max], 64
bytes each (one cache line per endpoint: workers reporting outcomes on different endpoints do not
share lines).

What it must never do: allocate, raise or touch a Python object in the cdef methods; read a
clock there (callers pass `now`); write outside the mapping for any slot a caller passes.
"""

cimport cython
from libc.errno cimport errno
from libc.stdint cimport uint32_t, uint64_t
from posix.mman cimport MAP_ANONYMOUS, MAP_FAILED, MAP_SHARED, PROT_READ, PROT_WRITE, mmap, munmap

import os

cdef extern from *:
    """
    #include <stdint.h>
    #include <sys/mman.h>
    #ifndef MAP_NORESERVE
    #define MAP_NORESERVE 0
    #endif

    typedef struct {
        uint64_t magic;            /* "SLCENDP1" */
        uint64_t max;
        uint64_t _pad0[6];
        uint64_t generation;       /* own cache line: read per pick, written on transitions */
        uint64_t _pad1[7];
    } ep_header;

    typedef struct {
        uint32_t health;           /* EP_UNKNOWN | EP_HEALTHY | EP_UNHEALTHY (prober only) */
        uint32_t ejected;          /* 1 while ejected (CAS 0 -> 1 by a worker; sweep -> 0) */
        double eject_until;        /* CLOCK_MONOTONIC seconds the ejection ends */
        uint64_t times_ejected;    /* ejections so far: the next lasts base * (1 + this) */
        uint64_t consecutive_5xx;  /* running counts of outlier detection (atomic adds) */
        uint64_t consecutive_gateway;
        uint64_t to_healthy;       /* transitions, counted forever */
        uint64_t to_unhealthy;
        uint64_t ejections;
    } ep_rec;

    typedef char ep_header_is_128[(sizeof(ep_header) == 128) ? 1 : -1];
    typedef char ep_rec_is_64[(sizeof(ep_rec) == 64) ? 1 : -1];

    static inline uint32_t ep_ld32(uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void ep_st32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline uint64_t ep_ld(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void ep_st(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
    static inline uint64_t ep_inc(uint64_t *p) {
        return __atomic_add_fetch(p, 1, __ATOMIC_ACQ_REL);
    }
    static inline double ep_ld_d(double *p) { double v; __atomic_load(p, &v, __ATOMIC_ACQUIRE); return v; }
    static inline void ep_st_d(double *p, double v) { __atomic_store(p, &v, __ATOMIC_RELEASE); }
    static inline int ep_cas32(uint32_t *p, uint32_t from, uint32_t to) {
        return __atomic_compare_exchange_n(p, &from, to, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
    }
    #define EP_MAGIC 0x3150444E45434C53ULL
    """
    ctypedef struct ep_header:
        uint64_t magic
        uint64_t max
        uint64_t generation

    ctypedef struct ep_rec:
        uint32_t health
        uint32_t ejected
        double eject_until
        uint64_t times_ejected
        uint64_t consecutive_5xx
        uint64_t consecutive_gateway
        uint64_t to_healthy
        uint64_t to_unhealthy
        uint64_t ejections

    int MAP_NORESERVE
    uint64_t EP_MAGIC
    uint32_t ep_ld32(uint32_t* p) nogil
    void ep_st32(uint32_t* p, uint32_t v) nogil
    uint64_t ep_ld(uint64_t* p) nogil
    void ep_st(uint64_t* p, uint64_t v) nogil
    uint64_t ep_inc(uint64_t* p) nogil
    double ep_ld_d(double* p) nogil
    void ep_st_d(double* p, double v) nogil
    int ep_cas32(uint32_t* p, uint32_t frm, uint32_t to) nogil


HEALTH_NAMES = ("unknown", "healthy", "unhealthy")      # indexed by EP_*
UNKNOWN = EP_UNKNOWN
HEALTHY = EP_HEALTHY
UNHEALTHY = EP_UNHEALTHY
OUTCOME_OK = EP_OUTCOME_OK
OUTCOME_5XX = EP_OUTCOME_5XX
OUTCOME_GATEWAY = EP_OUTCOME_GATEWAY


cdef inline ep_rec* _rec(Endpoints e, int slot) noexcept nogil:
    """The record of `slot`, or NULL when it is not tracked (0, negative, past the table)."""
    if slot <= 0 or slot >= e.max_endpoints:
        return NULL
    return (<ep_rec*>(e.mem + sizeof(ep_header))) + slot


@cython.final
cdef class Endpoints:
    """Endpoints(max_endpoints=8192): the node's endpoint state. Create it in the supervisor
    before forking, with the same max_endpoints as the `Stats` whose slots index it."""

    def __cinit__(self, int max_endpoints=8192):
        self.mem = NULL
        if max_endpoints < 1 or max_endpoints > (1 << 20):
            raise ValueError(f"max_endpoints must be in 1..{1 << 20}, got {max_endpoints}")
        cdef size_t size = sizeof(ep_header) + <size_t>max_endpoints * sizeof(ep_rec)
        cdef void* m = mmap(NULL, size, PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        if m == MAP_FAILED:
            raise OSError(errno, os.strerror(errno))
        self.mem = <char*>m
        self.size = size
        self.max_endpoints = max_endpoints
        cdef ep_header* h = <ep_header*>m
        h.max = <uint64_t>max_endpoints
        h.magic = EP_MAGIC
        self.gen = &h.generation

    def __dealloc__(self):
        if self.mem != NULL:
            munmap(self.mem, self.size)
            self.mem = NULL

    # --- the hot path (see endpoints.pxd) ----------------------------------------------------

    cdef uint64_t generation(self) noexcept nogil:
        return ep_ld(self.gen)

    cdef bint available(self, int slot) noexcept nogil:
        cdef ep_rec* r = _rec(self, slot)
        if r == NULL:
            return True
        return ep_ld32(&r.health) != EP_UNHEALTHY and ep_ld32(&r.ejected) == 0

    cdef int health(self, int slot) noexcept nogil:
        cdef ep_rec* r = _rec(self, slot)
        return EP_UNKNOWN if r == NULL else <int>ep_ld32(&r.health)

    cdef int outcome(self, int slot, int kind, int max_5xx, int max_gateway) noexcept nogil:
        cdef ep_rec* r = _rec(self, slot)
        cdef int crossed = 0
        if r == NULL:
            return 0
        if kind == EP_OUTCOME_OK:
            # the common case: plain loads, a store only when a run of errors ends
            if ep_ld(&r.consecutive_5xx) != 0:
                ep_st(&r.consecutive_5xx, 0)
            if ep_ld(&r.consecutive_gateway) != 0:
                ep_st(&r.consecutive_gateway, 0)
            return 0
        if max_5xx > 0:
            if ep_inc(&r.consecutive_5xx) == <uint64_t>max_5xx:
                ep_st(&r.consecutive_5xx, 0)
                crossed = 1
        if kind == EP_OUTCOME_GATEWAY:
            if max_gateway > 0:
                if ep_inc(&r.consecutive_gateway) == <uint64_t>max_gateway:
                    ep_st(&r.consecutive_gateway, 0)
                    crossed = 1
        elif ep_ld(&r.consecutive_gateway) != 0:
            ep_st(&r.consecutive_gateway, 0)
        return crossed

    cdef int eject(self, int slot, double now, double base, double max_seconds) noexcept nogil:
        cdef ep_rec* r = _rec(self, slot)
        cdef double length
        if r == NULL or not ep_cas32(&r.ejected, 0, 1):
            return 0
        length = base * <double>(1 + ep_ld(&r.times_ejected))
        if max_seconds > 0 and length > max_seconds:
            length = max_seconds
        ep_st_d(&r.eject_until, now + length)
        ep_inc(&r.times_ejected)
        ep_inc(&r.ejections)
        ep_inc(self.gen)
        return 1

    cdef int ejected_among(self, const int* slots, int n) noexcept nogil:
        cdef int i, k = 0
        cdef ep_rec* r
        for i in range(n):
            r = _rec(self, slots[i])
            if r != NULL and ep_ld32(&r.ejected) != 0:
                k += 1
        return k

    # --- the supervisor's side ---------------------------------------------------------------

    def set_health(self, int slot, int health):
        """The prober's verdict for `slot` (EP_*). Returns True when it changed: a transition
        (counted, and the generation moved so every balancer re-reads). Untracked slots
        (see the module docstring) return False."""
        cdef ep_rec* r = _rec(self, slot)
        if health < EP_UNKNOWN or health > EP_UNHEALTHY:
            raise ValueError(f"health {health} is not one of EP_UNKNOWN..EP_UNHEALTHY")
        if r == NULL:
            return False
        cdef uint32_t old = ep_ld32(&r.health)
        if old == <uint32_t>health:
            return False
        ep_st32(&r.health, <uint32_t>health)
        if health == EP_HEALTHY:
            ep_inc(&r.to_healthy)
        elif health == EP_UNHEALTHY:
            ep_inc(&r.to_unhealthy)
        ep_inc(self.gen)
        return True

    def forget(self, int slot):
        """`slot` is no longer checked or watched (its cluster dropped the health check, or a
        reload removed the endpoint): health unknown, not ejected, running counts cleared.
        The transition counters and times_ejected stay (counters never go back)."""
        cdef ep_rec* r = _rec(self, slot)
        if r == NULL:
            return
        cdef bint moved = ep_ld32(&r.health) != EP_UNKNOWN or ep_ld32(&r.ejected) != 0
        ep_st32(&r.health, EP_UNKNOWN)
        ep_st32(&r.ejected, 0)
        ep_st(&r.consecutive_5xx, 0)
        ep_st(&r.consecutive_gateway, 0)
        if moved:
            ep_inc(self.gen)

    def sweep(self, double now):
        """Lift every ejection whose time is up (the supervisor, about once a second); returns
        the slots it lifted."""
        cdef int i
        cdef ep_rec* r
        lifted = []
        for i in range(1, self.max_endpoints):
            r = _rec(self, i)
            if ep_ld32(&r.ejected) != 0 and ep_ld_d(&r.eject_until) <= now:
                ep_st32(&r.ejected, 0)
                lifted.append(i)
        if lifted:
            ep_inc(self.gen)
        return lifted

    # --- Python surface (tests, admin, the policy layer) ---------------------------------------

    @property
    def generation_py(self):
        return self.generation()

    def available_py(self, int slot):
        return self.available(slot)

    def health_py(self, int slot):
        return self.health(slot)

    def outcome_py(self, int slot, int kind, int max_5xx=0, int max_gateway=0):
        return self.outcome(slot, kind, max_5xx, max_gateway)

    def eject_py(self, int slot, double now, double base, double max_seconds=0.0):
        return self.eject(slot, now, base, max_seconds)

    def state(self, int slot):
        """{"health": "unknown"|"healthy"|"unhealthy", "ejected": bool, "eject_until": seconds
        (CLOCK_MONOTONIC, 0 when not ejected), "times_ejected", "to_healthy", "to_unhealthy",
        "ejections"} of `slot` (all zero for an untracked one)."""
        cdef ep_rec* r = _rec(self, slot)
        if r == NULL:
            return {"health": "unknown", "ejected": False, "eject_until": 0.0,
                    "times_ejected": 0, "to_healthy": 0, "to_unhealthy": 0, "ejections": 0}
        ejected = ep_ld32(&r.ejected) != 0
        return {"health": HEALTH_NAMES[ep_ld32(&r.health)], "ejected": ejected,
                "eject_until": ep_ld_d(&r.eject_until) if ejected else 0.0,
                "times_ejected": ep_ld(&r.times_ejected), "to_healthy": ep_ld(&r.to_healthy),
                "to_unhealthy": ep_ld(&r.to_unhealthy), "ejections": ep_ld(&r.ejections)}

    def __repr__(self):
        return f"<Endpoints max={self.max_endpoints} generation={self.generation()}>"

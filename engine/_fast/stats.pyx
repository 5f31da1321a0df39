# cython: language_level=3
"""Request counters, latency histograms and gauges in shared memory, summed by the admin server.

Theory of operation
===================

Who calls it. The supervisor creates one `Stats` before it forks the workers (an anonymous
MAP_SHARED mapping, like the limiter's buckets), so every worker, including one restarted later,
maps the same memory. Each worker is given a worker slot (0..max_workers-1) at fork and calls
`attach_worker(slot)` first thing; from then on it writes only its own region. `link.py` turns
route, cluster and endpoint names into small integer slots once per snapshot (`route_slot`,
`cluster_slot`, `endpoint_slot`), and `proxy` calls `record(...)` once per finished exchange and
`set_gauge` / `add_gauge` / `endpoint_begin` / `endpoint_end` as connections and requests come and
go. The admin server (in the supervisor) reads with `aggregate()`, `workers()` and
`worker_versions()`; nothing crosses a pipe.

Why no atomics on the hot path. A region has exactly one writer: the worker of that slot (or the
supervisor, through `release_worker`, once that worker is dead). An increment is a relaxed load
and a relaxed store of an aligned 64-bit word: a plain `mov` pair, never a locked instruction.
Readers may see a value a few increments old, or a histogram whose buckets and sum were read at
slightly different moments; that is fine for metrics, which are sampled anyway. Regions of
different workers never share a cache line, so workers do not slow each other down.

Name tables. One per kind (routes, clusters, endpoints): fixed arrays of {hash, length, name}
entries plus a count. An entry is written once, before the count that covers it is published with
a release store, and never changes: lookups scan the published prefix without a lock. Registering
a new name takes the tables' one spinlock (a 32-bit word holding the holder's pid, CAS-acquired;
stolen when the holder is dead, like the limiter's bucket locks), scans again, appends. A name is
never removed, so a slot means the same name in every process and across every reload; a route
that a reload removed keeps its final counts. Reserved entries: slot 0 of every table is
"_other", the overflow slot a lookup returns once the table is full, and route slot 1 is
"_unrouted", where exchanges answered before a route matched (404, 400) are counted. Config names
must start with a letter or digit (syntax.NAME_PATTERN), so reserved names never collide.

Layout (every section 64-byte aligned, every per-worker record a multiple of 64 bytes except the
16-byte endpoint record, whose array per worker is itself 64-byte aligned):
    header | route names | cluster names | endpoint names | listener names | st_worker[W]
    | st_route[W][R] | st_cluster[W][C] | st_endpoint[W][E] | int64 listener_conns[W][64]
    | st_h2side[W][2]
Worker-major order means the aggregate touches only the pages of workers that ever attached and
of names that were ever registered: the untouched rest of a large table costs address space, not
memory (the mapping is MAP_NORESERVE).

Histogram. Per route, fixed bucket bounds in seconds (Prometheus' `le`, a value equal to a bound
falls in that bucket): 0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10 +Inf.
Buckets are stored per bucket (not cumulative) with a sum and a count; the reader accumulates.

A worker's header holds its pid (0 = no live process), a "used" flag (its counters count forever,
so a restarted worker's slot keeps counting monotonically), a heartbeat (CLOCK_MONOTONIC seconds,
set by the worker), the gauges and the snapshot version it serves (written under a sequence lock
from Python at apply time; readers retry a torn read).

HTTP/2. Per worker and side (downstream: client connections; upstream: connections to
upstreams), one `st_h2side`: the codec's counters (http2.pxd's C_* enum, which `h2_counts` takes
as deltas: a codec keeps exact per-connection counts and the proxy flushes what they grew by),
RST_STREAM and GOAWAY frames by direction and RFC 9113 error code (`h2_reset`, `h2_goaway`:
the codec's counters cannot tell codes apart), and gauges of open connections and streams.
`H2_COUNTER_NAMES` is http2.COUNTER_NAMES; importing this module checks it has
ST_H2_NCOUNTERS names, so the two enums cannot drift apart silently.

What it must never do: allocate, raise, take a lock or touch a Python object in the cdef hot path
methods; read a clock there (the caller passes `now`); or let a bad argument write outside its
own region (every index is range-checked, out-of-range slots count under "_other").
"""

cimport cython
from engine._fast.limiter cimport monotonic_now   # the one clock of the data plane
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.errno cimport errno
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy, memset
from posix.mman cimport MAP_ANONYMOUS, MAP_FAILED, MAP_SHARED, PROT_READ, PROT_WRITE, mmap, munmap

import os

from engine._fast.http2 import COUNTER_NAMES as _h2_counter_names

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    #include <errno.h>
    #include <signal.h>
    #include <sched.h>
    #include <time.h>
    #include <unistd.h>
    #include <sys/mman.h>

    #ifndef MAP_NORESERVE
    #define MAP_NORESERVE 0
    #endif

    #define ST_MAGIC 0x3154415453434C53ULL    /* "SLCSTAT1" little-endian: sluice stats v1 */
    #define ST_LAYOUT 7u

    typedef struct {
        uint64_t magic;
        uint32_t layout;
        uint32_t max_workers;
        uint32_t max_routes;
        uint32_t max_clusters;
        uint32_t max_endpoints;
        uint32_t lock;             /* name tables' lock: 0 = free, else the holder's pid */
        uint32_t nroutes;          /* registered names (release-published) */
        uint32_t nclusters;
        uint32_t nendpoints;
        uint32_t nlisteners;
        uint64_t lock_steals;
        uint32_t workers_hw;       /* 1 + the highest worker slot ever attached (node-wide sums) */
        uint32_t _pad1;
    } st_header;

    typedef struct {
        uint64_t hash;             /* FNV-1a 64 of the name */
        uint32_t len;
        uint32_t _pad0;
        char name[128];
    } st_name;

    typedef struct {
        uint64_t pid;              /* 0 = no live process in this slot */
        uint64_t used;             /* 1 once a process attached: its counters count forever */
        double heartbeat;          /* CLOCK_MONOTONIC seconds of the worker's last beat */
        uint64_t version_seq;      /* sequence lock over version_len and version */
        int64_t gauges[4];
        uint32_t version_len;
        uint32_t _pad0;
        char version[64];
        uint64_t events[9];        /* ST_EV_* counters (stats.pxd) */
        uint64_t _pad2[6];         /* to 256 bytes: four whole cache lines */
    } st_worker;

    typedef struct {
        uint64_t status[6];        /* [0] outside 100..599, [1..5] 1xx..5xx */
        uint64_t bucket[15];       /* per bucket, not cumulative; [14] is +Inf */
        uint64_t count;
        double sum;
        uint64_t bytes_in;
        uint64_t bytes_out;
        uint64_t rate_limited;     /* requests refused with 429 by the route's limit */
        uint64_t filter_errors;    /* Python filter phases that raised */
        uint64_t faults[2];        /* fault injection: [0] delayed, [1] aborted */
        uint64_t _pad0[3];
    } st_route;

    typedef struct {
        uint64_t status[6];
        int64_t active;            /* requests in flight to the cluster (max_requests) */
        int64_t active_retries;    /* retries in flight (max_retries, retry_budget) */
        uint64_t events[16];       /* ST_CE_* counters (stats.pxd) */
    } st_cluster;

    typedef struct {
        int64_t active;
        uint64_t requests;
        uint64_t connect_failures; /* connections that could not be opened (refused, timeout) */
        uint64_t resets;           /* connections that broke before their response completed */
    } st_endpoint;

    /* one side of a worker's HTTP/2 codecs; [dir] is 0 = received, 1 = sent */
    typedef struct {
        uint64_t counts[19];       /* http2.pxd C_* order (ST_H2_NCOUNTERS) */
        uint64_t resets[2][15];    /* RST_STREAM by [dir][code]; [14] is "unknown" */
        uint64_t goaways[2][15];   /* GOAWAY likewise */
        int64_t gauges[2];         /* open connections, open streams (ST_H2_GAUGE_*) */
        uint64_t _pad0[7];         /* to 704 bytes: eleven whole cache lines */
    } st_h2side;

    typedef char st_header_is_64[(sizeof(st_header) == 64) ? 1 : -1];
    typedef char st_name_is_144[(sizeof(st_name) == 144) ? 1 : -1];
    typedef char st_worker_is_256[(sizeof(st_worker) == 256) ? 1 : -1];
    typedef char st_route_is_256[(sizeof(st_route) == 256) ? 1 : -1];
    typedef char st_cluster_is_192[(sizeof(st_cluster) == 192) ? 1 : -1];
    typedef char st_endpoint_is_32[(sizeof(st_endpoint) == 32) ? 1 : -1];
    typedef char st_h2side_is_704[(sizeof(st_h2side) == 704) ? 1 : -1];

    /* ---- single-writer counters: relaxed load + relaxed store (plain movs, no lock prefix) ---- */
    static inline void st_add(uint64_t *p, uint64_t n) {
        __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
    }
    static inline void st_addi(int64_t *p, int64_t n) {
        __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
    }
    static inline void st_seti(int64_t *p, int64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
    static inline void st_set(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
    static inline uint64_t st_ld(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
    static inline int64_t st_ldi(int64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
    static inline double st_ld_d(double *p) {
        double v; __atomic_load(p, &v, __ATOMIC_RELAXED); return v;
    }
    static inline void st_st_d(double *p, double v) { __atomic_store(p, &v, __ATOMIC_RELAXED); }
    static inline void st_add_d(double *p, double v) { st_st_d(p, st_ld_d(p) + v); }
    static inline uint32_t st_ld_count(uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void st_publish_count(uint32_t *p, uint32_t v) {
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
    }
    static inline void st_raise_hw(uint32_t *p, uint32_t v) {
        uint32_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);
        while (cur < v && !__atomic_compare_exchange_n(p, &cur, v, 0, __ATOMIC_RELEASE,
                                                       __ATOMIC_RELAXED)) {}
    }
    static inline void st_publish_magic(st_header *h) {
        __atomic_store_n(&h->magic, ST_MAGIC, __ATOMIC_RELEASE);
    }

    /* ---- the version field's sequence lock (one writer: the worker; readers retry) ---- */
    static void st_write_version(st_worker *w, const char *v, uint32_t n) {
        uint64_t seq = __atomic_load_n(&w->version_seq, __ATOMIC_RELAXED);
        __atomic_store_n(&w->version_seq, seq + 1, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_RELEASE);
        memcpy(w->version, v, n);
        __atomic_store_n(&w->version_len, n, __ATOMIC_RELAXED);
        __atomic_store_n(&w->version_seq, seq + 2, __ATOMIC_RELEASE);
    }
    /* Copies the version into out[64]; returns its length, or -1 if every try was torn. */
    static int st_read_version(st_worker *w, char *out) {
        for (int tries = 0; tries < 1000; tries++) {
            uint64_t s1 = __atomic_load_n(&w->version_seq, __ATOMIC_ACQUIRE);
            if (s1 & 1) { sched_yield(); continue; }
            uint32_t n = __atomic_load_n(&w->version_len, __ATOMIC_RELAXED);
            if (n > 64) n = 64;
            memcpy(out, w->version, n);
            __atomic_thread_fence(__ATOMIC_ACQUIRE);
            if (__atomic_load_n(&w->version_seq, __ATOMIC_RELAXED) == s1) return (int)n;
        }
        return -1;
    }

    /* ---- the name tables' lock: not on the hot path (link time only) ---- */
    static void st_lock(st_header *h) {
        uint32_t me = (uint32_t)getpid(), yields = 0;
        for (;;) {
            uint32_t cur = __atomic_load_n(&h->lock, __ATOMIC_RELAXED);
            if (cur == 0) {
                if (__atomic_compare_exchange_n(&h->lock, &cur, me, 0,
                                                __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
                    return;
                continue;
            }
            yields++;
            /* a dead holder (killed while registering a name), or a holder stuck for ~seconds */
            if ((yields % 64 == 0 && cur != me && kill((pid_t)cur, 0) == -1 && errno == ESRCH)
                    || yields >= (1u << 20)) {
                if (__atomic_compare_exchange_n(&h->lock, &cur, me, 0,
                                                __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
                    __atomic_fetch_add(&h->lock_steals, 1, __ATOMIC_RELAXED);
                    return;
                }
                yields = 0;
                continue;
            }
            sched_yield();
        }
    }
    static void st_unlock(st_header *h) {
        uint32_t me = (uint32_t)getpid();
        __atomic_compare_exchange_n(&h->lock, &me, 0, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
    }

    static inline uint64_t st_fnv1a(const char *p, size_t n) {
        uint64_t h = 14695981039346656037ULL;
        for (size_t i = 0; i < n; i++) { h ^= (unsigned char)p[i]; h *= 1099511628211ULL; }
        return h;
    }

    /* histogram bucket upper bounds, seconds; the last bucket (+Inf) is implicit */
    static const double ST_BOUND[14] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                        0.25, 0.5, 1.0, 2.5, 5.0, 10.0};

    """
    ctypedef struct st_header:
        uint64_t magic
        uint32_t layout
        uint32_t max_workers
        uint32_t max_routes
        uint32_t max_clusters
        uint32_t max_endpoints
        uint32_t lock
        uint32_t nroutes
        uint32_t nclusters
        uint32_t nendpoints
        uint32_t nlisteners
        uint64_t lock_steals
        uint32_t workers_hw

    ctypedef struct st_name:
        uint64_t hash
        uint32_t len
        char name[128]

    ctypedef struct st_worker:
        uint64_t pid
        uint64_t used
        double heartbeat
        uint64_t version_seq
        int64_t gauges[4]
        uint32_t version_len
        char version[64]
        uint64_t events[ST_NEVENTS]

    ctypedef struct st_route:
        uint64_t status[6]
        uint64_t bucket[15]
        uint64_t count
        double sum
        uint64_t bytes_in
        uint64_t bytes_out
        uint64_t rate_limited
        uint64_t filter_errors
        uint64_t faults[2]

    ctypedef struct st_cluster:
        uint64_t status[6]
        int64_t active
        int64_t active_retries
        uint64_t events[ST_CE_COUNT]

    ctypedef struct st_endpoint:
        int64_t active
        uint64_t requests
        uint64_t connect_failures
        uint64_t resets

    ctypedef struct st_h2side:
        uint64_t counts[ST_H2_NCOUNTERS]
        uint64_t resets[2][ST_H2_CODES]
        uint64_t goaways[2][ST_H2_CODES]
        int64_t gauges[ST_H2_NGAUGES]

    int MAP_NORESERVE
    uint32_t ST_LAYOUT
    void st_add(uint64_t* p, uint64_t n) nogil
    void st_addi(int64_t* p, int64_t n) nogil
    void st_seti(int64_t* p, int64_t v) nogil
    void st_set(uint64_t* p, uint64_t v) nogil
    uint64_t st_ld(uint64_t* p) nogil
    int64_t st_ldi(int64_t* p) nogil
    double st_ld_d(double* p) nogil
    void st_st_d(double* p, double v) nogil
    void st_add_d(double* p, double v) nogil
    uint32_t st_ld_count(uint32_t* p) nogil
    void st_publish_count(uint32_t* p, uint32_t v) nogil
    void st_publish_magic(st_header* h) nogil
    void st_raise_hw(uint32_t* p, uint32_t v) nogil
    void st_write_version(st_worker* w, const char* v, uint32_t n) nogil
    int st_read_version(st_worker* w, char* out) nogil
    void st_lock(st_header* h) nogil
    void st_unlock(st_header* h) nogil
    uint64_t st_fnv1a(const char* p, size_t n) nogil
    const double* ST_BOUND


BOUNDS = tuple([ST_BOUND[i] for i in range(ST_NBOUNDS)] + [float("inf")])  # histogram `le`
STATUS_CLASSES = ("other", "1xx", "2xx", "3xx", "4xx", "5xx")
GAUGE_CONNECTIONS = ST_GAUGE_CONNECTIONS
GAUGE_REQUESTS = ST_GAUGE_REQUESTS
OTHER = "_other"
UNROUTED = "_unrouted"
SLOT_OTHER = ST_OTHER
SLOT_UNROUTED = ST_UNROUTED

# HTTP/2 (see the theory of operation): sides, error codes and counters by name, in index order
H2_SIDES = ("downstream", "upstream")
H2_DOWNSTREAM = ST_H2_DOWNSTREAM
H2_UPSTREAM = ST_H2_UPSTREAM
H2_GAUGE_CONNECTIONS = ST_H2_GAUGE_CONNECTIONS
H2_GAUGE_STREAMS = ST_H2_GAUGE_STREAMS
H2_CODES = ("NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR",
            "SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL",
            "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY",
            "HTTP_1_1_REQUIRED", "unknown")           # RFC 9113 section 7, 0x0..0xd
H2_COUNTER_NAMES = _h2_counter_names
if len(H2_COUNTER_NAMES) != ST_H2_NCOUNTERS or len(H2_CODES) != ST_H2_CODES:
    raise ImportError(f"stats.pxd's ST_H2_NCOUNTERS ({ST_H2_NCOUNTERS}) does not match "
                      f"http2.COUNTER_NAMES ({len(H2_COUNTER_NAMES)}): update both together")

cdef enum:
    ST_MAX_WORKERS = 4096         # guards against nonsense, not tuning knobs
    ST_MAX_NAMES = 1 << 20


cdef inline size_t _align64(size_t n) noexcept nogil:
    return (n + 63) & ~(<size_t>63)


cdef inline int _status_class(int status) noexcept nogil:
    cdef int c = status // 100
    if status < 100 or c > 5:
        return 0
    return c


cdef int _register(st_header* h, st_name* table, uint32_t* count, uint32_t cap,
                   const char* name, uint32_t n) noexcept nogil:
    """The slot of `name` in `table`, appended if new; ST_OTHER when the table is full."""
    cdef uint64_t hv = st_fnv1a(name, n)
    cdef uint32_t i, seen = st_ld_count(count)
    for i in range(seen):
        if table[i].hash == hv and table[i].len == n and memcmp(table[i].name, name, n) == 0:
            return <int>i
    st_lock(h)
    cdef uint32_t now = st_ld_count(count)
    for i in range(seen, now):
        if table[i].hash == hv and table[i].len == n and memcmp(table[i].name, name, n) == 0:
            st_unlock(h)
            return <int>i
    if now >= cap:
        st_unlock(h)
        return ST_OTHER
    table[now].hash = hv
    table[now].len = n
    memcpy(table[now].name, name, n)
    st_publish_count(count, now + 1)
    st_unlock(h)
    return <int>now


cdef bytes _name_bytes(name):
    cdef bytes b = name.encode("utf-8") if isinstance(name, str) else bytes(name)
    if PyBytes_GET_SIZE(b) == 0 or PyBytes_GET_SIZE(b) > ST_NAME_BYTES:
        raise ValueError(f"a stats name is 1..{ST_NAME_BYTES} bytes, got {PyBytes_GET_SIZE(b)}")
    return b


cdef list _names(st_name* table, uint32_t n):
    cdef uint32_t i
    return [table[i].name[:table[i].len].decode("utf-8", "replace") for i in range(n)]


cdef dict _classes(uint64_t* status):
    cdef int c
    return {STATUS_CLASSES[c]: status[c] for c in range(ST_NCLASSES)}


# --- layout helpers (module-level: the class's C methods are the ones stats.pxd declares) -------

cdef inline st_header* _hdr(Stats s) noexcept nogil:
    return <st_header*>s.mem

cdef inline st_name* _route_names(Stats s) noexcept nogil:
    return <st_name*>(s.mem + sizeof(st_header))

cdef inline st_name* _cluster_names(Stats s) noexcept nogil:
    return _route_names(s) + s.max_routes

cdef inline st_name* _endpoint_names(Stats s) noexcept nogil:
    return _cluster_names(s) + s.max_clusters

cdef inline st_name* _listener_names(Stats s) noexcept nogil:
    return _endpoint_names(s) + s.max_endpoints

cdef inline int64_t* _listener_conns(Stats s, int w, int l) noexcept nogil:
    return (<int64_t*>s.listeners_base) + (<size_t>w * ST_MAX_LISTENERS + <size_t>l)

cdef inline st_worker* _worker(Stats s, int w) noexcept nogil:
    return (<st_worker*>s.workers_base) + w

cdef inline st_route* _route(Stats s, int w, int r) noexcept nogil:
    return (<st_route*>s.routes_base) + (<size_t>w * <size_t>s.max_routes + <size_t>r)

cdef inline st_route* _route_row(Stats s, int w, int r) noexcept nogil:
    """The row a worker counts route slot `r` in, as record() files it (< 0: ST_UNROUTED, past
    the table: ST_OTHER); NULL for a worker out of range."""
    if w < 0 or w >= s.max_workers:
        return NULL
    if r < 0:
        r = ST_UNROUTED
    elif r >= s.max_routes:
        r = ST_OTHER
    return _route(s, w, r)

cdef inline st_cluster* _cluster(Stats s, int w, int c) noexcept nogil:
    return (<st_cluster*>s.clusters_base) + (<size_t>w * <size_t>s.max_clusters + <size_t>c)

cdef inline st_cluster* _cluster_row(Stats s, int w, int c) noexcept nogil:
    """The row a worker counts cluster slot `c` in (ST_OTHER past the table); NULL for a
    worker out of range or a negative slot (not counted)."""
    if w < 0 or w >= s.max_workers or c < 0:
        return NULL
    if c >= s.max_clusters:
        c = ST_OTHER
    return _cluster(s, w, c)

cdef inline size_t _endpoint_stride(int max_endpoints) noexcept nogil:
    return _align64(<size_t>max_endpoints * sizeof(st_endpoint))

cdef inline st_endpoint* _endpoint(Stats s, int w, int e) noexcept nogil:
    return (<st_endpoint*>(s.endpoints_base + <size_t>w * _endpoint_stride(s.max_endpoints))) + e

cdef inline st_endpoint* _endpoint_row(Stats s, int w, int e) noexcept nogil:
    """The row a worker counts endpoint slot `e` in (ST_OTHER when out of range); NULL for a
    worker out of range."""
    if w < 0 or w >= s.max_workers:
        return NULL
    if e < 0 or e >= s.max_endpoints:
        e = ST_OTHER
    return _endpoint(s, w, e)

cdef inline st_h2side* _h2(Stats s, int w, int side) noexcept nogil:
    return (<st_h2side*>s.h2_base) + (<size_t>w * ST_H2_SIDES + <size_t>side)

cdef inline st_h2side* _h2side(Stats s, int w, int side) noexcept nogil:
    """A worker's record of one HTTP/2 side; NULL when the worker or side is out of range."""
    if w < 0 or w >= s.max_workers or side < 0 or side >= ST_H2_SIDES:
        return NULL
    return _h2(s, w, side)

cdef inline int _h2_code(int code) noexcept nogil:
    if code < 0 or code >= ST_H2_CODES - 1:
        return ST_H2_CODES - 1                      # "unknown"
    return code

cdef int _check_worker(Stats s, int worker) except -1:
    if worker < 0 or worker >= s.max_workers:
        raise IndexError(f"worker slot {worker} is not in 0..{s.max_workers - 1}")
    return 0

cdef void _reset_live(Stats s, int worker) noexcept nogil:
    # gauges, in-flight counts, heartbeat and version of a slot whose process starts or is gone
    cdef st_worker* w = _worker(s, worker)
    cdef int i
    cdef uint32_t e, ne = st_ld_count(&_hdr(s).nendpoints)
    for i in range(ST_NGAUGES):
        st_seti(&w.gauges[i], 0)
    for e in range(ne):
        st_seti(&_endpoint(s, worker, e).active, 0)
    for e in range(<uint32_t>st_ld_count(&_hdr(s).nclusters)):
        st_seti(&_cluster(s, worker, e).active, 0)
        st_seti(&_cluster(s, worker, e).active_retries, 0)
    for i in range(ST_MAX_LISTENERS):
        st_seti(_listener_conns(s, worker, i), 0)
    for i in range(ST_H2_SIDES):
        st_seti(&_h2(s, worker, i).gauges[ST_H2_GAUGE_CONNECTIONS], 0)
        st_seti(&_h2(s, worker, i).gauges[ST_H2_GAUGE_STREAMS], 0)
    st_st_d(&w.heartbeat, 0.0)
    st_write_version(w, "", 0)

cdef str _version_of(Stats s, int worker):
    cdef char buf[ST_VERSION_BYTES]
    cdef int n = st_read_version(_worker(s, worker), buf)
    if n <= 0:
        return None
    return buf[:n].decode("utf-8", "replace")


@cython.final
cdef class Stats:
    """Stats(max_workers=64, max_routes=4096, max_clusters=1024, max_endpoints=8192): the node's
    shared-memory metrics. Create it in the supervisor before forking the workers."""

    def __cinit__(self, int max_workers=64, int max_routes=4096, int max_clusters=1024,
                  int max_endpoints=8192):
        self.mem = NULL
        self.size = 0
        if max_workers < 1 or max_workers > ST_MAX_WORKERS:
            raise ValueError(f"max_workers must be in 1..{ST_MAX_WORKERS}, got {max_workers}")
        for what, n, least in (("max_routes", max_routes, 2), ("max_clusters", max_clusters, 1),
                               ("max_endpoints", max_endpoints, 1)):
            if n < least or n > ST_MAX_NAMES:
                raise ValueError(f"{what} must be in {least}..{ST_MAX_NAMES}, got {n}")
        self.max_workers = max_workers
        self.max_routes = max_routes
        self.max_clusters = max_clusters
        self.max_endpoints = max_endpoints
        cdef size_t W = max_workers, R = max_routes, C = max_clusters, E = max_endpoints
        cdef size_t off_workers = _align64(sizeof(st_header)
                                           + (R + C + E + ST_MAX_LISTENERS) * sizeof(st_name))
        cdef size_t off_routes = _align64(off_workers + W * sizeof(st_worker))
        cdef size_t off_clusters = _align64(off_routes + W * R * sizeof(st_route))
        cdef size_t ep_stride = _endpoint_stride(max_endpoints)
        cdef size_t off_endpoints = _align64(off_clusters + W * C * sizeof(st_cluster))
        cdef size_t off_listeners = _align64(off_endpoints + W * ep_stride)
        cdef size_t off_h2 = _align64(off_listeners + W * ST_MAX_LISTENERS * sizeof(int64_t))
        cdef size_t size = off_h2 + W * ST_H2_SIDES * sizeof(st_h2side)
        cdef void* m = mmap(NULL, size, PROT_READ | PROT_WRITE,
                            MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        if m == MAP_FAILED:
            raise OSError(errno, os.strerror(errno))
        self.mem = <char*>m
        self.size = size
        self.workers_base = self.mem + off_workers
        self.routes_base = self.mem + off_routes
        self.clusters_base = self.mem + off_clusters
        self.endpoints_base = self.mem + off_endpoints
        self.listeners_base = self.mem + off_listeners
        self.h2_base = self.mem + off_h2
        cdef st_header* h = <st_header*>self.mem
        h.layout = ST_LAYOUT
        h.max_workers = <uint32_t>W
        h.max_routes = <uint32_t>R
        h.max_clusters = <uint32_t>C
        h.max_endpoints = <uint32_t>E
        # reserved names, in slot order
        for name in (OTHER, UNROUTED):
            self.route_slot(name)
        self.cluster_slot(OTHER)
        self.endpoint_slot(OTHER)
        self.listener_slot(OTHER)
        st_publish_magic(h)

    def __dealloc__(self):
        if self.mem != NULL:
            munmap(self.mem, self.size)
            self.mem = NULL

    # --- the hot path (see stats.pxd) --------------------------------------------------------

    cdef void record(self, int worker, int route_slot, int cluster_slot, int status,
                     double seconds, long bytes_in, long bytes_out) noexcept nogil:
        cdef st_route* r
        cdef int b
        if worker < 0 or worker >= self.max_workers:
            return
        if route_slot < 0:
            route_slot = ST_UNROUTED
        elif route_slot >= self.max_routes:
            route_slot = ST_OTHER
        cdef int c = _status_class(status)
        r = _route(self, worker, route_slot)
        st_add(&r.status[c], 1)
        if not (seconds >= 0.0):        # negative or NaN: never poison the sum
            seconds = 0.0
        b = 0
        while b < ST_NBOUNDS and seconds > ST_BOUND[b]:
            b += 1
        st_add(&r.bucket[b], 1)
        st_add(&r.count, 1)
        st_add_d(&r.sum, seconds)
        if bytes_in > 0:
            st_add(&r.bytes_in, <uint64_t>bytes_in)
        if bytes_out > 0:
            st_add(&r.bytes_out, <uint64_t>bytes_out)
        if cluster_slot >= 0:
            if cluster_slot >= self.max_clusters:
                cluster_slot = ST_OTHER
            st_add(&_cluster(self, worker, cluster_slot).status[c], 1)

    cdef void set_gauge(self, int worker, int which, long value) noexcept nogil:
        if 0 <= worker < self.max_workers and 0 <= which < ST_NGAUGES:
            st_seti(&_worker(self, worker).gauges[which], value)

    cdef void add_gauge(self, int worker, int which, long delta) noexcept nogil:
        if 0 <= worker < self.max_workers and 0 <= which < ST_NGAUGES:
            st_addi(&_worker(self, worker).gauges[which], delta)

    cdef void route_limited(self, int worker, int route_slot) noexcept nogil:
        cdef st_route* r = _route_row(self, worker, route_slot)
        if r != NULL:
            st_add(&r.rate_limited, 1)

    cdef void route_filter_failed(self, int worker, int route_slot) noexcept nogil:
        cdef st_route* r = _route_row(self, worker, route_slot)
        if r != NULL:
            st_add(&r.filter_errors, 1)

    cdef void endpoint_failed(self, int worker, int endpoint_slot, bint reset) noexcept nogil:
        cdef st_endpoint* e = _endpoint_row(self, worker, endpoint_slot)
        if e == NULL:
            return
        if reset:
            st_add(&e.resets, 1)
        else:
            st_add(&e.connect_failures, 1)

    def endpoint_failed_py(self, int worker, int endpoint_slot, bint reset):
        _check_worker(self, worker)
        self.endpoint_failed(worker, endpoint_slot, reset)

    def route_limited_py(self, int worker, int route_slot):
        _check_worker(self, worker)
        self.route_limited(worker, route_slot)

    def count_event_py(self, int worker, str name):
        """One more event `name` (of EVENT_NAMES) of `worker`, for events Python code sees
        (a failed TLS handshake: engine/policy/tls_server.py)."""
        _check_worker(self, worker)
        self.count_event(worker, EVENT_NAMES.index(name))

    cdef void count_event(self, int worker, int which) noexcept nogil:
        if 0 <= worker < self.max_workers and 0 <= which < ST_NEVENTS:
            st_add(&_worker(self, worker).events[which], 1)

    cdef void endpoint_begin(self, int worker, int endpoint_slot) noexcept nogil:
        cdef st_endpoint* e = _endpoint_row(self, worker, endpoint_slot)
        if e != NULL:
            st_addi(&e.active, 1)
            st_add(&e.requests, 1)

    cdef void endpoint_end(self, int worker, int endpoint_slot) noexcept nogil:
        cdef st_endpoint* e = _endpoint_row(self, worker, endpoint_slot)
        if e != NULL:
            st_addi(&e.active, -1)

    cdef void cluster_begin(self, int worker, int cluster_slot, bint retry) noexcept nogil:
        cdef st_cluster* c = _cluster_row(self, worker, cluster_slot)
        if c != NULL:
            st_addi(&c.active_retries if retry else &c.active, 1)

    cdef void cluster_end(self, int worker, int cluster_slot, bint retry) noexcept nogil:
        cdef st_cluster* c = _cluster_row(self, worker, cluster_slot)
        if c != NULL:
            st_addi(&c.active_retries if retry else &c.active, -1)

    cdef long cluster_active(self, int cluster_slot, bint retry) noexcept nogil:
        cdef long n = 0
        cdef uint32_t w, hw = st_ld_count(&_hdr(self).workers_hw)
        cdef st_cluster* c
        if cluster_slot < 0 or cluster_slot >= self.max_clusters:
            return 0
        if hw > <uint32_t>self.max_workers:
            hw = <uint32_t>self.max_workers
        for w in range(hw):
            c = _cluster(self, <int>w, cluster_slot)
            n += st_ldi(&c.active_retries if retry else &c.active)
        return n

    cdef void cluster_event(self, int worker, int cluster_slot, int which) noexcept nogil:
        cdef st_cluster* c = _cluster_row(self, worker, cluster_slot)
        if c != NULL and 0 <= which < ST_CE_COUNT:
            st_add(&c.events[which], 1)

    cdef void record_cluster(self, int worker, int cluster_slot, int status) noexcept nogil:
        cdef st_cluster* c = _cluster_row(self, worker, cluster_slot)
        if c != NULL:
            st_add(&c.status[_status_class(status)], 1)

    cdef void route_fault(self, int worker, int route_slot, bint abort) noexcept nogil:
        cdef st_route* r = _route_row(self, worker, route_slot)
        if r != NULL:
            st_add(&r.faults[1 if abort else 0], 1)

    def cluster_begin_py(self, int worker, int cluster_slot, bint retry=False):
        _check_worker(self, worker)
        self.cluster_begin(worker, cluster_slot, retry)

    def cluster_end_py(self, int worker, int cluster_slot, bint retry=False):
        _check_worker(self, worker)
        self.cluster_end(worker, cluster_slot, retry)

    def cluster_active_py(self, int cluster_slot, bint retry=False):
        """Requests (or retries) in flight to the cluster, summed over every worker."""
        return self.cluster_active(cluster_slot, retry)

    def cluster_event_py(self, int worker, int cluster_slot, str name):
        """One more cluster event `name` (of CLUSTER_EVENT_NAMES)."""
        _check_worker(self, worker)
        self.cluster_event(worker, cluster_slot, CLUSTER_EVENT_NAMES.index(name))

    def route_fault_py(self, int worker, int route_slot, bint abort):
        _check_worker(self, worker)
        self.route_fault(worker, route_slot, abort)

    def set_loop_lag(self, int worker, double seconds):
        """The worker's recent peak event-loop lag (engine/runtime/overload.py publishes the
        largest sample of the last 5-10 s, so that a scrape sees a stall)."""
        _check_worker(self, worker)
        self.set_gauge(worker, ST_GAUGE_LOOP_LAG_US, <long>(seconds * 1e6))

    cdef void heartbeat(self, int worker, double now) noexcept nogil:
        if 0 <= worker < self.max_workers:
            st_st_d(&_worker(self, worker).heartbeat, now)

    cdef void h2_counts(self, int worker, int side, const int64_t* deltas) noexcept nogil:
        cdef st_h2side* h = _h2side(self, worker, side)
        cdef int i
        if h == NULL:
            return
        for i in range(ST_H2_NCOUNTERS):
            if deltas[i] > 0:
                st_add(&h.counts[i], <uint64_t>deltas[i])

    cdef void h2_flush(self, int worker, int side, const int64_t* totals,
                       int64_t* flushed) noexcept nogil:
        cdef int64_t d[ST_H2_NCOUNTERS]
        cdef int i
        for i in range(ST_H2_NCOUNTERS):
            d[i] = totals[i] - flushed[i]
            flushed[i] = totals[i]
        self.h2_counts(worker, side, d)

    cdef void h2_reset(self, int worker, int side, bint sent, int code) noexcept nogil:
        cdef st_h2side* h = _h2side(self, worker, side)
        if h != NULL:
            st_add(&h.resets[1 if sent else 0][_h2_code(code)], 1)

    cdef void h2_goaway(self, int worker, int side, bint sent, int code) noexcept nogil:
        cdef st_h2side* h = _h2side(self, worker, side)
        if h != NULL:
            st_add(&h.goaways[1 if sent else 0][_h2_code(code)], 1)

    cdef void h2_gauge(self, int worker, int side, int which, long delta) noexcept nogil:
        cdef st_h2side* h = _h2side(self, worker, side)
        if h != NULL and 0 <= which < ST_H2_NGAUGES:
            st_addi(&h.gauges[which], delta)

    # --- Python surface of the hot path (tests, embedding, the policy layer) -----------------

    def h2_counts_py(self, int worker, int side, deltas):
        """h2_counts() from Python: `deltas` is a {H2_COUNTER_NAMES name: n} dict or a sequence
        of ST_H2_NCOUNTERS ints in that order."""
        _check_worker(self, worker)
        cdef int64_t d[ST_H2_NCOUNTERS]
        cdef int i
        if isinstance(deltas, dict):
            unknown = set(deltas) - set(H2_COUNTER_NAMES)
            if unknown:
                raise ValueError(f"not HTTP/2 counters: {sorted(unknown)}")
            values = [deltas.get(name, 0) for name in H2_COUNTER_NAMES]
        else:
            values = list(deltas)
            if len(values) != ST_H2_NCOUNTERS:
                raise ValueError(f"{ST_H2_NCOUNTERS} deltas, got {len(values)}")
        for i in range(ST_H2_NCOUNTERS):
            d[i] = values[i]
        self.h2_counts(worker, side, d)

    def h2_flush_py(self, int worker, int side, totals, flushed):
        """h2_flush() from Python: `totals` and `flushed` are sequences of ST_H2_NCOUNTERS ints
        (H2Connection.counters().values(), and what the last call returned); returns the new
        `flushed`."""
        _check_worker(self, worker)
        cdef int64_t t[ST_H2_NCOUNTERS]
        cdef int64_t f[ST_H2_NCOUNTERS]
        cdef int i
        totals, flushed = list(totals), list(flushed)
        if len(totals) != ST_H2_NCOUNTERS or len(flushed) != ST_H2_NCOUNTERS:
            raise ValueError(f"{ST_H2_NCOUNTERS} totals and {ST_H2_NCOUNTERS} flushed counts")
        for i in range(ST_H2_NCOUNTERS):
            t[i], f[i] = totals[i], flushed[i]
        self.h2_flush(worker, side, t, f)
        return [f[i] for i in range(ST_H2_NCOUNTERS)]

    def h2_reset_py(self, int worker, int side, bint sent, int code):
        _check_worker(self, worker)
        self.h2_reset(worker, side, sent, code)

    def h2_goaway_py(self, int worker, int side, bint sent, int code):
        _check_worker(self, worker)
        self.h2_goaway(worker, side, sent, code)

    def h2_gauge_py(self, int worker, int side, int which, long delta):
        _check_worker(self, worker)
        self.h2_gauge(worker, side, which, delta)


    def record_py(self, int worker, int route_slot, int cluster_slot, int status, double seconds,
                  long bytes_in=0, long bytes_out=0):
        _check_worker(self, worker)
        self.record(worker, route_slot, cluster_slot, status, seconds, bytes_in, bytes_out)

    def set_gauge_py(self, int worker, int which, long value):
        _check_worker(self, worker)
        self.set_gauge(worker, which, value)

    def add_gauge_py(self, int worker, int which, long delta):
        _check_worker(self, worker)
        self.add_gauge(worker, which, delta)

    def endpoint_begin_py(self, int worker, int endpoint_slot):
        _check_worker(self, worker)
        self.endpoint_begin(worker, endpoint_slot)

    def endpoint_end_py(self, int worker, int endpoint_slot):
        _check_worker(self, worker)
        self.endpoint_end(worker, endpoint_slot)

    def beat(self, int worker, now=None):
        """Set the worker's heartbeat to `now` (CLOCK_MONOTONIC seconds; default: read it)."""
        _check_worker(self, worker)
        self.heartbeat(worker, monotonic_now() if now is None else <double>now)

    # --- names -> slots (link time) ----------------------------------------------------------

    def route_slot(self, name):
        """The slot of route `name`, the same in every process and every reload."""
        cdef bytes b = _name_bytes(name)
        cdef st_header* h = _hdr(self)
        return _register(h, _route_names(self), &h.nroutes, <uint32_t>self.max_routes,
                         PyBytes_AS_STRING(b), <uint32_t>PyBytes_GET_SIZE(b))

    def cluster_slot(self, name):
        """The slot of cluster `name` (see route_slot)."""
        cdef bytes b = _name_bytes(name)
        cdef st_header* h = _hdr(self)
        return _register(h, _cluster_names(self), &h.nclusters, <uint32_t>self.max_clusters,
                         PyBytes_AS_STRING(b), <uint32_t>PyBytes_GET_SIZE(b))

    def endpoint_slot(self, name):
        """The slot of an endpoint, named e.g. "cluster/host:port" (see route_slot)."""
        cdef bytes b = _name_bytes(name)
        cdef st_header* h = _hdr(self)
        return _register(h, _endpoint_names(self), &h.nendpoints, <uint32_t>self.max_endpoints,
                         PyBytes_AS_STRING(b), <uint32_t>PyBytes_GET_SIZE(b))

    def listener_slot(self, name):
        """The slot of listener `name` (see route_slot); at most 64, then the shared "_other"."""
        cdef bytes b = _name_bytes(name)
        cdef st_header* h = _hdr(self)
        return _register(h, _listener_names(self), &h.nlisteners, ST_MAX_LISTENERS,
                         PyBytes_AS_STRING(b), <uint32_t>PyBytes_GET_SIZE(b))

    cdef void listener_connections(self, int worker, int listener_slot, long delta) noexcept nogil:
        if worker < 0 or worker >= self.max_workers:
            return
        if listener_slot < 0 or listener_slot >= ST_MAX_LISTENERS:
            listener_slot = ST_OTHER
        st_addi(_listener_conns(self, worker, listener_slot), delta)

    def listener_connections_py(self, int worker, int listener_slot, long delta):
        _check_worker(self, worker)
        self.listener_connections(worker, listener_slot, delta)

    def route_names(self):
        """Registered route names, indexed by slot."""
        return _names(_route_names(self), st_ld_count(&_hdr(self).nroutes))

    def cluster_names(self):
        return _names(_cluster_names(self), st_ld_count(&_hdr(self).nclusters))

    def endpoint_names(self):
        return _names(_endpoint_names(self), st_ld_count(&_hdr(self).nendpoints))

    def _hold_name_lock(self):
        """Test hook: take the name tables' lock and never release it."""
        st_lock(_hdr(self))

    @property
    def lock_steals(self):
        """Name-table locks taken from a dead (or stuck) holder."""
        return st_ld(&_hdr(self).lock_steals)

    # --- worker slots ------------------------------------------------------------------------

    def attach_worker(self, int worker, pid=None):
        """The process serving slot `worker` starts (in the worker, right after fork): its gauges
        and in-flight counts start from zero; its counters go on from where the slot was."""
        _check_worker(self, worker)
        cdef st_worker* w = _worker(self, worker)
        _reset_live(self, worker)
        st_raise_hw(&_hdr(self).workers_hw, <uint32_t>(worker + 1))
        st_set(&w.used, 1)
        st_set(&w.pid, <uint64_t>(os.getpid() if pid is None else pid))

    def release_worker(self, int worker):
        """The process of slot `worker` is gone (the supervisor, when it reaps it): it no longer
        counts as a worker, and what it had in flight no longer counts as active."""
        _check_worker(self, worker)
        st_set(&_worker(self, worker).pid, 0)
        _reset_live(self, worker)

    def set_version(self, int worker, version):
        """The snapshot version slot `worker` now serves (str or bytes, at most 64 bytes kept)."""
        _check_worker(self, worker)
        cdef bytes b = (b"" if version is None else
                        version.encode("utf-8") if isinstance(version, str) else bytes(version))
        cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
        if n > ST_VERSION_BYTES:
            n = ST_VERSION_BYTES
        st_write_version(_worker(self, worker), PyBytes_AS_STRING(b), <uint32_t>n)

    def worker_versions(self):
        """{worker slot: snapshot version} of the slots with a live process."""
        cdef int i
        out = {}
        for i in range(self.max_workers):
            if st_ld(&_worker(self, i).pid) != 0:
                out[i] = _version_of(self, i)
        return out

    def workers(self):
        """One dict per slot with a live process: slot, pid, version, heartbeat, gauges."""
        cdef int i
        cdef st_worker* w
        out = []
        for i in range(self.max_workers):
            w = _worker(self, i)
            if st_ld(&w.pid) == 0:
                continue
            out.append({
                "slot": i,
                "pid": st_ld(&w.pid),
                "version": _version_of(self, i),
                "heartbeat": st_ld_d(&w.heartbeat),
                "active_connections": st_ldi(&w.gauges[ST_GAUGE_CONNECTIONS]),
                "active_requests": st_ldi(&w.gauges[ST_GAUGE_REQUESTS]),
                "loop_lag": st_ldi(&w.gauges[ST_GAUGE_LOOP_LAG_US]) / 1e6,
            })
        return out

    # --- the read side -----------------------------------------------------------------------

    def aggregate(self):
        """Everything summed over the workers. Counters include every slot that ever had a
        process; gauges only slots with a live one.

        {"routes": {name: {"requests": {"other"|"1xx".."5xx": n}, "buckets": [n] * 15 (per
                    bucket, upper bounds BOUNDS), "count": n, "sum": seconds,
                    "bytes_in": n, "bytes_out": n}},
         "clusters": {name: {"requests": {...}}},
         "endpoints": {name: {"active": n, "requests": n, "connect_failures": n, "resets": n}},
         "listeners": {name: {"active_connections": n}},
         "gauges": {"active_connections": n, "active_requests": n},
         "events": {EVENT_NAMES[i]: n},
         "http2": {"downstream"|"upstream": {"counters": {H2_COUNTER_NAMES[i]: n},
                   "resets": {"sent"|"received": {H2_CODES[i]: n}}, "goaways": {likewise},
                   "active_connections": n, "active_streams": n}},
         "workers": live worker count}
        """
        cdef st_header* h = _hdr(self)
        cdef uint32_t nr = st_ld_count(&h.nroutes), nc = st_ld_count(&h.nclusters)
        cdef uint32_t ne = st_ld_count(&h.nendpoints)
        cdef int w, nused = 0, nlive = 0, k
        cdef uint32_t i
        cdef int used[ST_MAX_WORKERS]
        cdef st_worker* wk
        cdef int64_t conns = 0, reqs = 0, lag = 0
        cdef uint64_t events[ST_NEVENTS]
        cdef uint64_t status[ST_NCLASSES]
        cdef uint64_t bucket[ST_NBUCKETS]
        cdef uint64_t count, bin_, bout, ereq, limited, efail, ereset, ferr, fdel, fab
        cdef int64_t eact
        cdef double total
        cdef st_route* r
        cdef st_cluster* c
        cdef st_endpoint* e
        memset(events, 0, sizeof(events))
        for w in range(self.max_workers):
            wk = _worker(self, w)
            if st_ld(&wk.used) != 0:
                used[nused] = w
                nused += 1
                for k in range(ST_NEVENTS):
                    events[k] += st_ld(&wk.events[k])
            if st_ld(&wk.pid) != 0:
                nlive += 1
                conns += st_ldi(&wk.gauges[ST_GAUGE_CONNECTIONS])
                reqs += st_ldi(&wk.gauges[ST_GAUGE_REQUESTS])
                lag = max(lag, st_ldi(&wk.gauges[ST_GAUGE_LOOP_LAG_US]))

        routes = {}
        route_names = _names(_route_names(self), nr)
        for i in range(nr):
            memset(status, 0, sizeof(status))
            memset(bucket, 0, sizeof(bucket))
            count = bin_ = bout = limited = ferr = fdel = fab = 0
            total = 0.0
            for k in range(nused):
                r = _route(self, used[k], i)
                for w in range(ST_NCLASSES):
                    status[w] += st_ld(&r.status[w])
                for w in range(ST_NBUCKETS):
                    bucket[w] += st_ld(&r.bucket[w])
                count += st_ld(&r.count)
                total += st_ld_d(&r.sum)
                bin_ += st_ld(&r.bytes_in)
                bout += st_ld(&r.bytes_out)
                limited += st_ld(&r.rate_limited)
                ferr += st_ld(&r.filter_errors)
                fdel += st_ld(&r.faults[0])
                fab += st_ld(&r.faults[1])
            routes[route_names[i]] = {
                "rate_limited": limited, "filter_errors": ferr,
                "faults": {"delay": fdel, "abort": fab},
                "requests": _classes(status),
                "buckets": [bucket[w] for w in range(ST_NBUCKETS)],
                "count": count, "sum": total, "bytes_in": bin_, "bytes_out": bout,
            }

        clusters = {}
        cluster_names = _names(_cluster_names(self), nc)
        cdef uint64_t cev[ST_CE_COUNT]
        cdef int64_t cact, cretr
        for i in range(nc):
            memset(status, 0, sizeof(status))
            memset(cev, 0, sizeof(cev))
            cact = cretr = 0
            for k in range(nused):
                c = _cluster(self, used[k], i)
                for w in range(ST_NCLASSES):
                    status[w] += st_ld(&c.status[w])
                for w in range(ST_CE_COUNT):
                    cev[w] += st_ld(&c.events[w])
                if st_ld(&_worker(self, used[k]).pid) != 0:
                    cact += st_ldi(&c.active)
                    cretr += st_ldi(&c.active_retries)
            clusters[cluster_names[i]] = {
                "requests": _classes(status), "active_requests": cact,
                "active_retries": cretr,
                "events": {CLUSTER_EVENT_NAMES[w]: cev[w] for w in range(ST_CE_COUNT)}}

        endpoints = {}
        endpoint_names = _names(_endpoint_names(self), ne)
        for i in range(ne):
            eact = 0
            ereq = efail = ereset = 0
            for k in range(nused):
                e = _endpoint(self, used[k], i)
                if st_ld(&_worker(self, used[k]).pid) != 0:
                    eact += st_ldi(&e.active)
                ereq += st_ld(&e.requests)
                efail += st_ld(&e.connect_failures)
                ereset += st_ld(&e.resets)
            endpoints[endpoint_names[i]] = {"active": eact, "requests": ereq,
                                            "connect_failures": efail, "resets": ereset}

        listeners = {}
        cdef uint32_t nl = st_ld_count(&h.nlisteners)
        cdef int64_t lconns
        listener_names = _names(_listener_names(self), nl)
        for i in range(nl):
            lconns = 0
            for k in range(nused):
                if st_ld(&_worker(self, used[k]).pid) != 0:
                    lconns += st_ldi(_listener_conns(self, used[k], i))
            listeners[listener_names[i]] = {"active_connections": lconns}

        return {
            "http2": _h2_aggregate(self, used, nused),
            "routes": routes,
            "clusters": clusters,
            "endpoints": endpoints,
            "listeners": listeners,
            "gauges": {"active_connections": conns, "active_requests": reqs},
            "loop_lag_max": lag / 1e6,        # seconds: the most lagging live worker's recent peak
            "events": {EVENT_NAMES[k]: events[k] for k in range(ST_NEVENTS)},
            "workers": nlive,
        }

    def __repr__(self):
        return (f"<Stats workers={self.max_workers} routes={self.max_routes} "
                f"clusters={self.max_clusters} endpoints={self.max_endpoints}>")


cdef dict _h2_aggregate(Stats s, int* used, int nused):
    """aggregate()'s "http2": both sides summed over the workers that ever attached (gauges:
    over live ones)."""
    cdef uint64_t counts[ST_H2_NCOUNTERS]
    cdef uint64_t resets[2][ST_H2_CODES]
    cdef uint64_t goaways[2][ST_H2_CODES]
    cdef int64_t gauges[ST_H2_NGAUGES]
    cdef int side, k, i, d
    cdef st_h2side* h
    out = {}
    for side in range(ST_H2_SIDES):
        memset(counts, 0, sizeof(counts))
        memset(resets, 0, sizeof(resets))
        memset(goaways, 0, sizeof(goaways))
        memset(gauges, 0, sizeof(gauges))
        for k in range(nused):
            h = _h2(s, used[k], side)
            for i in range(ST_H2_NCOUNTERS):
                counts[i] += st_ld(&h.counts[i])
            for d in range(2):
                for i in range(ST_H2_CODES):
                    resets[d][i] += st_ld(&h.resets[d][i])
                    goaways[d][i] += st_ld(&h.goaways[d][i])
            if st_ld(&_worker(s, used[k]).pid) != 0:
                for i in range(ST_H2_NGAUGES):
                    gauges[i] += st_ldi(&h.gauges[i])
        out[H2_SIDES[side]] = {
            "counters": {H2_COUNTER_NAMES[i]: counts[i] for i in range(ST_H2_NCOUNTERS)},
            "resets": {"received": {H2_CODES[i]: resets[0][i] for i in range(ST_H2_CODES)},
                       "sent": {H2_CODES[i]: resets[1][i] for i in range(ST_H2_CODES)}},
            "goaways": {"received": {H2_CODES[i]: goaways[0][i] for i in range(ST_H2_CODES)},
                        "sent": {H2_CODES[i]: goaways[1][i] for i in range(ST_H2_CODES)}},
            "active_connections": gauges[ST_H2_GAUGE_CONNECTIONS],
            "active_streams": gauges[ST_H2_GAUGE_STREAMS],
        }
    return out


# the ST_EV_* counters by name, in index order (metrics.py exports them)
EVENT_NAMES = ("upstream_extra_data", "accept_failed", "timeout_header", "timeout_body",
               "timeout_send", "timeout_idle", "connection_limit", "tls_handshake_failed",
               "overload_shed")
# the ST_CE_* counters of a cluster by name, in index order
CLUSTER_EVENT_NAMES = ("retry_connect_failure", "retry_reset", "retry_per_try_timeout",
                       "retry_refused_stream", "retry_gateway_error", "retry_5xx",
                       "retry_retriable_status", "retry_overflow", "retry_success",
                       "overflow_requests", "overflow_pending", "mirror_sent", "mirror_failed",
                       "per_try_timeout", "spare_14", "spare_15")
RETRY_REASONS = tuple(n[len("retry_"):] for n in CLUSTER_EVENT_NAMES[:7])


def endpoint_key(cluster, address):
    """The name an endpoint is registered under: "cluster/host:port" (cluster names have no "/")."""
    return f"{cluster}/{address}"


def monotonic():
    """clock_gettime(CLOCK_MONOTONIC) in seconds: the clock of heartbeats."""
    return monotonic_now()

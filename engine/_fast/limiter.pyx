# cython: language_level=3
"""Token buckets shared by every worker of a node: the compiled core of `rate_limit`.

Theory of operation
===================

Who calls it. The supervisor creates one `SharedBuckets` table before it forks the workers (an
anonymous MAP_SHARED mapping, so every worker sees the same memory; with `path=` it is a named
file, e.g. under /dev/shm, that a separately started process opens with `SharedBuckets.attach`).
`link.py` builds one `Limiter(buckets, limit_id, rate, burst)` per configured `rate_limit`; the
matched route points at it, and `proxy` calls `Limiter.take(key, key_len, now, &result)` once per
request, with `key` the bytes the limit is `per` (client address, header value, or empty for a
per-route limit) and `now` the loop turn's CLOCK_MONOTONIC reading. CLOCK_MONOTONIC is system-wide,
so the `now` of different processes on one node are comparable. `format_headers` turns the result
into the `RateLimit-*` / `Retry-After` lines of the response (a 429 when refused).

What it computes. A token bucket per (limit_id, key): capacity `burst`, refilled continuously at
`rate` tokens/s, full when first seen; a request takes one token and is refused when less than one
is left (up to a rounding tolerance, LIM_TOKEN_EPS). After a take with `t` tokens left
(t in [0, burst]):
    remaining   = floor(t)
    reset       = (burst - t) / rate          seconds until full again
    retry_after = (1 - t) / rate if refused   seconds until one token (0 when admitted)
A `now` older than the bucket's last update (another worker read its clock later in its loop turn)
refills nothing and does not move time back; reset and retry_after are then measured from `now`.

The table. Fixed size, in shared memory: a 64-byte header (magic, layout, counters) and a power of
two of 64-byte slots {key_hash, tokens, last, full_at, lock}. One slot per cache line: two hot
keys never share a line, so their locks do not bounce between cores. A key is its 64-bit XXH64 of
the key bytes seeded with limit_id (0 is reserved for "empty" and maps to 1; two different keys
colliding share a bucket, with probability ~ n^2 / 2^65). Open addressing: the key lives in one of
the LIM_PROBE slots from `hash & mask` (wrapping). There is no deletion, so a lookup reads the
whole window unless it meets the key. `full_at = last + (burst - tokens) / rate` is the time the
bucket is full again; it is what eviction compares, because slots in one window may belong to
limits with different rates.

Eviction (when the key is not in its window). Take over, in this order: the first empty slot; else
the first slot with full_at <= now (a full bucket carries no information: recreating it full later
gives the same answers); else the slot with the smallest full_at, the bucket closest to full (the
fewest tokens owed, counted in time). The last case loses information: the evicted key comes back
with a full bucket and may be admitted up to `burst` more requests than it should. That is the one
way this limiter fails open; it happens only when more than LIM_PROBE keys that are all still
refilling share a window, i.e. the table is too small for the live key set. It is counted
(`SharedBuckets.live_evictions`, for the admin stats) so the operator can size `nslots`.

Concurrency. Each slot is updated under its own spinlock, a 32-bit word holding the holder's pid
(0 = free), taken with an acquire CAS and released with a CAS back from our pid to 0 (release
order). The critical section is a few loads, one multiply and a few stores. A lock-free scan of
the window finds the slot; the key is checked again under the lock (the slot may have been taken
over between the scan and the lock; then the lookup starts again, at most LIM_ATTEMPTS times, and
the last attempt takes over its victim unconditionally so a take always ends). Two processes
inserting the same new key at the same moment can both create it (in two slots of the window);
the narrowing re-scan under the victim's lock makes that rare, and the cost is at most one extra
admitted request per racing process, after which every lookup finds the first copy and the other
is reclaimed as a full bucket.

A worker that dies. A worker killed inside the critical section leaves its pid in the lock word.
A waiter spins LIM_SPIN_PAUSE times with a pause instruction, then yields the CPU; every
LIM_CHECK_EVERY yields it checks the holder with kill(pid, 0), and steals the lock (CAS from the
dead pid to its own) when the holder is gone (ESRCH). A holder that is alive but stuck (stopped,
or a reused pid of a dead holder) is stolen from after LIM_STEAL_YIELDS yields. Stealing cannot
corrupt the table: every field is a naturally aligned 8-byte value written whole, so the worst case
is one bucket with a torn (key, tokens, last) triple, i.e. one key's level off by at most a burst;
levels are clamped to [0, burst] on every read. Steals are counted (`SharedBuckets.lock_steals`).
The lock word is a pid of this pid namespace: a process attaching from another namespace may
mis-judge liveness; it still steals after LIM_STEAL_YIELDS. The pid is cached and refreshed in a
pthread_atfork child handler (os.fork and multiprocessing's fork run it). One thread per process
takes from a given table (each worker is a single event loop); threads of one process share a pid,
which the lock tolerates except for the dead-holder check.

What it must never do: read a clock (the caller passes `now`), allocate or touch Python objects in
`take`, raise from `take`, or block for longer than a bounded spin (the one unbounded case, a live
holder, is cut by the steal). It does not validate meaning: the policy layer owns error messages;
the constructors refuse only values that would poison the shared table (rate <= 0, burst < 1).

Limits of the design. Per node only: a global limit across machines belongs in Redis (DESIGN.md).
A reload keeps a limit's buckets when it keeps its limit_id (route name + limit config hash).
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.errno cimport errno
from libc.math cimport INFINITY, ceil, floor
from libc.stdint cimport uint32_t, uint64_t
from libc.stdio cimport snprintf
from posix.fcntl cimport O_CREAT, O_EXCL, O_RDWR, open as c_open
from posix.mman cimport MAP_ANONYMOUS, MAP_FAILED, MAP_SHARED, PROT_READ, PROT_WRITE, mmap, munmap
from posix.stat cimport fstat, struct_stat
from posix.unistd cimport close as c_close, ftruncate, unlink as c_unlink

import os

# ---- tunables (consts.pxi will own these once it exists) -------------------------------------
cdef enum:
    LIM_PROBE = 8             # probe window length, slots
    LIM_ATTEMPTS = 4          # lookups before the last one takes its victim unconditionally
    LIM_SPIN_PAUSE = 128      # pause-spins on a held lock before yielding the CPU
    LIM_CHECK_EVERY = 16      # yields between two kill(holder, 0) liveness checks
    LIM_STEAL_YIELDS = 32768  # yields after which a live but stuck holder is stolen from
    LIM_MAX_SLOTS = 1 << 28   # 16 GiB of table: a guard against nonsense, not a tuning knob

# A token is "there" when the level is within this of 1: refill is `elapsed * rate` in doubles, and
# a client sending at exactly `rate` must not be refused for a rounding error (at now ~ 1e7 s of
# uptime a double's step is ~2e-9 s, i.e. 2e-6 tokens at rate 1000).
cdef double LIM_TOKEN_EPS = 1e-6

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    #include <errno.h>
    #include <signal.h>
    #include <sched.h>
    #include <time.h>
    #include <unistd.h>
    #include <pthread.h>

    #define LIM_MAGIC 0x3142544C43495553ULL   /* "SUICLTB1" little-endian: sluice buckets v1 */
    #define LIM_VERSION 1u

    typedef struct {
        uint64_t magic;            /* written last (release) when a named table is created */
        uint32_t version;
        uint32_t slot_size;
        uint64_t nslots;
        uint32_t probe;
        uint32_t _pad0;
        uint64_t inserts;          /* keys that got a slot (new, or returning after eviction) */
        uint64_t live_evictions;   /* takeovers of a bucket that was not full: fail-open events */
        uint64_t lock_steals;      /* locks taken from a dead or stuck holder */
        uint64_t _pad1;
    } lim_header;

    typedef struct {
        uint64_t key;              /* 0 = empty */
        double tokens;             /* level at `last` */
        double last;               /* CLOCK_MONOTONIC seconds of the last update */
        double full_at;            /* last + (burst - tokens) / rate: eviction order */
        uint32_t lock;             /* 0 = free, else the holder's pid */
        uint32_t _pad0;
        uint64_t _pad1[3];
    } lim_slot;

    typedef char lim_header_is_64[(sizeof(lim_header) == 64) ? 1 : -1];
    typedef char lim_slot_is_64[(sizeof(lim_slot) == 64) ? 1 : -1];

    /* ---- atomics (GCC/Clang __atomic builtins; shared memory across processes) ---- */
    static inline uint64_t lim_ld_key(lim_slot *s) {
        return __atomic_load_n(&s->key, __ATOMIC_RELAXED);
    }
    static inline void lim_st_key(lim_slot *s, uint64_t v) {
        __atomic_store_n(&s->key, v, __ATOMIC_RELAXED);
    }
    static inline double lim_ld_d(double *p) {
        double v; __atomic_load(p, &v, __ATOMIC_RELAXED); return v;
    }
    static inline void lim_st_d(double *p, double v) {
        __atomic_store(p, &v, __ATOMIC_RELAXED);
    }
    static inline void lim_count(uint64_t *p) {
        __atomic_fetch_add(p, 1, __ATOMIC_RELAXED);
    }
    static inline uint64_t lim_ld_u64(uint64_t *p) {
        return __atomic_load_n(p, __ATOMIC_RELAXED);
    }
    static inline void lim_publish_magic(lim_header *h) {
        __atomic_store_n(&h->magic, LIM_MAGIC, __ATOMIC_RELEASE);
    }
    static inline uint64_t lim_ld_magic(lim_header *h) {
        return __atomic_load_n(&h->magic, __ATOMIC_ACQUIRE);
    }

    static inline void lim_cpu_relax(void) {
    #if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
    #elif defined(__aarch64__)
        __asm__ __volatile__("yield");
    #else
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
    #endif
    }

    /* ---- our pid, refreshed in forked children ---- */
    static uint32_t lim_pid = 0;
    static void lim_atfork_child(void) { lim_pid = (uint32_t)getpid(); }
    static int lim_init_pid(void) {
        lim_pid = (uint32_t)getpid();
        return pthread_atfork(NULL, NULL, lim_atfork_child);
    }

    /* Take the slot's lock. Returns 1 if it was stolen from a dead or stuck holder, else 0. */
    static int lim_lock(lim_slot *s, lim_header *hdr, uint32_t spin_pause, uint32_t check_every,
                        uint32_t steal_yields) {
        uint32_t me = lim_pid, spins = 0, yields = 0;
        for (;;) {
            uint32_t cur = __atomic_load_n(&s->lock, __ATOMIC_RELAXED);
            if (cur == 0) {
                if (__atomic_compare_exchange_n(&s->lock, &cur, me, 0,
                                                __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
                    return 0;
                continue;
            }
            if (spins < spin_pause) { spins++; lim_cpu_relax(); continue; }
            yields++;
            if (yields >= steal_yields ||
                    (yields % check_every == 0 && cur != me &&
                     kill((pid_t)cur, 0) == -1 && errno == ESRCH)) {
                if (__atomic_compare_exchange_n(&s->lock, &cur, me, 0,
                                                __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
                    lim_count(&hdr->lock_steals);
                    return 1;
                }
                spins = 0; yields = 0;     /* the lock changed hands: wait for the new holder */
                continue;
            }
            sched_yield();
        }
    }
    /* Release, unless the lock was stolen from us meanwhile (then it is not ours to clear). */
    static inline void lim_unlock(lim_slot *s) {
        uint32_t me = lim_pid;
        __atomic_compare_exchange_n(&s->lock, &me, 0, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
    }
    static inline uint32_t lim_owner(lim_slot *s) {
        return __atomic_load_n(&s->lock, __ATOMIC_RELAXED);
    }

    /* ---- XXH64 (Yann Collet's xxHash, 64-bit variant), little-endian reads ---- */
    #define LIM_P1 11400714785074694791ULL
    #define LIM_P2 14029467366897019727ULL
    #define LIM_P3 1609587929392839161ULL
    #define LIM_P4 9650029242287828579ULL
    #define LIM_P5 2870177450012600261ULL
    static inline uint64_t lim_rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
    static inline uint64_t lim_rd64(const unsigned char *p) {
        uint64_t v; memcpy(&v, p, 8);
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        v = __builtin_bswap64(v);
    #endif
        return v;
    }
    static inline uint32_t lim_rd32(const unsigned char *p) {
        uint32_t v; memcpy(&v, p, 4);
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        v = __builtin_bswap32(v);
    #endif
        return v;
    }
    static inline uint64_t lim_round(uint64_t acc, uint64_t in) {
        acc += in * LIM_P2; acc = lim_rotl(acc, 31); return acc * LIM_P1;
    }
    static inline uint64_t lim_merge(uint64_t acc, uint64_t v) {
        acc ^= lim_round(0, v); return acc * LIM_P1 + LIM_P4;
    }
    static uint64_t lim_xxh64(const void *data, size_t len, uint64_t seed) {
        const unsigned char *p = (const unsigned char *)data, *end = p + len;
        uint64_t h;
        if (len >= 32) {
            const unsigned char *limit = end - 32;
            uint64_t v1 = seed + LIM_P1 + LIM_P2, v2 = seed + LIM_P2, v3 = seed, v4 = seed - LIM_P1;
            do {
                v1 = lim_round(v1, lim_rd64(p)); p += 8;
                v2 = lim_round(v2, lim_rd64(p)); p += 8;
                v3 = lim_round(v3, lim_rd64(p)); p += 8;
                v4 = lim_round(v4, lim_rd64(p)); p += 8;
            } while (p <= limit);
            h = lim_rotl(v1, 1) + lim_rotl(v2, 7) + lim_rotl(v3, 12) + lim_rotl(v4, 18);
            h = lim_merge(h, v1); h = lim_merge(h, v2); h = lim_merge(h, v3); h = lim_merge(h, v4);
        } else {
            h = seed + LIM_P5;
        }
        h += (uint64_t)len;
        while (p + 8 <= end) {
            h ^= lim_round(0, lim_rd64(p)); h = lim_rotl(h, 27) * LIM_P1 + LIM_P4; p += 8;
        }
        if (p + 4 <= end) {
            h ^= (uint64_t)lim_rd32(p) * LIM_P1; h = lim_rotl(h, 23) * LIM_P2 + LIM_P3; p += 4;
        }
        while (p < end) {
            h ^= (uint64_t)(*p) * LIM_P5; h = lim_rotl(h, 11) * LIM_P1; p++;
        }
        h ^= h >> 33; h *= LIM_P2; h ^= h >> 29; h *= LIM_P3; h ^= h >> 32;
        return h;
    }

    static inline double lim_monotonic(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    }
    """
    ctypedef struct lim_header:
        uint64_t magic
        uint32_t version
        uint32_t slot_size
        uint64_t nslots
        uint32_t probe
        uint64_t inserts
        uint64_t live_evictions
        uint64_t lock_steals

    ctypedef struct lim_slot:
        uint64_t key
        double tokens
        double last
        double full_at
        uint32_t lock

    uint64_t LIM_MAGIC
    uint32_t LIM_VERSION
    uint64_t lim_ld_key(lim_slot* s) nogil
    void lim_st_key(lim_slot* s, uint64_t v) nogil
    double lim_ld_d(double* p) nogil
    void lim_st_d(double* p, double v) nogil
    void lim_count(uint64_t* p) nogil
    uint64_t lim_ld_u64(uint64_t* p) nogil
    void lim_publish_magic(lim_header* h) nogil
    uint64_t lim_ld_magic(lim_header* h) nogil
    int lim_init_pid() nogil
    int lim_lock(lim_slot* s, lim_header* hdr, uint32_t spin_pause, uint32_t check_every,
                 uint32_t steal_yields) nogil
    void lim_unlock(lim_slot* s) nogil
    uint32_t lim_owner(lim_slot* s) nogil
    uint64_t lim_xxh64(const void* data, size_t length, uint64_t seed) nogil
    double lim_monotonic() nogil


if lim_init_pid() != 0:
    raise OSError("pthread_atfork failed")

cdef size_t HEADER_SIZE = sizeof(lim_header)
cdef size_t SLOT_SIZE = sizeof(lim_slot)
cdef uint64_t U64_MASK = 0xFFFFFFFFFFFFFFFF


cdef inline uint64_t _key_hash(uint64_t limit_id, const char* key,
                               Py_ssize_t key_len) noexcept nogil:
    cdef uint64_t h = lim_xxh64(key, <size_t>key_len, limit_id)
    return h if h != 0 else 1          # 0 marks an empty slot


cdef inline lim_header* _header_of(void* slots) noexcept nogil:
    return <lim_header*>(<char*>slots - sizeof(lim_header))


cdef inline lim_slot* _lock_slot(void* slots, uint64_t i) noexcept nogil:
    cdef lim_slot* s = (<lim_slot*>slots) + i
    lim_lock(s, _header_of(slots), LIM_SPIN_PAUSE, LIM_CHECK_EVERY, LIM_STEAL_YIELDS)
    return s


cdef inline int _pow2_at_least(Py_ssize_t n) except -1:
    cdef Py_ssize_t p = 1
    while p < n:
        p <<= 1
    return <int>p


cdef _adopt(SharedBuckets self, char* m, size_t size):
    self.mem = m
    self.size = size
    self.slots = m + HEADER_SIZE

cdef _init_header(SharedBuckets self, uint64_t n):
    cdef lim_header* h = <lim_header*>self.mem
    h.version = LIM_VERSION
    h.slot_size = <uint32_t>SLOT_SIZE
    h.nslots = n
    h.probe = <uint32_t>(LIM_PROBE if n >= LIM_PROBE else n)
    self.mask = n - 1
    self.probe = h.probe
    lim_publish_magic(h)

cdef _attach_file(SharedBuckets self, path):
    path = os.fspath(path)
    cdef bytes path_b = os.fsencode(path)
    cdef struct_stat st
    cdef void* m
    cdef lim_header* h
    cdef int fd = c_open(path_b, O_RDWR, 0)
    if fd < 0:
        raise OSError(errno, os.strerror(errno), path)
    try:
        if fstat(fd, &st) != 0:
            raise OSError(errno, os.strerror(errno), path)
        if <size_t>st.st_size < HEADER_SIZE:
            raise ValueError(f"{path}: not a sluice bucket table (too small)")
        m = mmap(NULL, <size_t>st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        if m == MAP_FAILED:
            raise OSError(errno, os.strerror(errno), path)
    finally:
        c_close(fd)
    _adopt(self, <char*>m, <size_t>st.st_size)
    h = <lim_header*>m
    if (lim_ld_magic(h) != LIM_MAGIC or h.version != LIM_VERSION or h.slot_size != SLOT_SIZE
            or h.nslots == 0 or (h.nslots & (h.nslots - 1)) != 0
            or h.probe != (LIM_PROBE if h.nslots >= LIM_PROBE else h.nslots)
            or HEADER_SIZE + h.nslots * SLOT_SIZE != self.size):
        raise ValueError(f"{path}: not a sluice bucket table of this version")
    self.mask = h.nslots - 1
    self.probe = h.probe
    self.path = path


@cython.final
cdef class SharedBuckets:
    """One shared-memory table of token buckets for a node.

    SharedBuckets(nslots=65536, path=None): create it (in the supervisor, before forking workers).
    nslots is rounded up to a power of two. With `path`, the table is a named file (e.g. under
    /dev/shm) that another process opens with SharedBuckets.attach(path); an existing file at
    `path` is replaced atomically (processes still attached to the old one keep it).
    """

    def __cinit__(self, Py_ssize_t nslots=65536, path=None, *, _attach=False):
        self.mem = NULL
        self.size = 0
        self.path = None
        if _attach:
            _attach_file(self, path)
            return
        if nslots < 1 or nslots > LIM_MAX_SLOTS:
            raise ValueError(f"nslots must be in 1..{LIM_MAX_SLOTS}, got {nslots}")
        cdef uint64_t n = <uint64_t>_pow2_at_least(nslots)
        cdef size_t size = HEADER_SIZE + <size_t>n * SLOT_SIZE
        cdef int fd = -1
        cdef void* m
        cdef bytes tmp_b
        if path is None:
            m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)
            if m == MAP_FAILED:
                raise OSError(errno, os.strerror(errno))
            _adopt(self, <char*>m, size)
            _init_header(self, n)
            return
        path = os.fspath(path)
        tmp = f"{path}.{os.getpid()}.tmp"
        tmp_b = os.fsencode(tmp)
        c_unlink(tmp_b)                  # a leftover of a crashed process that had our pid
        fd = c_open(tmp_b, O_RDWR | O_CREAT | O_EXCL, 0o600)
        if fd < 0:
            raise OSError(errno, os.strerror(errno), tmp)
        try:
            if ftruncate(fd, <long>size) != 0:
                raise OSError(errno, os.strerror(errno), tmp)
            m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
            if m == MAP_FAILED:
                raise OSError(errno, os.strerror(errno), tmp)
            _adopt(self, <char*>m, size)
            _init_header(self, n)
            os.rename(tmp, path)
        except BaseException:
            c_unlink(tmp_b)
            raise
        finally:
            c_close(fd)
        self.path = path

    @staticmethod
    def attach(path):
        """Open the table another process created with SharedBuckets(..., path=path)."""
        return SharedBuckets(0, path, _attach=True)

    def __dealloc__(self):
        if self.mem != NULL:
            munmap(self.mem, self.size)
            self.mem = NULL

    def unlink(self):
        """Remove the named file (the supervisor, on shutdown); attached mappings stay valid."""
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    @property
    def nslots(self):
        return self.mask + 1

    @property
    def probe_length(self):
        return self.probe

    @property
    def inserts(self):
        return lim_ld_u64(&(<lim_header*>self.mem).inserts)

    @property
    def live_evictions(self):
        """Buckets taken over before they were full again: each may have over-admitted."""
        return lim_ld_u64(&(<lim_header*>self.mem).live_evictions)

    @property
    def lock_steals(self):
        """Slot locks taken from a dead (or stuck) holder."""
        return lim_ld_u64(&(<lim_header*>self.mem).lock_steals)

    def used(self):
        """Number of occupied slots (a full scan: admin and tests only)."""
        cdef uint64_t i, n = 0
        cdef lim_slot* s = <lim_slot*>self.slots
        for i in range(self.mask + 1):
            if lim_ld_key(s + i) != 0:
                n += 1
        return n

    def _hold_lock(self, uint64_t index):
        """Test hook: take slot `index`'s lock and never release it."""
        if index > self.mask:
            raise IndexError(index)
        _lock_slot(self.slots, index)

    def _lock_owner(self, uint64_t index):
        """Test hook: the pid holding slot `index`'s lock, 0 if free."""
        if index > self.mask:
            raise IndexError(index)
        return lim_owner((<lim_slot*>self.slots) + index)


cdef inline bint _in_window(lim_slot* slots, uint64_t mask, uint32_t probe, uint64_t h,
                            uint64_t start) noexcept nogil:
    cdef uint32_t i
    for i in range(probe):
        if lim_ld_key(slots + ((start + i) & mask)) == h:
            return True
    return False

cdef inline void _update(Limiter self, lim_slot* s, double now, TakeResult* out) noexcept nogil:
    # Called with s locked and s.key == our key: refill to `now`, take one token.
    cdef double tokens = lim_ld_d(&s.tokens)
    cdef double last = lim_ld_d(&s.last)
    cdef double elapsed = now - last
    if elapsed > 0.0:
        tokens += elapsed * self.rate
        last = now
    elif not (elapsed <= 0.0):      # NaN: a torn or foreign value; restart the clock
        last = now
    if tokens > self.fburst:
        tokens = self.fburst
    elif not (tokens >= 0.0):
        tokens = 0.0
    if tokens >= 1.0 - LIM_TOKEN_EPS:
        tokens -= 1.0
        if tokens < 0.0:
            tokens = 0.0
        out.admitted = 1
        out.retry_after = 0.0
    else:
        out.admitted = 0
        out.retry_after = last + (1.0 - tokens) * self.inv_rate - now
    cdef double full_at = last + (self.fburst - tokens) * self.inv_rate
    lim_st_d(&s.tokens, tokens)
    lim_st_d(&s.last, last)
    lim_st_d(&s.full_at, full_at)
    out.remaining = <long>floor(tokens)
    out.reset = full_at - now


@cython.final
cdef class Limiter:
    """Limiter(buckets, limit_id, rate, burst): one configured rate_limit over a shared table.

    limit_id is a stable 64-bit identity (negative ints are taken modulo 2**64): two Limiters with
    the same limit_id over the same table share their buckets, which is how a reload that keeps a
    limit keeps its bucket levels.
    """

    def __cinit__(self, SharedBuckets buckets not None, limit_id, double rate, long burst):
        if not (rate > 0.0) or rate == float("inf"):
            raise ValueError(f"rate must be a positive finite number, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self.buckets = buckets
        self.limit_id = <uint64_t>(int(limit_id) & U64_MASK)
        self.rate = rate
        self.burst = burst
        self.fburst = <double>burst
        self.inv_rate = 1.0 / rate
        self.slots = buckets.slots
        self.mask = buckets.mask
        self.probe = buckets.probe

    cdef int take(self, const char* key, Py_ssize_t key_len, double now,
                  TakeResult* out) noexcept nogil:
        cdef uint64_t h = _key_hash(self.limit_id, key, key_len)
        cdef lim_slot* slots = <lim_slot*>self.slots
        cdef lim_header* hdr = _header_of(self.slots)
        cdef uint64_t start = h & self.mask, j, k, victim, victim_key
        cdef uint32_t i
        cdef int attempt
        cdef int found, victim_free
        cdef double fa, best
        cdef lim_slot* s
        for attempt in range(LIM_ATTEMPTS):
            # 1. lock-free scan of the window: the key, or the best victim
            found = 0
            victim = start
            victim_key = 0
            victim_free = 0
            best = INFINITY
            for i in range(self.probe):
                j = (start + i) & self.mask
                k = lim_ld_key(slots + j)
                if k == h:
                    found = 1
                    victim = j
                    break
                if victim_free:
                    continue
                if k == 0:
                    victim, victim_key, victim_free = j, 0, 1
                    continue
                fa = lim_ld_d(&slots[j].full_at)
                if fa <= now:
                    victim, victim_key, victim_free = j, k, 1
                elif fa < best:
                    victim, victim_key, best = j, k, fa
            s = _lock_slot(self.slots, victim)
            k = lim_ld_key(s)
            if k == h:
                # 2a. the key's own bucket (found by the scan, or inserted here meanwhile)
                _update(self, s, now, out)
                lim_unlock(s)
                return out.admitted
            # not ours: our slot, or the victim, was taken over since the scan, or another process
            # inserted our key elsewhere in the window meanwhile; look again (the last attempt
            # takes the victim whatever happened, so a take always ends)
            if attempt + 1 < LIM_ATTEMPTS and (
                    found or k != victim_key
                    or _in_window(slots, self.mask, self.probe, h, start)):
                lim_unlock(s)
                continue
            # 2b. take the victim over: a new bucket starts full
            if k != 0 and lim_ld_d(&s.full_at) > now:
                lim_count(&hdr.live_evictions)
            lim_count(&hdr.inserts)
            lim_st_key(s, h)
            lim_st_d(&s.tokens, self.fburst)
            lim_st_d(&s.last, now)
            _update(self, s, now, out)
            lim_unlock(s)
            return out.admitted
        return 0  # not reached: the last attempt always takes its victim

    def take_py(self, bytes key not None, double now):
        """take() for tests and the policy layer: (admitted, remaining, reset, retry_after)."""
        cdef TakeResult r
        self.take(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), now, &r)
        return (r.admitted == 1, r.remaining, r.reset, r.retry_after)

    def _slot_of(self, bytes key not None):
        """Test hook: index of the slot holding `key`'s bucket, or -1."""
        cdef uint64_t h = _key_hash(self.limit_id, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))
        cdef uint64_t start = h & self.mask, j
        cdef uint32_t i
        for i in range(self.probe):
            j = (start + i) & self.mask
            if lim_ld_key((<lim_slot*>self.slots) + j) == h:
                return j
        return -1

    def __repr__(self):
        return f"<Limiter id={self.limit_id:#018x} rate={self.rate} burst={self.burst}>"


cdef inline long _ceil_seconds(double x) noexcept nogil:
    # delta-seconds: round up, tolerating float noise (2.0000000001 -> 2), clamped to sane bounds
    x = ceil(x - 1e-9)
    if not (x >= 0.0):
        return 0
    if x > 2147483647.0:
        return 2147483647
    return <long>x


cdef bytes format_headers(TakeResult* r, long limit):
    cdef char buf[192]
    cdef int n
    cdef long retry
    if r.admitted:
        n = snprintf(buf, sizeof(buf),
                     b"ratelimit-limit: %ld\r\nratelimit-remaining: %ld\r\n"
                     b"ratelimit-reset: %ld\r\n",
                     limit, r.remaining, _ceil_seconds(r.reset))
    else:
        retry = _ceil_seconds(r.retry_after)
        n = snprintf(buf, sizeof(buf),
                     b"ratelimit-limit: %ld\r\nratelimit-remaining: %ld\r\nratelimit-reset: %ld\r\n"
                     b"retry-after: %ld\r\n",
                     limit, r.remaining, _ceil_seconds(r.reset), retry if retry >= 1 else 1)
    return PyBytes_FromStringAndSize(buf, n)


def format_headers_py(bint admitted, long remaining, double reset, double retry_after, long limit):
    """format_headers() for tests: the RateLimit-* (and, when refused, Retry-After) lines."""
    cdef TakeResult r
    r.admitted = 1 if admitted else 0
    r.remaining = remaining
    r.reset = reset
    r.retry_after = retry_after
    return format_headers(&r, limit)


cdef double monotonic_now() noexcept nogil:
    return lim_monotonic()


def monotonic():
    """clock_gettime(CLOCK_MONOTONIC) in seconds, the clock `now` is read from."""
    return lim_monotonic()


def key_hash(limit_id, bytes key not None):
    """The 64-bit bucket key of (limit_id, key): XXH64(key, seed=limit_id), 0 mapped to 1."""
    return _key_hash(<uint64_t>(int(limit_id) & U64_MASK), PyBytes_AS_STRING(key),
                     PyBytes_GET_SIZE(key))

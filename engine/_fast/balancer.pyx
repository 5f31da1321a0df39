"""Endpoint selection for a cluster: which upstream endpoint serves the next request.

Theory of operation
===================

Who calls it
    ``engine/policy/link.py`` builds one ``Balancer`` per cluster (and one per route that splits
    traffic across clusters) from primitives: a policy id, the endpoints' weights, their stable
    keys (``b"10.0.0.1:9001"``) and a per-worker seed. The proxy calls ``pick()`` once per
    request (and once more per retry) and ``begin(i)``/``end(i)`` around each upstream request.
    A route's weighted split across clusters is ``Balancer(LB_ROUND_ROBIN, weights,
    cluster_names)``: there is no separate Split class.

Health
    An endpoint may be picked when ``set_available(i, up)`` (a manual verdict, tests and
    embedding) has not taken it out and, for a cluster ``watch()``-ed by link (it has a health
    check or outlier detection), the node-wide state in ``engine._fast.endpoints`` says it is
    neither unhealthy nor ejected. That state is written by other processes (the supervisor's
    prober, other workers' outlier detection); ``pick()`` compares the state's generation
    counter with the one it last synced at (one load and a compare) and re-reads its
    endpoints' records only when it moved. An unwatched balancer has a NULL generation pointer
    and never looks.

    Panic threshold (Envoy's ``healthy_panic_threshold``): when fewer than ``panic`` percent of
    the endpoints (by count, as Envoy) are available, the balancer routes to all of them, as if
    every one were healthy: a cluster whose checks fail nearly everywhere is more likely to have
    a bad check (or a partial outage that leaves the rest overloaded) than to serve nothing
    better than 503. ``panic`` 0 switches it off: then no available endpoint means ``pick()``
    returns -1 (503 "no healthy upstream").

Invariants
    * ``pick()`` touches no Python object, allocates nothing and never raises (it is
      ``nogil``, so the compiler enforces the first two). It returns an endpoint index in
      ``[0, n)`` that is available, or -1 when no endpoint is (n == 0 included).
    * Every policy skips unavailable endpoints. The set of available endpoints is kept as a
      dense array (``up_idx``) with running weight sums (``up_cum``), rebuilt only when health
      changes, so a weighted draw is one PRNG step and a binary search (or a modulo when all
      available weights are equal).
    * Constructors never judge meaning: the policy layer owns error messages. Weights below 1
      are read as 1 and above ``LB_MAX_WEIGHT`` as that, only so the arithmetic stays in int64.
      An unknown policy id or keys/weights of different lengths are link-time bugs and raise
      ``ValueError``.
    * Single-threaded: one worker, one event loop, one Balancer per cluster per worker. Each
      worker's own ``act[]`` is its view of load (as Envoy's per-thread load balancers).

Policies
    ``LB_ROUND_ROBIN``: nginx's smooth weighted round robin
    (ngx_http_upstream_get_peer). Each pick adds every available endpoint's weight to its
    current weight, takes the largest (the lowest index wins ties) and subtracts the total
    available weight from the winner. Weights 5,1,1 give a a b a c a a: every endpoint gets
    exactly its share in each cycle of sum(weights) picks, spread out rather than in bursts.
    Unavailable endpoints are skipped and keep their current weight frozen (as nginx does), so
    the rest keep smooth exact long-run shares and a flapping endpoint biases nothing. nginx's
    effective_weight (slow recovery after failures) is not modelled: health is binary here.
    O(available endpoints) per pick, like nginx.

    ``LB_LEAST_REQUEST``: Envoy's power of two choices. Two *distinct* available endpoints are
    drawn (weighted by weight, without replacement; uniform when all weights are equal) and the
    less loaded one wins; the first drawn wins ties. With equal weights "less loaded" is fewer
    active requests (Envoy's unweighted path). With unequal weights it is the smaller
    ``active / weight``, compared by cross-multiplying. Envoy instead runs an EDF scheduler on
    ``weight / (active + 1)`` for unequal weights; sampling by weight and then comparing load
    per weight keeps the O(log n) draw and aims at the same thing: in-flight requests
    proportional to weight under load, and exactly the weight shares when idle (every
    comparison ties at 0, so the weighted first draw wins). ``(active + 1) / weight`` would
    not tie when idle and would over-favour heavy endpoints (weights 3:1 gave 49%:12%).

    ``LB_RING_HASH``: consistent hashing (Ketama, as nginx's ``hash ... consistent`` and Envoy's
    ring hash). Endpoint i places ``LB_RING_POINTS_PER_WEIGHT * weight_i`` points on a 64-bit
    ring at ``mix64(xxh64(key_i) + j * golden)`` for j = 1, 2, ... The points are a function of
    the endpoint's key and weight only, never of its index or of the other endpoints, so
    adding an endpoint only adds points: the requests whose arc it takes move to it and no
    other request moves (1/(n+1) of them on average). A request's hash key (header, client IP,
    cookie: chosen by the proxy per ``hash_on``) is hashed with XXH64 and served by the first
    point at or after it, walking on past points of unavailable endpoints (their requests
    spread over the others in proportion to ring share; the rest stay put). No key (NULL or
    empty) falls back to a weighted random pick.

    Ring size: 160 points per unit of weight (nginx and Ketama use 160 per server), so 4 equal
    endpoints make 640 points and shares deviate by about 1/sqrt(160) = 8% of a share.
    Envoy instead normalises weights to a ring of at least 1024 points; that makes every
    endpoint's point count depend on the others', so adding one endpoint reshuffles keys
    between the old ones too, which this module avoids. The ring is capped at
    ``LB_RING_MAX_POINTS`` (131072 points, 1.5 MiB); a cluster whose 160 * sum(weights) is
    larger is scaled down to fit (at least one point per endpoint), and only then does a
    membership change also move some keys between old endpoints. With weight 1 that starts
    beyond 819 endpoints. The ring never depends on the seed: every worker and every node
    maps a key to the same endpoint.

    ``LB_RANDOM``: one weighted draw among the available endpoints.

What it must never do
    Read the clock, touch sockets or config, allocate or raise in ``pick()``, or let the seed
    change where a ring hash key goes. Randomness is splitmix64 seeded per Balancer: give each
    worker a different seed or all workers draw in lockstep.

Hashing
    XXH64 as specified by xxHash (reading bytes little-endian explicitly, so every host agrees
    on the ring), exposed to other modules as ``lb_hash``. It is not keyed against
    adversaries: a client who controls the hash key can always choose its endpoint anyway.
"""

cimport cython
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc, qsort
from engine._fast.endpoints cimport Endpoints


cdef extern from *:
    """
    #define SLUICE_XXH_P1 0x9E3779B185EBCA87ULL
    #define SLUICE_XXH_P2 0xC2B2AE3D27D4EB4FULL
    #define SLUICE_XXH_P3 0x165667B19E3779F9ULL
    #define SLUICE_XXH_P4 0x85EBCA77C2B2AE63ULL
    #define SLUICE_XXH_P5 0x27D4EB2F165667C5ULL
    #define SLUICE_GOLDEN64 0x9E3779B97F4A7C15ULL
    #define SLUICE_MIX_M1 0xBF58476D1CE4E5B9ULL
    #define SLUICE_MIX_M2 0x94D049BB133111EBULL
    #define SLUICE_ROTL64(x, r) (((x) << (r)) | ((x) >> (64 - (r))))
    static inline uint64_t sluice_lb_gen(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    """
    const uint64_t SLUICE_XXH_P1
    const uint64_t SLUICE_XXH_P2
    const uint64_t SLUICE_XXH_P3
    const uint64_t SLUICE_XXH_P4
    const uint64_t SLUICE_XXH_P5
    const uint64_t SLUICE_GOLDEN64
    const uint64_t SLUICE_MIX_M1
    const uint64_t SLUICE_MIX_M2
    uint64_t SLUICE_ROTL64(uint64_t x, int r) noexcept nogil
    uint64_t sluice_lb_gen(uint64_t* p) noexcept nogil


# ---------------------------------------------------------------------------------- hashing

cdef inline uint64_t _read64(const uint8_t* p) noexcept nogil:
    # little-endian on every host; compilers turn this into one load on little-endian machines
    return (<uint64_t>p[0] | (<uint64_t>p[1] << 8) | (<uint64_t>p[2] << 16)
            | (<uint64_t>p[3] << 24) | (<uint64_t>p[4] << 32) | (<uint64_t>p[5] << 40)
            | (<uint64_t>p[6] << 48) | (<uint64_t>p[7] << 56))


cdef inline uint64_t _read32(const uint8_t* p) noexcept nogil:
    return (<uint64_t>p[0] | (<uint64_t>p[1] << 8) | (<uint64_t>p[2] << 16)
            | (<uint64_t>p[3] << 24))


cdef inline uint64_t _xxh_round(uint64_t acc, uint64_t lane) noexcept nogil:
    acc = acc + lane * SLUICE_XXH_P2
    acc = SLUICE_ROTL64(acc, 31)
    return acc * SLUICE_XXH_P1


cdef inline uint64_t _xxh_merge(uint64_t acc, uint64_t v) noexcept nogil:
    acc = acc ^ _xxh_round(0, v)
    return acc * SLUICE_XXH_P1 + SLUICE_XXH_P4


cdef uint64_t lb_hash(const char* key, Py_ssize_t key_len, uint64_t seed) noexcept nogil:
    """XXH64 of key[0:key_len] with seed (the xxHash specification, section XXH64)."""
    cdef const uint8_t* p = <const uint8_t*>key
    cdef const uint8_t* end = p + (key_len if key_len > 0 else 0)
    cdef const uint8_t* limit
    cdef uint64_t v1, v2, v3, v4, h
    if end - p >= 32:
        limit = end - 32
        v1 = seed + SLUICE_XXH_P1 + SLUICE_XXH_P2
        v2 = seed + SLUICE_XXH_P2
        v3 = seed
        v4 = seed - SLUICE_XXH_P1
        while p <= limit:
            v1 = _xxh_round(v1, _read64(p))
            v2 = _xxh_round(v2, _read64(p + 8))
            v3 = _xxh_round(v3, _read64(p + 16))
            v4 = _xxh_round(v4, _read64(p + 24))
            p += 32
        h = (SLUICE_ROTL64(v1, 1) + SLUICE_ROTL64(v2, 7) + SLUICE_ROTL64(v3, 12)
             + SLUICE_ROTL64(v4, 18))
        h = _xxh_merge(h, v1)
        h = _xxh_merge(h, v2)
        h = _xxh_merge(h, v3)
        h = _xxh_merge(h, v4)
    else:
        h = seed + SLUICE_XXH_P5
    h += <uint64_t>(key_len if key_len > 0 else 0)
    while end - p >= 8:
        h = h ^ _xxh_round(0, _read64(p))
        h = SLUICE_ROTL64(h, 27) * SLUICE_XXH_P1 + SLUICE_XXH_P4
        p += 8
    if end - p >= 4:
        h = h ^ (_read32(p) * SLUICE_XXH_P1)
        h = SLUICE_ROTL64(h, 23) * SLUICE_XXH_P2 + SLUICE_XXH_P3
        p += 4
    while p < end:
        h = h ^ (<uint64_t>p[0] * SLUICE_XXH_P5)
        h = SLUICE_ROTL64(h, 11) * SLUICE_XXH_P1
        p += 1
    h = h ^ (h >> 33)
    h = h * SLUICE_XXH_P2
    h = h ^ (h >> 29)
    h = h * SLUICE_XXH_P3
    return h ^ (h >> 32)


cdef inline uint64_t _mix64(uint64_t z) noexcept nogil:
    # splitmix64's finaliser: a bijection with full avalanche
    z = (z ^ (z >> 30)) * SLUICE_MIX_M1
    z = (z ^ (z >> 27)) * SLUICE_MIX_M2
    return z ^ (z >> 31)


# ---------------------------------------------------------------------------------- the ring

cdef struct _Point:
    uint64_t hash       # position on the ring
    uint64_t tie        # hash of the owner's key: equal positions order by identity, not index
    int32_t idx         # owner


cdef int _cmp_point(const void* pa, const void* pb) noexcept nogil:
    cdef const _Point* a = <const _Point*>pa
    cdef const _Point* b = <const _Point*>pb
    if a.hash != b.hash:
        return -1 if a.hash < b.hash else 1
    if a.tie != b.tie:
        return -1 if a.tie < b.tie else 1
    return (a.idx > b.idx) - (a.idx < b.idx)


# ---------------------------------------------------------------------------------- Balancer

_POLICY_NAMES = {
    "weighted_round_robin": LB_ROUND_ROBIN,
    "least_request": LB_LEAST_REQUEST,
    "ring_hash": LB_RING_HASH,
    "random": LB_RANDOM,
}


def policy_from_name(str name):
    """The policy id for a config name (CONFIG.md ``clusters[].balancer``). An unknown name
    is a policy-layer bug (the schema checks names) and raises ValueError."""
    try:
        return _POLICY_NAMES[name]
    except KeyError:
        raise ValueError(f"unknown balancer policy {name!r}") from None


def hash_key(bytes data, seed=0):
    """XXH64 of data: the hash ring hash keys with (seed 0), for tests and tools."""
    return lb_hash(data, len(data), <uint64_t>(seed & 0xFFFFFFFFFFFFFFFF))


@cython.final
@cython.auto_pickle(False)
cdef class Balancer:
    """Balancer(policy, weights, keys=(), seed=0, panic=0): see the module docstring.

    keys are the endpoints' stable identities (bytes), one per weight; empty means the
    decimal indices. They matter to LB_RING_HASH only, whose ring is built from them. panic is
    the panic threshold in percent (0..100; 0 = off)."""

    def __cinit__(self, int policy, weights, keys=(), seed=0, int panic=0):
        cdef Py_ssize_t n = len(weights)
        cdef Py_ssize_t i
        cdef object wo
        if policy < LB_ROUND_ROBIN or policy > LB_RANDOM:
            raise ValueError(f"unknown balancer policy id {policy}")
        if n > 0x7FFFFFFF:
            raise ValueError("too many endpoints")
        if len(keys) == 0:
            self._keys = tuple([str(i).encode() for i in range(n)])
        elif len(keys) == n:
            self._keys = tuple([bytes(k) for k in keys])
        else:
            raise ValueError(f"{len(keys)} keys for {n} weights")
        if panic < 0 or panic > 100:
            raise ValueError(f"panic threshold {panic} is not a percent")
        self.policy = policy
        self.n = <int>n
        self.panic = panic
        self.shared = None
        self.shared_gen = NULL
        self.rng = <uint64_t>(seed & 0xFFFFFFFFFFFFFFFF)
        cdef size_t m = <size_t>(n if n > 0 else 1)
        self.w = <int64_t*>malloc(m * sizeof(int64_t))
        self.act = <int64_t*>malloc(m * sizeof(int64_t))
        self.cur = <int64_t*>malloc(m * sizeof(int64_t))
        self.is_up = <char*>malloc(m * sizeof(char))
        self.up_idx = <int32_t*>malloc(m * sizeof(int32_t))
        self.up_cum = <int64_t*>malloc(m * sizeof(int64_t))
        self.man_up = <char*>malloc(m * sizeof(char))
        self.slots = <int*>malloc(m * sizeof(int))
        if (self.w == NULL or self.act == NULL or self.cur == NULL or self.is_up == NULL
                or self.up_idx == NULL or self.up_cum == NULL or self.man_up == NULL
                or self.slots == NULL):
            raise MemoryError()
        for i in range(n):
            wo = weights[i]
            if wo < 1:
                self.w[i] = 1
            elif wo > LB_MAX_WEIGHT:
                self.w[i] = LB_MAX_WEIGHT
            else:
                self.w[i] = wo
            self.act[i] = 0
            self.cur[i] = 0
            self.is_up[i] = 1
            self.man_up[i] = 1
            self.slots[i] = 0
        self._rebuild_up()
        if policy == LB_RING_HASH and n > 0:
            self._build_ring()

    def __dealloc__(self):
        free(self.w)
        free(self.act)
        free(self.cur)
        free(self.is_up)
        free(self.up_idx)
        free(self.up_cum)
        free(self.man_up)
        free(self.slots)
        free(self.ring_hash)
        free(self.ring_idx)

    cdef _build_ring(self):
        cdef Py_ssize_t n = self.n
        cdef Py_ssize_t i, j, k, total = 0, count
        cdef int64_t total_w = 0
        cdef double scale = 0.0
        cdef uint64_t base
        cdef bytes key
        cdef _Point* pts
        for i in range(n):
            total_w += self.w[i]
        if total_w * LB_RING_POINTS_PER_WEIGHT > LB_RING_MAX_POINTS:
            scale = <double>LB_RING_MAX_POINTS / <double>total_w
        for i in range(n):
            total += self._ring_count(i, scale)
        pts = <_Point*>malloc(<size_t>total * sizeof(_Point))
        self.ring_hash = <uint64_t*>malloc(<size_t>total * sizeof(uint64_t))
        self.ring_idx = <int32_t*>malloc(<size_t>total * sizeof(int32_t))
        if pts == NULL or self.ring_hash == NULL or self.ring_idx == NULL:
            free(pts)
            raise MemoryError()
        k = 0
        for i in range(n):
            key = self._keys[i]
            base = lb_hash(key, len(key), 0)
            count = self._ring_count(i, scale)
            for j in range(1, count + 1):
                pts[k].hash = _mix64(base + <uint64_t>j * SLUICE_GOLDEN64)
                pts[k].tie = base
                pts[k].idx = <int32_t>i
                k += 1
        qsort(pts, <size_t>total, sizeof(_Point), _cmp_point)
        for k in range(total):
            self.ring_hash[k] = pts[k].hash
            self.ring_idx[k] = pts[k].idx
        free(pts)
        self.ring_size = total

    cdef Py_ssize_t _ring_count(self, Py_ssize_t i, double scale):
        cdef int64_t c
        if scale == 0.0:
            return <Py_ssize_t>(self.w[i] * LB_RING_POINTS_PER_WEIGHT)
        c = <int64_t>(<double>self.w[i] * scale + 0.5)
        return <Py_ssize_t>(c if c > 0 else 1)

    # ------------------------------------------------------------------ the hot path

    cdef int pick(self, const char* key, Py_ssize_t key_len) noexcept nogil:
        if self.shared_gen != NULL and sluice_lb_gen(self.shared_gen) != self.seen_gen:
            self._sync()
        if self.n_up == 0:
            return -1
        if self.policy == LB_ROUND_ROBIN:
            return self._pick_wrr()
        if self.policy == LB_LEAST_REQUEST:
            return self._pick_least()
        if self.policy == LB_RING_HASH:
            return self._pick_ring(key, key_len)
        return self.up_idx[self._draw()]

    cdef void begin(self, int i) noexcept nogil:
        if 0 <= i < self.n:
            self.act[i] += 1

    cdef void end(self, int i) noexcept nogil:
        if 0 <= i < self.n and self.act[i] > 0:
            self.act[i] -= 1

    cdef uint64_t _next(self) noexcept nogil:
        # splitmix64 (Steele, Lea, Flood 2014): any seed, zero included, is a good state
        self.rng += SLUICE_GOLDEN64
        return _mix64(self.rng)

    cdef int _draw(self) noexcept nogil:
        """A position in up_idx, drawn by weight. Needs n_up >= 1."""
        cdef int64_t r
        cdef int lo, hi, mid
        if self.up_uniform:
            return <int>(self._next() % <uint64_t>self.n_up)
        r = <int64_t>(self._next() % <uint64_t>self.up_total)
        lo = 0
        hi = self.n_up - 1
        while lo < hi:                      # first k with up_cum[k] > r
            mid = (lo + hi) >> 1
            if self.up_cum[mid] > r:
                hi = mid
            else:
                lo = mid + 1
        return lo

    cdef int _draw_two(self, int* second) noexcept nogil:
        """Two distinct positions in up_idx, by weight without replacement. Needs n_up >= 2."""
        cdef int k1 = self._draw()
        cdef int k2, lo, hi, mid
        cdef int64_t w1, r, edge
        if self.up_uniform:
            k2 = <int>(self._next() % <uint64_t>(self.n_up - 1))
            second[0] = k2 + 1 if k2 >= k1 else k2
            return k1
        # draw from the total without k1's interval [edge, edge + w1), then step over it
        w1 = self.w[self.up_idx[k1]]
        edge = self.up_cum[k1] - w1
        r = <int64_t>(self._next() % <uint64_t>(self.up_total - w1))
        if r >= edge:
            r += w1
        lo = 0
        hi = self.n_up - 1
        while lo < hi:
            mid = (lo + hi) >> 1
            if self.up_cum[mid] > r:
                hi = mid
            else:
                lo = mid + 1
        second[0] = lo
        return k1

    cdef int _pick_wrr(self) noexcept nogil:
        # nginx: ngx_http_upstream_get_peer, without effective_weight
        cdef int k, i, best = -1
        cdef int64_t c, best_c = 0
        for k in range(self.n_up):
            i = self.up_idx[k]
            c = self.cur[i] + self.w[i]
            self.cur[i] = c
            if best < 0 or c > best_c:
                best = i
                best_c = c
        self.cur[best] -= self.up_total
        return best

    cdef int _pick_least(self) noexcept nogil:
        cdef int k2 = 0
        cdef int k1, a, b
        if self.n_up == 1:
            return self.up_idx[0]
        k1 = self._draw_two(&k2)
        a = self.up_idx[k1]
        b = self.up_idx[k2]
        if self.up_uniform:
            return b if self.act[b] < self.act[a] else a
        # act_b / w_b < act_a / w_a, without division
        return b if self.act[b] * self.w[a] < self.act[a] * self.w[b] else a

    cdef int _pick_ring(self, const char* key, Py_ssize_t key_len) noexcept nogil:
        cdef uint64_t h
        cdef Py_ssize_t lo, hi, mid, pos, steps
        cdef Py_ssize_t size = self.ring_size
        if key == NULL or key_len <= 0:
            return self.up_idx[self._draw()]
        h = lb_hash(key, key_len, 0)
        lo = 0
        hi = size
        while lo < hi:                      # first point with hash >= h
            mid = (lo + hi) >> 1
            if self.ring_hash[mid] < h:
                lo = mid + 1
            else:
                hi = mid
        pos = lo if lo < size else 0
        for steps in range(size):
            if self.is_up[self.ring_idx[pos]]:
                return self.ring_idx[pos]
            pos += 1
            if pos == size:
                pos = 0
        return -1                           # unreachable: n_up > 0 and everyone has a point

    cdef void _rebuild_up(self) noexcept nogil:
        cdef int i, k = 0
        cdef int64_t total = 0
        cdef bint uniform = True
        for i in range(self.n):
            if self.is_up[i]:
                if k > 0 and self.w[i] != self.w[self.up_idx[0]]:
                    uniform = False
                total += self.w[i]
                self.up_idx[k] = i
                self.up_cum[k] = total
                k += 1
        self.n_up = k
        self.up_total = total
        self.up_uniform = uniform

    cdef void _sync(self) noexcept nogil:
        """Recompute is_up from the manual verdicts, the shared state (when watched) and the
        panic threshold, then the dense list of available endpoints."""
        cdef int i, ok = 0
        cdef bint watched = self.shared_gen != NULL
        if watched:
            # read the generation first: a change made while we read the records moves it
            # again, and the next pick syncs once more
            self.seen_gen = sluice_lb_gen(self.shared_gen)
        for i in range(self.n):
            if self.man_up[i] and (not watched or self.shared.available(self.slots[i])):
                self.is_up[i] = 1
                ok += 1
            else:
                self.is_up[i] = 0
        self.panicking = self.n > 0 and <int64_t>ok * 100 < <int64_t>self.panic * self.n
        if self.panicking:
            for i in range(self.n):
                self.is_up[i] = 1
        self._rebuild_up()

    cpdef set_available(self, int i, bint up):
        """A manual verdict: an endpoint set unavailable is never picked (outside panic).
        Idempotent."""
        if i < 0 or i >= self.n:
            raise IndexError(f"endpoint {i} out of range (n={self.n})")
        if (self.man_up[i] != 0) == up:
            return
        self.man_up[i] = 1 if up else 0
        self._sync()

    def watch(self, Endpoints shared, slots):
        """Follow the node-wide state of `shared` for these endpoints (`slots`: each one's
        slot, in endpoint order; link.py passes the stats slots). The next pick syncs."""
        if len(slots) != self.n:
            raise ValueError(f"{len(slots)} slots for {self.n} endpoints")
        cdef int i
        for i in range(self.n):
            self.slots[i] = slots[i]
        self.shared = shared
        self.shared_gen = shared.gen
        self._sync()

    def sync(self):
        """Bring availability up to date with the shared state now (what pick() does when its
        generation moved); for introspection and tests."""
        if self.shared_gen == NULL or sluice_lb_gen(self.shared_gen) != self.seen_gen:
            self._sync()

    @property
    def watched(self):
        return self.shared is not None

    # ------------------------------------------------------------------ Python surface

    def pick_py(self, key=None):
        """pick() for Python: key is bytes (ring hash) or None."""
        cdef bytes b
        if key is None:
            return self.pick(NULL, 0)
        b = key
        return self.pick(b, len(b))

    def begin_py(self, int i):
        self.begin(i)

    def end_py(self, int i):
        self.end(i)

    def _check(self, int i):
        if i < 0 or i >= self.n:
            raise IndexError(f"endpoint {i} out of range (n={self.n})")

    def active(self, int i):
        """Requests in flight on endpoint i (begin minus end)."""
        self._check(i)
        return self.act[i]

    def available(self, int i):
        """Whether pick() may return i now (health, manual verdicts and panic considered)."""
        self._check(i)
        self.sync()
        return self.is_up[i] != 0

    def weight(self, int i):
        """The weight in use (after clamping)."""
        self._check(i)
        return self.w[i]

    @property
    def keys(self):
        return self._keys

    def __repr__(self):
        names = {v: k for k, v in _POLICY_NAMES.items()}
        return (f"<Balancer {names[self.policy]} n={self.n} up={self.n_up}"
                f"{' panic' if self.panicking else ''}>")

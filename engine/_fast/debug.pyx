# cython: language_level=3
"""Live-object counters of the debug build (`SLUICE_DEBUG=1 pip install -e .`).

Why. A connection, exchange or pooled socket that is never released costs nothing a test can see
until a machine runs out of memory or descriptors weeks later. uvloop's answer, taken here: a
debug build counts its live objects by kind, and the test suite checks after each end-to-end test
that what the test opened is gone (tests/conftest.py). A release build does not count at all.

Who counts. A compiled class calls `live_add(KIND, 1)` in `__cinit__` and `live_add(KIND, -1)`
in `__dealloc__` (debug.pxd; the two calls compile to nothing in a release build, see there).
Counting object lifetimes, not `connection_made`/`connection_lost`, is the point: an object that
something still references after its socket closed is exactly the leak to find. Python code
(runtime objects, tests) counts with `add(kind, delta)`.

The kinds, and when they must be zero (`KINDS` lists the names):
    exchange     an exchange in flight. Zero once every client connection closed.
    downstream   a client connection. Zero once the clients closed theirs (and the proxy saw it).
    upstream     an upstream connection, idle in a pool or in use. Idle ones stay while the pool
                 keeps them; zero once the worker drained and closed its pools (at exit).
    tls          a TLS connection on either side: zero when both of the above are.

Where the counts live. Each process counts into its own array; in the binary, the supervisor
calls `share(slots)` before it forks the workers, and each worker calls `attach_worker(slot)` first
thing, so that its counts go to its own 64-byte record of an anonymous MAP_SHARED mapping (the
same pattern as engine/_fast/stats.pyx: one writer per record, plain loads and stores). The
supervisor reads every worker's record with `workers()` for the admin API (`GET /debug/live`);
a worker reads its own with `live_objects()`, and so does a program embedding `engine.Proxy`.
A worker writes its record until it exits, so after a drain it holds what the worker leaked.

In a release build every function here still works and answers nothing: `DEBUG_BUILD` is False,
`live_objects()` is all zeros, `share` and `attach_worker` do nothing, `workers()` is empty.
"""

from libc.stdint cimport int64_t
from libc.string cimport memcpy, memset
from posix.mman cimport MAP_ANONYMOUS, MAP_FAILED, MAP_SHARED, PROT_READ, PROT_WRITE, mmap
from posix.unistd cimport getpid

DEBUG_BUILD = bool(SLUICE_DEBUG)

KINDS = ("exchange", "downstream", "upstream", "tls")
assert len(KINDS) == LIVE_KINDS, "debug.pxd LiveKind and debug.pyx KINDS disagree"

cdef enum:
    RECORD_COUNTS = 7            # a record: pid + 7 counters = 64 bytes (one cache line)

ctypedef struct live_record:
    int64_t pid                  # the worker writing it (0: never attached)
    int64_t counts[RECORD_COUNTS]

assert <int>LIVE_KINDS <= <int>RECORD_COUNTS, "a live record has no room for every kind"

cdef int64_t _private[RECORD_COUNTS]     # this process's counts until attach_worker
cdef int64_t* _counts = _private         # where live_add counts now
cdef live_record* _shared = NULL         # share(): one record per worker slot
cdef int _slots = 0


cdef void _live_add(int kind, long delta) noexcept:
    if 0 <= kind < <int>LIVE_KINDS:
        _counts[kind] += delta


def add(str kind, long delta) -> None:
    """Count `delta` more live objects of `kind` (one of KINDS): for Python-level objects and
    tests. Does nothing in a release build; an unknown kind is a ValueError in both."""
    cdef int i = KINDS.index(kind) if kind in KINDS else -1
    if i < 0:
        raise ValueError(f"unknown live-object kind {kind!r}: one of {', '.join(KINDS)}")
    live_add(i, delta)


def live_objects() -> dict:
    """This process's live objects by kind (a worker: its own record). All zero in a release
    build."""
    cdef int i
    return {KINDS[i]: _counts[i] for i in range(<int>LIVE_KINDS)}


def share(int slots) -> None:
    """Map one record per worker slot (0..slots-1), shared with every process forked later: the
    supervisor calls it before it forks. Once per process; nothing in a release build."""
    global _shared, _slots
    if not SLUICE_DEBUG or _shared != NULL:
        return
    if slots <= 0:
        raise ValueError(f"slots must be positive, not {slots}")
    cdef void* p = mmap(NULL, slots * sizeof(live_record), PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0)
    if p == MAP_FAILED:
        raise MemoryError(f"cannot map {slots} live-object records")
    memset(p, 0, slots * sizeof(live_record))
    _shared = <live_record*>p
    _slots = slots


def attach_worker(int slot) -> bool:
    """In a forked worker, first thing: count into record `slot` from now on, and say whether
    it does. The record starts from this process's counts so far (objects the fork copied are
    live here too), whatever a dead worker of the same slot left in it. False (and the counts
    stay private) without share(), for a slot share() did not map, and in a release build."""
    global _counts
    if not SLUICE_DEBUG or _shared == NULL or not 0 <= slot < _slots:
        return False
    cdef live_record* r = &_shared[slot]
    memcpy(r.counts, _counts, sizeof(r.counts))
    r.pid = getpid()
    _counts = r.counts
    return True


def workers() -> list:
    """Every attached worker record: [{"slot", "pid", "live": {kind: count}}], by slot. A record
    keeps its last counts after its worker exited, until a new worker attaches to that slot."""
    cdef int s, i
    cdef live_record* r
    out = []
    if _shared == NULL:
        return out
    for s in range(_slots):
        r = &_shared[s]
        if r.pid != 0:
            out.append({"slot": s, "pid": r.pid,
                        "live": {KINDS[i]: r.counts[i] for i in range(<int>LIVE_KINDS)}})
    return out

# The token-bucket limiter's contract for other compiled modules (proxy, tables). See limiter.pyx
# for the theory of operation. The limiter never reads a clock: `now` (CLOCK_MONOTONIC seconds,
# read once per loop turn) is always passed in.

cimport cython
from libc.stdint cimport uint32_t, uint64_t


cdef struct TakeResult:
    int admitted          # 1 or 0
    long remaining        # whole tokens left after this take (>= 0)
    double reset          # seconds until the bucket is full again
    double retry_after    # seconds until one token is available (0 if admitted)


# One table of buckets in shared memory per node: created by the supervisor before it forks the
# workers (anonymous MAP_SHARED), optionally backed by a named file that another process attaches.
# Its C layout (header + slots) is private to limiter.pyx; other modules go through Limiter.
@cython.final
cdef class SharedBuckets:
    cdef char* mem                 # the mapping: a 64-byte header, then nslots 64-byte slots
    cdef size_t size               # bytes mapped (released in __dealloc__)
    cdef void* slots               # mem + header
    cdef uint64_t mask             # nslots - 1 (nslots is a power of two)
    cdef uint32_t probe            # probe window length: min(LIM_PROBE, nslots)
    cdef readonly object path      # the named file, or None for an anonymous table


# One per configured rate_limit (per route). Cheap: holds a reference to its SharedBuckets and the
# limit's parameters; the bucket levels live in the shared table, keyed by (limit_id, key).
@cython.final
cdef class Limiter:
    cdef readonly SharedBuckets buckets
    cdef readonly uint64_t limit_id   # stable identity: same id over the same table = same buckets
    cdef readonly double rate         # tokens per second
    cdef readonly long burst          # bucket capacity; a new bucket starts full
    cdef double fburst
    cdef double inv_rate
    cdef void* slots                  # cached from buckets (the reference keeps the mapping alive)
    cdef uint64_t mask
    cdef uint32_t probe

    # Take one token for `key` at time `now`. Returns 1 (admitted) or 0 (refused) and fills *out.
    # No Python objects, no exceptions, no allocation; safe to call without the GIL.
    cdef int take(self, const char* key, Py_ssize_t key_len, double now,
                  TakeResult* out) noexcept nogil


# The response header lines for a take: "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"
# (IETF draft-ietf-httpapi-ratelimit-headers, delta-seconds rounded up) and, when refused,
# "retry-after" (RFC 9110 section 10.2.3, seconds rounded up, at least 1). Each line ends CRLF,
# ready to append to a response head (e.g. as one `extra` item of http1.build_head).
cdef bytes format_headers(TakeResult* r, long limit)

# clock_gettime(CLOCK_MONOTONIC) in seconds: the clock callers pass as `now`.
cdef double monotonic_now() noexcept nogil

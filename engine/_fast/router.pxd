# The request router's contract for other compiled modules (proxy, tables). See router.pyx for the
# theory of operation. Built once per config from primitives; match() runs per request and
# allocates nothing unless a candidate route has a path_regex (the path becomes a bytes object).

cimport cython
from libc.stdint cimport int32_t, uint64_t

cdef enum:
    HOST_ANY = 0
    HOST_EXACT = 1
    HOST_SUFFIX = 2      # "*.example.com": matches "a.example.com", "a.b.example.com", not "example.com"
    PATH_ANY = 0
    PATH_EXACT = 1
    PATH_PREFIX = 2
    PATH_REGEX = 3       # full match of the path by RE2 (linear time, as Envoy's safe_regex)

# --- internal layout: other modules call match() only and never read these ---

ctypedef struct RtSlice:
    const char* ptr
    Py_ssize_t len

ctypedef struct RtRoute:
    int32_t host_kind
    int32_t path_kind
    RtSlice host             # HOST_EXACT: the host; HOST_SUFFIX: the suffix, dot included
    RtSlice path             # PATH_EXACT / PATH_PREFIX: the literal (regex: unused)
    int32_t meth_start       # into Router.methods
    int32_t meth_count       # -1: any method
    int32_t hdr_start        # into Router.hdr_names / hdr_values
    int32_t hdr_count
    bint py_checks           # has a regex or header conditions: matching it calls Python

ctypedef struct RtList:      # ascending route indices: Router.cands[start:start + count]
    int32_t start
    int32_t count

ctypedef struct RtBucket:    # the routes of one host key (bucket 0: any host / unindexed host)
    int32_t always           # list of routes not indexed by path (any, regex), or -1
    int32_t len_start        # Router.lens[len_start:len_start + len_count]: the distinct
    int32_t len_count        #   path_prefix lengths of this bucket, ascending
    int32_t n_exact          # how many exact paths this bucket has in the table

ctypedef struct RtEntry:     # one slot of the open-addressing table (tag < 0: empty)
    uint64_t hash
    const char* key
    Py_ssize_t key_len
    int32_t tag              # namespace: host exact, host suffix, or (bucket, exact|prefix path)
    int32_t value            # a bucket id (host keys) or a list id (path keys)

ctypedef struct RtCursor:
    const int32_t* p
    const int32_t* end

cdef enum:
    RT_GATHER_LOCAL = 32     # visited lists held on the stack before the cursor array spills
    RT_SCAN_MAX = 8          # tables up to this many routes are scanned, not indexed

ctypedef struct RtGather:    # the lists one request visits, as cursors
    RtCursor* cur
    int n
    int cap
    RtCursor local[RT_GATHER_LOCAL]


@cython.final
cdef class Router:
    cdef readonly Py_ssize_t n_routes
    cdef RtRoute* routes
    cdef RtSlice* methods
    cdef RtList* lists
    cdef int32_t* cands
    cdef RtBucket* buckets
    cdef int32_t* lens
    cdef RtEntry* table
    cdef uint64_t mask
    cdef Py_ssize_t n_host_exact
    cdef Py_ssize_t n_host_suffix
    cdef Py_ssize_t max_suffix_len
    cdef list keep           # the bytes objects the raw pointers above point into
    cdef list hdr_names      # bytes, lowercase, by flat header-condition index
    cdef list hdr_values     # bytes, by flat header-condition index
    cdef list regex          # per route (PATH_REGEX): the pattern's bytes until first use, then
                             # its RE2 program's bound Match (None: RE2 refused it); else None
    cdef list identity       # per route: match.client_identity bytes (b".../*": prefix) or None

    cdef void _free(self) noexcept
    cdef int32_t _lookup(self, uint64_t h, int32_t tag,
                         const char* key, Py_ssize_t key_len) noexcept nogil
    cdef int _push(self, RtGather* g, int32_t list_id) except -1
    cdef int _visit(self, RtGather* g, int32_t b, const char* path, Py_ssize_t path_len) except -1
    cdef object _compile(self, Py_ssize_t i)
    cdef int _headers_ok(self, const RtRoute* r, object headers) except -1
    cdef int _identity_ok(self, Py_ssize_t i, object identity) except -1

    cdef int match(self, const char* host, Py_ssize_t host_len,
                   const char* path, Py_ssize_t path_len,
                   const char* method, Py_ssize_t method_len,
                   object headers, object identity=*) except -2
    # returns the index (in construction order) of the first matching route, or -1

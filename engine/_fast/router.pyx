# cython: language_level=3
"""The request router: (host, path, method, headers) -> the index of the first matching route.

Theory of operation
-------------------
Who calls it. ``engine/policy/link.py`` builds one ``Router`` per listener from the listener's
routes, in the listener's order, as plain tuples (see ``Router.__init__``). The proxy calls
``Router.match()`` once per request head with pointers into the parser's buffer: the host already
lowercase with any port stripped, the path without its query string, the method as received, and
the parser itself as ``headers`` (anything with ``.get(lower_name: bytes) -> bytes | None``).

What it answers. The index of the first route, in construction order, whose every condition holds,
or -1. That is, by definition, what a linear scan over the routes would answer; the index below is
only a way to skip routes that cannot match, and never changes the answer. A route's conditions:

- host: HOST_ANY; HOST_EXACT (bytes equal); HOST_SUFFIX with the suffix including its dot
  (".example.com" matches "a.example.com" and "a.b.example.com", never "example.com" itself:
  the host must be longer than the suffix). Comparison is byte-exact: lowercasing is the caller's.
- path: PATH_ANY; PATH_EXACT; PATH_PREFIX (bytewise: "/api" matches "/apix", "/api/" does not
  match "/api"); PATH_REGEX, a full match of the path by RE2 (as Envoy's safe_regex), never by a
  backtracking engine: RE2 runs in time linear in the path, so no pattern can stall a worker
  (``engine/policy/pathregex.py`` refuses the patterns RE2 cannot run). Each pattern is compiled
  the first time a request reaches its route as a candidate, not when the table is built.
- methods: None = any, else the method must equal one of them (case-sensitive, RFC 9110 9.1).
- headers: every (lowercase name, value) pair must be present with exactly that value (the first
  value the parser reports for the name).
- An unknown host or path kind never matches (the policy layer never produces one).

The index (built once per config).
1. Host buckets. Every HOST_EXACT host and every HOST_SUFFIX suffix that starts with "." gets a
   bucket; everything else (HOST_ANY, an odd suffix) lands in bucket 0, which every request
   visits. A request visits bucket 0, the bucket of its exact host, and the bucket of each of its
   suffixes that starts at a "." other than the first byte (found scanning the host backwards
   with an incremental hash, so the scan is O(len(host))).
2. Path lists, per bucket. PATH_EXACT routes are grouped by path, PATH_PREFIX routes by prefix;
   PATH_ANY, PATH_REGEX and unknown kinds go to the bucket's "always" list. A request probes the
   exact table with its whole path and the prefix table with path[:L] for each distinct prefix
   length L of the bucket (ascending, stopping past len(path)); the hash works in 8-byte blocks
   and is incremental, so one pass over the path serves all the probes of a bucket.
3. One open-addressing hash table (linear probing, load <= 1/2) holds every key above; a tag per
   entry keeps the namespaces apart (host exact, host suffix, and per bucket exact/prefix path).
   Keys point into bytes objects the router keeps alive.

Small tables (at most RT_SCAN_MAX routes) skip the index: every route goes to bucket 0's "always"
list, so match() is a plain scan, which costs less than hashing the path below a few routes.

Invariant that makes it exact. Every route is in exactly one list; every list holds ascending
route indices; a route that matches the request is in a list the request visits (its host bucket
is visited because its host condition holds; its path list is probed because its path condition
holds). So the first match is the smallest index among the visited lists whose conditions all
hold. ``match`` merges the visited lists in ascending order and checks each route fully, cheap C
conditions first (method, host, literal path), then the Python ones (headers, then the regex); the
first route that passes is the answer. Candidates are therefore checked in listener order and no
Python is ever called for a route that comes after the winner, nor for a route without header
or regex conditions.

What it must never do. Allocate per request in the common case (the only per-request
allocations: the path as a bytes object and RE2's span list when a regex route is a candidate,
and a cursor array when more than RT_GATHER_LOCAL lists are visited, which takes a pathological
table). Validate meaning: the constructor takes primitives and trusts them (the policy layer
owns every error message; a pattern RE2 refuses never matches); it only needs not to crash, on
an empty table too. Touch I/O, clocks or config. Run a backtracking regex engine.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int32_t, uint8_t, uint64_t
from libc.string cimport memcmp, memcpy, memset

import re

import re2
from re2 import _re2

cdef extern from *:
    """
    #define SLUICE_RT_SEED 0x243f6a8885a308d3ULL
    #define SLUICE_RT_K1 0x9fb21c651e98df25ULL
    #define SLUICE_RT_GOLDEN 0x9e3779b97f4a7c15ULL
    #define SLUICE_RT_MIX1 0xff51afd7ed558ccdULL
    #define SLUICE_RT_MIX2 0xc4ceb9fe1a85ec53ULL
    """
    uint64_t SLUICE_RT_SEED
    uint64_t SLUICE_RT_K1
    uint64_t SLUICE_RT_GOLDEN
    uint64_t SLUICE_RT_MIX1
    uint64_t SLUICE_RT_MIX2

cdef enum:
    NS_HOST_EXACT = 0       # table tags; path tags are 4 * bucket + NS_PATH_*
    NS_HOST_SUFFIX = 1
    NS_PATH_EXACT = 2
    NS_PATH_PREFIX = 3

# RE2 programs compiled here (from a bytes or str pattern, or a Python ``re.Pattern``'s source)
# use the options engine.policy.pathregex uses: no logging of refused patterns, no captures.
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_RE2_OPTIONS.never_capture = True
cdef object _ANCHOR_BOTH = _re2.RE2.Anchor.ANCHOR_BOTH


cdef object _regex_source(object pattern):
    """A path_regex as the constructor receives it, as the router keeps it until first use: the
    pattern's bytes, or the bound ``Match`` of a program ``re2.compile`` already built."""
    if isinstance(pattern, re2._Regexp):
        return pattern._regexp.Match
    if isinstance(pattern, re.Pattern):
        pattern = pattern.pattern
    if isinstance(pattern, str):
        pattern = pattern.encode()
    return bytes(pattern)


# Python-visible kinds, for link.py and tests (the cdef enum in router.pxd is the source).
globals().update(
    HOST_ANY=HOST_ANY, HOST_EXACT=HOST_EXACT, HOST_SUFFIX=HOST_SUFFIX,
    PATH_ANY=PATH_ANY, PATH_EXACT=PATH_EXACT, PATH_PREFIX=PATH_PREFIX, PATH_REGEX=PATH_REGEX,
)

# --- hashing: 8-byte blocks, incremental. A key of n bytes is its n // 8 whole blocks, then a
# tail of n % 8 bytes, then a finish that folds in n and the namespace tag. Forwards (paths, exact
# hosts) the blocks start at the key's first byte, so the state after the whole blocks of path[:L]
# carries over to every longer prefix; backwards (host suffixes) they end at the key's last byte,
# so the state carries over from host[i:] to every longer suffix host[j:], j < i. ---

cdef inline uint64_t _load8(const char* p) noexcept nogil:
    cdef uint64_t w
    memcpy(&w, p, 8)
    return w

cdef inline uint64_t _load_tail(const char* p, Py_ssize_t n) noexcept nogil:
    cdef uint64_t w = 0
    cdef Py_ssize_t k
    for k in range(n):
        w |= (<uint64_t><uint8_t>p[k]) << (8 * k)
    return w

cdef inline uint64_t _absorb(uint64_t s, uint64_t w) noexcept nogil:
    s = (s ^ w) * SLUICE_RT_K1
    return s ^ (s >> 29)

cdef inline uint64_t _finish(uint64_t s, const char* tail, Py_ssize_t tail_len,
                             Py_ssize_t n, int32_t tag) noexcept nogil:
    # the tail, the length and the namespace, then murmur3's fmix64 so the low bits (the slot)
    # depend on every input bit
    s = _absorb(s, _load_tail(tail, tail_len))
    s ^= (<uint64_t>n << 32) ^ ((<uint64_t>tag + 1) * SLUICE_RT_GOLDEN)
    s ^= s >> 33
    s *= SLUICE_RT_MIX1
    s ^= s >> 33
    s *= SLUICE_RT_MIX2
    s ^= s >> 33
    return s

cdef inline uint64_t _hash(const char* p, Py_ssize_t n, int32_t tag) noexcept nogil:
    cdef uint64_t s = SLUICE_RT_SEED
    cdef Py_ssize_t done = 0
    while done + 8 <= n:
        s = _absorb(s, _load8(p + done))
        done += 8
    return _finish(s, p + done, n - done, n, tag)

cdef inline uint64_t _hash_rev(const char* p, Py_ssize_t n, int32_t tag) noexcept nogil:
    cdef uint64_t s = SLUICE_RT_SEED
    cdef Py_ssize_t end = n
    while end >= 8:
        s = _absorb(s, _load8(p + end - 8))
        end -= 8
    return _finish(s, p, end, n, tag)


# --- the C conditions of one route ---

cdef inline bint _cheap(const RtRoute* r, const RtSlice* methods,
                        const char* host, Py_ssize_t host_len,
                        const char* path, Py_ssize_t path_len,
                        const char* method, Py_ssize_t method_len) noexcept nogil:
    cdef int32_t k
    cdef const RtSlice* m
    if r.meth_count >= 0:
        for k in range(r.meth_start, r.meth_start + r.meth_count):
            m = &methods[k]
            if m.len == method_len and memcmp(m.ptr, method, method_len) == 0:
                break
        else:
            return False
    if r.host_kind == HOST_EXACT:
        if r.host.len != host_len or memcmp(r.host.ptr, host, host_len) != 0:
            return False
    elif r.host_kind == HOST_SUFFIX:
        if host_len <= r.host.len or memcmp(r.host.ptr, host + host_len - r.host.len, r.host.len) != 0:
            return False
    elif r.host_kind != HOST_ANY:
        return False
    if r.path_kind == PATH_EXACT:
        if r.path.len != path_len or memcmp(r.path.ptr, path, path_len) != 0:
            return False
    elif r.path_kind == PATH_PREFIX:
        if r.path.len > path_len or memcmp(r.path.ptr, path, r.path.len) != 0:
            return False
    elif r.path_kind != PATH_ANY and r.path_kind != PATH_REGEX:
        return False
    return True


cdef void* _alloc(Py_ssize_t n, size_t size) except NULL:
    cdef void* p = PyMem_Malloc(<size_t>(n if n > 0 else 1) * size)
    if p == NULL:
        raise MemoryError()
    return p


@cython.final
cdef class Router:
    """Routes of one listener, compiled. ``Router(routes)``, one tuple per route in order:
    ``(host_kind, host, path_kind, path, methods, headers[, identity])`` with host (or suffix, dot included)
    lowercase bytes, path bytes (PATH_REGEX: a bytes pattern, or an already compiled one),
    methods a tuple of bytes or None for any, headers a tuple of (lowercase name, value) bytes
    pairs, identity (optional) the match.client_identity bytes or None. A table of at most ``scan_max`` routes is not indexed (scanned); tests pass 0 to
    force the index on small tables."""

    def __cinit__(self):
        self.routes = NULL
        self.methods = NULL
        self.lists = NULL
        self.cands = NULL
        self.buckets = NULL
        self.lens = NULL
        self.table = NULL
        self.n_routes = 0

    def __dealloc__(self):
        self._free()

    cdef void _free(self) noexcept:
        PyMem_Free(self.routes)
        PyMem_Free(self.methods)
        PyMem_Free(self.lists)
        PyMem_Free(self.cands)
        PyMem_Free(self.buckets)
        PyMem_Free(self.lens)
        PyMem_Free(self.table)
        self.routes = NULL
        self.methods = NULL
        self.lists = NULL
        self.cands = NULL
        self.buckets = NULL
        self.lens = NULL
        self.table = NULL
        self.n_routes = 0
        self.n_host_exact = 0
        self.n_host_suffix = 0
        self.max_suffix_len = 0

    def __init__(self, routes, Py_ssize_t scan_max=RT_SCAN_MAX):
        cdef Py_ssize_t i, j, k, n, size
        cdef RtRoute* r
        cdef RtEntry* e
        cdef RtEntry* table
        cdef int32_t tag
        cdef uint64_t h
        cdef bytes key

        self._free()
        routes = list(routes)
        n = len(routes)
        indexed = n > scan_max
        self.keep = []
        self.hdr_names = []
        self.hdr_values = []
        self.regex = []
        self.identity = []

        # Pass 1, in Python: normalise each route and group it into (bucket, list).
        rows = []                 # per route: kinds, host, path, methods, header-condition span
        meth_flat = []
        bucket_ids = {}           # (NS_HOST_*, key) -> bucket id; bucket 0 has no key
        prefix_lens = [set()]
        exact_counts = [0]
        groups = {}               # (bucket, NS_PATH_* or -1, path key) -> [route indices]
        for i in range(n):
            host_kind, host, path_kind, path, methods, headers = routes[i][:6]
            ident = routes[i][6] if len(routes[i]) > 6 else None
            if ident is not None:
                ident = bytes(ident)
            self.identity.append(ident)
            host_kind = int(host_kind)
            path_kind = int(path_kind)
            host = b"" if host is None else bytes(host)
            pattern = None
            if path_kind == PATH_REGEX:
                pattern = _regex_source(path)   # compiled on first use, see _compile
                path = b""
            else:
                path = b"" if path is None else bytes(path)
            if methods is None:
                meth = None
            else:
                meth = [bytes(m) for m in methods]
            hdr_start = len(self.hdr_names)
            for name, value in (headers or ()):
                self.hdr_names.append(bytes(name))
                self.hdr_values.append(bytes(value))
            self.regex.append(pattern)
            rows.append((host_kind, host, path_kind, path, meth, hdr_start,
                         len(self.hdr_names) - hdr_start))

            if not indexed:
                hkey = None
            elif host_kind == HOST_EXACT:
                hkey = (NS_HOST_EXACT, host)
            elif host_kind == HOST_SUFFIX and host[:1] == b".":
                hkey = (NS_HOST_SUFFIX, host)
            else:
                hkey = None
            if hkey is None:
                b = 0
            else:
                b = bucket_ids.get(hkey)
                if b is None:
                    b = bucket_ids[hkey] = len(prefix_lens)
                    prefix_lens.append(set())
                    exact_counts.append(0)
            if not indexed:
                gkey = (b, -1, b"")
            elif path_kind == PATH_EXACT:
                gkey = (b, NS_PATH_EXACT, path)
            elif path_kind == PATH_PREFIX:
                gkey = (b, NS_PATH_PREFIX, path)
                prefix_lens[b].add(len(path))
            else:
                gkey = (b, -1, b"")
            members = groups.get(gkey)
            if members is None:
                members = groups[gkey] = []
                if gkey[1] == NS_PATH_EXACT:
                    exact_counts[b] += 1
            members.append(i)

        # Pass 2: lay it out in C arrays.
        n_meth = sum(len(row[4]) for row in rows if row[4] is not None)
        n_buckets = len(prefix_lens)
        n_lens = sum(len(s) for s in prefix_lens)
        self.routes = <RtRoute*>_alloc(n, sizeof(RtRoute))
        self.methods = <RtSlice*>_alloc(n_meth, sizeof(RtSlice))
        self.lists = <RtList*>_alloc(len(groups), sizeof(RtList))
        self.cands = <int32_t*>_alloc(n, sizeof(int32_t))
        self.buckets = <RtBucket*>_alloc(n_buckets, sizeof(RtBucket))
        self.lens = <int32_t*>_alloc(n_lens, sizeof(int32_t))

        k = 0
        for i in range(n):
            host_kind, host, path_kind, path, meth, hdr_start, hdr_count = rows[i]
            self.keep.append(host)
            self.keep.append(path)
            r = &self.routes[i]
            r.host_kind = host_kind
            r.path_kind = path_kind
            r.host.ptr = PyBytes_AS_STRING(host)
            r.host.len = PyBytes_GET_SIZE(host)
            r.path.ptr = PyBytes_AS_STRING(path)
            r.path.len = PyBytes_GET_SIZE(path)
            r.hdr_start = hdr_start
            r.hdr_count = hdr_count
            r.py_checks = (r.hdr_count > 0 or path_kind == PATH_REGEX
                           or self.identity[i] is not None)
            if meth is None:
                r.meth_start = 0
                r.meth_count = -1
            else:
                r.meth_start = k
                r.meth_count = len(meth)
                for m in meth:
                    self.keep.append(m)
                    self.methods[k].ptr = PyBytes_AS_STRING(m)
                    self.methods[k].len = PyBytes_GET_SIZE(m)
                    k += 1
        self.n_routes = n

        k = 0
        for b in range(n_buckets):
            self.buckets[b].always = -1
            self.buckets[b].n_exact = exact_counts[b]
            self.buckets[b].len_start = k
            self.buckets[b].len_count = len(prefix_lens[b])
            for length in sorted(prefix_lens[b]):
                self.lens[k] = length
                k += 1

        # the table: host keys -> bucket, path keys -> list. Allocated last: match() treats a
        # router without a table (never built, or a build that raised) as empty.
        entries = []              # (tag, key, value)
        for (ns, key), b in bucket_ids.items():
            entries.append((ns, key, b))
            if ns == NS_HOST_EXACT:
                self.n_host_exact += 1
            else:
                self.n_host_suffix += 1
                self.max_suffix_len = max(self.max_suffix_len, len(key))
        k = 0
        for j, ((b, ns, key), members) in enumerate(groups.items()):
            self.lists[j].start = k
            self.lists[j].count = len(members)
            for i in members:
                self.cands[k] = i
                k += 1
            if ns < 0:
                self.buckets[b].always = j
            else:
                entries.append((4 * b + ns, key, j))
        size = 8
        while size < 2 * len(entries):
            size *= 2
        table = <RtEntry*>_alloc(size, sizeof(RtEntry))
        memset(table, 0, size * sizeof(RtEntry))
        for j in range(size):
            table[j].tag = -1
        for tag, key, value in entries:
            if tag == NS_HOST_SUFFIX:
                h = _hash_rev(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), tag)
            else:
                h = _hash(PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), tag)
            j = h & (size - 1)
            while table[j].tag >= 0:
                j = (j + 1) & (size - 1)
            e = &table[j]
            e.hash = h
            e.key = PyBytes_AS_STRING(key)
            e.key_len = PyBytes_GET_SIZE(key)
            e.tag = tag
            e.value = value
        self.mask = size - 1
        self.table = table

    def __len__(self):
        return self.n_routes

    # --- per request ---

    cdef int32_t _lookup(self, uint64_t h, int32_t tag,
                                const char* key, Py_ssize_t key_len) noexcept nogil:
        cdef uint64_t j = h & self.mask
        cdef const RtEntry* e
        while True:
            e = &self.table[j]
            if e.tag < 0:
                return -1
            if (e.hash == h and e.tag == tag and e.key_len == key_len
                    and memcmp(e.key, key, key_len) == 0):
                return e.value
            j = (j + 1) & self.mask

    cdef int _push(self, RtGather* g, int32_t list_id) except -1:
        cdef RtCursor* grown
        cdef const RtList* l = &self.lists[list_id]
        if g.n == g.cap:
            grown = <RtCursor*>_alloc(2 * g.cap, sizeof(RtCursor))
            memcpy(grown, g.cur, g.n * sizeof(RtCursor))
            if g.cur != &g.local[0]:
                PyMem_Free(g.cur)
            g.cur = grown
            g.cap *= 2
        g.cur[g.n].p = self.cands + l.start
        g.cur[g.n].end = self.cands + l.start + l.count
        g.n += 1
        return 0

    cdef int _visit(self, RtGather* g, int32_t b, const char* path, Py_ssize_t path_len) except -1:
        cdef const RtBucket* bk = &self.buckets[b]
        cdef uint64_t s = SLUICE_RT_SEED
        cdef Py_ssize_t done = 0, length     # path[:done] is absorbed, in whole blocks
        cdef int32_t j, list_id
        cdef int32_t tag = 4 * b + NS_PATH_PREFIX
        if bk.always >= 0:
            self._push(g, bk.always)
        for j in range(bk.len_start, bk.len_start + bk.len_count):
            length = self.lens[j]
            if length > path_len:
                break
            while done + 8 <= length:
                s = _absorb(s, _load8(path + done))
                done += 8
            list_id = self._lookup(_finish(s, path + done, length - done, length, tag),
                                   tag, path, length)
            if list_id >= 0:
                self._push(g, list_id)
        if bk.n_exact:
            tag = 4 * b + NS_PATH_EXACT
            while done + 8 <= path_len:
                s = _absorb(s, _load8(path + done))
                done += 8
            list_id = self._lookup(_finish(s, path + done, path_len - done, path_len, tag),
                                   tag, path, path_len)
            if list_id >= 0:
                self._push(g, list_id)
        return 0

    cdef object _compile(self, Py_ssize_t i):
        """Route i's RE2 program, compiled the first time a request reaches it as a candidate
        and kept: a reload of 10,000 regex routes would otherwise pay ~8 us each (75 ms) while
        the worker serves nothing. Its ``Match(anchor, text, pos, endpos)`` is the cheapest
        call the binding offers (the public ``fullmatch`` builds a match object through a
        generator per call). A pattern RE2 refuses never matches: the policy layer refuses it
        with a message before it gets here (the constructor does not validate meaning)."""
        program = _re2.RE2(self.regex[i], _RE2_OPTIONS)
        fn = program.Match if program.ok() else None
        self.regex[i] = fn
        return fn

    cdef int _identity_ok(self, Py_ssize_t i, object identity) except -1:
        """match.client_identity: the peer's verified SPIFFE ID equals the condition, or
        starts with it when it ends in "/*" (the slash kept: ns/shop/* is not ns/shopping)."""
        cdef bytes want = self.identity[i]
        if identity is None:
            return 0
        if want.endswith(b"/*"):
            return (<bytes>identity).startswith(want[:-1])
        return identity == want

    cdef int _headers_ok(self, const RtRoute* r, object headers) except -1:
        cdef int32_t j
        if headers is None:
            return 0
        for j in range(r.hdr_start, r.hdr_start + r.hdr_count):
            value = headers.get(self.hdr_names[j])
            if value is None or value != self.hdr_values[j]:
                return 0
        return 1

    cdef int match(self, const char* host, Py_ssize_t host_len,
                   const char* path, Py_ssize_t path_len,
                   const char* method, Py_ssize_t method_len,
                   object headers, object identity=None) except -2:
        cdef RtGather g
        cdef Py_ssize_t i, lo, end
        cdef uint64_t s
        cdef int32_t b, best
        cdef int k, m
        cdef const RtRoute* r
        cdef object path_obj = None
        cdef object fn
        g.cur = &g.local[0]
        g.n = 0
        g.cap = RT_GATHER_LOCAL
        if self.table == NULL:
            return -1
        try:
            # gather: bucket 0, the exact host's bucket, the buckets of the host's dot-suffixes
            self._visit(&g, 0, path, path_len)
            if self.n_host_exact:
                b = self._lookup(_hash(host, host_len, NS_HOST_EXACT), NS_HOST_EXACT,
                                 host, host_len)
                if b >= 0:
                    self._visit(&g, b, path, path_len)
            if self.n_host_suffix and host_len > 1:
                lo = host_len - self.max_suffix_len
                if lo < 1:
                    lo = 1
                s = SLUICE_RT_SEED
                end = host_len               # host[end:] is absorbed, in whole blocks
                i = host_len
                while i > lo:
                    i -= 1
                    if host[i] != b'.':
                        continue
                    while end - 8 >= i:
                        s = _absorb(s, _load8(host + end - 8))
                        end -= 8
                    b = self._lookup(_finish(s, host + i, end - i, host_len - i, NS_HOST_SUFFIX),
                                     NS_HOST_SUFFIX, host + i, host_len - i)
                    if b >= 0:
                        self._visit(&g, b, path, path_len)

            # merge the visited lists in ascending route order; the first full match wins
            while g.n > 0:
                m = 0
                best = g.cur[0].p[0]
                for k in range(1, g.n):
                    if g.cur[k].p[0] < best:
                        best = g.cur[k].p[0]
                        m = k
                r = &self.routes[best]
                if _cheap(r, self.methods, host, host_len, path, path_len, method, method_len):
                    if not r.py_checks:
                        return best
                    if ((r.hdr_count == 0 or self._headers_ok(r, headers)) and
                            (self.identity[best] is None or self._identity_ok(best, identity))):
                        if r.path_kind != PATH_REGEX:
                            return best
                        if path_obj is None:
                            path_obj = PyBytes_FromStringAndSize(path, path_len)
                        fn = self.regex[best]
                        if type(fn) is bytes:
                            fn = self._compile(best)
                        if fn is not None and fn(_ANCHOR_BOTH, path_obj, 0, path_len)[0][0] >= 0:
                            return best
                g.cur[m].p += 1
                if g.cur[m].p == g.cur[m].end:
                    g.n -= 1
                    g.cur[m] = g.cur[g.n]
            return -1
        finally:
            if g.cur != &g.local[0]:
                PyMem_Free(g.cur)

    def match_py(self, bytes host not None, bytes path not None, bytes method not None,
                 headers=None, bytes identity=None):
        """match() for tests and ``sluice explain``: headers is a dict (or anything with .get)
        keyed by lowercase bytes names, or None for no headers; identity the peer's SPIFFE ID."""
        return self.match(PyBytes_AS_STRING(host), PyBytes_GET_SIZE(host),
                          PyBytes_AS_STRING(path), PyBytes_GET_SIZE(path),
                          PyBytes_AS_STRING(method), PyBytes_GET_SIZE(method), headers,
                          identity)

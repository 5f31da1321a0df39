# cython: language_level=3
"""HPACK (RFC 7541): header compression for HTTP/2, decoder and encoder.

Theory of operation
===================

Who calls it
    `http2` owns one Decoder and one Encoder per connection (HPACK state is per connection and
    per direction). It joins a HEADERS or PUSH_PROMISE frame's fragment with its CONTINUATIONs
    (its own cap bounds the total) and hands the complete block to ``Decoder.decode``; for each
    block it sends it calls ``Encoder.encode`` and splits the bytes into frames. Blocks must be
    decoded and encoded in the order they travel on the connection: the dynamic tables of both
    ends change with every block, including blocks whose stream is later refused.

Decoder
    * One pass over the block (6.1-6.3). Names and values are written into one scratch buffer,
      one field after the other (name then value), and their offsets into per-field arrays. On
      success the scratch becomes ``hb.head`` (one bytes object, one copy) and the arrays are
      copied into the HeaderBlock, with ``hdr_id`` from headers.header_id and the flags below.
    * Flags: HF_NEVER_INDEXED on a field that arrived "never indexed" (6.2.3), so the encoder
      that forwards it keeps it never indexed (7.1.3); HF_PSEUDO on a pseudo-header field.
      Pseudo-header facts (RFC 9113 8.3) are kept beside: ``pseudo_end`` (index of the first
      regular field), ``pseudo_flags`` (PSF_*: a pseudo-header after a regular field, twice, or
      unknown) and the index of each of the six. Deciding what is malformed is the HTTP/2
      layer's job: requests and responses allow different pseudo-headers. Likewise
      ``malformed``: the index of the first field whose characters RFC 9113 8.2.1 forbids
      (checked once per literal; a table entry keeps its verdict), -1 if none.
    * Dynamic table: a ring of entries (name + value in one malloc each), with the size
      accounting of 4.1 (name + value + 32 per entry) and eviction of 4.3/4.4. A new entry's
      bytes are copied before the eviction it causes, so "a literal with an indexed name that
      evicts that very entry" (4.4) is safe.
    * Table size updates (4.2, 6.3) only before the first field of a block and never above the
      limit we advertised; when we lower our limit below the table's size (``set_max_table_size``
      after the peer's SETTINGS ACK), the next block must open with an update that brings the
      table down to it (as nghttp2 requires). Anything else: COMPRESSION_ERROR.
    * Integers (5.1) are limited to HPACK_INT_MAX (2^28 - 1) and to 5 continuation bytes;
      strings to what is left of the block. Huffman (5.2) is a table-driven state machine over
      nibbles (nghttp2's design): 256 states (the internal nodes of the code tree) x 16 nibbles,
      derived at import from the code of Appendix B. Reaching EOS fails; at the end of the
      string the state must be the root or an all-ones path of at most 7 bits.
    * Bounds, each checked before an indexed field is copied out of a table. Only references
      amplify: a literal string costs at most 8/5 of its encoded bytes, and an indexed *name*
      at most one table entry, counted before the next field is copied:
        - a header bomb: the block's decoded size (name + value + 32 per field) above both
          ``bomb_floor`` (at least twice the table limit: every entry of a full table referenced
          once is legitimate) and ``bomb_ratio`` x the block's length is a connection error
          (HPACK_E_BOMB -> ENHANCE_YOUR_CALM) at once, before the field is materialised;
        - SETTINGS_MAX_HEADER_LIST_SIZE semantics (``max_list_size``, RFC 9113 6.5.2) and
          ``max_headers`` (<= HB_MAX_HEADERS_HARD) are stream errors: the decoder stops
          materialising, decodes the rest of the block to keep its table in step with the
          peer's, and returns HPACK_E_LIST_TOO_LARGE / HPACK_E_TOO_MANY_FIELDS.
    * A connection error kills the decoder: every later call returns the same code.

Encoder
    * Fields are the pseudo-header pairs first, then the HeaderBlock's fields that are not
      HF_HOP, HF_DROP or HF_PSEUDO, then the edits (the same inputs as headers.build_head).
      Names are lowercased (RFC 9113 8.2.1); values are sent as they are.
    * Representation (nghttp2's deflater, lib/nghttp2_hd.c):
        - never indexed (6.2.3) for a field that arrived never indexed, for authorization and
          proxy-authorization (h2 marks both; nghttp2 the first), and for a cookie shorter than
          20 bytes (both: short cookies are guessable, 7.1.3); it may use an indexed *name*,
          never a full match, so the next hop sees it never indexed too;
        - a full match in the static or dynamic table: indexed (6.1);
        - otherwise a literal with incremental indexing (6.2.1), except for names whose values
          rarely repeat (nghttp2's list: :path, age, content-length, etag, if-modified-since,
          if-none-match, location, set-cookie) and for entries larger than 3/4 of the table,
          which are literals without indexing (6.2.2);
        - strings are Huffman-encoded when that is strictly shorter (5.2).
    * Table size (4.2): the encoder's table is min(peer's SETTINGS_HEADER_TABLE_SIZE, own cap).
      A change is signalled at the start of the next block: the smallest size reached since the
      last block first (when it is below the final one), then the final size.
    * One bound computed first, one scratch buffer, one bytes object out.

What it never does
    No I/O, frames, clocks, config or logging. No exceptions on the per-byte path: internal
    functions return HPACK_E_* codes; the Python edge (`decode_block`, `HpackError`) is for
    tests and tools. No pure-Python twin: the `hpack` package is the oracle in tests/oracles.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memcmp
from libc.stdint cimport uint8_t, uint16_t, int16_t, int32_t, uint32_t, uint64_t, SIZE_MAX
from cpython.pyport cimport PY_SSIZE_T_MAX

from engine._fast.headers cimport (HeaderBlock, header_id, HB_MAX_HEADERS_HARD, HF_HOP, HF_DROP,
                                   H_HOST)

include "hpack_tables.pxi"


# ---------------------------------------------------------------------------------------------
# Huffman decoding table (RFC 7541 5.2), derived from HUFF_CODE / HUFF_BITS at import

cdef enum:
    HD_SYM = 1         # this nibble completed a symbol (HuffDec.sym)
    HD_FAIL = 2        # this nibble reached EOS

ctypedef struct HuffDec:
    uint8_t state      # the tree node after the nibble (0 = root)
    uint8_t flags
    uint8_t sym

cdef HuffDec HUFF_DEC[256 * 16]
cdef bint HUFF_ACCEPT[256]     # the string may end in this state (root, or <= 7 one bits)


cdef int _build_huffman_decoder() except -1:
    """Build the code tree (internal nodes numbered in creation order, root 0; a leaf is
    stored as -1 - symbol), then walk 4 bits from every node for every nibble. The shortest
    code is 5 bits, so a nibble completes at most one symbol."""
    cdef int child[256][2]
    cdef int depth[256]
    cdef bint ones[256]
    cdef int nnodes = 1, sym, b, node, bit, s, v, cur, nxt, emitted
    cdef bint fail
    child[0][0] = child[0][1] = 0
    depth[0] = 0
    ones[0] = True
    for sym in range(257):
        node = 0
        for b in range(HUFF_BITS[sym] - 1, -1, -1):
            bit = (HUFF_CODE[sym] >> b) & 1
            if b == 0:
                child[node][bit] = -1 - sym
            else:
                if child[node][bit] == 0:
                    if nnodes >= 256:
                        raise RuntimeError("Huffman tree has too many nodes")
                    child[nnodes][0] = child[nnodes][1] = 0
                    depth[nnodes] = depth[node] + 1
                    ones[nnodes] = ones[node] and bit == 1
                    child[node][bit] = nnodes
                    nnodes += 1
                node = child[node][bit]
    if nnodes != 256:
        raise RuntimeError("Huffman tree is not complete")
    for s in range(256):
        HUFF_ACCEPT[s] = ones[s] and depth[s] <= 7
        for v in range(16):
            cur = s
            emitted = -1
            fail = False
            for b in range(3, -1, -1):
                nxt = child[cur][(v >> b) & 1]
                if nxt < 0:
                    if -1 - nxt == 256:
                        fail = True
                        break
                    emitted = -1 - nxt
                    cur = 0
                else:
                    cur = nxt
            HUFF_DEC[s * 16 + v].state = cur
            HUFF_DEC[s * 16 + v].flags = (HD_FAIL if fail else 0) | (HD_SYM if emitted >= 0 else 0)
            HUFF_DEC[s * 16 + v].sym = emitted if emitted >= 0 else 0
    return 0


_build_huffman_decoder()


cdef Py_ssize_t huffman_decode(const unsigned char* s, Py_ssize_t n, unsigned char* out) noexcept nogil:
    cdef Py_ssize_t i, k = 0
    cdef uint8_t state = 0
    cdef const HuffDec* e
    for i in range(n):
        e = &HUFF_DEC[state * 16 + (s[i] >> 4)]
        if e.flags & HD_FAIL:
            return -HPACK_E_HUFFMAN_EOS
        if e.flags & HD_SYM:
            out[k] = e.sym
            k += 1
        state = e.state
        e = &HUFF_DEC[state * 16 + (s[i] & 15)]
        if e.flags & HD_FAIL:
            return -HPACK_E_HUFFMAN_EOS
        if e.flags & HD_SYM:
            out[k] = e.sym
            k += 1
        state = e.state
    if not HUFF_ACCEPT[state]:
        return -HPACK_E_HUFFMAN_PADDING
    return k


cdef Py_ssize_t huffman_encoded_length(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint64_t bits = 0
    for i in range(n):
        bits += HUFF_BITS[s[i]]
    return <Py_ssize_t>((bits + 7) >> 3)


cdef Py_ssize_t huffman_encode(const unsigned char* s, Py_ssize_t n, unsigned char* out) noexcept nogil:
    """MSB first; the last byte is padded with the high bits of EOS (all ones)."""
    cdef Py_ssize_t i, k = 0
    cdef uint64_t acc = 0
    cdef int nbits = 0
    cdef uint8_t c
    for i in range(n):
        c = s[i]
        acc = (acc << HUFF_BITS[c]) | HUFF_CODE[c]
        nbits += HUFF_BITS[c]
        while nbits >= 8:
            nbits -= 8
            out[k] = <uint8_t>(acc >> nbits)
            k += 1
    if nbits:
        out[k] = <uint8_t>((acc << (8 - nbits)) | ((1u << (8 - nbits)) - 1))
        k += 1
    return k


# ---------------------------------------------------------------------------------------------
# Dynamic table (RFC 7541 2.3.2, 4)

cdef inline HEntry* _dt_get(DynTable* t, uint32_t d) noexcept nogil:
    """Entry with dynamic index d (1 = newest), 1 <= d <= t.len."""
    return &t.ring[(t.start + t.len - d) & (t.cap - 1)]


cdef void _dt_evict_to(DynTable* t, size_t target) noexcept nogil:
    """Evict the oldest entries until the table's size is <= target (4.3)."""
    cdef HEntry* e
    while t.len and t.size > target:
        e = &t.ring[t.start]
        t.size -= e.nlen + e.vlen + HPACK_ENTRY_OVERHEAD
        free(e.data)
        e.data = NULL
        t.start = (t.start + 1) & (t.cap - 1)
        t.len -= 1


cdef void _dt_free(DynTable* t) noexcept nogil:
    _dt_evict_to(t, 0)
    free(t.ring)
    t.ring = NULL
    t.cap = 0
    t.start = 0


cdef void _dt_set_max(DynTable* t, size_t m) noexcept nogil:
    t.max_size = m
    _dt_evict_to(t, m)


cdef int _dt_add(DynTable* t, const char* name, size_t nlen, const char* value, size_t vlen,
                 uint32_t nh, uint32_t vh, uint8_t bad) except -1:
    """Insert a new entry (4.4). An entry larger than the table empties it and is not added.
    The bytes are copied first: `name` may point into an entry this insert evicts."""
    cdef size_t size = nlen + vlen + HPACK_ENTRY_OVERHEAD
    cdef char* data
    cdef HEntry* ring
    cdef HEntry* e
    cdef uint32_t i, ncap
    if size > t.max_size:
        _dt_evict_to(t, 0)
        return 0
    data = <char*>malloc(nlen + vlen + 1)
    if data == NULL:
        raise MemoryError()
    memcpy(data, name, nlen)
    memcpy(data + nlen, value, vlen)
    _dt_evict_to(t, t.max_size - size)
    if t.len == t.cap:
        ncap = t.cap * 2 if t.cap else 8
        ring = <HEntry*>malloc(ncap * sizeof(HEntry))
        if ring == NULL:
            free(data)
            raise MemoryError()
        for i in range(t.len):
            ring[i] = t.ring[(t.start + i) & (t.cap - 1)]
        free(t.ring)
        t.ring = ring
        t.cap = ncap
        t.start = 0
    e = &t.ring[(t.start + t.len) & (t.cap - 1)]
    e.data = data
    e.nlen = <uint32_t>nlen
    e.vlen = <uint32_t>vlen
    e.nhash = nh
    e.vhash = vh
    e.bad = bad
    t.len += 1
    t.size += size
    return 0


cdef list _dt_entries(DynTable* t):
    """[(name, value)], newest first (tests)."""
    cdef uint32_t d
    cdef HEntry* e
    out = []
    for d in range(1, t.len + 1):
        e = _dt_get(t, d)
        out.append((PyBytes_FromStringAndSize(e.data, e.nlen),
                    PyBytes_FromStringAndSize(e.data + e.nlen, e.vlen)))
    return out


# ---------------------------------------------------------------------------------------------
# Integers (5.1)

cdef inline int _int(const unsigned char* p, Py_ssize_t n, Py_ssize_t* pos, int prefix,
                     uint32_t* out) noexcept nogil:
    """Decode an integer with an N-bit prefix at p[pos[0]] (the caller checked pos < n)."""
    cdef uint32_t mask = (1u << prefix) - 1
    cdef uint64_t v = p[pos[0]] & mask
    cdef int shift = 0
    cdef uint8_t b
    pos[0] += 1
    if v < mask:
        out[0] = <uint32_t>v
        return HPACK_OK
    while True:
        if pos[0] >= n:
            return HPACK_E_TRUNCATED
        b = p[pos[0]]
        pos[0] += 1
        v += (<uint64_t>(b & 0x7f)) << shift
        if v > HPACK_INT_MAX:
            return HPACK_E_INTEGER
        if not b & 0x80:
            break
        shift += 7
        if shift > 28:
            return HPACK_E_INTEGER
    out[0] = <uint32_t>v
    return HPACK_OK


cdef inline Py_ssize_t _put_int(char* out, uint32_t v, int prefix, uint8_t first) noexcept nogil:
    cdef uint32_t mask = (1u << prefix) - 1
    cdef Py_ssize_t k = 1
    if v < mask:
        out[0] = <char>(first | v)
        return 1
    out[0] = <char>(first | mask)
    v -= mask
    while v >= 128:
        out[k] = <char>((v & 0x7f) | 0x80)
        v >>= 7
        k += 1
    out[k] = <char>v
    return k + 1


# ---------------------------------------------------------------------------------------------
# Static table lookups (Appendix A)

cdef inline uint32_t _hash(const char* s, Py_ssize_t n) noexcept nogil:
    """FNV-1a: the encoder compares hashes before bytes."""
    cdef uint32_t h = 2166136261u
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ <uint8_t>s[i]) * 16777619u
    return h


cdef uint32_t STATIC_NHASH[61]
cdef uint32_t STATIC_VHASH[61]
cdef int _i
for _i in range(STATIC_LEN):
    STATIC_NHASH[_i] = _hash(STATIC_NAME[_i], STATIC_NLEN[_i])
    STATIC_VHASH[_i] = _hash(STATIC_VALUE[_i], STATIC_VLEN[_i])


cdef inline bint _eq(const char* a, Py_ssize_t an, const char* b, Py_ssize_t bn) noexcept nogil:
    return an == bn and memcmp(a, b, an) == 0


# the six pseudo-headers of RFC 9113 8.3 (and RFC 8441 :protocol), in PS_* order
cdef const char* PSEUDO_NAME[6]
PSEUDO_NAME[:] = [b":method", b":scheme", b":authority", b":path", b":status", b":protocol"]
cdef int PSEUDO_LEN[6]
PSEUDO_LEN[:] = [7, 7, 10, 5, 7, 9]


cdef inline int _pseudo_kind(const char* s, Py_ssize_t n) noexcept nogil:
    cdef int k
    for k in range(PS_COUNT):
        if n == PSEUDO_LEN[k] and memcmp(s, PSEUDO_NAME[k], n) == 0:
            return k
    return -1


# RFC 9113 8.2.1 field validity, as data: NAME_OK[c] for a name byte (0x21-0x7e without
# uppercase and ':'), VALUE_BAD[c] for a value byte (NUL, LF, CR)
cdef bint NAME_OK[256]
cdef bint VALUE_BAD[256]
for _i in range(256):
    NAME_OK[_i] = 0x21 <= _i <= 0x7e and not (0x41 <= _i <= 0x5a) and _i != 0x3a
    VALUE_BAD[_i] = _i == 0 or _i == 0x0a or _i == 0x0d


cdef bint _field_bad(const unsigned char* name, Py_ssize_t nlen, const unsigned char* value,
                     Py_ssize_t vlen) noexcept nogil:
    """The field is malformed by RFC 9113 8.2.1: an empty name, a name byte outside 0x21-0x7e,
    uppercase, or a ':' other than a pseudo-header's first byte; a value with NUL, LF or CR, or
    starting or ending with SP or HTAB. Run once per literal (an indexed field reuses the
    verdict stored with its table entry; the static table is valid)."""
    cdef Py_ssize_t i = 1 if nlen and name[0] == b':' else 0
    if nlen == i:
        return True
    while i < nlen:
        if not NAME_OK[name[i]]:
            return True
        i += 1
    if vlen:
        if value[0] == b' ' or value[0] == b'\t' or value[vlen - 1] == b' ' or value[vlen - 1] == b'\t':
            return True
        for i in range(vlen):
            if VALUE_BAD[value[i]]:
                return True
    return False


cdef int hpack_h2_error(int code) noexcept nogil:
    if code == HPACK_E_BOMB:
        return 0xb           # ENHANCE_YOUR_CALM
    if hpack_is_connection_error(code):
        return 0x9           # COMPRESSION_ERROR
    return 0


# ---------------------------------------------------------------------------------------------
# Decoder

cdef enum:
    DEC_INITIAL_BUF = 1024
    DEC_KEEP_BUF = 8192        # a larger scratch is freed after the block (idle memory)
    DEC_INITIAL_FIELDS = 16


cdef int _reserve(char** buf, Py_ssize_t* cap, Py_ssize_t need, Py_ssize_t initial) except -1:
    """Grow the scratch buffer *buf (capacity *cap) to hold `need` bytes, doubling from
    `initial`: the decoder's output and the encoder's block share this."""
    cdef Py_ssize_t c
    cdef char* nb
    if need <= cap[0]:
        return 0
    c = cap[0] * 2 if cap[0] else initial
    while c < need:
        c *= 2
    nb = <char*>realloc(buf[0], c)
    if nb == NULL:
        raise MemoryError()
    buf[0] = nb
    cap[0] = c
    return 0

@cython.final
cdef class Decoder:
    """One connection's HPACK decoder (see the module docstring)."""

    def __cinit__(self, size_t max_table_size=HPACK_DEFAULT_TABLE_SIZE,
                  Py_ssize_t max_list_size=65536, int max_headers=100,
                  Py_ssize_t bomb_floor=16384, Py_ssize_t bomb_ratio=16):
        # Until our SETTINGS are acknowledged the peer may use the protocol's default table
        # (RFC 9113 6.5.2); `max_table_size` is where we start, usually that default.
        self.table.ring = NULL
        self.table.cap = self.table.start = self.table.len = 0
        self.table.size = 0
        self.table.max_size = max_table_size
        self.limit = max_table_size
        self.expect_update = False
        self.max_list_size = max_list_size
        self.max_headers = max_headers
        self.bomb_floor = bomb_floor
        self.bomb_ratio = bomb_ratio
        self.buf = NULL
        self.bufcap = 0
        self.f_ns = NULL
        self.fcap = 0
        self.dead = 0
        self.pseudo_end = 0
        self.pseudo_flags = 0
        self.list_size = 0
        self.malformed = -1

    def __dealloc__(self):
        _dt_free(&self.table)
        free(self.buf)
        free(self.f_ns)

    cpdef set_max_table_size(self, size_t n):
        """Our SETTINGS_HEADER_TABLE_SIZE took effect (the peer acknowledged it). A limit below
        the table's current maximum shrinks the table now, and the peer's next block must
        open with a size update to at most `n` (4.2; nghttp2 checks the same)."""
        self.limit = n
        if self.table.max_size > n:
            _dt_set_max(&self.table, n)
            self.expect_update = True
            self.required_max = n

    cdef int _ensure(self, Py_ssize_t extra) except -1:
        return _reserve(&self.buf, &self.bufcap, self.wpos + extra, DEC_INITIAL_BUF)

    cdef int _grow_fields(self) except -1:
        cdef int cap = self.fcap * 2 if self.fcap else DEC_INITIAL_FIELDS
        cdef char* block
        if cap > HB_MAX_HEADERS_HARD:
            cap = HB_MAX_HEADERS_HARD
        block = <char*>malloc(<size_t>cap * (3 * sizeof(int32_t) + sizeof(uint8_t)))
        if block == NULL:
            raise MemoryError()
        if self.fcap:
            memcpy(block, self.f_ns, self.nf * sizeof(int32_t))
            memcpy(block + cap * sizeof(int32_t), self.f_vs, self.nf * sizeof(int32_t))
            memcpy(block + 2 * cap * sizeof(int32_t), self.f_ve, self.nf * sizeof(int32_t))
            memcpy(block + 3 * cap * sizeof(int32_t), self.f_flags, self.nf)
        free(self.f_ns)
        self.f_ns = <int32_t*>block
        self.f_vs = self.f_ns + cap
        self.f_ve = self.f_vs + cap
        self.f_flags = <uint8_t*>(self.f_ve + cap)
        self.fcap = cap
        return 0

    cdef int _string(self, const unsigned char* p, Py_ssize_t n, Py_ssize_t* pos,
                     Py_ssize_t* outlen) except -1:
        """A string literal (5.2) at p[pos], decoded to buf[wpos:]; wpos advances."""
        cdef uint32_t ln
        cdef int rc
        cdef Py_ssize_t k
        if pos[0] >= n:
            return HPACK_E_TRUNCATED
        cdef bint huff = p[pos[0]] & 0x80
        rc = _int(p, n, pos, 7, &ln)
        if rc:
            return rc
        if ln > n - pos[0]:
            return HPACK_E_TRUNCATED
        if huff:
            self._ensure((<Py_ssize_t>ln * 8) // 5 + 1)
            k = huffman_decode(p + pos[0], ln, <unsigned char*>self.buf + self.wpos)
            if k < 0:
                return <int>-k
        else:
            self._ensure(ln)
            memcpy(self.buf + self.wpos, p + pos[0], ln)
            k = ln
        pos[0] += ln
        self.wpos += k
        outlen[0] = k
        return HPACK_OK

    cdef int _account(self, Py_ssize_t nlen, Py_ssize_t vlen) noexcept:
        """Count a field before it is materialised: the bomb bound (connection error), then
        the stream bounds (stop keeping fields). Returns HPACK_E_BOMB or 0."""
        self.total += nlen + vlen + HPACK_ENTRY_OVERHEAD
        if self.total > self.bomb_at:
            return HPACK_E_BOMB
        if self.keep:
            if self.nf >= self.lim_headers:
                self.keep = False
                self.soft = HPACK_E_TOO_MANY_FIELDS
            elif self.total > self.max_list_size:
                self.keep = False
                self.soft = HPACK_E_LIST_TOO_LARGE
        return 0

    cdef int _commit(self, Py_ssize_t start, Py_ssize_t nlen, Py_ssize_t vlen, int flags,
                     bint bad) except -1:
        """Record the field at buf[start:] (name then value) and its pseudo-header and
        validity facts."""
        cdef int k, i
        if self.nf == self.fcap:
            self._grow_fields()
        i = self.nf
        if bad and self.malformed < 0:
            self.malformed = i
        if nlen and self.buf[start] == b':':
            flags |= HF_PSEUDO
            if self.pseudo_end < i:
                self.pseudo_flags |= PSF_AFTER_REGULAR
            else:
                self.pseudo_end = i + 1
            k = _pseudo_kind(self.buf + start, nlen)
            if k < 0:
                self.pseudo_flags |= PSF_UNKNOWN
            elif self.pseudo_idx[k] >= 0:
                self.pseudo_flags |= PSF_DUPLICATE
            else:
                self.pseudo_idx[k] = <int16_t>i
        self.f_ns[i] = <int32_t>start
        self.f_vs[i] = <int32_t>(start + nlen)
        self.f_ve[i] = <int32_t>(start + nlen + vlen)
        self.f_flags[i] = <uint8_t>flags
        self.nf = i + 1
        return 0

    cdef int _run(self, const unsigned char* p, Py_ssize_t n) except -1:
        cdef Py_ssize_t pos = 0, start, nlen, vlen
        cdef uint32_t idx, v
        cdef int rc, flags
        cdef uint8_t b
        cdef bint seen_field = False, saw_update = False, indexing, bad
        cdef size_t upd_min = SIZE_MAX
        cdef const char* name
        cdef const char* value
        cdef HEntry* e
        cdef Py_ssize_t floor = self.bomb_floor
        if <Py_ssize_t>(2 * self.limit) > floor:
            floor = 2 * self.limit
        if self.bomb_ratio > 0 and n > PY_SSIZE_T_MAX // self.bomb_ratio:
            self.bomb_at = PY_SSIZE_T_MAX
        else:
            self.bomb_at = self.bomb_ratio * n
        if self.bomb_at < floor:
            self.bomb_at = floor
        while pos < n:
            b = p[pos]
            if b & 0xe0 == 0x20:
                # dynamic table size update (6.3): only before the first field (4.2)
                if seen_field:
                    return HPACK_E_SIZE_UPDATE_NOT_FIRST
                rc = _int(p, n, &pos, 5, &v)
                if rc:
                    return rc
                if v > self.limit:
                    return HPACK_E_SIZE_UPDATE_TOO_LARGE
                _dt_set_max(&self.table, v)
                saw_update = True
                if v < upd_min:
                    upd_min = v
                continue
            if not seen_field:
                seen_field = True
                if self.expect_update:
                    if not saw_update or upd_min > self.required_max:
                        return HPACK_E_SIZE_UPDATE_MISSING
                    self.expect_update = False
            if b & 0x80:
                # indexed field (6.1)
                rc = _int(p, n, &pos, 7, &idx)
                if rc:
                    return rc
                if idx == 0:
                    return HPACK_E_INDEX
                if idx <= STATIC_LEN:
                    name = STATIC_NAME[idx - 1]
                    nlen = STATIC_NLEN[idx - 1]
                    value = STATIC_VALUE[idx - 1]
                    vlen = STATIC_VLEN[idx - 1]
                    bad = False
                elif idx - STATIC_LEN <= self.table.len:
                    e = _dt_get(&self.table, idx - STATIC_LEN)
                    name = e.data
                    nlen = e.nlen
                    value = e.data + e.nlen
                    vlen = e.vlen
                    bad = e.bad
                else:
                    return HPACK_E_INDEX
                rc = self._account(nlen, vlen)
                if rc:
                    return rc
                if self.keep:
                    start = self.wpos
                    self._ensure(nlen + vlen)
                    memcpy(self.buf + start, name, nlen)
                    memcpy(self.buf + start + nlen, value, vlen)
                    self.wpos += nlen + vlen
                    self._commit(start, nlen, vlen, 0, bad)
                continue
            # literal field (6.2): with incremental indexing (01), without (0000), never (0001)
            indexing = b & 0x40
            flags = HF_NEVER_INDEXED if (not indexing and b & 0x10) else 0
            rc = _int(p, n, &pos, 6 if indexing else 4, &idx)
            if rc:
                return rc
            start = self.wpos
            if idx:
                if idx <= STATIC_LEN:
                    name = STATIC_NAME[idx - 1]
                    nlen = STATIC_NLEN[idx - 1]
                elif idx - STATIC_LEN <= self.table.len:
                    e = _dt_get(&self.table, idx - STATIC_LEN)
                    name = e.data
                    nlen = e.nlen
                else:
                    return HPACK_E_INDEX
                self._ensure(nlen)
                memcpy(self.buf + start, name, nlen)
                self.wpos += nlen
            else:
                rc = self._string(p, n, &pos, &nlen)
                if rc:
                    return rc
            rc = self._string(p, n, &pos, &vlen)
            if rc:
                return rc
            bad = _field_bad(<const unsigned char*>self.buf + start, nlen,
                             <const unsigned char*>self.buf + start + nlen, vlen)
            if indexing:
                _dt_add(&self.table, self.buf + start, nlen, self.buf + start + nlen, vlen, 0, 0, bad)
            rc = self._account(nlen, vlen)
            if rc:
                return rc
            if self.keep:
                self._commit(start, nlen, vlen, flags, bad)
            else:
                self.wpos = start
        if self.expect_update and (not saw_update or upd_min > self.required_max):
            return HPACK_E_SIZE_UPDATE_MISSING
        self.expect_update = False
        return self.soft

    cdef void _fill(self, HeaderBlock hb):
        cdef int i
        hb.head = PyBytes_FromStringAndSize(self.buf, self.wpos)
        hb.host_index = -1
        for i in range(self.nf):
            hb.name_s[i] = self.f_ns[i]
            hb.name_e[i] = self.f_vs[i]
            hb.value_s[i] = self.f_vs[i]
            hb.value_e[i] = self.f_ve[i]
            hb.hdr_flags[i] = self.f_flags[i]
            if self.f_flags[i] & HF_PSEUDO:
                hb.hdr_id[i] = 0
            else:
                hb.hdr_id[i] = header_id(<const unsigned char*>self.buf + self.f_ns[i],
                                         self.f_vs[i] - self.f_ns[i])
                if hb.hdr_id[i] == H_HOST and hb.host_index < 0:
                    hb.host_index = i
        hb.nheaders = self.nf

    cdef int decode(self, HeaderBlock hb, const unsigned char* data, Py_ssize_t n) except -1:
        cdef int rc, k
        if self.dead:
            hb.nheaders = 0
            return self.dead
        self.wpos = 0
        self.nf = 0
        self.total = 0
        self.keep = True
        self.soft = 0
        self.lim_headers = self.max_headers if self.max_headers < HB_MAX_HEADERS_HARD else HB_MAX_HEADERS_HARD
        self.pseudo_end = 0
        self.pseudo_flags = 0
        self.malformed = -1
        for k in range(PS_COUNT):
            self.pseudo_idx[k] = -1
        try:
            rc = self._run(data, n)
            self.list_size = self.total
            if rc == HPACK_OK:
                if self.nf > hb.hcap:
                    hb._grow(self.nf)
                self._fill(hb)
            else:
                hb.nheaders = 0
                hb.host_index = -1
                if rc < HPACK_E_FIRST_STREAM_ERROR:
                    self.dead = rc
        except MemoryError:
            self.dead = HPACK_E_TRUNCATED        # the table is out of step: never decode again
            hb.nheaders = 0
            raise
        finally:
            if self.bufcap > DEC_KEEP_BUF:
                free(self.buf)
                self.buf = NULL
                self.bufcap = 0
        return rc

    # -- Python edge (tests, tools) -------------------------------------------------------------

    def decode_block(self, block, HeaderBlock hb=None):
        """Decode `block` (bytes-like) into `hb` (a new HeaderBlock if None) and return it;
        HpackError on any error."""
        cdef const unsigned char[:] mv = memoryview(block).cast("B") if len(block) else b"\0"
        cdef Py_ssize_t n = len(block)
        if hb is None:
            hb = HeaderBlock()
        rc = self.decode(hb, &mv[0], n)
        if rc:
            raise HpackError(rc)
        return hb

    def decode_fields(self, block):
        """[(name, value, never_indexed)] of `block`; HpackError on any error."""
        hb = self.decode_block(block)
        return [(n, v, bool(f & HF_NEVER_INDEXED))
                for (n, v), (_, f) in zip(hb.headers, hb.header_flags)]

    def pseudo_index(self, int kind):
        """Index of the PS_* pseudo-header in the last block, -1 if absent."""
        if kind < 0 or kind >= PS_COUNT:
            raise IndexError(kind)
        return self.pseudo_idx[kind]

    @property
    def header_table_size(self):
        """The dynamic table's current maximum size (set by size updates)."""
        return self.table.max_size

    @property
    def table_size(self):
        """Sum of name + value + 32 over the dynamic table's entries (4.1)."""
        return self.table.size

    @property
    def table_limit(self):
        return self.limit

    def table_entries(self):
        """[(name, value)], newest first (dynamic index 1 first)."""
        return _dt_entries(&self.table)

    @property
    def error(self):
        """The connection error that killed the decoder, or 0."""
        return self.dead


# ---------------------------------------------------------------------------------------------
# Encoder

cdef enum:
    MODE_WITH = 0         # literal with incremental indexing (6.2.1)
    MODE_WITHOUT = 1      # literal without indexing (6.2.2)
    MODE_NEVER = 2        # literal never indexed (6.2.3)

cdef inline bint _named(const char* s, Py_ssize_t n, const char* lit, Py_ssize_t ln) noexcept nogil:
    return n == ln and memcmp(s, lit, ln) == 0


cdef inline int _policy(const char* name, Py_ssize_t nlen, Py_ssize_t vlen, bint never,
                        size_t max_size) noexcept nogil:
    """nghttp2's deflater choice (lib/nghttp2_hd.c deflate_nv, hd_deflate_decide_indexing),
    plus proxy-authorization as h2 does."""
    if never:
        return MODE_NEVER
    if nlen == 13 and _named(name, nlen, b"authorization", 13):
        return MODE_NEVER
    if nlen == 19 and _named(name, nlen, b"proxy-authorization", 19):
        return MODE_NEVER
    if nlen == 6 and vlen < 20 and _named(name, nlen, b"cookie", 6):
        return MODE_NEVER
    if <size_t>(nlen + vlen + HPACK_ENTRY_OVERHEAD) > max_size * 3 // 4:
        return MODE_WITHOUT
    if (_named(name, nlen, b":path", 5) or _named(name, nlen, b"age", 3)
            or _named(name, nlen, b"content-length", 14) or _named(name, nlen, b"etag", 4)
            or _named(name, nlen, b"if-modified-since", 17)
            or _named(name, nlen, b"if-none-match", 13) or _named(name, nlen, b"location", 8)
            or _named(name, nlen, b"set-cookie", 10)):
        return MODE_WITHOUT
    return MODE_WITH


cdef enum:
    ENC_INITIAL_BUF = 512
    ENC_KEEP_BUF = 16384


@cython.final
cdef class Encoder:
    """One connection's HPACK encoder (see the module docstring)."""

    def __cinit__(self, size_t max_table_size=HPACK_DEFAULT_TABLE_SIZE, bint huffman=True):
        # The peer's decoder starts with the protocol default (4096, RFC 9113 6.5.2); an own
        # cap below it is signalled in the first block.
        self.table.ring = NULL
        self.table.cap = self.table.start = self.table.len = 0
        self.table.size = 0
        self.cap = max_table_size
        self.table.max_size = HPACK_DEFAULT_TABLE_SIZE
        self.pending = False
        self.min_pending = SIZE_MAX
        self.huffman = huffman
        self.buf = NULL
        self.bufcap = 0
        self.lname = NULL
        self.lcap = 0
        if max_table_size != HPACK_DEFAULT_TABLE_SIZE:
            self.set_peer_max_table_size(HPACK_DEFAULT_TABLE_SIZE)

    def __dealloc__(self):
        _dt_free(&self.table)
        free(self.buf)
        free(self.lname)

    cpdef set_peer_max_table_size(self, size_t n):
        """The peer's SETTINGS_HEADER_TABLE_SIZE is now `n`: the table becomes min(n, own cap);
        a change is signalled at the start of the next block (4.2)."""
        cdef size_t m = n if n < self.cap else self.cap
        if m == self.table.max_size:
            return
        _dt_set_max(&self.table, m)
        self.pending = True
        if m < self.min_pending:
            self.min_pending = m

    cdef int _ensure(self, Py_ssize_t need) except -1:
        return _reserve(&self.buf, &self.bufcap, need, ENC_INITIAL_BUF)

    cdef void _string(self, const char* s, Py_ssize_t n) noexcept:
        """A string literal (5.2) at buf[w:], Huffman when strictly shorter."""
        cdef Py_ssize_t hl
        if self.huffman and n:
            hl = huffman_encoded_length(<const unsigned char*>s, n)
            if hl < n:
                self.w += _put_int(self.buf + self.w, <uint32_t>hl, 7, 0x80)
                self.w += huffman_encode(<const unsigned char*>s, n,
                                         <unsigned char*>self.buf + self.w)
                return
        self.w += _put_int(self.buf + self.w, <uint32_t>n, 7, 0)
        memcpy(self.buf + self.w, s, n)
        self.w += n

    cdef int _field(self, const char* name0, Py_ssize_t nlen, const char* value, Py_ssize_t vlen,
                    bint never) except -1:
        cdef Py_ssize_t i
        cdef char* name
        cdef char c
        cdef uint32_t nh, vh, d, idx = 0
        cdef int mode
        cdef HEntry* e
        cdef char* nb
        if nlen > self.lcap:
            nb = <char*>realloc(self.lname, nlen)
            if nb == NULL:
                raise MemoryError()
            self.lname = nb
            self.lcap = nlen
        name = self.lname
        for i in range(nlen):
            c = name0[i]
            name[i] = c + 32 if c >= b'A' and c <= b'Z' else c
        mode = _policy(name, nlen, vlen, never, self.table.max_size)
        nh = _hash(name, nlen)
        vh = _hash(value, vlen)
        # static table: a full match (not for never-indexed fields), else the first name match
        for i in range(STATIC_LEN):
            if STATIC_NHASH[i] == nh and _eq(STATIC_NAME[i], STATIC_NLEN[i], name, nlen):
                if idx == 0:
                    idx = <uint32_t>(i + 1)
                if mode == MODE_NEVER:
                    break
                if STATIC_VHASH[i] == vh and _eq(STATIC_VALUE[i], STATIC_VLEN[i], value, vlen):
                    self.w += _put_int(self.buf + self.w, <uint32_t>(i + 1), 7, 0x80)
                    return 0
        # dynamic table, newest first
        for d in range(1, self.table.len + 1):
            e = _dt_get(&self.table, d)
            if e.nhash == nh and _eq(e.data, e.nlen, name, nlen):
                if mode != MODE_NEVER and e.vhash == vh and _eq(e.data + e.nlen, e.vlen, value, vlen):
                    self.w += _put_int(self.buf + self.w, STATIC_LEN + d, 7, 0x80)
                    return 0
                if idx == 0:
                    idx = STATIC_LEN + d
                    if mode == MODE_NEVER:
                        break
        if mode == MODE_WITH:
            self.w += _put_int(self.buf + self.w, idx, 6, 0x40)
        elif mode == MODE_WITHOUT:
            self.w += _put_int(self.buf + self.w, idx, 4, 0x00)
        else:
            self.w += _put_int(self.buf + self.w, idx, 4, 0x10)
        if idx == 0:
            self._string(name, nlen)
        self._string(value, vlen)
        if mode == MODE_WITH:
            _dt_add(&self.table, name, nlen, value, vlen, nh, vh, 0)
        return 0

    cdef bytes encode(self, HeaderBlock h, list pseudo, list edits):
        cdef Py_ssize_t bound = 16, i, np = 0, nx = 0
        cdef int nh = 0, k
        cdef const char* head = NULL
        cdef bytes n, v
        cdef bytes out
        if pseudo is not None:
            np = len(pseudo)
            if np & 1:
                raise ValueError("pseudo must be name, value pairs")
            for i in range(np):
                bound += PyBytes_GET_SIZE(<bytes?>pseudo[i]) + 10
        if edits is not None:
            nx = len(edits)
            if nx & 1:
                raise ValueError("edits must be name, value pairs")
            for i in range(nx):
                bound += PyBytes_GET_SIZE(<bytes?>edits[i]) + 10
        if h is not None and h.nheaders:
            nh = h.nheaders
            head = PyBytes_AS_STRING(h.head)
            for k in range(nh):
                bound += (h.name_e[k] - h.name_s[k]) + (h.value_e[k] - h.value_s[k]) + 20
        self._ensure(bound)
        self.w = 0
        if self.pending:
            # 4.2: the smallest size since the last block, then the current one
            if self.min_pending < self.table.max_size:
                self.w += _put_int(self.buf, <uint32_t>self.min_pending, 5, 0x20)
            self.w += _put_int(self.buf + self.w, <uint32_t>self.table.max_size, 5, 0x20)
            self.pending = False
            self.min_pending = SIZE_MAX
        i = 0
        while i < np:
            n = <bytes>pseudo[i]
            v = <bytes>pseudo[i + 1]
            self._field(PyBytes_AS_STRING(n), PyBytes_GET_SIZE(n),
                        PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v), False)
            i += 2
        for k in range(nh):
            if h.hdr_flags[k] & (HF_HOP | HF_DROP | HF_PSEUDO):
                continue
            self._field(head + h.name_s[k], h.name_e[k] - h.name_s[k],
                        head + h.value_s[k], h.value_e[k] - h.value_s[k],
                        h.hdr_flags[k] & HF_NEVER_INDEXED)
        i = 0
        while i < nx:
            n = <bytes>edits[i]
            v = <bytes>edits[i + 1]
            self._field(PyBytes_AS_STRING(n), PyBytes_GET_SIZE(n),
                        PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v), False)
            i += 2
        out = PyBytes_FromStringAndSize(self.buf, self.w)
        if self.bufcap > ENC_KEEP_BUF:
            free(self.buf)
            self.buf = NULL
            self.bufcap = 0
        return out

    # -- Python edge (tests, tools) -------------------------------------------------------------

    def encode_block(self, HeaderBlock h=None, pseudo=None, edits=None):
        """encode() for Python callers."""
        return self.encode(h, pseudo, edits)

    def encode_fields(self, fields):
        """Encode [(name, value)] or [(name, value, never_indexed)] (tests, tools)."""
        return self.encode(block_from_fields(fields, False), None, None)

    @property
    def header_table_size(self):
        return self.table.max_size

    @property
    def table_size(self):
        return self.table.size

    def table_entries(self):
        """[(name, value)], newest first."""
        return _dt_entries(&self.table)


# ---------------------------------------------------------------------------------------------
# Python edge

_NAMES = {
    HPACK_E_TRUNCATED: "truncated", HPACK_E_INTEGER: "integer_overflow",
    HPACK_E_INDEX: "bad_index", HPACK_E_HUFFMAN_EOS: "huffman_eos",
    HPACK_E_HUFFMAN_PADDING: "huffman_padding",
    HPACK_E_SIZE_UPDATE_TOO_LARGE: "size_update_too_large",
    HPACK_E_SIZE_UPDATE_NOT_FIRST: "size_update_not_first",
    HPACK_E_SIZE_UPDATE_MISSING: "size_update_missing", HPACK_E_BOMB: "header_bomb",
    HPACK_E_LIST_TOO_LARGE: "list_too_large", HPACK_E_TOO_MANY_FIELDS: "too_many_fields",
}


class HpackError(Exception):
    """A decoder error at the Python edge: `code` (HPACK_E_*), `name`, `h2_error` (the
    RFC 9113 error code, 0 for a stream error) and `connection_error`."""

    def __init__(self, int code):
        self.code = code
        self.name = _NAMES.get(code, str(code))
        self.h2_error = hpack_h2_error(code)
        self.connection_error = hpack_is_connection_error(code)
        super().__init__(f"HPACK {self.name} ({code})")


def block_from_fields(fields, bint mark_pseudo=True):
    """A HeaderBlock holding [(name, value)] or [(name, value, never_indexed)] as a decoder
    would fill it (tests, tools); with mark_pseudo=False no field gets HF_PSEUDO, so an
    encoder sends every field in order."""
    cdef HeaderBlock hb = HeaderBlock()
    cdef int i = 0, n = len(fields)
    cdef Py_ssize_t off = 0
    parts = []
    if n > HB_MAX_HEADERS_HARD:
        raise ValueError("too many fields")
    hb._grow(n)
    for f in fields:
        name, value = f[0], f[1]
        never = len(f) > 2 and f[2]
        hb.name_s[i] = off
        hb.name_e[i] = hb.value_s[i] = off + len(name)
        hb.value_e[i] = off + len(name) + len(value)
        off = hb.value_e[i]
        hb.hdr_flags[i] = HF_NEVER_INDEXED if never else 0
        if mark_pseudo and name[:1] == b":":
            hb.hdr_flags[i] |= HF_PSEUDO
        hb.hdr_id[i] = header_id(<const unsigned char*>PyBytes_AS_STRING(<bytes?>name), len(name))
        parts.append(name)
        parts.append(value)
        i += 1
    hb.head = b"".join(parts)
    hb.nheaders = n
    return hb


def huffman_encode_py(bytes s):
    cdef bytes out = PyBytes_FromStringAndSize(NULL, huffman_encoded_length(
        <const unsigned char*>PyBytes_AS_STRING(s), PyBytes_GET_SIZE(s)))
    huffman_encode(<const unsigned char*>PyBytes_AS_STRING(s), PyBytes_GET_SIZE(s),
                   <unsigned char*>PyBytes_AS_STRING(out))
    return out


def huffman_decode_py(bytes s):
    """Decode a Huffman string; HpackError on EOS or bad padding."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(s)
    cdef unsigned char* tmp = <unsigned char*>malloc(n * 8 // 5 + 1)
    cdef Py_ssize_t k
    if tmp == NULL:
        raise MemoryError()
    try:
        k = huffman_decode(<const unsigned char*>PyBytes_AS_STRING(s), n, tmp)
        if k < 0:
            raise HpackError(<int>-k)
        return PyBytes_FromStringAndSize(<char*>tmp, k)
    finally:
        free(tmp)


globals().update(
    HPACK_OK=HPACK_OK, HPACK_E_TRUNCATED=HPACK_E_TRUNCATED, HPACK_E_INTEGER=HPACK_E_INTEGER,
    HPACK_E_INDEX=HPACK_E_INDEX, HPACK_E_HUFFMAN_EOS=HPACK_E_HUFFMAN_EOS,
    HPACK_E_HUFFMAN_PADDING=HPACK_E_HUFFMAN_PADDING,
    HPACK_E_SIZE_UPDATE_TOO_LARGE=HPACK_E_SIZE_UPDATE_TOO_LARGE,
    HPACK_E_SIZE_UPDATE_NOT_FIRST=HPACK_E_SIZE_UPDATE_NOT_FIRST,
    HPACK_E_SIZE_UPDATE_MISSING=HPACK_E_SIZE_UPDATE_MISSING, HPACK_E_BOMB=HPACK_E_BOMB,
    HPACK_E_LIST_TOO_LARGE=HPACK_E_LIST_TOO_LARGE, HPACK_E_TOO_MANY_FIELDS=HPACK_E_TOO_MANY_FIELDS,
    HPACK_INT_MAX=HPACK_INT_MAX, HF_NEVER_INDEXED=HF_NEVER_INDEXED, HF_PSEUDO=HF_PSEUDO,
    PS_METHOD=PS_METHOD, PS_SCHEME=PS_SCHEME, PS_AUTHORITY=PS_AUTHORITY, PS_PATH=PS_PATH,
    PS_STATUS=PS_STATUS, PS_PROTOCOL=PS_PROTOCOL, PSF_AFTER_REGULAR=PSF_AFTER_REGULAR,
    PSF_DUPLICATE=PSF_DUPLICATE, PSF_UNKNOWN=PSF_UNKNOWN,
)

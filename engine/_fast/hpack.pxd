# The HPACK codec's contract for other compiled modules (http2, proxy, bench). See hpack.pyx for
# the theory of operation. Sans-I/O: a complete header block in, a HeaderBlock out; a HeaderBlock
# plus edits in, one bytes object out. No sockets, clocks, config or frames here.

cimport cython
from libc.stdint cimport uint8_t, int16_t, int32_t, uint32_t
from engine._fast.headers cimport HeaderBlock, HF_NEVER_INDEXED, HF_PSEUDO

# Decoder results (Decoder.decode). 0 is success; the rest split in two by what they cost:
cdef enum:
    HPACK_OK = 0
    # Connection errors (RFC 9113 4.3: COMPRESSION_ERROR; the bomb: ENHANCE_YOUR_CALM). The
    # decoder's dynamic table can no longer be trusted: it answers every later block with the
    # same code, and the connection must end with GOAWAY (hpack_h2_error gives the code).
    HPACK_E_TRUNCATED = 1              # the block ends inside a representation or a string
    HPACK_E_INTEGER = 2                # an integer above HPACK_INT_MAX or with too many bytes
    HPACK_E_INDEX = 3                  # index 0, or beyond the static + dynamic tables (2.3.3)
    HPACK_E_HUFFMAN_EOS = 4            # the EOS symbol inside a Huffman string (5.2)
    HPACK_E_HUFFMAN_PADDING = 5        # padding longer than 7 bits or not all ones (5.2)
    HPACK_E_SIZE_UPDATE_TOO_LARGE = 6  # a table size update above our SETTINGS limit (6.3)
    HPACK_E_SIZE_UPDATE_NOT_FIRST = 7  # a table size update after a field (4.2)
    HPACK_E_SIZE_UPDATE_MISSING = 8    # we lowered the limit, the block did not signal it (4.2)
    HPACK_E_BOMB = 9                   # decoded/encoded ratio above the bound (a header bomb)
    # Stream errors: the block was decoded to its end, so both dynamic tables stay in step and
    # the connection lives on, but its fields were not kept (the HeaderBlock is left empty).
    # HTTP/2 answers a request with 431 or resets the stream (RFC 9113 10.5.1).
    HPACK_E_LIST_TOO_LARGE = 16        # sum of name + value + 32 above max_list_size
    HPACK_E_TOO_MANY_FIELDS = 17       # more fields than max_headers
    HPACK_E_FIRST_STREAM_ERROR = 16

cdef enum:
    HPACK_INT_MAX = (1 << 28) - 1      # largest integer the decoder accepts (5.1: our limit)
    HPACK_ENTRY_OVERHEAD = 32          # RFC 7541 4.1
    HPACK_DEFAULT_TABLE_SIZE = 4096    # RFC 9113 6.5.2 SETTINGS_HEADER_TABLE_SIZE initial value

# Per-field flags the decoder sets in HeaderBlock.hdr_flags: headers.pxd's HF_NEVER_INDEXED and
# HF_PSEUDO (encoders skip pseudo-headers: they are passed to Encoder.encode explicitly).

# Pseudo-header facts of the last decoded block (RFC 9113 8.3). The decoder only reports; the
# HTTP/2 layer decides what is malformed for a request or a response.
cdef enum:
    PS_METHOD = 0
    PS_SCHEME = 1
    PS_AUTHORITY = 2
    PS_PATH = 3
    PS_STATUS = 4
    PS_PROTOCOL = 5
    PS_COUNT = 6

cdef enum:
    PSF_AFTER_REGULAR = 1  # a pseudo-header field after a regular one (8.3: malformed)
    PSF_DUPLICATE = 2      # one of the six pseudo-headers twice (8.3.1: malformed)
    PSF_UNKNOWN = 4        # a ':' name that is none of the six (8.3: malformed)

# One dynamic table entry: name and value in one malloc'd buffer
ctypedef struct HEntry:
    char* data
    uint32_t nlen
    uint32_t vlen
    uint32_t nhash         # encoder only (lookup); 0 in the decoder's table
    uint32_t vhash
    uint8_t bad            # decoder only: the field breaks RFC 9113 8.2.1 (checked once)

# The dynamic table (RFC 7541 2.3.2): a ring of entries, oldest at `start`, newest at
# start + len - 1; dynamic index 1 is the newest.
ctypedef struct DynTable:
    HEntry* ring
    uint32_t cap           # slots, a power of two (0 before the first insert)
    uint32_t start
    uint32_t len
    size_t size            # sum of name + value + 32 over the entries (4.1)
    size_t max_size        # the current maximum (changed by size updates, 4.2)


@cython.final
cdef class Decoder:
    cdef DynTable table
    cdef size_t limit              # our SETTINGS_HEADER_TABLE_SIZE (acknowledged by the peer)
    cdef bint expect_update        # the limit went below the table's size: the next block
    cdef size_t required_max       # must open with a size update <= required_max
    cdef public Py_ssize_t max_list_size   # SETTINGS_MAX_HEADER_LIST_SIZE semantics
    cdef public int max_headers            # clamped to HB_MAX_HEADERS_HARD
    cdef public Py_ssize_t bomb_floor      # decoded sizes below this are never a bomb
    cdef public Py_ssize_t bomb_ratio      # above the floor: decoded > ratio * encoded is a bomb
    cdef int dead                  # the connection error that killed the decoder, or 0

    # scratch: the decoded names and values of the current block, and per-field records
    cdef char* buf
    cdef Py_ssize_t bufcap
    cdef Py_ssize_t wpos
    cdef int32_t* f_ns             # name start; name end = value start = f_vs; value end = f_ve
    cdef int32_t* f_vs
    cdef int32_t* f_ve
    cdef uint8_t* f_flags
    cdef int fcap
    cdef int nf
    cdef Py_ssize_t total          # name + value + 32 over every field of the block
    cdef Py_ssize_t bomb_at
    cdef int lim_headers
    cdef bint keep                 # still materialising fields (no stream error yet)
    cdef int soft                  # the stream error, once one happened

    # facts of the last decoded block (valid after HPACK_OK)
    cdef readonly int pseudo_end   # index of the first regular field (nheaders if none)
    cdef readonly int pseudo_flags # PSF_* bits
    cdef int16_t pseudo_idx[6]     # index of each PS_* pseudo-header, -1 if absent
    cdef readonly Py_ssize_t list_size   # name + value + 32 over the block (RFC 9113 6.5.2)
    cdef readonly int malformed    # index of the first field RFC 9113 8.2.1 calls malformed
                                   # (bad name or value characters, see _field_bad), or -1

    # Decode one complete header block (HEADERS/PUSH_PROMISE + CONTINUATIONs, joined) into
    # `hb`: on HPACK_OK hb.head holds the names and values, the per-field arrays, ids and flags
    # are filled; on any error hb is left empty. Returns HPACK_OK or HPACK_E_*; -1 only with
    # MemoryError set.
    cdef int decode(self, HeaderBlock hb, const unsigned char* data, Py_ssize_t n) except -1
    # Our SETTINGS_HEADER_TABLE_SIZE, once the peer acknowledged it (RFC 7541 4.2).
    cpdef set_max_table_size(self, size_t n)

    cdef int _run(self, const unsigned char* p, Py_ssize_t n) except -1
    cdef int _ensure(self, Py_ssize_t extra) except -1
    cdef int _grow_fields(self) except -1
    cdef int _string(self, const unsigned char* p, Py_ssize_t n, Py_ssize_t* pos, Py_ssize_t* outlen) except -1
    cdef int _account(self, Py_ssize_t nlen, Py_ssize_t vlen) noexcept
    cdef int _commit(self, Py_ssize_t start, Py_ssize_t nlen, Py_ssize_t vlen, int flags,
                     bint bad) except -1
    cdef void _fill(self, HeaderBlock hb)


@cython.final
cdef class Encoder:
    cdef DynTable table
    cdef size_t cap                # our own bound on the table (memory), <= the peer's limit
    cdef bint pending              # a size update is due at the start of the next block
    cdef size_t min_pending        # the smallest size since the last block (4.2)
    cdef public bint huffman       # Huffman-encode strings when shorter (default True)
    cdef char* buf
    cdef Py_ssize_t bufcap
    cdef Py_ssize_t w
    cdef char* lname               # the current field name, lowercased (RFC 9113 8.2.1)
    cdef Py_ssize_t lcap

    # One header block: the `pseudo` pairs first ([b":method", b"GET", ...], may be None),
    # then every field of `h` (may be None) without HF_HOP, HF_DROP or HF_PSEUDO, then the
    # `edits` pairs (may be None). Names are lowercased. Never raises on content; TypeError if a
    # list item is not bytes.
    cdef bytes encode(self, HeaderBlock h, list pseudo, list edits)
    # The peer's SETTINGS_HEADER_TABLE_SIZE changed (RFC 7541 4.2, 6.3).
    cpdef set_peer_max_table_size(self, size_t n)

    cdef int _field(self, const char* name, Py_ssize_t nlen, const char* value, Py_ssize_t vlen,
                    bint never) except -1
    cdef void _string(self, const char* s, Py_ssize_t n) noexcept
    cdef int _ensure(self, Py_ssize_t need) except -1


# RFC 9113 section 7 error code for a decoder result: COMPRESSION_ERROR (0x9) for connection
# errors, ENHANCE_YOUR_CALM (0xb) for HPACK_E_BOMB, 0 for stream errors and HPACK_OK.
cdef int hpack_h2_error(int code) noexcept nogil
cdef inline bint hpack_is_connection_error(int code) noexcept nogil:
    return code > 0 and code < HPACK_E_FIRST_STREAM_ERROR

# Huffman (RFC 7541 5.2, Appendix B), for the HTTP/2 layer's own use and tests
cdef Py_ssize_t huffman_encoded_length(const unsigned char* s, Py_ssize_t n) noexcept nogil
cdef Py_ssize_t huffman_encode(const unsigned char* s, Py_ssize_t n, unsigned char* out) noexcept nogil
# decodes into out (room for n * 8 // 5 bytes); returns the length or -HPACK_E_HUFFMAN_*
cdef Py_ssize_t huffman_decode(const unsigned char* s, Py_ssize_t n, unsigned char* out) noexcept nogil

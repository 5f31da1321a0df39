# cython: language_level=3
"""The request-path normaliser: the raw path of a request -> the one spelling that is routed and
forwarded, or a 400.

Theory of operation
-------------------
Why. A prefix route (``/admin`` answered 403, ``/`` proxied) is only a security boundary if the
router sees the path the upstream will act on. Without normalisation ``/%61dmin/``, ``//admin/``,
``/./admin/``, ``/x/../admin/`` or ``/%2e/admin/`` miss the ``/admin`` prefix here and reach the
upstream's admin page there, because the upstream decodes and resolves them. So the proxy
normalises first and then routes *and forwards* the normalised path: router and upstream see the
same bytes (Envoy's ``normalize_path`` + ``merge_slashes``; nginx does the same in
``ngx_http_parse_complex_uri``).

Who calls it. The proxy, once per request head, with the path as received (the request-target's
path, without ``?query``) and the listener's ``path_flags`` (``tables.Listener.path_flags``, set
by ``link.py`` from ``listeners[].paths``). ``path_normalize`` answers ``PATH_UNCHANGED`` (route
the path as it is), a length (route and forward ``out[:length]``), or a ``PATH_ERR_*`` code
(answer 400; ``path_error_text`` gives the reason). Tests call ``normalize()``/``classify()``.

What it does, in one left-to-right pass over the input (``out`` never runs ahead of the input, so
it may be the input itself):

1. Percent-escapes (RFC 3986 2.1, 2.4). Each ``%`` must be followed by two hex digits, else 400
   (``%zz``, ``%4``: nginx answers 400 too). ``%00`` is 400: no upstream has a use for a NUL and
   C-string upstreams truncate at it. Each escape is decoded exactly once, in this pass: the
   output of a decode is never looked at again as an escape, so ``%252e`` becomes ``%252E``
   (a ``%25`` followed by the text ``2e``), never ``.``.
2. With PATH_NORMALIZE: an escape of an unreserved character (ALPHA DIGIT ``-`` ``.`` ``_``
   ``~``, RFC 3986 2.3) is decoded (``%61dmin`` -> ``admin``, ``%2E`` -> ``.``); every other
   escape stays encoded with its hex digits upper-cased (RFC 3986 2.1, 6.2.2.1: ``%3b`` ->
   ``%3B``). These are the equivalences of RFC 3986 6.2.2; decoding anything else (``%3B``,
   ``%2F``, ``%25``, ``%20``) would change what the path means.
3. Escaped separators: ``%2F`` (``/``) and ``%5C`` (``\\``) are never separators here and are
   never decoded (before dot removal or after). By default they are 400 (Envoy's
   ``path_with_escaped_slashes_action: REJECT_REQUEST``), because some upstreams decode them and
   then split on them (``/x/..%2fadmin``). With PATH_KEEP_ESCAPED_SLASHES they pass through as
   data (Envoy's ``KEEP_UNCHANGED``): ``/x/..%2Fadmin`` is one segment ``..%2Fadmin``, not a dot
   segment; that is only safe with upstreams that do not decode them.
4. A raw backslash: not a URI character at all (RFC 3986 2, it is neither unreserved, reserved
   nor ``%``), and a separator on Windows upstreams (IIS) and in WHATWG URL parsing. It follows
   the escaped-slash policy: 400 by default, kept literally (never a separator, never turned into
   ``/``) with PATH_KEEP_ESCAPED_SLASHES, which is what nginx does on Linux.
5. With PATH_MERGE_SLASHES: runs of ``/`` become one (``//admin`` -> ``/admin``). Merging happens
   before dot removal, as in nginx (``/a//..`` -> ``/``; Envoy merges after, -> ``/a/``), so it
   fits the same pass. Either order is safe because the path that was routed is the one that is
   forwarded; this one also never leaves an empty segment for ``..`` to pop.
6. With PATH_NORMALIZE: dot segments are removed (RFC 3986 5.2.4), including those that only
   became ``.``/``..`` after step 2 (``/%2e%2e/``, ``/.%2E/``). ``..`` at the root is clamped, as
   the RFC says (``/../admin`` -> ``/admin``), not an error. The output keeps a trailing ``/``
   where the RFC does (``/a/.`` -> ``/a/``, ``/a/b/..`` -> ``/a/``). A segment is a dot segment
   only if it is exactly ``.`` or ``..`` after decoding: ``...``, ``.%2F.``, ``..;`` are data.

What it deliberately leaves alone (documented in README.md, "Path normalisation"):
- ``;`` path parameters are data (RFC 3986 3.3): ``/admin;x=1`` routes as that string, which a
  ``/admin`` prefix matches; ``/x/..;/admin`` is not a dot segment here. Tomcat/Jetty-style
  upstreams that strip ``;params`` before resolving dots would read ``/admin`` there: protect them
  with a route that refuses ``;`` (``path_regex``) or keep such upstreams behind their own check.
- Non-ASCII stays encoded (the codec only admits VCHAR bytes in the target, so it is always an
  escape here) and is not validated as UTF-8, so Latin-1 paths keep working. The one exception is
  the overlong UTF-8 forms that old decoders turned into ASCII (``%C0%AE`` = ``.``, ``%C0%AF`` =
  ``/``, ``%E0%80%AE``): a lead ``%C0``/``%C1`` before a continuation escape, ``%E0`` before
  ``%80``-``%9F``, ``%F0`` before ``%80``-``%8F`` is 400. Valid UTF-8 never contains them.
- A path that does not start with ``/`` (``*`` for OPTIONS; the proxy passes absolute-form
  targets' paths, which start with ``/`` or are empty) is returned unchanged.
- Case (RFC 3986 6.2.2.1 makes only the hex digits case-insensitive in a path), query, fragment.

Validation (steps 1, 3, 4 and the overlong check) does not depend on PATH_NORMALIZE: a listener
that turns normalisation off still refuses malformed escapes and, unless it keeps them, escaped
slashes. Flags 0 with PATH_KEEP_ESCAPED_SLASHES therefore only refuses malformed escapes.

Cost. The common path (no ``%``, no backslash, no ``//`` when merging, no ``.``/``..`` segment
when normalising) is one scan with a 256-byte class table and returns PATH_UNCHANGED: nothing is
written or allocated. Otherwise one more pass writes the result; nothing is allocated unless the
caller asks for bytes (``path_normalized_bytes``).

What it must never do. Allocate, raise or take the GIL in ``path_normalize``; read past
``path + n``; write past ``out + n`` (the result is never longer than the input: decoding,
merging and dot removal shrink, upper-casing keeps the length); decode twice; treat an escaped
or raw backslash or an escaped slash as a separator; touch I/O, clocks or config.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc


cdef signed char HEX[256]          # hex digit value, -1 if not one
cdef unsigned char UNRESERVED[256]  # RFC 3986 2.3
cdef unsigned char SPECIAL[256]     # bytes the fast scan stops at: "%", "\", "/"
cdef const char* UPHEX = b"0123456789ABCDEF"


cdef void _init_tables() noexcept:
    cdef int c
    for c in range(256):
        HEX[c] = -1
        UNRESERVED[c] = 0
        SPECIAL[c] = 0
    for c in range(10):
        HEX[48 + c] = c
    for c in range(6):
        HEX[65 + c] = 10 + c
        HEX[97 + c] = 10 + c
    for c in range(26):
        UNRESERVED[65 + c] = 1
        UNRESERVED[97 + c] = 1
    for c in range(10):
        UNRESERVED[48 + c] = 1
    for c in b"-._~":
        UNRESERVED[c] = 1
    SPECIAL[37] = 1                # %
    SPECIAL[47] = 1                # /
    SPECIAL[92] = 1                # \


_init_tables()


cdef inline bint _needs_work(const unsigned char* p, Py_ssize_t n, int flags) noexcept nogil:
    """The fast path: False when the path is already normal under `flags` (one scan)."""
    cdef Py_ssize_t i = 0
    cdef unsigned char c
    cdef bint norm = (flags & PATH_NORMALIZE) != 0
    cdef bint merge = (flags & PATH_MERGE_SLASHES) != 0
    while i < n:
        c = p[i]
        if SPECIAL[c]:
            if c != 47:                                # "%" or "\": validate or transform
                return True
            if i + 1 < n:
                c = p[i + 1]
                if c == 47:
                    if merge:
                        return True
                elif c == 46 and norm:                 # "/." then end, "/", or "./" or ".<end>"
                    if i + 2 == n or p[i + 2] == 47:
                        return True
                    if p[i + 2] == 46 and (i + 3 == n or p[i + 3] == 47):
                        return True
        i += 1
    return False


cdef inline int _escape_at(const unsigned char* p, Py_ssize_t n, Py_ssize_t i) noexcept nogil:
    """The byte value of a well-formed escape at p[i], or -1."""
    cdef int h1, h2
    if i + 2 >= n or p[i] != 37:
        return -1
    h1 = HEX[p[i + 1]]
    h2 = HEX[p[i + 2]]
    if h1 < 0 or h2 < 0:
        return -1
    return h1 * 16 + h2


cdef inline bint _overlong(const unsigned char* p, Py_ssize_t n, Py_ssize_t i, int lead) noexcept nogil:
    """True when the escape `lead` (at p[i-3]) starts an overlong UTF-8 form: C0/C1 before any
    continuation byte, E0 before 80-9F, F0 before 80-8F (RFC 3629 3: those never occur)."""
    cdef int nxt
    if lead < 0xC0 or (lead > 0xC1 and lead != 0xE0 and lead != 0xF0):
        return False
    nxt = _escape_at(p, n, i)
    if nxt < 0x80:
        return False
    if lead <= 0xC1:
        return nxt <= 0xBF
    if lead == 0xE0:
        return nxt <= 0x9F
    return nxt <= 0x8F


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t path_normalize(const char* path, Py_ssize_t n, int flags,
                               char* out) noexcept nogil:
    cdef const unsigned char* p = <const unsigned char*>path
    cdef unsigned char* o = <unsigned char*>out
    cdef bint norm = (flags & PATH_NORMALIZE) != 0
    cdef bint merge = (flags & PATH_MERGE_SLASHES) != 0
    cdef bint keep = (flags & PATH_KEEP_ESCAPED_SLASHES) != 0
    cdef bint cased = False            # an escape's hex digits were upper-cased (same length)
    cdef Py_ssize_t r = 1, w = 1, seg, j
    cdef int v, h1, h2
    cdef unsigned char c, a, b

    if n == 0 or p[0] != 47 or not _needs_work(p, n, flags):
        return PATH_UNCHANGED
    o[0] = 47
    while True:
        if merge:                                      # step 5: skip empty segments
            while r < n and p[r] == 47:
                r += 1
        if r >= n:
            break
        seg = w                                        # the segment is o[seg:w]
        while r < n:
            c = p[r]
            if c == 47:
                break
            if c == 37:                                # step 1: "%" HEXDIG HEXDIG
                if r + 2 >= n:
                    return PATH_ERR_BAD_ESCAPE
                h1 = HEX[p[r + 1]]
                h2 = HEX[p[r + 2]]
                if h1 < 0 or h2 < 0:
                    return PATH_ERR_BAD_ESCAPE
                v = h1 * 16 + h2
                if v == 0:
                    return PATH_ERR_NUL
                if v == 47 or v == 92:                 # step 3: %2F, %5C
                    if not keep:
                        return PATH_ERR_ESCAPED_SLASH
                elif v >= 0xC0 and _overlong(p, n, r + 3, v):
                    return PATH_ERR_OVERLONG
                if norm:
                    if UNRESERVED[v]:                  # step 2: decode, exactly once
                        o[w] = <unsigned char>v
                        w += 1
                        r += 3
                        continue
                    a = UPHEX[h1]
                    b = UPHEX[h2]
                    if a != p[r + 1] or b != p[r + 2]:
                        cased = True
                else:
                    a = p[r + 1]
                    b = p[r + 2]
                o[w] = 37                              # read p[r..r+2] before writing: w <= r
                o[w + 1] = a
                o[w + 2] = b
                w += 3
                r += 3
                continue
            if c == 92 and not keep:                   # step 4: a raw backslash
                return PATH_ERR_ESCAPED_SLASH
            o[w] = c
            w += 1
            r += 1
        # step 6: o[seg:w] is a complete segment, decoded; p[r] is "/" or r == n
        if norm and seg < w and w - seg <= 2 and o[seg] == 46 and (w - seg == 1 or o[seg + 1] == 46):
            if w - seg == 2 and seg > 1:               # "..": drop the previous segment too
                j = seg - 2
                while o[j] != 47:                      # o[0] is "/": the loop ends
                    j -= 1
                seg = j + 1
            w = seg                                    # the "/" before the segment stays
            if r < n:
                r += 1                                 # and stands for the one after it
        elif r < n:
            o[w] = 47
            w += 1
            r += 1
    if w == n and not cased:
        return PATH_UNCHANGED
    return w


cdef bytes path_normalized_bytes(const char* path, Py_ssize_t n, int flags, int* err):
    cdef char local[1024]
    cdef char* buf = local
    cdef Py_ssize_t res
    cdef bytes result = None
    if n == 0 or path[0] != 47 or not _needs_work(<const unsigned char*>path, n, flags):
        err[0] = PATH_UNCHANGED
        return None
    if n > 1024:
        buf = <char*>PyMem_Malloc(n)
        if buf == NULL:
            raise MemoryError()
    try:
        res = path_normalize(path, n, flags, buf)
        if res < 0:
            err[0] = <int>res
        else:
            err[0] = 0
            result = PyBytes_FromStringAndSize(buf, res)
    finally:
        if buf != local:
            PyMem_Free(buf)
    return result


cdef const char* path_error_text(Py_ssize_t code) noexcept nogil:
    if code == PATH_ERR_BAD_ESCAPE:
        return "bad percent-escape in path"
    if code == PATH_ERR_NUL:
        return "NUL (%00) in path"
    if code == PATH_ERR_ESCAPED_SLASH:
        return "escaped slash or backslash in path"
    if code == PATH_ERR_OVERLONG:
        return "overlong UTF-8 in path"
    return ""


# --- the Python face: link.py and tests ---------------------------------------------------------

# Python-visible flags and codes (the cdef enum in paths.pxd is the source).
globals().update(
    PATH_NORMALIZE=PATH_NORMALIZE, PATH_MERGE_SLASHES=PATH_MERGE_SLASHES,
    PATH_KEEP_ESCAPED_SLASHES=PATH_KEEP_ESCAPED_SLASHES, PATH_FLAGS_DEFAULT=PATH_FLAGS_DEFAULT,
    PATH_UNCHANGED=PATH_UNCHANGED, PATH_ERR_BAD_ESCAPE=PATH_ERR_BAD_ESCAPE, PATH_ERR_NUL=PATH_ERR_NUL,
    PATH_ERR_ESCAPED_SLASH=PATH_ERR_ESCAPED_SLASH, PATH_ERR_OVERLONG=PATH_ERR_OVERLONG,
)


class PathError(ValueError):
    """A path the proxy answers with 400; `code` is the PATH_ERR_* value."""

    def __init__(self, int code):
        super().__init__(path_error_text(code).decode())
        self.code = code


def flags_for(bint normalize=True, bint merge_slashes=True, bint keep_escaped_slashes=False):
    """The listener's path_flags from its `paths` settings."""
    return ((PATH_NORMALIZE if normalize else 0) | (PATH_MERGE_SLASHES if merge_slashes else 0)
            | (PATH_KEEP_ESCAPED_SLASHES if keep_escaped_slashes else 0))


def classify(bytes path, int flags=PATH_FLAGS_DEFAULT):
    """path_normalize's raw answer: PATH_UNCHANGED, the normalised length, or a PATH_ERR_*."""
    cdef bytes scratch = PyBytes_FromStringAndSize(NULL, max(PyBytes_GET_SIZE(path), 1))
    return path_normalize(PyBytes_AS_STRING(path), PyBytes_GET_SIZE(path), flags,
                          PyBytes_AS_STRING(scratch))


def normalize(bytes path, int flags=PATH_FLAGS_DEFAULT, bint in_place=False):
    """The path the proxy routes and forwards (`path` itself when unchanged); PathError for 400.
    in_place: normalise a private copy over itself (out == path), as a caller may."""
    cdef int err = 0
    cdef bytearray copy
    cdef char* buf
    cdef Py_ssize_t n
    if in_place:
        copy = bytearray(path)
        buf = copy
        n = path_normalize(buf, len(copy), flags, buf)
        if n == PATH_UNCHANGED:
            return path
        if n < 0:
            raise PathError(n)
        return bytes(copy[:n])
    cdef bytes res = path_normalized_bytes(PyBytes_AS_STRING(path), PyBytes_GET_SIZE(path),
                                           flags, &err)
    if err == PATH_UNCHANGED:
        return path
    if err < 0:
        raise PathError(err)
    return res

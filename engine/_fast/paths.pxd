# The request-path normaliser's contract for other compiled modules (proxy, tables). See paths.pyx
# for the theory of operation. Sans-I/O: bytes in, bytes or an error code out; no allocation, no
# exceptions, no GIL needed.

cdef enum:
    # Listener flags (Listener.path_flags, set by link.py from `listeners[].paths`).
    PATH_NORMALIZE = 1             # decode %XX of unreserved chars, upper-case kept escapes,
                                   # remove dot segments (RFC 3986 2.3, 2.1, 5.2.4)
    PATH_MERGE_SLASHES = 2         # collapse runs of "/" (before dot removal, as nginx)
    PATH_KEEP_ESCAPED_SLASHES = 4  # %2F, %5C and a raw "\" pass through as data (never separators);
                                   # without it they are 400 (the default)
    PATH_FLAGS_DEFAULT = 3         # PATH_NORMALIZE | PATH_MERGE_SLASHES: escaped slashes rejected

    # Results of path_normalize() below zero. Every error is a 400 for the client.
    PATH_UNCHANGED = -1            # the path is already normal: route and forward it as received
    PATH_ERR_BAD_ESCAPE = -2       # "%" not followed by two hex digits ("%zz", "%4")
    PATH_ERR_NUL = -3              # "%00"
    PATH_ERR_ESCAPED_SLASH = -4    # %2F, %5C or a raw "\" without PATH_KEEP_ESCAPED_SLASHES
    PATH_ERR_OVERLONG = -5         # an overlong UTF-8 form ("%C0%AE", "%E0%80%AE", "%F0%80...")


cdef Py_ssize_t path_normalize(const char* path, Py_ssize_t n, int flags,
                               char* out) noexcept nogil
    # path: the request path as received, without "?query" (origin-form; anything that does not
    #   start with "/", such as "*" or b"", is returned PATH_UNCHANGED).
    # out: at least n bytes; may be `path` itself (normalises in place). The result is never
    #   longer than the input. Only a returned length says out holds something: after
    #   PATH_UNCHANGED or an error its bytes are unspecified (in place: the path is then the
    #   same bytes, resp. partly overwritten; keep a copy if an error log needs the original).
    # Returns PATH_UNCHANGED (the common case: one scan, nothing written), the length of the
    # normalised path written to out (>= 1), or a PATH_ERR_* code (400).

cdef bytes path_normalized_bytes(const char* path, Py_ssize_t n, int flags, int* err)
    # The same, allocating: None with *err = PATH_UNCHANGED, None with *err = PATH_ERR_*, or the
    # normalised path as new bytes with *err = 0.

cdef const char* path_error_text(Py_ssize_t code) noexcept nogil
    # A short reason for a PATH_ERR_* code (access log, 400 body); "" for anything else.

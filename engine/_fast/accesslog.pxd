# The access log's contract for other compiled modules (proxy). See accesslog.pyx for the theory
# of operation: a line is formatted from this struct straight into the writer's buffer.

cdef enum:
    LOG_JSON = 0          # one JSON object per line (the default)
    LOG_COMBINED = 1      # nginx's "combined" format, for existing log tooling


# One finished exchange, as pointers into objects the caller keeps alive during record().
# A NULL pointer is an absent value (JSON null, "-" in combined); times are seconds, < 0 = none.
cdef struct LogEntry:
    const char* client_ip
    Py_ssize_t client_ip_len
    int client_port
    const char* method
    Py_ssize_t method_len
    const char* path
    Py_ssize_t path_len
    int http_minor                 # 0 or 1: HTTP/1.0 or HTTP/1.1; 2: HTTP/2 ("HTTP/2.0")
    const char* host
    Py_ssize_t host_len
    const char* user_agent
    Py_ssize_t user_agent_len
    const char* referer
    Py_ssize_t referer_len
    const char* request_id
    Py_ssize_t request_id_len
    int status
    int grpc_status                # the gRPC status sent to the client; -1: not a gRPC exchange
    long bytes_in
    long bytes_out
    double duration
    const char* upstream
    Py_ssize_t upstream_len
    double upstream_connect
    double upstream_response
    int attempts                   # upstream tries (retries + 1); 0: no upstream was used
    const char* route
    Py_ssize_t route_len
    const char* listener
    Py_ssize_t listener_len


cdef class AccessLog:
    cdef readonly str path             # 'stderr', 'stdout' or a file path
    cdef readonly int format           # LOG_JSON | LOG_COMBINED
    cdef int fd
    cdef bint owns_fd                  # a file we opened (reopen() and close() close it)
    cdef bint atomic_lines             # a pipe/tty: write at most PIPE_BUF per write, whole lines
    cdef char* buf
    cdef Py_ssize_t len
    cdef Py_ssize_t cap
    cdef object loop
    cdef object timer                  # the pending 100 ms flush, or None
    cdef long cached_sec               # the wall-clock second the two strings below are for
    cdef char iso[24]                  # "2026-11-29T23:59:59."
    cdef char clf[32]                  # "29/Nov/2026:23:59:59 +0000"
    cdef int ms                        # milliseconds of the current line's time
    cdef readonly long lines           # lines formatted (tests, stats)
    cdef readonly long dropped         # bytes a failing write lost

    cdef void record(self, LogEntry* e) noexcept
    cdef void _stamp(self) noexcept
    cdef void _json(self, LogEntry* e) noexcept
    cdef void _combined(self, LogEntry* e) noexcept
    cdef _open(self)

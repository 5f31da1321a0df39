# cython: language_level=3
"""The access log: one line per finished exchange, formatted in C into a buffer that is written
in large pieces.

Theory of operation
-------------------
* The access log is on by default, so it must cost little next to proxying the request (the
  issue that asked for this measured a per-request Python dict + json.dumps at 40% of a
  worker's throughput). `record()` takes a `LogEntry` of pointers into bytes the proxy already
  holds and writes the line straight into `buf`: no Python object is made per request.
* Formats: `json` (one object per line, every value escaped so that any request bytes give
  valid JSON: `"`, `\\`, control bytes and bytes >= 0x7F become \\u00XX, i.e. the bytes read as
  Latin-1) and `combined` (nginx's `log_format combined`, with its `\\xHH` escaping, so existing
  log tooling reads it). Times are UTC; the second-resolution strings are built once a second.
* The protocol is "HTTP/1.0", "HTTP/1.1" or "HTTP/2.0" (`http_minor` 2; nginx writes HTTP/2.0
  in $request too). A gRPC exchange (`grpc_status` >= 0) adds "grpc_status" to a JSON line;
  an HTTP status alone says little there, as gRPC answers errors with 200.
* Writes: the buffer is written when it passes FLUSH_AT bytes, else by a timer at most 100 ms
  after its first line, and on flush() (drain, exit, reopen). On a pipe or a terminal shared by
  several workers, each write() is at most PIPE_BUF bytes of whole lines, which the kernel keeps
  atomic: lines of two workers never interleave. A regular file is opened O_APPEND, where each
  write() lands whole at the end.
* A failing write (a full disk, a closed pipe) drops that batch and counts it in `dropped`: the
  log must never stop the proxy. A reader that does not read a blocking pipe does stall the
  worker, as it stalls nginx: log to a file or a collector that keeps up.
* reopen() (SIGUSR1, for logrotate) flushes, then opens the file by its name again.
"""

cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdlib cimport malloc, realloc, free
from libc.errno cimport errno as c_errno, EINTR
from libc.string cimport memcpy
from posix.time cimport clock_gettime, timespec, CLOCK_REALTIME
from posix.unistd cimport write

import os
import stat

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct tm:
        pass
    tm* gmtime_r(const time_t* t, tm* out)
    size_t strftime(char* s, size_t maxsize, const char* fmt, const tm* t)


DEF PIPE_BUF = 4096
DEF FLUSH_AT = 32768            # bytes buffered before a write without waiting for the timer
DEF FLUSH_DELAY = 0.1           # seconds a line may wait in the buffer
DEF INITIAL_CAP = 65536

cdef const char* HEX = b"0123456789abcdef"
cdef const char* HEXU = b"0123456789ABCDEF"


cdef inline void put(AccessLog w, const char* s, Py_ssize_t n) noexcept:
    memcpy(w.buf + w.len, s, n)
    w.len += n


cdef inline void put_c(AccessLog w, char c) noexcept:
    w.buf[w.len] = c
    w.len += 1


cdef void put_long(AccessLog w, long v) noexcept:
    cdef char tmp[24]
    cdef int i = 0
    cdef bint neg = v < 0
    if neg:
        v = -v
    while True:
        tmp[i] = <char>(48 + v % 10)
        i += 1
        v //= 10
        if v == 0:
            break
    if neg:
        put_c(w, b'-')
    while i > 0:
        i -= 1
        put_c(w, tmp[i])


cdef void put_ms(AccessLog w, double seconds) noexcept:
    """Milliseconds with three decimals (microsecond resolution): 12.345."""
    cdef long us = <long>(seconds * 1000000.0 + 0.5)
    cdef long frac = us % 1000
    put_long(w, us // 1000)
    put_c(w, b'.')
    put_c(w, <char>(48 + frac // 100))
    put_c(w, <char>(48 + (frac // 10) % 10))
    put_c(w, <char>(48 + frac % 10))


cdef void put_json(AccessLog w, const char* s, Py_ssize_t n) noexcept:
    """A JSON string (null for NULL), every byte taken as a Latin-1 character."""
    cdef Py_ssize_t i
    cdef unsigned char c
    if s == NULL:
        put(w, b"null", 4)
        return
    put_c(w, b'"')
    for i in range(n):
        c = <unsigned char>s[i]
        if c == 34 or c == 92:                      # " and \
            put_c(w, b'\\')
            put_c(w, <char>c)
        elif c < 0x20 or c >= 0x7F:
            put(w, b"\\u00", 4)
            put_c(w, HEX[c >> 4])
            put_c(w, HEX[c & 15])
        else:
            put_c(w, <char>c)
    put_c(w, b'"')


cdef inline void put_protocol(AccessLog w, int http_minor) noexcept:
    """HTTP/1.0, HTTP/1.1 or HTTP/2.0 (http_minor 2)."""
    if http_minor == 2:
        put(w, b"HTTP/2.0", 8)
    elif http_minor == 0:
        put(w, b"HTTP/1.0", 8)
    else:
        put(w, b"HTTP/1.1", 8)


cdef void put_clf(AccessLog w, const char* s, Py_ssize_t n) noexcept:
    """A value of nginx's combined format: "-" when absent, \\xHH for `"`, `\\`, control bytes
    and bytes >= 0x7F (nginx's escaping of variables in log_format)."""
    cdef Py_ssize_t i
    cdef unsigned char c
    if s == NULL or n == 0:
        put_c(w, b'-')
        return
    for i in range(n):
        c = <unsigned char>s[i]
        if c == 34 or c == 92 or c < 0x20 or c >= 0x7F:
            put(w, b"\\x", 2)
            put_c(w, HEXU[c >> 4])
            put_c(w, HEXU[c & 15])
        else:
            put_c(w, <char>c)


@cython.final
cdef class AccessLog:
    def __cinit__(self):
        self.buf = <char*>malloc(INITIAL_CAP)
        if self.buf == NULL:
            raise MemoryError()
        self.cap = INITIAL_CAP
        self.fd = -1
        self.cached_sec = -1

    def __init__(self, loop, str path="stderr", str format="json"):
        """`path`: 'stderr', 'stdout' or a file (appended to); `format`: 'json' | 'combined'."""
        if format not in ("json", "combined"):
            raise ValueError(f"access log format must be json or combined, not {format!r}")
        self.loop = loop
        self.path = path
        self.format = LOG_JSON if format == "json" else LOG_COMBINED
        self._open()

    def __dealloc__(self):
        if self.buf != NULL:
            free(self.buf)
            self.buf = NULL

    cdef _open(self):
        if self.path == "stderr":
            self.fd, self.owns_fd = 2, False
        elif self.path == "stdout":
            self.fd, self.owns_fd = 1, False
        else:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                              0o644)
            self.owns_fd = True
        try:
            self.atomic_lines = not stat.S_ISREG(os.fstat(self.fd).st_mode)
        except OSError:
            self.atomic_lines = True

    def reopen(self):
        """Flush, then open the file by its name again (after logrotate moved it away)."""
        self.flush()
        if self.owns_fd:
            old = self.fd
            self._open()
            os.close(old)

    def close(self):
        self.flush()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.owns_fd and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1

    def flush(self):
        """Write everything buffered (whole lines; PIPE_BUF pieces on a pipe or terminal)."""
        cdef Py_ssize_t start = 0, end, cut, n
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.fd < 0:                                   # closed: nothing can be written
            self.dropped += self.len
            self.len = 0
            return
        while start < self.len:
            end = self.len
            if self.atomic_lines and end - start > PIPE_BUF:
                cut = start + PIPE_BUF
                while cut > start and self.buf[cut - 1] != b'\n':
                    cut -= 1
                end = cut if cut > start else start + PIPE_BUF   # a line longer than PIPE_BUF
            while start < end:
                n = write(self.fd, self.buf + start, end - start)
                if n < 0:
                    if c_errno == EINTR:
                        continue
                    self.dropped += self.len - start          # EAGAIN, EPIPE, ENOSPC...
                    self.len = 0
                    return
                start += n
        self.len = 0

    def _timer_flush(self):
        self.timer = None
        self.flush()

    cdef void _stamp(self) noexcept:
        """The wall-clock strings of this second (built once a second)."""
        cdef timespec ts
        cdef tm t
        cdef time_t sec
        clock_gettime(CLOCK_REALTIME, &ts)
        if ts.tv_sec != self.cached_sec:
            self.cached_sec = ts.tv_sec
            sec = ts.tv_sec
            gmtime_r(&sec, &t)
            strftime(self.iso, sizeof(self.iso), b"%Y-%m-%dT%H:%M:%S.", &t)
            strftime(self.clf, sizeof(self.clf), b"%d/%b/%Y:%H:%M:%S +0000", &t)
        self.ms = ts.tv_nsec // 1000000

    cdef void record(self, LogEntry* e) noexcept:
        cdef Py_ssize_t need = 600 + 6 * (e.client_ip_len + e.method_len + e.path_len +
                                          e.host_len + e.user_agent_len + e.referer_len +
                                          e.request_id_len + e.upstream_len + e.route_len +
                                          e.listener_len)
        cdef char* grown
        cdef Py_ssize_t cap
        if self.len + need > self.cap:
            if self.len > 0:
                self.flush()
            if need > self.cap:
                cap = need * 2
                grown = <char*>realloc(self.buf, cap)
                if grown == NULL:
                    self.dropped += 1
                    return
                self.buf, self.cap = grown, cap
        self._stamp()
        if self.format == LOG_JSON:
            self._json(e)
        else:
            self._combined(e)
        self.lines += 1
        if self.len >= FLUSH_AT:
            self.flush()
        elif self.timer is None:
            self.timer = self.loop.call_later(FLUSH_DELAY, self._timer_flush)

    cdef void _json(self, LogEntry* e) noexcept:
        put(self, b'{"time":"', 9)
        put(self, self.iso, 20)
        put_c(self, <char>(48 + self.ms // 100))
        put_c(self, <char>(48 + (self.ms // 10) % 10))
        put_c(self, <char>(48 + self.ms % 10))
        put(self, b'Z","request_id":', 16)
        put_json(self, e.request_id, e.request_id_len)
        put(self, b',"client":', 10)
        put_json(self, e.client_ip, e.client_ip_len)
        put(self, b',"client_port":', 15)
        put_long(self, e.client_port)
        put(self, b',"method":', 10)
        put_json(self, e.method, e.method_len)
        put(self, b',"host":', 8)
        put_json(self, e.host, e.host_len)
        put(self, b',"path":', 8)
        put_json(self, e.path, e.path_len)
        put(self, b',"protocol":"', 13)
        put_protocol(self, e.http_minor)
        put(self, b'","status":', 11)
        put_long(self, e.status)
        if e.grpc_status >= 0:
            put(self, b',"grpc_status":', 15)
            put_long(self, e.grpc_status)
        put(self, b',"bytes_in":', 12)
        put_long(self, e.bytes_in)
        put(self, b',"bytes_out":', 13)
        put_long(self, e.bytes_out)
        put(self, b',"duration_ms":', 15)
        put_ms(self, e.duration)
        put(self, b',"upstream":', 12)
        put_json(self, e.upstream, e.upstream_len)
        put(self, b',"attempts":', 12)
        put_long(self, e.attempts)
        put(self, b',"upstream_connect_ms":', 23)
        if e.upstream_connect >= 0:
            put_ms(self, e.upstream_connect)
        else:
            put(self, b"null", 4)
        put(self, b',"upstream_response_ms":', 24)
        if e.upstream_response >= 0:
            put_ms(self, e.upstream_response)
        else:
            put(self, b"null", 4)
        put(self, b',"user_agent":', 14)
        put_json(self, e.user_agent, e.user_agent_len)
        put(self, b',"route":', 9)
        put_json(self, e.route, e.route_len)
        put(self, b',"listener":', 12)
        put_json(self, e.listener, e.listener_len)
        put(self, b'}\n', 2)

    cdef void _combined(self, LogEntry* e) noexcept:
        # $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
        # "$http_referer" "$http_user_agent"
        put_clf(self, e.client_ip, e.client_ip_len)
        put(self, b" - - [", 6)
        put(self, self.clf, 26)
        put(self, b'] "', 3)
        put_clf(self, e.method, e.method_len)
        put_c(self, b' ')
        put_clf(self, e.path, e.path_len)
        put_c(self, b' ')
        put_protocol(self, e.http_minor)
        put(self, b'" ', 2)
        put_long(self, e.status)
        put_c(self, b' ')
        put_long(self, e.bytes_out)
        put(self, b' "', 2)
        put_clf(self, e.referer, e.referer_len)
        put(self, b'" "', 3)
        put_clf(self, e.user_agent, e.user_agent_len)
        put(self, b'"\n', 2)

    def record_py(self, dict fields):
        """record() from Python, for tests: keys as in LogEntry, bytes for the strings."""
        cdef LogEntry e
        keep = {}
        def s(name):
            v = fields.get(name)
            if v is None:
                return None
            keep[name] = v
            return v
        cdef bytes b
        e.client_port = fields.get("client_port", 0)
        e.http_minor = fields.get("http_minor", 1)
        e.status = fields.get("status", 0)
        e.grpc_status = fields.get("grpc_status", -1)
        e.bytes_in = fields.get("bytes_in", 0)
        e.bytes_out = fields.get("bytes_out", 0)
        e.duration = fields.get("duration", 0.0)
        e.upstream_connect = fields.get("upstream_connect", -1.0)
        e.upstream_response = fields.get("upstream_response", -1.0)
        e.attempts = fields.get("attempts", 0)
        for name in ("client_ip", "method", "path", "host", "user_agent", "referer",
                     "request_id", "upstream", "route", "listener"):
            v = s(name)
            _set(&e, name, v)
        self.record(&e)


cdef void _set(LogEntry* e, str name, object v):
    cdef const char* p = NULL
    cdef Py_ssize_t n = 0
    if v is not None:
        p = <bytes>v
        n = len(<bytes>v)
    if name == "client_ip":
        e.client_ip, e.client_ip_len = p, n
    elif name == "method":
        e.method, e.method_len = p, n
    elif name == "path":
        e.path, e.path_len = p, n
    elif name == "host":
        e.host, e.host_len = p, n
    elif name == "user_agent":
        e.user_agent, e.user_agent_len = p, n
    elif name == "referer":
        e.referer, e.referer_len = p, n
    elif name == "request_id":
        e.request_id, e.request_id_len = p, n
    elif name == "upstream":
        e.upstream, e.upstream_len = p, n
    elif name == "route":
        e.route, e.route_len = p, n
    elif name == "listener":
        e.listener, e.listener_len = p, n

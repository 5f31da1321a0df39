# Request semantics shared by the proxy and `sluice explain` (see semantics.pyx).

cdef enum:
    MAX_HOST = 255      # a longer Host is refused (400) before routing

# host[0:n] as routed into out (MAX_HOST + 1 bytes): lowercase, ":port" removed; its length,
# or -1 when the host is longer than MAX_HOST
cdef Py_ssize_t route_host_into(const char* host, Py_ssize_t n, char* out) noexcept nogil

cdef bytes rewrite_prefix(bytes path, bytes prefix_from, bytes prefix_to)
cpdef bytes cookie_value(object header, bytes name)

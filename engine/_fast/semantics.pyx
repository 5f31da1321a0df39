# cython: language_level=3
"""Request semantics that `sluice explain` must share with the proxy: the host a request is
routed by, the target a path-prefix rewrite produces, and the cookie a ring hash reads.

Theory of operation
-------------------
Each rule exists once, here, as a C-level function the exchange calls per request and a Python
wrapper explain calls. A copy of a rule in the policy layer would drift (explain saying one
route, the proxy taking another), which is worse than no explain at all.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize


cdef Py_ssize_t route_host_into(const char* hp, Py_ssize_t hl, char* out) noexcept nogil:
    """RFC 9110 4.2.3: the host is case-insensitive; the port is not part of what a route's
    `host` names (as Envoy's virtual-host matching strips it). A bracketed IPv6 literal keeps
    its brackets: "[::1]:8080" -> "[::1]"."""
    cdef Py_ssize_t i
    if hl > MAX_HOST:
        return -1
    i = hl - 1
    while i >= 0 and hp[i] >= b'0' and hp[i] <= b'9':
        i -= 1
    if i >= 0 and hp[i] == b':':
        hl = i
    for i in range(hl):
        out[i] = hp[i] + 32 if (hp[i] >= b'A' and hp[i] <= b'Z') else hp[i]
    out[hl] = 0
    return hl


def route_host(bytes host not None):
    """The host as the router sees it (lowercase, port removed), or None when it is longer
    than the proxy accepts (the proxy answers 400)."""
    cdef char buf[MAX_HOST + 1]
    cdef Py_ssize_t n = route_host_into(PyBytes_AS_STRING(host), PyBytes_GET_SIZE(host), buf)
    if n < 0:
        return None
    return PyBytes_FromStringAndSize(buf, n)


cdef bytes rewrite_prefix(bytes path, bytes prefix_from, bytes prefix_to):
    """rewrite.path_prefix: the matched prefix replaced; the result always starts with "/"
    (a prefix "/api/" rewritten to "" must not produce a relative target)."""
    if prefix_from is None or not path.startswith(prefix_from):
        return path
    path = prefix_to + path[PyBytes_GET_SIZE(prefix_from):]
    if not path.startswith(b"/"):
        path = b"/" + path
    return path


def rewrite_target(bytes prefix_from, bytes prefix_to, bytes path not None):
    """The upstream target of `path` (query included) under a path_prefix rewrite."""
    return rewrite_prefix(path, prefix_from, prefix_to)


cpdef bytes cookie_value(object header, bytes name):
    """The value of cookie `name` in a Cookie header (RFC 6265 section 4.2.1), or None: the
    key `hash_on: cookie:NAME` hashes."""
    if header is None:
        return None
    for part in (<bytes>header).split(b";"):
        k, sep, v = part.strip().partition(b"=")
        if sep and k == name:
            return v
    return None

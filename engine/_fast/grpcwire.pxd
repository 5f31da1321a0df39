# gRPC's rules at the proxy (see grpcwire.pyx): request kinds, grpc-timeout, trailers-only
# answers, gRPC-Web framing and streamed base64.

cdef enum:
    G_NONE = 0           # not gRPC
    G_PLAIN = 1          # gRPC (application/grpc[+...])
    G_WEB_BINARY = 2     # gRPC-Web (application/grpc-web[+...])
    G_WEB_TEXT = 3       # gRPC-Web with a base64 body (application/grpc-web-text[+...])

cpdef int grpc_kind(bytes content_type)
cpdef double timeout_of(bytes v)
cpdef int status_of_http(int status)
cpdef bytes message(bytes text)
cpdef bytes response_content_type(bytes request_type)
cpdef bytes upstream_content_type(bytes content_type)
cpdef bytes trailer_message(list pairs)
cpdef list trailer_pairs(bytes lines)


cdef class TextDecoder:
    cdef bytes carry
    cpdef bytes feed(self, bytes chunk)
    cpdef bint clean_end(self)


cdef class TextEncoder:
    cdef bytes carry
    cpdef bytes feed(self, bytes chunk)
    cpdef bytes finish(self)

# Request mirroring (routes[].mirror, see mirror.pyx): a shadow copy of some of a route's
# requests, sent fire and forget to another cluster. exchange.pyx calls the functions below;
# nothing else does.

from engine._fast.exchange cimport Exchange
from engine._fast.tables cimport Route

# (MirrorSink and Shadows, the shadow's client side and a worker's registry, are private to
# mirror.pyx: declared here, exchange.pyx would import them while mirror.pyx, whose sink
# subclasses exchange's Downstream, is still importing exchange.pyx)

# Exchange.start_proxy, once target, edits, request id and deadline are set (before the
# primary's own lease): the shadow, started, or None (not sampled, or it failed at once).
cdef Exchange start_mirror(Exchange x, Route route)
# the primary's request body (Exchange.request_data, before anything else) and its end
# (Exchange.request_end); after mirror_end the shadow lives on by itself
cdef void mirror_data(Exchange shadow, bytes chunk) except *
cdef void mirror_end(Exchange shadow, bytes trailers) except *
# the primary finished before its request was complete (client gone, bad request, timeout, a
# local error that stops reading the body): the shadow will never have its request, so it ends
cdef void mirror_abort(Exchange shadow) except *
# Exchange.record() of a shadow, in place of the route stats and the access log line
cdef void mirror_recorded(Exchange shadow) except *

cpdef bytes shadow_host(bytes host)

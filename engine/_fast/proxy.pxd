# The worker's contract for the other codec modules (h2server, h2client). See proxy.pyx.

cimport cython
from engine._fast.exchange cimport Services
from engine._fast.tables cimport Tables, Listener


@cython.final
cdef class Worker(Services):
    cdef public Tables tables
    cdef public set conns                # live client connections (any codec)
    cdef public object on_idle           # called when draining and the last connection closed
    cdef dict listener_conns             # listener name -> open client connections
    cdef double tick                     # seconds between two timeout sweeps
    cdef object ticker                   # the TimerHandle of the next sweep

    # count a new client connection (False: refuse it) / its close
    cdef bint admit_connection(self, str lname, Listener l) except -1
    cdef void release_connection(self, str lname) except *
    # a client connection opened / closed: the connection set, gauges and the drain's end
    cdef void conn_opened(self, object conn, int lslot) except *
    cdef void conn_closed(self, object conn, str lname, int lslot) except *

# The debug build's live-object counters: what other compiled modules cimport.
#
#     from engine._fast.debug cimport live_add, LIVE_DOWNSTREAM
#     def __cinit__(self):  live_add(LIVE_DOWNSTREAM, 1)
#     def __dealloc__(self): live_add(LIVE_DOWNSTREAM, -1)
#
# SLUICE_DEBUG is a C macro (setup.py defines it to 1 under SLUICE_DEBUG=1 in the environment,
# else 0; a compile outside setup.py gets 0 from the fallback below), not a Cython compile-time
# constant: Cython writes `if (SLUICE_DEBUG) {...}` into the C, which is then the same for both
# builds, and the C compiler deletes the block when the macro is 0. So in a release build
# live_add costs nothing, not even a load: check with `make annotate` or objdump, never trust.

cdef extern from *:
    """
    #ifndef SLUICE_DEBUG
    #define SLUICE_DEBUG 0
    #endif
    """
    const int SLUICE_DEBUG

cdef enum LiveKind:
    # What is counted, one counter each (debug.pyx KINDS names them in this order). Add a kind
    # at the end, before LIVE_KINDS, with its name in KINDS and its zero rule in the docstring.
    LIVE_EXCHANGE = 0    # a request/response exchange (engine/_fast/exchange.pyx Exchange)
    LIVE_DOWNSTREAM      # a client connection's protocol object
    LIVE_UPSTREAM        # an upstream connection's protocol object, pooled or in use
    LIVE_TLS             # a connection (either side) whose transport is TLS
    LIVE_KINDS           # how many kinds (not a kind)

# The counting itself; call live_add, which compiles to nothing in a release build.
cdef void _live_add(int kind, long delta) noexcept

cdef inline void live_add(int kind, long delta) noexcept:
    if SLUICE_DEBUG:
        _live_add(kind, delta)

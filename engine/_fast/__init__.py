"""The compiled hot path. Every module here is a Cython extension; importing one that was not
built raises ImportError on purpose (there is no pure-Python stand-in)."""

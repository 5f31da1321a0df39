# The request-path normaliser's contract for Python (link.py, tests). See paths.pyx.
from typing import Final

PATH_NORMALIZE: Final[int]             # decode unreserved escapes, upper-case hex, remove dot segments
PATH_MERGE_SLASHES: Final[int]         # collapse runs of "/" (before dot removal)
PATH_KEEP_ESCAPED_SLASHES: Final[int]  # %2F, %5C and raw "\" are data; without it they are 400
PATH_FLAGS_DEFAULT: Final[int]         # PATH_NORMALIZE | PATH_MERGE_SLASHES

PATH_UNCHANGED: Final[int]             # -1: the path is already normal
PATH_ERR_BAD_ESCAPE: Final[int]        # "%" without two hex digits
PATH_ERR_NUL: Final[int]               # "%00"
PATH_ERR_ESCAPED_SLASH: Final[int]     # %2F, %5C or "\" under the reject policy
PATH_ERR_OVERLONG: Final[int]          # an overlong UTF-8 form ("%C0%AE")

class PathError(ValueError):
    """A path the proxy answers with 400."""
    code: int
    def __init__(self, code: int) -> None: ...

def flags_for(normalize: bool = True, merge_slashes: bool = True,
              keep_escaped_slashes: bool = False) -> int:
    """The listener's path_flags from its `paths` settings."""

def classify(path: bytes, flags: int = ...) -> int:
    """PATH_UNCHANGED, the normalised length, or a PATH_ERR_* code (the cdef function's answer)."""

def normalize(path: bytes, flags: int = ..., in_place: bool = False) -> bytes:
    """The path the proxy routes and forwards (`path` itself when unchanged); PathError for 400.
    in_place: normalise a private copy over itself (out == path), as a caller may."""

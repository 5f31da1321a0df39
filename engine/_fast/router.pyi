# The request router's contract for Python (link.py, `sluice explain`, tests). See router.pyx.
import re

import re2
from typing import Final, Mapping, Protocol

HOST_ANY: Final[int]
HOST_EXACT: Final[int]
HOST_SUFFIX: Final[int]   # host is the suffix with its dot: b".example.com"
PATH_ANY: Final[int]
PATH_EXACT: Final[int]
PATH_PREFIX: Final[int]
PATH_REGEX: Final[int]    # full match of the path by RE2 (linear time)

class HeaderSource(Protocol):
    def get(self, lower_name: bytes, /) -> bytes | None: ...

RouteSpec = tuple[
    int,                                # host_kind
    bytes,                              # host (lowercase), suffix for HOST_SUFFIX, b"" for any
    int,                                # path_kind
    bytes | str | re.Pattern[bytes] | re2._Regexp,  # path, prefix or regex (pattern or compiled;
                                                    # a regex always runs on RE2)
    tuple[bytes, ...] | None,           # methods; None = any
    tuple[tuple[bytes, bytes], ...],    # (lowercase header name, exact value) pairs
]

class Router:
    @property
    def n_routes(self) -> int: ...
    def __init__(self, routes: list[RouteSpec], scan_max: int = 8) -> None: ...
    def __len__(self) -> int: ...
    def match_py(
        self,
        host: bytes,
        path: bytes,
        method: bytes,
        headers: Mapping[bytes, bytes] | HeaderSource | None = None,
        identity: bytes | None = None,
    ) -> int:
        """Index of the first matching route, or -1. host lowercase without port; path without
        query."""

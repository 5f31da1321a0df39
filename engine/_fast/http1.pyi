"""Python/mypy view of engine/_fast/http1.pyx (the HTTP/1.1 codec). Compiled modules use
http1.pxd instead."""

from typing import Final

from engine._fast.headers import HeaderBlock

EV_NEED_DATA: Final[int]
EV_HEAD: Final[int]
EV_BODY: Final[int]
EV_END: Final[int]
EV_ERROR: Final[int]
EV_PAUSED: Final[int]

BODY_NONE: Final[int]
BODY_LENGTH: Final[int]
BODY_CHUNKED: Final[int]
BODY_UNTIL_CLOSE: Final[int]

HF_HOP: Final[int]
HF_DROP: Final[int]

H_OTHER: Final[int]
H_HOST: Final[int]
H_CONTENT_LENGTH: Final[int]
H_TRANSFER_ENCODING: Final[int]
H_CONNECTION: Final[int]
H_KEEP_ALIVE: Final[int]
H_UPGRADE: Final[int]
H_TE: Final[int]
H_TRAILER: Final[int]
H_PROXY_CONNECTION: Final[int]
H_EXPECT: Final[int]
H_X_FORWARDED_FOR: Final[int]
H_X_FORWARDED_PROTO: Final[int]
H_X_FORWARDED_HOST: Final[int]
H_X_REQUEST_ID: Final[int]
H_COOKIE: Final[int]

class H1Parser(HeaderBlock):
    """Sans-I/O HTTP/1.x pull parser: feed(), then next_event() until EV_NEED_DATA,
    EV_ERROR or EV_PAUSED."""

    @property
    def is_request(self) -> bool: ...
    max_head_bytes: int
    max_headers: int
    max_uri_bytes: int
    error_status: int
    error_reason: str

    def __init__(
        self,
        is_request: bool = True,
        max_head_bytes: int = 65536,
        max_headers: int = 100,
        max_uri_bytes: int = 8192,
    ) -> None: ...
    def feed(self, data: bytes) -> None: ...
    def next_event(self) -> int: ...
    def feed_eof(self) -> int: ...
    def expect_response(self, to_head: bool) -> None: ...
    def expect_connect_response(self) -> None: ...
    def resume(self) -> None: ...
    def leftover(self) -> bytes: ...
    def get(self, lower_name: bytes) -> bytes | None: ...
    def event_slice(self) -> bytes: ...
    def drop_header(self, lower_name: bytes) -> int: ...
    @property
    def method(self) -> bytes: ...
    @property
    def target(self) -> bytes: ...
    @property
    def http_version(self) -> bytes: ...
    @property
    def status_code(self) -> int: ...
    @property
    def reason(self) -> bytes: ...
    @property
    def headers(self) -> list[tuple[bytes, bytes]]: ...
    @property
    def header_flags(self) -> list[tuple[int, int]]: ...
    @property
    def body_kind(self) -> int: ...
    @property
    def content_length(self) -> int | None: ...
    @property
    def keep_alive(self) -> bool: ...
    @property
    def expect_continue(self) -> bool: ...
    @property
    def upgrade(self) -> bool: ...
    @property
    def trailers(self) -> list[tuple[bytes, bytes]]: ...

def serialize_head(parser: H1Parser, first_line: bytes, edits: list[bytes] | None = None) -> bytes: ...
def serialize_chunk_size(n: int) -> bytes: ...

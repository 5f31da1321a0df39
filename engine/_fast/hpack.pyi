"""Python/mypy view of engine/_fast/hpack.pyx (the HPACK codec, RFC 7541). Compiled modules use
hpack.pxd instead (Decoder.decode, Encoder.encode, hpack_h2_error)."""

from typing import Final, Sequence

from engine._fast.headers import HeaderBlock

HPACK_OK: Final[int]
HPACK_E_TRUNCATED: Final[int]
HPACK_E_INTEGER: Final[int]
HPACK_E_INDEX: Final[int]
HPACK_E_HUFFMAN_EOS: Final[int]
HPACK_E_HUFFMAN_PADDING: Final[int]
HPACK_E_SIZE_UPDATE_TOO_LARGE: Final[int]
HPACK_E_SIZE_UPDATE_NOT_FIRST: Final[int]
HPACK_E_SIZE_UPDATE_MISSING: Final[int]
HPACK_E_BOMB: Final[int]
HPACK_E_LIST_TOO_LARGE: Final[int]
HPACK_E_TOO_MANY_FIELDS: Final[int]
HPACK_INT_MAX: Final[int]

HF_NEVER_INDEXED: Final[int]
HF_PSEUDO: Final[int]

PS_METHOD: Final[int]
PS_SCHEME: Final[int]
PS_AUTHORITY: Final[int]
PS_PATH: Final[int]
PS_STATUS: Final[int]
PS_PROTOCOL: Final[int]
PSF_AFTER_REGULAR: Final[int]
PSF_DUPLICATE: Final[int]
PSF_UNKNOWN: Final[int]

class HpackError(Exception):
    code: int
    name: str
    h2_error: int
    connection_error: bool
    def __init__(self, code: int) -> None: ...

class Decoder:
    max_list_size: int
    max_headers: int
    bomb_floor: int
    bomb_ratio: int
    @property
    def pseudo_end(self) -> int: ...
    @property
    def pseudo_flags(self) -> int: ...
    @property
    def list_size(self) -> int: ...
    @property
    def malformed(self) -> int: ...
    @property
    def header_table_size(self) -> int: ...
    @property
    def table_size(self) -> int: ...
    @property
    def table_limit(self) -> int: ...
    @property
    def error(self) -> int: ...
    def __init__(self, max_table_size: int = ..., max_list_size: int = ..., max_headers: int = ...,
                 bomb_floor: int = ..., bomb_ratio: int = ...) -> None: ...
    def set_max_table_size(self, n: int) -> None: ...
    def decode_block(self, block: bytes | bytearray | memoryview,
                     hb: HeaderBlock | None = ...) -> HeaderBlock: ...
    def decode_fields(self, block: bytes | bytearray | memoryview) -> list[tuple[bytes, bytes, bool]]: ...
    def pseudo_index(self, kind: int) -> int: ...
    def table_entries(self) -> list[tuple[bytes, bytes]]: ...

class Encoder:
    huffman: bool
    @property
    def header_table_size(self) -> int: ...
    @property
    def table_size(self) -> int: ...
    def __init__(self, max_table_size: int = ..., huffman: bool = ...) -> None: ...
    def set_peer_max_table_size(self, n: int) -> None: ...
    def encode_block(self, h: HeaderBlock | None = ..., pseudo: list[bytes] | None = ...,
                     edits: list[bytes] | None = ...) -> bytes: ...
    def encode_fields(self, fields: Sequence[tuple[bytes, bytes] | tuple[bytes, bytes, bool]]) -> bytes: ...
    def table_entries(self) -> list[tuple[bytes, bytes]]: ...

def block_from_fields(fields: Sequence[tuple[bytes, bytes] | tuple[bytes, bytes, bool]],
                      mark_pseudo: bool = ...) -> HeaderBlock: ...
def huffman_encode_py(s: bytes) -> bytes: ...
def huffman_decode_py(s: bytes) -> bytes: ...

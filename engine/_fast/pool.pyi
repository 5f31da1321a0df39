from typing import Callable

LEASE: dict[str, int]
PROTOCOL: dict[str, int]          # clusters[].protocol -> Pool.protocol

class PooledConn:
    def __init__(self, pool: Pool | None = ..., transport: object = ...) -> None: ...

class Pool:
    host: str
    port: int
    address: bytes
    max_connections: int
    max_requests: int
    idle_timeout: float
    connect_timeout: float
    total: int
    connects: int
    max_waiters: int
    ssl_context: object | None
    server_hostname: str | None
    protocol: int
    h2_max_streams: int
    h2_stream_window: int
    h2_conn_window: int
    h2_ping_interval: float
    h2_ping_timeout: float
    connecting: int                  # HTTP/2: connections opening (counted in total)
    def __init__(self, host: str, port: int, max_connections: int = ..., max_requests: int = ...,
                 idle_timeout: float = ..., connect_timeout: float = ...,
                 max_waiters: int = ..., ssl_context: object | None = ...,
                 server_hostname: str | None = ..., protocol: int = ...,
                 h2_max_streams: int = ..., h2_stream_window: int = ...,
                 h2_conn_window: int = ..., h2_ping_interval: float = ...,
                 h2_ping_timeout: float = ...) -> None: ...
    def lease(self, holder: object, fresh: bool = ...) -> tuple[int, PooledConn | None]: ...
    def give_back(self, c: PooledConn, now: float) -> None: ...
    def lost(self, c: PooledConn) -> None: ...
    def open_failed(self) -> None: ...
    def sweep(self, now: float) -> int: ...
    def close_idle(self) -> None: ...
    @property
    def idle_count(self) -> int: ...
    @property
    def waiting(self) -> int: ...
    @property
    def h2_connections(self) -> list[PooledConn]: ...

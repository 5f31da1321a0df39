from typing import Callable

LEASE: dict[str, int]

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
    def __init__(self, host: str, port: int, max_connections: int = ..., max_requests: int = ...,
                 idle_timeout: float = ..., connect_timeout: float = ...,
                 max_waiters: int = ..., ssl_context: object | None = ...,
                 server_hostname: str | None = ...) -> None: ...
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

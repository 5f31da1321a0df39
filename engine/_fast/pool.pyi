from typing import Callable

class PooledConn: ...

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
    def add_waiter(self, callback: Callable[[], None]) -> bool: ...
    def remove_waiter(self, callback: Callable[[], None]) -> None: ...
    def sweep(self, now: float) -> int: ...
    def close_idle(self) -> None: ...
    @property
    def idle_count(self) -> int: ...
    @property
    def waiting(self) -> int: ...

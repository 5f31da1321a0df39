from engine._fast.balancer import Balancer
from engine._fast.limiter import Limiter
from engine._fast.pool import Pool
from engine._fast.router import Router

LIMIT_PER: dict[str, int]
HASH_ON: dict[str, int]
XFCC: dict[str, int]

class Endpoint:
    pool: Pool
    def __init__(self, pool: Pool) -> None: ...

class Cluster:
    name: str
    balancer: Balancer
    endpoints: list[Endpoint]
    hash_kind: int
    hash_name: bytes
    def __init__(self, name: str, balancer: Balancer, endpoints: list[Endpoint],
                 hash_kind: int = ..., hash_name: bytes = ...) -> None: ...

class Route:
    name: str
    index: int
    direct: bool
    direct_status: int
    direct_headers: list[bytes]
    direct_body: bytes
    h1_wire: object
    prefix_from: bytes | None
    prefix_to: bytes | None
    add_headers: list[bytes]
    drop_names: tuple[bytes, ...]
    limiter: Limiter | None
    limit_per: int
    limit_header: bytes
    timeout: float
    split: Balancer | None
    clusters: list[Cluster]
    req_filters: tuple | None
    resp_filters: tuple | None
    def __init__(self, name: str, index: int, *, direct: bool = ..., direct_status: int = ...,
                 direct_headers: list[bytes] | None = ..., direct_body: bytes = ...,
                 prefix_from: bytes | None = ..., prefix_to: bytes | None = ...,
                 add_headers: list[bytes] | None = ..., drop_names: tuple[bytes, ...] = ...,
                 limiter: Limiter | None = ..., limit_per: int = ..., limit_header: bytes = ...,
                 timeout: float = ..., split: Balancer | None = ...,
                 clusters: list[Cluster] | None = ..., req_filters: tuple | None = ...,
                 resp_filters: tuple | None = ...) -> None: ...

class Listener:
    name: str
    host: str
    port: int
    router: Router
    routes: list[Route]
    max_head_bytes: int
    max_headers: int
    max_uri_bytes: int
    max_connections: int
    tls: bool
    xfcc: int
    tls_uri: bytes
    ssl_context: object | None
    header_timeout: float
    idle_timeout: float
    body_timeout: float
    send_timeout: float
    max_duration: float
    path_flags: int                    # engine._fast.paths PATH_* bits
    stats_slot: int
    def __init__(self, name: str, host: str, port: int, router: Router, routes: list[Route],
                 max_head_bytes: int = ..., max_headers: int = ...,
                 max_uri_bytes: int = ..., max_connections: int = ...,
                 header_timeout: float = ..., idle_timeout: float = ...,
                 body_timeout: float = ..., send_timeout: float = ...,
                 max_duration: float = ...,
                 path_flags: int = ..., stats_slot: int = ..., tls: bool = ...,
                 xfcc: int = ..., tls_uri: bytes = ...,
                 ssl_context: object | None = ...) -> None: ...

class Tables:
    version: object
    listeners: dict[str, Listener]
    clusters: dict[str, Cluster]
    pools: dict[tuple, Pool]
    def __init__(self, version: object, listeners: dict[str, Listener],
                 clusters: dict[str, Cluster], pools: dict[tuple, Pool]) -> None: ...

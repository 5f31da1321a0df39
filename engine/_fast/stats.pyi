# The shared-memory counters' contract for Python and mypy. See stats.pyx for the theory of
# operation; compiled callers use stats.pxd (Stats.record, set_gauge, add_gauge, endpoint_begin,
# endpoint_end, heartbeat, h2_counts, h2_reset, h2_goaway, h2_gauge).
from typing import Final, TypedDict

BOUNDS: Final[tuple[float, ...]]        # histogram bucket upper bounds, seconds; last is +Inf
STATUS_CLASSES: Final[tuple[str, ...]]  # ("other", "1xx", "2xx", "3xx", "4xx", "5xx")
GAUGE_CONNECTIONS: Final[int]
GAUGE_REQUESTS: Final[int]
OTHER: Final[str]                       # "_other": the overflow slot's name in every table
UNROUTED: Final[str]                    # "_unrouted": exchanges answered before a route matched
SLOT_OTHER: Final[int]
SLOT_UNROUTED: Final[int]
H2_SIDES: Final[tuple[str, str]]        # ("downstream", "upstream"), indexed by side
H2_DOWNSTREAM: Final[int]
H2_UPSTREAM: Final[int]
H2_GAUGE_CONNECTIONS: Final[int]
H2_GAUGE_STREAMS: Final[int]
H2_CODES: Final[tuple[str, ...]]        # RFC 9113 error code names 0x0..0xd, then "unknown"
H2_COUNTER_NAMES: Final[tuple[str, ...]]  # http2.COUNTER_NAMES: h2_counts' delta order

class RouteStats(TypedDict):
    requests: dict[str, int]            # status class -> count
    rate_limited: int                   # refused with 429 by the route's limit
    filter_errors: int                  # Python filter phases that raised
    buckets: list[int]                  # per bucket (not cumulative), bounds BOUNDS
    count: int
    sum: float
    bytes_in: int
    bytes_out: int

class ClusterStats(TypedDict):
    requests: dict[str, int]

class EndpointStats(TypedDict):
    active: int
    requests: int
    connect_failures: int
    resets: int

class Gauges(TypedDict):
    active_connections: int
    active_requests: int

class ListenerStats(TypedDict):
    active_connections: int

class H2Side(TypedDict):
    counters: dict[str, int]            # H2_COUNTER_NAMES -> count
    resets: dict[str, dict[str, int]]   # "sent" | "received" -> H2_CODES -> count
    goaways: dict[str, dict[str, int]]
    active_connections: int
    active_streams: int

class Aggregate(TypedDict):
    http2: dict[str, H2Side]            # H2_SIDES -> ...
    listeners: dict[str, ListenerStats]
    events: dict[str, int]              # EVENT_NAMES -> count
    routes: dict[str, RouteStats]
    clusters: dict[str, ClusterStats]
    endpoints: dict[str, EndpointStats]
    gauges: Gauges
    workers: int

class WorkerInfo(TypedDict):
    slot: int
    pid: int
    version: str | None
    heartbeat: float
    active_connections: int
    active_requests: int

class Stats:
    """The node's shared-memory metrics; create it in the supervisor before forking."""

    max_workers: int
    max_routes: int
    max_clusters: int
    max_endpoints: int
    def __init__(
        self, max_workers: int = 64, max_routes: int = 4096, max_clusters: int = 1024,
        max_endpoints: int = 8192,
    ) -> None: ...
    # names -> slots (link time; stable across processes and reloads; "_other" when full)
    def route_slot(self, name: str | bytes) -> int: ...
    def cluster_slot(self, name: str | bytes) -> int: ...
    def endpoint_slot(self, name: str | bytes) -> int: ...
    def route_names(self) -> list[str]: ...
    def cluster_names(self) -> list[str]: ...
    def endpoint_names(self) -> list[str]: ...
    @property
    def lock_steals(self) -> int: ...
    def _hold_name_lock(self) -> None: ...
    # worker slots
    def attach_worker(self, worker: int, pid: int | None = None) -> None: ...
    def release_worker(self, worker: int) -> None: ...
    def set_version(self, worker: int, version: str | bytes | None) -> None: ...
    def beat(self, worker: int, now: float | None = None) -> None: ...
    # the hot path, from Python (tests, embedding); IndexError for a worker out of range
    def record_py(
        self, worker: int, route_slot: int, cluster_slot: int, status: int, seconds: float,
        bytes_in: int = 0, bytes_out: int = 0,
    ) -> None: ...
    def set_gauge_py(self, worker: int, which: int, value: int) -> None: ...
    def add_gauge_py(self, worker: int, which: int, delta: int) -> None: ...
    def endpoint_begin_py(self, worker: int, endpoint_slot: int) -> None: ...
    def endpoint_end_py(self, worker: int, endpoint_slot: int) -> None: ...
    def count_event_py(self, worker: int, name: str) -> None: ...
    def h2_counts_py(
        self, worker: int, side: int, deltas: dict[str, int] | list[int] | tuple[int, ...],
    ) -> None: ...
    def h2_flush_py(
        self, worker: int, side: int, totals: list[int] | tuple[int, ...],
        flushed: list[int] | tuple[int, ...],
    ) -> list[int]: ...
    def h2_reset_py(self, worker: int, side: int, sent: bool, code: int) -> None: ...
    def h2_goaway_py(self, worker: int, side: int, sent: bool, code: int) -> None: ...
    def h2_gauge_py(self, worker: int, side: int, which: int, delta: int) -> None: ...
    # the read side
    def aggregate(self) -> Aggregate: ...
    def worker_versions(self) -> dict[int, str | None]: ...
    def workers(self) -> list[WorkerInfo]: ...

def endpoint_key(cluster: str, address: object) -> str:
    """The name endpoint_slot() takes for an endpoint: "cluster/host:port"."""
def monotonic() -> float: ...

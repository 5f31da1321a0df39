"""Node-wide endpoint state in shared memory (see endpoints.pyx for the theory of operation).
Python surface only: balancers and the exchange use the C-level methods in endpoints.pxd."""

from typing import Final, TypedDict

HEALTH_NAMES: Final[tuple[str, str, str]]    # indexed by UNKNOWN, HEALTHY, UNHEALTHY
UNKNOWN: Final[int]
HEALTHY: Final[int]
UNHEALTHY: Final[int]
OUTCOME_OK: Final[int]
OUTCOME_5XX: Final[int]
OUTCOME_GATEWAY: Final[int]

class EndpointState(TypedDict):
    health: str
    ejected: bool
    eject_until: float
    times_ejected: int
    to_healthy: int
    to_unhealthy: int
    ejections: int

class Endpoints:
    def __init__(self, max_endpoints: int = 8192) -> None: ...
    @property
    def max_endpoints(self) -> int: ...
    @property
    def generation_py(self) -> int: ...
    def set_health(self, slot: int, health: int) -> bool:
        """True when it changed (a transition)."""
    def forget(self, slot: int) -> None: ...
    def sweep(self, now: float) -> list[int]:
        """Lift the ejections whose time is up; the slots lifted."""
    def available_py(self, slot: int) -> bool: ...
    def health_py(self, slot: int) -> int: ...
    def outcome_py(self, slot: int, kind: int, max_5xx: int = 0, max_gateway: int = 0) -> int: ...
    def eject_py(self, slot: int, now: float, base: float, max_seconds: float = 0.0) -> int: ...
    def state(self, slot: int) -> EndpointState: ...

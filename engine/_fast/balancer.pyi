"""Endpoint selection (see balancer.pyx for the theory of operation). Python surface only: the
proxy uses the C-level pick/begin/end declared in balancer.pxd."""

from typing import Final, Sequence

from engine._fast.endpoints import Endpoints

LB_ROUND_ROBIN: Final[int]
LB_LEAST_REQUEST: Final[int]
LB_RING_HASH: Final[int]
LB_RANDOM: Final[int]
LB_RING_POINTS_PER_WEIGHT: Final[int]
LB_RING_MAX_POINTS: Final[int]
LB_MAX_WEIGHT: Final[int]

def policy_from_name(name: str) -> int:
    """'weighted_round_robin' | 'least_request' | 'ring_hash' | 'random'; ValueError otherwise."""

def hash_key(data: bytes, seed: int = 0) -> int:
    """XXH64 of data (the ring's hash for request keys uses seed 0)."""

class Balancer:
    """One per cluster per worker; a route's traffic split is Balancer(LB_ROUND_ROBIN, ...)."""

    @property
    def policy(self) -> int: ...
    @property
    def n(self) -> int: ...
    @property
    def n_up(self) -> int: ...
    @property
    def ring_size(self) -> int: ...
    @property
    def keys(self) -> tuple[bytes, ...]: ...
    @property
    def panic(self) -> int:
        """Panic threshold, percent (0 = off)."""
    @property
    def panicking(self) -> bool:
        """The last sync found fewer endpoints available than `panic` percent: all are used."""
    @property
    def watched(self) -> bool: ...
    def __init__(
        self, policy: int, weights: Sequence[int], keys: Sequence[bytes] = (), seed: int = 0,
        panic: int = 0,
    ) -> None: ...
    def watch(self, shared: Endpoints, slots: Sequence[int]) -> None:
        """Follow the node-wide health/ejection state of these endpoint slots."""
    def sync(self) -> None: ...
    def pick_py(self, key: bytes | None = None) -> int:
        """An available endpoint index, or -1 when none is available."""
    def begin_py(self, i: int) -> None: ...
    def end_py(self, i: int) -> None: ...
    def set_available(self, i: int, up: bool) -> None:
        """IndexError when i is out of range."""
    def active(self, i: int) -> int: ...
    def available(self, i: int) -> bool: ...
    def weight(self, i: int) -> int: ...

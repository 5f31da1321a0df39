"""sluice: an L7 proxy data plane with a compiled hot path.

The embedding API: run sluice inside your own asyncio (ideally uvloop) program.

    import engine

    proxy = engine.Proxy.from_file("sluice.yaml", filters={"auth": ApiKeyFilter})
    await proxy.start()                 # listeners open in the running loop
    await proxy.apply(new_config)       # a Config, a YAML path, a dict or snapshot bytes
    await proxy.stop(drain=5.0)         # stop accepting, finish in-flight requests, close

An embedded proxy is one worker of the binary's kind, in the caller's loop: same tables, same
hot reload (in-flight requests finish on the config they started with; pools of unchanged
clusters are kept), its own rate-limit buckets. Python filters (`engine.Filter`) are named from
a route's `filters:` and either provided here or imported (`python: module:Class` in the config).
Imported only from an allow list fixed when the Proxy is made: the modules its first config names
plus `filter_modules=[...]`; a later `apply` naming another module is refused before import.

A config reaches the embedded worker as it reaches a forked one: validated once (here, when it is
not a Config already), encoded as a snapshot, and built back from the snapshot bytes checked
against their digest, without a second validation (engine/runtime/worker.py, `served_config`).
So embedded and binary serve the same thing from the same config, and a config that does not
survive its snapshot fails here rather than in a worker.

Importing `engine` itself never requires the compiled modules, so `sluice validate` and
`sluice compile` work on a machine without a compiler; `Proxy.start()` needs them.
"""

from __future__ import annotations

import os
from typing import Any

from engine.filters.base import Filter, FilterContext, Reply

__version__ = "0.1.0"

__all__ = ["Filter", "FilterContext", "Proxy", "Reply", "load_config", "load_snapshot",
           "encode_snapshot"]


def load_config(path: str | os.PathLike[str]):
    """Load and validate a YAML config; raises engine.policy.ConfigError with every problem."""
    from engine.policy import load_config as _load

    return _load(path)


def load_snapshot(data: bytes | str | os.PathLike[str]):
    """(header, Config) of a compiled snapshot; raises SnapshotError when it is not valid."""
    from engine.policy.snapshot import load_snapshot as _load

    return _load(data)


def encode_snapshot(config, source_name: str = "<embedded>") -> bytes:
    from engine.policy.snapshot import encode_snapshot as _encode

    return _encode(config, source_name)


def _as_config(source: Any):
    """A Config from a Config, a path (YAML or .msgpack), a dict, or snapshot bytes."""
    from engine.policy import Config, check_data, load_config as _load_yaml

    if isinstance(source, Config):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return load_snapshot(bytes(source))[1]
    if isinstance(source, dict):
        result = check_data(source, "<dict>")
        result.raise_for_errors()
        return result.config
    path = os.fspath(source)
    if path.endswith(".msgpack"):
        return load_snapshot(path)[1]
    return _load_yaml(path)


class Proxy:
    """sluice running inside the caller's event loop (see the module docstring)."""

    def __init__(self, config: Any, *, filters: dict[str, Any] | None = None,
                 access_log: str | None = "off", bucket_slots: int = 65536,
                 filter_modules: list[str] | tuple[str, ...] = ()):
        from engine.filters.loader import EMBED_HINT, FilterModules

        self.config = _as_config(config)
        self.filters = dict(filters or {})
        if isinstance(filter_modules, str):
            raise TypeError("filter_modules is a list of module names, not one string")
        # fixed now: a config applied later may import filters from these modules only
        self.filter_modules = FilterModules.at_start(self.config, filter_modules, EMBED_HINT)
        self.access_log = access_log or self.config.access_log.path
        self.bucket_slots = bucket_slots
        self._server = None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> "Proxy":
        return cls(path, **kwargs)

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Open the listeners in the running loop and start serving."""
        import asyncio

        from engine._fast.limiter import SharedBuckets
        from engine._fast.stats import Stats
        from engine.runtime.worker import WorkerServer

        if self._server is not None:
            raise RuntimeError("this proxy is already running")
        loop = asyncio.get_running_loop()
        stats = Stats(max_workers=1)
        stats.attach_worker(0)
        config, version = _served(self.config)
        server = WorkerServer(loop, config, SharedBuckets(self.bucket_slots),
                              self.access_log, version, self.filters, stats=stats,
                              filter_modules=self.filter_modules)
        await server.start()
        self._server = server

    async def apply(self, config: Any) -> None:
        """Serve `config` from the next request on; raises (and changes nothing) if it is bad."""
        new = _as_config(config)
        refused = self.filter_modules.problems(new, self.filters)
        if refused:
            from engine.policy.errors import ConfigError, Problem

            raise ConfigError([Problem("<embedded>", p.where, p.reason) for p in refused])
        if self._server is not None:
            import asyncio

            # off the caller's loop, as in a worker: encoding and decoding 10,000 routes takes
            # a while (link then runs in a thread too)
            served = await asyncio.get_running_loop().run_in_executor(None, _served, new)
            await self._server.apply(*served)
        self.config = new

    async def stop(self, drain: float = 30.0) -> None:
        """Stop accepting, let in-flight requests finish (up to `drain` seconds), close."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(drain)

    @property
    def requests(self) -> int:
        """Exchanges completed so far."""
        return self._server.worker.requests if self._server is not None else 0


def _served(config):
    """(Config, version) as a worker serves `config`: its snapshot, built back through the
    workers' own path (the digest is the one just computed over the content encoded here)."""
    from engine.policy.snapshot import snapshot_of
    from engine.runtime.worker import served_config

    header, data = snapshot_of(config, "<embedded>")
    return served_config(data, header.sha256, "<embedded>")

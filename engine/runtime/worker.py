"""One worker: a uvloop event loop serving every listener of the current Tables.

Workers are forked by the supervisor (`supervisor.py`); the same `WorkerServer` also runs inside
a caller's own loop for embedded use. A worker owns nothing the others need: listeners are its
own SO_REUSEPORT sockets, pools are per worker, and the only shared state (rate-limit buckets)
lives in the shared memory the supervisor mapped before forking.

Drain (SIGTERM, or `stop(drain=...)`): close the listening sockets so the kernel sends new
connections to no one (or to the other workers during a restart), tell every connection to close
after its current response, and wait until none is left or the deadline passes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from engine._fast.proxy import Worker, reseed_request_ids
from engine.policy.link import link
from engine.runtime.accesslog import AccessLog
from engine.runtime.sockets import listen_socket

log = logging.getLogger("sluice.worker")

SWEEP_INTERVAL = 1.0


class WorkerServer:
    def __init__(self, loop, config, buckets, access_log_path: str = "stderr"):
        self.loop = loop
        self.buckets = buckets
        self.config = config
        self.access_log = AccessLog.open(loop, access_log_path)
        self.worker = Worker(loop, link(config, buckets), self.access_log)
        self.servers: list = []
        self.sweeper = None

    async def start(self) -> None:
        for lst in self.config.listeners:
            sock = listen_socket(lst.address.host, lst.address.port)
            server = await self.loop.create_server(
                self.worker.protocol_factory(lst.name), sock=sock)
            self.servers.append(server)
        self.sweeper = self.loop.call_later(SWEEP_INTERVAL, self._sweep)

    def _sweep(self) -> None:
        self.worker.sweep_pools()
        self.sweeper = self.loop.call_later(SWEEP_INTERVAL, self._sweep)

    async def stop(self, drain: float = 30.0) -> None:
        """Stop accepting, let in-flight exchanges finish (up to `drain` seconds), close."""
        for server in self.servers:
            server.close()
        if self.sweeper is not None:
            self.sweeper.cancel()
        done = self.loop.create_future()
        self.worker.on_idle = lambda: done.done() or done.set_result(None)
        self.worker.drain()
        if self.worker.active:
            try:
                await asyncio.wait_for(asyncio.shield(done), drain)
            except asyncio.TimeoutError:
                log.warning("drain deadline passed with %d connections open", self.worker.active)
        for pool in self.worker.tables.pools.values():
            pool.close_idle()
        if self.access_log is not None:
            self.access_log.close()
        for server in self.servers:
            await server.wait_closed()


def _die_with_parent() -> None:
    """A worker whose supervisor was SIGKILLed must not keep serving an orphaned config."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_worker(config, buckets, access_log_path: str, drain_timeout: float, ready_fd: int) -> int:
    """Entry point of a forked worker process; returns its exit status."""
    import uvloop

    reseed_request_ids()
    _die_with_parent()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the supervisor turns ^C into SIGTERM
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    server = WorkerServer(loop, config, buckets, access_log_path)
    stopping = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, lambda: stopping.done() or stopping.set_result(None))

    async def main() -> None:
        await server.start()
        if ready_fd >= 0:
            os.write(ready_fd, b"r")
            os.close(ready_fd)
        await stopping
        await server.stop(drain_timeout)

    try:
        loop.run_until_complete(main())
    except OSError as exc:
        log.error("worker %d: %s", os.getpid(), exc)
        return 1
    finally:
        loop.close()
    return 0

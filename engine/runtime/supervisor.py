"""The supervisor: owns the config and the shared memory, forks the workers and keeps them alive.

Why a supervisor process at all: SO_REUSEPORT gives every worker its own accept queue, so a
worker that dies takes only its own connections with it; the supervisor notices (a pidfd),
restarts it, and the kernel starts sending connections to the new socket. The token buckets are
mapped here, before fork, so every worker (including a restarted one) shares them.

Worker exits are seen through a pidfd per worker. SIGTERM or SIGINT start a drain: each worker stops accepting, finishes its in-flight
requests (up to the drain deadline) and exits; the supervisor exits 0 once all have.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time

from engine._fast.limiter import SharedBuckets
from engine.runtime.sockets import check_bindable
from engine.runtime.worker import run_worker

log = logging.getLogger("sluice")

RESTART_DELAY = 0.5          # seconds between restarts of a worker that keeps dying
KILL_GRACE = 5.0             # after the drain deadline, SIGKILL workers still alive


class Supervisor:
    def __init__(self, config, *, workers: int, drain_timeout: float = 30.0,
                 access_log_path: str | None = None, bucket_slots: int = 65536):
        self.config = config
        self.nworkers = max(1, workers)
        self.drain_timeout = drain_timeout
        self.access_log_path = access_log_path or config.access_log.path
        self.buckets = SharedBuckets(bucket_slots)
        self.pids: dict[int, int] = {}      # pid -> worker slot
        self.started: dict[int, float] = {}
        self.stopping = False
        self.loop = None
        self.done = None

    def run(self) -> int:
        import uvloop

        for lst in self.config.listeners:
            try:
                check_bindable(lst.address.host, lst.address.port)
            except OSError as exc:
                log.error("listener %s: cannot listen on %s: %s", lst.name, lst.address, exc.strerror)
                return 1
        self.loop = loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        self.done = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.shutdown)
        try:
            return loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> int:
        waits = [self.spawn(slot) for slot in range(self.nworkers)]
        results = await asyncio.gather(*waits)
        if not all(results):
            log.error("a worker failed to start")
            self.shutdown()
        else:
            addrs = ", ".join(f"{l.name}=http://{l.address}" for l in self.config.listeners)
            log.info("sluice serving %s with %d worker(s)", addrs, self.nworkers)
        return await self.done

    def spawn(self, slot: int) -> "asyncio.Future[bool]":
        """Fork worker `slot`; the future says whether it reached 'listening'."""
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: leave the supervisor's loop behind entirely
            os.close(rfd)
            status = 1
            try:
                signal.set_wakeup_fd(-1)
                asyncio.events._set_running_loop(None)
                status = run_worker(self.config, self.buckets, self.access_log_path,
                                    self.drain_timeout, wfd)
            except BaseException:
                logging.getLogger("sluice.worker").exception("worker crashed")
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        os.close(wfd)
        # a pidfd becomes readable when the process exits (uvloop keeps SIGCHLD for itself)
        pidfd = os.pidfd_open(pid)
        self.loop.add_reader(pidfd, self._exited, pidfd)
        self.pids[pid] = slot
        self.started[pid] = time.monotonic()
        ready = self.loop.create_future()

        def on_ready() -> None:
            data = os.read(rfd, 1)
            self.loop.remove_reader(rfd)
            os.close(rfd)
            if not ready.done():
                ready.set_result(data == b"r")

        self.loop.add_reader(rfd, on_ready)
        return ready

    def _exited(self, pidfd: int) -> None:
        self.loop.remove_reader(pidfd)
        os.close(pidfd)
        self.reap()

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            slot = self.pids.pop(pid, None)
            if slot is None:
                continue
            lived = time.monotonic() - self.started.pop(pid, 0.0)
            if self.stopping:
                if not self.pids and not self.done.done():
                    self.done.set_result(0)
                continue
            log.warning("worker %d (slot %d) exited with status %s; restarting", pid, slot,
                        os.waitstatus_to_exitcode(status))
            delay = RESTART_DELAY if lived < 1.0 else 0.0
            self.loop.call_later(delay, self._respawn, slot)

    def _respawn(self, slot: int) -> None:
        if not self.stopping:
            self.spawn(slot)

    def shutdown(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        log.info("draining %d worker(s)", len(self.pids))
        for pid in list(self.pids):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if not self.pids:
            self.done.done() or self.done.set_result(0)
            return
        self.loop.call_later(self.drain_timeout + KILL_GRACE, self._kill_stragglers)

    def _kill_stragglers(self) -> None:
        for pid in list(self.pids):
            log.error("worker %d did not drain in time: killing it", pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

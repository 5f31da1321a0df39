"""The supervisor: owns the config and the shared memory, forks the workers, keeps them alive and
publishes new snapshots to them.

Why a supervisor process at all: SO_REUSEPORT gives every worker its own accept queue, so a
worker that dies takes only its own connections with it; the supervisor notices (a pidfd per
worker: uvloop keeps SIGCHLD for itself), restarts it, and the kernel starts sending connections
to the new socket. The token buckets are mapped here, before fork, so every worker (including a
restarted one) shares them.

Reload: a new snapshot (the config file changed, SIGHUP, or the admin API's PUT /snapshot) is
validated here first, once, in a thread (`_prepare`): checking a big config takes a while, and
meanwhile this loop must keep answering the admin API and restarting dead workers. A bad one is
refused, reported, and changes nothing. Filter modules are checked against the allow list fixed
at start (engine/filters/loader.py: the config's own modules and `--filter-module`), so a pushed
snapshot cannot make a worker import anything else. A good one is sent to every worker over its
control channel as snapshot bytes with the sha256 of the content validated here (`_push`); each
worker checks the bytes against that digest instead of validating them again, links new tables
beside the old and swaps one reference, then acknowledges. Reloads are serialised, and a worker
restarted later starts from the current snapshot.

One config pipeline: a worker gets the same two things at start (as arguments of the fork:
`spawn`) and at every reload (in the `apply` message): the snapshot bytes and their digest, never
a Config object, so what a worker serves is exactly a snapshot the supervisor validated
(engine/runtime/worker.py, `served_config`).

A listener address is probed without SO_REUSEPORT before any worker binds it (at start, and when
a reload adds one; engine/runtime/sockets.py), so a second sluice on the same address exits 1
instead of silently joining the first one's SO_REUSEPORT group.

Start: `run` returns 1 when the start fails: a listener or the admin address cannot be bound, or
any worker fails before it serves (it says why in a `failed` message: engine/runtime/worker.py).
That is logged once, as one line, the workers that did start are stopped, and none is restarted:
a worker that cannot start now will not start in half a second either, and a supervisor that
keeps retrying looks healthy to systemd or Kubernetes while serving nothing. Once every worker has
served, a worker that dies (or fails to start again) is restarted.

Certificates: the certificate, key and CA files of TLS listeners and clusters are watched too
(`_watch_tls`); a cluster's new files are applied by a relink in each worker (new pools for that
cluster only, engine/policy/tls_client.py).
A change is checked here (`reload_tls`), then every worker re-reads the files and new handshakes
get the new certificates, while the listening sockets and open connections stay as they are
(engine/policy/tls_server.py). A file that cannot be used is refused with its path, like a
refused snapshot (logged, `last_rejection` in /config_dump), and the old certificates serve on.
The TLS listeners' front contexts are made here before the first fork, so every worker has the
same session ticket keys (a client resumes on any worker).

Health checks run here, once per node (engine/runtime/health.py): the prober writes each
checked endpoint's health into the shared `Endpoints` mapped before the first fork
(engine/_fast/endpoints.pyx), which every worker's balancers read; it follows each applied
config.

SIGTERM or SIGINT start a drain: each worker stops accepting, finishes its in-flight requests (up
to the drain deadline) and exits; the supervisor exits 0 once all have.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import os
import signal
import socket
import sys
import time

from engine._fast import debug
from engine._fast.endpoints import Endpoints
from engine._fast.limiter import SharedBuckets
from engine._fast.stats import Stats
from engine.runtime.admin import AdminServer, SupervisorController
from engine.runtime.channel import read_message, write_message
from engine.runtime.health import HealthChecker
from engine.filters.loader import FilterModules
from engine.runtime.sockets import check_bindable, why_not
from engine.runtime.worker import run_worker

log = logging.getLogger("sluice")

RESTART_DELAY = 0.5          # seconds before restarting a worker that died young
KILL_GRACE = 5.0             # after the drain deadline, SIGKILL workers still alive
APPLY_TIMEOUT = 30.0         # a worker that has not acknowledged a snapshot by then is stuck


class WorkerHandle:
    def __init__(self, slot: int, pid: int, chan: socket.socket):
        self.slot = slot
        self.pid = pid
        self.chan = chan
        self.writer: asyncio.StreamWriter | None = None
        self.version: str | None = None      # what it acknowledged last
        self.ready = False
        self.failure: str | None = None      # why it could not start (its `failed` message)
        self.started = time.monotonic()
        self.pending: asyncio.Future | None = None


class Supervisor:
    def __init__(self, config, *, workers: int, drain_timeout: float = 30.0,
                 access_log_path: str | None = None, bucket_slots: int = 65536,
                 source: str = "<config>", watch: str | None = None,
                 load_source=None, filter_modules=(), filter_directory: str | None = None):
        """`load_source()` re-reads the config source (file) and returns (config, source name);
        it raises ConfigError/SnapshotError for a bad one. `watch` is the path to watch.
        `filter_modules` adds modules to the filter allow list (`--filter-module`), which is
        fixed here: the modules `config` names plus these; they are found in
        `filter_directory` (the config file's) before sys.path."""
        from engine.policy.snapshot import load_snapshot, snapshot_of

        self.snapshot_of = snapshot_of
        self.load_snapshot = load_snapshot
        self.config = config
        self.source = source
        header, self.snapshot = snapshot_of(config, source)
        self.digest = header.sha256      # of the content validated: what workers check
        self.version = header.config_version
        self.filter_modules = FilterModules.at_start(config, filter_modules,
                                                     directory=filter_directory)
        # one thread: validations run one at a time, in the order they came
        self.validator = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="sluice-validate")
        self.nworkers = max(1, workers)
        self.drain_timeout = drain_timeout
        self.access_log_path = access_log_path or config.access_log.path
        self.access_log_from = f"--access-log {access_log_path}" if access_log_path else None
        self.buckets = SharedBuckets(bucket_slots)
        self.stats = Stats(max_workers=max(64, self.nworkers))
        # node-wide endpoint health and ejections, indexed by the stats' endpoint slots
        self.endpoints = Endpoints(self.stats.max_endpoints)
        self.health: HealthChecker | None = None      # the prober (engine/runtime/health.py)
        debug.share(max(64, self.nworkers))    # debug build: live objects per worker
        self.admin: AdminServer | None = None
        self.handles: dict[int, WorkerHandle] = {}    # pid -> handle
        self.starting = True         # until every first worker is ready (or one failed)
        self.stopping = False
        self.status = 0              # what run() returns once the workers are gone
        self.loop = None
        self.done = None
        self.watch_path = watch
        self.watch_digest = _digest(watch) if watch else None   # of what was just loaded
        self.load_source = load_source
        self.reload_lock: asyncio.Lock | None = None
        self.last_rejection: dict | None = None
        self.reloads = {"applied": 0, "rejected": 0}   # sluice_reloads_total{result}
        self.validating: list[dict] = []     # configs being checked now (for /config_dump)
        self.applied_at = time.time()
        self.tls_expiry: dict[tuple[str, str], float] = {}   # (listener, file) -> notAfter
        self.tls_reloads = {"applied": 0, "rejected": 0}     # sluice_tls_reloads_total{result}
        self.tls_watch_restart: asyncio.Event | None = None
        self.tls_files: list[str] = []          # the TLS files watched (of the config served)

    # --- lifecycle ----------------------------------------------------------------------------

    def run(self) -> int:
        import uvloop

        for lst in self.config.listeners:
            try:
                check_bindable(lst.address.host, lst.address.port)
            except OSError as exc:
                log.error("listener %s: cannot listen on %s: %s", lst.name, lst.address,
                          why_not(exc))
                return 1
        self.loop = loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        self.done = loop.create_future()
        self.reload_lock = asyncio.Lock()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.shutdown)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self._sighup()))
        loop.add_signal_handler(signal.SIGUSR1, self.reopen_logs)
        try:
            return loop.run_until_complete(self._main())
        finally:
            self.validator.shutdown(wait=False, cancel_futures=True)
            loop.close()

    async def _main(self) -> int:
        # the admin API first, so that /ready says 503 while the workers start
        try:
            self.admin = AdminServer.for_config(SupervisorController(self), self.config.admin)
            await self.admin.start()
        except (OSError, ValueError) as exc:
            log.error("admin: cannot listen on %s: %s", self.config.admin.address,
                      getattr(exc, "strerror", None) or exc)
            return 1
        try:
            return await self._serve()
        finally:
            await self.admin.close()

    async def _serve(self) -> int:
        watcher = None
        if self.watch_path:
            # before the workers: a change made as soon as we serve must not be missed
            watcher = self.loop.create_task(self._watch())
            await asyncio.sleep(0.05)
        tls_watcher = self._tls_start()
        self.health = HealthChecker(self.loop, self.stats, self.endpoints)
        self.health.apply(self.config)
        results = await asyncio.gather(*(self.spawn(slot) for slot in range(self.nworkers)))
        self.starting = False
        failures = [r for r in results if r is not None]
        if self.stopping:
            pass                 # SIGTERM while starting: a drain like any other
        elif failures:
            log.error("%s", failures[0])      # one line, however many workers failed alike
            self.shutdown(status=1)
        else:
            addrs = ", ".join(f"{l.name}={'https' if l.tls else 'http'}://{l.address}"
                              for l in self.config.listeners)
            log.info("sluice serving %s with %d worker(s), snapshot %s", addrs, self.nworkers,
                     self.version)
        status = await self.done
        if watcher is not None:
            watcher.cancel()
        tls_watcher.cancel()
        self.health.close()
        return status

    def spawn(self, slot: int) -> "asyncio.Future[str | None]":
        """Fork worker `slot`; the future is None once it is ready, else why it is not."""
        parent, child = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # child: leave the supervisor's loop and the other channels behind
            parent.close()
            for h in self.handles.values():
                h.chan.close()
            if self.admin is not None:
                self.admin.close_in_child()
            if self.health is not None:
                self.health.close_in_child()
            status = 1
            try:
                signal.set_wakeup_fd(-1)
                asyncio.events._set_running_loop(None)
                status = run_worker(self.snapshot, self.digest, self.buckets,
                                    self.access_log_path, self.drain_timeout, child, self.stats,
                                    slot, self.filter_modules, self.endpoints)
            except BaseException:
                logging.getLogger("sluice.worker").exception("worker crashed")
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        child.close()
        handle = WorkerHandle(slot, pid, parent)
        self.handles[pid] = handle
        pidfd = os.pidfd_open(pid)
        self.loop.add_reader(pidfd, self._exited, pidfd, pid)
        ready = self.loop.create_future()
        self.loop.create_task(self._listen(handle, ready))
        return ready

    async def _listen(self, handle: WorkerHandle, ready: asyncio.Future) -> None:
        """Read one worker's channel: its ready (or failed) message, then acks and nacks of
        snapshots. This task owns the channel and closes it once the worker has closed its end
        (it exited): a worker that fails at once may be reaped (`_exited`) before this task
        even starts, and must still be reported."""
        writer = None
        try:
            reader, writer = await asyncio.open_connection(sock=handle.chan)
            handle.writer = writer
            while True:
                msg = await read_message(reader)
                if msg is None:
                    return
                self._message(handle, ready, msg)
        finally:
            ready.done() or ready.set_result(
                handle.failure or f"worker {handle.pid} exited before it was ready")
            if handle.pending is not None and not handle.pending.done():
                handle.pending.set_result((False, "worker exited"))
            if writer is not None:
                writer.close()
            handle.chan.close()

    def _message(self, handle: WorkerHandle, ready: asyncio.Future, msg: dict) -> None:
        op = msg.get("op")
        if op == "ready":
            handle.ready = True
            handle.version = msg.get("version")
            ready.done() or ready.set_result(None)
            if handle.version != self.version and not self.stopping:
                # it was forked before a reload finished: bring it up to date
                self.loop.create_task(self._send_current(handle))
        elif op == "failed":
            where = msg.get("where")
            if where == "access_log.path" and self.access_log_from:
                prefix = f"{self.access_log_from}: "       # the command line's, not the file's
            else:
                prefix = f"{self.source}: {where}: " if where else "a worker cannot start: "
            handle.failure = prefix + str(msg.get("reason"))
            ready.done() or ready.set_result(handle.failure)
        elif op in ("ack", "nack"):
            if op == "ack":
                handle.version = msg.get("version")
            if handle.pending is not None and not handle.pending.done():
                handle.pending.set_result((op == "ack", msg.get("error")))

    async def _send_current(self, handle: WorkerHandle) -> None:
        async with self.reload_lock:
            if handle.version != self.version and handle.pid in self.handles:
                await self._push(handle, self.snapshot, self.digest, self.version)

    async def _push(self, handle: WorkerHandle, snapshot: bytes, digest: str, version: str):
        """Send a validated snapshot to one worker: its bytes and `digest`, the sha256 of the
        content validated here, which the worker checks instead of validating it again."""
        handle.pending = self.loop.create_future()
        write_message(handle.writer, apply_message(snapshot, digest, version))
        try:
            return await asyncio.wait_for(handle.pending, APPLY_TIMEOUT)
        except asyncio.TimeoutError:
            return False, "no answer within %ds" % APPLY_TIMEOUT

    def _exited(self, pidfd: int, pid: int) -> None:
        self.loop.remove_reader(pidfd)
        os.close(pidfd)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            status = 0
        handle = self.handles.pop(pid, None)
        if handle is None:
            return
        self.stats.release_worker(handle.slot)      # its channel: _listen closes it
        if self.stopping:
            if not self.handles and not self.done.done():
                self.done.set_result(self.status)
            return
        if self.starting and not handle.ready:
            return      # the start failed: _serve reports it and stops (see the module docstring)
        if handle.failure is not None:
            log.error("worker %d (slot %d) exited: %s; restarting", pid, handle.slot,
                      handle.failure)
        else:
            log.warning("worker %d (slot %d) exited with status %s; restarting", pid,
                        handle.slot, os.waitstatus_to_exitcode(status))
        lived = time.monotonic() - handle.started
        self.loop.call_later(RESTART_DELAY if lived < 1.0 else 0.0, self._respawn, handle.slot)

    def _respawn(self, slot: int) -> None:
        if not self.stopping:
            self.spawn(slot)

    def shutdown(self, status: int = 0) -> None:
        """Drain every worker; `run` returns `status` once they are gone."""
        if self.stopping:
            return
        self.stopping = True
        self.status = status
        if status == 0:
            log.info("draining %d worker(s)", len(self.handles))
        for pid in list(self.handles):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if not self.handles:
            self.done.done() or self.done.set_result(self.status)
            return
        self.loop.call_later(self.drain_timeout + KILL_GRACE, self._kill_stragglers)

    def reopen_logs(self) -> None:
        """SIGUSR1 (logrotate's postrotate): every worker reopens its access log file."""
        for pid in list(self.handles):
            try:
                os.kill(pid, signal.SIGUSR1)
            except ProcessLookupError:
                pass

    def _kill_stragglers(self) -> None:
        for pid in list(self.handles):
            log.error("worker %d did not drain in time: killing it", pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # --- reload -------------------------------------------------------------------------------

    async def reload(self, why: str) -> tuple[bool, list[str]]:
        """Re-read the config source and apply it (SIGHUP, file change)."""
        if self.load_source is None:
            return False, ["no config source to reload"]

        def prepare():
            config, source = self.load_source()
            return self._prepare(config, source)

        return await self._apply_prepared(prepare, why)

    async def apply_snapshot(self, data: bytes, why: str = "admin") -> tuple[bool, list[str]]:
        """Apply snapshot bytes (PUT /snapshot): validated here before any worker sees them."""
        source = "admin PUT /snapshot"
        return await self._apply_prepared(
            lambda: self._prepare(self.load_snapshot(data)[1], source), why)

    async def apply_config(self, config, source: str, why: str) -> tuple[bool, list[str]]:
        return await self._apply_prepared(lambda: self._prepare(config, source), why)

    async def _apply_prepared(self, prepare, why: str) -> tuple[bool, list[str]]:
        checking = {"why": why, "since": time.time()}
        self.validating.append(checking)
        try:
            # off this loop: /ready and worker restarts go on while a big config is checked
            config, source, header, snapshot = await self.loop.run_in_executor(
                self.validator, prepare)
        except Exception as exc:   # ConfigError / SnapshotError: every problem, one per line
            return self._reject(why, _problems(exc))
        finally:
            self.validating.remove(checking)
        version = header.config_version
        async with self.reload_lock:
            if version == self.version:
                return True, []
            current = {str(l.address) for l in self.config.listeners}
            for lst in config.listeners:
                if str(lst.address) not in current:
                    try:
                        check_bindable(lst.address.host, lst.address.port)
                    except OSError as exc:
                        return self._reject(why, [f"{source}: listeners: cannot listen on "
                                                  f"{lst.address}: {why_not(exc)}"])
            handles = [h for h in self.handles.values() if h.ready]
            results = await asyncio.gather(*(self._push(h, snapshot, header.sha256, version)
                                             for h in handles))
            failed = [f"worker {h.pid}: {err}" for h, (ok, err) in zip(handles, results) if not ok]
            if failed:
                # the workers that applied it keep serving it; report which did not
                log.error("snapshot %s (%s) refused by workers: %s", version, why, "; ".join(failed))
                self.last_rejection = {"version": version, "reason": failed, "source": source,
                                       "time": time.time()}
                self.reloads["rejected"] += 1
                return False, failed
            self.config, self.snapshot, self.version, self.source = config, snapshot, version, source
            self.digest = header.sha256
            self.applied_at = time.time()
            self.reloads["applied"] += 1
            self._tls_applied(config)
            if self.health is not None:      # None only before the first fork
                self.health.apply(config)
            log.info("applied snapshot %s from %s (%s)", version, source, why)
            for h in self.handles.values():
                if h.ready and h.version != version and h not in handles:
                    # (re)started during the push, from the config before it: catch up
                    self.loop.create_task(self._send_current(h))
            return True, []

    def _prepare(self, config, source: str):
        """In the validation thread: refuse filter modules off the allow list and encode the
        validated config as the snapshot the workers get. Raises ConfigError."""
        from engine.policy.errors import ConfigError, Problem

        refused = self.filter_modules.problems(config)
        if refused:
            raise ConfigError([Problem(source, p.where, p.reason) for p in refused])
        header, snapshot = self.snapshot_of(config, source)
        return config, source, header, snapshot

    def _reject(self, why: str, problems: list[str]) -> tuple[bool, list[str]]:
        for p in problems:
            log.error("reload (%s) refused: %s", why, p)
        self.last_rejection = {"reason": problems, "source": why, "time": time.time()}
        self.reloads["rejected"] += 1
        return False, problems

    async def _watch(self) -> None:
        """Reload when the watched file changes: written in place, replaced by an atomic rename,
        or swapped by Kubernetes' ConfigMap `..data` symlink (so the directory is watched)."""
        from watchfiles import awatch

        path = os.path.abspath(self.watch_path)
        directory = os.path.dirname(path)
        last = self.watch_digest
        async for _ in awatch(directory, debounce=200, step=50, recursive=False):
            digest = _digest(path)
            if digest is None or digest == last:
                continue
            last = digest
            await self.reload("file changed")

    # --- certificates ------------------------------------------------------------------------

    async def _sighup(self) -> None:
        """SIGHUP: reload the config, and the certificates (a file system whose changes the
        watcher cannot see still gets them this way)."""
        await self.reload("SIGHUP")
        await self.reload_tls("SIGHUP")

    def _tls_start(self) -> asyncio.Task:
        """Before the first fork: the TLS listeners' front contexts (engine/policy/tls_server.py:
        made here, inherited by every worker with the same session ticket keys), the expiry
        dates, and the watcher of the certificate files."""
        self._tls_applied(self.config)
        return self.loop.create_task(self._watch_tls())

    def _tls_applied(self, config) -> None:
        """`config` serves now (at start, or a reload applied): fronts for new TLS listeners,
        its certificates' expiry dates, and watch its files (the listeners' and the clusters')."""
        from engine.policy import tls_client, tls_server

        tls_server.prepare(config)
        self.tls_expiry.clear()
        self.tls_expiry.update(tls_server.expiry(config))
        files = sorted({path for _, path in tls_server.files_of(config)}
                       | set(tls_client.files(config.clusters)))
        if files != self.tls_files:
            self.tls_files = files
            if self.tls_watch_restart is not None:
                self.tls_watch_restart.set()     # watch these from now on

    async def _watch_tls(self) -> None:
        """Reload the certificates when a TLS file the config names changes: written in place,
        replaced by a rename, or swapped by a Kubernetes Secret's `..data` symlink (so the
        directories are watched, and a change is a change of the files' content)."""
        from watchfiles import awatch

        while True:
            restart = self.tls_watch_restart = asyncio.Event()
            files = self.tls_files
            if not files:
                await restart.wait()
                continue
            last = {path: _digest(path) for path in files}
            directories = sorted({os.path.dirname(path) for path in files})
            try:
                async for _ in awatch(*directories, debounce=200, step=50, recursive=False,
                                      stop_event=restart):
                    now = {path: _digest(path) for path in files}
                    if now != last:
                        last = now
                        await self.reload_tls("certificate file changed")
            except (OSError, RuntimeError) as exc:      # a directory went away: look again soon
                log.warning("cannot watch the certificate files: %s", exc)
                await asyncio.sleep(1.0)

    async def reload_tls(self, why: str) -> tuple[bool, list[str]]:
        """Re-read the certificate, key and CA files of the current config in every worker.
        The files are checked here first: one that cannot be used (missing, not PEM, a key that
        is not its certificate's) is refused with its path, like a refused snapshot, and the
        old certificates go on serving."""
        from engine.policy import tls_client, tls_server
        from engine.policy.errors import render_path

        config = self.config
        if not tls_server.files_of(config) and not tls_client.files(config.clusters):
            return True, []
        found = await self.loop.run_in_executor(
            self.validator, lambda: tls_server.problems(config) + tls_client.problems(config))
        if found:
            return self._tls_refused(why, [f"{self.source}: {render_path(loc)}: {reason}"
                                           for loc, reason in found])
        async with self.reload_lock:
            if self.config is not config:
                return True, []           # a config reload meanwhile: its link read the files
            handles = [h for h in self.handles.values() if h.ready]
            results = await asyncio.gather(*(self._push_tls(h) for h in handles))
            failed = [f"worker {h.pid}: {err}" for h, (ok, err) in zip(handles, results) if not ok]
            if failed:
                return self._tls_refused(why, failed)
            self.tls_reloads["applied"] += 1
            self._tls_applied(config)
            log.info("reloaded the certificates (%s)", why)
            return True, []

    async def _push_tls(self, handle: WorkerHandle):
        handle.pending = self.loop.create_future()
        write_message(handle.writer, {"op": "tls_reload", "version": self.version})
        try:
            return await asyncio.wait_for(handle.pending, APPLY_TIMEOUT)
        except asyncio.TimeoutError:
            return False, "no answer within %ds" % APPLY_TIMEOUT

    def _tls_refused(self, why: str, problems: list[str]) -> tuple[bool, list[str]]:
        for p in problems:
            log.error("certificate reload (%s) refused, the old certificates serve on: %s",
                      why, p)
        self.last_rejection = {"reason": problems, "source": f"certificates ({why})",
                               "time": time.time()}
        self.tls_reloads["rejected"] += 1
        return False, problems

    # --- what the admin API reads -------------------------------------------------------------

    def ready(self) -> bool:
        return (not self.stopping and len(self.handles) == self.nworkers
                and all(h.ready and h.version == self.version for h in self.handles.values()))

    def worker_versions(self) -> dict[int, str | None]:
        return {h.pid: h.version for h in self.handles.values()}


def _digest(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def apply_message(snapshot: bytes, digest: str, version: str) -> dict:
    """The `apply` message of a validated snapshot (engine/runtime/channel.py)."""
    return {"op": "apply", "version": version, "snapshot": snapshot, "digest": digest}


def _problems(exc: Exception) -> list[str]:
    problems = getattr(exc, "problems", None)
    if problems:
        return [str(p) for p in problems]
    return [str(exc)]

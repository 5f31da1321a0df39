"""One worker: a uvloop event loop serving every listener of the current Tables.

Workers are forked by the supervisor (`supervisor.py`); the same `WorkerServer` also runs inside
a caller's own loop for embedded use (`engine.Proxy`). A worker owns nothing the others need:
listeners are its own SO_REUSEPORT sockets, pools are per worker, and the only shared state
(rate-limit buckets, stats, endpoint health: engine/_fast/endpoints.pyx) lives in shared memory
the supervisor mapped before forking.

One config pipeline: a worker serves only what the supervisor validated, and always receives
it the same way, as snapshot bytes plus the sha256 of the content the supervisor validated (at
start, as arguments of the fork; at reload, in an `apply` message). `served_config` checks the
content against that digest and builds the Config from it without validating it again
(engine/policy/snapshot.py, `trusted_config`); the embedded `engine.Proxy` goes through the same
function. A digest mismatch is refused like a bad snapshot: the old config stays, and the
supervisor hears why in the `nack`.

Apply (hot reload): the supervisor has validated the config already (once, off its loop); filter
modules are imported only from the allow list fixed at start (engine/filters/loader.py). New
Tables are linked beside the old ones (pools of unchanged clusters are carried over by `link`),
new listener sockets are opened first, then one reference swaps. A TLS listener keeps its server
(and its SSLContext, whose certificates link has just re-read) unless it switched between
plaintext and TLS or its TLS shape changed (engine/policy/tls_server.py); then it gets a new
server like a listener that moved.
Certificate reload (`tls_reload` from the supervisor, which watches the files): the files are
read again and new handshakes get the new certificates; nothing else changes, and a file that
cannot be used leaves the old certificates serving (the answer is a nack naming it). Clusters with
`tls` are relinked then, which gives a cluster whose files changed new pools (new connections
present and verify with the new files) and leaves every other pool as it was.
Exchanges in flight keep the route and pool objects they started with; pools the new tables no
longer use close their idle connections at once and the rest as their exchanges end. If
anything fails before the swap, nothing changed.

Start: a forked worker that fails before it serves (an access log it cannot open, a filter it
cannot import or build, a listener it cannot bind) sends the supervisor one `failed` message
(`where`, `reason`) instead of `ready` and exits 1; the supervisor reports it once and exits 1
(the traceback is logged at debug level only).

Overload: from start to stop a `LoopMonitor` (engine/runtime/overload.py) samples how late this
loop runs and sets `worker.overloaded`, which sheds new requests; it reads the threshold
(`overload.max_loop_delay`) from the tables being served at each sample, so a reload changes it
with the swap and nothing here.

Drain (SIGTERM, or `stop(drain=...)`): close the listening sockets, tell every connection to
close after its current response, and wait until none is left or the deadline passes.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import signal
import socket

from engine._fast import debug
from engine._fast.proxy import Worker, reseed_request_ids
from engine.filters.base import FilterContext
from engine.policy.link import link
from engine.runtime.accesslog import open_access_log
from engine.runtime.channel import read_message, write_message
from engine.runtime.overload import LoopMonitor
from engine.runtime.sockets import BACKLOG, listen_socket

log = logging.getLogger("sluice.worker")

SWEEP_INTERVAL = 1.0
HANDSHAKE_LOG_INTERVAL = 10.0


class WorkerServer:
    def __init__(self, loop, config, buckets, access_log_path: str = "stderr",
                 version: str | None = None, filters: dict | None = None, stats=None,
                 stats_slot: int = 0, filter_modules=None, endpoints=None):
        self.loop = loop
        self.endpoints = endpoints              # node-wide endpoint health (the supervisor's)
        self.buckets = buckets
        self.stats = stats
        self.stats_slot = stats_slot
        self.config = config
        self.version = version
        self.filters = filters
        self.filter_modules = filter_modules    # engine.filters.loader.FilterModules
        # opened once per worker: a reload does not move it (restart, or SIGUSR1 to reopen)
        self.access_log = open_access_log(loop, access_log_path, config.access_log.format)
        self.worker = Worker(loop, link(config, buckets, version=version, filters=filters,
                                        stats=stats, filter_modules=filter_modules,
                                        endpoints=endpoints),
                             self.access_log, stats, stats_slot)
        if stats is not None:
            stats.set_version(stats_slot, version)
            stats.beat(stats_slot)
        self.worker.filter_context = FilterContext
        self.worker.log_error = log.error
        self.servers: dict[str, tuple[str, object]] = {}   # listener name -> (address, server)
        self.server_ssl: dict[str, object] = {}          # listener name -> its server's SSLContext
        self.retired: list = []                            # pools of earlier tables still busy
        self.sweeper = None
        # overload shedding: samples this loop's lag, sets worker.overloaded (overload.py)
        self.monitor = LoopMonitor(loop, self.worker, stats, stats_slot)
        self.handshake_log: dict[str, list] = {}           # listener -> [failures, last line at]
        from engine.policy import tls_server

        tls_server.handshake_failed = self._handshake_failed

    async def _open(self, lst, tables=None) -> tuple[str, object]:
        """A listening server for `lst` (a model.Listener), with the SSLContext `tables` link
        made for it when it terminates TLS."""
        sock = listen_socket(lst.address.host, lst.address.port)
        ssl_context = (tables or self.worker.tables).listeners[lst.name].ssl_context
        tls = {}
        if ssl_context is not None:
            # a handshake counts towards the header timeout: a client that connects and never
            # finishes one is dropped as one that never sends a head would be
            tls = {"ssl": ssl_context,
                   "ssl_handshake_timeout": lst.timeouts.header or None}
        # uvloop listens again with create_server's backlog (default 100): pass ours
        server = await self.loop.create_server(self.worker.protocol_factory(lst.name), sock=sock,
                                               backlog=BACKLOG, **tls)
        return str(lst.address), server

    def _tls_changed(self, name: str, tables) -> bool:
        """Whether listener `name` needs a new server for `tables`: it switched between
        plaintext and TLS, or its TLS shape changed (a new front context, see
        engine/policy/tls_server.py). New certificates alone do not."""
        return self.server_ssl.get(name) is not tables.listeners[name].ssl_context

    def _handshake_failed(self, listener: str, error) -> None:
        """A client's TLS handshake failed (engine/policy/tls_server.py): count it, and log it at
        most once per HANDSHAKE_LOG_INTERVAL per listener (a scanner must not flood the log)."""
        if self.stats is not None:
            self.stats.count_event_py(self.stats_slot, "tls_handshake_failed")
        seen = self.handshake_log.setdefault(listener, [0, float("-inf")])
        seen[0] += 1
        now = self.loop.time()
        if now - seen[1] >= HANDSHAKE_LOG_INTERVAL:
            more = f" ({seen[0] - 1} more since the last line)" if seen[0] > 1 else ""
            log.warning("listener %s: TLS handshake failed: %s%s", listener,
                        error.reason or error, more)
            seen[0], seen[1] = 0, now

    def reload_tls(self) -> int:
        """A certificate reload: re-read the TLS files of the config being served and switch new
        handshakes to them. Raises engine.policy.pem.PemError (and changes nothing) when a file
        cannot be used; returns how many listeners were reloaded."""
        from engine.policy import tls_server

        return tls_server.reload_all(self.config, dict(self.server_ssl))

    async def start(self) -> None:
        for lst in self.config.listeners:
            self.servers[lst.name] = await self._open(lst)
            self.server_ssl[lst.name] = self.worker.tables.listeners[lst.name].ssl_context
        self.sweeper = self.loop.call_later(SWEEP_INTERVAL, self._sweep)
        self.monitor.start()

    def _sweep(self) -> None:
        self.worker.sweep_pools()
        if self.stats is not None:
            self.stats.beat(self.stats_slot)
        still = []
        for pool in self.retired:
            pool.close_idle()
            if pool.total > 0:
                still.append(pool)
        self.retired = still
        self.sweeper = self.loop.call_later(SWEEP_INTERVAL, self._sweep)

    async def apply(self, config, version: str | None = None) -> None:
        """Serve `config` from the next request on; raises (and changes nothing) on failure."""
        old = self.worker.tables
        # Linking 10,000 routes takes tens of milliseconds of pure Python: done in a thread, the
        # event loop goes on serving (it gets the GIL back every switch interval) instead of
        # stalling for the whole build. Filter constructors therefore run in that thread.
        tables = await self.loop.run_in_executor(None, functools.partial(
            link, config, self.buckets, previous=old, version=version, filters=self.filters,
            stats=self.stats, filter_modules=self.filter_modules, endpoints=self.endpoints))
        wanted = {lst.name: lst for lst in config.listeners}
        opened: dict[str, tuple[str, object]] = {}
        try:
            for name, lst in wanted.items():
                current = self.servers.get(name)
                if current is None or current[0] != str(lst.address) \
                        or self._tls_changed(name, tables):
                    opened[name] = await self._open(lst, tables)
        except OSError:
            for _, server in opened.values():
                server.close()
            raise
        self.worker.swap(tables)
        for name, (_, server) in list(self.servers.items()):
            if name not in wanted or name in opened:
                server.close()
                del self.servers[name]
        self.servers.update(opened)
        self.server_ssl = {name: self.server_ssl[name] if name not in opened
                           else tables.listeners[name].ssl_context for name in self.servers}
        for key, pool in old.pools.items():
            if tables.pools.get(key) is not pool:
                pool.close_idle()
                if pool.total > 0:
                    self.retired.append(pool)
        retired = [self.config]
        self.config = config                    # first: the thread must hold the last reference
        if retired[0] is not config:            # (a certificate reload applies the same one)
            self._retire_config(retired)
        del retired
        self.version = version
        if self.stats is not None:
            self.stats.set_version(self.stats_slot, version)

    def _retire_config(self, holder: list) -> None:
        """Free the config just replaced (the one object in `holder`) a route at a time, in a
        thread. Freed at once, a 10,000-route Config is a single deallocation of a few hundred
        thousand objects that holds the GIL, on this loop, for 20 ms and more
        (bench.reload_stall); freed piecewise from a Python loop, the event loop gets the GIL
        back every switch interval."""
        self.loop.run_in_executor(None, _free_piecewise, holder)

    async def stop(self, drain: float = 30.0) -> None:
        """Stop accepting, let in-flight exchanges finish (up to `drain` seconds), close."""
        for _, server in self.servers.values():
            server.close()
        if self.sweeper is not None:
            self.sweeper.cancel()
        self.monitor.stop()
        done = self.loop.create_future()
        self.worker.on_idle = lambda: done.done() or done.set_result(None)
        self.worker.drain()
        if self.worker.active:
            try:
                await asyncio.wait_for(asyncio.shield(done), drain)
            except asyncio.TimeoutError:
                log.warning("drain deadline passed with %d connections open", self.worker.active)
        self.worker.close()              # its timeout sweep: nothing is left to time out
        for pool in list(self.worker.tables.pools.values()) + self.retired:
            pool.close_idle()
        if self.access_log is not None:
            self.access_log.close()
        for _, server in self.servers.values():
            await server.wait_closed()


def raise_nofile_limit() -> None:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (nginx's
    worker_rlimit_nofile): the usual soft default of 1024 descriptors is about 500 proxied
    connections. Only the binary's workers do this; an embedding program owns its limits."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def _die_with_parent() -> None:
    """A worker whose supervisor was SIGKILLed must not keep serving an orphaned config."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def served_config(snapshot: bytes, digest: str, label: str = "<snapshot>"):
    """(Config, config version) of snapshot bytes validated once already, by whoever vouches
    for `digest` (the sha256 of the content it validated): the one way a config reaches a
    WorkerServer, in a forked worker at start and at reload, and in engine.Proxy. Raises
    SnapshotError (the digest does not match, or the content is not of this build's shape)."""
    from engine.policy.snapshot import trusted_config

    if not isinstance(snapshot, bytes) or not isinstance(digest, str):
        from engine.policy.snapshot import SnapshotError

        raise SnapshotError.one(label, "expected snapshot bytes and the digest they were "
                                       "validated with")
    header, config = trusted_config(snapshot, digest, label)
    return config, header.config_version


def received_config(msg: dict):
    """The Config of an `apply` message: `snapshot` bytes and the `digest` the supervisor
    validated (see the module docstring)."""
    return served_config(msg.get("snapshot"), msg.get("digest"),
                         "snapshot from the supervisor")[0]


async def _control(server: WorkerServer, chan: socket.socket, stopping: asyncio.Future) -> None:
    """Serve the supervisor's channel: say we are ready, then apply snapshots as they come."""
    reader, writer = await asyncio.open_connection(sock=chan)
    write_message(writer, {"op": "ready", "version": server.version, "pid": os.getpid()})
    while True:
        msg = await read_message(reader)
        if msg is None:          # the supervisor is gone
            stopping.done() or stopping.set_result(None)
            return
        if msg.get("op") == "apply":
            version = msg.get("version")
            gc_was_enabled = gc.isenabled()
            gc.disable()       # see _settle_heap
            try:
                config = await asyncio.get_running_loop().run_in_executor(
                    None, received_config, msg)
                await server.apply(config, version)
            except Exception as exc:   # reported to the supervisor, which keeps the old snapshot
                log.exception("worker %d refused snapshot %s", os.getpid(), version)
                write_message(writer, {"op": "nack", "version": version, "error": str(exc)})
            else:
                write_message(writer, {"op": "ack", "version": version})
            finally:
                _settle_heap(gc_was_enabled)
        elif msg.get("op") == "tls_reload":
            write_message(writer, await _reload_tls(server, msg.get("version")))


async def _reload_tls(server: WorkerServer, version) -> dict:
    """A `tls_reload` message (the supervisor saw a certificate file change and checked the
    files): the answer is ack, or nack with the file at fault while the old certificates go on.
    Clusters with `tls` are relinked (the same config): a cluster whose files changed gets new
    pools with a new client context, the others keep theirs (engine/policy/tls_client.py)."""
    try:
        await asyncio.get_running_loop().run_in_executor(None, server.reload_tls)
        if any(cluster.tls is not None for cluster in server.config.clusters):
            await server.apply(server.config, server.version)
    except Exception as exc:
        log.error("worker %d: certificate reload refused: %s", os.getpid(), exc)
        return {"op": "nack", "version": version, "error": str(exc)}
    return {"op": "ack", "version": version}


def start_failure(exc: Exception, access_log_path: str) -> dict:
    """What made a worker fail before serving, as the `failed` message tells the supervisor:
    `where` (a config field, when one is to blame) and `reason`, one line each."""
    from engine.filters.loader import FilterModuleError

    if isinstance(exc, FilterModuleError):
        return {"where": exc.where, "reason": exc.reason}
    if isinstance(exc, OSError) and exc.filename is not None \
            and os.fspath(exc.filename) == access_log_path:
        return {"where": "access_log.path",
                "reason": f"cannot open the access log {access_log_path}: "
                          f"{exc.strerror or exc}"}
    return {"where": None, "reason": f"{type(exc).__name__}: {exc}"}


async def _say_failed(chan: socket.socket, failure: dict) -> None:
    try:
        _, writer = await asyncio.open_connection(sock=chan)
        write_message(writer, {"op": "failed", "pid": os.getpid(), **failure})
        await writer.drain()
        writer.close()
    except OSError:           # the supervisor is gone: nobody to tell
        pass


def _free_piecewise(holder: list) -> None:
    config = holder.pop()
    parts = [*config.routes, *config.clusters, *config.listeners]
    del config                  # the Config itself, its tuples; each part lives on in `parts`
    while parts:
        parts.pop()


def _settle_heap(enable: bool) -> None:
    """After an apply: move what is alive now (the config and tables being served) out of the
    cyclic collector's reach (gc.freeze), then let it run again. A config of 10,000 routes is
    about a million objects; without this the next full collection walks all of them, finds
    nothing to free and stalls serving for hundreds of milliseconds (bench.reload_stall). The
    cost: an object frozen here that later becomes garbage *in a reference cycle* is never
    collected; configs and tables are trees, which reference counting frees."""
    gc.freeze()
    if enable:
        gc.enable()


def run_worker(snapshot: bytes, digest: str, buckets, access_log_path: str, drain_timeout: float,
               chan: socket.socket, stats=None, slot: int = 0, filter_modules=None,
               endpoints=None) -> int:
    """Entry point of a forked worker process; returns its exit status. It serves `snapshot`,
    which the supervisor validated (`digest`: see the module docstring)."""
    import uvloop

    reseed_request_ids()
    _die_with_parent()
    if stats is not None:
        stats.attach_worker(slot)
    debug.attach_worker(slot)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the supervisor turns ^C into SIGTERM
    signal.signal(signal.SIGHUP, signal.SIG_IGN)   # reloads come from the supervisor
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # until the access log can be reopened
    raise_nofile_limit()
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    stopping = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, lambda: stopping.done() or stopping.set_result(None))
    try:
        gc_was_enabled = gc.isenabled()
        gc.disable()                     # see _settle_heap (main() settles it)
        try:
            config, version = served_config(snapshot, digest, "snapshot from the supervisor")
        finally:
            if gc_was_enabled:
                gc.enable()
        server = WorkerServer(loop, config, buckets, access_log_path, version, stats=stats,
                              stats_slot=slot, filter_modules=filter_modules,
                              endpoints=endpoints)
        loop.run_until_complete(server.start())
    except Exception as exc:
        # before serving: the supervisor reports it once (for every worker) and exits 1
        log.debug("worker %d cannot start", os.getpid(), exc_info=True)
        loop.run_until_complete(_say_failed(chan, start_failure(exc, access_log_path)))
        loop.close()
        return 1
    if server.access_log is not None:
        loop.add_signal_handler(signal.SIGUSR1, server.access_log.reopen)

    async def main() -> None:
        _settle_heap(gc.isenabled())     # the first config, as after every apply
        control = loop.create_task(_control(server, chan, stopping))
        await stopping
        await server.stop(drain_timeout)
        control.cancel()

    try:
        loop.run_until_complete(main())
        report_live_objects(loop)
    except OSError as exc:
        log.error("worker %d: %s", os.getpid(), exc)
        return 1
    finally:
        loop.close()
    return 0


LEAK_WAIT = 2.0       # after a drain, how long the loop may take to release what it closed


def report_live_objects(loop) -> dict[str, int]:
    """Debug build, after the drain: whatever this worker still holds is a leak. The drain
    closed the sockets, but their protocol objects go only once the loop has run the callbacks
    it scheduled (connection_lost), so run it until the live counts are zero or LEAK_WAIT has
    passed; then log what is left, at error level: one line, which the test suite looks for
    ("live objects at exit"). Returns what is left ({} in a release build)."""
    if not debug.DEBUG_BUILD:
        return {}

    async def settle() -> None:
        deadline = loop.time() + LEAK_WAIT
        while any(debug.live_objects().values()) and loop.time() < deadline:
            await asyncio.sleep(0.01)
            gc.collect()

    loop.run_until_complete(settle())
    left = {kind: n for kind, n in debug.live_objects().items() if n}
    if left:
        log.error("debug build: worker %d has live objects at exit: %s", os.getpid(),
                  ", ".join(f"{kind}={n}" for kind, n in left.items()))
    return left

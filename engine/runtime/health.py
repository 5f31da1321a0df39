"""Active health checks: the prober, once per node, in the supervisor's event loop.

Why here. N workers probing on their own would send N times the probes and could disagree
about an endpoint. The supervisor already runs an asyncio loop (admin API, reloads), owns the
config every worker serves, and maps the shared memory before it forks: it probes each checked
endpoint once per interval and writes the verdict into `engine._fast.endpoints.Endpoints`, where
every worker's balancer of that cluster sees it on its next pick (a generation counter: see
endpoints.pyx). A worker restarted later maps the same state and starts with the verdicts.

One task per checked endpoint (`_Target`), keyed by its stats slot (`Stats.endpoint_slot`, the
index of the shared records, stable across reloads). `apply(config)` runs at start and after
every applied reload: endpoints that stay keep their task, counts and health (new settings are
picked up at their next probe); new ones start; ones that left (or whose cluster dropped its
health check) stop, and their state is forgotten (health unknown: routable).

The rule of the first verdict. An endpoint nobody has probed yet is `unknown`, and unknown is
routable: a fresh start (or a new endpoint) is never black-holed while the first probes are in
flight, and a cluster whose checks are misconfigured degrades to "no health checks", not to
503s. The first probe decides at once (a pass: healthy; a failure: unhealthy): Envoy too marks
a new host healthy after a single passing check ("during startup, only a single successful
health check is required"), but starts it unhealthy, so until then it gets traffic only through
the panic threshold. After the first verdict it takes `unhealthy_threshold` consecutive failures
to go unhealthy and `healthy_threshold` consecutive passes to come back; an endpoint down at
start leaves the cluster after its first probe, not after three.

A probe. TCP: a connection opens within the timeout. HTTP: a GET of `path` with `host` (default:
the endpoint's host), HTTP/1.1 over a new connection (`connection: close`), TLS when the cluster
has `tls` (its own client context, so the probe verifies the endpoint as requests do); pass when
the status is in one of the `expect` ranges. A refused connection, a timeout (the whole probe:
connect, TLS, answer), a reset, an answer that is not HTTP/1.x (h11 is the parser: garbage is a
`RemoteProtocolError`) are failures with a reason; nothing a peer sends can raise out of a probe.
An `http2` cluster is probed with HTTP/1.1 too (Envoy's default health check codec): use a `tcp`
check for an endpoint that only speaks h2c.

Timing: each endpoint's first probe comes after a random delay within the first interval (at
most 1 s), so a restart does not probe everything in one burst; then one probe per interval,
each wait jittered by up to 10% either way (a fixed period across many sluice nodes lines their
probes up). Probes of one endpoint never overlap (the timeout is at most the interval).

Logging: a line per transition, never per probe: WARNING when an endpoint goes unhealthy (with
the reason of the failure that decided it), INFO when it becomes healthy. The counters of
transitions live in the shared records (/stats/prometheus, /clusters).

Fork safety: a worker forked while a probe is open would inherit its socket and keep the
connection open after the probe closed it; `close_in_child` closes the child's copies (the
supervisor calls it in a new worker, as it does for the admin server's sockets).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket

import h11

from engine._fast.endpoints import HEALTHY, UNHEALTHY
from engine._fast.stats import endpoint_key, monotonic

log = logging.getLogger("sluice.health")

FIRST_PROBE_SPREAD = 1.0     # at most this long before an endpoint's first probe, in seconds
JITTER = 0.1                 # each wait is the interval times 1 +- this
MAX_ANSWER = 16384           # bytes of an answer read before its status line must be complete
SWEEP_INTERVAL = 1.0         # how often expired ejections are lifted (outlier detection)


class _Target:
    """One checked endpoint: what to probe, and its running counts."""

    def __init__(self, slot: int, cluster: str, address, check, tls) -> None:
        self.slot = slot
        self.cluster = cluster
        self.address = address          # engine.policy.addresses.Address
        self.check = check              # model.HealthCheck
        self.tls = tls                  # (ssl.SSLContext, server_hostname) or None
        self.passes = 0                 # consecutive
        self.failures = 0
        self.first = True               # no verdict yet: the first probe decides
        self.task: asyncio.Task | None = None

    @property
    def name(self) -> str:
        return endpoint_key(self.cluster, self.address)


class HealthChecker:
    """Probes the checked endpoints of the config it is given and writes their health into
    `endpoints` (an `engine._fast.endpoints.Endpoints`), indexed by `stats` slots."""

    def __init__(self, loop, stats, endpoints, tls_contexts=None) -> None:
        self.loop = loop
        self.stats = stats
        self.endpoints = endpoints
        self.tls_contexts = tls_contexts        # engine.policy.tls_client.ClientContexts
        self.targets: dict[int, _Target] = {}   # slot -> target
        self.open: set[socket.socket] = set()   # sockets of probes in flight (close_in_child)
        self.sweeper: asyncio.Task | None = None
        self.probes = 0                         # probes sent since start (tests, debugging)
        # probes by endpoint name and result, since start: {name: {"passed": n, "failed": n}}
        self.results: dict[str, dict[str, int]] = {}

    # --- config ------------------------------------------------------------------------------

    def apply(self, config) -> None:
        """Check what `config` asks for from now on (see the module docstring)."""
        wanted: dict[int, tuple] = {}
        contexts = self._tls(config)
        for cluster in config.clusters:
            for ep in cluster.endpoints:
                slot = self.stats.endpoint_slot(endpoint_key(cluster.name, ep.address))
                if cluster.health_check is None:
                    continue
                if slot <= 0:
                    log.warning("cluster %s: endpoint %s is not health checked: the endpoint "
                                "table is full", cluster.name, ep.address)
                    continue
                wanted[slot] = (cluster, ep.address, contexts.get(cluster.name))
        for slot in list(self.targets):
            if slot not in wanted:
                target = self.targets.pop(slot)
                if target.task is not None:
                    target.task.cancel()
                self.endpoints.forget(slot)
        for slot, (cluster, address, tls) in wanted.items():
            target = self.targets.get(slot)
            if target is None:
                target = self.targets[slot] = _Target(slot, cluster.name, address,
                                                      cluster.health_check, tls)
                self.endpoints.forget(slot)      # a returning endpoint starts afresh
                target.task = self.loop.create_task(self._run(target))
            else:
                target.check = cluster.health_check
                target.tls = tls
        if self.sweeper is None:
            self.sweeper = self.loop.create_task(self._sweep())

    def _tls(self, config) -> dict:
        """{cluster name: (SSLContext, server name)} of checked clusters with tls. The probe
        speaks HTTP/1.1, so its context offers http/1.1 by ALPN whatever the cluster's
        protocol; the prober keeps its own contexts (`self.tls_contexts`), so the workers'
        cache is not touched."""
        checked = [c for c in config.clusters if c.tls is not None and c.health_check is not None]
        if not checked:
            return {}
        from engine.policy import tls_client

        if self.tls_contexts is None:
            self.tls_contexts = tls_client.ClientContexts()
        resolved = self.tls_contexts.resolve(
            [c.model_copy(update={"protocol": "http1"}) for c in checked])
        return {c.name: (resolved[c.name][1], c.tls) for c in checked if c.name in resolved}

    def close(self) -> None:
        for target in self.targets.values():
            if target.task is not None:
                target.task.cancel()
        self.targets.clear()
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None

    def close_in_child(self) -> None:
        """In a worker just forked from the supervisor: close our copies of the probes' sockets
        without touching the event loop (see the module docstring)."""
        for sock in list(self.open):
            try:
                if sock.fileno() >= 0:
                    os.close(sock.fileno())
            except OSError:
                pass

    # --- probing -----------------------------------------------------------------------------

    async def _run(self, target: _Target) -> None:
        check = target.check
        await asyncio.sleep(random.uniform(0.0, min(check.interval, FIRST_PROBE_SPREAD)))
        while True:
            started = self.loop.time()
            check = target.check                 # a reload may have changed it
            passed, reason = await self.probe(target)
            self._verdict(target, passed, reason)
            wait = check.interval * random.uniform(1.0 - JITTER, 1.0 + JITTER)
            await asyncio.sleep(max(0.0, started + wait - self.loop.time()))

    def _verdict(self, target: _Target, passed: bool, reason: str) -> None:
        check = target.check
        counts = self.results.setdefault(target.name, {"passed": 0, "failed": 0})
        counts["passed" if passed else "failed"] += 1
        if passed:
            target.passes += 1
            target.failures = 0
            if target.first or target.passes >= check.healthy_threshold:
                self._set(target, HEALTHY, reason)
        else:
            target.failures += 1
            target.passes = 0
            if target.first or target.failures >= check.unhealthy_threshold:
                self._set(target, UNHEALTHY, reason)
        target.first = False

    def _set(self, target: _Target, health: int, reason: str) -> None:
        if not self.endpoints.set_health(target.slot, health):
            return
        if health == UNHEALTHY:
            log.warning("health check: cluster %s endpoint %s is unhealthy: %s (%s)",
                        target.cluster, target.address, reason,
                        "first check" if target.first else
                        f"{target.failures} consecutive failures")
        else:
            log.info("health check: cluster %s endpoint %s is healthy%s", target.cluster,
                     target.address, "" if target.first else
                     f" again ({target.passes} consecutive passes)")

    async def probe(self, target: _Target) -> tuple[bool, str]:
        """One probe of `target`: (passed, why). Never raises (but for cancellation)."""
        check = target.check
        self.probes += 1
        try:
            async with asyncio.timeout(check.timeout):
                return await self._probe(target, check)
        except TimeoutError:
            return False, f"no answer within {_seconds(check.timeout)}"
        except h11.RemoteProtocolError as exc:
            return False, f"not an HTTP/1.x answer ({exc})"
        except OSError as exc:
            return False, _os_reason(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:          # e.g. ssl errors that are not OSError
            return False, f"{type(exc).__name__}: {exc}"

    async def _probe(self, target: _Target, check) -> tuple[bool, str]:
        host, port = target.address.host, target.address.port
        infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM, proto)
        self.open.add(sock)
        writer = None
        try:
            sock.setblocking(False)
            await self.loop.sock_connect(sock, sockaddr)
            if check.tcp is not None:
                return True, "connected"
            tls = {}
            if target.tls is not None:
                from engine.policy.tls_client import server_hostname

                ctx, cluster_tls = target.tls
                tls = {"ssl": ctx, "server_hostname": server_hostname(cluster_tls, host)}
            reader, writer = await asyncio.open_connection(sock=sock, **tls)
            http = check.http
            conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_ANSWER)
            writer.write(conn.send(h11.Request(method="GET", target=http.path, headers=[
                ("host", http.host or _host_header(target.address)),
                ("user-agent", "sluice-health-check"), ("connection", "close")])))
            writer.write(conn.send(h11.EndOfMessage()))
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    conn.receive_data(data)        # b"" is end of stream: h11 then raises
                    continue
                if isinstance(event, h11.InformationalResponse):
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                    if any(low <= status <= high for low, high in http.ranges):
                        return True, f"status {status}"
                    return False, f"status {status}, expected {', '.join(http.expect)}"
                return False, "the connection ended without an answer"
        finally:
            self.open.discard(sock)
            if writer is not None:
                writer.transport.abort()
            sock.close()

    # --- ejections (outlier detection) -------------------------------------------------------

    async def _sweep(self) -> None:
        """Lift ejections whose time is up: workers never read the clock for that (see
        engine/_fast/endpoints.pyx)."""
        names = None
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            lifted = self.endpoints.sweep(monotonic())
            if lifted:
                names = self.stats.endpoint_names()
                for slot in lifted:
                    log.info("outlier detection: endpoint %s is back from ejection",
                             names[slot] if slot < len(names) else slot)


def report(config, stats, endpoints, results: dict | None = None) -> dict:
    """The node-wide endpoint state of `config`'s clusters, as /clusters and /stats/prometheus
    show it: {cluster: {"health_check": "http"|"tcp"|None, "panic_threshold": n, "panic": bool,
    "watched": bool, "endpoints": {address: Endpoints.state() plus "checks": {"passed": n,
    "failed": n}}}}, where `results` is HealthChecker.results (probes since start). `panic` is
    what every worker's balancer of the cluster does now: fewer than panic_threshold percent of
    the endpoints are available (healthy or unknown, and not ejected), so all of them get
    traffic."""
    from engine.policy.link import watched

    slots = {name: i for i, name in enumerate(stats.endpoint_names())}   # one scan, not one each
    results = results or {}
    out = {}
    for cluster in config.clusters:
        states = {}
        available = 0
        for ep in cluster.endpoints:
            key = endpoint_key(cluster.name, ep.address)
            # a name never registered (no worker linked it yet) has no state: slot 0, unknown
            slot = slots.get(key, 0)
            states[str(ep.address)] = {**endpoints.state(slot), "checks": dict(
                results.get(key, {"passed": 0, "failed": 0}))}
            available += endpoints.available_py(slot)
        n = len(cluster.endpoints)
        follows = watched(cluster)
        out[cluster.name] = {
            "health_check": cluster.health_check.kind if cluster.health_check else None,
            "panic_threshold": cluster.panic_threshold,
            "panic": follows and n > 0 and available * 100 < cluster.panic_threshold * n,
            "watched": follows,
            "endpoints": states,
        }
    return out


def _host_header(address) -> str:
    host = address.host
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{address.port}" if address.port not in (80, 443) else host


def _seconds(value: float) -> str:
    from engine.policy.durations import format_duration

    return format_duration(value)


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    return f"connection failed: {exc.strerror or exc}"

"""Helpers of the tests that drive real processes on loopback ports.

`Upstream` starts tests/upstream.py (an h11 server); `Sluice` starts the real binary
(`python -m engine run`) on a config written by the test, and waits until it accepts.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eventually(check, timeout: float = 10.0):
    """Poll check() until it returns something truthy without raising AssertionError, and
    return that; at the deadline the last failure is raised. This is how a test waits for
    another process (a reload applied, a log line written, a counter moved): on a signal it can
    observe, never on a sleep that is too short on a loaded machine and too long on others."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            assert result, f"still {result!r}"
            return result
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def metric(s: "Sluice", name: str, **labels):
    """One sample of the admin's /stats/prometheus (parsed by prometheus_client): the first
    whose labels include `labels`, or None."""
    from prometheus_client.parser import text_string_to_metric_families
    text = s.admin("/stats/prometheus").body.decode()
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def rss_kb(pid: int) -> int:
    """A process's resident memory (VmRSS) in KiB: what the memory-bound attack tests watch."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def wait_port(port: int, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


class Upstream:
    """tests/upstream.py; with `cert`/`key` it serves HTTPS (and with `client_ca` requires a
    client certificate: `stats_cert`, a (cert, key) pair, is what `stats()` presents), and
    `stats()` reaches it without verifying it."""

    def __init__(self, cert=None, key=None, client_ca=None, stats_cert=None) -> None:
        self.port = free_port()
        self.tls = cert is not None
        self.stats_cert = stats_cert
        extra = [f"--cert={cert}", f"--key={key}"] if cert is not None else []
        extra += [f"--client-ca={client_ca}"] if client_ca is not None else []
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "upstream.py"),
                                      str(self.port), *extra], stdout=subprocess.PIPE)
        assert self.proc.stdout.readline().strip() == b"ready"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stats(self) -> dict:
        import http.client
        if self.tls:
            import ssl
            ctx = ssl._create_unverified_context()
            if self.stats_cert is not None:
                ctx.load_cert_chain(*map(str, self.stats_cert))
            c = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=5, context=ctx)
        else:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        c.request("GET", "/stats")
        data = json.loads(c.getresponse().read())
        c.close()
        return data

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


class Sluice:
    """The sluice binary on a config dict; `url` is the first listener's base URL."""

    started: list["Sluice"] = []     # every one this test session (the debug build's checks)

    def __init__(self, config: dict, tmp: Path, workers: int = 1, extra: list[str] = (),
                 **popen) -> None:
        Sluice.started.append(self)
        self.leaks_expected = False      # debug build: a test that leaks on purpose sets it
        self.config = config
        self.path = tmp / "sluice.yaml"
        self.path.write_text(yaml.safe_dump(config))
        self.log = tmp / "access.log"
        self.stderr = open(tmp / "stderr.txt", "wb")
        self.stderr_path = tmp / "stderr.txt"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "run", "-c", str(self.path), "--workers",
             str(workers), "--access-log", str(self.log), *extra],
            stderr=self.stderr, cwd=ROOT, **popen)
        self.port = int(config["listeners"][0]["address"].rsplit(":", 1)[1])
        self.url = f"http://127.0.0.1:{self.port}"
        wait_port(self.port, proc=self.proc)
        if "admin" in config and "--admin" not in extra:
            # /ready: every worker serves (has bound its SO_REUSEPORT socket), not just one
            # (a 401: a token we cannot present, e.g. from a file; then the port must do)
            eventually(lambda: self.admin("/ready").status in (200, 401), timeout=15)

    def admin(self, path: str):
        """GET `path` on the admin listener: an http.client response, its body read."""
        import http.client
        host, port = self.config["admin"]["address"].rsplit(":", 1)
        c = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            token = self.config["admin"].get("token")
            c.request("GET", path, headers={"authorization": f"Bearer {token}"}
                      if isinstance(token, str) else {})
            r = c.getresponse()
            r.body = r.read()
            return r
        except OSError as exc:
            raise AssertionError(f"admin {path}: {exc}") from exc
        finally:
            c.close()

    def access_log(self, settle: float = 0.1, wait: float = 3.0) -> list[dict]:
        """The access log's records. Lines wait up to 0.1 s in the worker's buffer (longer on a
        loaded machine): read once the log has lines and `settle` passed with no new ones, or
        after `wait` seconds with none."""
        deadline = time.monotonic() + wait
        seen = -1
        while True:
            time.sleep(settle)
            text = self.log.read_text() if self.log.exists() else ""
            lines = [line for line in text.splitlines() if line]
            if (lines and len(lines) == seen) or time.monotonic() > deadline:
                return [json.loads(line) for line in lines]
            seen = len(lines)

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(x) for x in out.stdout.split()]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        return self.proc.returncode


# ---- the debug build's checks (SLUICE_DEBUG=1, engine/_fast/debug.pyx) ------------------------

def debug_build() -> bool:
    """Whether the compiled hot path is the debug build. The binary the tests start runs the
    same engine package (cwd = ROOT), so this is also whether its workers count live objects."""
    from engine._fast import debug

    return debug.DEBUG_BUILD


def live_objects_here() -> dict[str, int]:
    """This process's live objects (in-process proxies: engine.Proxy, WorkerServer)."""
    from engine._fast import debug

    return debug.live_objects()


# While sluice runs, what the tests have closed must be gone: every exchange and client
# connection. Upstream connections may stay, idle in their pools, until the worker drains.
RELEASED_WHILE_RUNNING = ("exchange", "downstream")
LEAK_AT_EXIT = "live objects at exit"    # what a debug worker logs when it exits holding some


def live_objects(s: Sluice) -> dict | None:
    """GET /debug/live on `s` (debug build): {"workers": [...], "total": {kind: n}}, or None
    when its admin API cannot be asked (none in the config, elsewhere, or a token we lack)."""
    if "admin" not in s.config or s.proc.poll() is not None:
        return None
    r = s.admin("/debug/live")
    if r.status == 401:
        return None
    assert r.status == 200, f"GET /debug/live: {r.status} {r.body!r} (is sluice a debug build?)"
    return json.loads(r.body)


def unreleased_while_running(s: Sluice, timeout: float = 20.0) -> str | None:
    """Debug build, after a test, while `s` still runs: wait until its workers hold no exchange
    and no client connection; what they still hold at the deadline, or None. The wait covers a
    route timeout (15 s by default): a client that closes while the proxy does not read it
    (paused behind a hanging upstream) goes unnoticed until its exchange times out."""
    def released():
        live = live_objects(s)
        if live is None:
            return True
        held = {kind: n for kind in RELEASED_WHILE_RUNNING if (n := live["total"][kind])}
        assert not held, held
        return True

    try:
        eventually(released, timeout)
    except AssertionError as exc:
        return f"sluice (pid {s.proc.pid}) still holds {exc} after the test closed its " \
               f"connections: a leak, or a connection the test left open"
    return None


def leaked_at_exit(s: Sluice) -> list[str]:
    """Debug build, once `s` has exited: the lines its workers logged because they exited
    (after a drain) holding live objects (engine/runtime/worker.py report_live_objects)."""
    try:
        text = s.stderr_path.read_text(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if LEAK_AT_EXIT in line]


def upstream_connections(pid: int, port: int) -> int:
    """Established TCP connections process `pid` holds to 127.0.0.1:`port` (from /proc): which
    worker has connections to an upstream shows which worker proxied to it."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    with open(f"/proc/{pid}/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if state == "01" and inode in inodes and int(remote.split(":")[1], 16) == port:
                count += 1
    return count


def simple_config(port: int, clusters: dict[str, list[str]] | None = None, routes=None,
                  **cluster_opts) -> dict:
    """A config with one listener; `routes` default to one catch-all to cluster 'up'."""
    clusters = clusters or {}
    routes = routes or [{"name": "all", "match": {"path_prefix": "/"},
                         "to": [{"cluster": "up"}]}]
    return {
        "admin": {"address": f"127.0.0.1:{free_port()}"},   # never the shared default 9901
        "listeners": [{"name": "main", "address": f"127.0.0.1:{port}",
                       "routes": [r["name"] for r in routes]}],
        "routes": routes,
        "clusters": [{"name": name, "endpoints": [{"address": a} for a in addrs], **cluster_opts}
                     for name, addrs in clusters.items()],
    }



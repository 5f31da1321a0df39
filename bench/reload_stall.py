"""Reload stall: how long serving stops while a worker takes a new, large config (issue 7).

    python -m bench.reload_stall                      # 10 and 10,000 routes, 5 reloads each
    python -m bench.reload_stall --routes 10,2000,10000 --reloads 8 --json out.json

For each size it starts the real `sluice run` (one worker, so every connection shares the event
loop that applies the config) on a generated config: N routes mixing exact paths, prefixes,
hosts, methods, regexes with a header, and a direct-response probe route that the load hits.
Two keep-alive connections send requests back to back from threads of this process and record
when each response ends. Then `PUT /snapshot` replaces the config with a changed one of the
same size (every path and regex differs from every earlier one, so nothing can be reused),
several times, waiting for the admin API's 200 (every worker applied it) each time.

What it reports, per size:
- reload: the PUT's round trip (validation in the supervisor + apply in the worker), median/max;
- stall: the longest gap between two consecutive responses on one connection while a reload was
  in flight (plus 0.25 s after it), the worst over all reloads; that is the time a client waited
  because the worker was busy with the reload;
- quiet: the same gap measured outside reloads, the noise floor of this machine.
The bound the issue sets is a stall under 100 ms at 10,000 routes; the exit status says whether
it held (0) or not (1), and 2 when the harness itself failed. Speed never fails CI: this is a
separate command, not part of `python -m bench --quick` (one run takes about 30 s).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from bench.procs import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
BOUND_MS = 100.0
AFTER = 0.25          # seconds after a reload's answer still counted as "during the reload"


def generate(n: int, port: int, admin_port: int, salt: str = "") -> dict:
    """A config with `n` routes of every kind; `salt` changes every path and regex."""
    routes = [{"name": "probe", "match": {"path": "/probe"},
               "direct_response": {"status": 200, "body": "ok"}}]
    for i in range(n - 1):
        kind = i % 5
        if kind == 0:
            match = {"path": f"/svc{i}/item{salt}"}
        elif kind == 1:
            match = {"path_prefix": f"/p{i}/{salt}"}
        elif kind == 2:
            match = {"host": f"h{i}.example.com", "path_prefix": f"/{salt}"}
        elif kind == 3:
            match = {"path_prefix": f"/m{i}/{salt}", "methods": ["GET", "POST"]}
        else:
            match = {"path_regex": f"/r{i}/[0-9]+{salt}", "headers": {"x-t": str(i)}}
        routes.append({"name": f"r{i}", "match": match, "to": [{"cluster": "web"}]})
    return {
        "admin": {"address": f"127.0.0.1:{admin_port}"},
        "listeners": [{"name": "main", "address": f"127.0.0.1:{port}",
                       "routes": [r["name"] for r in routes]}],
        "routes": routes,
        "clusters": [{"name": "web", "endpoints": [{"address": f"127.0.0.1:{free_port()}"}]}],
    }


def snapshot(config: dict) -> bytes:
    from engine.policy import load_config_text
    from engine.policy.snapshot import encode_snapshot

    return encode_snapshot(load_config_text(json.dumps(config)), "reload_stall",
                           created_at=0.0)


class Prober(threading.Thread):
    """One keep-alive connection sending GET /probe back to back; `ends` are the monotonic
    times at which each response was complete."""

    REQUEST = b"GET /probe HTTP/1.1\r\nHost: bench\r\n\r\n"
    REPLY_END = b"ok"

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.ends: list[float] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=30) as c:
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                while not self.stop.is_set():
                    c.sendall(self.REQUEST)
                    got = b""
                    while not got.endswith(self.REPLY_END):
                        chunk = c.recv(4096)
                        if not chunk:
                            raise ConnectionError("the proxy closed the connection")
                        got += chunk
                    self.ends.append(time.monotonic())
        except BaseException as exc:  # reported by the main thread
            self.error = exc


def put_snapshot(admin_port: int, data: bytes) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=120)
    try:
        c.request("PUT", "/snapshot", body=data,
                  headers={"content-type": "application/octet-stream"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_ready(admin_port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sluice exited with {proc.returncode} before it was ready")
        try:
            c = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=5)
            c.request("GET", "/ready")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError("sluice was not ready in time")


def gaps(ends: list[float], windows: list[tuple[float, float]]) -> tuple[float, float]:
    """(worst gap inside any window, worst gap outside them), in seconds. A gap belongs to a
    window when it overlaps it."""
    inside = outside = 0.0
    for a, b in zip(ends, ends[1:]):
        gap = b - a
        if any(a < hi and b > lo for lo, hi in windows):
            inside = max(inside, gap)
        else:
            outside = max(outside, gap)
    return inside, outside


def measure(n: int, reloads: int, connections: int, tmp: Path) -> dict:
    port, admin_port = free_port(), free_port()
    base = generate(n, port, admin_port)
    path = tmp / f"routes-{n}.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    # a new salt per reload: every path and regex is new each time, nothing can be reused
    variants = [snapshot(generate(n, port, admin_port, salt=f"v{k}")) for k in range(reloads)]
    stderr = open(tmp / f"sluice-{n}.err", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "engine", "run", "-c", str(path),
                             "--workers", "1", "--access-log", "off"],
                            cwd=ROOT, stderr=stderr)
    probers: list[Prober] = []
    try:
        wait_port(port, proc, timeout=120)
        wait_ready(admin_port, proc)
        probers = [Prober(port) for _ in range(connections)]
        for p in probers:
            p.start()
        time.sleep(1.0)
        windows, times = [], []
        for k in range(reloads):
            start = time.monotonic()
            status, body = put_snapshot(admin_port, variants[k])
            end = time.monotonic()
            if status != 200:
                raise RuntimeError(f"PUT /snapshot: {status} {body[:300]!r}")
            windows.append((start, end + AFTER))
            times.append(end - start)
            time.sleep(0.6)
        for p in probers:
            p.stop.set()
        for p in probers:
            p.join(30)
            if p.error is not None:
                raise RuntimeError(f"probe connection failed: {p.error!r}")
        stall = quiet = 0.0
        for p in probers:
            inside, outside = gaps(p.ends, windows)
            stall, quiet = max(stall, inside), max(quiet, outside)
        return {"routes": n, "reloads": reloads,
                "reload_median_ms": 1000 * statistics.median(times),
                "reload_max_ms": 1000 * max(times),
                "stall_ms": 1000 * stall, "quiet_ms": 1000 * quiet,
                "requests": sum(len(p.ends) for p in probers)}
    finally:
        for p in probers:
            p.stop.set()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        stderr.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reload_stall", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--routes", default="10,10000",
                        help="comma-separated route counts (default: 10,10000)")
    parser.add_argument("--reloads", type=int, default=5)
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.routes.split(",") if x.strip()]
    results = []
    with tempfile.TemporaryDirectory(prefix="reload_stall-") as tmp:
        for n in sizes:
            try:
                results.append(measure(n, args.reloads, args.connections, Path(tmp)))
            except Exception as exc:
                err = Path(tmp) / f"sluice-{n}.err"
                tail = err.read_text(errors="replace")[-2000:] if err.exists() else ""
                print(f"reload_stall: {n} routes: {exc}\n{tail}", file=sys.stderr)
                return 2
    print(f"{'routes':>7} {'reload median':>14} {'reload max':>11} {'stall (max gap)':>16} "
          f"{'quiet max gap':>14} {'requests':>9}")
    for r in results:
        print(f"{r['routes']:>7} {r['reload_median_ms']:>11.0f} ms {r['reload_max_ms']:>8.0f} ms "
              f"{r['stall_ms']:>13.1f} ms {r['quiet_ms']:>11.1f} ms {r['requests']:>9}")
    if args.json:
        Path(args.json).write_text(json.dumps({"bound_ms": BOUND_MS, "cpus": os.cpu_count(),
                                               "results": results}, indent=2) + "\n")
    big = [r for r in results if r["routes"] >= 10_000]
    held = all(r["stall_ms"] < BOUND_MS for r in big)
    if big:
        print(f"stall bound {BOUND_MS:.0f} ms at 10,000 routes: {'held' if held else 'EXCEEDED'}")
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())

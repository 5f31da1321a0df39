"""What Python filters cost (issue 3): `python -m bench.filter_cost [--duration S] [--rounds N]`.

Three sluice configs (1 worker) on the same nginx upstream, measured with wrk in interleaved
rounds, reported as ratios to the first:

  plain      no filters anywhere
  elsewhere  a filter is declared and used by another route; the measured route has none
  noop       the measured route runs a request filter and a response filter that do nothing

`elsewhere / plain` should be 1.0 within noise: a route without filters checks one pointer and
never enters Python. `noop / plain` is the price of calling into Python twice per request.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

import engine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Noop(engine.Filter):
    """Both phases, doing nothing: the bare cost of the Python calls."""

    def request(self, ctx):
        return None

    def response(self, ctx):
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(port)


def sluice_config(port: int, upstream: int, variant: str) -> dict:
    measured = {"name": "measured", "match": {"path_prefix": "/"}, "to": [{"cluster": "up"}]}
    other = {"name": "other", "match": {"path_prefix": "/other/"}, "to": [{"cluster": "up"}]}
    config = {"access_log": {"path": "off"},
              "admin": {"address": f"127.0.0.1:{free_port()}"},
              "listeners": [{"name": "main", "address": f"127.0.0.1:{port}",
                             "routes": ["other", "measured"]}],
              "routes": [other, measured],
              "clusters": [{"name": "up", "endpoints": [{"address": f"127.0.0.1:{upstream}"}]}]}
    if variant != "plain":
        config["filters"] = [{"name": "noop", "python": "bench.filter_cost:Noop"}]
        (other if variant == "elsewhere" else measured)["filters"] = ["noop"]
    return config


def wrk(port: int, seconds: float) -> float:
    out = subprocess.run(["wrk", "-t1", "-c50", f"-d{max(1, round(seconds))}s", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, check=True).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="sluice-filters-")
    up = free_port()
    nginx_conf = os.path.join(tmp, "nginx.conf")
    with open(nginx_conf, "w") as f:
        f.write(f"""worker_processes 1; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/err.log;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{up}; location / {{ return 200 "hello world\\n"; }} }} }}
""")
    procs = [subprocess.Popen(["nginx", "-c", nginx_conf], stderr=subprocess.DEVNULL)]
    ports = {}
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        wait_port(up)
        for variant in ("plain", "elsewhere", "noop"):
            ports[variant] = port = free_port()
            path = os.path.join(tmp, variant + ".yaml")
            with open(path, "w") as f:
                yaml.safe_dump(sluice_config(port, up, variant), f)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "engine", "run", "-c", path, "--workers", "1"],
                cwd=ROOT, env=env, stderr=subprocess.DEVNULL))
            wait_port(port)
        results: dict[str, list[float]] = {v: [] for v in ports}
        for _ in range(args.rounds):
            for variant, port in ports.items():
                wrk(port, 1)                          # warm up
                results[variant].append(wrk(port, args.duration))
        base = statistics.median(results["plain"])
        print(f"{'variant':<10} {'median req/s':>12} {'ratio to plain':>15}")
        for variant, values in results.items():
            median = statistics.median(values)
            print(f"{variant:<10} {median:>12.0f} {median / base:>15.3f}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

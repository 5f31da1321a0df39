"""What active health checks cost the data plane (issue 11): `python -m bench.health_cost
[--duration S] [--rounds N]`.

Two sluice configs (1 worker) on the same nginx upstream, measured with wrk in interleaved
rounds, reported as ratios to the first:

  plain     the cluster has no health check: its balancer never looks at the shared state
  checked   the cluster has an HTTP health check that passes (every 1s) and the default panic
            threshold: each pick loads the shared generation counter once and compares it

`checked / plain` should be 1.0 within noise: a passing check changes nothing after the first
verdict, so no pick re-reads the endpoint records, and the probes run in the supervisor.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import yaml

from bench.filter_cost import ROOT, free_port, wait_port, wrk


def sluice_config(port: int, upstream: int, variant: str) -> dict:
    cluster = {"name": "up", "endpoints": [{"address": f"127.0.0.1:{upstream}"}]}
    if variant == "checked":
        cluster["health_check"] = {"http": {"path": "/"}, "interval": "1s", "timeout": "500ms"}
    return {"access_log": {"path": "off"},
            "admin": {"address": f"127.0.0.1:{free_port()}"},
            "listeners": [{"name": "main", "address": f"127.0.0.1:{port}", "routes": ["all"]}],
            "routes": [{"name": "all", "match": {"path_prefix": "/"}, "to": [{"cluster": "up"}]}],
            "clusters": [cluster]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variants", default="plain,checked",
                    help="comma-separated; 'plain#2' is a second plain instance (the noise "
                         "between two identical processes)")
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="sluice-health-")
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
        for variant in args.variants.split(","):
            ports[variant] = port = free_port()
            path = os.path.join(tmp, variant.replace("#", "-") + ".yaml")
            with open(path, "w") as f:
                yaml.safe_dump(sluice_config(port, up, variant.split("#")[0]), f)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "engine", "run", "-c", path, "--workers", "1"],
                cwd=ROOT, env=env, stderr=subprocess.DEVNULL))
            wait_port(port)
        results: dict[str, list[float]] = {v: [] for v in ports}
        for r in range(args.rounds):
            order = list(ports.items())
            for variant, port in (order if r % 2 == 0 else order[::-1]):   # no position bias
                wrk(port, 1)                          # warm up
                results[variant].append(wrk(port, args.duration))
        base = statistics.median(results["plain"])
        print(f"{'variant':<10} {'median req/s':>12} {'ratio to plain':>15}")
        for variant, values in results.items():
            median = statistics.median(values)
            print(f"{variant:<10} {median:>12.0f} {median / base:>15.3f}  "
                  f"({', '.join(f'{v:.0f}' for v in values)})")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`sluice validate` on the resilience fields (issue 11), through the real command line: the
issue's bad input (negative attempts, a per-try timeout above the route timeout, a percent above
100, a mirror to a cluster that does not exist, retry on a direct response) is refused with
every problem as `FILE: path.to.field: reason` and exit status 1, no traceback; a good config is
`OK` with its warnings, and compiles."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from support import ROOT


def _config(api: dict | None = None, cluster: dict | None = None) -> dict:
    return {
        "listeners": [{"name": "main", "address": "127.0.0.1:8080", "routes": ["health", "api"]}],
        "routes": [
            {"name": "health", "match": {"path": "/healthz"},
             "direct_response": {"status": 200, "body": "ok"}},
            {"name": "api", "match": {"path_prefix": "/"}, "timeout": "2s",
             "to": [{"cluster": "api"}], **(api or {})},
        ],
        "clusters": [
            {"name": "api", "endpoints": [{"address": "127.0.0.1:9001"}], **(cluster or {})},
            {"name": "api-shadow", "endpoints": [{"address": "127.0.0.1:9002"}]},
        ],
    }


def sluice(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=env)


def test_the_issues_bad_input_is_refused_naming_each_field(tmp_path):
    cfg = _config({"retry": {"attempts": -1},
                   "fault": {"abort": {"status": 503, "percent": 150}},
                   "mirror": {"cluster": "api-shadwo"}},
                  {"retry_budget": {"percent": 120}})
    cfg["routes"].append({"name": "slow", "match": {"path": "/slow"}, "timeout": "1s",
                          "retry": {"per_try_timeout": "3s"}, "to": [{"cluster": "api"}]})
    cfg["routes"][0]["retry"] = {}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    done = sluice("validate", str(path))
    assert done.returncode == 1 and done.stdout == ""
    assert "Traceback" not in done.stderr
    assert sorted(done.stderr.splitlines()) == sorted([
        f"{path}: routes[0].retry: a route with direct_response has no upstream (nothing to "
        "retry)",
        f"{path}: routes[1].retry.attempts: must be at least 0, got -1",
        f"{path}: routes[1].fault.abort.percent: must be at most 100, got 150",
        f"{path}: routes[1].mirror.cluster: cluster 'api-shadwo' is not defined; did you mean "
        "'api-shadow'?",
        f"{path}: routes[2].retry.per_try_timeout: 3s is longer than the route's timeout (1s), "
        "which ends every try first",
        f"{path}: clusters[0].retry_budget.percent: must be at most 100, got 120",
    ]), done.stderr


def test_a_good_config_is_ok_with_its_warnings_and_compiles(tmp_path):
    cfg = _config({"retry": {"attempts": 2, "per_try_timeout": "1s", "methods": ["GET", "POST"]},
                   "fault": {"delay": {"fixed": "10ms", "percent": 1},
                             "only_with_header": "x-sluice-fault"},
                   "mirror": {"cluster": "api-shadow", "percent": 10}},
                  {"circuit_breakers": {"max_requests": 100}, "retry_budget": {}})
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump(cfg))
    done = sluice("validate", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"OK: {path} (1 listener, 2 routes, 2 clusters)")
    warnings = [line for line in done.stderr.splitlines() if "warning:" in line]
    assert any("routes[1].retry.methods[1]: warning: POST is not idempotent" in w
               for w in warnings), done.stderr
    assert any("routes[1].retry.per_try_timeout: warning: 3 tries of up to 1s" in w
               for w in warnings), done.stderr
    out = tmp_path / "good.msgpack"
    compiled = sluice("compile", str(path), "-o", str(out))
    assert compiled.returncode == 0, compiled.stderr
    explained = sluice("explain", "-s", str(out), "GET http://h/x")
    assert explained.returncode == 0, explained.stderr
    assert "mirror:      10% of requests copied to cluster api-shadow" in explained.stdout

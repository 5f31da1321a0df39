"""`sluice compile`, `sluice run -s` and `sluice explain` through the real command line
(CONFIG.md, "Command line"): exit statuses, one line per error, no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import yaml
from support import ROOT, free_port, simple_config, wait_port

EXAMPLE = ROOT / "tests" / "policy" / "fixtures" / "config_md_example.yaml"


def sluice(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, check=False,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def assert_no_traceback(done: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in done.stderr, done.stderr


def test_compile_twice_gives_identical_bytes(tmp_path):
    out1, out2 = tmp_path / "1.msgpack", tmp_path / "2.msgpack"
    assert sluice("compile", str(EXAMPLE), "-o", str(out1)).returncode == 0
    done = sluice("compile", str(EXAMPLE), "-o", str(out2))
    assert done.returncode == 0, done.stderr
    assert out1.read_bytes() == out2.read_bytes()
    # the example's one warning, then the summary
    assert "clusters[0].hash_on: warning: " in done.stderr
    assert f"{out2}: config version " in done.stderr


def test_compile_prints_every_error_as_file_path_reason_and_exits_1(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("weight: 90", "weight: 0")
                   .replace("cluster: web}", "cluster: webb}"))
    out = tmp_path / "bad.msgpack"
    done = sluice("compile", str(bad), "-o", str(out))
    assert done.returncode == 1
    assert_no_traceback(done)
    lines = done.stderr.splitlines()
    assert any(line.startswith(f"{bad}: routes[1].to[0].weight: ") for line in lines), lines
    assert any(line.startswith(f"{bad}: routes[2].to[0].cluster: ") for line in lines), lines
    assert not out.exists()


def test_run_refuses_a_truncated_snapshot_in_one_line(tmp_path):
    snap = tmp_path / "snap.msgpack"
    assert sluice("compile", str(EXAMPLE), "-o", str(snap)).returncode == 0
    snap.write_bytes(snap.read_bytes()[:-7])
    done = sluice("run", "-s", str(snap), "--workers", "1")
    assert done.returncode == 1
    assert_no_traceback(done)
    assert done.stderr.strip().splitlines()[-1].startswith(f"{snap}: <root>: truncated")


def test_run_serves_a_compiled_snapshot(tmp_path, upstream):
    port = free_port()
    config = tmp_path / "sluice.yaml"
    config.write_text(yaml.safe_dump(simple_config(port, {"up": [upstream.address]})))
    snap = tmp_path / "sluice.msgpack"
    assert sluice("compile", str(config), "-o", str(snap)).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "engine", "run", "-s", str(snap),
                             "--workers", "1", "--access-log", "off"],
                            cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc=proc)
        assert httpx.get(f"http://127.0.0.1:{port}/echo", timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_explain_a_match_exits_0(tmp_path):
    done = sluice("explain", "-c", str(EXAMPLE), "GET http://api.example.com/api/users",
                  "-H", "x-canary: 1")
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert "route:       api (index 1 of listener main: 1 earlier route did not match)" in out
    assert "upstream:    GET /users (rewritten from /api/users)" in out
    assert "split:       api-v1 weight 90 (90%), api-v2 weight 10 (10%)" in out


def test_explain_no_match_exits_1_with_the_reasons(tmp_path):
    config = tmp_path / "api.yaml"
    config.write_text(EXAMPLE.read_text().replace("routes: [health, api, web]",
                                                  "routes: [health, api]"))
    snap = tmp_path / "api.msgpack"
    assert sluice("compile", str(config), "-o", str(snap)).returncode == 0
    done = sluice("explain", "-s", str(snap), "POST http://api.example.com/web")
    assert done.returncode == 1
    assert done.stdout.splitlines()[-3:] == [
        "routes of listener main, in order:",
        "  [0] health: path '/web' is not '/healthz'",
        "  [1] api: path '/web' does not start with '/api/'",
    ]


def test_explain_bad_input_exits_2_without_traceback(tmp_path):
    done = sluice("explain", "-c", str(EXAMPLE), "GET api.example.com/x")
    assert done.returncode == 2
    assert_no_traceback(done)
    assert done.stderr.startswith("sluice explain: ")
    done = sluice("explain", "-s", str(EXAMPLE), "GET /")
    assert done.returncode == 2
    assert_no_traceback(done)
    assert done.stderr.startswith(f"{EXAMPLE}: <root>: not a sluice snapshot")

"""Attack: a start that fails must say so to whoever started sluice (CONFIG.md: exit status 1).

Before the fix, a worker that failed before serving (an access log it cannot open, a filter module
it cannot import, a direct response whose status has no standard reason phrase) printed a
traceback, and the supervisor drained nothing and exited 0: systemd and Kubernetes read that as a
clean stop. Now every failed start is one line on stderr and exit status 1 (a traceback only with
`--log-level debug`); a worker that dies after it served is still restarted
(tests/runtime/test_supervisor.py). And a direct response with any status the schema allows
(200-599) serves, with an empty reason phrase when the status has no standard one (RFC 9112
section 4), as nginx does."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import httpx
import pytest
import yaml

from support import ROOT, free_port, wait_port


def _config(port: int, status: int = 200, filters=(), access_log: str | None = None) -> dict:
    cfg = {
        "admin": {"address": f"127.0.0.1:{free_port()}"},
        "listeners": [{"name": "main", "address": f"127.0.0.1:{port}", "routes": ["r"]}],
        "routes": [{"name": "r", "match": {"path_prefix": "/"},
                    "filters": [f["name"] for f in filters],
                    "direct_response": {"status": status, "body": "hello"}}],
        "filters": list(filters),
    }
    if access_log is not None:
        cfg["access_log"] = {"path": access_log}
    return cfg


def _run(tmp_path, cfg: dict, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    path = tmp_path / "sluice.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return subprocess.run([sys.executable, "-m", "engine", "run", "-c", str(path), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def _one_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def filter_dir(tmp_path):
    """A module directory: `broken_filter.Boom` raises when constructed."""
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "broken_filter.py").write_text(textwrap.dedent("""
        import engine
        class Boom(engine.Filter):
            def __init__(self, **config):
                raise RuntimeError("boom at construction")
    """))
    return mods


def test_an_access_log_in_a_missing_directory_exits_1_in_one_line(tmp_path):
    log = tmp_path / "no-such-dir" / "access.log"
    line = _one_line(_run(tmp_path, _config(free_port()), "--workers", "2",
                          "--access-log", str(log)))
    assert str(log) in line and "access log" in line, line


def test_an_access_log_path_from_the_config_that_cannot_be_opened_exits_1(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    log = blocker / "access.log"          # a path under a regular file: ENOTDIR, even for root
    line = _one_line(_run(tmp_path, _config(free_port(), access_log=str(log)), "--workers", "1"))
    assert "access_log.path" in line and str(log) in line, line


def test_a_missing_filter_module_exits_1_naming_the_field(tmp_path):
    cfg = _config(free_port(), filters=[{"name": "f", "python": "no_such_mod_xyz:F"}])
    line = _one_line(_run(tmp_path, cfg, "--workers", "2"))
    assert "filters[0].python" in line and "no_such_mod_xyz" in line, line


def test_a_filter_that_raises_when_built_fails_the_start_in_one_line(tmp_path, filter_dir):
    cfg = _config(free_port(), filters=[{"name": "f", "python": "broken_filter:Boom"}])
    env = {"PYTHONPATH": f"{filter_dir}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    line = _one_line(_run(tmp_path, cfg, "--workers", "2", env=env))
    assert "boom at construction" in line, line


def test_log_level_debug_shows_the_traceback_of_a_failed_start(tmp_path, filter_dir):
    cfg = _config(free_port(), filters=[{"name": "f", "python": "broken_filter:Boom"}])
    env = {"PYTHONPATH": f"{filter_dir}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = _run(tmp_path, cfg, "--workers", "1", "--log-level", "debug", env=env)
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "boom at construction" in done.stderr


def test_a_listener_address_in_use_exits_1_in_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        line = _one_line(_run(tmp_path, _config(taken.getsockname()[1]), "--workers", "1"))
    assert "cannot listen" in line, line


def _status_line(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0]


@pytest.mark.parametrize("status", [299, 520, 599])
def test_a_direct_response_with_a_status_without_a_standard_reason_serves(
        status, start_sluice):
    s = start_sluice(_config(free_port(), status=status))
    r = httpx.get(s.url + "/")
    assert r.status_code == status and r.text == "hello"
    # RFC 9112 section 4: the reason phrase may be empty (the space before it is not optional)
    assert _status_line(s.port) == b"HTTP/1.1 %d " % status


def test_a_direct_response_with_a_standard_status_keeps_its_reason(start_sluice):
    s = start_sluice(_config(free_port(), status=418))
    assert _status_line(s.port) == b"HTTP/1.1 418 I'm a Teapot"


def test_a_worker_that_cannot_start_again_after_serving_is_retried_not_fatal(tmp_path,
                                                                             start_sluice):
    """Only the first start is fatal: once serving, a dead worker is restarted, and one that
    cannot start (its access log's directory went away) is retried until it can."""
    import shutil
    import signal
    import time

    logs = tmp_path / "logs"
    logs.mkdir()
    s = start_sluice(_config(free_port()), extra=["--access-log", str(logs / "access.log")])
    [pid] = s.worker_pids()
    shutil.rmtree(logs)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while "cannot open the access log" not in s.stderr_path.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert s.proc.poll() is None
    logs.mkdir()
    while True:
        try:
            if httpx.get(s.url + "/").status_code == 200:
                break
        except httpx.TransportError:
            pass                   # no worker listens between two attempts
        assert time.monotonic() < deadline + 15
        time.sleep(0.1)
    assert "restarting" in s.stderr_path.read_text()

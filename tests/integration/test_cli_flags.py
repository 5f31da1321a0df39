"""Attack: the command line an operator scripts against (CONFIG.md, "Command line").

Before: no `--version` and no `--log-level`; `--workers 0` (or -5) silently ran one worker; the
admin token could only be written into the config file, and `--admin` off loopback failed with
pydantic's "Value error, ..." without naming `admin.token`; `run -c` given a compiled snapshot
complained about UTF-8; `kill` of config/demo.sh left sluice running without its parent; and
`python -m engine run` in a source tree that was never built printed a traceback."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from support import ROOT, free_port, simple_config, wait_port


def sluice(*args: str, env: dict | None = None, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=cwd, check=False,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def _write(tmp_path, cfg: dict):
    path = tmp_path / "sluice.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _direct(port: int, admin: str | None = None) -> dict:
    cfg = simple_config(port, routes=[{"name": "r", "match": {"path_prefix": "/"},
                                       "direct_response": {"status": 200, "body": "ok"}}])
    if admin is not None:
        cfg["admin"] = {"address": admin}
    return cfg


def test_version_prints_the_package_version():
    from importlib import metadata

    done = sluice("--version")
    assert done.returncode == 0
    assert done.stdout == f"sluice {metadata.version('sluice')}\n"


@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_workers_below_one_is_a_usage_error(tmp_path, value):
    path = _write(tmp_path, _direct(free_port()))
    done = sluice("run", "-c", str(path), "--workers", value)
    assert done.returncode == 2
    assert "argument --workers:" in done.stderr and "Traceback" not in done.stderr


def test_log_level_is_checked_and_warning_hides_info(tmp_path, start_sluice):
    path = _write(tmp_path, _direct(free_port()))
    assert sluice("run", "-c", str(path), "--log-level", "loud").returncode == 2
    s = start_sluice(_direct(free_port()), extra=["--log-level", "warning"])
    assert httpx.get(s.url + "/").status_code == 200
    assert s.stop() == 0
    assert " INFO " not in s.stderr_path.read_text()
    s = start_sluice(_direct(free_port()))      # the default: info
    assert s.stop() == 0
    assert "sluice serving" in s.stderr_path.read_text()


def _ready(admin_port: int, token: str | None) -> int:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"http://127.0.0.1:{admin_port}/ready", headers=headers).status_code


def _wait_ready(admin_port: int, token: str) -> None:
    deadline = time.monotonic() + 15
    while _ready(admin_port, token) != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_admin_token_from_the_flag_or_the_environment_flag_first(tmp_path, start_sluice):
    # a non-loopback admin address in the file, its token only on the command line
    admin = free_port()
    s = start_sluice(_direct(free_port(), f"0.0.0.0:{admin}"),
                     extra=["--admin-token", "from-flag"], env={**os.environ,
                                                                "SLUICE_ADMIN_TOKEN": "from-env"})
    _wait_ready(admin, "from-flag")
    assert _ready(admin, None) == 401 and _ready(admin, "from-env") == 401
    assert s.stop() == 0
    admin = free_port()
    s = start_sluice(_direct(free_port(), f"0.0.0.0:{admin}"),
                     env={**os.environ, "SLUICE_ADMIN_TOKEN": "from-env"})
    _wait_ready(admin, "from-env")
    assert _ready(admin, None) == 401


def test_the_flag_token_overrides_the_files_token(tmp_path, start_sluice):
    admin = free_port()
    cfg = _direct(free_port())
    cfg["admin"] = {"address": f"127.0.0.1:{admin}", "token": "in-file"}
    start_sluice(cfg, extra=["--admin-token", "from-flag"])
    _wait_ready(admin, "from-flag")
    assert _ready(admin, "in-file") == 401


def test_a_non_loopback_admin_without_a_token_names_admin_token_and_where_to_give_it(tmp_path):
    path = _write(tmp_path, _direct(free_port(), f"0.0.0.0:{free_port()}"))
    done = sluice("run", "-c", str(path), "--workers", "1", env={"SLUICE_ADMIN_TOKEN": ""})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"{path}: admin.token: required because")
    assert "--admin-token" in done.stderr and "SLUICE_ADMIN_TOKEN" in done.stderr
    path = _write(tmp_path, _direct(free_port()))
    flag = f"0.0.0.0:{free_port()}"
    done = sluice("run", "-c", str(path), "--admin", flag, env={"SLUICE_ADMIN_TOKEN": ""})
    assert done.returncode == 1
    assert done.stderr.startswith(f"--admin {flag}: admin.token: required because")
    assert "Value error" not in done.stderr
    assert "--admin-token" in done.stderr and "SLUICE_ADMIN_TOKEN" in done.stderr


def test_run_c_with_a_snapshot_suggests_s(tmp_path):
    path = _write(tmp_path, _direct(free_port()))
    snap = tmp_path / "compiled.bin"          # the content tells, not the name
    assert sluice("compile", str(path), "-o", str(snap)).returncode == 0
    done = sluice("run", "-c", str(snap))
    assert done.returncode == 1
    assert done.stderr == (f"{snap}: <root>: a compiled snapshot (msgpack), not a YAML config: "
                           f"run it with -s {snap}\n")


def test_a_source_tree_without_compiled_modules_says_to_install_first(tmp_path):
    """Not installed, not built: `python -m engine run` from the checkout itself."""
    tree = tmp_path / "checkout"
    shutil.copytree(ROOT / "engine", tree / "engine",
                    ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__"))
    path = _write(tmp_path, _direct(free_port()))
    env = {**os.environ, "PYTHONPATH": ""}
    for args in (["run", "-c", str(path)], ["explain", "-c", str(path), "GET http://x/"]):
        done = subprocess.run([sys.executable, "-m", "engine", *args], cwd=tree, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        assert "Install sluice first (pip install .)" in done.stderr
    done = subprocess.run([sys.executable, "-m", "engine", "validate", str(path)], cwd=tree,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("OK: ")   # needs no compiler


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_kill_of_the_demo_script_stops_the_sluice_it_started(tmp_path):
    demo = tmp_path / "config"
    shutil.copytree(ROOT / "config", demo)
    ports = {"9001": free_port(), "9002": free_port(), "8080": free_port(), "9901": free_port()}
    for name in ("demo.sh", "example.yaml"):
        text = (demo / name).read_text()
        for old, new in ports.items():
            text = text.replace(old, str(new))
        (demo / name).write_text(text)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}    # the demo runs sluice from /
    proc = subprocess.Popen(["bash", str(demo / "demo.sh"), "--workers", "1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_port(ports["8080"], proc=proc)
        assert httpx.get(f"http://127.0.0.1:{ports['8080']}/").status_code == 200
        proc.send_signal(signal.SIGTERM)          # `kill PID`, as a user would
        assert proc.wait(30) == 0                 # sluice's status after its drain
        deadline = time.monotonic() + 10
        while _listening(ports["8080"]) or _listening(ports["9001"]):
            assert time.monotonic() < deadline, "sluice or the upstream outlived the script"
            time.sleep(0.05)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)   # whatever is left of its session's group
        except ProcessLookupError:
            pass
        proc.wait()

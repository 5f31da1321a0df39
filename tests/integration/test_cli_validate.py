"""Attack: `sluice validate` said nothing about what fails only when serving starts.

Before, a config naming a filter module that is not installed, a class that is no engine.Filter,
or an access log in a missing directory passed `validate` (exit 0, no output) and then failed at
start. Now validate imports the filter classes the way `sluice run` does (the config file's
directory first, then sys.path; nothing else beside the config is imported), checks that the
access log can be written, and says `OK: FILE (N listeners, N routes, N clusters)` when all is
well (engine/preflight.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import httpx
import yaml

from support import ROOT, free_port, wait_port

FILTER = textwrap.dedent("""
    import engine
    class Tag(engine.Filter):
        def __init__(self, value='tagged'):
            self.value = value
        def request(self, ctx):
            return engine.Reply(200, self.value)
    class NotAFilter:
        pass
""")


def _config(port: int = 8080, filters=(), access_log: str | None = None) -> dict:
    cfg = {
        "admin": {"address": f"127.0.0.1:{free_port()}"},
        "listeners": [{"name": "main", "address": f"127.0.0.1:{port}", "routes": ["a", "b"]},
                      {"name": "other", "address": f"127.0.0.1:{free_port()}", "routes": ["b"]}],
        "routes": [{"name": "a", "match": {"path_prefix": "/a"},
                    "filters": [f["name"] for f in filters],
                    "direct_response": {"status": 200, "body": "a"}},
                   {"name": "b", "match": {"path_prefix": "/"}, "to": [{"cluster": "up"}]}],
        "clusters": [{"name": "up", "endpoints": [{"address": "127.0.0.1:9"}]}],
        "filters": list(filters),
    }
    if access_log is not None:
        cfg["access_log"] = {"path": access_log}
    return cfg


def _write(directory, cfg: dict):
    path = directory / "sluice.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _env() -> dict:
    """The test's environment without the filter directories: only the worktree on the path."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SLUICE_ADMIN_TOKEN", None)
    return env


def validate(path, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "validate", str(path)], cwd=cwd,
                          capture_output=True, text=True, timeout=60, env=_env())


def test_a_valid_config_says_ok_with_its_counts(tmp_path):
    path = _write(tmp_path, _config())
    done = validate(path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"OK: {path} (2 listeners, 2 routes, 1 cluster)\n"


def test_a_missing_filter_module_fails_naming_the_field(tmp_path):
    path = _write(tmp_path, _config(filters=[{"name": "f", "python": "no_such_filters_xyz:F"}]))
    done = validate(path)
    assert done.returncode == 1 and "OK" not in done.stdout
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(f"{path}: filters[0].python: cannot import module "
                                  "'no_such_filters_xyz'"), done.stderr


def test_a_class_that_is_no_filter_and_a_missing_class_fail(tmp_path):
    (tmp_path / "myfilters.py").write_text(FILTER)
    path = _write(tmp_path, _config(filters=[
        {"name": "f", "python": "myfilters:NotAFilter"},
        {"name": "g", "python": "myfilters:Missing"}]))
    done = validate(path)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert f"{path}: filters[0].python: 'myfilters:NotAFilter' is not a subclass of " \
           "engine.Filter" in lines, lines
    assert f"{path}: filters[1].python: module 'myfilters' has no 'Missing'" in lines, lines


def test_a_filter_module_that_raises_on_import_is_reported_not_a_traceback(tmp_path):
    (tmp_path / "badfilters.py").write_text("raise RuntimeError('broken at import')\n")
    path = _write(tmp_path, _config(filters=[{"name": "f", "python": "badfilters:F"}]))
    done = validate(path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "filters[0].python: importing module 'badfilters' raised RuntimeError: broken at " \
           "import" in done.stderr


def test_a_filter_beside_the_config_validates_and_serves_from_any_directory(tmp_path):
    """The config's directory is searched before sys.path by validate and by run alike (not the
    current directory: both run from elsewhere here), and nothing else there is imported: the
    `json.py` beside the config would leave a marker if it were."""
    marker = tmp_path / "json-imported"
    (tmp_path / "myfilters.py").write_text(FILTER)
    (tmp_path / "json.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    port = free_port()
    path = _write(tmp_path, _config(port, filters=[
        {"name": "f", "python": "myfilters:Tag", "config": {"value": "from-beside"}}]))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = validate(path, cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"OK: {path} ")
    proc = subprocess.Popen([sys.executable, "-m", "engine", "run", "-c", str(path),
                             "--workers", "1", "--access-log", "off"], cwd=elsewhere, env=_env(),
                            stderr=subprocess.PIPE)
    try:
        wait_port(port, proc=proc)
        assert httpx.get(f"http://127.0.0.1:{port}/a").text == "from-beside"
    finally:
        proc.terminate()
        proc.wait(30)
    assert not marker.exists()


def test_an_access_log_that_cannot_be_written_fails(tmp_path):
    log = tmp_path / "missing-dir" / "access.log"
    path = _write(tmp_path, _config(access_log=str(log)))
    done = validate(path)
    assert done.returncode == 1
    assert done.stderr == (f"{path}: access_log.path: cannot create the access log {log}: the "
                           f"directory {log.parent} does not exist\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    path = _write(tmp_path, _config(access_log=str(blocker / "access.log")))
    done = validate(path)
    assert done.returncode == 1 and f"{blocker} is not a directory" in done.stderr
    path = _write(tmp_path, _config(access_log=str(tmp_path)))
    done = validate(path)
    assert done.returncode == 1 and "it is a directory" in done.stderr


def test_an_access_log_that_can_be_written_is_not_created_by_validate(tmp_path):
    log = tmp_path / "access.log"
    path = _write(tmp_path, _config(access_log=str(log)))
    assert validate(path).returncode == 0
    assert not log.exists()


def test_errors_of_the_config_itself_come_first_and_stop_there(tmp_path):
    cfg = _config(filters=[{"name": "f", "python": "no_such_filters_xyz:F"}])
    cfg["routes"][1]["to"][0]["cluster"] = "nope"
    path = _write(tmp_path, cfg)
    done = validate(path)
    assert done.returncode == 1
    assert "routes[1].to[0].cluster" in done.stderr
    assert "no_such_filters_xyz" not in done.stderr      # not imported for a config refused


def test_a_snapshot_given_to_validate_gets_a_hint(tmp_path):
    path = _write(tmp_path, _config())
    snap = tmp_path / "sluice.msgpack"
    compiled = subprocess.run([sys.executable, "-m", "engine", "compile", str(path), "-o",
                               str(snap)], cwd=ROOT, capture_output=True, env=_env())
    assert compiled.returncode == 0
    done = validate(snap)
    assert done.returncode == 1
    assert done.stderr.startswith(f"{snap}: <root>: a compiled snapshot (msgpack)")
    assert f"sluice run -s {snap}" in done.stderr


def test_a_non_loopback_admin_validates_with_the_token_run_would_get_from_the_environment(
        tmp_path):
    cfg = _config()
    cfg["admin"] = {"address": "0.0.0.0:9901"}
    path = _write(tmp_path, cfg)
    done = validate(path)
    assert done.returncode == 1
    assert done.stderr.startswith(f"{path}: admin.token: required because")
    assert "SLUICE_ADMIN_TOKEN" in done.stderr
    done = subprocess.run([sys.executable, "-m", "engine", "validate", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={**_env(), "SLUICE_ADMIN_TOKEN": "secret"})
    assert done.returncode == 0 and done.stdout.startswith(f"OK: {path} "), done.stderr

"""engine/preflight.py: what `sluice validate` checks on the machine (the access log here; filter
imports in tests/integration/test_cli_validate.py, over the real command)."""

from __future__ import annotations

from engine.preflight import access_log_problem


def test_streams_and_writable_files_pass(tmp_path):
    for stream in ("stderr", "stdout", "off"):
        assert access_log_problem(stream) is None
    assert access_log_problem(str(tmp_path / "new.log")) is None       # created at start
    (tmp_path / "old.log").write_text("")
    assert access_log_problem(str(tmp_path / "old.log")) is None
    assert not (tmp_path / "new.log").exists()                          # nothing was created


def test_each_way_it_cannot_be_opened_is_said(tmp_path):
    missing = tmp_path / "missing" / "a.log"
    assert access_log_problem(str(missing)) == (
        f"cannot create the access log {missing}: the directory {missing.parent} does not exist")
    (tmp_path / "file").write_text("")
    assert access_log_problem(str(tmp_path / "file" / "a.log")).endswith(
        f"{tmp_path / 'file'} is not a directory")
    assert access_log_problem(str(tmp_path)).endswith("it is a directory")

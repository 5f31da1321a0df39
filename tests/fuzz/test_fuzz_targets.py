"""Runs each atheris target tests/fuzz/fuzz_<codec>.py (the HTTP/1.1 parser, HPACK, HTTP/2) for
a bounded number of runs in a subprocess (libFuzzer owns the process) and checks that it found
nothing.

SLUICE_FUZZ_RUNS (default 20000) and SLUICE_FUZZ_SEED (default 1, for reproducible CI runs)
tune it; a failing input is left in the pytest tmp dir as crash-*."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


@pytest.mark.parametrize("target", ["http1", "hpack", "http2"])
def test_fuzz_bounded_run_finds_nothing(target, tmp_path):
    corpus = tmp_path / "corpus"
    runs = os.environ.get("SLUICE_FUZZ_RUNS", "20000")
    seed = os.environ.get("SLUICE_FUZZ_SEED", "1")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, str(HERE / f"fuzz_{target}.py"), f"--seeds={corpus}", str(corpus),
           f"-runs={runs}", f"-seed={seed}", "-max_len=1024", "-max_total_time=120",
           f"-artifact_prefix={tmp_path}/", "-print_final_stats=1"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    assert "Done" in tail or "stat::number_of_executed_units" in tail, tail

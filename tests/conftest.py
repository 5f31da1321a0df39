"""Shared fixtures: real processes on loopback ports (see support.py)."""

from __future__ import annotations

import os
import signal

import pytest

from support import Sluice, Upstream


@pytest.fixture
def upstream():
    u = Upstream()
    yield u
    u.stop()


@pytest.fixture
def upstream2():
    u = Upstream()
    yield u
    u.stop()


@pytest.fixture
def start_sluice(tmp_path):
    started: list[Sluice] = []

    def start(config: dict, workers: int = 1, extra: list[str] = (), **popen) -> Sluice:
        s = Sluice(config, tmp_path, workers, extra, **popen)
        started.append(s)
        return s

    yield start
    for s in started:
        pids = s.worker_pids()
        s.stop(signal.SIGKILL if s.proc.poll() is None else signal.SIGTERM)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

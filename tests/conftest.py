"""Shared fixtures: real processes on loopback ports (see support.py).

In the debug build (SLUICE_DEBUG=1, docs/operations.md) every test is also checked for leaks,
as uvloop's test base does: the live objects of this process (in-process proxies) are back
where they were before the test, and a sluice started by the test released every exchange and
client connection while it ran and everything else (pooled upstream sockets, TLS) at its drain.
A release build counts nothing and checks nothing."""

from __future__ import annotations

import gc
import os
import signal

import pytest

from support import (Sluice, Upstream, debug_build, leaked_at_exit, live_objects_here,
                     unreleased_while_running)

DEBUG_BUILD = debug_build()


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
def make_backends():
    """make_backends(n): n tests/backends.py Backends (faults, delays, what each received), all
    stopped after the test."""
    from backends import Backend

    made: list = []

    def make(n: int) -> list:
        new = [Backend() for _ in range(n)]
        made.extend(new)
        return new

    yield make
    for b in made:
        if b.sock is not None:
            b.stop()


@pytest.fixture
def backends(make_backends):
    """Three Backends: the endpoints of a cluster one of which the test breaks."""
    return make_backends(3)


@pytest.fixture
def backend(make_backends):
    return make_backends(1)[0]


@pytest.fixture
def start_sluice(tmp_path):
    started: list[Sluice] = []

    def start(config: dict, workers: int = 1, extra: list[str] = (), **popen) -> Sluice:
        s = Sluice(config, tmp_path, workers, extra, **popen)
        started.append(s)
        return s

    yield start
    leaks = [leak for s in started if (leak := _drain_checked(s))] if DEBUG_BUILD else []
    for s in started:
        pids = s.worker_pids()
        s.stop(signal.SIGKILL if s.proc.poll() is None else signal.SIGTERM)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if leaks:
        pytest.fail("debug build: " + "; ".join(leaks), pytrace=False)


def _drain_checked(s: Sluice) -> str | None:
    """Debug build: a sluice the test left running must hold no exchange and no client
    connection; then it is drained (SIGTERM) rather than killed, so that its workers report
    what they still hold after closing their pools (checked by `live_objects_released`)."""
    if s.proc.poll() is not None:
        return None
    leak = unreleased_while_running(s)
    if leak is None:
        s.stop(signal.SIGTERM)
    return leak


@pytest.fixture(autouse=True)
def live_objects_released():
    """Debug build: what a test counted live is released when it ends (see the docstring)."""
    if not DEBUG_BUILD:
        yield
        return
    before = live_objects_here()
    first = len(Sluice.started)
    yield
    gc.collect()
    problems = []
    after = live_objects_here()
    changed = {kind: f"{before[kind]} -> {n}" for kind, n in after.items() if n != before[kind]}
    if changed:
        problems.append(f"this process's live objects changed over the test: {changed}")
    for s in Sluice.started[first:]:
        if not s.leaks_expected:
            problems += leaked_at_exit(s)
    if problems:
        pytest.fail("debug build: " + "; ".join(problems), pytrace=False)

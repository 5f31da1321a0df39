"""GET /debug/live (engine/runtime/admin.py) and the report of a debug worker that exits holding
live objects (engine/runtime/worker.py report_live_objects): the two ways the test suite sees
the debug build's counters of a running binary (tests/conftest.py).

A release build answers 404. In the debug build, a Python filter counts a live object in the
worker that serves the request (engine._fast.debug.add) and never releases it: the admin API
shows it on that worker, and the worker's drain ends with the line the suite looks for."""

from __future__ import annotations

import os
import signal
import textwrap

import httpx
import pytest

from support import (LEAK_AT_EXIT, debug_build, eventually, free_port, leaked_at_exit,
                     live_objects)

DEBUG = debug_build()


def _config(port: int, filters=()) -> dict:
    return {
        "admin": {"address": f"127.0.0.1:{free_port()}"},
        "listeners": [{"name": "main", "address": f"127.0.0.1:{port}", "routes": ["r"]}],
        "routes": [{"name": "r", "match": {"path_prefix": "/"},
                    "filters": [f["name"] for f in filters],
                    "direct_response": {"status": 200, "body": "ok"}}],
        "filters": list(filters),
    }


@pytest.mark.skipif(DEBUG, reason="the release build's answer")
def test_a_release_build_has_no_debug_endpoint(start_sluice):
    s = start_sluice(_config(free_port()))
    r = s.admin("/debug/live")
    assert r.status == 404
    assert b"served by a debug build only (SLUICE_DEBUG=1 pip install -e .)" in r.body


@pytest.mark.skipif(not DEBUG, reason="a release build counts nothing")
def test_a_workers_live_objects_show_in_the_admin_api_and_at_its_exit(start_sluice, tmp_path,
                                                                     monkeypatch):
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "leaky.py").write_text(textwrap.dedent("""
        import engine
        from engine._fast import debug

        class Leak(engine.Filter):
            def request(self, ctx):
                debug.add("tls", 1)      # counted live, never released: a leak
    """))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(mods), os.environ.get("PYTHONPATH",
                                                                                "")]))
    s = start_sluice(_config(free_port(), [{"name": "leak", "python": "leaky:Leak"}]),
                     workers=2)
    s.leaks_expected = True          # this test's leak: not the suite's business
    live = live_objects(s)
    assert sorted(w["pid"] for w in live["workers"]) == sorted(s.worker_pids())
    assert live["total"] == {"exchange": 0, "downstream": 0, "upstream": 0, "tls": 0}

    assert httpx.get(s.url + "/").text == "ok"
    live = eventually(lambda: (live := live_objects(s))["total"]["tls"] == 1 and live)
    leaky = [w for w in live["workers"] if w["live"]["tls"]]
    assert len(leaky) == 1 and leaky[0]["live"]["tls"] == 1

    assert s.stop(signal.SIGTERM) == 0        # a leak is reported, not a failed exit
    lines = leaked_at_exit(s)
    assert len(lines) == 1, lines
    assert f"debug build: worker {leaky[0]['pid']} has {LEAK_AT_EXIT}: tls=1" in lines[0]

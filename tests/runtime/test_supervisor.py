"""The binary's process model: SO_REUSEPORT workers, restart of a dead worker, drain on SIGTERM."""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import subprocess
import sys
import time

import httpx

from support import ROOT, eventually, free_port, simple_config


def test_two_workers_serve_and_a_killed_worker_is_restarted(upstream, start_sluice):
    s = start_sluice(simple_config(free_port(), {"up": [upstream.address]}), workers=2)
    pids = s.worker_pids()
    assert len(pids) == 2
    os.kill(pids[0], signal.SIGKILL)
    eventually(lambda: len(s.worker_pids()) == 2 and pids[0] not in s.worker_pids())
    eventually(lambda: s.admin("/ready").status == 200)    # the new worker serves
    for _ in range(20):
        assert httpx.get(s.url + "/echo").status_code == 200


def test_sigterm_drains_in_flight_requests_then_exits_zero(upstream, start_sluice):
    s = start_sluice(simple_config(free_port(), {"up": [upstream.address]}), workers=2)
    with cf.ThreadPoolExecutor(4) as ex:
        futures = [ex.submit(httpx.get, s.url + "/slow/1500", timeout=10) for _ in range(4)]
        deadline = time.monotonic() + 10     # wait until all four are in flight upstream
        while upstream.stats()["slow_started"] < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        s.proc.send_signal(signal.SIGTERM)
        assert [f.result().status_code for f in futures] == [200] * 4
    assert s.proc.wait(15) == 0


def test_invalid_config_exits_1_with_the_reason(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("listeners:\n  - name: main\n    address: 127.0.0.1:1\n    routes: [nope]\n"
                   "routes: []\nclusters: []\n")
    out = subprocess.run([sys.executable, "-m", "engine", "run", "-c", str(bad)], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "listeners[0].routes" in out.stderr and "Traceback" not in out.stderr


def test_address_in_use_exits_1(upstream, tmp_path):
    cfg = simple_config(upstream.port, {"up": [upstream.address]})
    import yaml
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([sys.executable, "-m", "engine", "run", "-c", str(path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "cannot listen" in out.stderr

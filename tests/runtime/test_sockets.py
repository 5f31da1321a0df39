"""engine/runtime/sockets.py with real processes: the accept backlog each worker really gets, and
the refusal to start a second sluice on an address the first one serves (security issue, item 6).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import yaml

from support import ROOT, free_port, simple_config


def _listen_backlogs(port: int) -> list[int]:
    """Send-Q of each socket listening on `port`: for a listener, the backlog it was given."""
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout
    return [int(line.split()[2]) for line in out.splitlines() if line.strip()]


def _wait_ready(admin: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            if httpx.get(f"http://{admin}/ready").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "never ready"
        time.sleep(0.05)


def test_every_worker_listens_with_the_full_backlog(upstream, start_sluice):
    with open("/proc/sys/net/core/somaxconn") as f:
        expected = min(4096, int(f.read()))
    cfg = simple_config(free_port(), {"up": [upstream.address]})
    s = start_sluice(cfg, workers=2)
    _wait_ready(cfg["admin"]["address"])
    assert _listen_backlogs(s.port) == [expected, expected]   # uvloop's default would be 100


def test_a_second_sluice_on_the_same_address_exits_1_and_takes_no_traffic(upstream, start_sluice,
                                                                         tmp_path):
    first = simple_config(free_port(), {"up": [upstream.address]})
    s = start_sluice(first, workers=2)
    _wait_ready(first["admin"]["address"])
    second = dict(first, admin={"address": f"127.0.0.1:{free_port()}"})
    path = tmp_path / "second.yaml"
    path.write_text(yaml.safe_dump(second))
    out = subprocess.run([sys.executable, "-m", "engine", "run", "-c", str(path),
                          "--workers", "1"], cwd=ROOT, capture_output=True, text=True,
                         timeout=30)
    address = first["listeners"][0]["address"]
    assert out.returncode == 1
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert f"cannot listen on {address}: address already in use" in lines[0]
    assert len(_listen_backlogs(s.port)) == 2                  # only the first one's workers
    for _ in range(20):                                        # new connections: all the first's
        assert httpx.get(s.url + "/echo").status_code == 200


def test_restarts_and_a_reload_that_adds_a_listener_still_bind(upstream, start_sluice):
    cfg = simple_config(free_port(), {"up": [upstream.address]})
    s = start_sluice(cfg, workers=2)
    _wait_ready(cfg["admin"]["address"])
    pids = s.worker_pids()
    os.kill(pids[0], signal.SIGKILL)                           # rejoins its sibling's group
    deadline = time.monotonic() + 10
    while len(_listen_backlogs(s.port)) != 2 or pids[0] in s.worker_pids():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    _wait_ready(cfg["admin"]["address"])
    extra_port = free_port()
    cfg["listeners"].append({"name": "extra", "address": f"127.0.0.1:{extra_port}",
                             "routes": ["all"]})
    s.path.write_text(yaml.safe_dump(cfg))
    s.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while len(_listen_backlogs(extra_port)) != 2:
        assert time.monotonic() < deadline, s.stderr_path.read_text()
        time.sleep(0.05)
    assert httpx.get(f"http://127.0.0.1:{extra_port}/echo").status_code == 200
    assert httpx.get(s.url + "/echo").status_code == 200


def test_a_reload_adding_an_address_another_process_holds_is_refused(upstream, start_sluice):
    cfg = simple_config(free_port(), {"up": [upstream.address]})
    s = start_sluice(cfg)
    _wait_ready(cfg["admin"]["address"])
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)   # would let us join
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(8)
    taken = squatter.getsockname()[1]
    try:
        cfg["listeners"].append({"name": "extra", "address": f"127.0.0.1:{taken}",
                                 "routes": ["all"]})
        s.path.write_text(yaml.safe_dump(cfg))
        s.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "already in use" not in s.stderr_path.read_text():
            assert time.monotonic() < deadline, s.stderr_path.read_text()
            time.sleep(0.05)
        assert f"cannot listen on 127.0.0.1:{taken}" in s.stderr_path.read_text()
        assert _listen_backlogs(taken) == [8]
    finally:
        squatter.close()

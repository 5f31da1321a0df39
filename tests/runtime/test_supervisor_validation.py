"""Validation of a new config runs once, in the supervisor, off its event loop (security issue,
item 7): while a 10,000-route snapshot is checked, the admin API answers and a dead worker is
restarted; the workers get the validated config and do not check it again."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx

from support import free_port, simple_config

ROUTES = 10_000


def _big_snapshot(port: int, admin: str, upstream: str) -> bytes:
    """Built without the linter (the test's own time), checked in full by the supervisor."""
    from engine.policy import Config
    from engine.policy.snapshot import encode_snapshot

    data = {
        "admin": {"address": admin},
        "listeners": [{"name": "main", "address": f"127.0.0.1:{port}",
                       "routes": [f"r{i}" for i in range(ROUTES)] + ["all"]}],
        "routes": [{"name": f"r{i}", "match": {"path": f"/route/{i}"},
                    "direct_response": {"status": 200, "body": f"route {i}"}}
                   for i in range(ROUTES)]
                  + [{"name": "all", "match": {"path_prefix": "/"}, "to": [{"cluster": "up"}]}],
        "clusters": [{"name": "up", "endpoints": [{"address": upstream}]}],
    }
    return encode_snapshot(Config.model_validate(data), "big.yaml")


def test_ready_answers_and_a_dead_worker_restarts_while_a_big_snapshot_is_validated(
        upstream, start_sluice):
    cfg = simple_config(free_port(), {"up": [upstream.address]})
    admin = "http://" + cfg["admin"]["address"]
    s = start_sluice(cfg, workers=2)
    deadline = time.monotonic() + 15
    while httpx.get(admin + "/ready").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    big = _big_snapshot(s.port, cfg["admin"]["address"], upstream.address)

    order: list[str] = []
    result: dict = {}

    def put() -> None:
        r = httpx.put(admin + "/snapshot", content=big, timeout=600)
        result["put"] = r
        order.append("put returned")

    putter = threading.Thread(target=put)
    putter.start()
    try:
        # wait until the supervisor says it is checking the snapshot; it can only say so from
        # its event loop, while the check runs
        while True:
            assert "put returned" not in order, "the PUT returned before any check was seen"
            dump = httpx.get(admin + "/config_dump", timeout=600).json()
            if dump["validating"]:
                break
        ready = httpx.get(admin + "/ready", timeout=600)
        order.append(f"ready {ready.status_code} while validating")
        victim = s.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
    finally:
        putter.join()
    assert order == ["ready 200 while validating", "put returned"]
    assert result["put"].status_code == 200, result["put"].text
    deadline = time.monotonic() + 30                # the restarted worker catches up too
    while httpx.get(admin + "/ready").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pids = s.worker_pids()
    assert len(pids) == 2 and victim not in pids
    for _ in range(10):                             # fresh connections: both workers
        assert httpx.get(s.url + f"/route/{ROUTES - 1}").text == f"route {ROUTES - 1}"

"""Hot reload: the file changes (in place, atomic rename, ConfigMap symlink swap), SIGHUP, and
PUT /snapshot. A refused config changes nothing that serves; under load, a swap drops nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import yaml

from support import ROOT, eventually, free_port, wait_port


def versioned(port: int, upstream_addr: str, version: str, admin: int | None = None) -> dict:
    cfg = {
        "listeners": [{"name": "main", "address": f"127.0.0.1:{port}",
                       "routes": ["direct", "proxied"]}],
        "routes": [
            {"name": "direct", "match": {"path": "/version"},
             "direct_response": {"status": 200, "body": version}},
            {"name": "proxied", "match": {"path_prefix": "/"},
             "rewrite": {"set_headers": {"x-config": version}},
             "to": [{"cluster": "up"}]},
        ],
        "clusters": [{"name": "up", "endpoints": [{"address": upstream_addr}]}],
    }
    cfg["admin"] = {"address": f"127.0.0.1:{admin or free_port()}"}
    return cfg


def metric(admin_url: str, line_start: str) -> float:
    for line in httpx.get(admin_url + "/stats/prometheus").text.splitlines():
        if line.startswith(line_start):
            return float(line.split()[-1])
    raise AssertionError(f"no {line_start} in /stats/prometheus")


def body(url: str) -> str:
    return httpx.get(url, timeout=5).text


def test_file_rewritten_in_place_is_applied(upstream, start_sluice):
    port = free_port()
    s = start_sluice(versioned(port, upstream.address, "v1"), workers=2)
    assert body(s.url + "/version") == "v1"
    s.path.write_text(yaml.safe_dump(versioned(port, upstream.address, "v2")))
    eventually(lambda: all(body(s.url + "/version") == "v2" for _ in range(10)))


def test_atomic_rename_is_applied(upstream, start_sluice, tmp_path):
    port = free_port()
    s = start_sluice(versioned(port, upstream.address, "v1"))
    tmp = tmp_path / "next.yaml"
    tmp.write_text(yaml.safe_dump(versioned(port, upstream.address, "v2")))
    os.replace(tmp, s.path)
    eventually(lambda: body(s.url + "/version") == "v2")


def test_sighup_rereads_a_file_no_watcher_event_announced(upstream, tmp_path):
    """SIGHUP re-reads the file even when no watcher event came (a network filesystem, say).
    The config path is a symlink into another directory: the watcher watches the link's
    directory, so writing the target there is a change it never hears of. Only SIGHUP can
    bring v2 in, and the log must say SIGHUP did."""
    port = free_port()
    (tmp_path / "real").mkdir()
    (tmp_path / "watched").mkdir()
    target = tmp_path / "real" / "sluice.yaml"
    target.write_text(yaml.safe_dump(versioned(port, upstream.address, "v1")))
    os.symlink(target, tmp_path / "watched" / "sluice.yaml")
    stderr = open(tmp_path / "stderr.txt", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "engine", "run", "-c",
                             str(tmp_path / "watched" / "sluice.yaml"), "--workers", "1",
                             "--access-log", "off"], cwd=ROOT, stderr=stderr)
    try:
        wait_port(port, proc=proc)
        url = f"http://127.0.0.1:{port}"
        assert body(url + "/version") == "v1"
        target.write_text(yaml.safe_dump(versioned(port, upstream.address, "v2")))
        proc.send_signal(signal.SIGHUP)
        eventually(lambda: body(url + "/version") == "v2")
        applied = [x for x in (tmp_path / "stderr.txt").read_text().splitlines()
                   if "applied snapshot" in x]
        assert len(applied) == 1 and "(SIGHUP)" in applied[0], applied
    finally:
        proc.terminate()
        proc.wait(30)
        stderr.close()


def test_configmap_symlink_swap_is_applied(upstream, tmp_path):
    # The layout Kubernetes mounts: file -> ..data/file, ..data -> ..v1 (swapped atomically)
    port = free_port()
    mount = tmp_path / "mount"
    (mount / "..v1").mkdir(parents=True)
    (mount / "..v1" / "sluice.yaml").write_text(
        yaml.safe_dump(versioned(port, upstream.address, "v1")))
    os.symlink("..v1", mount / "..data")
    os.symlink("..data/sluice.yaml", mount / "sluice.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "engine", "run", "-c",
                             str(mount / "sluice.yaml"), "--workers", "1", "--access-log", "off"],
                            cwd=ROOT)
    try:
        wait_port(port, proc=proc)
        url = f"http://127.0.0.1:{port}"
        assert body(url + "/version") == "v1"
        (mount / "..v2").mkdir()
        (mount / "..v2" / "sluice.yaml").write_text(
            yaml.safe_dump(versioned(port, upstream.address, "v2")))
        os.symlink("..v2", mount / "..data_tmp")
        os.replace(mount / "..data_tmp", mount / "..data")
        eventually(lambda: body(url + "/version") == "v2")
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_bad_config_is_refused_and_the_running_one_stays(upstream, start_sluice):
    port = free_port()
    s = start_sluice(versioned(port, upstream.address, "v1"))
    admin = f"http://{s.config['admin']['address']}"
    version = httpx.get(admin + "/config_dump").json()["version"]

    def rejected(n: int, reason: str):
        def check():
            assert metric(admin, 'sluice_reloads_total{result="rejected"}') >= n
            dump = httpx.get(admin + "/config_dump").json()
            rejection = dump["last_rejection"]
            assert rejection and reason in " ".join(rejection["reason"]), rejection
            return dump
        return check

    s.path.write_text("listeners: [\n")                       # YAML syntax error
    eventually(rejected(1, "sluice.yaml"))
    bad = versioned(port, upstream.address, "v2")
    bad["routes"][1]["to"] = [{"cluster": "missing"}]        # a dangling reference
    s.path.write_text(yaml.safe_dump(bad))
    dump = eventually(rejected(2, "missing"))
    # both were refused: the version in force and every worker's are the first one's
    assert dump["version"] == version and [w["version"] for w in dump["workers"]] == [version]
    assert metric(admin, 'sluice_reloads_total{result="applied"}') == 0
    assert body(s.url + "/version") == "v1"
    assert httpx.get(s.url + "/echo").status_code == 200
    err = s.stderr_path.read_text()
    assert "refused" in err and "missing" in err


def test_put_snapshot_under_load_100_swaps_drop_nothing(upstream, start_sluice):
    from engine.policy import load_config_text
    from engine.policy.snapshot import encode_snapshot

    port, admin = free_port(), free_port()
    configs = {v: versioned(port, upstream.address, v, admin) for v in ("blue", "green")}
    snapshots = {v: encode_snapshot(load_config_text(yaml.safe_dump(c), f"{v}.yaml"), f"{v}.yaml")
                 for v, c in configs.items()}
    s = start_sluice(configs["blue"], workers=2)
    admin_url = f"http://127.0.0.1:{admin}"
    eventually(lambda: httpx.get(admin_url + "/ready").status_code == 200)

    stop = threading.Event()
    failures: list = []
    observed: list[tuple[float, float, str]] = []   # (request sent, answer read, version seen)
    lock = threading.Lock()

    def client(path: str) -> None:
        with httpx.Client(timeout=10) as c:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    r = c.get(s.url + path)
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    failures.append(r.status_code)
                    continue
                answered = time.monotonic()
                seen = r.text if path == "/version" else dict(r.json()["headers"])["x-config"]
                with lock:
                    observed.append((sent, answered, seen))

    threads = [threading.Thread(target=client, args=(p,)) for p in ("/version", "/echo") * 2]
    for t in threads:
        t.start()
    swaps: list[tuple[float, float, str]] = []   # (put sent, put answered, version)
    try:
        for i in range(100):
            version = "green" if i % 2 == 0 else "blue"
            started = time.monotonic()
            r = httpx.put(admin_url + "/snapshot", content=snapshots[version], timeout=30)
            assert r.status_code == 200, r.text
            swaps.append((started, time.monotonic(), version))
            time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert len(observed) > 200
    # A request sent after a swap was acknowledged, and answered before the next swap began,
    # must be answered by the new config. (Its answer, not its send time, bounds it: a client
    # thread can stall between noting the time and sending, and a swap is quick.)
    checked = 0
    for (_, acked, version), nxt in zip(swaps, swaps[1:] + [(float("inf"), 0, "")]):
        for sent, answered, seen in observed:
            if acked < sent and answered < nxt[0]:
                assert seen == version
                checked += 1
    assert checked > 50

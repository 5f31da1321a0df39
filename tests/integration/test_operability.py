"""What an operator reads: the access log (fields, combined format, SIGUSR1 reopen), the
counters of failing upstreams and refused requests, reloads and the build, over real processes."""

from __future__ import annotations

import json
import os
import re
import signal

import httpx
import yaml

from hostile import HostileUpstream, read_head
from support import eventually, free_port, simple_config


def metrics(s) -> str:
    return httpx.get(f"http://{s.config['admin']['address']}/stats/prometheus").text


def value(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.split()[-1])
    raise AssertionError(f"no {line_start} in\n{text}")


def test_access_log_line_has_client_host_agent_protocol_and_upstream_times(upstream, start_sluice):
    s = start_sluice(simple_config(free_port(), {"up": [upstream.address]}))
    httpx.get(s.url + "/echo", headers={"x-request-id": "op-1", "user-agent": "probe/1"})

    def line():
        recs = [r for r in s.access_log() if r["request_id"] == "op-1"]
        assert recs
        return recs[0]

    rec = eventually(line)
    assert rec["client"] == "127.0.0.1" and isinstance(rec["client_port"], int)
    assert rec["host"] == f"127.0.0.1:{s.port}" and rec["user_agent"] == "probe/1"
    assert rec["protocol"] == "HTTP/1.1" and rec["status"] == 200
    assert rec["upstream_connect_ms"] >= 0 and rec["upstream_response_ms"] >= rec["upstream_connect_ms"]


def test_combined_format_reads_like_nginx(upstream, start_sluice):
    cfg = simple_config(free_port(), {"up": [upstream.address]})
    cfg["access_log"] = {"format": "combined"}
    s = start_sluice(cfg)
    httpx.get(s.url + "/echo?x=1", headers={"user-agent": "probe/2", "referer": "http://r/"})

    def lines():
        text = s.log.read_text() if s.log.exists() else ""
        assert text
        return text.splitlines()

    [line] = eventually(lines)
    assert re.fullmatch(r'127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
                        r'"GET /echo\?x=1 HTTP/1\.1" 200 \d+ "http://r/" "probe/2"', line), line


def test_sigusr1_reopens_the_access_log_after_logrotate_moved_it(upstream, start_sluice):
    s = start_sluice(simple_config(free_port(), {"up": [upstream.address]}), workers=2)
    httpx.get(s.url + "/echo", headers={"x-request-id": "before"})
    eventually(lambda: [r for r in s.access_log() if r["request_id"] == "before"])
    rotated = s.log.with_suffix(".1")
    s.log.rename(rotated)
    pids = s.worker_pids()
    s.proc.send_signal(signal.SIGUSR1)

    def reopened():                                    # every worker writes the new file
        files = {pid: {os.path.realpath(f"/proc/{pid}/fd/{fd}")
                       for fd in os.listdir(f"/proc/{pid}/fd")} for pid in pids}
        assert all(str(s.log) in f and str(rotated) not in f for f in files.values()), files
        return True
    eventually(reopened)
    assert s.proc.poll() is None                       # nobody died of SIGUSR1
    for i in range(8):                                 # both workers get some
        httpx.get(s.url + "/echo", headers={"x-request-id": f"after-{i}"})

    def new_file():
        assert s.log.exists()
        ids = [json.loads(x)["request_id"] for x in s.log.read_text().splitlines()]
        assert len([i for i in ids if i.startswith("after-")]) == 8, ids
        return True
    eventually(new_file)
    assert "after-" not in rotated.read_text()


def test_connect_failures_are_counted_and_logged_once_a_second(start_sluice):
    dead = f"127.0.0.1:{free_port()}"
    s = start_sluice(simple_config(free_port(), {"up": [dead]}))
    for _ in range(5):
        assert httpx.get(s.url + "/x").status_code == 502
    text = metrics(s)
    assert value(text, f'sluice_endpoint_connect_failures_total{{cluster="up",endpoint="{dead}"}}') == 5
    assert value(text, 'sluice_cluster_connect_failures_total{cluster="up"}') == 5
    logged = [x for x in s.stderr_path.read_text().splitlines() if "connect failed" in x]
    assert 1 <= len(logged) <= 2, logged                 # not one line per request


def test_upstream_resets_are_counted(start_sluice):
    def reset_mid_body(conn, index):
        read_head(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")

    up = HostileUpstream(reset_mid_body)
    try:
        s = start_sluice(simple_config(free_port(), {"up": [up.address]}))
        try:
            httpx.get(s.url + "/x")
        except httpx.HTTPError:
            pass                                        # the client sees the connection cut
        eventually(lambda: value(metrics(s), 'sluice_cluster_resets_total{cluster="up"}') == 1)
    finally:
        up.stop()


def test_rate_limited_requests_reloads_and_build_info_are_exported(upstream, start_sluice):
    routes = [{"name": "lim", "match": {"path_prefix": "/"}, "to": [{"cluster": "up"}],
               "rate_limit": {"rate": 0.001, "burst": 1}}]
    cfg = simple_config(free_port(), {"up": [upstream.address]}, routes)
    s = start_sluice(cfg)
    codes = [httpx.get(s.url + "/echo").status_code for _ in range(3)]
    assert codes == [200, 429, 429]
    text = metrics(s)
    assert value(text, 'sluice_rate_limited_total{route="lim"}') == 2
    assert re.search(r'^sluice_build_info\{version="[^"]+"\} 1\.0$', text, re.M)
    assert value(text, 'sluice_reloads_total{result="applied"}') == 0
    bad = dict(cfg, routes=[dict(routes[0], to=[{"cluster": "nope"}])])
    s.path.write_text(yaml.safe_dump(bad))
    eventually(lambda: value(metrics(s), 'sluice_reloads_total{result="rejected"}') == 1)
    s.path.write_text(yaml.safe_dump(dict(cfg, routes=[dict(routes[0], name="lim2")],
                                          listeners=[dict(cfg["listeners"][0], routes=["lim2"])])))
    eventually(lambda: value(metrics(s), 'sluice_reloads_total{result="applied"}') == 1)


def test_open_connections_are_a_gauge_per_listener(upstream, start_sluice):
    import socket
    s = start_sluice(simple_config(free_port(), {"up": [upstream.address]}), workers=2)
    held = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(3)]
    try:
        eventually(lambda: value(metrics(s),
                                 'sluice_listener_active_connections{listener="main"}') == 3)
    finally:
        for c in held:
            c.close()
    eventually(lambda: value(metrics(s),
                             'sluice_listener_active_connections{listener="main"}') == 0)

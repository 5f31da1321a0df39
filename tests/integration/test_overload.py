"""Overload shedding through the real binary (issue 11, item 5; engine/runtime/overload.py): a
Python filter on one route blocks the worker's event loop (time.sleep in `request`) for STALL
seconds. With `overload.max_loop_delay: 100ms` the requests that arrive meanwhile (HTTP/1.1 on
open and new connections, HTTP/2 on an open one) are answered 503 with
`x-sluice-overloaded: true` once the loop runs again, and once it is quiet, requests
pass. Without an `overload` block the same stall sheds nothing: the requests wait and pass.

The attack is the stall itself: one slow filter (or a flood) used to make every request of the
worker queue behind it; now the worker says so at once."""

from __future__ import annotations

import socket
import textwrap
import time

import pytest

from support import free_port

STALL = 0.8           # seconds the filter blocks the worker's loop
WAIT = 15.0           # generous bound for what must happen "soon" (no speed is asserted)


@pytest.fixture
def stall_filter(tmp_path, monkeypatch):
    """A module on the sluice process's path with `Stall`, a filter that writes a marker file,
    then blocks the event loop for `seconds`; returns the marker's path."""
    pkg = tmp_path / "mods"
    pkg.mkdir()
    (pkg / "stallfilter.py").write_text(textwrap.dedent("""
        import time
        import engine

        class Stall(engine.Filter):
            def __init__(self, seconds, marker):
                self.seconds = seconds
                self.marker = marker

            def request(self, ctx):
                open(self.marker, "w").close()
                time.sleep(self.seconds)          # the loop is blocked: nothing else runs
                return None
    """))
    import os
    monkeypatch.setenv("PYTHONPATH", f"{pkg}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return tmp_path / "stalling"


def config(marker, overload: dict | None) -> dict:
    cfg = {
        "admin": {"address": f"127.0.0.1:{free_port()}"},
        "listeners": [{"name": "main", "address": f"127.0.0.1:{free_port()}",
                       "protocols": ["http1", "http2"],       # h2c prior knowledge too
                       "routes": ["stall", "rest"]}],
        "routes": [
            {"name": "stall", "match": {"path": "/stall"}, "filters": ["stall"],
             "direct_response": {"status": 200, "body": "stalled"}},
            {"name": "rest", "match": {"path_prefix": "/"},
             "direct_response": {"status": 200, "body": "ok"}},
        ],
        "filters": [{"name": "stall", "python": "stallfilter:Stall",
                     "config": {"seconds": STALL, "marker": str(marker)}}],
    }
    if overload is not None:
        cfg["overload"] = overload
    return cfg


def metric(s, name: str) -> float:
    for line in s.admin("/stats/prometheus").body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not rendered")


def send(c: socket.socket, path: str) -> None:
    c.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())


def answer(c: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one response on a keep-alive connection."""
    c.settimeout(WAIT)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = c.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict((k.strip().lower(), v.strip()) for k, v in
                   (line.split(":", 1) for line in lines[1:]))
    while len(body) < int(headers.get("content-length", 0)):
        body += c.recv(65536)
    return int(lines[0].split()[1]), headers, body


def get(c: socket.socket, path: str = "/") -> tuple[int, dict[str, str], bytes]:
    send(c, path)
    return answer(c)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=WAIT)


def during_a_stall(s, marker) -> tuple[list, tuple]:
    """Block the worker with /stall; while it is blocked, send a request on each of three open
    keep-alive connections, on a new one, and on an open HTTP/2 connection (h2c). Returns (their
    answers, the /stall answer)."""
    from h2peer import H2Peer

    held = [connect(s.port) for _ in range(3)]
    for c in held:
        assert get(c)[0] == 200                    # open and served before the stall
    h2 = H2Peer(s.port, timeout=WAIT)
    assert h2.response(h2.request("/"))[0] == 200
    staller = connect(s.port)
    send(staller, "/stall")
    deadline = time.monotonic() + WAIT
    while not marker.exists():                     # the filter runs: the loop is blocked now
        assert time.monotonic() < deadline, "the stall never started"
        time.sleep(0.005)
    late = connect(s.port)                         # accepted only after the stall
    for c in held + [late]:
        send(c, "/")
    stream = h2.request("/")
    answers = [answer(c) for c in held + [late]]
    status, headers, body, _ = h2.response(stream)
    answers.append((status, headers, body))
    stalled = answer(staller)
    for c in held + [late, staller]:
        c.close()
    h2.close()
    return answers, stalled


def test_requests_that_queue_behind_a_stalled_loop_are_shed_then_served_again(
        stall_filter, start_sluice):
    s = start_sluice(config(stall_filter, {"max_loop_delay": "100ms"}))
    answers, stalled = during_a_stall(s, stall_filter)
    assert stalled[0] == 200 and stalled[2] == b"stalled"   # the request in flight goes on
    for status, headers, _ in answers:
        assert status == 503
        assert headers.get("x-sluice-overloaded") == "true"
    # the loop is quiet again: within a sample or two the worker takes requests
    deadline = time.monotonic() + WAIT
    with connect(s.port) as c:
        while (got := get(c))[0] != 200:
            assert got[0] == 503 and time.monotonic() < deadline, got
        assert [get(c)[0] for _ in range(5)] == [200] * 5
    assert metric(s, "sluice_overload_shed_total") >= len(answers)
    assert metric(s, "sluice_worker_loop_lag_seconds") > 0.1     # the stall, held as a peak
    log = s.stderr_path.read_text()
    assert log.count("overloaded: its event loop ran") == 1, log
    assert log.count("recovered") == 1, log


def test_without_an_overload_block_a_stall_sheds_nothing(stall_filter, start_sluice):
    s = start_sluice(config(stall_filter, None))
    answers, stalled = during_a_stall(s, stall_filter)
    assert stalled[0] == 200
    assert [a[0] for a in answers] == [200] * 5
    assert all("x-sluice-overloaded" not in a[1] for a in answers)
    assert "overloaded" not in s.stderr_path.read_text()
    assert metric(s, "sluice_overload_shed_total") == 0
    assert metric(s, "sluice_worker_loop_lag_seconds") > 0.1     # measured all the same

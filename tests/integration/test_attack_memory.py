"""One connection must not grow a worker's memory without limit (issue: security hardening,
item 4). Pipelined requests behind a hanging upstream, and pipelined requests whose replies the
client never reads: sluice stops reading the client once PIPELINE_BUFFER (1 MiB) of input waits
or the client's write buffer is full, so the kernel's socket buffers hold the rest.

nginx under the same attacks stays flat (it reads one request at a time)."""

from __future__ import annotations

import socket
import time

import pytest

from hostile import HostileUpstream, read_head
from support import free_port, rss_kb, simple_config

GROWTH_BOUND_KB = 24 * 1024     # unbounded, these attacks add tens of MiB a second


def push(port: int, request: bytes, seconds: float, total: int) -> tuple[socket.socket, int]:
    """Send `request` over and over without reading, for `seconds` or `total` bytes."""
    c = socket.create_connection(("127.0.0.1", port))
    c.setblocking(False)
    block = request * max(1, 65536 // len(request))
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and sent < total:
        try:
            sent += c.send(block)
        except BlockingIOError:
            time.sleep(0.01)
    return c, sent


def test_pipelined_requests_behind_a_hanging_upstream_are_bounded(start_sluice):
    def hang(conn, index):
        read_head(conn)
        time.sleep(20)

    up = HostileUpstream(hang)
    try:
        s = start_sluice(simple_config(free_port(), {"up": [up.address]}))
        (worker,) = s.worker_pids()
        before = rss_kb(worker)
        c, sent = push(s.port, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", 4, 512 << 20)
        growth = rss_kb(worker) - before
        c.close()
        assert sent < 64 << 20, f"{sent} bytes accepted: the client was never paused"
        assert growth < GROWTH_BOUND_KB, f"worker grew {growth} KiB"
    finally:
        up.stop()


def test_unread_pipelined_local_replies_are_bounded(start_sluice):
    # 404s: each reply is a new bytes object (a direct response's cached reply would be
    # the same object queued many times, which hides the growth)
    routes = [{"name": "ok", "match": {"path": "/only"},
               "direct_response": {"status": 200, "body": "x"}}]
    s = start_sluice(simple_config(free_port(), routes=routes))
    (worker,) = s.worker_pids()
    before = rss_kb(worker)
    c, sent = push(s.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 4, 512 << 20)
    growth = rss_kb(worker) - before
    c.close()
    assert growth < GROWTH_BOUND_KB, f"worker grew {growth} KiB after {sent} bytes"
    assert sent < 64 << 20, f"{sent} bytes accepted: the client was never paused"

"""Client-side timeouts (issue: security hardening, item 5), as attacks by hostile clients over
real sockets. Each timeout here is set short in the config so the test is quick; the defaults
(header 10s, idle 60s, request_body 30s, send 30s, route 15s) are checked in the model tests.

nginx under the same attacks: client_header_timeout, keepalive_timeout, client_body_timeout and
send_timeout close the connection (408 is logged, not always sent)."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from hostile import HostileUpstream, closed_within, read_head
from support import free_port, simple_config


def config(upstream_address: str, **timeouts) -> dict:
    cfg = simple_config(free_port(), {"up": [upstream_address]})
    cfg["listeners"][0]["timeouts"] = timeouts
    return cfg


def test_slowloris_head_gets_408_and_is_closed(upstream, start_sluice):
    s = start_sluice(config(upstream.address, header="1s"))
    victims = []
    for _ in range(20):
        c = socket.create_connection(("127.0.0.1", s.port))
        c.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-a: ")    # and never the rest
        victims.append(c)
    for c in victims:
        out = closed_within(c, 10)
        assert out.startswith(b"HTTP/1.1 408 "), out
        c.close()
    assert httpx.get(s.url + "/echo").status_code == 200


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(upstream, start_sluice):
    s = start_sluice(config(upstream.address, header="1s"))
    with socket.create_connection(("127.0.0.1", s.port)) as c:
        assert closed_within(c, 10) == b""


def test_idle_keep_alive_connection_is_closed(upstream, start_sluice):
    s = start_sluice(config(upstream.address, idle="1s"))
    with socket.create_connection(("127.0.0.1", s.port)) as c:
        c.sendall(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
        out = closed_within(c, 10)
        assert out.startswith(b"HTTP/1.1 200 ")


def test_stalled_request_body_gets_408_and_frees_the_upstream(upstream, start_sluice):
    s = start_sluice(config(upstream.address, request_body="1s"))
    with socket.create_connection(("127.0.0.1", s.port)) as c:
        c.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
        out = closed_within(c, 10)
        assert b" 408 " in out.split(b"\r\n", 1)[0] or out == b"", out
    assert httpx.get(s.url + "/echo").status_code == 200


def test_http09_request_line_is_answered_400_at_once(upstream, start_sluice):
    s = start_sluice(config(upstream.address))
    with socket.create_connection(("127.0.0.1", s.port)) as c:
        c.sendall(b"GET /\r\n")
        out = closed_within(c, 5)             # not held until a timeout
        assert out.startswith(b"HTTP/1.1 400 "), out


def test_a_client_that_stops_reading_is_dropped_and_its_upstream_freed(start_sluice):
    """A slow reader of a large response: the upstream read pauses at the high-water mark and
    the send timeout drops the client; the upstream connection is released."""
    closed = []

    def big(conn, index):
        buf = bytearray()
        if read_head(conn, buf) is None:
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n")
        chunk = b"x" * 65536
        try:
            for _ in range(1600):
                conn.sendall(chunk)
        except OSError:
            closed.append(index)

    up = HostileUpstream(big)
    try:
        s = start_sluice(config(up.address, send="1s"))
        c = socket.create_connection(("127.0.0.1", s.port))
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        time.sleep(0.3)
        c.recv(1000)                            # it started, then we stop reading
        deadline = time.monotonic() + 15
        while not closed and time.monotonic() < deadline:
            time.sleep(0.1)
        assert closed, "the upstream connection was never released"
        c.close()
    finally:
        up.stop()


def test_upstream_that_never_answers_gets_504_from_the_route_timeout(start_sluice):
    def hang(conn, index):
        read_head(conn)
        time.sleep(30)

    up = HostileUpstream(hang)
    try:
        cfg = config(up.address)
        cfg["routes"][0]["timeout"] = "1s"
        s = start_sluice(cfg)
        r = httpx.get(s.url + "/", timeout=20)
        assert r.status_code == 504
    finally:
        up.stop()


def test_max_connection_duration_closes_after_the_exchange(upstream, start_sluice):
    s = start_sluice(config(upstream.address, max_connection_duration="1s", idle="0s"))
    with socket.create_connection(("127.0.0.1", s.port)) as c:
        c.sendall(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
        assert closed_within(c, 10).startswith(b"HTTP/1.1 200 ")


def test_timeouts_are_counted(upstream, start_sluice):
    s = start_sluice(config(upstream.address, header="1s"))
    with socket.create_connection(("127.0.0.1", s.port)) as c:
        c.sendall(b"GET / HTTP/1.1\r\n")
        closed_within(c, 10)
    text = httpx.get(f"http://{s.config['admin']['address']}/stats/prometheus").text
    assert 'sluice_downstream_timeouts_total{kind="header"} 1.0' in text, text

"""Smaller request and response tricks (issue: security hardening, item 9), each as an attack
over real sockets: interim responses that leak into the status line, HTTP/1.0 upstream status
lines, absolute-form authorities and Host values that a Host check would refuse, h2c upgrade
smuggling, duplicate Content-Length.

nginx: 400 for an invalid Host, a duplicate Content-Length or userinfo in the request-target;
it does not forward Upgrade: h2c to a proxy_pass upstream unless told to."""

from __future__ import annotations

import socket

import pytest

from hostile import HostileUpstream, closed_within
from support import free_port, simple_config


def exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(data)
        return closed_within(c, 10)


def answering(response: bytes):
    def handler(conn, index):
        buf = bytearray()
        while True:
            head = up.head(conn, buf)
            if head is None:
                return
            conn.sendall(response)
    up = HostileUpstream(handler)
    return up


@pytest.mark.parametrize("interim", [b"HTTP/1.1 100 Continue\r\n\r\n",
                                     b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"])
@pytest.mark.parametrize("version", [b"1.1", b"1.0"])
def test_interim_response_in_the_same_read_does_not_leak_into_the_status_line(start_sluice, interim, version):
    up = answering(interim + b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
    try:
        s = start_sluice(simple_config(free_port(), {"up": [up.address]}))
        out = exchange(s.port, b"GET / HTTP/" + version + b"\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 201 Created\r\n"), out
        assert out.endswith(b"\r\n\r\nok")
    finally:
        up.stop()


def test_http10_upstream_status_line_is_rewritten_to_http11(start_sluice):
    up = answering(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    try:
        s = start_sluice(simple_config(free_port(), {"up": [up.address]}))
        out = exchange(s.port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200 OK\r\n"), out
    finally:
        up.stop()


@pytest.mark.parametrize("head", [
    b"GET http://user:pw@internal/admin HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET http://internal:99999/ HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET http://a,b/ HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET gopher://internal/ HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a,b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2, 2\r\n\r\nok",
])
def test_requests_a_host_check_refuses_are_400_and_never_forwarded(upstream, start_sluice, head):
    s = start_sluice(simple_config(free_port(), {"up": [upstream.address]}))
    out = exchange(s.port, head)
    assert out.startswith(b"HTTP/1.1 400 "), out
    assert upstream.stats()["requests"] == 1          # the /stats call itself


def test_absolute_form_authority_replaces_host(upstream, start_sluice):
    s = start_sluice(simple_config(free_port(), {"up": [upstream.address]}))
    out = exchange(s.port, b"GET http://Example.com:8080/echo?q HTTP/1.1\r\nHost: other\r\n"
                           b"Connection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 "), out
    assert b'"host", "Example.com:8080"' in out.lower() or b"example.com:8080" in out.lower()


def test_h2c_upgrade_is_never_offered_to_the_upstream(start_sluice):
    up = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    try:
        s = start_sluice(simple_config(free_port(), {"up": [up.address]}))
        out = exchange(s.port, b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n"
                               b"Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"
                               b"\r\nGET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert out.count(b"HTTP/1.1 200 OK") == 2, out       # two plain exchanges, no tunnel
        for head in up.heads:
            lower = head.lower()
            assert b"upgrade" not in lower and b"http2-settings" not in lower, head
    finally:
        up.stop()

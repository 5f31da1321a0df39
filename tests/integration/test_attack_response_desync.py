"""Response queue poisoning (issue: security hardening, item 1), as attacks by a hostile
upstream. A pooled upstream connection that goes back to the pool with bytes buffered past the
end of a response hands those bytes to the next client as its response. sluice pools only a
connection with nothing unread, and counts the event (sluice_upstream_extra_data_total).

nginx under the same attacks: it closes the upstream connection ("upstream sent more data than
specified in Content-Length" and friends), so the next client gets a fresh connection."""

from __future__ import annotations

import socket

import httpx
import pytest

from hostile import HostileUpstream
from support import free_port, simple_config

POISON = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON"
VICTIM = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nvictim"


def reflecting(conn: socket.socket, index: int, up: HostileUpstream) -> None:
    buf = bytearray()
    while True:
        head = up.head(conn, buf)
        if head is None:
            return
        line = head.split(b"\r\n", 1)[0]
        if b" /extra " in line:       # more bytes than Content-Length, in the same write
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + POISON)
        elif line.startswith(b"HEAD "):   # a body after a HEAD response
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 44\r\n\r\n" + POISON)
        elif b" /204 " in line:       # a body after a 204
            conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n" + POISON)
        elif b" /double " in line:    # two responses to one request
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst" + POISON)
        else:
            conn.sendall(VICTIM)


@pytest.fixture
def hostile():
    holder: list[HostileUpstream] = []
    up = HostileUpstream(lambda conn, i: reflecting(conn, i, holder[0]))
    holder.append(up)
    yield up
    up.stop()


@pytest.fixture
def proxy(hostile, start_sluice):
    cfg = simple_config(free_port(), {"up": [hostile.address]})
    cfg["clusters"][0]["pool"] = {"max_connections": 1}    # every exchange would reuse it
    return start_sluice(cfg)


@pytest.mark.parametrize("method,path", [("GET", "/extra"), ("HEAD", "/anything"),
                                         ("GET", "/204"), ("GET", "/double")])
def test_bytes_after_a_response_never_reach_the_next_client(proxy, hostile, method, path):
    attacker = httpx.request(method, proxy.url + path)
    assert attacker.status_code in (200, 204)
    assert b"POISON" not in attacker.content
    for _ in range(3):
        victim = httpx.get(proxy.url + "/victim")       # a new client each time
        assert victim.content == b"victim", victim.content
    # the poisoned connection was closed, not pooled: every victim had a clean one
    assert hostile.connections >= 2


def test_extra_data_is_counted(proxy, hostile):
    httpx.get(proxy.url + "/extra")
    httpx.get(proxy.url + "/victim")
    admin = proxy.config["admin"]["address"]
    text = httpx.get(f"http://{admin}/stats/prometheus").text
    line = [x for x in text.splitlines() if x.startswith("sluice_upstream_extra_data_total")]
    assert line and float(line[0].split()[-1]) >= 1, text
    assert "sent more data than its response" in proxy.stderr_path.read_text()


def test_a_body_sent_after_head_does_not_become_the_next_requests_502(start_sluice):
    """The demo's one 502 in about 2,000 requests ("upstream connection broke before a
    response", no retry): its upstream answered HEAD with a body, in the same write as the head.
    The body stayed buffered on the pooled connection, and the next request there read it as
    its response (a malformed status line: 502). Now that connection is closed, not pooled."""
    body = b'{\n  "upstream": 9001\n}\n'

    def careless(conn, index):
        buf = bytearray()
        while True:
            head = up.head(conn, buf)
            if head is None:
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\n\r\n%s" % (len(body), body))

    up = HostileUpstream(careless)
    try:
        cfg = simple_config(free_port(), {"up": [up.address]})
        cfg["clusters"][0]["pool"] = {"max_connections": 1}
        s = start_sluice(cfg)
        with httpx.Client() as c:
            for _ in range(20):
                assert c.head(s.url + "/").status_code == 200
                r = c.get(s.url + "/")
                assert r.status_code == 200 and r.content == body
    finally:
        up.stop()


def test_stray_bytes_arriving_after_reuse_make_a_retry_not_a_502(start_sluice):
    """The race no pooling rule can close: the stray bytes of an earlier response arrive in
    their own segment after the connection went back to the pool and was taken again. They are
    not a response head, so the idempotent request is retried once on a fresh connection."""
    import time

    def late_junk(conn, index):
        buf = bytearray()
        if index == 0:
            if up.head(conn, buf) is None:
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
            up.head(conn, buf)              # the next request arrives on this connection...
            time.sleep(0.1)
            conn.sendall(b"<html>leftover</html>\r\n\r\n")   # ...and gets stale bytes
            time.sleep(1)
            return
        while up.head(conn, buf) is not None:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh")

    up = HostileUpstream(late_junk)
    try:
        s = start_sluice(simple_config(free_port(), {"up": [up.address]}))
        with httpx.Client() as c:
            assert c.get(s.url + "/a").content == b"first"
            r = c.get(s.url + "/b")
        assert (r.status_code, r.content) == (200, b"fresh")
        assert up.connections == 2
    finally:
        up.stop()

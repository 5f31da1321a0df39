"""How upstream failures surface to the client (Envoy's mapping) and how the pool recovers."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from hostile import HostileUpstream
from support import eventually, free_port, simple_config, upstream_connections


def test_upstream_refusing_connections_is_502(start_sluice):
    s = start_sluice(simple_config(free_port(), {"up": [f"127.0.0.1:{free_port()}"]}))
    r = httpx.get(s.url + "/echo")
    assert r.status_code == 502


def test_route_timeout_is_504(upstream, start_sluice):
    routes = [{"name": "all", "match": {"path_prefix": "/"}, "timeout": "300ms",
               "to": [{"cluster": "up"}]}]
    s = start_sluice(simple_config(free_port(), {"up": [upstream.address]}, routes))
    r = httpx.get(s.url + "/slow/3000", timeout=10)
    assert r.status_code == 504
    assert httpx.get(s.url + "/slow/10", timeout=10).status_code == 200


def test_requests_wait_for_a_pooled_connection_at_max_connections(upstream, start_sluice):
    cfg = simple_config(free_port(), {"up": [upstream.address]})
    cfg["clusters"][0]["pool"] = {"max_connections": 1}
    s = start_sluice(cfg)
    # one request holds the only connection; the next waits for it, and gets it
    import concurrent.futures as cf
    with cf.ThreadPoolExecutor(4) as ex:
        slow = ex.submit(httpx.get, s.url + "/slow/500", timeout=10)
        eventually(lambda: upstream.stats()["slow_started"] == 1)
        fast = ex.submit(httpx.get, s.url + "/echo", timeout=10)
        assert slow.result().status_code == 200
        assert fast.result().status_code == 200
    assert upstream.stats()["connections"] == 1


def test_client_disconnect_cancels_the_upstream_request(upstream, start_sluice):
    s = start_sluice(simple_config(free_port(), {"up": [upstream.address]}))
    with socket.create_connection(("127.0.0.1", s.port)) as c:
        c.sendall(b"GET /slow/2000 HTTP/1.1\r\nHost: a\r\n\r\n")
        eventually(lambda: upstream.stats()["slow_started"] == 1)
    eventually(lambda: upstream.stats()["cancelled"] == 1)


def stale_after_first(up_box: list):
    """Connection 0 answers its first request, then reads the second and closes without a
    word: the keep-alive race (the upstream timed the connection out just as our request went
    out), made certain. Every later connection answers "fresh"."""
    def handler(conn, index):
        up, buf = up_box[0], bytearray()
        if index == 0:
            if up.head(conn, buf) is None:
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
            up.head(conn, buf)           # the request on the reused connection: never answered
            return
        while up.head(conn, buf) is not None:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh")
    return handler


def test_idempotent_request_on_a_stale_pooled_connection_is_retried(start_sluice):
    box: list = []
    up = HostileUpstream(stale_after_first(box))
    box.append(up)
    try:
        s = start_sluice(simple_config(free_port(), {"up": [up.address]}))
        with httpx.Client() as c:
            assert c.get(s.url + "/one").text == "first"
            r = c.get(s.url + "/two")
        assert (r.status_code, r.text) == (200, "fresh")
        # /two went out on the pooled connection, then once more on a new one
        assert up.connections == 2
        assert [h.split(b" ")[1] for h in up.heads] == [b"/one", b"/two", b"/two"]
    finally:
        up.stop()


def test_a_request_with_a_body_on_a_stale_connection_is_not_retried(start_sluice):
    box: list = []
    up = HostileUpstream(stale_after_first(box))
    box.append(up)
    try:
        s = start_sluice(simple_config(free_port(), {"up": [up.address]}))
        with httpx.Client() as c:
            assert c.get(s.url + "/one").text == "first"
            r = c.post(s.url + "/two", content=b"x" * 10)
        assert r.status_code == 502                 # the upstream may have acted on it
        assert up.connections == 1
    finally:
        up.stop()


def test_a_pooled_connection_that_never_served_is_retried_like_any_reused_one(start_sluice):
    """A connection opened for a client that left before it was connected goes to the pool
    unused. Taken later, it is as exposed to the keep-alive race as any reused connection (the
    upstream may have closed it meanwhile): a GET that finds it closed is retried on a new
    connection, not answered 502. (A request on a connection opened for it is never retried.)"""
    fillers: list[socket.socket] = []
    seen: list[int] = []                 # peer ports of sluice's connections, in accept order

    def handler(conn, index):
        port = conn.getpeername()[1]
        if port in {f.getsockname()[1] for f in fillers}:
            return
        seen.append(port)
        buf = bytearray()
        if len(seen) == 1:
            up.head(conn, buf)           # the first request it carries: closed, unanswered
            return
        while up.head(conn, buf) is not None:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh")

    # an upstream not accepting yet, its accept queue full: sluice's connect hangs (SYN dropped)
    up = HostileUpstream(handler, backlog=0, accepting=False)
    for _ in range(4):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(("127.0.0.1", up.port))
        fillers.append(f)
    try:
        cfg = simple_config(free_port(), {"up": [up.address]})
        cfg["clusters"][0]["connect_timeout"] = "20s"
        cfg["clusters"][0]["pool"] = {"max_connections": 1}   # the next request must take it
        s = start_sluice(cfg)
        with socket.create_connection(("127.0.0.1", s.port)) as c:
            c.sendall(b"GET /gone HTTP/1.1\r\nHost: a\r\n\r\n")
        # the client left while sluice was connecting for it
        eventually(lambda: [r for r in s.access_log() if r["path"] == "/gone"
                            and r["status"] == 499])
        up.accept()                      # the connect completes: the connection goes idle
        r = httpx.get(s.url + "/next", timeout=30)
        assert (r.status_code, r.text) == (200, "fresh"), (r.text, up.heads, seen)
        assert len(seen) == 2
        assert [h.split(b" ")[1] for h in up.heads] == [b"/next", b"/next"]
    finally:
        for f in fillers:
            f.close()
        up.stop()


def test_a_request_whose_own_new_connection_breaks_is_not_retried(start_sluice):
    # only a pooled connection can be stale; a new one that breaks is the upstream failing
    def close_after_head(conn, index):
        up.head(conn, bytearray())

    up = HostileUpstream(close_after_head)
    try:
        s = start_sluice(simple_config(free_port(), {"up": [up.address]}))
        r = httpx.get(s.url + "/x")
        assert (r.status_code, r.text) == (502, "upstream connection broke before a response\n")
        assert up.connections == 1 and len(up.heads) == 1
    finally:
        up.stop()


def test_max_requests_per_connection_retires_connections(upstream, start_sluice):
    cfg = simple_config(free_port(), {"up": [upstream.address]})
    cfg["clusters"][0]["pool"] = {"max_requests_per_connection": 3}
    s = start_sluice(cfg)
    with httpx.Client() as c:
        for _ in range(9):
            assert c.get(s.url + "/echo").status_code == 200
    assert upstream.stats()["connections"] == 3


def test_idle_pooled_connections_are_closed_after_idle_timeout(upstream, start_sluice):
    cfg = simple_config(free_port(), {"up": [upstream.address]})
    cfg["clusters"][0]["pool"] = {"idle_timeout": "1s"}
    s = start_sluice(cfg)
    assert httpx.get(s.url + "/echo").status_code == 200
    [pid] = s.worker_pids()
    assert upstream_connections(pid, upstream.port) == 1
    eventually(lambda: upstream_connections(pid, upstream.port) == 0)   # the sweep closed it
    assert httpx.get(s.url + "/echo").status_code == 200
    assert upstream.stats()["connections"] == 2


def test_no_route_is_404(upstream, start_sluice):
    routes = [{"name": "only", "match": {"path": "/x"}, "to": [{"cluster": "up"}]}]
    s = start_sluice(simple_config(free_port(), {"up": [upstream.address]}, routes))
    assert httpx.get(s.url + "/y").status_code == 404


def test_connect_timeout_is_502(start_sluice):
    # A listener that never accepts, its accept queue full: new SYNs are dropped, so a connect
    # hangs until our connect_timeout.
    black = socket.socket()
    black.bind(("127.0.0.1", 0))
    black.listen(0)
    port = black.getsockname()[1]
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        fillers.append(c)
    time.sleep(0.2)
    try:
        cfg = simple_config(free_port(), {"up": [f"127.0.0.1:{port}"]})
        cfg["clusters"][0]["connect_timeout"] = "300ms"
        s = start_sluice(cfg)
        t = time.monotonic()
        r = httpx.get(s.url + "/echo", timeout=10)
        assert r.status_code == 502
        assert time.monotonic() - t < 5
        [rec] = s.access_log()
        assert rec["duration_ms"] >= 250      # it waited for the timeout: not a refusal
    finally:
        for c in fillers:
            c.close()
        black.close()


def test_a_malformed_response_is_502_from_the_error_table(start_sluice):
    def garbage(conn, index):
        up.head(conn, bytearray())
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx")

    up = HostileUpstream(garbage)
    try:
        s = start_sluice(simple_config(free_port(), {"up": [up.address]}))
        r = httpx.get(s.url + "/x")
        assert (r.status_code, r.text) == (502, "upstream sent a malformed response\n")
        assert "malformed response" in s.stderr_path.read_text()
    finally:
        up.stop()


def test_an_upstream_that_stops_reading_is_reset_when_the_exchange_gives_up(start_sluice):
    """An upload to an upstream that never reads fills sluice's write buffer for it; when the
    route timeout ends the exchange, that connection is reset at once, not closed gracefully
    (a graceful close waits for the buffer to drain: forever, holding socket and memory)."""
    held = []

    def never_read(conn: socket.socket, n: int) -> None:
        held.append(conn)
        time.sleep(30)

    up = HostileUpstream(never_read)
    s = start_sluice(simple_config(free_port(), {"up": [up.address]}, routes=[
        {"name": "all", "match": {"path_prefix": "/"}, "to": [{"cluster": "up"}],
         "timeout": "1s"}]))
    body = b"z" * (16 << 20)
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body))
        c.settimeout(0.5)
        sent = 0
        try:
            while sent < len(body):
                sent += c.send(body[sent:sent + 65536])
        except (socket.timeout, OSError):
            pass                              # sluice stopped reading us: backpressure
        c.settimeout(10)
        assert c.recv(65536).startswith(b"HTTP/1.1 504")
    pid = s.worker_pids()[0]
    eventually(lambda: upstream_connections(pid, up.port) == 0, timeout=5)

"""Connection floods (issue: security hardening, item 6): `limits.max_connections` caps a
listener's client connections per worker before the kernel does, and a worker that runs low on
file descriptors refuses new connections (counted, logged once per interval) while it goes on
serving the ones it has, and accepts again as soon as descriptors free up.

nginx under the same flood: "worker_connections are not enough" / "accept() failed (24: Too many
open files)" in its log, open connections keep being served."""

from __future__ import annotations

import resource
import socket
import time

import httpx

from support import free_port, simple_config


def metric(s, name: str) -> float:
    text = httpx.get(f"http://{s.config['admin']['address']}/stats/prometheus").text
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in {text}")


def served(c: socket.socket) -> bool:
    """One keep-alive request on an open connection: answered?"""
    try:
        c.settimeout(5)
        c.sendall(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = c.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += c.recv(65536)
        return head.startswith(b"HTTP/1.1 200 ")
    except OSError:
        return False


def refused(port: int) -> bool:
    """A new connection that the proxy closes without an answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        try:
            c.sendall(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")
            return c.recv(65536) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True


def test_max_connections_caps_a_listener(upstream, start_sluice):
    cfg = simple_config(free_port(), {"up": [upstream.address]})
    cfg["listeners"][0]["limits"] = {"max_connections": 5}
    s = start_sluice(cfg)
    held = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(5)]
    assert all(served(c) for c in held)
    assert refused(s.port)
    assert all(served(c) for c in held)            # the open ones are still served
    held.pop().close()
    time.sleep(0.2)
    with socket.create_connection(("127.0.0.1", s.port)) as c:
        assert served(c)                            # room again
    assert metric(s, "sluice_connections_refused_total") >= 1
    for c in held:
        c.close()


def test_out_of_file_descriptors_refuses_new_and_serves_open_connections(upstream, start_sluice):
    limit = 160

    def low_nofile():
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    s = start_sluice(simple_config(free_port(), {"up": [upstream.address]}), preexec_fn=low_nofile)
    held = []
    try:
        for _ in range(limit):                      # more than the worker can take
            c = socket.create_connection(("127.0.0.1", s.port))
            held.append(c)
        time.sleep(0.3)
        assert served(held[0]) and served(held[1])  # the first ones keep working
        assert refused(s.port)
        assert metric(s, "sluice_accept_failures_total") >= 1
        assert "out of file descriptors" in s.stderr_path.read_text()
    finally:
        for c in held:
            c.close()
    time.sleep(0.3)
    assert httpx.get(s.url + "/echo").status_code == 200   # accepting again


def test_max_connections_counts_http2_connections_once(upstream, start_sluice):
    """The same cap on a listener speaking h2c (prior knowledge) and HTTP/1.1: a connection the
    HTTP/1.1 codec sniffs as HTTP/2 and hands over is counted once, by the HTTP/2 codec, so
    `max_connections` HTTP/2 clients fit, the next one (of either protocol) is closed, and the
    HTTP/2 ones go on."""
    from h2peer import H2Peer

    cfg = simple_config(free_port(), {"up": [upstream.address]})
    cfg["listeners"][0]["protocols"] = ["http2", "http1"]
    cfg["listeners"][0]["limits"] = {"max_connections": 3}
    s = start_sluice(cfg)

    def h2_served(p) -> bool:
        return p.response(p.request("/echo"))[0] == 200

    held = [H2Peer(s.port) for _ in range(3)]
    try:
        assert all(h2_served(p) for p in held)
        late = H2Peer(s.port)
        try:
            late.request("/echo")
            late.until(lambda evs: False)            # read until the proxy closes it
            assert late.closed and not late.events
        finally:
            late.close()
        assert refused(s.port)                       # an HTTP/1.1 client is over the cap too
        assert all(h2_served(p) for p in held)       # the open ones are still served
        held.pop().close()
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", s.port)) as c:
            assert served(c)                         # room again
        assert metric(s, "sluice_connections_refused_total") >= 2
    finally:
        for p in held:
            p.close()

"""Attack (security issue, item 8): the admin API must stay reachable.

Before the fix, 128 unauthenticated connections trickling a byte each filled the connection cap
and every later connection (a real operator's included) was closed at once; a PUT body could be
64 MiB on each of them. Now connections without a complete authenticated head are few, evicted
oldest first and dropped on a head deadline, and a snapshot body is capped at 16 MiB (413 before
any of it is read)."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
import yaml

from support import free_port, simple_config

ATTACKERS = 220


def _snapshot(cfg: dict) -> bytes:
    from engine.policy import load_config_text
    from engine.policy.snapshot import encode_snapshot

    return encode_snapshot(load_config_text(yaml.safe_dump(cfg), "new.yaml"), "new.yaml")


def _versioned(port: int, admin: str, body: str, token: str | None = None) -> dict:
    cfg = simple_config(port, routes=[{"name": "v", "match": {"path_prefix": "/"},
                                      "direct_response": {"status": 200, "body": body}}])
    cfg["admin"] = {"address": admin, **({"token": token} if token else {})}
    return cfg


class Trickle:
    """ATTACKERS connections to `port`, each sending one byte of a never-ending head at a time
    (a valid-looking request line, then header bytes), until stopped."""

    def __init__(self, port: int):
        self.socks: list[socket.socket] = []
        for _ in range(ATTACKERS):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"G")
            self.socks.append(s)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        payload = b"ET /ready HTTP/1.1\r\nx-slow: " + b"a" * 10_000
        i = 0
        while not self.stop.is_set():
            for s in self.socks:
                try:
                    s.send(payload[i % len(payload):][:1])
                except OSError:
                    pass              # evicted or timed out: the server closed it
            i += 1
            self.stop.wait(0.2)

    def close(self) -> int:
        """Stop; how many attackers the server had closed by then."""
        self.stop.set()
        self.thread.join()
        closed = 0
        for s in self.socks:
            s.setblocking(False)
            try:
                closed += s.recv(1) == b""
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
            s.close()
        return closed


@pytest.mark.parametrize("token", [None, "s3cret"], ids=["loopback-no-token", "bearer-token"])
def test_trickling_connections_do_not_lock_out_ready_and_put_snapshot(start_sluice, token):
    port, admin = free_port(), f"127.0.0.1:{free_port()}"
    s = start_sluice(_versioned(port, admin, "v1", token))
    auth = {"authorization": f"Bearer {token}"} if token else {}
    url = f"http://{admin}"
    deadline = time.monotonic() + 15
    while httpx.get(url + "/ready", headers=auth).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    attack = Trickle(int(admin.rsplit(":", 1)[1]))
    try:
        time.sleep(0.5)               # every attacker is connected and trickling
        r = httpx.get(url + "/ready", headers=auth, timeout=10)
        assert r.status_code == 200
        r = httpx.put(url + "/snapshot", headers=auth, timeout=30,
                      content=_snapshot(_versioned(port, admin, "v2", token)))
        assert r.status_code == 200, r.text
        assert httpx.get(s.url + "/").text == "v2"
    finally:
        closed = attack.close()
    assert closed >= ATTACKERS - 64          # at most MAX_PENDING of them were kept


def _read_all(c: socket.socket) -> bytes:
    """Everything until the server closes (it closes after these answers)."""
    out = b""
    try:
        while chunk := c.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    return out


def test_a_snapshot_body_over_the_cap_is_413_before_it_is_sent(start_sluice):
    port, admin = free_port(), f"127.0.0.1:{free_port()}"
    start_sluice(_versioned(port, admin, "v1"))
    host, aport = admin.rsplit(":", 1)
    with socket.create_connection((host, int(aport)), timeout=20) as c:
        # declared: 17 MiB. Not one byte of it is sent: the answer cannot have waited for it
        c.sendall(b"PUT /snapshot HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                  % (17 * 1024 * 1024))
        answer = _read_all(c)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"over the limit of 16777216" in answer and b"connection: close" in answer.lower()
    # a chunked body past the cap: tests/runtime/test_admin.py (refused once it passes it)


def test_a_head_that_never_completes_gets_408(start_sluice):
    port, admin = free_port(), f"127.0.0.1:{free_port()}"
    start_sluice(_versioned(port, admin, "v1"))
    host, aport = admin.rsplit(":", 1)
    with socket.create_connection((host, int(aport)), timeout=30) as c:
        c.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\n")       # no blank line: never complete
        answer = _read_all(c)                                 # until it closes
        assert answer.startswith(b"HTTP/1.1 408 ")

"""A hostile upstream for attack tests: a loopback TCP server whose every connection is handed
to a function the test writes, so the upstream can send what no well-behaved server would
(bytes past Content-Length, a body after HEAD, two responses to one request, nothing at all).

`read_head(conn)` reads one request head; the handler decides what goes back."""

from __future__ import annotations

import socket
import threading
import time
from typing import Callable

from support import free_port


def read_head(conn: socket.socket, buf: bytearray | None = None) -> bytes | None:
    """One request head (through the empty line), or None when the peer closed first. Bytes
    after the head stay in `buf` for the next call."""
    buf = buf if buf is not None else bytearray()
    while b"\r\n\r\n" not in buf:
        try:
            chunk = conn.recv(65536)
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end])
    del buf[:end]
    return head


class HostileUpstream:
    """`backlog` and `accepting=False` make a server whose accept queue fills: connects to it
    hang (the kernel drops their SYNs) until `accept()` starts taking connections."""

    def __init__(self, handler: Callable[[socket.socket, int], None], backlog: int | None = None,
                 accepting: bool = True):
        self.handler = handler
        self.port = free_port()
        self.connections = 0
        self.heads: list[bytes] = []          # every head read through `head()`
        self.sock = socket.create_server(("127.0.0.1", self.port), backlog=backlog)
        self.sock.settimeout(0.2)
        self.stopped = threading.Event()
        self.accepting = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        if accepting:
            self.accept()

    def accept(self) -> None:
        self.accepting.set()
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def head(self, conn: socket.socket, buf: bytearray) -> bytes | None:
        h = read_head(conn, buf)
        if h is not None:
            self.heads.append(h)
        return h

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            index = self.connections
            self.connections += 1
            threading.Thread(target=self._run, args=(conn, index), daemon=True).start()

    def _run(self, conn: socket.socket, index: int) -> None:
        try:
            self.handler(conn, index)
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self) -> None:
        self.stopped.set()
        self.sock.close()


def closed_within(s: socket.socket, seconds: float) -> bytes:
    """Everything the server sends until it closes, failing if it has not closed by then."""
    s.settimeout(seconds)
    out = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return out
        except socket.timeout:
            break
        if not chunk:
            return out
        out += chunk
    raise AssertionError(f"connection still open after {seconds}s; got {out[:200]!r}")

"""Loopback HTTP/1.1 upstreams the resilience tests control (health checks, outlier detection):
what they answer, and how many requests each served."""
from __future__ import annotations

import socket
import threading

from hostile import read_head
from support import free_port


class Backend:
    """A loopback HTTP/1.1 upstream: `health` is what /healthz answers (a status, "garbage" or
    "hang"); every other path is served `status` (200) with the backend's port as the body and
    counted in `served`.
    `stop()` closes the listener and every connection, as a killed process would; `start()`
    listens on the same port again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.health: int | str = 200
        self.status = 200
        self.served = 0
        self.probes = 0
        self.agents: set[str] = set()
        self.lock = threading.Lock()
        self.conns: set[socket.socket] = set()
        self.sock: socket.socket | None = None
        self.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", self.port))
        self.sock.settimeout(0.1)
        threading.Thread(target=self._accept, args=(self.sock,), daemon=True).start()

    def stop(self) -> None:
        sock, self.sock = self.sock, None
        sock.close()
        with self.lock:
            conns, self.conns = list(self.conns), set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def _accept(self, sock: socket.socket) -> None:
        while self.sock is sock:
            try:
                conn, _ = sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = bytearray()
        try:
            while (head := read_head(conn, buf)) is not None:
                line, _, rest = head.partition(b"\r\n")
                path = line.split(b" ")[1].decode()
                close = b"connection: close" in rest.lower()
                if path == "/healthz":
                    with self.lock:
                        self.probes += 1
                        for h in rest.split(b"\r\n"):
                            if h.lower().startswith(b"user-agent:"):
                                self.agents.add(h[11:].strip().decode())
                    health = self.health
                    if health == "hang":
                        conn.recv(1)           # until the prober gives up and closes
                        return
                    if health == "garbage":
                        conn.sendall(b"\x16\x03\x01 this is not HTTP at all\r\n\r\n")
                        return
                    conn.sendall(b"HTTP/1.1 %d X\r\ncontent-length: 0\r\n\r\n" % health)
                else:
                    with self.lock:
                        self.served += 1
                    body = str(self.port).encode()
                    conn.sendall(b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n\r\n%s"
                                 % (self.status, len(body), body))
                if close:
                    return
        except OSError:
            pass
        finally:
            with self.lock:
                self.conns.discard(conn)
            conn.close()

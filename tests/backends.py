"""Loopback HTTP/1.1 upstreams the resilience tests control (health checks, outlier detection,
retries, circuit breakers): what they answer, how, and what each received."""
from __future__ import annotations

import socket
import threading
import time

from hostile import read_head
from support import free_port


class Backend:
    """A loopback HTTP/1.1 upstream: `health` is what /healthz answers (a status, "garbage" or
    "hang"); every other path is served `status` (200) with the backend's port as the body and
    counted in `served`.
    `fault` breaks those answers: "reset" closes the connection on the request, "hang" never
    answers, "mid_body" sends a head and half the body, then closes; `delay` seconds pass before
    any answer. Each request is kept in `requests` (method, path, headers, body) and the most
    requests in flight at once in `peak` (and, with an x-sluice-attempt above 1, `peak_retries`;
    backends given one `InFlight` as `retries` also count their retries together there).
    `stop()` closes the listener and every connection, as a killed process would; `start()`
    listens on the same port again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.health: int | str = 200
        self.status = 200
        self.served = 0
        self.fault: str | None = None
        self.delay = 0.0
        self.requests: list[dict] = []
        self.in_flight = self.peak = 0
        self.retries_in_flight = self.peak_retries = 0
        self.retries: InFlight | None = None
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
                elif not self._answer(conn, buf, line, rest):
                    return
                if close:
                    return
        except OSError:
            pass
        finally:
            with self.lock:
                self.conns.discard(conn)
            conn.close()

    def _answer(self, conn: socket.socket, buf: bytearray, line: bytes, rest: bytes) -> bool:
        """One request that is not a probe; False when the connection is done with."""
        headers = {}
        for h in rest.split(b"\r\n"):
            name, sep, value = h.partition(b":")
            if sep:
                headers[name.strip().lower().decode()] = value.strip().decode("latin-1")
        body = read_body(conn, buf, headers)
        if body is None:
            return False
        retry = int(headers.get("x-sluice-attempt", "1")) > 1
        with self.lock:
            self.requests.append({"method": line.split(b" ")[0].decode(),
                                  "path": line.split(b" ")[1].decode(),
                                  "headers": headers, "body": body})
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            if retry:
                self.retries_in_flight += 1
                self.peak_retries = max(self.peak_retries, self.retries_in_flight)
        if retry and self.retries is not None:
            self.retries.add(1)
        try:
            if self.delay:
                time.sleep(self.delay)
            fault = self.fault
            if fault == "reset":
                return False
            if fault == "hang":
                conn.recv(1)                   # until the proxy gives up and closes
                return False
            with self.lock:
                self.served += 1
            payload = str(self.port).encode()
            if fault == "mid_body":
                conn.sendall(b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n\r\n%s"
                             % (self.status, 2 * len(payload), payload))
                return False
            conn.sendall(b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n\r\n%s"
                         % (self.status, len(payload), payload))
            return True
        finally:
            with self.lock:
                self.in_flight -= 1
                if retry:
                    self.retries_in_flight -= 1
            if retry and self.retries is not None:
                self.retries.add(-1)


class InFlight:
    """A count several backends share: how many requests are in flight across them, and the
    most at once."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self.lock = threading.Lock()

    def add(self, n: int) -> None:
        with self.lock:
            self.now += n
            self.peak = max(self.peak, self.now)


def read_body(conn: socket.socket, buf: bytearray, headers: dict) -> bytes | None:
    """The request body after a head (Content-Length or chunked), or None when the peer closed
    first. Bytes past it stay in `buf`."""
    def fill(n: int) -> bool:
        while len(buf) < n:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            buf.extend(chunk)
        return True

    if "chunked" in headers.get("transfer-encoding", "").lower():
        out = bytearray()
        while True:
            while b"\r\n" not in buf:
                if not fill(len(buf) + 1):
                    return None
            size_line, _, _ = bytes(buf).partition(b"\r\n")
            del buf[:len(size_line) + 2]
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                while b"\r\n\r\n" not in b"\r\n" + buf:   # trailers, then the empty line
                    if not fill(len(buf) + 1):
                        return None
                end = (b"\r\n" + buf).index(b"\r\n\r\n") + 2
                del buf[:end]
                return bytes(out)
            if not fill(size + 2):
                return None
            out += buf[:size]
            del buf[:size + 2]
    n = int(headers.get("content-length", "0"))
    if not fill(n):
        return None
    body = bytes(buf[:n])
    del buf[:n]
    return body

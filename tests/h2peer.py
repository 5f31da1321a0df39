"""A blocking HTTP/2 client for the tests that must say exactly what goes on the wire: the `h2`
package (an independent implementation) with its own header validation off, so a test can send
the malformed requests a hostile client would, and read back every frame-level event."""

from __future__ import annotations

import socket
import ssl

import h2.config
import h2.connection
import h2.events
import h2.settings


class H2Peer:
    """One connection; `request()` opens a stream, `until()` reads events until a condition."""

    def __init__(self, port: int, host: str = "127.0.0.1", tls_context: ssl.SSLContext | None = None,
                 server_hostname: str | None = None, timeout: float = 10.0,
                 connection_window: int | None = None, settings: dict | None = None) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        if tls_context is not None:
            sock = tls_context.wrap_socket(sock, server_hostname=server_hostname or host)
        self.sock = sock
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False,
            normalize_outbound_headers=False, validate_inbound_headers=False))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        if connection_window:
            self.conn.increment_flow_control_window(connection_window)
        self.events: list = []
        self.closed = False
        self.flush()
        self.auto_ack = True           # credit received DATA at once (False: the test does)

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                self.closed = True

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, path: str = "/", method: str = "GET", headers: list | None = None,
                body: bytes | None = None, authority: str = "a.test", end: bool | None = None,
                raw: list | None = None) -> int:
        """Open a stream. `raw` replaces the whole header list (pseudo-headers included)."""
        sid = self.conn.get_next_available_stream_id()
        hdrs = raw if raw is not None else [(":method", method), (":scheme", "http"),
                                             (":authority", authority), (":path", path),
                                             *(headers or [])]
        hdrs = [(k.encode() if isinstance(k, str) else k, v.encode() if isinstance(v, str) else v)
                for k, v in hdrs]
        self.conn.send_headers(sid, hdrs, end_stream=body is None if end is None else end)
        if body is not None:
            self.conn.send_data(sid, body, end_stream=True if end is None else end)
        self.flush()
        return sid

    def read(self) -> list:
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            data = b""
        if not data:
            self.closed = True
            return []
        evs = self.conn.receive_data(data)
        for ev in evs:
            if isinstance(ev, h2.events.DataReceived) and self.auto_ack:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        self.flush()
        self.events.extend(evs)
        return evs

    def until(self, done, limit: int = 10000) -> list:
        """Read until done(self.events) is true or the connection closes."""
        for _ in range(limit):
            if done(self.events) or self.closed:
                return self.events
            self.read()
        raise AssertionError("condition never met")

    def response(self, sid: int) -> tuple[int, dict, bytes, dict]:
        """Read until stream `sid` ends: (status, headers, body, trailers); status -1 on a reset
        (headers then hold {"reset": error_code})."""
        self.until(lambda evs: any(getattr(e, "stream_id", None) == sid and isinstance(
            e, (h2.events.StreamEnded, h2.events.StreamReset)) for e in evs)
            or any(isinstance(e, h2.events.ConnectionTerminated) for e in evs))
        status, headers, body, trailers = -1, {}, b"", {}
        for e in self.events:
            if getattr(e, "stream_id", None) != sid:
                continue
            if isinstance(e, h2.events.ResponseReceived):
                headers = {k.decode(): v.decode() for k, v in e.headers}
                status = int(headers[":status"])
            elif isinstance(e, h2.events.DataReceived):
                body += e.data
            elif isinstance(e, h2.events.TrailersReceived):
                trailers = {k.decode(): v.decode() for k, v in e.headers}
            elif isinstance(e, h2.events.StreamReset):
                return -1, {"reset": e.error_code}, body, trailers
        return status, headers, body, trailers

    def goaway(self):
        for e in self.events:
            if isinstance(e, h2.events.ConnectionTerminated):
                return e
        return None

    def close(self) -> None:
        self.sock.close()

"""A small blocking HTTP/2 client (on the `h2` library) for the harness's answer checks of the
HTTP/2 scenarios: h2load counts statuses but never looks at a body or a trailer, so before a
peer is measured its answers are read here.

`exchange` opens one connection (h2c by prior knowledge, or TLS with ALPN h2 only, so a peer that
falls back to HTTP/1.1 is caught), sends the requests one after another on it, and returns what
came back; a protocol error, a reset stream or a GOAWAY before the last answer is an `H2Error`.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events


class H2Error(Exception):
    pass


@dataclass
class Request:
    path: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass
class Response:
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def trailer(self, name: str) -> str | None:
        return next((v for k, v in self.trailers if k == name), None)


@dataclass
class Session:
    alpn: str | None                  # "h2", or None on plaintext (prior knowledge)
    tls_version: str | None
    responses: list[Response]


def exchange(port: int, requests: list[Request], *, ca: Path | None = None,
             timeout: float = 10.0) -> Session:
    """The requests, in turn, on one connection to 127.0.0.1:port (TLS when `ca` is given)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    alpn = version = None
    try:
        if ca is not None:
            ctx = ssl.create_default_context(cafile=str(ca))
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
            alpn, version = sock.selected_alpn_protocol(), sock.version()
            if alpn != "h2":
                raise H2Error(f"ALPN selected {alpn!r}, not h2")
        conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        authority = f"127.0.0.1:{port}"
        out = []
        for req in requests:
            out.append(_one(sock, conn, req, "https" if ca else "http", authority))
        conn.close_connection()
        sock.sendall(conn.data_to_send())
        return Session(alpn, version, out)
    finally:
        sock.close()


def _one(sock, conn, req: Request, scheme: str, authority: str) -> Response:
    sid = conn.get_next_available_stream_id()
    head = [(":method", req.method), (":scheme", scheme), (":authority", authority),
            (":path", req.path), *req.headers]
    if req.body:
        head.append(("content-length", str(len(req.body))))
    conn.send_headers(sid, head, end_stream=not req.body)
    if req.body:
        conn.send_data(sid, req.body, end_stream=True)     # small bodies: within every window
    sock.sendall(conn.data_to_send())
    res = Response()
    while True:
        data = sock.recv(65536)
        if not data:
            raise H2Error("connection closed before the response ended")
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                res.headers = list(ev.headers)
                res.status = int(dict(res.headers).get(":status", 0))
            elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                res.body += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, sid)
            elif isinstance(ev, h2.events.TrailersReceived) and ev.stream_id == sid:
                res.trailers = list(ev.headers)
            elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                raise H2Error(f"stream reset: {ev.error_code!r}")
            elif isinstance(ev, h2.events.ConnectionTerminated):
                raise H2Error(f"GOAWAY {ev.error_code!r} before the response ended")
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                sock.sendall(conn.data_to_send())
                return res
        sock.sendall(conn.data_to_send())

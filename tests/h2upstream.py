"""An HTTP/2 test upstream on the `h2` package over asyncio: h2c with prior knowledge, or h2
over TLS with ALPN (--cert/--key). Started by tests (support.H2Upstream); prints "ready".

    python tests/h2upstream.py PORT [--max-streams N] [--cert C --key K]

What a path does (the query's numbers are parameters):
  /stats                 JSON: connections opened/open/closed (and proxied_*: those that carried
                         another request than /stats), streams, most concurrent streams seen
                         on one connection, requests, the last request's headers
  /echo                  200 with the request body (content-length)
  /info                  200 JSON: method, path, authority, scheme, headers, body length
  /big?n=BYTES           200, n bytes of body in DATA frames within the flow-control windows
  /nolength?n=BYTES      the same without content-length
  /upload?stall=S        reads the body without crediting its window for S seconds, then 200
                         JSON {"received": n}
  /trailers              200, a body, then trailers (grpc-status: 0, x-checksum)
  /slow?s=S              200 after S seconds
  /rst?n=BYTES           head and n bytes, then RST_STREAM INTERNAL_ERROR
  /bad-connection        200 with a connection: close field (malformed in HTTP/2)
  /bad-status            :status 2x0
  /cl-mismatch           content-length 10, 5 bytes of DATA, END_STREAM
  /refuse-once           the first such stream (per process) gets REFUSED_STREAM, then 200
  /goaway?k=K            once per process: when K such streams are open on a connection,
                         GOAWAY with the first one's id as last-stream-id, answer that one,
                         leave the others unanswered, close when it is sent
  /mute                  200, then this connection sends nothing more (PINGs unanswered)
  /close-early           the connection is aborted before any response
  /bad-frame             a DATA frame on stream 0 (a connection error)
  /bad-hpack             a HEADERS frame whose block has an index beyond the tables
                         (COMPRESSION_ERROR); /stats "goaway_codes" lists GOAWAYs received
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import urllib.parse

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (ConnectionTerminated, DataReceived, PingReceived, RequestReceived,
                       StreamEnded, StreamReset, TrailersReceived, WindowUpdated)
from h2.exceptions import ProtocolError, StreamClosedError
from h2.settings import SettingCodes, Settings
from hyperframe.frame import GoAwayFrame

STATS = {"connections": 0, "open": 0, "closed": 0, "proxied_connections": 0, "proxied_open": 0, "streams": 0, "max_concurrent": 0,
         "requests": 0, "last_headers": None, "window_blocked": 0, "pings": 0, "last_trailers": None, "goaway_codes": [], "refused": 0, "goaway": 0, "reset": 0}
ONCE = {"refuse": False, "goaway": False}
MAX_STREAMS = 100


class Stream:
    def __init__(self, sid, headers):
        self.sid = sid
        self.headers = headers
        self.body = bytearray()
        self.received = 0
        self.ended = asyncio.Event()
        self.window = asyncio.Event()
        self.hold_credit = False
        self.unacked = 0


class Conn(asyncio.Protocol):
    def __init__(self):
        cfg = H2Configuration(client_side=False, header_encoding=None,
                              validate_outbound_headers=False,
                              normalize_outbound_headers=False)
        self.h2 = H2Connection(config=cfg)
        self.h2.local_settings = Settings(client=False, initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
            SettingCodes.MAX_HEADER_LIST_SIZE: 65536})
        self.streams: dict[int, Stream] = {}
        self.muted = False
        self.goaway_streams: list[int] = []
        self.transport = None
        self.proxied = False      # carried a request other than /stats (the proxy's connection)

    def connection_made(self, transport):
        self.transport = transport
        STATS["connections"] += 1
        STATS["open"] += 1
        self.h2.initiate_connection()
        self.flush()

    def connection_lost(self, exc):
        STATS["open"] -= 1
        STATS["closed"] += 1
        if self.proxied:
            STATS["proxied_open"] -= 1
        for s in self.streams.values():
            s.window.set()
            s.ended.set()

    def flush(self):
        data = self.h2.data_to_send()
        if data and not self.muted and self.transport is not None:
            self.transport.write(data)

    def data_received(self, data):
        try:
            events = self.h2.receive_data(data)
        except ProtocolError:
            self.flush()
            self.transport.close()
            return
        for ev in events:
            if isinstance(ev, RequestReceived):
                s = Stream(ev.stream_id, ev.headers)
                self.streams[ev.stream_id] = s
                STATS["streams"] += 1
                STATS["max_concurrent"] = max(STATS["max_concurrent"], len(self.streams))
                asyncio.get_running_loop().create_task(self.handle(s))
            elif isinstance(ev, DataReceived):
                s = self.streams.get(ev.stream_id)
                if s is None:
                    continue
                s.received += len(ev.data)
                if len(s.body) < 1 << 20:
                    s.body += ev.data
                if s.hold_credit:
                    s.unacked += ev.flow_controlled_length
                else:
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, StreamEnded):
                s = self.streams.get(ev.stream_id)
                if s is not None:
                    s.ended.set()
            elif isinstance(ev, StreamReset):
                STATS["reset"] += 1
                s = self.streams.pop(ev.stream_id, None)
                if s is not None:
                    s.ended.set()
                    s.window.set()
            elif isinstance(ev, WindowUpdated):
                for s in (self.streams.values() if ev.stream_id == 0
                          else [self.streams.get(ev.stream_id)]):
                    if s is not None:
                        s.window.set()
            elif isinstance(ev, TrailersReceived):
                STATS["last_trailers"] = [[n.decode(), v.decode()] for n, v in ev.headers]
            elif isinstance(ev, PingReceived):
                STATS["pings"] += 1
            elif isinstance(ev, ConnectionTerminated):
                STATS["goaway_codes"].append(int(ev.error_code))
                self.transport.close()
        self.flush()

    # --- responses ---------------------------------------------------------------------------

    def head(self, s, status, fields=(), end=False):
        self.h2.send_headers(s.sid, [(b":status", str(status).encode()), *fields], end_stream=end)
        self.flush()

    async def send_body(self, s, data: bytes, end=True):
        view = memoryview(data)
        while view:
            while True:
                if s.sid not in self.streams or self.transport is None or self.transport.is_closing():
                    return False
                n = min(self.h2.local_flow_control_window(s.sid), self.h2.max_outbound_frame_size,
                        len(view))
                if n > 0:
                    break
                s.window.clear()
                STATS["window_blocked"] += 1
                try:
                    await s.window.wait()
                finally:
                    STATS["window_blocked"] -= 1
            self.h2.send_data(s.sid, bytes(view[:n]))
            view = view[n:]
            self.flush()
            await asyncio.sleep(0)
        if end:
            self.h2.end_stream(s.sid)
            self.flush()
        return True

    def done(self, s):
        self.streams.pop(s.sid, None)

    async def handle(self, s):
        h = dict(s.headers)
        path = h[b":path"].decode()
        url = urllib.parse.urlsplit(path)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        route = url.path
        STATS["requests"] += 1
        if route != "/stats" and not self.proxied:
            self.proxied = True
            STATS["proxied_connections"] += 1
            STATS["proxied_open"] += 1
        if route != "/stats":
            STATS["last_headers"] = [[n.decode(), v.decode()] for n, v in s.headers]
        try:
            await self.respond(s, route, q, h)
        except (StreamClosedError, ProtocolError):
            pass
        finally:
            self.done(s)

    async def respond(self, s, route, q, h):
        if route == "/refuse-once" and not ONCE["refuse"]:
            ONCE["refuse"] = True
            STATS["refused"] += 1
            self.h2.reset_stream(s.sid, ErrorCodes.REFUSED_STREAM)
            self.flush()
            return
        if route == "/goaway" and not ONCE["goaway"]:
            self.goaway_streams.append(s.sid)
            if len(self.goaway_streams) < int(q.get("k", "3")):
                await asyncio.sleep(3600)          # answered (or dropped) by the K-th
                return
            ONCE["goaway"] = True
            STATS["goaway"] += 1
            first = min(self.goaway_streams)
            # GOAWAY written by hand: h2 would refuse to answer `first` after its own
            self.flush()
            frame = GoAwayFrame(0)
            frame.last_stream_id = first
            frame.error_code = 0
            self.transport.write(frame.serialize())
            body = b"answered before the GOAWAY"
            self.h2.send_headers(first, [(b":status", b"200"),
                                         (b"content-length", str(len(body)).encode())])
            self.h2.send_data(first, body, end_stream=True)
            self.flush()
            self.transport.close()
            return
        if route != "/upload":
            await s.ended.wait()
        if route == "/close-early":
            self.transport.abort()                 # no response: the connection just ends
            return
        if route == "/bad-frame":
            self.flush()
            self.transport.write(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x")   # DATA on 0
            return
        if route == "/bad-hpack":
            self.flush()
            block = b"\xff\xff\xff\xff\x0f"          # an index beyond both tables
            self.transport.write(len(block).to_bytes(3, "big") + b"\x01\x04"
                                 + s.sid.to_bytes(4, "big") + block)
            return
        if route == "/stats":
            body = json.dumps(STATS).encode()
            self.head(s, 200, [(b"content-type", b"application/json"),
                               (b"content-length", str(len(body)).encode())])
            await self.send_body(s, body)
        elif route == "/echo":
            body = bytes(s.body)
            self.head(s, 200, [(b"content-length", str(len(body)).encode())])
            await self.send_body(s, body)
        elif route == "/info":
            body = json.dumps({
                "method": h[b":method"].decode(), "path": h[b":path"].decode(),
                "authority": h.get(b":authority", b"").decode(),
                "scheme": h[b":scheme"].decode(),
                "headers": [[n.decode(), v.decode()] for n, v in s.headers],
                "received": s.received}).encode()
            self.head(s, 200, [(b"content-type", b"application/json"),
                               (b"content-length", str(len(body)).encode())])
            await self.send_body(s, body)
        elif route in ("/big", "/nolength"):
            n = int(q.get("n", "1048576"))
            fields = [(b"content-length", str(n).encode())] if route == "/big" else []
            self.head(s, 200, fields)
            chunk = b"x" * 65536
            left = n
            while left > 0:
                part = chunk[:min(left, len(chunk))]
                if not await self.send_body(s, part, end=False):
                    return
                left -= len(part)
            self.h2.end_stream(s.sid)
            self.flush()
        elif route == "/upload":
            stall = float(q.get("stall", "0"))
            s.hold_credit = True
            await asyncio.sleep(stall)
            s.hold_credit = False
            if s.unacked:
                self.h2.acknowledge_received_data(s.unacked, s.sid)
                s.unacked = 0
                self.flush()
            await s.ended.wait()
            body = json.dumps({"received": s.received}).encode()
            self.head(s, 200, [(b"content-length", str(len(body)).encode())])
            await self.send_body(s, body)
        elif route == "/trailers":
            self.head(s, 200, [(b"content-type", b"application/grpc")])
            await self.send_body(s, b"some body", end=False)
            self.h2.send_headers(s.sid, [(b"grpc-status", b"0"), (b"x-checksum", b"abc")],
                                 end_stream=True)
            self.flush()
        elif route == "/slow":
            await asyncio.sleep(float(q.get("s", "0.5")))
            self.head(s, 200, [(b"content-length", b"4")])
            await self.send_body(s, b"slow")
        elif route == "/rst":
            self.head(s, 200, [(b"content-length", b"1000000")])
            await self.send_body(s, b"y" * int(q.get("n", "1000")), end=False)
            self.h2.reset_stream(s.sid, ErrorCodes.INTERNAL_ERROR)
            self.flush()
        elif route == "/bad-connection":
            self.head(s, 200, [(b"connection", b"close"), (b"content-length", b"2")])
            await self.send_body(s, b"no")
        elif route == "/bad-status":
            self.h2.send_headers(s.sid, [(b":status", b"2x0"), (b"content-length", b"2")])
            await self.send_body(s, b"no")
        elif route == "/cl-mismatch":
            self.head(s, 200, [(b"content-length", b"10")])
            await self.send_body(s, b"12345")
        elif route == "/mute":
            self.head(s, 200, [(b"content-length", b"2")])
            await self.send_body(s, b"ok")
            self.muted = True
        else:
            body = b"hello from h2\n"
            self.head(s, 200, [(b"content-type", b"text/plain"),
                               (b"content-length", str(len(body)).encode())])
            await self.send_body(s, body)


async def main(port: int, cert: str | None, key: str | None) -> None:
    ctx = None
    if cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        ctx.set_alpn_protocols(["h2"])
    server = await asyncio.get_running_loop().create_server(Conn, "127.0.0.1", port, ssl=ctx)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    args = sys.argv[1:]
    port = int(args.pop(0))
    opts = {}
    while args:
        name = args.pop(0)
        opts[name] = args.pop(0)
    MAX_STREAMS = int(opts.get("--max-streams", MAX_STREAMS))
    try:
        asyncio.run(main(port, opts.get("--cert"), opts.get("--key")))
    except KeyboardInterrupt:
        pass

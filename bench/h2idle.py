"""The client of the h2mem scenario: idle HTTP/2 connections, then open streams on them.

    python -m bench.h2idle PORT CONNS STREAMS

Opens CONNS h2c connections (prior knowledge) to 127.0.0.1:PORT, 256 at a time, and completes
one `GET /` on each, so every connection has served a request as a real client's has; prints
`open N` (N = connections that got their response) and holds them idle, answering the peer's
SETTINGS and PINGs. On a line from stdin it opens STREAMS streams (`GET /hold`, which the
upstream never answers) on the first connections, at most 100 per connection (fewer if the peer
allows fewer), and prints `streams S` (S = streams sent). It holds everything until stdin
closes. The parent measures the proxy's RSS at each step.
"""

from __future__ import annotations

import asyncio
import sys

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from bench.procs import raise_nofile

PER_CONN = 100
GET = [(":method", "GET"), (":scheme", "http"), (":authority", "bench")]


class Client(asyncio.Protocol):
    def __init__(self) -> None:
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.ended: dict[int, asyncio.Future] = {}
        self.transport: asyncio.Transport | None = None
        self.open = True

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.conn.initiate_connection()
        transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.transport.close()
            return
        for ev in events:
            if isinstance(ev, h2.events.DataReceived):
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                fut = self.ended.pop(ev.stream_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(isinstance(ev, h2.events.StreamEnded))
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.open = False
        self.transport.write(self.conn.data_to_send())

    def connection_lost(self, exc) -> None:
        self.open = False
        for fut in self.ended.values():
            if not fut.done():
                fut.set_result(False)

    def request(self, path: str) -> asyncio.Future:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, GET + [(":path", path)], end_stream=True)
        self.transport.write(self.conn.data_to_send())
        fut = self.ended[sid] = asyncio.get_running_loop().create_future()
        return fut

    def room(self) -> int:
        return min(PER_CONN, self.conn.remote_settings.max_concurrent_streams) \
            - self.conn.open_outbound_streams


async def one(port: int, gate: asyncio.Semaphore, held: list) -> None:
    async with gate:
        loop = asyncio.get_running_loop()
        try:
            _, client = await asyncio.wait_for(
                loop.create_connection(Client, "127.0.0.1", port), 10)
            if await asyncio.wait_for(client.request("/"), 10) and client.open:
                held.append(client)
            else:
                client.transport.close()
        except (OSError, asyncio.TimeoutError, h2.exceptions.H2Error):
            pass


async def main(port: int, conns: int, streams: int) -> None:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(256)
    held: list[Client] = []
    await asyncio.gather(*(one(port, gate, held) for _ in range(conns)))
    print(f"open {len(held)}", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    sent = 0
    for client in held:
        while sent < streams and client.open and client.room() > 0:
            client.request("/hold")
            sent += 1
    print(f"streams {sent}", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    for client in held:
        client.transport.close()


if __name__ == "__main__":
    raise_nofile()
    import uvloop

    uvloop.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))

"""The upstream of the h2mem scenario (memory per open HTTP/2 stream): an HTTP/1.1 origin that
answers `GET /` with the bench's small body and holds every request for /hold open, unanswered,
until the proxy closes that connection, so each held request is a stream the proxy must keep
open. `GET /held` (asked directly, not through the proxy) answers with how many it holds now:
the harness measures the proxy's memory once that count has reached the streams it opened.

    python -m bench.hold_upstream PORT          # prints `listening` once bound

Speed does not matter here (it serves one request per idle connection, then holds); it is a
plain asyncio server with its own tiny head reader.
"""

from __future__ import annotations

import asyncio
import sys

from bench.peers import SMALL_BODY
from bench.procs import raise_nofile

held = 0


def _reply(body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    global held
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ", 2)[1]
            if target == b"/held":
                writer.write(_reply(str(held).encode()))
            elif target.startswith(b"/hold"):
                held += 1
                try:
                    await reader.read()          # until the proxy lets the stream go
                finally:
                    held -= 1
                return
            else:
                writer.write(_reply(SMALL_BODY))
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, IndexError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=4096)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    raise_nofile()
    import uvloop

    uvloop.run(main(int(sys.argv[1])))

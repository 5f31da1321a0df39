"""The idle-connections client of the `idle` scenario (memory per idle keep-alive connection).

    python -m bench.idle PORT COUNT

Opens COUNT connections to 127.0.0.1:PORT (256 at a time), sends one keep-alive GET on each and
reads its response, so every connection has served a request the way a real keep-alive client's
has, then prints `open N` (N = connections that got their response) and holds them all idle
until its stdin closes or gives a line. The parent measures the proxy's RSS meanwhile.
"""

from __future__ import annotations

import asyncio
import sys

from bench.procs import raise_nofile

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


async def one(port: int, gate: asyncio.Semaphore, held: list) -> None:
    async with gate:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), 10)
            writer.write(REQUEST)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await asyncio.wait_for(reader.readexactly(length), 10)
            held.append(writer)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
            pass


async def main(port: int, count: int) -> None:
    gate = asyncio.Semaphore(256)
    held: list = []
    await asyncio.gather(*(one(port, gate, held) for _ in range(count)))
    print(f"open {len(held)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for w in held:
        w.close()


if __name__ == "__main__":
    raise_nofile()
    import uvloop

    uvloop.run(main(int(sys.argv[1]), int(sys.argv[2])))

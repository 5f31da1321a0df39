"""A tiny upstream for the example config: answers every request with a JSON description of
what it received (method, path, headers, body size), so you can see what sluice forwards.

    python config/demo_upstream.py 9001 9002
"""

import asyncio
import json
import sys


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            size = 0
            if "content-length" in headers:
                body = await reader.readexactly(int(headers["content-length"]))
                size = len(body)
            elif headers.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    n = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if n == 0:
                        while await reader.readuntil(b"\r\n") != b"\r\n":
                            pass
                        break
                    size += len(await reader.readexactly(n + 2)) - 2
            payload = json.dumps({"upstream": port, "method": method, "path": path,
                                  "headers": headers, "body_bytes": size}, indent=2).encode() + b"\n"
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                         b"content-length: %d\r\n\r\n%s"
                         % (len(payload), b"" if method == "HEAD" else payload))  # RFC 9110 9.3.2
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main(ports: list[int]) -> None:
    servers = [await asyncio.start_server(lambda r, w, p=p: handle(r, w, p), "127.0.0.1", p,
                                         backlog=4096)   # asyncio's 100 overflows under load
               for p in ports]
    print("demo upstream on " + ", ".join(f"127.0.0.1:{p}" for p in ports), file=sys.stderr)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main([int(p) for p in sys.argv[1:]] or [9001, 9002]))

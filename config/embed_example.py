"""Embedding sluice in a plain asyncio application, with a Python filter.

The application runs its own small upstream and a sluice proxy in one event loop: requests to
/api/ need an `x-api-key` (checked by the `ApiKey` filter, which also tags what it lets through),
/healthz is answered by sluice itself. Run it and try:

    python config/embed_example.py 8088 &
    curl -i http://127.0.0.1:8088/healthz
    curl -i http://127.0.0.1:8088/api/hello                       # 401
    curl -i -H 'x-api-key: s3cret' http://127.0.0.1:8088/api/hello
"""

from __future__ import annotations

import asyncio
import signal
import sys

import engine


class ApiKey(engine.Filter):
    """Refuse requests without a known key; tell the upstream who the caller is."""

    def __init__(self, keys: dict[str, str]):
        self.keys = keys

    def request(self, ctx: engine.FilterContext) -> engine.Reply | None:
        consumer = self.keys.get(ctx.header("x-api-key") or "")
        if consumer is None:
            return engine.Reply(401, "missing or unknown API key\n",
                                {"www-authenticate": 'ApiKey realm="demo"'})
        ctx.remove_header("x-api-key")
        ctx.set_header("x-consumer", consumer)
        return None

    def response(self, ctx: engine.FilterContext) -> None:
        ctx.set_response_header("x-served-by", "sluice-embedded")


async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A minimal HTTP/1.1 upstream: says who called, keeps the connection alive."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            consumer = b"-"
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"x-consumer:"):
                    consumer = line.split(b":", 1)[1].strip()
            body = b"hello, " + consumer + b"\n"
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


def config(port: int, upstream_port: int) -> dict:
    return {
        "listeners": [{"name": "main", "address": f"127.0.0.1:{port}",
                       "routes": ["health", "api"]}],
        "routes": [
            {"name": "health", "match": {"path": "/healthz"},
             "direct_response": {"status": 200, "body": "ok\n"}},
            {"name": "api", "match": {"path_prefix": "/api/"}, "filters": ["api-key"],
             "rewrite": {"path_prefix": "/"}, "to": [{"cluster": "app"}]},
        ],
        "clusters": [{"name": "app", "endpoints": [{"address": f"127.0.0.1:{upstream_port}"}]}],
        "filters": [{"name": "api-key", "config": {"keys": {"s3cret": "alice"}}}],
    }


async def main(port: int) -> None:
    app = await asyncio.start_server(upstream, "127.0.0.1", 0)
    upstream_port = app.sockets[0].getsockname()[1]
    proxy = engine.Proxy(config(port, upstream_port), filters={"api-key": ApiKey})
    await proxy.start()
    print(f"serving on http://127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await proxy.stop(drain=5.0)
    app.close()


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8088))

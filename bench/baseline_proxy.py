"""The Python baseline: a plain uvloop + httptools HTTP/1.1 reverse proxy, a page of Python.

sluice must stay well above it (issue 4: at least 1.4x), or its compiled hot path is not earning
its keep. It does the same work as the peers in bench/: parse the request, match a list of path
prefixes in order (`--routes`), rebuild the request head without hop-by-hop fields plus
X-Forwarded-For, take a pooled keep-alive upstream connection (LIFO), stream the request body,
parse the response and rebuild its head the same way (re-chunking a chunked body), with
backpressure both ways. No pipelining, no trailers, no upgrades.

`should_keep_alive()` is read inside `on_message_complete`, the only place where httptools makes
it meaningful; `--keepalive-bug` reads it afterwards instead, which quietly turns the pool into
one connection per request: the warm-up check of bench/run.py must catch that
(bench/test_checks.py).

    python bench/baseline_proxy.py --listen 127.0.0.1:8000 --upstream 127.0.0.1:9000 [--routes N]
"""

import argparse
import asyncio

import httptools
import uvloop

HOP = {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade",
       b"transfer-encoding"}
KEEPALIVE_BUG = False


def rebuild(first_line, headers, extra):
    """A head without hop-by-hop fields; returns (head, chunked)."""
    out, chunked = [first_line], False
    for name, value in headers:
        lower = name.lower()
        if lower == b"transfer-encoding":
            chunked = True
        elif lower not in HOP:
            out.append(b"%s: %s\r\n" % (name, value))
    out.extend(extra)
    if chunked:
        out.append(b"transfer-encoding: chunked\r\n")
    out.append(b"\r\n")
    return b"".join(out), chunked


class Upstream(asyncio.Protocol):
    def __init__(self, pool):
        self.pool, self.client, self.transport, self.late = pool, None, None, False
        self.parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.client and self.client.transport.close()
            self.transport.close()
        if self.late:                              # --keepalive-bug: always False here
            self.finish(self.parser.should_keep_alive())

    def on_message_begin(self):
        self.headers, self.status, self.late = [], b"", False

    def on_status(self, status):
        self.status += status

    def on_header(self, name, value):
        self.headers.append((name, value))

    def on_headers_complete(self):
        client = self.client
        code = self.parser.get_status_code()
        extra = [] if client.keep else [b"connection: close\r\n"]
        head, self.chunked = rebuild(b"HTTP/1.1 %d %s\r\n" % (code, self.status), self.headers,
                                     extra)
        client.transport.write(head)

    def on_body(self, body):
        self.client.transport.write(b"%x\r\n%s\r\n" % (len(body), body) if self.chunked else body)

    def on_message_complete(self):
        if KEEPALIVE_BUG:
            self.late = True
        else:
            self.finish(self.parser.should_keep_alive())

    def finish(self, keep):
        self.late = False
        if self.chunked:
            self.client.transport.write(b"0\r\n\r\n")
        self.client.response_done(keep)

    def connection_lost(self, exc):
        if self in self.pool:
            self.pool.remove(self)
        if self.client is not None:
            self.client.transport.close()

    def pause_writing(self):
        self.client and self.client.transport.pause_reading()

    def resume_writing(self):
        self.client and self.client.transport.resume_reading()


class Client(asyncio.Protocol):
    def __init__(self, upstream, pool, prefixes):
        self.upstream_addr, self.pool, self.prefixes = upstream, pool, prefixes
        self.parser = httptools.HttpRequestParser(self)
        self.transport = self.up = None
        self.pending: list[bytes] = []             # request bytes waiting for a connection
        self.keep, self.req_done, self.resp_keep, self.drop = True, False, None, False

    def connection_made(self, transport):
        self.transport = transport
        self.xff = b"x-forwarded-for: %s\r\n" % transport.get_extra_info("peername")[0].encode()

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            self.transport.close()

    def on_message_begin(self):
        self.url, self.headers = b"", []
        self.req_done, self.resp_keep, self.drop = False, None, False

    def on_url(self, url):
        self.url += url

    def on_header(self, name, value):
        self.headers.append((name, value))

    def on_headers_complete(self):
        self.keep = self.parser.should_keep_alive()  # provisional: final in on_message_complete
        path = self.url.split(b"?", 1)[0]
        if self.prefixes and not any(path.startswith(p) for p in self.prefixes):
            self.transport.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
            self.drop = True                       # and its body
            return
        head, self.chunked = rebuild(b"%s %s HTTP/1.1\r\n" % (self.parser.get_method(), self.url),
                                     self.headers, [self.xff])
        self.send(head)
        if self.pool:
            self.attach(self.pool.pop())
        else:
            asyncio.ensure_future(self.connect())

    async def connect(self):
        try:
            _, up = await asyncio.get_running_loop().create_connection(
                lambda: Upstream(self.pool), *self.upstream_addr)
        except OSError:
            self.transport.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            self.transport.close()
            return
        self.attach(up)

    def attach(self, up):
        self.up, up.client = up, self
        up.transport.writelines(self.pending)
        self.pending = []

    def send(self, data):
        if self.drop:
            return
        if self.up is None:
            self.pending.append(data)
        else:
            self.up.transport.write(data)

    def on_body(self, body):
        self.send(b"%x\r\n%s\r\n" % (len(body), body) if self.chunked else body)

    def on_message_complete(self):
        self.keep = self.parser.should_keep_alive()
        if self.chunked:
            self.send(b"0\r\n\r\n")
        self.req_done = True
        if self.resp_keep is not None:
            self.done()

    def response_done(self, keep):
        """The response is complete; an upstream that answered before the end of the request
        body (nginx's `return` does) gets the rest of it before going back to the pool."""
        self.resp_keep = keep
        if self.req_done:
            self.done()

    def done(self):
        up, self.up = self.up, None
        up.client = None
        if self.resp_keep:
            self.pool.append(up)
        else:
            up.transport.close()
        if not self.keep:
            self.transport.close()

    def connection_lost(self, exc):
        if self.up is not None:                    # gone mid-exchange: never pool that one
            self.up.client = None
            self.up.transport.close()

    def pause_writing(self):
        self.up and self.up.transport.pause_reading()

    def resume_writing(self):
        self.up and self.up.transport.resume_reading()


def main():
    global KEEPALIVE_BUG
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--routes", type=int, default=0, help="match /svc0/ .. /svc{N-1}/ in order")
    ap.add_argument("--keepalive-bug", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    KEEPALIVE_BUG = args.keepalive_bug
    host, port = args.listen.rsplit(":", 1)
    uhost, uport = args.upstream.rsplit(":", 1)
    prefixes = [b"/svc%d/" % i for i in range(args.routes)]
    pool: list = []
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(
        lambda: Client((uhost, int(uport)), pool, prefixes), host, int(port), backlog=4096,
        reuse_address=True))
    try:
        loop.run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


if __name__ == "__main__":
    main()

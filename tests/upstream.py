"""A real upstream for the integration tests, run as its own process:
`python tests/upstream.py PORT [--cert CERT --key KEY [--client-ca CA]]`.

With `--cert`/`--key` it serves HTTPS (ALPN http/1.1) and records, per connection that carried
a request other than /stats, the SNI the client sent (`sni`, null for none), the ALPN protocol
(`alpn`) and the client certificate's subject and SANs (`client_certs`, null for none).
`--client-ca` requires a client certificate signed by that CA.

It speaks HTTP/1.1 through h11 (an independent implementation, so a framing bug in sluice shows
up as a protocol error here rather than being mirrored), except for the few endpoints that must
misbehave on purpose. Paths:

  /echo (and any path not listed here)
                        JSON: method, path, headers (list of pairs), body length and sha256
  /bytes/N              N bytes of body (streamed in 1 MiB writes), content-length framed
  /chunked/N/K          N bytes as K chunks, with a trailer
  /close/N              N bytes, framed by closing the connection (no content-length)
  /slow/MS              answers after MS milliseconds; /stats counts requests cancelled meanwhile
  /status/NNN           an empty response with that status
  /hop                  a response carrying hop-by-hop headers that must not reach the client
  /ws                   accepts a WebSocket-style upgrade, then echoes bytes
  /stats                JSON: connections that carried a request other than /stats, requests
                        served, cancellations
  /sink                 reads the body (any size) and reports its length, never buffering it
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys

import h11

ENDPOINTS = {"echo", "sink", "bytes", "chunked", "close", "status", "hop", "stats",
             "ws", "slow"}
STATS = {"connections": 0, "requests": 0, "cancelled": 0, "slow_started": 0, "port": 0,
         "sni": [], "alpn": [], "client_certs": []}
SNI: dict[int, str | None] = {}      # id(ssl object) -> the server name it was sent
MiB = 1 << 20
BLOCK = b"x" * MiB


async def send(writer, conn: h11.Connection, event) -> None:
    data = conn.send(event)
    if data:
        writer.write(data)
        await writer.drain()


async def respond(writer, conn, status, headers, body=b"") -> None:
    await send(writer, conn, h11.Response(status_code=status, headers=headers))
    if body:
        await send(writer, conn, h11.Data(data=body))
    await send(writer, conn, h11.EndOfMessage())


async def next_event(reader, conn):
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(65536)
            conn.receive_data(data)
            continue
        return event


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    conn = h11.Connection(h11.SERVER)
    counted = False
    try:
        while True:
            event = await next_event(reader, conn)
            if isinstance(event, (h11.ConnectionClosed,)) or event is h11.PAUSED:
                return
            if not isinstance(event, h11.Request):
                return
            STATS["requests"] += 1
            if not counted and event.target != b"/stats":   # our own /stats calls don't count
                counted = True
                STATS["connections"] += 1
                tls = writer.get_extra_info("ssl_object")
                if tls is not None:
                    STATS["sni"].append(SNI.get(id(tls)))
                    STATS["alpn"].append(tls.selected_alpn_protocol())
                    STATS["client_certs"].append(writer.get_extra_info("peercert") or None)
            done = await serve(event, reader, writer, conn)
            if done or conn.our_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return
    except (ConnectionError, h11.RemoteProtocolError, asyncio.IncompleteReadError):
        pass
    finally:
        tls = writer.get_extra_info("ssl_object")
        if tls is not None:
            SNI.pop(id(tls), None)
        writer.close()


async def read_body(reader, conn) -> tuple[int, "hashlib._Hash"]:
    size, digest = 0, hashlib.sha256()
    while True:
        event = await next_event(reader, conn)
        if isinstance(event, h11.Data):
            size += len(event.data)
            digest.update(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return size, digest
        else:
            raise ConnectionError("unexpected %r" % event)


async def serve(req: h11.Request, reader, writer, conn) -> bool:
    """Answer one request; True when the connection must end afterwards."""
    path = req.target.decode()
    parts = path.split("?")[0].strip("/").split("/")
    head = parts[0]
    if head == "ws":
        await send(writer, conn, h11.InformationalResponse(
            status_code=101, headers=[("upgrade", "websocket"), ("connection", "upgrade")]))
        data, _ = conn.trailing_data
        if data:
            writer.write(data)
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return True
            writer.write(chunk)
            await writer.drain()
    if head == "slow":
        ms = int(parts[1])
        STATS["slow_started"] += 1
        try:
            await asyncio.wait_for(reader.read(1), ms / 1000.0)
            # the client side went away before we answered
            STATS["cancelled"] += 1
            return True
        except asyncio.TimeoutError:
            pass
        await read_body(reader, conn)
        await respond(writer, conn, 200, [("content-length", "4")], b"slow")
        return False
    size, digest = await read_body(reader, conn)
    if head == "echo" or head not in ENDPOINTS:
        body = json.dumps({
            "method": req.method.decode(), "path": path,
            "headers": [[k.decode(), v.decode()] for k, v in req.headers],
            "body_bytes": size, "body_sha256": digest.hexdigest(), "port": STATS["port"],
        }).encode()
        await respond(writer, conn, 200, [("content-type", "application/json"),
                                          ("content-length", str(len(body)))], body)
    elif head == "sink":
        body = json.dumps({"body_bytes": size}).encode()
        await respond(writer, conn, 200, [("content-length", str(len(body)))], body)
    elif head == "bytes":
        n = int(parts[1])
        await send(writer, conn, h11.Response(status_code=200, headers=[("content-length", str(n))]))
        if req.method != b"HEAD":
            while n > 0:
                k = min(n, MiB)
                await send(writer, conn, h11.Data(data=BLOCK[:k]))
                n -= k
        await send(writer, conn, h11.EndOfMessage())
    elif head == "chunked":
        n, k = int(parts[1]), int(parts[2])
        await send(writer, conn, h11.Response(status_code=200, headers=[
            ("transfer-encoding", "chunked"), ("trailer", "x-checksum")]))
        step = max(1, n // k)
        sent = 0
        while sent < n:
            m = min(step, n - sent)
            await send(writer, conn, h11.Data(data=BLOCK[:m] if m <= MiB else b"x" * m))
            sent += m
        await send(writer, conn, h11.EndOfMessage(headers=[("x-checksum", "abc")]))
    elif head == "close":
        n = int(parts[1])
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n" + b"y" * n)
        await writer.drain()
        return True
    elif head == "status":
        await respond(writer, conn, int(parts[1]), [("content-length", "0")]
                      if int(parts[1]) not in (204, 304) else [])
    elif head == "hop":
        await respond(writer, conn, 200, [("content-length", "2"), ("keep-alive", "timeout=5"),
                                          ("connection", "x-upstream-secret"),
                                          ("x-upstream-secret", "1"), ("x-kept", "1")], b"ok")
    elif head == "stats":
        body = json.dumps(STATS).encode()
        await respond(writer, conn, 200, [("content-length", str(len(body)))], body)
    return False


def tls_context(cert: str, key: str, client_ca: str | None):
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    if client_ca:
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED

    def record_sni(tls, name, _ctx):
        SNI[id(tls)] = name
    ctx.sni_callback = record_sni
    return ctx


async def main(port: int, tls=None) -> None:
    STATS["port"] = port
    server = await asyncio.start_server(handle, "127.0.0.1", port, limit=MiB, ssl=tls)
    print("ready", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--client-ca")
    args = parser.parse_args()
    asyncio.run(main(args.port, tls_context(args.cert, args.key, args.client_ca)
                     if args.cert else None))

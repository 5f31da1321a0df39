"""A real gRPC server and client (grpcio) for the tests, with no generated code: the service
`test.Echo` has one method of each kind over raw bytes, so what sluice carries is exactly what
grpcio put on the wire.

  Unary          bytes -> the same bytes (metadata "x-echo" is returned as trailing metadata;
                 a request b"fail:CODE:message" is answered with that status instead)
  ServerStream   b"N:SIZE" -> N messages of SIZE bytes
  ClientStream   messages -> one message: their count and total size as b"COUNT:SIZE"
  Bidi           each message echoed as it arrives
  Slow           sleeps the float seconds the request says, then echoes it

Run as a process (`python tests/grpc_peer.py PORT [CERT KEY]`) it prints "ready"."""

from __future__ import annotations

import sys
import time
from concurrent import futures

import grpc

SERVICE = "test.Echo"
IDENTITY = (lambda b: b, lambda b: b)


def _unary(request: bytes, context) -> bytes:
    for key, value in context.invocation_metadata():
        if key == "x-echo":
            context.set_trailing_metadata((("x-echo", value),))
    if request.startswith(b"fail:"):
        _, code, message = request.decode().split(":", 2)
        context.abort(grpc.StatusCode[code], message)
    return request


def _server_stream(request: bytes, context):
    n, size = (int(x) for x in request.split(b":"))
    for i in range(n):
        yield bytes([i % 256]) * size


def _client_stream(requests, context) -> bytes:
    count = size = 0
    for r in requests:
        count += 1
        size += len(r)
    return b"%d:%d" % (count, size)


def _bidi(requests, context):
    for r in requests:
        yield r


def _slow(request: bytes, context) -> bytes:
    time.sleep(float(request))
    return request


def handler() -> grpc.GenericRpcHandler:
    d, s = IDENTITY
    return grpc.method_handlers_generic_handler(SERVICE, {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary, d, s),
        "ServerStream": grpc.unary_stream_rpc_method_handler(_server_stream, d, s),
        "ClientStream": grpc.stream_unary_rpc_method_handler(_client_stream, d, s),
        "Bidi": grpc.stream_stream_rpc_method_handler(_bidi, d, s),
        "Slow": grpc.unary_unary_rpc_method_handler(_slow, d, s),
    })


def serve(port: int, cert: str | None = None, key: str | None = None) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(16))
    server.add_generic_rpc_handlers((handler(),))
    addr = f"127.0.0.1:{port}"
    if cert:
        creds = grpc.ssl_server_credentials([(open(key, "rb").read(), open(cert, "rb").read())])
        server.add_secure_port(addr, creds)
    else:
        server.add_insecure_port(addr)
    server.start()
    return server


def stubs(channel: grpc.Channel) -> dict:
    """The four call kinds plus Slow, as channel callables over bytes."""
    d, s = IDENTITY
    return {
        "Unary": channel.unary_unary(f"/{SERVICE}/Unary", d, s),
        "ServerStream": channel.unary_stream(f"/{SERVICE}/ServerStream", d, s),
        "ClientStream": channel.stream_unary(f"/{SERVICE}/ClientStream", d, s),
        "Bidi": channel.stream_stream(f"/{SERVICE}/Bidi", d, s),
        "Slow": channel.unary_unary(f"/{SERVICE}/Slow", d, s),
    }


if __name__ == "__main__":
    srv = serve(int(sys.argv[1]), *(sys.argv[2:4] if len(sys.argv) >= 4 else ()))
    print("ready", flush=True)
    srv.wait_for_termination()

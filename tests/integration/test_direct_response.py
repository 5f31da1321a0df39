"""Direct responses and local replies come from protocol-neutral tables (status, headers, body)
that the HTTP/1.1 codec turns into its wire form: every status the schema accepts is served,
with the right framing, over real sockets."""
import http.client
import socket

from support import free_port, simple_config

STATUSES = range(200, 600)


def config(port):
    routes = []
    for s in STATUSES:
        no_body = s in (204, 304)
        routes.append({"name": f"s{s}", "match": {"path": f"/s/{s}"},
                       "direct_response": {"status": s, "body": "" if no_body else f"status {s}\n",
                                           "headers": {"x-status": str(s)}}})
    return simple_config(port, routes=routes)


def test_every_status_the_schema_accepts_is_served(start_sluice):
    s = start_sluice(config(free_port()))
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    for st in STATUSES:
        c.request("GET", f"/s/{st}")
        r = c.getresponse()
        body = r.read()
        assert r.status == st
        assert r.getheader("x-status") == str(st)
        if st in (204, 304):
            assert body == b"" and r.getheader("content-length") is None
        else:
            assert body == f"status {st}\n".encode()
            assert r.getheader("content-length") == str(len(body))
    c.close()


def test_head_and_http10_get_the_same_head_without_the_body(start_sluice):
    s = start_sluice(config(free_port()))
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
        sock.sendall(b"HEAD /s/418 HTTP/1.1\r\nHost: a\r\n\r\n"
                     b"GET /s/299 HTTP/1.0\r\nHost: a\r\n\r\n")
        out = b""
        while True:
            d = sock.recv(65536)
            if not d:
                break
            out += d
    head1, _, rest = out.partition(b"\r\n\r\n")
    assert head1.startswith(b"HTTP/1.1 418 I'm a Teapot\r\n") or head1.startswith(b"HTTP/1.1 418 ")
    assert b"content-length: 11" in head1
    # no body after the HEAD reply: the next bytes are the HTTP/1.0 reply, whose unknown
    # status has an empty reason phrase and which closes the connection
    assert rest.startswith(b"HTTP/1.1 299 \r\n")
    assert rest.endswith(b"\r\n\r\nstatus 299\n")

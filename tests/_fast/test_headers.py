"""engine/_fast/headers.pyx: the protocol-neutral header list and its HTTP/1.1 encoder."""
from engine._fast.headers import HF_DROP, HeaderBlock, build_head_py
from engine._fast.hpack import block_from_fields


def test_an_empty_block_has_no_fields():
    h = HeaderBlock()
    assert h.headers == [] and h.get(b"host") is None


def test_build_head_never_writes_a_pseudo_header_as_a_field():
    # an HTTP/2 request translated to HTTP/1.1: :method and :path go on the request line
    h = block_from_fields([(b":method", b"GET"), (b":path", b"/x"), (b":authority", b"a"),
                           (b"accept", b"*/*")])
    assert build_head_py(h, b"GET /x HTTP/1.1\r\n", [b"host", b"a"]) == (
        b"GET /x HTTP/1.1\r\naccept: */*\r\nhost: a\r\n\r\n")


def test_dropped_fields_are_left_out_and_edits_appended_in_order():
    h = block_from_fields([(b"a", b"1"), (b"b", b"2"), (b"A", b"3")])
    assert h.drop(b"a") == 2
    assert h.header_flags[0][1] & HF_DROP and h.header_flags[2][1] & HF_DROP
    assert build_head_py(h, b"HTTP/1.1 200 OK\r\n", [b"c", b"4", b"d", b"5"]) == (
        b"HTTP/1.1 200 OK\r\nb: 2\r\nc: 4\r\nd: 5\r\n\r\n")


def test_a_copy_keeps_its_fields_and_flags_when_the_parser_moves_to_the_next_request():
    # a mirror's shadow (mirror.pyx) copies an HTTP/1.1 connection's block, which the next
    # request of the connection refills; more fields than a block starts with, to grow it
    from engine._fast.http1 import EV_END, EV_HEAD, H1Parser

    fields = [(f"x-f{i}".encode(), f"v{i}".encode()) for i in range(40)]
    p = H1Parser()
    p.feed(b"GET /a HTTP/1.1\r\nHost: one\r\n"
           + b"".join(n + b": " + v + b"\r\n" for n, v in fields) + b"Connection: x-f3\r\n\r\n"
           + b"GET /b HTTP/1.1\r\nHost: two\r\nx-other: 1\r\n\r\n")
    assert p.next_event() == EV_HEAD
    p.drop_header(b"x-f7")
    c = p.copy_block()
    want_headers, want_flags = p.headers, p.header_flags
    assert type(c) is HeaderBlock
    assert (c.headers, c.header_flags) == (want_headers, want_flags)
    assert c.get(b"host") == b"one" and c.get(b"x-f39") == b"v39"
    assert p.next_event() == EV_END and p.next_event() == EV_HEAD
    assert p.get(b"host") == b"two"
    assert (c.headers, c.header_flags) == (want_headers, want_flags)
    # edits on the copy do not reach the original
    c.drop_header(b"host")
    assert build_head_py(c, b"GET /a HTTP/1.1\r\n", [b"host", b"one-shadow"]).count(b"host") == 1

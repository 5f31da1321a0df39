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

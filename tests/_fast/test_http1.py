"""Tests of engine/_fast/http1.pyx, the HTTP/1.1 codec.

Every case runs whole, split in two at every byte, one byte at a time and in random chunks
(`run()`): all of them must give the same messages, bodies and verdict."""

from __future__ import annotations

import hashlib
import random
import sys
from dataclasses import dataclass, field

import pytest

from engine._fast import http1
from engine._fast.http1 import (
    BODY_CHUNKED,
    BODY_LENGTH,
    BODY_NONE,
    BODY_UNTIL_CLOSE,
    EV_BODY,
    EV_END,
    EV_ERROR,
    EV_HEAD,
    EV_NEED_DATA,
    EV_PAUSED,
    HF_DROP,
    HF_HOP,
    H1Parser,
    serialize_chunk_size,
    serialize_head,
)


# --------------------------------------------------------------------------------------------
# Harness


@dataclass
class Message:
    method: bytes
    target: bytes
    version: bytes
    status: int
    reason: bytes
    headers: list
    flags: list
    body_kind: int
    content_length: int | None
    keep_alive: bool
    expect_continue: bool
    upgrade: bool
    body: bytes = b""
    trailers: list = field(default_factory=list)
    complete: bool = False


@dataclass
class Outcome:
    messages: list
    error: tuple | None = None     # (status, reason)
    paused: bool = False
    leftover: bytes = b""
    eof: int | None = None         # what feed_eof() returned, if called

    @property
    def msg(self) -> Message:
        assert len(self.messages) == 1, self
        return self.messages[0]


def _snapshot(p: H1Parser) -> Message:
    return Message(
        p.method, p.target, p.http_version, p.status_code, p.reason, p.headers,
        p.header_flags, p.body_kind, p.content_length, p.keep_alive, p.expect_continue,
        p.upgrade,
    )


def parse(pieces, *, is_request=True, eof=False, setup=None, max_body_event=None, **limits):
    p = H1Parser(is_request=is_request, **limits)
    if setup:
        setup(p)
    out = Outcome([])
    stop = False
    for piece in pieces:
        p.feed(piece)
        while not stop:
            ev = p.next_event()
            if ev == EV_HEAD:
                out.messages.append(_snapshot(p))
            elif ev == EV_BODY:
                chunk = p.event_slice()
                assert chunk, "EV_BODY must never be empty"
                if max_body_event is not None:
                    assert len(chunk) <= max_body_event
                out.messages[-1].body += chunk
            elif ev == EV_END:
                out.messages[-1].trailers = p.trailers
                out.messages[-1].complete = True
            elif ev == EV_NEED_DATA:
                break
            elif ev == EV_ERROR:
                out.error = (p.error_status, p.error_reason)
                assert p.next_event() == EV_ERROR, "errors are final"
                stop = True
            elif ev == EV_PAUSED:
                out.paused = True
                break
            else:  # pragma: no cover
                raise AssertionError(ev)
    if out.paused:
        assert p.next_event() == EV_PAUSED, "paused stays paused"
        out.leftover = p.leftover()
    if eof and not stop and not out.paused:
        out.eof = p.feed_eof()
        if out.eof == EV_END:
            out.messages[-1].complete = True
        elif out.eof == EV_ERROR:
            out.error = (p.error_status, p.error_reason)
    return out


def splits(data: bytes, seed: int = 0):
    """Whole, in two at every byte, one byte at a time, and random chunks."""
    yield "whole", [data]
    n = len(data)
    points = range(1, n) if n <= 1500 else sorted(random.Random(seed).sample(range(1, n), 300))
    for i in points:
        yield f"split@{i}", [data[:i], data[i:]]
    if n <= 20000:
        yield "bytewise", [data[i:i + 1] for i in range(n)]
    rng = random.Random(seed)
    for r in range(5):
        pieces, i = [], 0
        while i < n:
            k = rng.randint(1, 16 if r < 3 else 512)
            pieces.append(data[i:i + k])
            i += k
        yield f"random{r}", pieces


def run(data: bytes, **kw) -> Outcome:
    """Parse `data` in every way of splitting it; all must agree. Returns the outcome."""
    ref = parse([data], **kw)
    for name, pieces in splits(data):
        got = parse(pieces, **kw)
        assert got == ref, f"{name} differs from whole"
    return ref


def req(*lines: str | bytes, body: bytes = b"") -> bytes:
    return b"".join((x.encode("latin-1") if isinstance(x, str) else x) + b"\r\n" for x in lines) + b"\r\n" + body


def rejected(data: bytes, status: int, reason: str | None = None, **kw) -> None:
    out = run(data, **kw)
    assert out.error is not None, out
    assert out.error[0] == status, out.error
    if reason is not None:
        assert out.error[1] == reason, out.error


# --------------------------------------------------------------------------------------------
# Requests: heads


def test_simple_get_has_no_body_and_keeps_alive():
    out = run(req("GET /index.html?q=1 HTTP/1.1", "Host: example.com", "User-Agent: t"))
    m = out.msg
    assert (m.method, m.target, m.version) == (b"GET", b"/index.html?q=1", b"1.1")
    assert m.headers == [(b"Host", b"example.com"), (b"User-Agent", b"t")]
    assert m.body_kind == BODY_NONE and m.content_length is None
    assert m.keep_alive and not m.upgrade and not m.expect_continue
    assert m.complete and m.body == b"" and out.error is None


def test_header_values_have_leading_and_trailing_ows_stripped():
    m = run(req("GET / HTTP/1.1", "Host:example.com", "A: \t  x  y \t ", "B:", "C:   ")).msg
    assert m.headers == [(b"Host", b"example.com"), (b"A", b"x  y"), (b"B", b""), (b"C", b"")]


def test_header_values_may_hold_obs_text_and_inner_tabs():
    m = run(req("GET / HTTP/1.1", "Host: h", b"X: caf\xc3\xa9\tbar")).msg
    assert m.headers[1] == (b"X", b"caf\xc3\xa9\tbar")


def test_header_names_keep_their_case_and_get_is_case_insensitive():
    p = H1Parser()
    p.feed(req("GET / HTTP/1.1", "hOsT: a", "X-Thing: 1", "x-thing: 2"))
    assert p.next_event() == EV_HEAD
    assert p.headers[0] == (b"hOsT", b"a")
    assert p.get(b"host") == b"a"
    assert p.get(b"HOST") == b"a"
    assert p.get(b"x-thing") == b"1"
    assert p.get(b"missing") is None


def test_header_ids_are_matched_case_insensitively():
    names = [
        ("Host", http1.H_HOST), ("CONTENT-LENGTH", http1.H_CONTENT_LENGTH),
        ("connection", http1.H_CONNECTION), ("Keep-Alive", http1.H_KEEP_ALIVE),
        ("upgrade", http1.H_UPGRADE), ("te", http1.H_TE), ("TRAILER", http1.H_TRAILER),
        ("Proxy-Connection", http1.H_PROXY_CONNECTION), ("expect", http1.H_EXPECT),
        ("X-Forwarded-For", http1.H_X_FORWARDED_FOR),
        ("x-forwarded-proto", http1.H_X_FORWARDED_PROTO),
        ("X-FORWARDED-HOST", http1.H_X_FORWARDED_HOST), ("X-Request-Id", http1.H_X_REQUEST_ID),
        ("Cookie", http1.H_COOKIE), ("Hostx", http1.H_OTHER), ("Cookies", http1.H_OTHER),
        ("Transfer-Encodinx", http1.H_OTHER),
    ]
    lines = ["GET / HTTP/1.1"] + [f"{n}: v" for n, _ in names if n != "Host"] + ["Host: h"]
    lines = [x.replace("CONTENT-LENGTH: v", "CONTENT-LENGTH: 0") for x in lines]
    lines = [x.replace("expect: v", "expect: nothing") for x in lines]
    m = run(req(*lines)).msg
    ids = {name.decode(): hid for (name, _), (hid, _) in zip(m.headers, m.flags)}
    for n, hid in names:
        assert ids[n] == hid, n


def test_leading_empty_lines_before_request_line_are_ignored():
    m = run(b"\r\n\r\n" + req("GET / HTTP/1.1", "Host: h")).msg
    assert m.method == b"GET"


def test_http10_without_keep_alive_does_not_keep_alive_and_needs_no_host():
    m = run(req("GET / HTTP/1.0")).msg
    assert m.version == b"1.0" and not m.keep_alive


def test_http10_with_connection_keep_alive_keeps_alive():
    assert run(req("GET / HTTP/1.0", "Connection: Keep-Alive")).msg.keep_alive


def test_connection_close_disables_keep_alive_even_in_a_list():
    assert not run(req("GET / HTTP/1.1", "Host: h", "Connection: foo, CLOSE")).msg.keep_alive
    assert not run(req("GET / HTTP/1.1", "Host: h", "Connection: a", "Connection: close")).msg.keep_alive


def test_expect_100_continue_is_case_insensitive():
    m = run(req("POST / HTTP/1.1", "Host: h", "Expect: 100-Continue", "Content-Length: 2"), ).msg
    assert m.expect_continue and m.body_kind == BODY_LENGTH and not m.complete


def test_expect_100_continue_is_ignored_in_http10():
    assert not run(req("POST / HTTP/1.0", "Expect: 100-continue", "Content-Length: 0")).msg.expect_continue


def test_other_expectations_do_not_set_expect_continue():
    assert not run(req("GET / HTTP/1.1", "Host: h", "Expect: 100-continuex")).msg.expect_continue


@pytest.mark.parametrize("line", [
    "GET /a/b?c=d&e=%20 HTTP/1.1",
    "GET http://example.com/x HTTP/1.1",          # absolute-form (RFC 9112 3.2.2)
    "GET https://user@[::1]:8443/ HTTP/1.1",
    "OPTIONS * HTTP/1.1",                         # asterisk-form (3.2.4)
    "CONNECT example.com:443 HTTP/1.1",           # authority-form (3.2.3)
    "CONNECT [2001:db8::1]:443 HTTP/1.1",
    "PURGE /x HTTP/1.1",                          # any token is a method
    "M-SEARCH * HTTP/1.1".replace("*", "/"),
])
def test_request_target_forms_are_accepted_where_allowed(line):
    m = run(req(line, "Host: h")).msg
    method, target, _ = line.split(" ")
    assert (m.method, m.target) == (method.encode(), target.encode())


@pytest.mark.parametrize("line", [
    "GET * HTTP/1.1",                    # asterisk-form is only for OPTIONS
    "CONNECT /path HTTP/1.1",            # CONNECT needs authority-form
    "CONNECT example.com HTTP/1.1",      # ... with a port
    "CONNECT example.com:https HTTP/1.1",
    "CONNECT :443 HTTP/1.1",
    "GET www.example.com HTTP/1.1",      # neither origin- nor absolute-form
    "GET 1http://x/ HTTP/1.1",
])
def test_request_target_in_the_wrong_form_is_400(line):
    rejected(req(line, "Host: h"), 400, "bad request target")


@pytest.mark.parametrize("target", [
    b"/a\x00b", b"/a\x7fb", b"/a\x80b", b"/caf\xc3\xa9", b"/a\tb", b"/a\x01",
])
def test_invalid_bytes_in_target_are_400(target):
    rejected(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n", 400)


def test_space_inside_target_is_400():
    rejected(req("GET /a b HTTP/1.1", "Host: h"), 400)
    rejected(req("GET  / HTTP/1.1", "Host: h"), 400)


@pytest.mark.parametrize("line,reason", [
    ("G(T / HTTP/1.1", "bad method"),
    (" GET / HTTP/1.1", "bad method"),
    ("GET / http/1.1", "bad http version"),
    ("GET / HTTP/1.1 ", "bad http version"),
    ("GET / HTTP/1", "bad http version"),
    ("GET / HTTP/11", "bad http version"),
    ("GET / HTTP/1.1x", "bad http version"),
    ("GET /", "bad http version"),      # HTTP/0.9: refused at the line end (see below)
    ("GET", "bad http version"),
])
def test_malformed_request_line_is_400(line, reason):
    rejected(req(line, "Host: h"), 400, reason)


@pytest.mark.parametrize("version", ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.0"])
def test_unsupported_http_version_is_505(version):
    rejected(req(f"GET / {version}", "Host: h"), 505, "http version not supported")


# --------------------------------------------------------------------------------------------
# Requests: field-line refusals (RFC 9112 2.2, 5)


@pytest.mark.parametrize("data,reason", [
    (b"GET / HTTP/1.1\nHost: h\r\n\r\n", "bare LF"),
    (b"GET / HTTP/1.1\r\nHost: h\n\r\n", "bare LF"),
    (b"GET / HTTP/1.1\r\nHost: h\r\n\n", "bare LF"),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\nb\r\n\r\n", "bare LF"),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", "bare CR"),
    (b"GET / HTTP/1.1\r\nHost: h\r\n\rX: 1\r\n\r\n", "bare CR"),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\r\n\r\n", "bare CR"),
    (b"\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", "bare CR"),
    (b"\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", "bare LF"),
])
def test_bare_cr_or_lf_in_the_head_is_400(data, reason):
    rejected(data, 400, reason)


def test_obs_fold_is_400():
    rejected(req("GET / HTTP/1.1", "Host: h", "X: a", " b"), 400, "obs-fold")
    rejected(req("GET / HTTP/1.1", "Host: h", "X: a", "\tb"), 400, "obs-fold")


def test_whitespace_before_the_first_header_is_400():
    rejected(req("GET / HTTP/1.1", " Host: h"), 400, "obs-fold")


def test_whitespace_between_field_name_and_colon_is_400():
    rejected(req("GET / HTTP/1.1", "Host : h"), 400, "whitespace before colon")
    rejected(req("GET / HTTP/1.1", "Host: h", "Content-Length\t: 0"), 400, "whitespace before colon")


@pytest.mark.parametrize("line", [": x", "X Y: z", "X\x00: 1", "Ä: 1", "X(: 1", "NoColon", "X\x7f: 1"])
def test_field_name_that_is_not_a_token_is_400(line):
    rejected(req("GET / HTTP/1.1", "Host: h", line), 400, "bad field name")


@pytest.mark.parametrize("value", [b"a\x00b", b"\x01", b"a\x1fb", b"a\x7fb", b"\x0b", b"x\x0c"])
def test_nul_or_ctl_in_field_value_is_400(value):
    rejected(b"GET / HTTP/1.1\r\nHost: h\r\nX: " + value + b"\r\n\r\n", 400, "bad field value")


# --------------------------------------------------------------------------------------------
# Requests: Host (RFC 9112 3.2)


def test_http11_request_without_host_is_400():
    rejected(req("GET / HTTP/1.1", "X: y"), 400, "missing host")


def test_request_with_two_host_fields_is_400():
    rejected(req("GET / HTTP/1.1", "Host: a", "host: a"), 400, "multiple host")
    rejected(req("GET / HTTP/1.0", "Host: a", "Host: b"), 400, "multiple host")


@pytest.mark.parametrize("host", ["a b", "a/b", "a@b", "a?b", 'a"b', "a\\b", "a<b",
                                  # a proxy routes on Host: nothing that reads two ways
                                  "", "a,b", "a:65536", "a:99999", "a:", "a:8o", "a:123456",
                                  "user:pw@internal", "a%2eb", "[::1", "[]", "[::1]x", ":80"])
def test_host_with_invalid_characters_is_400(host):
    rejected(req("GET / HTTP/1.1", f"Host: {host}"), 400, "bad host")


@pytest.mark.parametrize("host", ["example.com", "EXAMPLE.com:8080", "[::1]:80", "a_b.local", "10.0.0.1",
                                  "a:65535", "x-y~z"])
def test_valid_host_is_accepted(host):
    assert run(req("GET / HTTP/1.1", f"Host: {host}")).error is None


# --------------------------------------------------------------------------------------------
# Requests: framing (RFC 9112 6)


def test_content_length_body_is_delivered():
    out = run(req("POST /upload HTTP/1.1", "Host: h", "Content-Length: 11", body=b"hello world"))
    m = out.msg
    assert m.body_kind == BODY_LENGTH and m.content_length == 11
    assert m.body == b"hello world" and m.complete


def test_content_length_zero_ends_immediately():
    m = run(req("POST / HTTP/1.1", "Host: h", "Content-Length: 0")).msg
    assert m.body_kind == BODY_LENGTH and m.content_length == 0 and m.complete


def test_request_without_content_length_or_transfer_encoding_has_no_body():
    out = run(req("POST / HTTP/1.1", "Host: h") + b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert [m.method for m in out.messages] == [b"POST", b"GET"]
    assert out.messages[0].body_kind == BODY_NONE


@pytest.mark.parametrize("fields", [("Content-Length: 3", "Content-Length: 3"),
                                    ("Content-Length: 3", "Content-Length: 003")])
def test_identical_content_length_fields_are_400(fields):
    # RFC 9110 8.6 lets a recipient collapse them; forwarding them would pass the ambiguity on
    # to the upstream, so we refuse them as nginx does
    rejected(req("POST / HTTP/1.1", "Host: h", *fields, body=b"abc"), 400, "duplicate content-length")


def test_duplicate_content_length_with_different_values_is_400():
    rejected(req("POST / HTTP/1.1", "Host: h", "Content-Length: 3", "Content-Length: 4", body=b"abcd"),
             400, "duplicate content-length")


@pytest.mark.parametrize("value", ["3, 3", "3, 4", "3,3"])
def test_content_length_list_is_400(value):
    rejected(req("POST / HTTP/1.1", "Host: h", f"Content-Length: {value}", body=b"abcd"),
             400, "bad content-length")


@pytest.mark.parametrize("value", ["", "+5", "-1", "0x5", "5 5", "5,", ",5", "5;", "1e3", "³",
                                   "9223372036854775808", "99999999999999999999999"])
def test_content_length_that_is_not_all_digits_or_overflows_is_400(value):
    rejected(req("POST / HTTP/1.1", "Host: h", f"Content-Length: {value}"), 400, "bad content-length")


def test_content_length_of_int64_max_is_accepted():
    p = H1Parser()
    p.feed(req("POST / HTTP/1.1", "Host: h", "Content-Length: 9223372036854775807"))
    assert p.next_event() == EV_HEAD and p.content_length == 2**63 - 1


def test_transfer_encoding_with_content_length_is_400():
    rejected(req("POST / HTTP/1.1", "Host: h", "Content-Length: 5", "Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
             400, "content-length and transfer-encoding")
    rejected(req("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: chunked", "Content-Length: 5", body=b"0\r\n\r\n"),
             400, "content-length and transfer-encoding")


@pytest.mark.parametrize("te", ["gzip", "chunked, gzip", "gzip, chunked", "identity", "chunked;q=1", "chunkedx",
                                "x-custom"])
def test_transfer_encoding_other_than_chunked_is_501(te):
    rejected(req("POST / HTTP/1.1", "Host: h", f"Transfer-Encoding: {te}"), 501, "unsupported transfer-encoding")


def test_transfer_encoding_split_across_fields_ending_in_gzip_is_501():
    rejected(req("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: chunked", "Transfer-Encoding: gzip"), 501)


@pytest.mark.parametrize("lines", [
    ["Transfer-Encoding: chunked, chunked"],
    ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
    ["Transfer-Encoding: CHUNKED,chunked"],
])
def test_chunked_applied_twice_is_400(lines):
    rejected(req("POST / HTTP/1.1", "Host: h", *lines), 400, "chunked applied twice")


def test_transfer_encoding_in_http10_request_is_400():
    rejected(req("POST / HTTP/1.0", "Transfer-Encoding: chunked", body=b"0\r\n\r\n"), 400,
             "transfer-encoding in http/1.0")


def test_empty_transfer_encoding_is_400():
    rejected(req("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: "), 400, "bad transfer-encoding")


def test_transfer_encoding_with_empty_list_elements_is_chunked():
    m = run(req("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: , Chunked ,", body=b"1\r\na\r\n0\r\n\r\n")).msg
    assert m.body_kind == BODY_CHUNKED and m.body == b"a"


def test_connect_with_a_body_is_400():
    rejected(req("CONNECT h:443 HTTP/1.1", "Host: h:443", "Content-Length: 5", body=b"hello"), 400,
             "connect with a body")


# --------------------------------------------------------------------------------------------
# Chunked bodies (RFC 9112 7.1)


def test_chunked_body_with_extensions_and_trailers():
    body = (b"5;name=value\r\nhello\r\n"
            b"6 ; a=\"q;u\\\"o\" ; b\r\n world\r\n"
            b"0;last\r\n"
            b"Expires: never\r\nX-Digest:  abc \r\n\r\n")
    out = run(req("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: chunked", body=body))
    m = out.msg
    assert m.body_kind == BODY_CHUNKED and m.content_length is None
    assert m.body == b"hello world"
    assert m.trailers == [(b"Expires", b"never"), (b"X-Digest", b"abc")]
    assert m.complete


def test_chunked_sizes_are_hex_with_either_case_and_leading_zeros():
    body = b"A\r\n" + b"x" * 10 + b"\r\n" + b"0001f\r\n" + b"y" * 31 + b"\r\n" + b"000\r\n\r\n"
    m = run(req("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: chunked", body=body)).msg
    assert m.body == b"x" * 10 + b"y" * 31 and m.trailers == []


def test_chunked_request_followed_by_pipelined_request():
    data = req("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: chunked", body=b"3\r\nabc\r\n0\r\n\r\n")
    data += req("GET /next HTTP/1.1", "Host: h")
    out = run(data)
    assert [m.target for m in out.messages] == [b"/", b"/next"]
    assert out.messages[0].body == b"abc" and all(m.complete for m in out.messages)


CHUNKED_HEAD = req("POST / HTTP/1.1", "Host: h", "Transfer-Encoding: chunked")


@pytest.mark.parametrize("body,reason", [
    (b"zz\r\n", "bad chunk size"),
    (b"\r\n", "bad chunk size"),
    (b"-1\r\n", "bad chunk size"),
    (b"0x5\r\nhello\r\n", "bad chunk size"),
    (b"5 \r\nhello\r\n0\r\n\r\n", "bad chunk size"),
    (b"5 5\r\nhello\r\n", "bad chunk size"),
    (b"8000000000000000\r\n", "chunk size overflow"),
    (b"ffffffffffffffffff\r\n", "chunk size overflow"),
    (b"5;a=\x01\r\nhello\r\n0\r\n\r\n", "bad chunk extension"),
    (b"5;a\rb\r\nhello\r\n0\r\n\r\n", "bad chunk extension"),
    (b"5\nhello\r\n0\r\n\r\n", "bad chunk line"),
    (b"5;a\nhello\r\n0\r\n\r\n", "bad chunk line"),
    (b"5\r\nhelloXX0\r\n\r\n", "bad chunk terminator"),
    (b"5\r\nhello\n0\r\n\r\n", "bad chunk terminator"),
    (b"5\r\nhello\rX", "bad chunk terminator"),
    (b"5\r\nhello\r\n0\r\n\n", "bare LF"),
    (b"5\r\nhello\r\n0\r\nX: 1\n\r\n", "bare LF"),
    (b"5\r\nhello\r\n0\r\nX: 1\r\n folded\r\n\r\n", "obs-fold"),
    (b"5\r\nhello\r\n0\r\nX : 1\r\n\r\n", "whitespace before colon"),
    (b"5\r\nhello\r\n0\r\nX: \x00\r\n\r\n", "bad field value"),
    (b"5\r\nhello\r\n0\r\n:x\r\n\r\n", "bad field name"),
    (b"1;" + b"a" * 5000 + b"\r\nx\r\n", "chunk line too long"),
])
def test_bad_chunk_framing_is_400(body, reason):
    rejected(CHUNKED_HEAD + body, 400, reason)


def test_chunk_size_of_int64_max_is_accepted_then_truncation_is_an_error_at_eof():
    out = run(CHUNKED_HEAD + b"7fffffffffffffff\r\nabc", eof=True)
    assert out.msg.body == b"abc" and out.error == (400, "incomplete message")


# --------------------------------------------------------------------------------------------
# Pipelining, upgrade, CONNECT


def test_three_pipelined_requests_in_one_buffer():
    data = (req("GET /1 HTTP/1.1", "Host: h")
            + req("POST /2 HTTP/1.1", "Host: h", "Content-Length: 4", body=b"body")
            + req("GET /3 HTTP/1.1", "Host: h", "Connection: close"))
    out = run(data)
    assert [(m.method, m.target, m.body, m.keep_alive, m.complete) for m in out.messages] == [
        (b"GET", b"/1", b"", True, True),
        (b"POST", b"/2", b"body", True, True),
        (b"GET", b"/3", b"", False, True),
    ]


def test_head_fields_stay_valid_until_the_next_head_is_complete():
    p = H1Parser()
    p.feed(req("GET /first HTTP/1.1", "Host: a") + b"GET /second HTTP/1.1\r\nHost: b\r\n")
    assert p.next_event() == EV_HEAD
    assert p.next_event() == EV_END
    assert p.next_event() == EV_NEED_DATA      # half of the second head was scanned
    assert p.target == b"/first" and p.get(b"host") == b"a"
    p.feed(b"\r\n")
    assert p.next_event() == EV_HEAD and p.target == b"/second"


def test_websocket_upgrade_pauses_after_end_and_leftover_holds_the_next_bytes():
    data = req("GET /chat HTTP/1.1", "Host: h", "Upgrade: websocket", "Connection: keep-alive, Upgrade",
               "Sec-WebSocket-Key: x") + b"\x81\x05hello"
    out = run(data)
    assert out.msg.upgrade and out.msg.complete and out.paused
    assert out.leftover == b"\x81\x05hello"


def test_upgrade_request_with_body_pauses_after_the_body():
    data = req("POST / HTTP/1.1", "Host: h", "Upgrade: websocket", "Connection: Upgrade",
               "Content-Length: 3", body=b"abc") + b"\x81\x00"
    out = run(data)
    assert out.msg.body == b"abc" and out.paused and out.leftover == b"\x81\x00"
    hop = [name for (name, _), (_, f) in zip(out.msg.headers, out.msg.flags) if f & HF_HOP]
    assert hop == [b"Upgrade", b"Connection"]


@pytest.mark.parametrize("upgrade", ["h2c", "H2C", "h2c, h2c"])
def test_h2c_upgrade_is_no_upgrade_and_its_fields_are_hop_by_hop(upgrade):
    # h2c smuggling: we do not do the h2c upgrade, so an upstream must never be offered it
    data = req("GET / HTTP/1.1", "Host: h", f"Upgrade: {upgrade}", "Connection: Upgrade, HTTP2-Settings",
               "HTTP2-Settings: AAA") + req("GET /2 HTTP/1.1", "Host: h")
    out = run(data)
    assert not out.messages[0].upgrade and not out.paused and len(out.messages) == 2
    hop = [name for (name, _), (_, f) in zip(out.messages[0].headers, out.messages[0].flags) if f & HF_HOP]
    assert hop == [b"Upgrade", b"Connection", b"HTTP2-Settings"]


def test_http2_settings_is_hop_by_hop_even_when_connection_does_not_name_it():
    out = run(req("GET / HTTP/1.1", "Host: h", "HTTP2-Settings: AAA"))
    assert [f & HF_HOP for _, f in out.msg.flags] == [0, HF_HOP]


def test_upgrade_to_websocket_and_h2c_is_an_upgrade():
    out = run(req("GET / HTTP/1.1", "Host: h", "Upgrade: websocket, h2c", "Connection: Upgrade"))
    assert out.msg.upgrade


def test_upgrade_header_without_connection_upgrade_is_not_an_upgrade():
    out = run(req("GET / HTTP/1.1", "Host: h", "Upgrade: websocket") + req("GET /2 HTTP/1.1", "Host: h"))
    assert not out.messages[0].upgrade and not out.paused and len(out.messages) == 2


def test_upgrade_in_http10_is_ignored():
    assert not run(req("GET / HTTP/1.0", "Upgrade: websocket", "Connection: upgrade")).msg.upgrade


def test_connect_pauses_after_the_head_and_keeps_tunnel_bytes_in_leftover():
    out = run(req("CONNECT example.com:443 HTTP/1.1", "Host: example.com:443") + b"\x16\x03\x01tls")
    assert out.msg.upgrade and out.msg.body_kind == BODY_NONE and out.paused
    assert out.leftover == b"\x16\x03\x01tls"


def test_resume_after_a_refused_upgrade_parses_the_next_request():
    p = H1Parser()
    p.feed(req("GET / HTTP/1.1", "Host: h", "Upgrade: x", "Connection: upgrade") + req("GET /b HTTP/1.1", "Host: h"))
    assert [p.next_event() for _ in range(3)] == [EV_HEAD, EV_END, EV_PAUSED]
    p.resume()
    assert p.next_event() == EV_HEAD and p.target == b"/b" and not p.upgrade


def test_feed_while_paused_appends_to_leftover():
    p = H1Parser()
    p.feed(req("CONNECT h:1 HTTP/1.1", "Host: h:1") + b"ab")
    assert [p.next_event() for _ in range(3)] == [EV_HEAD, EV_END, EV_PAUSED]
    p.feed(b"cd")
    assert p.next_event() == EV_PAUSED
    assert p.leftover() == b"abcd"


def test_after_an_error_every_call_returns_error_and_feed_is_ignored():
    p = H1Parser()
    p.feed(b"GET / HTTP/1.1\r\nHost : h\r\n\r\n")
    assert p.next_event() == EV_ERROR
    p.feed(req("GET / HTTP/1.1", "Host: h"))
    assert p.next_event() == EV_ERROR and p.next_event() == EV_ERROR
    assert p.feed_eof() == EV_ERROR
    assert (p.error_status, p.error_reason) == (400, "whitespace before colon")


# --------------------------------------------------------------------------------------------
# Hop-by-hop fields and serialisation


def _hop_names(p: H1Parser) -> list[bytes]:
    return [name for (name, _), (_, f) in zip(p.headers, p.header_flags) if f & HF_HOP]


def test_hop_by_hop_fields_get_hf_hop_including_those_named_by_connection_before_or_after():
    p = H1Parser()
    p.feed(req("GET / HTTP/1.1", "X-Before: 1", "Host: h", "Keep-Alive: 5", "TE: trailers",
               "Trailer: X", "Proxy-Connection: x", "Upgrade: y", "Connection: x-before, X-AFTER",
               "X-After: 2", "X-Kept: 3"))
    assert p.next_event() == EV_HEAD
    assert _hop_names(p) == [b"X-Before", b"Keep-Alive", b"TE", b"Trailer", b"Proxy-Connection",
                             b"Upgrade", b"Connection", b"X-After"]


def test_connection_never_makes_content_length_or_host_hop_by_hop():
    p = H1Parser()
    p.feed(req("POST / HTTP/1.1", "Host: h", "Content-Length: 1", "Connection: content-length, host", body=b"x"))
    assert p.next_event() == EV_HEAD
    assert _hop_names(p) == [b"Connection"]


def test_build_head_skips_hop_by_hop_and_dropped_headers_and_appends_extra():
    p = H1Parser()
    p.feed(req("GET /x HTTP/1.1", "Host: example.com", "Connection: keep-alive, X-Secret", "X-Secret: s",
               "Cookie: a=b", "Transfer-Encoding: chunked", "Accept:   */*  ", "Authorization: t",
               body=b"0\r\n\r\n"))
    assert p.next_event() == EV_HEAD
    assert p.drop_header(b"authorization") == 1
    out = serialize_head(p, b"GET /x HTTP/1.1\r\n", [b"X-Forwarded-For", b"1.2.3.4", b"Via", b"1.1 sluice"])
    assert out == (b"GET /x HTTP/1.1\r\nHost: example.com\r\nCookie: a=b\r\nAccept: */*\r\n"
                   b"X-Forwarded-For: 1.2.3.4\r\nVia: 1.1 sluice\r\n\r\n")


def test_build_head_normalises_to_one_space_after_the_colon():
    p = H1Parser()
    p.feed(req("GET / HTTP/1.1", "Host:h", "A:\t\tb", "Empty:"))
    assert p.next_event() == EV_HEAD
    assert serialize_head(p, b"GET / HTTP/1.1\r\n") == b"GET / HTTP/1.1\r\nHost: h\r\nA: b\r\nEmpty: \r\n\r\n"


def test_build_head_of_a_response_without_extra():
    p = H1Parser(is_request=False)
    p.feed(b"HTTP/1.1 200 OK\r\nServer: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert p.next_event() == EV_HEAD
    assert serialize_head(p, b"HTTP/1.1 200 OK\r\n", []) == b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 0\r\n\r\n"


def test_build_head_output_parses_back_to_the_kept_headers():
    p = H1Parser()
    p.feed(req("GET /x HTTP/1.1", "Host: h", "A:  1 ", "Connection: a", "B: 2"))
    assert p.next_event() == EV_HEAD
    q = H1Parser()
    q.feed(serialize_head(p, b"GET /x HTTP/1.1\r\n", None))
    assert q.next_event() == EV_HEAD
    assert q.headers == [(b"Host", b"h"), (b"B", b"2")]


def test_build_head_rejects_edits_that_are_not_bytes():
    p = H1Parser()
    with pytest.raises(TypeError):
        serialize_head(p, b"GET / HTTP/1.1\r\n", ["x", "y"])


@pytest.mark.parametrize("n,line", [(0, b"0\r\n"), (1, b"1\r\n"), (15, b"f\r\n"), (16, b"10\r\n"),
                                    (65536, b"10000\r\n"), (2**63 - 1, b"7fffffffffffffff\r\n")])
def test_chunk_size_line_is_lowercase_hex_and_crlf(n, line):
    assert serialize_chunk_size(n) == line


def test_chunk_size_line_refuses_negative_sizes():
    with pytest.raises(ValueError):
        serialize_chunk_size(-1)


# --------------------------------------------------------------------------------------------
# Limits


def test_request_line_longer_than_max_uri_bytes_is_414():
    line = "GET /" + "a" * 30 + " HTTP/1.1"
    rejected(req(line, "Host: h"), 414, "request line too long", max_uri_bytes=len(line) - 1)
    assert run(req(line, "Host: h"), max_uri_bytes=len(line)).error is None


def test_414_is_detected_before_the_request_line_is_complete():
    p = H1Parser(max_uri_bytes=20)
    fed = 0
    for b in b"GET /" + b"a" * 100:
        p.feed(bytes([b]))
        fed += 1
        if p.next_event() == EV_ERROR:
            break
    assert p.error_status == 414 and fed == 21


def test_head_larger_than_max_head_bytes_is_431():
    head = req("GET / HTTP/1.1", "Host: h", "X: " + "v" * 50)
    assert run(head, max_head_bytes=len(head)).error is None
    rejected(head, 431, "head too large", max_head_bytes=len(head) - 1)


def test_431_is_detected_before_the_head_is_complete():
    p = H1Parser(max_head_bytes=1000)
    p.feed(b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 2000)
    assert p.next_event() == EV_ERROR and p.error_status == 431


def test_more_than_max_headers_fields_is_431():
    lines = ["GET / HTTP/1.1", "Host: h"] + [f"X-{i}: {i}" for i in range(4)]
    assert run(req(*lines), max_headers=5).error is None
    rejected(req(*lines), 431, "too many header fields", max_headers=4)


def test_max_headers_above_the_hard_ceiling_is_capped():
    lines = ["GET / HTTP/1.1", "Host: h"] + [f"X-{i}: {i}" for i in range(300)]
    p = H1Parser(max_headers=10_000)
    p.feed(req(*lines))
    assert p.next_event() == EV_ERROR and p.error_status == 431


def test_trailer_section_larger_than_max_head_bytes_is_431():
    body = b"0\r\n" + b"X: " + b"a" * 300 + b"\r\n\r\n"
    rejected(CHUNKED_HEAD + body, 431, "trailers too large", max_head_bytes=200)


def test_more_trailer_fields_than_max_headers_is_431():
    body = b"0\r\n" + b"".join(b"T%d: x\r\n" % i for i in range(5)) + b"\r\n"
    rejected(CHUNKED_HEAD + body, 431, "too many trailer fields", max_headers=4)


# --------------------------------------------------------------------------------------------
# Large bodies: streamed as slices, never buffered whole


def _stream(p: H1Parser, data: bytes, piece: int):
    sizes, digest, events = [], hashlib.sha256(), []
    for i in range(0, len(data), piece):
        p.feed(data[i:i + piece])
        while True:
            ev = p.next_event()
            events.append(ev)
            if ev == EV_BODY:
                s = p.event_slice()
                sizes.append(len(s))
                digest.update(s)
            elif ev in (EV_NEED_DATA, EV_ERROR, EV_PAUSED):
                break
    return sizes, digest.hexdigest(), events


def test_large_content_length_body_fed_in_64k_pieces_yields_only_slices():
    body = random.Random(1).randbytes(5 * 1024 * 1024)
    data = req("PUT /big HTTP/1.1", "Host: h", f"Content-Length: {len(body)}", body=body)
    sizes, digest, events = _stream(H1Parser(), data, 65536)
    assert sum(sizes) == len(body) and max(sizes) <= 65536 and len(sizes) >= 80
    assert digest == hashlib.sha256(body).hexdigest()
    assert events.count(EV_HEAD) == 1 and events.count(EV_END) == 1 and EV_ERROR not in events


def test_large_chunked_body_fed_in_64k_pieces_yields_only_slices():
    rng = random.Random(2)
    body = rng.randbytes(5 * 1024 * 1024)
    framed, i = [], 0
    while i < len(body):
        n = rng.randint(1, 300_000)
        framed.append(serialize_chunk_size(len(body[i:i + n])) + body[i:i + n] + b"\r\n")
        i += n
    data = CHUNKED_HEAD + b"".join(framed) + b"0\r\n\r\n"
    sizes, digest, events = _stream(H1Parser(), data, 65536)
    assert sum(sizes) == len(body) and max(sizes) <= 65536
    assert digest == hashlib.sha256(body).hexdigest()
    assert events.count(EV_END) == 1 and EV_ERROR not in events


def test_body_in_the_same_read_as_the_head_is_a_slice_of_that_read():
    p = H1Parser()
    data = req("POST / HTTP/1.1", "Host: h", "Content-Length: 5", body=b"hello")
    p.feed(data)
    assert p.next_event() == EV_HEAD
    assert p.next_event() == EV_BODY and p.event_slice() == b"hello"
    p2 = H1Parser()
    p2.feed(data[:-5])
    assert p2.next_event() == EV_HEAD and p2.next_event() == EV_NEED_DATA
    chunk = b"hello"
    p2.feed(chunk)
    assert p2.next_event() == EV_BODY and p2.event_slice() is chunk     # zero copy


def test_head_that_arrives_in_one_read_is_not_copied():
    data = req("GET / HTTP/1.1", "Host: h")
    p = H1Parser()
    before = sys.getrefcount(data)
    p.feed(data)
    assert p.next_event() == EV_HEAD
    p.feed(b"GET")                       # replaces p.data; p.head still holds `data` itself
    assert sys.getrefcount(data) == before + 1


def test_one_byte_feeds_of_a_large_head_work():
    lines = ["GET / HTTP/1.1", "Host: h"] + [f"X-{i}: " + "v" * 500 for i in range(99)]
    data = req(*lines)
    p = H1Parser()
    for i in range(len(data)):
        p.feed(data[i:i + 1])
        ev = p.next_event()
        assert ev == (EV_HEAD if i == len(data) - 1 else EV_NEED_DATA)
    assert len(p.headers) == 100 and p.headers[-1][1] == b"v" * 500


# --------------------------------------------------------------------------------------------
# Responses


def resp(*lines: str, body: bytes = b"") -> bytes:
    return req(*lines, body=body)


def test_response_with_content_length():
    out = run(resp("HTTP/1.1 200 OK", "Content-Length: 5", body=b"hello"), is_request=False)
    m = out.msg
    assert (m.status, m.reason, m.version) == (200, b"OK", b"1.1")
    assert m.body == b"hello" and m.keep_alive and m.complete and m.method == b""


def test_response_reason_may_be_empty_or_missing():
    assert run(resp("HTTP/1.1 404 ", "Content-Length: 0"), is_request=False).msg.reason == b""
    m = run(resp("HTTP/1.1 404", "Content-Length: 0"), is_request=False).msg
    assert m.status == 404 and m.reason == b""
    assert run(resp("HTTP/1.1 200 All  good\tyes", "Content-Length: 0"), is_request=False).msg.reason == b"All  good\tyes"


def test_chunked_response_with_trailers():
    out = run(resp("HTTP/1.1 200 OK", "Transfer-Encoding: chunked",
                   body=b"4\r\nwiki\r\n5\r\npedia\r\n0\r\nServer-Timing: x\r\n\r\n"), is_request=False)
    assert out.msg.body == b"wikipedia" and out.msg.trailers == [(b"Server-Timing", b"x")]


def test_response_until_close_ends_at_eof_and_is_not_keep_alive():
    out = run(resp("HTTP/1.1 200 OK", "Server: x", body=b"all the rest"), is_request=False, eof=True)
    m = out.msg
    assert m.body_kind == BODY_UNTIL_CLOSE and not m.keep_alive
    assert m.body == b"all the rest" and out.eof == EV_END and m.complete


def test_http10_response_until_close():
    out = run(resp("HTTP/1.0 200 OK", body=b"x"), is_request=False, eof=True)
    assert out.msg.body_kind == BODY_UNTIL_CLOSE and out.eof == EV_END


def test_response_to_head_has_no_body_despite_content_length():
    data = resp("HTTP/1.1 200 OK", "Content-Length: 1234") + resp("HTTP/1.1 204 No Content")
    out = run(data, is_request=False, setup=lambda p: p.expect_response(True))
    assert out.messages[0].body_kind == BODY_NONE and out.messages[0].complete
    assert out.messages[1].status == 204     # expect_response(True) applies to one response


def test_pipelined_head_responses_each_need_expect_response():
    p = H1Parser(is_request=False)
    p.feed(resp("HTTP/1.1 200 OK", "Content-Length: 3") * 2 + b"abc")
    p.expect_response(True)
    assert [p.next_event(), p.next_event()] == [EV_HEAD, EV_END]
    assert [p.next_event(), p.next_event(), p.next_event()] == [EV_HEAD, EV_BODY, EV_END]


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_have_no_body(status):
    data = resp(f"HTTP/1.1 {status} X", "Content-Length: 10") + resp("HTTP/1.1 200 OK", "Content-Length: 0")
    out = run(data, is_request=False)
    assert out.messages[0].body_kind == BODY_NONE and len(out.messages) == 2


def test_1xx_responses_precede_the_final_response():
    data = (resp("HTTP/1.1 100 Continue") + resp("HTTP/1.1 103 Early Hints", "Link: </a.css>")
            + resp("HTTP/1.1 200 OK", "Content-Length: 2", body=b"ok"))
    out = run(data, is_request=False)
    assert [(m.status, m.body_kind, m.complete, m.upgrade) for m in out.messages] == [
        (100, BODY_NONE, True, False), (103, BODY_NONE, True, False), (200, BODY_LENGTH, True, False)]
    assert out.messages[-1].body == b"ok"


def test_1xx_keeps_the_head_expectation_for_the_final_response():
    out = run(resp("HTTP/1.1 100 Continue") + resp("HTTP/1.1 200 OK", "Content-Length: 9"), is_request=False,
              setup=lambda p: p.expect_response(True))
    assert [m.complete for m in out.messages] == [True, True]


def test_101_switching_protocols_pauses_with_leftover():
    out = run(resp("HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade")
              + b"\x81\x02hi", is_request=False)
    assert out.msg.upgrade and out.paused and out.leftover == b"\x81\x02hi"


def test_2xx_to_connect_is_a_tunnel_without_body():
    out = run(resp("HTTP/1.1 200 Connection Established", "Content-Length: 99") + b"tunnel",
              is_request=False, setup=lambda p: p.expect_connect_response())
    assert out.msg.upgrade and out.msg.body_kind == BODY_NONE and out.paused and out.leftover == b"tunnel"


def test_non_2xx_to_connect_has_a_body_and_no_tunnel():
    out = run(resp("HTTP/1.1 407 Auth", "Content-Length: 2", body=b"no"), is_request=False,
              setup=lambda p: p.expect_connect_response())
    assert not out.msg.upgrade and out.msg.body == b"no" and not out.paused


def test_response_keep_alive_rules():
    assert not run(resp("HTTP/1.1 200 OK", "Connection: close", "Content-Length: 0"), is_request=False).msg.keep_alive
    assert not run(resp("HTTP/1.0 200 OK", "Content-Length: 0"), is_request=False).msg.keep_alive
    assert run(resp("HTTP/1.0 200 OK", "Connection: keep-alive", "Content-Length: 0"), is_request=False).msg.keep_alive


def test_truncated_length_body_at_eof_is_an_error():
    out = run(resp("HTTP/1.1 200 OK", "Content-Length: 10", body=b"short"), is_request=False, eof=True)
    assert out.error == (502, "incomplete message") and out.eof == EV_ERROR


def test_truncated_chunked_body_at_eof_is_an_error():
    out = run(resp("HTTP/1.1 200 OK", "Transfer-Encoding: chunked", body=b"5\r\nhel"), is_request=False, eof=True)
    assert out.error == (502, "incomplete message")
    out = run(CHUNKED_HEAD + b"5\r\nhello\r\n", eof=True)
    assert out.error == (400, "incomplete message")


def test_eof_mid_head_is_an_error_and_eof_between_messages_is_clean():
    assert run(b"HTTP/1.1 200 OK\r\nContent-Le", is_request=False, eof=True).error == (502, "incomplete message")
    out = run(resp("HTTP/1.1 200 OK", "Content-Length: 1", body=b"x"), is_request=False, eof=True)
    assert out.eof == EV_NEED_DATA and out.error is None and out.msg.complete
    out = run(req("GET / HTTP/1.1", "Host: h"), eof=True)
    assert out.eof == EV_NEED_DATA


@pytest.mark.parametrize("data,reason", [
    (resp("HTTP/1.1 200 OK", "Content-Length: 3", "Transfer-Encoding: chunked"), "content-length and transfer-encoding"),
    (resp("HTTP/1.1 200 OK", "Transfer-Encoding: gzip"), "unsupported transfer-encoding"),
    (resp("HTTP/1.1 200 OK", "Transfer-Encoding: gzip, chunked"), "unsupported transfer-encoding"),
    (resp("HTTP/1.1 200 OK", "Transfer-Encoding: chunked, chunked"), "chunked applied twice"),
    (resp("HTTP/1.0 200 OK", "Transfer-Encoding: chunked"), "transfer-encoding in http/1.0"),
    (resp("HTTP/1.1 200 OK", "Content-Length: 1", "Content-Length: 2"), "duplicate content-length"),
    (resp("HTTP/1.1 200 OK", "Content-Length: x"), "bad content-length"),
    (resp("HTTP/1.1 099 Low"), "bad status code"),
    (resp("HTTP/1.1 600 High"), "bad status code"),
    (resp("HTTP/1.1 20 OK"), "bad status code"),
    (resp("HTTP/1.1 2000 OK"), "bad status line"),
    (resp("HTTP/1.1  200 OK"), "bad status code"),
    (resp("HTTP/2.0 200 OK"), "bad status line"),
    (resp("http/1.1 200 OK"), "bad status line"),
    (resp("HTTP/1.1 200 O\x01K"), "bad status line"),
    (b"\r\nHTTP/1.1 200 OK\r\n\r\n", "bad status line"),
    (resp("HTTP/1.1 200 OK", "X: a", " b"), "obs-fold"),
    (b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", "bare LF"),
    (resp("HTTP/1.1 200 OK", "Transfer-Encoding: chunked", body=b"z\r\n"), "bad chunk size"),
])
def test_response_that_breaks_the_rules_is_502(data, reason):
    rejected(data, 502, reason, is_request=False)


def test_bodiless_responses_ignore_transfer_encoding_framing():
    out = run(resp("HTTP/1.1 304 Not Modified", "Transfer-Encoding: gzip"), is_request=False)
    assert out.error is None and out.msg.body_kind == BODY_NONE


def test_feed_rejects_none():
    with pytest.raises(TypeError):
        H1Parser().feed(None)


def test_module_exports_event_and_body_constants_as_ints():
    assert (EV_NEED_DATA, EV_HEAD, EV_BODY, EV_END, EV_ERROR, EV_PAUSED) == (0, 1, 2, 3, 4, 5)
    assert (BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_UNTIL_CLOSE) == (0, 1, 2, 3)
    assert (HF_HOP, HF_DROP) == (1, 2)


def test_constructor_takes_keyword_limits():
    p = H1Parser(is_request=False, max_head_bytes=1, max_headers=2, max_uri_bytes=3)
    assert (p.is_request, p.max_head_bytes, p.max_headers, p.max_uri_bytes) == (False, 1, 2, 3)


def test_header_arrays_grow_for_a_large_head_and_keep_serving_small_ones():
    """A parser starts with room for 16 fields and grows on demand (memory per idle connection)."""
    p = http1.H1Parser(is_request=True, max_headers=200)
    small = b"GET /a HTTP/1.1\r\nHost: a\r\nX-1: one\r\n\r\n"
    big = (b"GET /b HTTP/1.1\r\nHost: b\r\n"
           + b"".join(b"X-%d: v%d\r\n" % (i, i) for i in range(150)) + b"\r\n")
    p.feed(small + big + small)
    seen = []
    while True:
        ev = p.next_event()
        if ev == http1.EV_HEAD:
            seen.append(p.headers)
        elif ev in (http1.EV_NEED_DATA, http1.EV_ERROR):
            break
    assert [len(h) for h in seen] == [2, 151, 2]
    assert seen[1][-1] == (b"X-149", b"v149")
    assert seen[2] == [(b"Host", b"a"), (b"X-1", b"one")]

"""atheris target for engine/_fast/http1.pyx (the HTTP/1.1 codec).

Input layout: byte 0 = flags (bit 0: parse responses; bit 1: the response answers a HEAD;
bit 2: it answers a CONNECT; bit 3: call feed_eof at the end), bytes 1..3 = seed of the
random splits, the rest = the bytes on the wire.

Checks, for every input:
  * no exception, no crash (the parser never raises on bad input);
  * the event sequence is well formed: HEAD (BODY)* END per message, nothing after ERROR,
    PAUSED stays PAUSED, EV_BODY is never empty;
  * the verdict and every parsed field are the same whole, one byte at a time and in random
    pieces (incremental parsing is exact);
  * accepted framing is consistent: a BODY_LENGTH message that ended carried exactly
    content_length bytes, BODY_NONE carried none, an until-close body is not keep-alive;
  * error statuses are the documented ones (400/414/431/501/505 requests, 502 responses);
  * an accepted request head serialised by build_head() parses back to the same headers
    minus the hop-by-hop ones.

Run by tests/fuzz/test_fuzz_targets.py for a bounded number of runs. By hand:
    python tests/fuzz/fuzz_http1.py --seeds=/tmp/h1corpus /tmp/h1corpus -max_len=4096
The codec itself is not coverage-instrumented in a normal build (only this harness is);
for a coverage-guided campaign build http1 with clang and -fsanitize=fuzzer-no-link.
"""

from __future__ import annotations

import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.append(ROOT)           # after PYTHONPATH: a special build (ASan) can go first

import atheris  # noqa: E402

with atheris.instrument_imports():
    from engine._fast import http1  # noqa: E402

H1Parser = http1.H1Parser
REQUEST_STATUSES = {400, 414, 431, 501, 505}

SEEDS = [
    b"\x00\x01\x02\x03GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\x00\x05\x06\x07POST /x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello"
    b"GET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"\x00\x09\x0a\x0bPOST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nTrailer-A: x\r\n\r\n",
    b"\x00\x0c\x0d\x0eGET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade, X-A\r\n"
    b"X-A: 1\r\n\r\n\x81\x00",
    b"\x00\x10\x11\x12CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\ntunnel",
    b"\x00\x13\x14\x15GET http://a/b HTTP/1.0\r\nConnection: keep-alive\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\x01\x16\x17\x18HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 204 No Content\r\n\r\n",
    b"\x01\x19\x1a\x1bHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n0\r\n\r\n",
    b"\x09\x1c\x1d\x1eHTTP/1.0 200 OK\r\nServer: x\r\n\r\nuntil close",
    b"\x03\x1f\x20\x21HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
    b"\x05\x22\x23\x24HTTP/1.1 200 Connection established\r\n\r\ntunnel",
    b"\x01\x25\x26\x27HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\nPRI",
    b"\x00\x28\x29\x2aPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
]


@atheris.instrument_func
def _signal(ev, p):
    """Explicit branches on what the codec did. The codec is not coverage-instrumented in a
    normal build, so these (instrumented) branches are libFuzzer's only feedback: inputs that
    reach a new event / framing / refusal are kept in the corpus."""
    if ev == http1.EV_HEAD:
        k = p.body_kind
        if k == http1.BODY_NONE:
            if p.upgrade:
                return 1
            return 2
        if k == http1.BODY_LENGTH:
            return 3
        if k == http1.BODY_CHUNKED:
            return 4
        return 5
    if ev == http1.EV_ERROR:
        s = p.error_status
        if s == 400:
            r = p.error_reason
            if "chunk" in r:
                return 6
            if "content-length" in r or "transfer-encoding" in r:
                return 7
            if "host" in r:
                return 8
            if "field" in r or "fold" in r or "colon" in r:
                return 9
            if "bare" in r:
                return 10
            return 11
        if s == 414:
            return 12
        if s == 431:
            return 13
        if s == 501:
            return 14
        if s == 505:
            return 15
        if "status" in p.error_reason:
            return 16
        return 17
    if ev == http1.EV_END:
        if p.trailers:
            return 18
        return 19
    if ev == http1.EV_PAUSED:
        return 20
    return 0


@atheris.instrument_func
def parse(pieces, flags):
    """The normalised transcript of parsing `pieces`."""
    p = H1Parser(is_request=not flags & 1, max_head_bytes=2048, max_headers=20, max_uri_bytes=512)
    if flags & 2:
        p.expect_response(True)
    if flags & 4:
        p.expect_connect_response()
    msgs, error, paused, in_msg = [], None, False, False
    for piece in pieces:
        p.feed(piece)
        while True:
            ev = p.next_event()
            _signal(ev, p)
            if ev == http1.EV_HEAD:
                assert not in_msg, "EV_HEAD inside a message"
                in_msg = True
                kind = p.body_kind
                assert kind in (http1.BODY_NONE, http1.BODY_LENGTH, http1.BODY_CHUNKED, http1.BODY_UNTIL_CLOSE)
                if kind == http1.BODY_LENGTH:
                    assert p.content_length is not None and p.content_length >= 0
                else:
                    assert p.content_length is None
                if kind == http1.BODY_UNTIL_CLOSE:
                    assert not p.is_request and not p.keep_alive
                if p.is_request:
                    check_round_trip(p)
                msgs.append([p.method, p.target, p.http_version, p.status_code, p.reason, p.headers,
                             p.header_flags, kind, p.content_length, p.keep_alive, p.expect_continue,
                             p.upgrade, b"", None, False])
            elif ev == http1.EV_BODY:
                assert in_msg, "EV_BODY outside a message"
                chunk = p.event_slice()
                assert chunk, "empty EV_BODY"
                msgs[-1][12] += chunk
            elif ev == http1.EV_END:
                assert in_msg, "EV_END outside a message"
                in_msg = False
                m = msgs[-1]
                if m[7] == http1.BODY_LENGTH:
                    assert len(m[12]) == m[8], "length body of the wrong size"
                elif m[7] == http1.BODY_NONE:
                    assert m[12] == b""
                m[13], m[14] = p.trailers, True
            elif ev == http1.EV_ERROR:
                error = (p.error_status, p.error_reason)
                if p.is_request:
                    assert p.error_status in REQUEST_STATUSES, error
                else:
                    assert p.error_status == 502, error
                assert p.next_event() == http1.EV_ERROR
                return msgs, error, paused, None, None
            elif ev == http1.EV_PAUSED:
                assert not in_msg and msgs and msgs[-1][11], "paused without an upgrade"
                paused = True
                assert p.next_event() == http1.EV_PAUSED
                break
            else:
                assert ev == http1.EV_NEED_DATA, ev
                break
    eof = None
    if flags & 8:
        eof = p.feed_eof()
        if eof == http1.EV_END:
            assert in_msg and msgs[-1][7] in (http1.BODY_UNTIL_CLOSE,)
        elif eof == http1.EV_ERROR:
            error = (p.error_status, p.error_reason)
    return msgs, error, paused, p.leftover() if paused else None, eof


@atheris.instrument_func
def check_round_trip(p):
    first = p.method + b" " + p.target + b" HTTP/" + p.http_version + b"\r\n"
    out = http1.serialize_head(p, first, [])
    q = H1Parser(max_head_bytes=1 << 20, max_headers=256, max_uri_bytes=1 << 20)
    q.feed(out)
    assert q.next_event() == http1.EV_HEAD, (out, q.error_reason)
    kept = [h for h, (_, f) in zip(p.headers, p.header_flags) if not f & (http1.HF_HOP | http1.HF_DROP)]
    assert q.headers == kept, (q.headers, kept)
    assert (q.method, q.target, q.http_version) == (p.method, p.target, p.http_version)


@atheris.instrument_func
def TestOneInput(data: bytes) -> None:
    if len(data) < 4:
        return
    flags, wire = data[0], data[4:]
    rng = random.Random(int.from_bytes(data[1:4], "big"))
    whole = parse([wire], flags)
    bytewise = parse([wire[i:i + 1] for i in range(len(wire))], flags)
    assert bytewise == whole, ("bytewise", wire, whole, bytewise)
    pieces, i = [], 0
    while i < len(wire):
        k = rng.randint(1, 64)
        pieces.append(wire[i:i + k])
        i += k
    chunked = parse(pieces, flags)
    assert chunked == whole, ("pieces", wire, whole, chunked)


def main(argv: list[str]) -> None:
    from atheris_main import run      # beside this file: the shared command line
    run(argv, SEEDS, TestOneInput)


if __name__ == "__main__":
    main(sys.argv)

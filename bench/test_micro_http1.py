"""HTTP/1.1 codec micro benchmarks: parse a typical request with sluice's H1Parser, httptools and
h11 (issue 4 target: ours at least as fast as httptools on the same input), and serialise a
rewritten head.

Every parser is reused across requests, as on a keep-alive connection, except h11's, whose
server-side Connection cannot start a new cycle without a response: it gets a new one per
request (h11 is here as the pure-Python reference, not as a rival).
"""

from __future__ import annotations

import h11
import httptools
import pytest

from engine._fast.http1 import EV_END, EV_HEAD, EV_NEED_DATA, H1Parser, serialize_head

REQUEST = (
    b"GET /api/v1/users/12345?include=profile HTTP/1.1\r\n"
    b"Host: api.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/120.0 Safari/537.36\r\n"
    b"Accept: application/json, text/plain, */*\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJl\r\n"
    b"Cookie: session=abc123def456; theme=dark\r\n"
    b"X-Request-Id: 7f9c2ba4-e88f-4c5b-9d2d-1a2b3c4d5e6f\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n"
)
NHEADERS = 9


def sluice_parse(p: H1Parser) -> int:
    """feed + next_event until the parser needs data: what the proxy does per request."""
    p.feed(REQUEST)
    n = 0
    while p.next_event() != EV_NEED_DATA:
        n += 1
    return n


@pytest.mark.benchmark(group="parse a typical request")
def test_parse_sluice(benchmark):
    p = H1Parser()
    assert benchmark(sluice_parse, p) == 2          # EV_HEAD, EV_END


@pytest.mark.benchmark(group="parse a typical request")
def test_parse_sluice_with_python_objects(benchmark):
    """The same, then method, target and headers as Python objects (what httptools' callbacks
    hand out), for a like-for-like comparison with test_parse_httptools."""
    p = H1Parser()

    def run():
        p.feed(REQUEST)
        assert p.next_event() == EV_HEAD
        out = (p.method, p.target, p.headers)
        assert p.next_event() == EV_END
        assert p.next_event() == EV_NEED_DATA
        return out

    method, _target, headers = benchmark(run)
    assert method == b"GET" and len(headers) == NHEADERS


class _Collect:
    __slots__ = ("done", "headers", "url")

    def on_message_begin(self):
        self.headers, self.done = [], False

    def on_url(self, url):
        self.url = url

    def on_header(self, name, value):
        self.headers.append((name, value))

    def on_message_complete(self):
        self.done = True


@pytest.mark.benchmark(group="parse a typical request")
def test_parse_httptools(benchmark):
    """httptools as a server uses it: url and headers collected by callbacks."""
    proto = _Collect()
    parser = httptools.HttpRequestParser(proto)
    benchmark(parser.feed_data, REQUEST)
    assert proto.done and len(proto.headers) == NHEADERS


@pytest.mark.benchmark(group="parse a typical request")
def test_parse_httptools_no_callbacks(benchmark):
    """httptools' floor: framing only, nothing handed to Python."""

    class Nothing:
        pass

    parser = httptools.HttpRequestParser(Nothing())
    benchmark(parser.feed_data, REQUEST)


@pytest.mark.benchmark(group="parse a typical request")
def test_parse_h11(benchmark):
    def run():
        c = h11.Connection(h11.SERVER)
        c.receive_data(REQUEST)
        req = c.next_event()
        assert type(c.next_event()) is h11.EndOfMessage
        return req

    assert len(benchmark(run).headers) == NHEADERS


# --- serialise a rewritten head (what goes upstream) --------------------------------------------

FIRST_LINE = b"GET /v1/users/12345?include=profile HTTP/1.1\r\n"
# the exchange's edits: a flat [name, value, ...] list (headers.build_head formats them)
EDITS = [b"x-forwarded-for", b"10.1.2.3", b"x-forwarded-proto", b"http",
         b"x-forwarded-host", b"api.example.com",
         b"x-request-id", b"0b6c1d9e-8f1a-4c1e-9f6b-2d3c4b5a6978"]
EXTRA = [b"%s: %s\r\n" % (EDITS[i], EDITS[i + 1]) for i in range(0, len(EDITS), 2)]


@pytest.mark.benchmark(group="serialise a rewritten head")
def test_serialize_head_sluice(benchmark):
    p = H1Parser()
    p.feed(REQUEST)
    assert p.next_event() == EV_HEAD
    p.drop_header(b"x-request-id")                  # replaced by ours, as the proxy does
    out = benchmark(serialize_head, p, FIRST_LINE, EDITS)
    assert out.startswith(FIRST_LINE) and out.endswith(EXTRA[-1] + b"\r\n")
    assert b"Connection" not in out and b"7f9c2ba4" not in out


@pytest.mark.benchmark(group="serialise a rewritten head")
def test_serialize_head_python_join(benchmark):
    """The pure-Python way (bench/baseline_proxy.py's): format and join a header list."""
    proto = _Collect()
    httptools.HttpRequestParser(proto).feed_data(REQUEST)
    hop = {b"connection", b"keep-alive", b"x-request-id"}

    def run():
        out = [FIRST_LINE]
        for name, value in proto.headers:
            if name.lower() not in hop:
                out.append(b"%s: %s\r\n" % (name, value))
        out.extend(EXTRA)
        out.append(b"\r\n")
        return b"".join(out)

    assert benchmark(run).startswith(FIRST_LINE)

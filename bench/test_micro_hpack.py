"""HPACK micro benchmarks: decode a typical request header block with sluice's Decoder and with
the `hpack` package, cold (the first request on a connection: literals, Huffman) and warm (a
repeat of it: nearly every field indexed from the dynamic table, as on a busy connection), and
encode the same request.

The request is bench/test_micro_http1.py's, in HTTP/2 form. Each decoder is kept across calls,
as on a connection; "cold" blocks are decoded by a decoder that was reset to its first-request
state (a fresh one per call for both, so both pay the same construction). sluice's decode fills
a HeaderBlock; the "python objects" variant also builds the [(name, value)] list hpack returns.
"""

from __future__ import annotations

import hpack as oracle
import pytest

from engine._fast.headers import HeaderBlock
from engine._fast.hpack import Decoder, Encoder

FIELDS = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"api.example.com"),
    (b":path", b"/api/v1/users/12345?include=profile"),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                    b"Chrome/120.0 Safari/537.36"),
    (b"accept", b"application/json, text/plain, */*"),
    (b"accept-language", b"en-US,en;q=0.9"),
    (b"accept-encoding", b"gzip, deflate, br"),
    (b"authorization", b"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJl"),
    (b"cookie", b"session=abc123def456; theme=dark"),
    (b"x-request-id", b"7f9c2ba4-e88f-4c5b-9d2d-1a2b3c4d5e6f"),
]
NFIELDS = len(FIELDS)

_enc = oracle.Encoder()
COLD = _enc.encode(FIELDS)             # what a client sends first (hpack's choices, as curl-like)
WARM = _enc.encode(FIELDS)             # the same request again: indexed fields


def _warm_sluice():
    d = Decoder()
    d.decode_block(COLD)
    return d


def _warm_hpack():
    d = oracle.Decoder()
    d.decode(COLD)
    return d


@pytest.mark.benchmark(group="hpack: decode a typical request (cold)")
def test_decode_cold_sluice(benchmark):
    hb = HeaderBlock()

    def run():
        return Decoder().decode_block(COLD, hb)

    assert len(benchmark(run).headers) == NFIELDS


@pytest.mark.benchmark(group="hpack: decode a typical request (cold)")
def test_decode_cold_hpack(benchmark):
    def run():
        return oracle.Decoder().decode(COLD, raw=True)

    assert len(benchmark(run)) == NFIELDS


@pytest.mark.benchmark(group="hpack: decode a typical request (warm table)")
def test_decode_warm_sluice(benchmark):
    d, hb = _warm_sluice(), HeaderBlock()
    assert len(d.decode_block(WARM, hb).headers) == NFIELDS
    benchmark(d.decode_block, WARM, hb)        # WARM only references entries: the table is stable


@pytest.mark.benchmark(group="hpack: decode a typical request (warm table)")
def test_decode_warm_sluice_with_python_objects(benchmark):
    """The same, then the [(name, value)] list hpack hands out, for a like-for-like number."""
    d, hb = _warm_sluice(), HeaderBlock()

    def run():
        d.decode_block(WARM, hb)
        return hb.headers

    assert len(benchmark(run)) == NFIELDS


@pytest.mark.benchmark(group="hpack: decode a typical request (warm table)")
def test_decode_warm_hpack(benchmark):
    d = _warm_hpack()
    assert len(benchmark(d.decode, WARM, True)) == NFIELDS


@pytest.mark.benchmark(group="hpack: encode a typical request (warm table)")
def test_encode_warm_sluice(benchmark):
    e = Encoder()
    e.encode_fields(FIELDS)
    out = benchmark(e.encode_fields, FIELDS)
    # :path and authorization stay literals (never indexed / not worth it): ~88 bytes
    assert len(out) < len(COLD)


@pytest.mark.benchmark(group="hpack: encode a typical request (warm table)")
def test_encode_warm_hpack(benchmark):
    e = oracle.Encoder()
    e.encode(FIELDS)
    out = benchmark(e.encode, FIELDS)
    assert len(out) < len(COLD)

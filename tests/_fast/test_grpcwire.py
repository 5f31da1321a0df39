"""engine/_fast/grpcwire.pyx: gRPC's rules at the proxy, against Python's own base64 and the
gRPC / gRPC-Web specs' examples; streamed codecs fed whole, split at every byte and in random
chunks."""
import base64
import random

import pytest
from hypothesis import given, strategies as st

from engine._fast import grpcwire as g


@pytest.mark.parametrize("ct, kind", [
    (b"application/grpc", g.G_PLAIN), (b"application/grpc+proto", g.G_PLAIN),
    (b"Application/GRPC+json", g.G_PLAIN), (b"application/grpc-web", g.G_WEB_BINARY),
    (b"application/grpc-web+proto", g.G_WEB_BINARY), (b"application/grpc-web-text", g.G_WEB_TEXT),
    (b"application/grpc-web-text+proto", g.G_WEB_TEXT), (b"application/json", g.G_NONE),
    (None, g.G_NONE), (b"", g.G_NONE),
])
def test_kind_of_a_request(ct, kind):
    assert g.grpc_kind(ct) == kind


@pytest.mark.parametrize("value, seconds", [
    (b"1S", 1.0), (b"300m", 0.3), (b"2M", 120.0), (b"1H", 3600.0), (b"5000u", 0.005),
    (b"99999999n", 0.099999999), (b"", 0), (b"S", 0), (b"1x", 0), (b"-1S", 0),
    (b"123456789S", 0), (None, 0),
])
def test_grpc_timeout(value, seconds):
    assert g.timeout_of(value) == pytest.approx(seconds)


def test_message_is_percent_encoded_and_status_mapped():
    assert g.message(b"no route\n") == b"no route"
    assert g.message("caf\u00e9 50%".encode()) == b"caf%C3%A9 50%25"
    assert [g.status_of_http(s) for s in (400, 401, 403, 404, 429, 503, 418)] == [13, 16, 7, 12, 14, 14, 2]


def test_content_types_both_ways():
    assert g.upstream_content_type(b"application/grpc-web-text+proto") == b"application/grpc+proto"
    assert g.upstream_content_type(b"application/grpc-web") == b"application/grpc"
    assert g.response_content_type(b"application/grpc-web+proto") == b"application/grpc-web+proto"
    assert g.response_content_type(None) == b"application/grpc"


def test_trailer_message_is_the_spec_frame():
    pairs = g.trailer_pairs(b"Grpc-Status: 0\r\ngrpc-message: ok\r\n")
    assert pairs == [b"grpc-status", b"0", b"grpc-message", b"ok"]
    frame = g.trailer_message(pairs)
    payload = b"grpc-status:0\r\ngrpc-message:ok\r\n"
    assert frame == b"\x80" + len(payload).to_bytes(4, "big") + payload
    assert g.trailer_message(g.trailer_pairs(b"")) == b"\x80\0\0\0\0"


def pieces(data: bytes, rng: random.Random):
    i = 0
    while i < len(data):
        n = rng.randint(0, 9)
        yield data[i:i + n]
        i += n


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=5), st.integers(0, 1000))
def test_text_decoder_takes_concatenated_padded_texts_cut_anywhere(messages, seed):
    text = b"".join(base64.b64encode(m) for m in messages)
    d = g.TextDecoder()
    out = b"".join(d.feed(p) for p in pieces(text, random.Random(seed)))
    assert out == b"".join(messages) and d.clean_end()


def test_text_decoder_split_at_every_byte():
    msgs = [b"\0\0\0\0\x03abc", b"\x80\0\0\0\x0fgrpc-status:0\r\n"]
    text = b"".join(base64.b64encode(m) for m in msgs)
    for cut in range(len(text) + 1):
        d = g.TextDecoder()
        assert d.feed(text[:cut]) + d.feed(text[cut:]) == b"".join(msgs)


def test_text_decoder_refuses_what_is_not_base64():
    with pytest.raises(ValueError):
        g.TextDecoder().feed(b"ab!d")


@given(st.binary(max_size=200), st.integers(0, 1000))
def test_text_encoder_is_base64_of_the_whole_stream(data, seed):
    e = g.TextEncoder()
    out = b"".join(e.feed(p) for p in pieces(data, random.Random(seed))) + e.finish()
    assert out == base64.b64encode(data)

"""Tests of engine/_fast/hpack.pyx, the HPACK codec (RFC 7541).

The decoder takes complete header blocks (the HTTP/2 layer joins HEADERS and CONTINUATION
fragments first); `decode_all_ways` checks that a block assembled from fragments split at every
byte, and in random pieces, decodes the same as the whole, and that every proper prefix of a
block is refused as truncated or decodes to a prefix of its fields (never anything else)."""

from __future__ import annotations

import random

import pytest

from engine._fast import hpack
from engine._fast.headers import HF_DROP, HF_HOP, H_COOKIE, H_HOST, H_OTHER
from engine._fast.hpack import (
    HF_NEVER_INDEXED,
    HF_PSEUDO,
    HPACK_E_BOMB,
    HPACK_E_HUFFMAN_EOS,
    HPACK_E_HUFFMAN_PADDING,
    HPACK_E_INDEX,
    HPACK_E_INTEGER,
    HPACK_E_LIST_TOO_LARGE,
    HPACK_E_SIZE_UPDATE_MISSING,
    HPACK_E_SIZE_UPDATE_NOT_FIRST,
    HPACK_E_SIZE_UPDATE_TOO_LARGE,
    HPACK_E_TOO_MANY_FIELDS,
    HPACK_E_TRUNCATED,
    PS_AUTHORITY,
    PS_METHOD,
    PS_PATH,
    PS_PROTOCOL,
    PS_SCHEME,
    PS_STATUS,
    PSF_AFTER_REGULAR,
    PSF_DUPLICATE,
    PSF_UNKNOWN,
    Decoder,
    Encoder,
    HpackError,
    block_from_fields,
    huffman_decode_py,
    huffman_encode_py,
)
from engine._fast.http1 import EV_HEAD, H1Parser

# --------------------------------------------------------------------------------------------
# Harness


def fields_of(hb):
    return [(n, v, bool(f & HF_NEVER_INDEXED)) for (n, v), (_, f) in zip(hb.headers, hb.header_flags)]


def decode_all_ways(block: bytes, **kw):
    """Decode `block` whole, then rebuilt from fragments split at every byte and in random
    pieces (each with a fresh decoder); all must agree. Also every proper prefix of the block
    (fresh decoder): TRUNCATED or a prefix of the fields. Returns the fields."""
    whole = Decoder(**kw).decode_fields(block)
    for i in range(len(block) + 1):
        joined = bytearray()
        for frag in (block[:i], block[i:]):
            joined += frag
        assert Decoder(**kw).decode_fields(joined) == whole
        if i < len(block):
            try:
                got = Decoder(**kw).decode_fields(block[:i])
            except HpackError as e:
                assert e.code == HPACK_E_TRUNCATED, (i, e)
            else:
                assert got == whole[:len(got)], (i, got)
    rng = random.Random(len(block))
    for _ in range(5):
        pieces, j = [], 0
        while j < len(block):
            k = rng.randint(1, 9)
            pieces.append(block[j:j + k])
            j += k
        assert Decoder(**kw).decode_fields(memoryview(b"".join(pieces))) == whole
    return whole


def err(block: bytes, dec: Decoder | None = None) -> int:
    dec = dec or Decoder()
    with pytest.raises(HpackError) as e:
        dec.decode_block(block)
    return e.value.code


def plain(fields):
    return [(n, v, False) for n, v in fields]


# --------------------------------------------------------------------------------------------
# RFC 7541 Appendix C, exactly


def test_c2_1_literal_with_indexing():
    block = bytes.fromhex("400a637573746f6d2d6b65790d637573746f6d2d686561646572")
    d = Decoder()
    assert d.decode_fields(block) == plain([(b"custom-key", b"custom-header")])
    assert d.table_entries() == [(b"custom-key", b"custom-header")]
    assert d.table_size == 55
    assert decode_all_ways(block) == plain([(b"custom-key", b"custom-header")])


def test_c2_2_literal_without_indexing():
    block = bytes.fromhex("040c2f73616d706c652f70617468")
    d = Decoder()
    assert d.decode_fields(block) == plain([(b":path", b"/sample/path")])
    assert d.table_entries() == [] and d.table_size == 0
    decode_all_ways(block)


def test_c2_3_literal_never_indexed_is_flagged():
    block = bytes.fromhex("100870617373776f726406736563726574")
    d = Decoder()
    assert d.decode_fields(block) == [(b"password", b"secret", True)]
    assert d.table_entries() == []
    decode_all_ways(block)


def test_c2_4_indexed():
    d = Decoder()
    assert d.decode_fields(b"\x82") == plain([(b":method", b"GET")])
    assert d.table_entries() == []


C3 = ["828684410f7777772e6578616d706c652e636f6d",
      "828684be58086e6f2d6361636865",
      "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565"]
C4 = ["828684418cf1e3c2e5f23a6ba0ab90f4ff",
      "828684be5886a8eb10649cbf",
      "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"]
C5 = ["4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a323120"
      "474d546e1768747470733a2f2f7777772e6578616d706c652e636f6d",
      "4803333037c1c0bf",
      "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69707738"
      "666f6f3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167653d33"
      "3630303b2076657273696f6e3d31"]
C6 = ["488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad1718"
      "63c78f0b97c8e9ae82ae43d3",
      "4883640effc1c0bf",
      "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7"
      "b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007"]

REQS = [
    [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"www.example.com")],
    [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"www.example.com"),
     (b"cache-control", b"no-cache")],
    [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/index.html"),
     (b":authority", b"www.example.com"), (b"custom-key", b"custom-value")],
]
REQ_TABLES = [
    ([(b":authority", b"www.example.com")], 57),
    ([(b"cache-control", b"no-cache"), (b":authority", b"www.example.com")], 110),
    ([(b"custom-key", b"custom-value"), (b"cache-control", b"no-cache"),
      (b":authority", b"www.example.com")], 164),
]
DATE1, DATE2 = b"Mon, 21 Oct 2013 20:13:21 GMT", b"Mon, 21 Oct 2013 20:13:22 GMT"
LOC = b"https://www.example.com"
COOKIE = b"foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
RESPS = [
    [(b":status", b"302"), (b"cache-control", b"private"), (b"date", DATE1), (b"location", LOC)],
    [(b":status", b"307"), (b"cache-control", b"private"), (b"date", DATE1), (b"location", LOC)],
    [(b":status", b"200"), (b"cache-control", b"private"), (b"date", DATE2), (b"location", LOC),
     (b"content-encoding", b"gzip"), (b"set-cookie", COOKIE)],
]
RESP_TABLES = [
    ([(b"location", LOC), (b"date", DATE1), (b"cache-control", b"private"), (b":status", b"302")], 222),
    ([(b":status", b"307"), (b"location", LOC), (b"date", DATE1), (b"cache-control", b"private")], 222),
    ([(b"set-cookie", COOKIE), (b"content-encoding", b"gzip"), (b"date", DATE2)], 215),
]


@pytest.mark.parametrize("vectors", [C3, C4], ids=["C.3", "C.4"])
def test_c3_c4_request_sequences_decode_with_the_rfc_tables(vectors):
    d = Decoder()
    for hexblock, fields, (entries, size) in zip(vectors, REQS, REQ_TABLES):
        assert d.decode_fields(bytes.fromhex(hexblock)) == plain(fields)
        assert d.table_entries() == entries
        assert d.table_size == size


@pytest.mark.parametrize("vectors, huffman", [(C3, False), (C4, True)], ids=["C.3", "C.4"])
def test_c3_c4_request_sequences_encode_to_the_rfc_bytes(vectors, huffman):
    e = Encoder(huffman=huffman)
    for hexblock, fields, (entries, size) in zip(vectors, REQS, REQ_TABLES):
        assert e.encode_fields(fields).hex() == hexblock
        assert e.table_entries() == entries and e.table_size == size


@pytest.mark.parametrize("vectors", [C5, C6], ids=["C.5", "C.6"])
def test_c5_c6_response_sequences_with_eviction(vectors):
    d = Decoder(max_table_size=256)
    for hexblock, fields, (entries, size) in zip(vectors, RESPS, RESP_TABLES):
        assert d.decode_fields(bytes.fromhex(hexblock)) == plain(fields)
        assert d.table_entries() == entries
        assert d.table_size == size


@pytest.mark.parametrize("vectors", [C3, C4, C5, C6], ids=["C.3", "C.4", "C.5", "C.6"])
def test_appendix_c_first_blocks_whole_and_from_fragments(vectors):
    decode_all_ways(bytes.fromhex(vectors[0]), max_table_size=256 if vectors in (C5, C6) else 4096)


def test_c5_responses_re_encoded_by_ours_decode_the_same():
    e, d = Encoder(max_table_size=256), Decoder(max_table_size=256)
    for fields in RESPS:
        assert d.decode_fields(e.encode_fields(fields)) == plain(fields)


# --------------------------------------------------------------------------------------------
# HeaderBlock output: head, offsets, ids, flags, pseudo-header facts


def test_decoded_fields_are_offsets_into_one_head_with_ids():
    e = Encoder()
    block = e.encode_fields([(b":method", b"GET"), (b":path", b"/a"), (b"host", b"h.example"),
                             (b"cookie", b"a=1"), (b"x-y", b"z")])
    hb = Decoder().decode_block(block)
    assert hb.headers[2:] == [(b"host", b"h.example"), (b"cookie", b"a=1"), (b"x-y", b"z")]
    ids = [i for i, _ in hb.header_flags]
    assert ids == [H_OTHER, H_OTHER, H_HOST, H_COOKIE, H_OTHER]
    flags = [f for _, f in hb.header_flags]
    assert flags[0] & HF_PSEUDO and flags[1] & HF_PSEUDO and not flags[2] & HF_PSEUDO
    assert flags[3] & HF_NEVER_INDEXED                       # a short cookie (nghttp2, h2)
    assert hb.get(b"host") == b"h.example"


def test_pseudo_header_facts_in_order():
    d = Decoder()
    d.decode_block(Encoder().encode_fields(
        [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/"),
         (b"accept", b"*/*")]))
    assert d.pseudo_end == 4 and d.pseudo_flags == 0
    assert [d.pseudo_index(k) for k in (PS_METHOD, PS_SCHEME, PS_AUTHORITY, PS_PATH)] == [0, 1, 2, 3]
    assert d.pseudo_index(PS_STATUS) == -1 and d.pseudo_index(PS_PROTOCOL) == -1


@pytest.mark.parametrize("fields, flag", [
    ([(b":method", b"GET"), (b"accept", b"*/*"), (b":path", b"/")], PSF_AFTER_REGULAR),
    ([(b":method", b"GET"), (b":method", b"POST")], PSF_DUPLICATE),
    ([(b":method", b"GET"), (b":foo", b"x")], PSF_UNKNOWN),
])
def test_pseudo_header_violations_are_reported_not_refused(fields, flag):
    d = Decoder()
    d.decode_block(Encoder().encode_fields(fields))
    assert d.pseudo_flags == flag


def test_pseudo_after_regular_keeps_pseudo_end_at_the_first_regular_field():
    d = Decoder()
    d.decode_block(Encoder().encode_fields([(b":method", b"GET"), (b"a", b"1"), (b":path", b"/")]))
    assert d.pseudo_end == 1 and d.pseudo_index(PS_PATH) == 2


@pytest.mark.parametrize("name, value", [
    (b"X-Upper", b"v"), (b"", b"v"), (b"a b", b"v"), (b"a:b", b"v"), (b"::x", b"v"),
    (b"a\x7f", b"v"), (b"a\xc3", b"v"), (b"a", b"x\r\ny: z"), (b"a", b"x\x00"),
    (b"a", b" lead"), (b"a", b"trail\t"),
])
def test_rfc9113_malformed_field_is_reported_with_its_index(name, value):
    d = Decoder()
    # literal with incremental indexing, raw strings: the bytes exactly as given
    block = (b"\x82\x40" + bytes([len(name)]) + name + bytes([len(value)]) + value)
    hb = d.decode_block(block)
    assert hb.headers[1] == (name, value)
    assert d.malformed == 1
    d.decode_block(b"\x82\x82\xbe")             # the entry keeps its verdict when indexed
    assert d.malformed == 2


@pytest.mark.parametrize("name, value", [(b":path", b"/"), (b"x-a", b""), (b"x-a", b"in side"),
                                         (b"x!#$%&'*+-.^_`|~09", b"\x80\xff\t\x01v")])
def test_rfc9113_valid_fields_are_not_malformed(name, value):
    d = Decoder()
    d.decode_block(b"\x40" + bytes([len(name)]) + name + bytes([len(value)]) + value)
    assert d.malformed == -1


def test_response_block_status_index():
    d = Decoder()
    d.decode_block(b"\x88")
    assert d.pseudo_index(PS_STATUS) == 0 and d.pseudo_end == 1


def test_empty_block_is_an_empty_header_list():
    hb = Decoder().decode_block(b"")
    assert hb.headers == []


def test_a_header_block_is_reusable_across_decodes():
    d, hb = Decoder(), None
    many = [(b"x-%d" % i, b"v") for i in range(40)]
    hb = d.decode_block(Encoder().encode_fields(many))
    assert len(hb.headers) == 40
    d.decode_block(b"\x82", hb)
    assert hb.headers == [(b":method", b"GET")]


# --------------------------------------------------------------------------------------------
# Decoder errors: each gets its code; connection errors kill the decoder


@pytest.mark.parametrize("block", [b"\x80", b"\xbe", b"\xff\x00", b"\x7e\x01a", b"\x0f\x2f\x01a"],
                         ids=["index0", "dynamic-empty", "static+dynamic-beyond", "literal-name-62",
                              "never-name-beyond"])
def test_bad_index_is_compression_error(block):
    assert err(block) == HPACK_E_INDEX


@pytest.mark.parametrize("block", [b"\xff\xff\xff\xff\xff\x7f", b"\xff" + b"\x80" * 5 + b"\x00",
                                   b"\x3f\xff\xff\xff\xff\x0f"],
                         ids=["value", "too-many-zero-continuations", "size-update"])
def test_integer_overflow(block):
    assert err(block) == HPACK_E_INTEGER


def test_integer_at_the_limit_is_accepted_as_a_number():
    # 2^28 - 1 as a string length: a number we accept, then the block is too short for it
    v = hpack.HPACK_INT_MAX - 127
    enc = bytearray([0x7f])
    while v >= 128:
        enc.append((v & 0x7f) | 0x80)
        v >>= 7
    enc.append(v)
    assert err(b"\x00" + bytes(enc)) == HPACK_E_TRUNCATED


@pytest.mark.parametrize("block", [b"\xff", b"\x40\x05ab", b"\x40\x01a", b"\x40\x01a\x03xy",
                                   b"\x00\x85\xff"], ids=["int", "name", "no-value", "value", "huffman"])
def test_truncated(block):
    assert err(block) == HPACK_E_TRUNCATED


def test_huffman_eos_in_a_string():
    assert err(b"\x00\x84\xff\xff\xff\xff\x00") == HPACK_E_HUFFMAN_EOS
    with pytest.raises(HpackError) as e:
        huffman_decode_py(b"\xff\xff\xff\xff")
    assert e.value.code == HPACK_E_HUFFMAN_EOS


@pytest.mark.parametrize("s", [b"\x18", b"\x1f\xff", b"\xff", b"\x1e"],
                         ids=["zeros", "longer-than-7", "8-ones", "not-all-ones"])
def test_huffman_bad_padding(s):
    with pytest.raises(HpackError) as e:
        huffman_decode_py(s)
    assert e.value.code == HPACK_E_HUFFMAN_PADDING
    assert err(b"\x00\x01a" + bytes([0x80 | len(s)]) + s) == HPACK_E_HUFFMAN_PADDING


def test_huffman_padding_of_up_to_7_ones_is_fine():
    assert huffman_decode_py(b"\x1f") == b"a"            # 00011 + 111
    assert huffman_decode_py(b"") == b""


def test_size_update_above_the_limit():
    assert Decoder().decode_fields(b"\x3f\xe1\x1f\x82") == plain([(b":method", b"GET")])   # 4096
    assert err(b"\x3f\xe2\x1f") == HPACK_E_SIZE_UPDATE_TOO_LARGE                           # 4097


def test_size_update_after_a_field():
    assert err(b"\x82\x20") == HPACK_E_SIZE_UPDATE_NOT_FIRST


def test_two_size_updates_at_the_start_are_fine():
    d = Decoder()
    d.decode_fields(b"\x40\x01a\x01b")
    assert d.table_entries() == [(b"a", b"b")]
    assert d.decode_fields(b"\x20\x3f\x21\x82") == plain([(b":method", b"GET")])   # 0 then 64
    assert d.table_entries() == [] and d.header_table_size == 64


def test_lowered_limit_requires_a_size_update_in_the_next_block():
    d = Decoder()
    d.set_max_table_size(100)
    assert err(b"\x82", d) == HPACK_E_SIZE_UPDATE_MISSING
    d = Decoder()
    d.set_max_table_size(100)
    assert err(b"", d) == HPACK_E_SIZE_UPDATE_MISSING
    d = Decoder()
    d.set_max_table_size(100)
    assert d.decode_fields(b"\x3f\x45\x82") == plain([(b":method", b"GET")])    # update to 100
    assert d.decode_fields(b"\x82") == plain([(b":method", b"GET")])           # once is enough


def test_lowered_then_raised_limit_still_requires_the_minimum_first():
    d = Decoder()
    d.set_max_table_size(0)
    d.set_max_table_size(4096)
    assert err(b"\x3f\xe1\x1f\x82", d) == HPACK_E_SIZE_UPDATE_MISSING      # only 4096
    d = Decoder()
    d.set_max_table_size(0)
    d.set_max_table_size(4096)
    assert d.decode_fields(b"\x20\x3f\xe1\x1f\x82") == plain([(b":method", b"GET")])


def test_raised_limit_needs_no_update():
    d = Decoder()
    d.set_max_table_size(8192)
    assert d.decode_fields(b"\x82") == plain([(b":method", b"GET")])
    assert d.decode_fields(b"\x3f\xe1\x3f\x82") == plain([(b":method", b"GET")])    # 8192


def test_a_connection_error_kills_the_decoder():
    d = Decoder()
    assert err(b"\x80", d) == HPACK_E_INDEX
    assert err(b"\x82", d) == HPACK_E_INDEX
    assert d.error == HPACK_E_INDEX


def test_error_codes_map_to_rfc_9113_codes():
    e = HpackError(HPACK_E_INDEX)
    assert e.h2_error == 0x9 and e.connection_error
    e = HpackError(HPACK_E_BOMB)
    assert e.h2_error == 0xB and e.connection_error
    e = HpackError(HPACK_E_LIST_TOO_LARGE)
    assert e.h2_error == 0 and not e.connection_error


# --------------------------------------------------------------------------------------------
# Bounds: list size, field count (stream errors, tables stay in step), bomb (connection error)


def test_list_too_large_is_a_stream_error_and_the_table_stays_in_step():
    e, d = Encoder(), Decoder(max_list_size=100)
    first = e.encode_fields([(b"x-a", b"a" * 40), (b"x-b", b"b" * 40)])       # 43+32 + 43+32
    assert err(first, d) == HPACK_E_LIST_TOO_LARGE
    assert d.table_entries() == [(b"x-b", b"b" * 40), (b"x-a", b"a" * 40)]
    second = e.encode_fields([(b"x-a", b"a" * 40)])                            # indexed: 1 byte
    assert len(second) == 1
    assert d.decode_fields(second) == plain([(b"x-a", b"a" * 40)])
    assert d.list_size == 75


def test_list_size_counts_32_per_field():
    block = Encoder().encode_fields([(b"ab", b"cd")] * 2)       # 36 each
    assert len(Decoder(max_list_size=72).decode_fields(block)) == 2
    assert err(block, Decoder(max_list_size=71)) == HPACK_E_LIST_TOO_LARGE


def test_too_many_fields_is_a_stream_error():
    block = Encoder().encode_fields([(b"x-%d" % i, b"v") for i in range(4)])
    assert len(Decoder(max_headers=4).decode_fields(block)) == 4
    d = Decoder(max_headers=3)
    assert err(block, d) == HPACK_E_TOO_MANY_FIELDS
    assert len(d.table_entries()) == 4
    assert d.decode_fields(b"\x82") == plain([(b":method", b"GET")])


def test_max_headers_is_clamped_to_the_hard_ceiling():
    block = b"\x82" * 257
    d = Decoder(max_headers=10_000, max_list_size=1 << 20)
    assert err(block, d) == HPACK_E_TOO_MANY_FIELDS
    assert len(Decoder(max_headers=10_000).decode_fields(b"\x82" * 256)) == 256


def test_header_bomb_is_refused_before_it_is_materialised():
    e, d = Encoder(), Decoder(max_list_size=1 << 30)
    big = b"x" * 3000
    d.decode_fields(e.encode_fields([(b"x-big", big)]))
    assert d.table_entries() == [(b"x-big", big)]
    bomb = b"\xbe" * 100                          # 100 references to the 3 KB entry
    assert err(bomb, d) == HPACK_E_BOMB
    assert d.list_size <= 16384 + 3100            # stopped at the floor, not 300 KB later
    assert err(b"\x82", d) == HPACK_E_BOMB        # a connection error: the decoder is dead


def test_header_bomb_through_indexed_names_is_refused_too():
    d = Decoder(max_list_size=1 << 30)
    three_k = bytes([0x7f, 0x80 | 57, 22])         # 3000 = 127 + 57 + 22 * 128
    d.decode_fields(b"\x40" + three_k + b"n" * 3000 + b"\x00")
    assert d.table_entries() == [(b"n" * 3000, b"")]
    bomb = b"\x0f\x2f\x00" * 100               # literal, name = dynamic entry 62, empty value
    assert err(bomb, d) == HPACK_E_BOMB


def test_a_full_table_referenced_once_is_not_a_bomb():
    e, d = Encoder(), Decoder()
    fields = [(b"x-%d" % i, b"v" * 60) for i in range(40)]    # ~ the whole 4 KB table
    d.decode_fields(e.encode_fields(fields[:40]))
    again = e.encode_fields(fields[-30:])
    assert len(again) == 30                       # all indexed
    assert d.decode_fields(again) == plain(fields[-30:])


def test_bomb_ratio_and_floor_are_tunable():
    e = Encoder()
    d = Decoder(bomb_floor=100, bomb_ratio=4, max_table_size=32)     # floor >= 2 * limit = 64
    block = e.encode_fields([(b"a", b"b")] * 3)  # first literal-indexing, then 2 indexed
    with pytest.raises(HpackError) as exc:
        d.decode_block(b"\x82" * 3)             # 3 x 42 = 126 > max(100, 12)
    assert exc.value.code == HPACK_E_BOMB
    assert len(Decoder(bomb_floor=200, bomb_ratio=4).decode_fields(b"\x82" * 3)) == 3
    assert len(Decoder().decode_fields(block)) == 3


# --------------------------------------------------------------------------------------------
# Encoder


def test_encoder_lowercases_names_and_skips_hop_drop_and_pseudo_fields():
    p = H1Parser()
    p.feed(b"GET /x HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\nX-Gone: 1\r\n"
           b"Accept: */*\r\nCookie: session=abcdefghijklmnopqrstuvwxyz\r\n\r\n")
    assert p.next_event() == EV_HEAD
    p.drop_header(b"x-gone")
    e = Encoder()
    block = e.encode_block(p, [b":method", b"GET", b":scheme", b"https", b":path", b"/x",
                               b":authority", b"a.example"], [b"X-Added", b"yes"])
    got = Decoder().decode_fields(block)
    assert got == plain([(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/x"),
                         (b":authority", b"a.example"), (b"host", b"a.example"),
                         (b"accept", b"*/*"), (b"cookie", b"session=abcdefghijklmnopqrstuvwxyz"),
                         (b"x-added", b"yes")])
    assert [f for _, f in p.header_flags][1] & HF_HOP


def test_never_indexed_fields_stay_never_indexed_when_forwarded():
    inbound = Encoder().encode_fields([(b"x-secret", b"s3cr3t", True), (b"x-plain", b"p")])
    hb = Decoder().decode_block(inbound)
    out_enc = Encoder()
    out = out_enc.encode_block(hb)
    assert Decoder().decode_fields(out) == [(b"x-secret", b"s3cr3t", True), (b"x-plain", b"p", False)]
    assert out_enc.table_entries() == [(b"x-plain", b"p")]
    # even when the same field is already in the table: no indexed representation for it
    out_enc.encode_fields([(b"x-secret", b"s3cr3t")])
    again = Decoder()
    again.decode_fields(Encoder().encode_fields([(b"x-secret", b"s3cr3t")]))
    assert out_enc.encode_block(hb)[:1] == b"\x1f"        # 0001 + name index 15+ (dynamic)


@pytest.mark.parametrize("name, value, never", [
    (b"authorization", b"Bearer x" * 10, True),
    (b"proxy-authorization", b"Basic abc", True),
    (b"cookie", b"a=1", True),
    (b"cookie", b"session=0123456789abcdefghij", False),
    (b"user-agent", b"curl", False),
])
def test_sensitive_fields_are_never_indexed(name, value, never):
    e = Encoder()
    assert Decoder().decode_fields(e.encode_fields([(name, value)])) == [(name, value, never)]
    assert (e.table_entries() == []) == never


@pytest.mark.parametrize("name", [b":path", b"age", b"content-length", b"etag", b"if-modified-since",
                                  b"if-none-match", b"location", b"set-cookie"])
def test_fields_whose_values_rarely_repeat_are_not_indexed(name):
    e = Encoder()
    block = e.encode_fields([(name, b"/some/value/1")])
    assert e.table_entries() == []
    assert block[0] & 0xF0 == 0x00                  # literal without indexing


def test_huge_values_are_not_indexed():
    e = Encoder()
    e.encode_fields([(b"x-big", b"v" * 3100)])      # > 3/4 of 4096
    assert e.table_entries() == []
    e.encode_fields([(b"x-ok", b"v" * 3000)])
    assert e.table_entries() == [(b"x-ok", b"v" * 3000)]


def test_huffman_only_when_shorter():
    e = Encoder()
    block = e.encode_fields([(b"x-bin", bytes(range(200, 216)))])   # long codes: raw is shorter
    assert block[0] == 0x40 and block[1] == 0x84       # the name: Huffman, 4 bytes < 5
    assert block[6] == 16                              # the value: raw, 16 bytes
    assert Decoder().decode_fields(block) == plain([(b"x-bin", bytes(range(200, 216)))])


def test_encoder_signals_peer_table_size_changes_minimum_first():
    e, d = Encoder(), Decoder()
    e.encode_fields([(b"x-a", b"1")])
    d.decode_fields(Encoder().encode_fields([(b"x-a", b"1")]))
    e.set_peer_max_table_size(0)
    e.set_peer_max_table_size(1000)
    block = e.encode_fields([(b"x-a", b"1")])
    assert block[:1] == b"\x20" and block[1:4] == b"\x3f\xc9\x07"   # 0, then 1000
    assert d.decode_fields(block) == plain([(b"x-a", b"1")])
    assert d.header_table_size == 1000 and d.table_entries() == e.table_entries()
    block = e.encode_fields([(b"x-a", b"1")])
    assert block == b"\xbe"                           # no update any more; indexed


def test_encoder_own_cap_is_signalled_in_the_first_block():
    e = Encoder(max_table_size=256)
    block = e.encode_fields([(b"x", b"y")])
    assert block[:3] == b"\x3f\xe1\x01"             # 256
    assert e.header_table_size == 256
    e.set_peer_max_table_size(65536)                  # above our cap: no change
    assert e.encode_fields([(b"x", b"y")]) == b"\xbe"


def test_encode_rejects_odd_pairs_and_non_bytes():
    e = Encoder()
    with pytest.raises(ValueError):
        e.encode_block(None, [b":method"], None)
    with pytest.raises(TypeError):
        e.encode_block(None, None, [b"a", "b"])


def test_block_from_fields_is_a_header_block():
    hb = block_from_fields([(b":path", b"/"), (b"a", b"b", True)])
    assert hb.headers == [(b":path", b"/"), (b"a", b"b")]
    assert hb.header_flags[0][1] == HF_PSEUDO and hb.header_flags[1][1] == HF_NEVER_INDEXED
    assert not hb.header_flags[1][1] & (HF_DROP | HF_HOP)


# --------------------------------------------------------------------------------------------
# Huffman


def test_huffman_round_trip_of_every_byte_and_random_strings():
    everything = bytes(range(256))
    assert huffman_decode_py(huffman_encode_py(everything)) == everything
    rng = random.Random(7)
    for n in range(0, 300, 7):
        s = bytes(rng.randrange(256) for _ in range(n))
        assert huffman_decode_py(huffman_encode_py(s)) == s


def test_huffman_matches_rfc_examples():
    assert huffman_encode_py(b"www.example.com").hex() == "f1e3c2e5f23a6ba0ab90f4ff"
    assert huffman_encode_py(b"no-cache").hex() == "a8eb10649cbf"
    assert huffman_encode_py(b"custom-key").hex() == "25a849e95ba97d7f"

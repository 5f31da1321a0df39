"""atheris target for engine/_fast/hpack.pyx (the HPACK codec).

Input layout: byte 0 = flags (bit 0: small bounds, so the list/field/bomb limits are reached;
bit 1: lower our table limit to byte 1 * 16 before the first block, so a size update is due;
bit 2: Huffman off in the re-encoder), byte 1 = that limit, then blocks, each one length byte
followed by that many bytes (the last block takes what is left).

Checks, for every input:
  * no exception but HpackError, no crash; every code is a documented one, and after a
    connection error every later block gets the same code;
  * the dynamic table's accounting holds: size = sum(name + value + 32) <= its maximum;
  * the `hpack` package, fed the same blocks, agrees on every block both accept (fields and
    never-indexed flags), as long as neither has failed yet (tables are in step until then);
  * every accepted list re-encoded by sluice's Encoder decodes back (names lowercased) with the
    same never-indexed flags or stronger ones, through a second decoder kept in step;
  * a block rebuilt from fragments decodes the same as the whole (a third decoder).

Run by tests/fuzz/test_fuzz_targets.py for a bounded number of runs. By hand:
    python tests/fuzz/fuzz_hpack.py --seeds=/tmp/hpcorpus /tmp/hpcorpus -max_len=2048
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.append(ROOT)

import atheris  # noqa: E402

with atheris.instrument_imports():
    import hpack as oracle  # noqa: E402
    from engine._fast import hpack  # noqa: E402

CODES = {hpack.HPACK_E_TRUNCATED, hpack.HPACK_E_INTEGER, hpack.HPACK_E_INDEX,
         hpack.HPACK_E_HUFFMAN_EOS, hpack.HPACK_E_HUFFMAN_PADDING,
         hpack.HPACK_E_SIZE_UPDATE_TOO_LARGE, hpack.HPACK_E_SIZE_UPDATE_NOT_FIRST,
         hpack.HPACK_E_SIZE_UPDATE_MISSING, hpack.HPACK_E_BOMB, hpack.HPACK_E_LIST_TOO_LARGE,
         hpack.HPACK_E_TOO_MANY_FIELDS}
SOFT = {hpack.HPACK_E_LIST_TOO_LARGE, hpack.HPACK_E_TOO_MANY_FIELDS}

SEEDS = [
    b"\x00\x00" + bytes([20]) + bytes.fromhex("828684410f7777772e6578616d706c652e636f6d")
    + bytes([14]) + bytes.fromhex("828684be58086e6f2d6361636865"),
    b"\x00\x00" + bytes([17]) + bytes.fromhex("828684418cf1e3c2e5f23a6ba0ab90f4ff")
    + bytes([12]) + bytes.fromhex("828684be5886a8eb10649cbf"),
    b"\x00\x00" + bytes.fromhex("488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e0"
                                "82a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3"),
    b"\x02\x06" + bytes([4]) + b"\x3f\x41\x82\x84" + b"\x20\x82",
    b"\x01\x00" + bytes([12]) + b"\x40\x05x-big\x05vvvvv" + b"\xbe" * 40,
    b"\x00\x00" + b"\x100870617373776f726406736563726574",
    b"\x00\x00" + bytes([3]) + b"\x00\x81\x1f" + b"\x00\x84\xff\xff\xff\xff",
]


def _fields(hb):
    return [(n, v, bool(f & hpack.HF_NEVER_INDEXED)) for (n, v), (_, f) in
            zip(hb.headers, hb.header_flags)]


@atheris.instrument_func
def _oracle_fields(dec, block):
    try:
        return [(h[0], h[1], isinstance(h, oracle.NeverIndexedHeaderTuple))
                for h in dec.decode(block, raw=True)]
    except (oracle.HPACKError, IndexError, ValueError):
        return None


@atheris.instrument_func
def _signal(code):
    """Branches on what the decoder did: libFuzzer's feedback (the codec is not instrumented)."""
    if code == 0:
        return 0
    if code == hpack.HPACK_E_TRUNCATED:
        return 1
    if code == hpack.HPACK_E_INTEGER:
        return 2
    if code == hpack.HPACK_E_INDEX:
        return 3
    if code == hpack.HPACK_E_HUFFMAN_EOS:
        return 4
    if code == hpack.HPACK_E_HUFFMAN_PADDING:
        return 5
    if code == hpack.HPACK_E_SIZE_UPDATE_TOO_LARGE:
        return 6
    if code == hpack.HPACK_E_SIZE_UPDATE_NOT_FIRST:
        return 7
    if code == hpack.HPACK_E_SIZE_UPDATE_MISSING:
        return 8
    if code == hpack.HPACK_E_BOMB:
        return 9
    if code == hpack.HPACK_E_LIST_TOO_LARGE:
        return 10
    return 11


def _split(data):
    blocks, i = [], 2
    while i < len(data):
        n = data[i]
        blocks.append(data[i + 1:i + 1 + n])
        i += 1 + n
    return blocks


@atheris.instrument_func
def TestOneInput(data: bytes) -> None:
    if len(data) < 2:
        return
    flags = data[0]
    kw = dict(max_list_size=512, max_headers=8, bomb_floor=256, bomb_ratio=4) if flags & 1 else {}
    dec = hpack.Decoder(**kw)
    frag = hpack.Decoder(**kw)
    ref = oracle.Decoder(max_header_list_size=1 << 30)
    if flags & 2:
        dec.set_max_table_size(data[1] * 16)
        frag.set_max_table_size(data[1] * 16)
        ref.max_allowed_table_size = data[1] * 16
    enc = hpack.Encoder(huffman=not flags & 4)
    back = hpack.Decoder(max_list_size=1 << 30, max_headers=256, bomb_floor=1 << 40)
    dead, in_step = 0, True
    for block in _split(data):
        try:
            got = _fields(dec.decode_block(block))
            code = 0
        except hpack.HpackError as e:
            got, code = None, e.code
        _signal(code)
        assert code == 0 or code in CODES, code
        if dead:
            assert code == dead, (dead, code)
            continue
        if code and code not in SOFT:
            dead = code
        # the fragment decoder: same verdict, same fields
        joined = bytearray()
        for k in range(0, len(block), 3):
            joined += block[k:k + 3]
        try:
            fgot = _fields(frag.decode_block(joined))
        except hpack.HpackError as e:
            assert e.code == code, (code, e.code)
        else:
            assert code == 0 and fgot == got
        # table accounting
        entries = dec.table_entries()
        assert dec.table_size == sum(len(n) + len(v) + 32 for n, v in entries)
        assert dec.table_size <= dec.header_table_size <= dec.table_limit
        # the oracle, while both are in step
        if in_step:
            theirs = _oracle_fields(ref, block)
            if theirs is None and code == 0:
                raise AssertionError(("hpack refused what sluice accepted", block))
            if theirs is None or (code and code not in SOFT):
                in_step = False
            elif code == 0:
                assert theirs == got, (block, theirs, got)
                assert [tuple(e) for e in ref.header_table.dynamic_entries] == entries
        # re-encode what was accepted; decode it back through a decoder kept in step
        if code == 0:
            out = enc.encode_fields(got)
            again = _fields(back.decode_block(out))
            assert [(n, v) for n, v, _ in again] == [(n.lower(), v) for n, v, _ in got]
            assert all(a[2] or not g[2] for a, g in zip(again, got)), (got, again)
            assert back.table_entries() == enc.table_entries()


def main(argv: list[str]) -> None:
    from atheris_main import run      # beside this file: the shared command line
    run(argv, SEEDS, TestOneInput)


if __name__ == "__main__":
    main(sys.argv)

"""atheris target for engine/_fast/http2.pyx (the HTTP/2 connection codec).

Input layout: byte 0 = flags (bit 0: client role; bit 1: prepend a valid preface (the client
magic for the server role) and an empty SETTINGS, so the fuzzer starts past the handshake;
bit 2: answer streams, i.e. call the sending side too), bytes 1..3 = seed of the random
splits, the rest = the bytes the peer sends.

Checks, for every input:
  * no exception, no crash (the codec never raises on bad input);
  * events are well formed: known kinds, stream ids in range, error codes from RFC 9113
    section 7, nothing after EV_CONNECTION_ERROR and at most one of it, EV_DATA only on a
    stream that had EV_HEADERS;
  * memory stays bounded: the input buffer never holds more than one frame, open streams
    never exceed our MAX_CONCURRENT_STREAMS;
  * the events and the bytes we send are the same whole, one byte at a time and in random
    pieces (incremental parsing is exact).

Run by tests/fuzz/test_fuzz_targets.py for a bounded number of runs. By hand:
    python tests/fuzz/fuzz_http2.py --seeds=/tmp/h2corpus /tmp/h2corpus -max_len=4096
"""

from __future__ import annotations

import os
import random
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.append(ROOT)

import atheris  # noqa: E402

with atheris.instrument_imports():
    from engine._fast import http2  # noqa: E402

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
KINDS = set(range(1, 13))
MAX_CONCURRENT = 8
RESP = b"\x88"            # HPACK ":status: 200" (static index 8)


def frame(ftype, flags, sid, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


SEEDS = [
    b"\x02\x01\x02\x03" + frame(1, 5, 1, b"\x82\x86\x84\x41\x81\x1f"),
    b"\x06\x04\x05\x06" + frame(1, 4, 1, b"\x83\x86\x84") + frame(0, 8, 1, b"\x02ab\x00\x00")
    + frame(0, 1, 1, b"c") + frame(8, 0, 0, struct.pack(">I", 100)),
    b"\x06\x07\x08\x09" + frame(1, 1, 1, b"\x82") + frame(9, 0, 1, b"\x86") + frame(9, 4, 1, b"\x84"),
    b"\x02\x0a\x0b\x0c" + frame(6, 0, 0, b"12345678") + frame(4, 0, 0, struct.pack(">HI", 4, 1000))
    + frame(2, 0, 3, struct.pack(">IB", 1, 16)) + frame(7, 0, 0, struct.pack(">II", 0, 0) + b"bye"),
    b"\x06\x0d\x0e\x0f" + b"".join(frame(1, 5, s, b"\x82") + frame(3, 0, s, struct.pack(">I", 8))
                                   for s in range(1, 30, 2)),
    b"\x07\x10\x11\x12" + frame(1, 4, 1, b"\x88") + frame(0, 0, 1, b"body") + frame(5, 4, 1, b"\x00\x00\x00\x02\x82"),
    b"\x00\x13\x14\x15" + PREFACE + EMPTY_SETTINGS + frame(0xfa, 0xff, 5, b"x"),
]


def pieces(wire, mode, rng):
    if mode == 0:
        return [wire]
    if mode == 1:
        return [wire[i:i + 1] for i in range(len(wire))]
    out, i = [], 0
    while i < len(wire):
        k = rng.randint(1, 64)
        out.append(wire[i:i + k])
        i += k
    return out


@atheris.instrument_func
def _signal(ev):
    """Explicit branches on what the codec reported (the codec is not coverage-instrumented
    in a normal build: these branches are libFuzzer's feedback)."""
    kind = ev[0]
    if kind == http2.EV_CONNECTION_ERROR or kind == http2.EV_STREAM_ERROR:
        code = ev[2]
        if code == http2.PROTOCOL_ERROR:
            return 1
        if code == http2.FLOW_CONTROL_ERROR:
            return 2
        if code == http2.FRAME_SIZE_ERROR:
            return 3
        if code == http2.STREAM_CLOSED:
            return 4
        if code == http2.ENHANCE_YOUR_CALM:
            return 5
        if code == http2.REFUSED_STREAM:
            return 6
        return 7
    return 10 + kind


@atheris.instrument_func
def run(wire, flags, mode, rng):
    client = bool(flags & 1)
    conn = http2.H2Connection(client, max_concurrent_streams=MAX_CONCURRENT, initial_window_size=1000,
                              connection_window=65535, max_header_block=4096, max_continuations=8,
                              max_settings=20, max_pings=20, max_empty_data=20,
                              max_window_updates=50, max_rapid_resets=10, flood_window=10.0)
    conn.initiate(0.0)
    out = [conn.data_to_send()]
    opened = []
    if client:
        for _ in range(3):
            sid = conn.open_stream(b"\x82\x86\x84", False)
            if sid:
                opened.append(sid)
    transcript, seen_head, errors = [], set(opened), 0
    now = 0.0
    for part in pieces(wire, mode, rng):
        events = conn.receive_data(part, now)
        assert conn.buffered <= 9 + 16384, conn.buffered     # at most one incomplete frame
        for ev in events:
            _signal(ev)
            assert type(ev) is tuple and len(ev) == 4 and ev[0] in KINDS, ev
            assert errors == 0, ("event after a connection error", ev)
            kind, sid = ev[0], ev[1]
            assert 0 <= sid <= 2**31 - 1
            if kind in (http2.EV_CONNECTION_ERROR, http2.EV_STREAM_ERROR, http2.EV_RESET):
                assert 0 <= ev[2] <= 0xffffffff
            if kind in (http2.EV_CONNECTION_ERROR, http2.EV_STREAM_ERROR):
                assert ev[2] <= 0xd, ev
            if kind == http2.EV_CONNECTION_ERROR:
                errors += 1
                assert conn.closed
            elif kind == http2.EV_HEADERS:
                seen_head.add(sid)
            elif kind == http2.EV_DATA:
                assert sid in seen_head, ev
            transcript.append(ev)
        assert conn.open_streams <= MAX_CONCURRENT + 3
    # answer what arrived, once all input is in (same point in every mode)
    if flags & 4:
        for ev in transcript:
            if ev[0] == http2.EV_DATA:
                conn.consumed(ev[1], len(ev[2]))
            elif ev[0] == http2.EV_HEADERS and not client and ev[3]:
                if conn.send_headers(ev[1], RESP, False):
                    conn.send_data(ev[1], b"x" * 3000, True, now)
        for sid in conn.stalled_before(now):
            conn.reset_stream(sid, http2.CANCEL)
        if client:
            conn.shutdown()
    out.append(conn.data_to_send())
    transcript.append(conn.tick(1000.0))
    out.append(conn.data_to_send())
    return transcript, out, conn.counters()


@atheris.instrument_func
def TestOneInput(data: bytes) -> None:
    if len(data) < 4:
        return
    flags, wire = data[0], data[4:]
    if flags & 2:
        wire = (b"" if flags & 1 else PREFACE) + EMPTY_SETTINGS + wire
    rng = random.Random(int.from_bytes(data[1:4], "big"))
    whole = run(wire, flags, 0, rng)
    assert run(wire, flags, 1, rng) == whole, "bytewise differs"
    assert run(wire, flags, 2, rng) == whole, "pieces differ"


def main(argv: list[str]) -> None:
    from atheris_main import run      # beside this file: the shared command line
    run(argv, SEEDS, TestOneInput)


if __name__ == "__main__":
    main(sys.argv)

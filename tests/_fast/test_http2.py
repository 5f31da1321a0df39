"""engine/_fast/http2.pyx: the HTTP/2 connection codec, driven with hand-built frames.

Every RFC 9113 violation the codec detects has its error code (and whether it is a stream or
a connection error) asserted here; each defence has a test. Every case runs with the input
whole, split at every byte and in random chunks (the `mode` fixture). h2 as the peer is in
tests/oracles/test_http2_differential.py."""

from __future__ import annotations

import random
import struct

import hpack
import pytest

from engine._fast import http2 as H

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST, SETTINGS, PUSH, PING, GOAWAY, WU, CONT = range(10)
ES, ACK, EH, PADDED, PRIO = 0x1, 0x1, 0x4, 0x8, 0x20


def frame(ftype, flags, sid, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


def settings(*pairs, flags=0):
    return frame(SETTINGS, flags, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def u32(v):
    return struct.pack(">I", v)


ENC = hpack.Encoder()
REQ = hpack.Encoder().encode([(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a")])
RESP = hpack.Encoder().encode([(":status", "200")])


def pieces(data, mode, seed=0):
    if mode == "whole":
        return [data]
    if mode == "bytes":
        return [data[i:i + 1] for i in range(len(data))]
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(data):
        k = rng.randint(1, 17)
        out.append(data[i:i + k])
        i += k
    return out


@pytest.fixture(params=["whole", "bytes", "random"])
def mode(request):
    return request.param


def feed(conn, data, mode="whole", now=0.0):
    events = []
    for p in pieces(data, mode):
        events += conn.receive_data(p, now)
    return events


def server(mode="whole", **kw):
    s = H.H2Connection(False, **kw)
    s.initiate(0.0)
    out = s.data_to_send()
    assert out[3] == SETTINGS          # our preface: SETTINGS first
    assert feed(s, PREFACE + settings(), mode) == [(H.EV_SETTINGS, 0, 4096, 2**31 - 1)]
    assert s.data_to_send() == settings(flags=ACK)
    return s


def client(mode="whole", **kw):
    c = H.H2Connection(True, **kw)
    c.initiate(0.0)
    out = c.data_to_send()
    assert out.startswith(PREFACE) and out[24 + 3] == SETTINGS
    feed(c, settings(), mode)
    assert c.data_to_send() == settings(flags=ACK)
    return c


def parse_frames(data):
    out = []
    while data:
        n = int.from_bytes(data[:3], "big")
        out.append((data[3], data[4], int.from_bytes(data[5:9], "big") & 0x7FFFFFFF, data[9:9 + n]))
        data = data[9 + n:]
    return out


def goaway_code(conn):
    fr = [f for f in parse_frames(conn.data_to_send()) if f[0] == GOAWAY]
    assert fr, "no GOAWAY sent"
    return struct.unpack(">I", fr[-1][3][4:8])[0]


def rst_codes(data):
    return {f[2]: struct.unpack(">I", f[3])[0] for f in parse_frames(data) if f[0] == RST}


def conn_error(events):
    errs = [e for e in events if e[0] == H.EV_CONNECTION_ERROR]
    assert len(errs) == 1, events
    return errs[0][2]


# ---------------------------------------------------------------------------------------------
# Preface, framing, both roles

def test_client_role_sends_the_preface_then_settings_and_connection_window():
    c = H.H2Connection(True, connection_window=1 << 20)
    c.initiate(0.0)
    frames = parse_frames(c.data_to_send()[24:])
    assert frames[0][0] == SETTINGS
    assert (2, 0) in [struct.unpack(">HI", frames[0][3][i:i + 6]) for i in range(0, len(frames[0][3]), 6)]
    assert frames[1][:3] == (WU, 0, 0) and struct.unpack(">I", frames[1][3])[0] == (1 << 20) - 65535


def test_request_headers_and_data_become_events(mode):
    s = server(mode)
    wire = frame(HEADERS, EH, 1, REQ) + frame(DATA, 0, 1, b"hello") + frame(DATA, ES, 1, b"")
    ev = feed(s, wire, mode)
    assert ev[0] == (H.EV_HEADERS, 1, REQ, False)
    body = b"".join(e[2] for e in ev if e[0] == H.EV_DATA)
    assert body == b"hello" and ev[-1][3] is True
    assert s.stream_state(1) == H.S_HALF_CLOSED_REMOTE


def test_bad_preface_is_protocol_error(mode):
    s = H.H2Connection(False)
    s.initiate(0.0)
    s.data_to_send()
    ev = feed(s, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", mode)
    assert conn_error(ev) == H.PROTOCOL_ERROR and goaway_code(s) == H.PROTOCOL_ERROR


def test_first_frame_not_settings_is_protocol_error(mode):
    s = H.H2Connection(False)
    s.initiate(0.0)
    assert conn_error(feed(s, PREFACE + frame(PING, 0, 0, bytes(8)), mode)) == H.PROTOCOL_ERROR


def test_frame_over_max_frame_size_is_frame_size_error():
    s = server()
    ev = s.receive_data(b"\x00\x40\x01" + bytes([DATA, 0]) + u32(1), 0.0)   # length 16385
    assert conn_error(ev) == H.FRAME_SIZE_ERROR and goaway_code(s) == H.FRAME_SIZE_ERROR


def test_unknown_frame_types_are_ignored(mode):
    s = server()
    ev = feed(s, frame(0xFA, 0xFF, 1, b"whatever") + frame(HEADERS, EH | ES, 1, REQ), mode)
    assert ev == [(H.EV_HEADERS, 1, REQ, True)]


def test_padding_and_priority_are_removed_from_headers(mode):
    s = server()
    payload = bytes([3]) + u32(0) + bytes([15]) + REQ + b"\0\0\0"
    ev = feed(s, frame(HEADERS, EH | ES | PADDED | PRIO, 1, payload), mode)
    assert ev == [(H.EV_HEADERS, 1, REQ, True)]


def test_data_padding_is_removed_and_credited(mode):
    s = server(initial_window_size=100)
    feed(s, frame(SETTINGS, ACK, 0), mode)
    feed(s, frame(HEADERS, EH, 1, REQ), mode)
    ev = feed(s, frame(DATA, PADDED, 1, bytes([60]) + b"abc" + bytes(60)), mode)
    assert ev == [(H.EV_DATA, 1, b"abc", False)]
    assert s.stream(1).recv_window == 100 - 64 + 61  # padding given back at once


def test_header_block_is_joined_from_continuations(mode):
    s = server()
    wire = frame(HEADERS, ES, 1, REQ[:3]) + frame(CONT, 0, 1, REQ[3:5]) + frame(CONT, EH, 1, REQ[5:])
    assert feed(s, wire, mode) == [(H.EV_HEADERS, 1, REQ, True)]


def test_send_headers_splits_at_the_peer_max_frame_size():
    s = server()
    feed(s, frame(HEADERS, EH | ES, 1, REQ))
    block = bytes(40000)
    assert s.send_headers(1, block, True)
    frames = parse_frames(s.data_to_send())
    assert [f[0] for f in frames] == [HEADERS, CONT, CONT]
    assert [len(f[3]) for f in frames] == [16384, 16384, 40000 - 32768]
    assert frames[0][1] == ES and frames[1][1] == 0 and frames[2][1] == EH
    assert s.stream_state(1) == H.S_CLOSED


# ---------------------------------------------------------------------------------------------
# Violations, section by section (RFC 9113 4-6)

@pytest.mark.parametrize("wire, code", [
    (frame(DATA, 0, 0, b"x"), H.PROTOCOL_ERROR),                                # 6.1
    (frame(DATA, 0, 3, b"x"), H.PROTOCOL_ERROR),                                # 5.1 idle
    (frame(HEADERS, EH, 1, REQ) + frame(DATA, PADDED, 1, bytes([5]) + b"abcd"), H.PROTOCOL_ERROR),
    (frame(HEADERS, EH, 0, REQ), H.PROTOCOL_ERROR),                             # 6.2
    (frame(HEADERS, EH, 2, REQ), H.PROTOCOL_ERROR),                             # 5.1.1 even id
    (frame(HEADERS, EH | ES, 5, REQ) + frame(HEADERS, EH | ES, 3, REQ), H.PROTOCOL_ERROR),
    (frame(HEADERS, EH | PADDED, 1, bytes([200]) + REQ), H.PROTOCOL_ERROR),     # 6.2 padding
    (frame(HEADERS, EH | PRIO, 1, b"\0\0"), H.FRAME_SIZE_ERROR),
    (frame(HEADERS, 0, 1, REQ) + frame(DATA, 0, 1, b"x"), H.PROTOCOL_ERROR),    # 6.10
    (frame(HEADERS, 0, 1, REQ) + frame(CONT, EH, 3, b""), H.PROTOCOL_ERROR),
    (frame(CONT, EH, 1, REQ), H.PROTOCOL_ERROR),
    (frame(HEADERS, EH | ES, 1, REQ) + frame(RST, 0, 1, u32(0)) + frame(DATA, 0, 3, b""), H.PROTOCOL_ERROR),
    (frame(RST, 0, 1, u32(0)), H.PROTOCOL_ERROR),                               # 6.4 idle
    (frame(RST, 0, 0, u32(0)), H.PROTOCOL_ERROR),
    (frame(HEADERS, EH, 1, REQ) + frame(RST, 0, 1, b"\0\0\0"), H.FRAME_SIZE_ERROR),
    (frame(SETTINGS, 0, 1), H.PROTOCOL_ERROR),                                  # 6.5
    (frame(SETTINGS, 0, 0, b"\0\0\0"), H.FRAME_SIZE_ERROR),
    (frame(SETTINGS, ACK, 0, b"\0\0\0\0\0\0"), H.FRAME_SIZE_ERROR),
    (settings((2, 2)), H.PROTOCOL_ERROR),                                       # 6.5.2
    (settings((4, 2**31)), H.FLOW_CONTROL_ERROR),
    (settings((5, 16383)), H.PROTOCOL_ERROR),
    (settings((5, 2**24)), H.PROTOCOL_ERROR),
    (frame(PING, 0, 0, bytes(7)), H.FRAME_SIZE_ERROR),                          # 6.7
    (frame(PING, 0, 1, bytes(8)), H.PROTOCOL_ERROR),
    (frame(GOAWAY, 0, 1, bytes(8)), H.PROTOCOL_ERROR),                          # 6.8
    (frame(GOAWAY, 0, 0, bytes(7)), H.FRAME_SIZE_ERROR),
    (frame(WU, 0, 0, u32(0)), H.PROTOCOL_ERROR),                                # 6.9
    (frame(WU, 0, 0, bytes(3)), H.FRAME_SIZE_ERROR),
    (frame(WU, 0, 0, u32(2**31 - 65535)), H.FLOW_CONTROL_ERROR),                # 6.9.1
    (frame(WU, 0, 7, u32(1)), H.PROTOCOL_ERROR),                                # idle stream
    (frame(PRIORITY, 0, 0, bytes(5)), H.PROTOCOL_ERROR),                        # 6.3
    (frame(PRIORITY, 0, 9, bytes(4)), H.FRAME_SIZE_ERROR),                      # idle: no RST
    (frame(PUSH, EH, 1, u32(2) + REQ), H.PROTOCOL_ERROR),                       # 8.4
    (frame(DATA, 0, 1, b""), H.PROTOCOL_ERROR),
])
def test_connection_errors_have_the_rfc_code(wire, code, mode):
    s = server()
    ev = feed(s, wire, mode)
    assert conn_error(ev) == code
    assert goaway_code(s) == code
    assert s.closed and s.receive_data(frame(PING, 0, 0, bytes(8)), 0.0) == []


def test_data_after_end_stream_is_a_connection_stream_closed_error(mode):
    s = server()
    feed(s, frame(HEADERS, EH | ES, 1, REQ), mode)
    assert s.send_headers(1, RESP, True)                 # the stream is now closed
    s.data_to_send()
    assert conn_error(feed(s, frame(DATA, 0, 1, b"x"), mode)) == H.STREAM_CLOSED


def test_headers_on_a_closed_stream_is_stream_closed(mode):
    s = server()
    feed(s, frame(HEADERS, EH | ES, 1, REQ), mode)
    s.send_headers(1, RESP, True)
    assert conn_error(feed(s, frame(HEADERS, EH | ES, 1, REQ), mode)) == H.STREAM_CLOSED


def stream_error_case(s, setup, wire, mode):
    feed(s, setup, mode)
    feed(s, frame(HEADERS, EH, 3, REQ), mode)           # a bystander stream
    s.data_to_send()
    ev = feed(s, wire, mode)
    assert not [e for e in ev if e[0] == H.EV_CONNECTION_ERROR], ev
    errs = [e for e in ev if e[0] == H.EV_STREAM_ERROR]
    out = s.data_to_send()
    # the bystander goes on
    assert s.stream_state(3) == H.S_OPEN and not s.closed
    assert feed(s, frame(DATA, ES, 3, b"ok"), mode)[-1] == (H.EV_DATA, 3, b"ok", True)
    return errs, rst_codes(out)


@pytest.mark.parametrize("setup, wire, code", [
    # 5.1 half-closed (remote): DATA / HEADERS -> stream STREAM_CLOSED
    (frame(HEADERS, EH | ES, 1, REQ), frame(DATA, 0, 1, b"x"), H.STREAM_CLOSED),
    (frame(HEADERS, EH | ES, 1, REQ), frame(HEADERS, EH | ES, 1, REQ), H.STREAM_CLOSED),
    # 6.9: WINDOW_UPDATE of 0 on a stream, stream window overflow
    (frame(HEADERS, EH, 1, REQ), frame(WU, 0, 1, u32(0)), H.PROTOCOL_ERROR),
    (frame(HEADERS, EH, 1, REQ), frame(WU, 0, 1, u32(2**31 - 65535)), H.FLOW_CONTROL_ERROR),
    # 6.3 PRIORITY of the wrong length; 5.3.1 a stream depending on itself
    (frame(HEADERS, EH, 1, REQ), frame(PRIORITY, 0, 1, bytes(4)), H.FRAME_SIZE_ERROR),
    (frame(HEADERS, EH, 1, REQ), frame(PRIORITY, 0, 1, u32(1) + b"\x10"), H.PROTOCOL_ERROR),
    # 8.1: a second head without END_STREAM is malformed
    (frame(HEADERS, EH, 1, REQ), frame(HEADERS, EH, 1, REQ), H.PROTOCOL_ERROR),
    # 5.1 after the peer's RST_STREAM, DATA is a stream error STREAM_CLOSED
    (frame(HEADERS, EH, 1, REQ) + frame(RST, 0, 1, u32(8)), frame(DATA, 0, 1, b"x"), H.STREAM_CLOSED),
])
def test_stream_errors_reset_only_their_stream(setup, wire, code, mode):
    s = server()
    errs, rsts = stream_error_case(s, setup, wire, mode)
    assert errs == [(H.EV_STREAM_ERROR, 1, code, None)]
    assert rsts == {1: code}


def test_a_new_stream_depending_on_itself_is_a_stream_protocol_error(mode):
    s = server()
    ev = feed(s, frame(HEADERS, EH | PRIO, 1, u32(1) + b"\x10" + REQ) + frame(HEADERS, EH | ES, 3, REQ), mode)
    assert ev == [(H.EV_HEADERS_IGNORED, 1, REQ, None), (H.EV_STREAM_ERROR, 1, H.PROTOCOL_ERROR, None),
                  (H.EV_HEADERS, 3, REQ, True)]
    assert rst_codes(s.data_to_send()) == {1: H.PROTOCOL_ERROR}


def test_data_beyond_the_stream_window_is_a_stream_flow_control_error(mode):
    s = server(initial_window_size=65535)
    errs, rsts = stream_error_case(
        s, frame(HEADERS, EH, 1, REQ) + frame(WU, 0, 0, u32(1 << 20)),
        b"".join(frame(DATA, 0, 1, bytes(16384)) for _ in range(4)) + frame(DATA, 0, 1, bytes(1)), mode)
    assert errs == [(H.EV_STREAM_ERROR, 1, H.FLOW_CONTROL_ERROR, None)] and rsts == {1: H.FLOW_CONTROL_ERROR}


def test_data_beyond_the_connection_window_is_a_connection_flow_control_error(mode):
    s = server(connection_window=65535, initial_window_size=1 << 20)
    feed(s, frame(SETTINGS, ACK, 0))
    ev = feed(s, frame(HEADERS, EH, 1, REQ) + frame(HEADERS, EH, 3, REQ)
              + b"".join(frame(DATA, 0, 1 + 2 * (i % 2), bytes(16384)) for i in range(4))
              + frame(DATA, 0, 1, bytes(1)), mode)
    assert conn_error(ev) == H.FLOW_CONTROL_ERROR


def test_frames_crossing_our_reset_are_ignored_and_credited(mode):
    s = server(connection_window=65535)
    feed(s, frame(HEADERS, EH, 1, REQ), mode)
    assert s.reset_stream(1, H.CANCEL)
    assert rst_codes(s.data_to_send()) == {1: H.CANCEL}
    ev = feed(s, frame(DATA, 0, 1, bytes(16384)) * 3 + frame(WU, 0, 1, u32(5))
              + frame(HEADERS, EH | ES, 1, REQ), mode)
    assert ev == [(H.EV_HEADERS_IGNORED, 1, REQ, None)]      # trailers still go to HPACK
    assert s.conn_recv_window == 65535 - 3 * 16384 + 32768   # credited: half a window owed -> WU
    assert [f[:3] for f in parse_frames(s.data_to_send())] == [(WU, 0, 0)]


def test_a_larger_initial_window_applies_before_the_settings_ack(mode):
    s = server(initial_window_size=1 << 20, connection_window=1 << 20)
    ev = feed(s, frame(HEADERS, EH, 1, REQ) + frame(DATA, 0, 1, bytes(16384)) * 6, mode)
    assert [e[0] for e in ev] == [H.EV_HEADERS] + [H.EV_DATA] * 6


def test_a_smaller_initial_window_applies_from_the_settings_ack(mode):
    s = server(initial_window_size=1000)
    feed(s, frame(HEADERS, EH, 1, REQ), mode)
    assert s.stream(1).recv_window == 65535               # the peer may not have our SETTINGS yet
    feed(s, frame(SETTINGS, ACK, 0), mode)
    assert s.stream(1).recv_window == 1000
    errs, rsts = stream_error_case(s, b"", frame(DATA, 0, 1, bytes(1001)), mode)
    assert rsts == {1: H.FLOW_CONTROL_ERROR}


def test_data_before_the_response_head_is_a_stream_protocol_error(mode):
    c = client()
    sid = c.open_stream(REQ, True)
    ev = feed(c, frame(DATA, ES, sid, b"x"), mode)
    assert ev == [(H.EV_STREAM_ERROR, sid, H.PROTOCOL_ERROR, None)]


def test_settings_are_applied_and_acknowledged(mode):
    s = server()
    feed(s, frame(HEADERS, EH, 1, REQ), mode)
    ev = feed(s, settings((1, 8192), (3, 7), (4, 1000), (5, 20000), (6, 1 << 14), (0x99, 1)), mode)
    assert ev == [(H.EV_SETTINGS, 0, 8192, 7)]
    assert (s.peer_initial_window, s.peer_max_frame, s.peer_max_header_list) == (1000, 20000, 1 << 14)
    assert s.stream(1).send_window == 1000                 # 6.9.2: open streams adjusted
    assert s.data_to_send() == settings(flags=ACK)


def test_initial_window_change_overflowing_a_stream_window_is_flow_control_error(mode):
    s = server()
    feed(s, frame(HEADERS, EH, 1, REQ) + frame(WU, 0, 1, u32(2**31 - 1 - 65535)), mode)
    assert conn_error(feed(s, settings((4, 65536)), mode)) == H.FLOW_CONTROL_ERROR


def test_settings_ack_cancels_the_deadline_and_timeout_is_settings_timeout():
    s = server(settings_timeout=5.0)
    assert s.settings_deadline == 5.0
    assert s.tick(4.9) == []
    assert s.receive_data(frame(SETTINGS, ACK, 0), 1.0) == [(H.EV_SETTINGS_ACK, 0, None, None)]
    assert s.settings_deadline == 0.0 and s.tick(100.0) == []
    t = server(settings_timeout=5.0)
    ev = t.tick(5.0)
    assert conn_error(ev) == H.SETTINGS_TIMEOUT and goaway_code(t) == H.SETTINGS_TIMEOUT
    assert t.counters()["settings_timeouts"] == 1


def test_ping_is_answered_and_ack_reported(mode):
    s = server()
    assert feed(s, frame(PING, 0, 0, b"12345678"), mode) == []
    assert s.data_to_send() == frame(PING, ACK, 0, b"12345678")
    assert feed(s, frame(PING, ACK, 0, b"abcdefgh"), mode) == [(H.EV_PING_ACK, 0, b"abcdefgh", None)]


def test_priority_is_parsed_and_ignored(mode):
    s = server()
    assert feed(s, frame(PRIORITY, 0, 9, u32(1) + b"\x10"), mode) == []
    assert s.stream_state(9) == H.S_IDLE
    assert feed(s, frame(HEADERS, EH | ES, 9, REQ), mode) == [(H.EV_HEADERS, 9, REQ, True)]


def test_push_promise_is_refused_in_the_client_role(mode):
    c = client()
    sid = c.open_stream(REQ, True)
    assert conn_error(feed(c, frame(PUSH, EH, sid, u32(2) + RESP), mode)) == H.PROTOCOL_ERROR
    c2 = client()
    assert conn_error(feed(c2, settings((2, 1)), mode)) == H.PROTOCOL_ERROR   # 6.5.2


# ---------------------------------------------------------------------------------------------
# Flow control, both directions

def test_consumed_data_is_given_back_in_window_updates():
    s = server(connection_window=65535, initial_window_size=65535)
    feed(s, frame(HEADERS, EH, 1, REQ) + frame(DATA, 0, 1, bytes(16384)) * 2)
    assert s.data_to_send() == b""                          # nothing consumed yet: backpressure
    s.consumed(1, 16384)
    assert s.data_to_send() == b""                          # less than half a window owed
    s.consumed(1, 16384)
    frames = parse_frames(s.data_to_send())
    assert [(f[0], f[2], struct.unpack(">I", f[3])[0]) for f in frames] == [(WU, 0, 32768), (WU, 1, 32768)]


def test_send_data_respects_both_windows_and_reports_the_stall():
    s = server()
    feed(s, frame(HEADERS, EH | ES, 1, REQ) + settings((4, 10)))
    s.data_to_send()
    s.send_headers(1, RESP)
    assert s.send_data(1, b"x" * 25, True, now=7.0) == 10
    assert s.stream(1).stalled_since == 7.0 and s.stalled_before(7.0) == [1]
    assert s.stalled_before(6.0) == []
    ev = s.receive_data(frame(WU, 0, 1, u32(100)), 8.0)
    assert ev == [(H.EV_WINDOW_UPDATE, 1, 100, None)]
    assert s.send_data(1, b"x" * 15, True, now=8.0) == 15
    assert s.stream_state(1) == H.S_CLOSED and s.stalled_before(100.0) == []
    frames = parse_frames(s.data_to_send())
    assert [(f[0], f[1], len(f[3])) for f in frames] == [(HEADERS, EH, 1), (DATA, 0, 10), (DATA, ES, 15)]
    assert s.counters()["flow_stalls"] == 1


def test_send_data_splits_at_the_peer_max_frame_size():
    s = server()
    feed(s, frame(HEADERS, EH | ES, 1, REQ))
    s.send_headers(1, RESP)
    s.data_to_send()
    assert s.send_data(1, bytes(40000)) == 40000
    assert [len(f[3]) for f in parse_frames(s.data_to_send())] == [16384, 16384, 7232]


# ---------------------------------------------------------------------------------------------
# GOAWAY, shutdown, ids

def test_graceful_shutdown_is_two_goaways_around_a_ping():
    s = server()
    feed(s, frame(HEADERS, EH, 1, REQ))
    s.shutdown()
    frames = parse_frames(s.data_to_send())
    assert frames[0][0] == GOAWAY and struct.unpack(">II", frames[0][3]) == (2**31 - 1, 0)
    assert frames[1][0] == PING
    # a stream opened before the client saw the GOAWAY is still served
    assert feed(s, frame(HEADERS, EH, 3, REQ))[0][0] == H.EV_HEADERS
    ev = feed(s, frame(PING, ACK, 0, frames[1][3]))
    assert ev[0][0] == H.EV_PING_ACK and s.shutdown_step == 2
    frames = parse_frames(s.data_to_send())
    assert frames[0][0] == GOAWAY and struct.unpack(">II", frames[0][3]) == (3, 0)
    # later streams are ignored (their block still goes to HPACK)
    assert feed(s, frame(HEADERS, EH, 5, REQ)) == [(H.EV_HEADERS_IGNORED, 5, REQ, None)]
    assert s.open_streams == 2


def test_goaway_received_refuses_the_streams_above_last_id(mode):
    c = client()
    ids = [c.open_stream(REQ, True) for _ in range(3)]
    assert ids == [1, 3, 5]
    ev = feed(c, frame(GOAWAY, 0, 0, u32(1) + u32(0) + b"bye"), mode)
    assert ev[0] == (H.EV_GOAWAY, 1, 0, b"bye")
    assert sorted(e[1] for e in ev if e[0] == H.EV_REFUSED) == [3, 5]
    assert c.open_streams == 1 and c.available_streams == 0 and c.open_stream(REQ) == 0
    assert feed(c, frame(HEADERS, EH | ES, 1, RESP), mode) == [(H.EV_HEADERS, 1, RESP, True)]


def test_client_respects_peer_max_concurrent_streams():
    c = client()
    feed(c, settings((3, 2)))
    assert c.available_streams == 2
    assert c.open_stream(REQ, True) == 1 and c.open_stream(REQ, True) == 3
    assert c.open_stream(REQ, True) == 0
    feed(c, frame(HEADERS, EH | ES, 1, RESP))
    assert c.available_streams == 1 and c.open_stream(REQ, True) == 5


def test_headers_on_an_idle_client_stream_or_a_push_id_is_protocol_error(mode):
    c = client()
    assert conn_error(feed(c, frame(HEADERS, EH, 1, RESP), mode)) == H.PROTOCOL_ERROR
    c = client()
    c.open_stream(REQ, True)
    assert conn_error(feed(c, frame(HEADERS, EH, 2, RESP), mode)) == H.PROTOCOL_ERROR


def test_stream_id_exhaustion_asks_for_a_new_connection():
    c = client()
    c._set_next_stream_id(2**31 - 1)
    assert c.open_stream(REQ, True) == 2**31 - 1
    assert c.open_stream(REQ, True) == 0
    assert c.exhausted and c.counters()["ids_exhausted"] == 1
    goaways = [f for f in parse_frames(c.data_to_send()) if f[0] == GOAWAY]
    assert struct.unpack(">II", goaways[0][3][:8]) == (0, 0)
    assert c.open_stream(REQ, True) == 0 and c.available_streams == 0


def test_server_closes_with_the_callers_compression_error():
    s = server()
    feed(s, frame(HEADERS, EH, 1, REQ))
    s.close(H.COMPRESSION_ERROR)
    fr = parse_frames(s.data_to_send())[-1]
    assert fr[0] == GOAWAY and struct.unpack(">II", fr[3][:8]) == (1, H.COMPRESSION_ERROR)


def test_sending_in_a_forbidden_state_is_a_usage_error_and_on_a_gone_stream_a_no_op():
    s = server()
    feed(s, frame(HEADERS, EH, 1, REQ))
    s.send_headers(1, RESP, True)                          # half-closed (local)
    with pytest.raises(H.H2UsageError):
        s.send_data(1, b"x")
    feed(s, frame(RST, 0, 1, u32(H.CANCEL)))
    assert s.send_data(1, b"x") == -1 and s.send_headers(1, RESP) is False


def test_transition_table_is_rfc_9113_figure_2():
    T = H.TRANSITIONS
    assert T[(H.S_IDLE, 4)] == H.S_OPEN                     # recv HEADERS
    assert T[(H.S_OPEN, 6)] == H.S_HALF_CLOSED_REMOTE       # recv END_STREAM
    assert T[(H.S_OPEN, 2)] == H.S_HALF_CLOSED_LOCAL        # send END_STREAM
    assert T[(H.S_HALF_CLOSED_LOCAL, 6)] == H.S_CLOSED
    assert T[(H.S_HALF_CLOSED_REMOTE, 2)] == H.S_CLOSED
    assert all(v in (H.S_OPEN, H.S_HALF_CLOSED_LOCAL, H.S_HALF_CLOSED_REMOTE, H.S_CLOSED) for v in T.values())


# ---------------------------------------------------------------------------------------------
# Defences

def test_rapid_reset_is_answered_with_enhance_your_calm():
    s = server(max_rapid_resets=50, flood_window=10.0)
    wire = b"".join(frame(HEADERS, EH | ES, sid, REQ) + frame(RST, 0, sid, u32(H.CANCEL))
                    for sid in range(1, 2 * 60, 2))
    ev = s.receive_data(wire, 1.0)
    assert conn_error(ev) == H.ENHANCE_YOUR_CALM and goaway_code(s) == H.ENHANCE_YOUR_CALM
    assert s.counters()["rapid_resets"] == 51 and s.counters()["flood_rapid_reset"] == 1


def test_resets_spread_over_windows_are_not_a_flood():
    s = server(max_rapid_resets=50, flood_window=10.0)
    for k in range(5):
        wire = b"".join(frame(HEADERS, EH | ES, sid, REQ) + frame(RST, 0, sid, u32(H.CANCEL))
                        for sid in range(1 + 80 * k, 80 * (k + 1), 2))
        ev = s.receive_data(wire, 10.0 * k)
        assert not [e for e in ev if e[0] == H.EV_CONNECTION_ERROR]


def test_resets_of_answered_streams_are_not_rapid_resets():
    s = server(max_rapid_resets=5)
    for sid in range(1, 41, 2):
        feed(s, frame(HEADERS, EH, sid, REQ))
        s.send_headers(sid, RESP, True)
        assert not [e for e in feed(s, frame(RST, 0, sid, u32(H.CANCEL))) if e[0] == H.EV_CONNECTION_ERROR]
    assert s.counters()["rapid_resets"] == 0 and s.counters()["resets_received"] == 20


def test_continuation_flood_by_frame_count_is_cut_off():
    s = server(max_continuations=8)
    ev = s.receive_data(frame(HEADERS, 0, 1, REQ) + frame(CONT, 0, 1, b"") * 9, 0.0)
    assert conn_error(ev) == H.ENHANCE_YOUR_CALM and s.counters()["flood_continuation"] == 1


def test_continuation_flood_by_bytes_is_cut_off_before_buffering(mode):
    s = server(max_header_block=4096, max_continuations=1000)
    ev = feed(s, frame(HEADERS, 0, 1, bytes(1000)) + frame(CONT, 0, 1, bytes(1000)) * 4, mode)
    assert conn_error(ev) == H.ENHANCE_YOUR_CALM


def test_one_headers_frame_over_the_block_cap_is_cut_off(mode):
    s = server(max_header_block=100)
    assert conn_error(feed(s, frame(HEADERS, EH, 1, bytes(101)), mode)) == H.ENHANCE_YOUR_CALM


def test_an_unknown_frame_inside_a_header_block_is_protocol_error(mode):
    s = server()
    ev = feed(s, frame(HEADERS, 0, 1, REQ[:2]) + frame(0xFA, 0, 1, b"") + frame(CONT, EH, 1, REQ[2:]), mode)
    assert conn_error(ev) == H.PROTOCOL_ERROR                                  # 6.10


def test_window_update_and_rst_stream_on_a_closed_stream_are_ignored(mode):
    s = server()
    feed(s, frame(HEADERS, EH | ES, 1, REQ), mode)
    s.send_headers(1, RESP, True)
    s.data_to_send()
    assert feed(s, frame(WU, 0, 1, u32(10)) + frame(RST, 0, 1, u32(H.CANCEL)) + frame(PRIORITY, 0, 1, u32(0) + b"\x10"), mode) == []
    assert s.data_to_send() == b"" and not s.closed


def test_an_unknown_error_code_is_passed_on(mode):
    s = server()
    feed(s, frame(HEADERS, EH, 1, REQ), mode)
    assert feed(s, frame(RST, 0, 1, u32(0xDEADBEEF)), mode) == [(H.EV_RESET, 1, 0xDEADBEEF, None)]


@pytest.mark.parametrize("one, counter, budget_kw", [
    (settings(), "flood_settings", "max_settings"),
    (frame(PING, 0, 0, bytes(8)), "flood_ping", "max_pings"),
    (frame(DATA, 0, 1, b""), "flood_empty_data", "max_empty_data"),
    (frame(WU, 0, 0, u32(1)), "flood_window_update", "max_window_updates"),
])
def test_control_frame_floods_are_enhance_your_calm(one, counter, budget_kw):
    s = server(**{budget_kw: 20})
    s.receive_data(frame(HEADERS, EH, 1, REQ), 0.0)
    s.data_to_send()
    ev = s.receive_data(one * 25, 0.5)
    assert conn_error(ev) == H.ENHANCE_YOUR_CALM and s.counters()[counter] == 1
    out = s.data_to_send()
    assert len(out) < 25 * 20 + 200          # ACKs stop at the budget: bounded output


def test_the_same_frames_within_budget_per_window_pass():
    s = server(max_pings=20, flood_window=1.0)
    for k in range(10):
        assert s.receive_data(frame(PING, 0, 0, bytes(8)) * 20, float(k)) == []


def test_streams_over_our_max_concurrent_are_refused():
    s = server(max_concurrent_streams=2)
    ev = feed(s, b"".join(frame(HEADERS, EH, sid, REQ) for sid in (1, 3, 5)))
    assert [e[0] for e in ev] == [H.EV_HEADERS, H.EV_HEADERS, H.EV_HEADERS_IGNORED, H.EV_STREAM_ERROR]
    assert rst_codes(s.data_to_send()) == {5: H.REFUSED_STREAM}
    assert s.counters()["refused_streams"] == 1
    s.reset_stream(1)
    assert feed(s, frame(HEADERS, EH, 7, REQ))[0][0] == H.EV_HEADERS   # room again


def test_zero_window_stall_is_exposed_for_the_sweep():
    s = server()
    feed(s, frame(HEADERS, EH | ES, 1, REQ) + frame(HEADERS, EH | ES, 3, REQ) + settings((4, 0)))
    s.send_headers(1, RESP)
    s.send_headers(3, RESP)
    assert s.send_data(1, b"abc", now=3.0) == 0
    assert s.send_data(3, b"abc", now=5.0) == 0
    assert s.stalled_before(4.0) == [1]
    assert s.reset_stream(1, H.CANCEL) and s.stalled_before(4.0) == []


def test_input_held_is_at_most_one_frame():
    s = server()
    feed(s, frame(HEADERS, EH, 1, REQ))
    s.receive_data(frame(DATA, 0, 1, bytes(16384))[:-1], 0.0)
    assert s.buffered == 9 + 16383
    ev = s.receive_data(b"\0" + frame(DATA, 0, 1, bytes(100))[:5], 0.0)
    assert [e[0] for e in ev] == [H.EV_DATA] and s.buffered == 5

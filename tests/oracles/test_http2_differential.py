"""engine/_fast/http2.pyx against h2 as the peer, in both roles, bytes exchanged in memory.

Our server (H2Connection(client=False)) talks to h2's client and our client to h2's server.
Each side runs a small echo application: the server answers every request with its body
(and trailers when the request had them). Hypothesis generates the sequences: requests of
various sizes, resets, SETTINGS changes (initial window, max frame size, max concurrent
streams), connection WINDOW_UPDATEs and PINGs. Our side gets the peer's bytes whole, split at
every byte, or in random chunks; the events it reports must be the same in every mode, h2
must never see a protocol error, and every request that was not reset must get its answer
byte for byte."""

from __future__ import annotations

import random

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from engine._fast import http2 as H

REQ_HEADERS = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/echo"), (b":authority", b"a")]


def pieces(data, mode, rng):
    if mode == "whole":
        return [data]
    if mode == "bytes":
        return [data[i:i + 1] for i in range(len(data))]
    out, i = [], 0
    while i < len(data):
        k = rng.randint(1, 200)
        out.append(data[i:i + k])
        i += k
    return out


class Ours:
    """Our codec plus an HPACK pair (the `hpack` package stands in for hpack.pyx) and the
    pending-body bookkeeping the proxy will do: send what the windows allow, resume on
    EV_WINDOW_UPDATE / EV_SETTINGS."""

    def __init__(self, client, mode, seed, **kw):
        self.conn = H.H2Connection(client, **kw)
        self.conn.initiate(0.0)
        self.mode, self.rng = mode, random.Random(seed)
        self.dec, self.enc = hpack.Decoder(), hpack.Encoder()
        self.pending = {}           # sid -> [bytes, end_stream, trailers]
        self.transcript = []        # normalised events, to compare across modes
        self.heads, self.bodies, self.ended, self.trailers, self.resets = {}, {}, set(), {}, {}
        self.refused = set()

    def receive(self, data):
        events = []
        for p in pieces(data, self.mode, self.rng):
            events += self.conn.receive_data(p, 0.0)
        for ev in events:
            kind, sid, a, b = ev
            if kind in (H.EV_HEADERS, H.EV_HEADERS_IGNORED):
                fields = self.dec.decode(a, raw=True)
                self.transcript.append((kind, sid, tuple(fields), b))
                if kind == H.EV_HEADERS:
                    if sid in self.heads:
                        self.trailers[sid] = fields
                    else:
                        self.heads[sid] = fields
                        self.bodies[sid] = b""
                    if b:
                        self.ended.add(sid)
            elif kind == H.EV_DATA:
                self.transcript.append((kind, sid, len(a), b))
                self.bodies[sid] += a
                self.conn.consumed(sid, len(a))
                if b:
                    self.ended.add(sid)
            else:
                self.transcript.append(ev if kind != H.EV_WINDOW_UPDATE else (kind, sid))
                if kind == H.EV_RESET:
                    self.resets[sid] = a
                    self.pending.pop(sid, None)
                elif kind == H.EV_REFUSED:
                    self.refused.add(sid)
                    self.pending.pop(sid, None)
        self.flush()
        return events

    def send_body(self, sid, body, end=True, trailers=None):
        self.pending[sid] = [body, end, trailers]
        self.flush()

    def flush(self):
        for sid in list(self.pending):
            body, end, trailers = self.pending[sid]
            n = self.conn.send_data(sid, body, end and trailers is None, 1.0)
            if n < 0:
                del self.pending[sid]
                continue
            body = body[n:]
            if body:
                self.pending[sid][0] = body
                continue
            del self.pending[sid]
            if trailers is not None:
                self.conn.send_headers(sid, self.enc.encode(trailers), True)


class Peer:
    """h2 as the other end, with the same echo/pending logic."""

    def __init__(self, client_side, **local_settings):
        cfg = h2.config.H2Configuration(client_side=client_side, header_encoding=None)
        self.conn = h2.connection.H2Connection(cfg)
        if local_settings:
            self.conn.local_settings = h2.settings.Settings(client=client_side, initial_values=local_settings)
        self.conn.initiate_connection()
        self.pending = {}
        self.heads, self.bodies, self.ended, self.trailers, self.resets = {}, {}, set(), {}, {}
        self.terminated = None

    def receive(self, data):
        events = self.conn.receive_data(data)
        for ev in events:
            if isinstance(ev, (h2.events.RequestReceived, h2.events.ResponseReceived)):
                self.heads[ev.stream_id] = ev.headers
                self.bodies.setdefault(ev.stream_id, b"")
            elif isinstance(ev, h2.events.TrailersReceived):
                self.trailers[ev.stream_id] = ev.headers
            elif isinstance(ev, h2.events.DataReceived):
                self.bodies[ev.stream_id] += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self.ended.add(ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                self.resets[ev.stream_id] = ev.error_code
                self.pending.pop(ev.stream_id, None)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.terminated = ev
        self.flush()
        return events

    def send_body(self, sid, body, end=True, trailers=None):
        self.pending[sid] = [body, end, trailers]
        self.flush()

    def flush(self):
        for sid in list(self.pending):
            body, end, trailers = self.pending[sid]
            try:
                while body:
                    room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
                    if room <= 0:
                        break
                    self.conn.send_data(sid, body[:room])
                    body = body[room:]
                if body:
                    self.pending[sid][0] = body
                    continue
                del self.pending[sid]
                if trailers is not None:
                    self.conn.send_headers(sid, trailers, end_stream=True)
                elif end:
                    self.conn.end_stream(sid)
            except h2.exceptions.StreamClosedError:
                self.pending.pop(sid, None)


def pump(a, b, rounds=20000):
    """Move bytes both ways until neither side has anything to say."""
    for _ in range(rounds):
        x = a.conn.data_to_send()
        if x:
            b.receive(x)
        y = b.conn.data_to_send()
        if y:
            a.receive(y)
        if not x and not y:
            return
    raise AssertionError("no quiescence")


def serve(server, is_ours):
    """The echo application of the server side: answer every complete request."""
    for sid in sorted(server.ended):
        if sid in server.resets or ("answered", sid) in server.heads:
            continue
        server.heads[("answered", sid)] = True
        body = server.bodies.get(sid, b"")
        tr = server.trailers.get(sid)
        head = [(b":status", b"200"), (b"x-len", str(len(body)).encode())]
        if is_ours:
            if not server.conn.send_headers(sid, server.enc.encode(head), False):
                continue
            server.send_body(sid, body, True, [(b"x-trailer", b"yes")] if tr else None)
        else:
            try:
                server.conn.send_headers(sid, head)
            except h2.exceptions.StreamClosedError:
                continue
            server.send_body(sid, body, True, [(b"x-trailer", b"yes")] if tr else None)


ACTIONS = st.lists(st.one_of(
    st.tuples(st.just("req"), st.integers(0, 70000), st.booleans()),
    st.tuples(st.just("reset"), st.integers(0, 10)),
    # INITIAL_WINDOW_SIZE: 0 stalls every stream (reopened at the end); tiny windows cost a
    # round trip per few bytes, so they stay above 100
    st.tuples(st.just("settings"), st.one_of(st.sampled_from([0, 100, 65535]), st.integers(4096, 1 << 20)),
              st.sampled_from([16384, 20000, 65536])),
    st.tuples(st.just("wu"), st.integers(1, 1 << 20)),
    st.tuples(st.just("ping"), st.binary(min_size=8, max_size=8)),
), min_size=1, max_size=12)


def body_of(n, sid):
    return bytes((sid + i) % 251 for i in range(n))


def run_our_server(actions, mode, seed):
    ours = Ours(False, mode, seed, initial_window_size=32768, connection_window=65535,
                max_concurrent_streams=1000)
    peer = Peer(True)
    pump(peer, ours)
    opened = []
    for act in actions:
        if act[0] == "req":
            sid = peer.conn.get_next_available_stream_id()
            opened.append(sid)
            peer.conn.send_headers(sid, REQ_HEADERS)
            peer.send_body(sid, body_of(act[1], sid), True, [(b"x-t", b"1")] if act[2] else None)
        elif act[0] == "reset" and opened:
            sid = opened[act[1] % len(opened)]
            try:
                peer.conn.reset_stream(sid, 8)
                peer.resets[sid] = 8
                peer.pending.pop(sid, None)
            except h2.exceptions.StreamClosedError:
                pass
        elif act[0] == "settings":
            peer.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: act[1],
                                       h2.settings.SettingCodes.MAX_FRAME_SIZE: act[2]})
        elif act[0] == "wu":
            peer.conn.increment_flow_control_window(act[1])
        elif act[0] == "ping":
            peer.conn.ping(act[1])
        pump(peer, ours)
        serve(ours, True)
        pump(peer, ours)
    # reopen any window a zero INITIAL_WINDOW_SIZE closed, so every answer can finish
    peer.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 65535})
    pump(peer, ours)
    for _ in range(3):
        serve(ours, True)
        pump(peer, ours)
    return ours, peer, opened


def check_echo(client_side, server_side, opened):
    assert client_side.terminated is None if hasattr(client_side, "terminated") else True
    for sid in opened:
        if sid in client_side.resets or sid in server_side.resets:
            continue
        assert sid in client_side.ended, f"stream {sid} got no complete answer"
        body = client_side.bodies.get(sid, b"")
        assert body == body_of(len(body), sid)
        assert dict(client_side.heads[sid])[b"x-len"] == str(len(body)).encode()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=ACTIONS, seed=st.integers(0, 1 << 30))
def test_our_server_against_h2_client(actions, seed):
    transcripts = []
    for mode in ("whole", "random", "bytes"):
        if mode == "bytes" and sum(a[1] for a in actions if a[0] == "req") > 40000:
            continue
        ours, peer, opened = run_our_server(actions, mode, seed)
        assert peer.terminated is None, peer.terminated
        assert not [e for e in ours.transcript if e[0] in (H.EV_CONNECTION_ERROR, H.EV_STREAM_ERROR)], \
            ours.transcript
        check_echo(peer, ours, opened)
        transcripts.append(ours.transcript)
        assert ours.conn.open_streams == 0 or ours.pending == {}
    assert all(t == transcripts[0] for t in transcripts)


def run_our_client(actions, mode, seed):
    ours = Ours(True, mode, seed, initial_window_size=1 << 20, connection_window=1 << 21)
    peer = Peer(False)
    pump(ours, peer)
    opened = []
    for act in actions:
        if act[0] == "req":
            if ours.conn.available_streams == 0:
                continue
            sid = ours.conn.open_stream(ours.enc.encode(REQ_HEADERS), False)
            assert sid
            opened.append(sid)
            ours.heads.pop(sid, None)
            ours.send_body(sid, body_of(act[1], sid), True, [(b"x-t", b"1")] if act[2] else None)
        elif act[0] == "reset" and opened:
            sid = opened[act[1] % len(opened)]
            if ours.conn.reset_stream(sid, H.CANCEL):
                ours.resets[sid] = H.CANCEL
                ours.pending.pop(sid, None)
        elif act[0] == "settings":
            peer.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: act[1],
                                       h2.settings.SettingCodes.MAX_FRAME_SIZE: act[2]})
        elif act[0] == "wu":
            peer.conn.increment_flow_control_window(act[1])
        elif act[0] == "ping":
            ours.conn.ping(act[1])
        pump(ours, peer)
        serve(peer, False)
        pump(ours, peer)
    peer.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 65535})
    pump(ours, peer)
    for _ in range(3):
        serve(peer, False)
        pump(ours, peer)
    return ours, peer, opened


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=ACTIONS, seed=st.integers(0, 1 << 30))
def test_our_client_against_h2_server(actions, seed):
    transcripts = []
    for mode in ("whole", "random", "bytes"):
        if mode == "bytes" and sum(a[1] for a in actions if a[0] == "req") > 40000:
            continue
        ours, peer, opened = run_our_client(actions, mode, seed)
        assert peer.terminated is None, peer.terminated
        assert not [e for e in ours.transcript if e[0] in (H.EV_CONNECTION_ERROR, H.EV_STREAM_ERROR)], \
            ours.transcript
        check_echo(ours, peer, opened)
        for sid in opened:
            if sid not in ours.resets and sid in ours.ended and peer.trailers.get(sid):
                assert ours.trailers[sid] == [(b"x-trailer", b"yes")]
        transcripts.append(ours.transcript)
    assert all(t == transcripts[0] for t in transcripts)


@pytest.mark.parametrize("mode", ["whole", "bytes", "random"])
def test_many_concurrent_streams_with_small_windows_both_ways(mode):
    actions = [("req", 30000 + 1000 * i, i % 2 == 0) for i in range(8)] + [("settings", 1000, 16384)]
    ours, peer, opened = run_our_server(actions, mode, 1)
    check_echo(peer, ours, opened)
    ours, peer, opened = run_our_client(actions, mode, 1)
    check_echo(ours, peer, opened)


def test_large_header_block_reaches_h2_as_headers_and_continuations():
    ours = Ours(False, "whole", 0)
    peer = Peer(True)
    pump(peer, ours)
    peer.conn.send_headers(1, REQ_HEADERS, end_stream=True)
    pump(peer, ours)
    big = [(b":status", b"200")] + [(b"x-h%d" % i, bytes([97 + i % 26]) * 1000) for i in range(60)]
    block = ours.enc.encode(big)
    assert len(block) > 2 * 16384
    assert ours.conn.send_headers(1, block, True)
    events = peer.receive(ours.conn.data_to_send())
    got = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
    assert got and got[0].headers == big


def test_our_graceful_shutdown_goaways_are_valid_for_h2():
    """h2 closes its state machine at the first GOAWAY it receives (it then refuses a PING),
    so the PING round trip is acknowledged by hand here; h2 checks both GOAWAY frames."""
    ours = Ours(False, "whole", 0)
    peer = Peer(True)
    pump(peer, ours)
    peer.conn.send_headers(1, REQ_HEADERS, end_stream=True)
    pump(peer, ours)
    ours.conn.shutdown()
    out = ours.conn.data_to_send()
    n = int.from_bytes(out[:3], "big")
    first, ping = out[:9 + n], out[9 + n:]
    assert ping[3] == 6 and len(ping) == 17
    peer.receive(first)
    assert peer.terminated.last_stream_id == 2**31 - 1 and peer.terminated.error_code == 0
    ours.receive(b"\x00\x00\x08\x06\x01\x00\x00\x00\x00" + ping[9:])   # the PING ACK
    assert ours.conn.shutdown_step == 2
    peer.receive(ours.conn.data_to_send())
    assert peer.terminated.last_stream_id == 1 and peer.terminated.error_code == 0
    assert ours.conn.open_streams == 1          # stream 1 is still served


def test_h2_server_goaway_refuses_our_later_streams():
    ours = Ours(True, "whole", 0)
    peer = Peer(False)
    pump(ours, peer)
    s1 = ours.conn.open_stream(ours.enc.encode(REQ_HEADERS), True)
    pump(ours, peer)
    s3 = ours.conn.open_stream(ours.enc.encode(REQ_HEADERS), True)
    peer.conn.close_connection(last_stream_id=s1)
    ours.receive(peer.conn.data_to_send())      # s3 never reached the h2 server's application
    assert (H.EV_GOAWAY, s1, 0, b"") in ours.transcript
    assert ours.refused == {s3}


def test_h2_client_resets_and_rst_refused_stream_from_max_concurrent():
    ours = Ours(False, "whole", 0, max_concurrent_streams=2)
    peer = Peer(True)
    for sid in (1, 3, 5):            # before h2 has seen our SETTINGS (MAX_CONCURRENT_STREAMS 2)
        peer.conn.send_headers(sid, REQ_HEADERS, end_stream=True)
    pump(peer, ours)
    assert peer.resets == {5: H.REFUSED_STREAM}
    serve(ours, True)
    pump(peer, ours)
    assert {1, 3} <= peer.ended


@pytest.mark.parametrize("raw, code", [
    (b"\x00\x00\x01\x00\x00\x00\x00\x00\x03x", H.PROTOCOL_ERROR),                # DATA, idle stream
    (b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x7f\xff\xff\xff", H.FLOW_CONTROL_ERROR),  # window overflow
    (b"\x00\x00\x07\x06\x00\x00\x00\x00\x00" + bytes(7), H.FRAME_SIZE_ERROR),       # short PING
])
def test_h2_client_sees_our_goaway_with_the_rfc_code(raw, code):
    ours = Ours(False, "whole", 0)
    peer = Peer(True)
    pump(peer, ours)
    ours.receive(raw)                        # what h2 will not send: injected after its preface
    peer.receive(ours.conn.data_to_send())
    assert isinstance(peer.terminated, h2.events.ConnectionTerminated)
    assert peer.terminated.error_code == code and peer.terminated.last_stream_id == 0

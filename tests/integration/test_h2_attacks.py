"""Hostile HTTP/2 clients against the real binary (issue 10, "Bad input"): every flood the codec
defends against, sent as raw frames over a socket. Each gets the GOAWAY RFC 9113 (or our
defence) names, the worker's memory stays bounded while it lasts, and the next client is
served as if nothing happened."""

from __future__ import annotations

import socket
import struct
import time

import hpack
import pytest

from support import free_port, rss_kb, simple_config

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ENHANCE_YOUR_CALM = 0xB
COMPRESSION_ERROR = 0x9
REFUSED_STREAM = 0x7
CANCEL = 0x8
GROWTH_BOUND_KB = 24 * 1024


def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def settings(**kw) -> bytes:
    ids = {"initial_window": 4, "max_frame": 5}
    return frame(4, 0, 0, b"".join(struct.pack(">HI", ids[k], v) for k, v in kw.items()))


def request_block(enc: hpack.Encoder, path: str, method: str = "GET") -> bytes:
    return enc.encode([(":method", method), (":scheme", "http"), (":authority", "a"),
                       (":path", path)])


class RawClient:
    def __init__(self, port: int, **settings_kw) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(PREFACE + settings(**settings_kw) + frame(4, 1, 0))
        self.buf = b""
        self.frames: list[tuple[int, int, int, bytes]] = []
        self.eof = False

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def pump(self, timeout: float = 0.0) -> None:
        self.sock.settimeout(timeout if timeout > 0 else 0.001)
        try:
            data = self.sock.recv(1 << 20)
        except (socket.timeout, BlockingIOError):
            return
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return
        self.buf += data
        while len(self.buf) >= 9:
            n = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + n:
                break
            ftype, flags = self.buf[3], self.buf[4]
            sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            self.frames.append((ftype, flags, sid, self.buf[9:9 + n]))
            self.buf = self.buf[9 + n:]

    def goaway_code(self, wait: float = 10.0):
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            for ftype, _, _, payload in self.frames:
                if ftype == 7:
                    return int.from_bytes(payload[4:8], "big")
            if self.eof:
                return None
            self.pump(0.2)
        return None

    def rst_codes(self) -> dict[int, int]:
        return {sid: int.from_bytes(p[:4], "big") for t, _, sid, p in self.frames if t == 3}

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def proxy(start_sluice, upstream):
    c = simple_config(free_port(), {"up": [upstream.address]})
    c["listeners"][0]["protocols"] = ["http2", "http1"]
    c["listeners"][0]["timeouts"] = {"send": "1s"}
    s = start_sluice(c)
    (s.worker,) = s.worker_pids()
    return s


def flood(proxy, build, count: int, expect: int, opener: bytes = b"") -> None:
    c = RawClient(proxy.port)
    before = rss_kb(proxy.worker)
    if opener:
        c.send(opener)
    batch = b"".join(build(i) for i in range(1000))
    sent = 0
    while sent < count and not c.eof:
        if not c.send(batch):
            break
        sent += 1000
        c.pump()
        if any(f[0] == 7 for f in c.frames):
            break
    assert c.goaway_code() == expect
    growth = rss_kb(proxy.worker) - before
    c.close()
    assert growth < GROWTH_BOUND_KB, f"worker grew {growth} KiB"
    served_after(proxy)


def served_after(proxy) -> None:
    """A well-behaved client on a new connection is served normally."""
    enc = hpack.Encoder()
    c = RawClient(proxy.port)
    c.send(frame(1, 5, 1, request_block(enc, "/echo")))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        c.pump(0.2)
        if any(t == 0 and f & 1 and sid == 1 for t, f, sid, _ in c.frames):
            break
    heads = [p for t, _, sid, p in c.frames if t == 1 and sid == 1]
    assert heads and hpack.Decoder().decode(heads[0])[0] == (":status", "200")
    c.close()


def test_settings_flood(proxy):
    flood(proxy, lambda i: frame(4, 0, 0), 200000, ENHANCE_YOUR_CALM)


def test_ping_flood(proxy):
    flood(proxy, lambda i: frame(6, 0, 0, b"12345678"), 200000, ENHANCE_YOUR_CALM)


def test_window_update_flood(proxy):
    flood(proxy, lambda i: frame(8, 0, 0, struct.pack(">I", 1)), 200000, ENHANCE_YOUR_CALM)


def test_empty_data_flood(proxy):
    opener = frame(1, 4, 1, request_block(hpack.Encoder(), "/slow/5000", "POST"))
    flood(proxy, lambda i: frame(0, 0, 1), 200000, ENHANCE_YOUR_CALM, opener)


def test_continuation_flood(proxy):
    block = request_block(hpack.Encoder(), "/echo")
    opener = frame(1, 0, 1, block)                     # HEADERS without END_HEADERS
    flood(proxy, lambda i: frame(9, 0, 1, b"\x40\x01x\x01y" * 100), 200000, ENHANCE_YOUR_CALM,
          opener)


def test_hpack_bomb_is_refused_before_it_costs_memory(proxy):
    c = RawClient(proxy.port)
    before = rss_kb(proxy.worker)
    # one 4000-byte entry in the dynamic table, then referenced 3000 times in the same block
    entry = b"\x40\x01x" + b"\x7f" + bytes([0x80 | ((4000 - 127) & 0x7F), (4000 - 127) >> 7]) + b"v" * 4000
    block = request_block(hpack.Encoder(), "/echo") + entry + b"\xbe" * 3000
    chunks = [block[i:i + 16000] for i in range(0, len(block), 16000)]
    data = frame(1, 1 | (4 if len(chunks) == 1 else 0), 1, chunks[0])
    for k, ch in enumerate(chunks[1:], 1):
        data += frame(9, 4 if k == len(chunks) - 1 else 0, 1, ch)
    c.send(data)
    assert c.goaway_code() in (ENHANCE_YOUR_CALM, COMPRESSION_ERROR)
    assert rss_kb(proxy.worker) - before < GROWTH_BOUND_KB
    c.close()
    served_after(proxy)


def test_streams_over_the_limit_are_refused(proxy):
    """SETTINGS_MAX_CONCURRENT_STREAMS (128 by default): the 129th open stream gets
    REFUSED_STREAM, the others are served."""
    enc = hpack.Encoder()
    c = RawClient(proxy.port)
    data = b"".join(frame(1, 5, 2 * i + 1, request_block(enc, "/slow/1500")) for i in range(130))
    c.send(data)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len([f for f in c.frames if f[0] == 0 and f[1] & 1]) < 128:
        c.pump(0.2)
    refused = [sid for sid, code in c.rst_codes().items() if code == REFUSED_STREAM]
    assert len(refused) == 2
    ended = {sid for t, f, sid, _ in c.frames if t == 0 and f & 1}
    assert len(ended) == 128
    c.close()


def test_a_stream_stalled_on_a_shut_window_is_reset_and_the_connection_lives(proxy):
    """The client never credits stream 1 (its window stays shut after 65535 bytes): after the
    listener's send timeout (1 s here) that stream is reset, and stream 3 is still served."""
    enc = hpack.Encoder()
    c = RawClient(proxy.port)
    c.send(frame(8, 0, 0, struct.pack(">I", 1 << 30)))         # the connection window is wide
    c.send(frame(1, 5, 1, request_block(enc, "/bytes/10000000")))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and 1 not in c.rst_codes():
        c.pump(0.2)
    assert c.rst_codes().get(1) == CANCEL
    c.send(frame(1, 5, 3, request_block(enc, "/echo")))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(t == 0 and f & 1 and s == 3 for t, f, s, _ in c.frames):
        c.pump(0.2)
    assert any(t == 0 and f & 1 and s == 3 for t, f, s, _ in c.frames)
    c.close()

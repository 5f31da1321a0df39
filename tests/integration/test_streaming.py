"""Bodies stream with backpressure: a 1 GiB upload and download pass through with bounded memory.

Memory is read from the worker process's RSS (/proc/PID/status VmHWM: the peak), so a proxy that
buffered the body would show it whatever the timing."""

from __future__ import annotations

import socket

import pytest

from support import free_port, simple_config

GiB = 1 << 30
RSS_BOUND_KB = 120 * 1024    # a worker with a whole body in memory would be over 1 GiB


def peak_rss_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.fixture
def proxy(upstream, start_sluice):
    return start_sluice(simple_config(free_port(), {"up": [upstream.address]}))


def test_one_gib_download_streams_with_bounded_memory(proxy):
    with socket.create_connection(("127.0.0.1", proxy.port)) as s:
        s.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % GiB)
        got = 0
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(65536)
        got = len(head.partition(b"\r\n\r\n")[2])
        buf = bytearray(1 << 20)
        while True:
            n = s.recv_into(buf)
            if not n:
                break
            got += n
    assert got == GiB
    [worker] = proxy.worker_pids()
    assert peak_rss_kb(worker) < RSS_BOUND_KB


def test_one_gib_upload_streams_with_bounded_memory(proxy):
    with socket.create_connection(("127.0.0.1", proxy.port)) as s:
        s.sendall(b"POST /sink HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n"
                  b"Connection: close\r\n\r\n" % GiB)
        block = b"u" * (1 << 20)
        for _ in range(GiB // len(block)):
            s.sendall(block)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    assert out.startswith(b"HTTP/1.1 200")
    assert b'"body_bytes": %d' % GiB in out
    [worker] = proxy.worker_pids()
    assert peak_rss_kb(worker) < RSS_BOUND_KB

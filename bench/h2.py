"""The HTTP/2 scenarios' own parts (issue 10): checking a peer's answers over HTTP/2 before it is
measured, and measuring memory per idle HTTP/2 connection and per open stream.

The answer check reads what h2load does not: the body (bytes compared) and, for the gRPC call,
the `grpc-status: 0` trailer, on two requests over one connection, with ALPN h2 and TLS 1.3 when
the scenario is over TLS.

Memory (the h2mem scenario): the RSS of the proxy's processes before, with CONNS idle h2c
connections that have each served one request (bench/h2idle.py), and then with STREAMS streams
held open on those connections by an upstream that never answers them (bench/hold_upstream.py).
Per connection = first delta / CONNS; per stream = second delta / STREAMS, which includes the
upstream HTTP/1.1 connection each held request occupies in the proxy, as it would in life.
"""

from __future__ import annotations

import subprocess
import sys
import time

from bench.h2client import H2Error, Request, exchange
from bench.peers import GRPC_HEADERS, GRPC_PATH, GRPC_REQUEST, ROOT, HoldUpstream, Peer
from bench.procs import rss_kib


def check_h2_answers(peer: Peer, sc) -> str | None:
    """None when the peer answers the scenario's request right over HTTP/2, twice on one
    connection."""
    if sc.variant.grpc:
        req = Request(GRPC_PATH, "POST", GRPC_HEADERS, GRPC_REQUEST)
    else:
        req = Request(sc.path, headers=(("user-agent", "sluice-bench"),))
    try:
        session = exchange(peer.port, [req, req], ca=peer.ca if peer.scheme == "https" else None)
    except (OSError, H2Error) as exc:
        return f"{type(exc).__name__}: {exc}"
    except Exception as exc:          # h2's own protocol errors: the peer broke HTTP/2
        return f"HTTP/2: {type(exc).__name__}: {exc}"
    if peer.scheme == "https" and session.tls_version != "TLSv1.3":
        return f"negotiated {session.tls_version}, not TLSv1.3"
    for r in session.responses:
        if r.status != 200:
            return f"status {r.status} for {req.path}"
        if r.body != sc.expect:
            return (f"wrong body for {req.path}: {len(r.body)} bytes, "
                    f"expected {len(sc.expect)}")
        if sc.variant.grpc and r.trailer("grpc-status") != "0":
            return f"gRPC trailer grpc-status {r.trailer('grpc-status')!r}, expected '0'"
    return None


def measure_h2mem(peer: Peer, conns: int, streams: int, hold: HoldUpstream,
                  settle: float = 0.5, timeout: float = 30.0) -> dict:
    time.sleep(0.3)
    before = rss_kib(peer.pids())
    client = subprocess.Popen([sys.executable, "-m", "bench.h2idle", str(peer.port), str(conns),
                               str(streams)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=ROOT)
    held = 0
    try:
        opened = _count(client.stdout.readline(), "open")
        time.sleep(settle)
        idle = rss_kib(peer.pids())
        client.stdin.write("\n")
        client.stdin.flush()
        sent = _count(client.stdout.readline(), "streams")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (held := hold.held()) < sent:
            time.sleep(0.1)
        time.sleep(settle)
        busy = rss_kib(peer.pids())
    finally:
        client.stdin.close()
        client.wait(30)
    deadline = time.monotonic() + 10          # the next peer starts from an empty upstream
    while time.monotonic() < deadline and hold.held():
        time.sleep(0.1)
    out = {"conns": opened, "streams": held, "rss_before_kib": before, "rss_idle_kib": idle,
           "rss_streams_kib": busy,
           "bytes_per_conn": round((idle - before) * 1024 / opened) if opened else None,
           "bytes_per_stream": round((busy - idle) * 1024 / held) if held else None}
    problems = []
    if opened < conns:
        problems.append(f"only {opened} of {conns} connections opened")
    if held < streams:
        problems.append(f"only {held} of {streams} streams reached the upstream")
    if problems:
        out["problems"] = problems
    return out


def _count(line: str, word: str) -> int:
    parts = line.split()
    return int(parts[1]) if len(parts) == 2 and parts[0] == word else 0

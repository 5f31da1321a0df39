"""engine/_fast/debug.pyx: the debug build's live-object counters.

Both builds: the API exists and a release build answers nothing (all zeros, no records). The
debug build (SLUICE_DEBUG=1 pip install -e .): counts go up and down, a forked worker's counts
reach the supervisor through shared memory, and an in-process proxy's connections are counted
while they are open and released when they close (the check tests/conftest.py makes after every
test). The admin side (GET /debug/live, the report at a worker's exit) is in
tests/runtime/test_admin_debug.py."""

from __future__ import annotations

import asyncio
import gc
import os

import pytest
import uvloop

import engine
from engine._fast import debug
from support import free_port

debug_only = pytest.mark.skipif(not debug.DEBUG_BUILD, reason="a debug build counts "
                                "(SLUICE_DEBUG=1 pip install -e .)")
release_only = pytest.mark.skipif(debug.DEBUG_BUILD, reason="a release build counts nothing")


def test_the_kinds_are_the_ones_live_objects_reports():
    assert isinstance(debug.DEBUG_BUILD, bool)
    assert debug.KINDS == ("exchange", "downstream", "upstream", "tls")
    live = debug.live_objects()
    assert list(live) == list(debug.KINDS)
    assert all(isinstance(n, int) for n in live.values())


def test_an_unknown_kind_is_an_error_in_both_builds():
    with pytest.raises(ValueError, match="unknown live-object kind 'sockets': one of exchange, "
                                         "downstream, upstream, tls"):
        debug.add("sockets", 1)


@release_only
def test_a_release_build_counts_nothing():
    debug.add("exchange", 5)
    assert debug.live_objects() == dict.fromkeys(debug.KINDS, 0)
    debug.share(4)
    assert debug.attach_worker(0) is False
    assert debug.workers() == []


@debug_only
def test_counts_go_up_and_down():
    before = debug.live_objects()
    debug.add("exchange", 2)
    debug.add("tls", 1)
    assert debug.live_objects() == {**before, "exchange": before["exchange"] + 2,
                                    "tls": before["tls"] + 1}
    debug.add("exchange", -2)
    debug.add("tls", -1)
    assert debug.live_objects() == before


@debug_only
def test_a_forked_workers_counts_reach_the_supervisor():
    debug.share(4)           # once per process (a Supervisor made in this process may have)
    slot = 3
    debug.add("upstream", 1)                   # the child inherits it: live there too
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            attached = debug.attach_worker(slot)
            outside = debug.attach_worker(1 << 20)   # a slot share() did not map: refused
            debug.add("downstream", 3)
            status = 0 if attached and not outside else 2
        finally:
            os.write(w, b"x")
            os._exit(status)
    os.close(w)
    assert os.read(r, 1) == b"x"
    os.close(r)
    _, status = os.waitpid(pid, 0)
    debug.add("upstream", -1)
    assert os.waitstatus_to_exitcode(status) == 0
    record = next(x for x in debug.workers() if x["slot"] == slot)
    assert record["pid"] == pid
    # it started from what it inherited (our upstream), and kept its last counts after exit
    assert record["live"]["downstream"] == 3
    assert record["live"]["upstream"] == debug.live_objects()["upstream"] + 1


@debug_only
def test_an_embedded_proxy_counts_its_connections_and_releases_them():
    upstream_port, port = free_port(), free_port()
    config = {
        "listeners": [{"name": "main", "address": f"127.0.0.1:{port}", "routes": ["r"]}],
        "routes": [{"name": "r", "match": {"path_prefix": "/"}, "to": [{"cluster": "up"}]}],
        "clusters": [{"name": "up", "endpoints": [{"address": f"127.0.0.1:{upstream_port}"}]}],
    }
    before = debug.live_objects()
    seen = {}

    async def upstream(reader, writer):
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main():
        up = await asyncio.start_server(upstream, "127.0.0.1", upstream_port)
        proxy = engine.Proxy(config)
        await proxy.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
        seen["open"] = debug.live_objects()      # the client's connection is still open
        writer.close()
        await writer.wait_closed()
        await proxy.stop(drain=1.0)
        up.close()
        await up.wait_closed()
        for _ in range(100):                    # the loop runs connection_lost, then frees
            gc.collect()
            if debug.live_objects() == before:
                break
            await asyncio.sleep(0.01)
        seen["stopped"] = debug.live_objects()

    uvloop.run(main())
    grew = {k: seen["open"][k] - before[k] for k in debug.KINDS}
    assert grew["downstream"] == 1 and grew["upstream"] == 1, grew
    assert seen["stopped"] == before


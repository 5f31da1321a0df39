"""engine/runtime/worker.py: what a worker serves is a snapshot the supervisor validated, checked
against the digest it validated, never validated a second time."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
import uvloop

from engine.policy import load_config_text
from engine.policy.snapshot import SnapshotError, snapshot_of
from engine.runtime import worker
from engine.runtime.channel import read_message, write_message
from engine.runtime.supervisor import apply_message
from support import free_port

CONFIG = """
listeners: [{name: main, address: "127.0.0.1:%d", routes: [r]}]
routes: [{name: r, match: {path_prefix: /}, direct_response: {status: 200, body: %s}}]
"""


def validated(body: str = "hi", port: int = 8080):
    """What the supervisor has after validating a config: (config, header, snapshot bytes)."""
    config = load_config_text(CONFIG % (port, body))
    header, data = snapshot_of(config, "c.yaml")
    return config, header, data


def test_a_validated_snapshot_is_not_validated_again(monkeypatch):
    config, header, data = validated()

    def no(*args, **kwargs):
        raise AssertionError("validated again in the worker")

    import engine.policy.load
    import engine.policy.snapshot
    monkeypatch.setattr(engine.policy.load, "check_data", no)
    monkeypatch.setattr(engine.policy.snapshot, "check_data", no)
    monkeypatch.setattr(engine.policy.model.Config, "model_validate", no)
    got = worker.received_config(apply_message(data, header.sha256, header.config_version))
    assert got == config


def test_another_valid_snapshot_under_the_validated_digest_is_refused():
    # the attack: the bytes a worker receives are not the ones the supervisor validated (a
    # valid snapshot all the same); the worker used to validate and serve whatever came
    _, header, _ = validated("checked")
    _, _, other = validated("swapped")
    with pytest.raises(SnapshotError, match="does not match the digest it was validated with"):
        worker.received_config(apply_message(other, header.sha256, header.config_version))


@pytest.mark.parametrize("damage", [
    lambda data: data[:-3],                                  # truncated
    lambda data: data.replace(b"hi", b"ho"),                 # content changed, header kept
    lambda data: b"",
])
def test_damaged_bytes_are_refused(damage):
    _, header, data = validated()
    with pytest.raises(SnapshotError):
        worker.received_config(apply_message(damage(data), header.sha256, header.config_version))


def test_an_apply_message_without_its_digest_is_refused():
    _, header, data = validated()
    with pytest.raises(SnapshotError, match="the digest they were validated with"):
        worker.received_config({"op": "apply", "version": header.config_version,
                                "snapshot": data})


def test_a_digest_mismatch_is_nacked_with_why_and_the_old_config_keeps_serving():
    """Through the worker's control channel, as the supervisor sees it: the apply is refused
    with the reason, the listener goes on answering with the config it had, and a good apply
    afterwards still works."""
    port = free_port()
    _, header, data = validated("old", port)
    _, good_header, good = validated("new", port)

    async def main():
        from engine._fast.limiter import SharedBuckets

        loop = asyncio.get_running_loop()
        config, version = worker.served_config(data, header.sha256)
        server = worker.WorkerServer(loop, config, SharedBuckets(1024), "off", version)
        await server.start()
        ours, theirs = socket.socketpair()
        stopping = loop.create_future()
        control = loop.create_task(worker._control(server, theirs, stopping))
        reader, writer = await asyncio.open_connection(sock=ours)
        try:
            assert (await read_message(reader))["op"] == "ready"
            # the supervisor validated `good` but these bytes arrive under its digest
            write_message(writer, apply_message(data.replace(b"old", b"bad"),
                                                good_header.sha256, good_header.config_version))
            answer = await read_message(reader)
            assert answer["op"] == "nack" and answer["version"] == good_header.config_version
            assert "does not match the digest it was validated with" in answer["error"]
            async with httpx.AsyncClient() as c:
                assert (await c.get(f"http://127.0.0.1:{port}/")).text == "old"
            write_message(writer, apply_message(good, good_header.sha256,
                                                good_header.config_version))
            assert (await read_message(reader))["op"] == "ack"
            async with httpx.AsyncClient() as c:
                assert (await c.get(f"http://127.0.0.1:{port}/")).text == "new"
            assert server.version == good_header.config_version
        finally:
            writer.close()
            control.cancel()
            await server.stop(drain=1.0)

    uvloop.run(main())


def _forked_worker(snapshot: bytes, digest: str) -> tuple[int, list[dict]]:
    """run_worker in a forked child, as the supervisor starts one: (exit status, messages)."""
    import os

    from engine._fast.limiter import SharedBuckets

    buckets = SharedBuckets(64)
    parent, child = socket.socketpair()
    pid = os.fork()
    if pid == 0:                                    # pragma: no cover (the child)
        status = 1
        try:
            parent.close()
            status = worker.run_worker(snapshot, digest, buckets, "off", 1.0, child)
        finally:
            os._exit(status)
    child.close()
    messages = []

    async def read():
        reader, writer = await asyncio.open_connection(sock=parent)
        while (msg := await read_message(reader)) is not None:
            messages.append(msg)
            if msg["op"] == "ready":
                os.kill(pid, 15)                     # SIGTERM: drain and exit 0
        writer.close()

    asyncio.run(asyncio.wait_for(read(), 30))
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), messages


def test_a_forked_worker_starts_from_the_snapshot_and_its_digest():
    _, header, data = validated("hi", free_port())
    status, messages = _forked_worker(data, header.sha256)
    assert status == 0
    assert [m["op"] for m in messages] == ["ready"]
    assert messages[0]["version"] == header.config_version


def test_a_forked_worker_given_bytes_that_do_not_match_the_digest_does_not_start():
    port = free_port()
    _, header, _ = validated("checked", port)
    _, _, other = validated("swapped", port)
    status, messages = _forked_worker(other, header.sha256)
    assert status == 1
    (failed,) = messages
    assert failed["op"] == "failed"
    assert "does not match the digest it was validated with" in failed["reason"]


def test_the_config_a_reload_replaces_is_freed():
    """Freed a route at a time in a thread (worker._free_piecewise), but freed: no reference to
    it is left behind, and a certificate reload, which applies the same config, frees nothing."""
    import weakref

    port = free_port()
    _, header, data = validated("old", port)
    _, new_header, new = validated("new", port)

    async def main():
        from engine._fast.limiter import SharedBuckets

        loop = asyncio.get_running_loop()
        config, version = worker.served_config(data, header.sha256)
        server = worker.WorkerServer(loop, config, SharedBuckets(64), "off", version)
        await server.start()
        try:
            old = weakref.ref(config)
            first_route = weakref.ref(config.routes[0])
            del config
            await server.apply(server.config, version)        # the same config: kept
            assert old() is server.config
            await server.apply(*worker.served_config(new, new_header.sha256))
            for _ in range(200):
                if old() is None and first_route() is None:
                    break
                await asyncio.sleep(0.01)
            assert old() is None and first_route() is None
        finally:
            await server.stop(drain=1.0)

    uvloop.run(main())

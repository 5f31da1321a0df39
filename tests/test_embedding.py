"""The embedding API (engine/__init__.py): a Proxy in the caller's own loop, hot apply, drain,
Python filters; and the example application in config/ run as a user would."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import httpx
import pytest
import uvloop

import engine
from engine.policy import ConfigError
from support import ROOT, free_port, wait_port


def cfg(port: int, body: str, filters=None, route_filters=()) -> dict:
    c = {
        "listeners": [{"name": "main", "address": f"127.0.0.1:{port}", "routes": ["r"]}],
        "routes": [{"name": "r", "match": {"path_prefix": "/"}, "filters": list(route_filters),
                    "direct_response": {"status": 200, "body": body}}],
    }
    if filters:
        c["filters"] = filters
    return c


def run(coro):
    return uvloop.run(coro)


def test_start_apply_stop_in_the_callers_loop():
    port = free_port()

    async def main():
        proxy = engine.Proxy(cfg(port, "one"))
        await proxy.start()
        async with httpx.AsyncClient() as c:
            assert (await c.get(f"http://127.0.0.1:{port}/")).text == "one"
            await proxy.apply(cfg(port, "two"))
            assert (await c.get(f"http://127.0.0.1:{port}/")).text == "two"
        refused = cfg(port, "three")
        refused["listeners"] = []
        with pytest.raises(ConfigError, match="listeners: must not be empty"):
            await proxy.apply(refused)                      # refused: nothing changes
        async with httpx.AsyncClient() as c:
            assert (await c.get(f"http://127.0.0.1:{port}/")).text == "two"
        assert proxy.requests == 3
        await proxy.stop(drain=1.0)
        assert not proxy.running

    run(main())


class Deny(engine.Filter):
    def __init__(self, word: str = "no"):
        self.word = word

    def request(self, ctx):
        if ctx.header("x-word") == self.word:
            return engine.Reply(403, "denied\n", {"x-why": "word"})
        return None


class Boom(engine.Filter):
    def request(self, ctx):
        raise RuntimeError("bug in a filter")


def test_python_filter_answers_locally_or_passes():
    port = free_port()

    async def main():
        proxy = engine.Proxy(cfg(port, "fine", [{"name": "deny", "config": {"word": "stop"}}],
                                 ["deny"]), filters={"deny": Deny})
        await proxy.start()
        async with httpx.AsyncClient() as c:
            r = await c.get(f"http://127.0.0.1:{port}/", headers={"x-word": "stop"})
            assert r.status_code == 403 and r.text == "denied\n" and r.headers["x-why"] == "word"
            r = await c.get(f"http://127.0.0.1:{port}/", headers={"x-word": "go"})
            assert r.status_code == 200 and r.text == "fine"
        await proxy.stop(drain=1.0)

    run(main())


async def exchange(reader, writer) -> tuple[bytes, bytes]:
    """One request on an open connection: (head, body) of its response."""
    writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return head, await reader.readexactly(length)


def test_a_filter_that_raises_gives_500_and_the_connection_lives_on():
    port = free_port()

    async def main():
        proxy = engine.Proxy(cfg(port, "x", [{"name": "boom"}], ["boom"]), filters={"boom": Boom()})
        await proxy.start()
        # one raw connection: a client library would reconnect behind our back if it closed
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answers = [await exchange(reader, writer) for _ in range(3)]
        writer.close()
        await proxy.stop(drain=1.0)
        return answers

    for head, body in run(main()):
        assert head.startswith(b"HTTP/1.1 500 ") and body == b"filter error\n"
        assert b"connection: close" not in head.lower()


def test_a_filter_named_but_not_provided_is_refused():
    with pytest.raises(ValueError, match="no 'python' class"):
        async def main():
            proxy = engine.Proxy(cfg(free_port(), "x", [{"name": "ghost"}], ["ghost"]))
            await proxy.start()
        run(main())


class NotAFilter:
    called = 0

    def __init__(self, **kw):
        NotAFilter.called += 1


def test_apply_naming_a_module_off_the_allow_list_is_refused_before_import(tmp_path, monkeypatch):
    """Security issue, item 2, for embedders: the allow list is the first config's modules plus
    filter_modules=; `subprocess:Popen` (or any module) in a later config is never imported."""

    marker = tmp_path / "imported"
    (tmp_path / "embed_sideeffect.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\nimport engine\nclass F(engine.Filter): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    port = free_port()

    async def main():
        proxy = engine.Proxy(cfg(port, "one"), filter_modules=["tests_allowed_only"])
        await proxy.start()
        for python in ("subprocess:Popen", "embed_sideeffect:F"):
            with pytest.raises(ConfigError, match=r"filters\[0\]\.python: module '\w+' is not in "
                               r"the filter module allow list \(modules named in the config the "
                               r"Proxy started with, or filter_modules=\)"):
                await proxy.apply(cfg(port, "two", [{"name": "x", "python": python,
                                                     "config": {"args": ["true"]}}], ["x"]))
        async with httpx.AsyncClient() as c:
            assert (await c.get(f"http://127.0.0.1:{port}/")).text == "one"
        await proxy.stop(drain=1.0)

    run(main())
    assert not marker.exists()


def test_an_allowed_name_that_is_not_a_filter_class_is_never_called(monkeypatch):
    """`module:Class` from an allowed module, or a class the embedder provides, must be an
    engine.Filter subclass before it is called."""
    port = free_port()
    mod = "test_embedding" if "test_embedding" in sys.modules else __name__

    async def main():
        with pytest.raises(ValueError, match=r"filters\[0\]\.python: '.*:NotAFilter' is not a "
                           r"subclass of engine.Filter"):
            proxy = engine.Proxy(cfg(port, "x", [{"name": "n", "python": f"{mod}:NotAFilter"}],
                                     ["n"]))
            await proxy.start()
        with pytest.raises(ValueError, match="NotAFilter is not an engine.Filter subclass"):
            proxy = engine.Proxy(cfg(port, "x", [{"name": "n"}], ["n"]),
                                 filters={"n": NotAFilter})
            await proxy.start()

    run(main())
    assert NotAFilter.called == 0


def test_the_embedding_example_runs():
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))    # as if sluice were installed
    proc = subprocess.Popen([sys.executable, str(ROOT / "config" / "embed_example.py"), str(port)],
                            cwd=ROOT, env=env)
    try:
        wait_port(port, proc=proc)
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/healthz").text == "ok\n"
        r = httpx.get(url + "/api/hello")
        assert r.status_code == 401 and "www-authenticate" in r.headers
        r = httpx.get(url + "/api/hello", headers={"x-api-key": "s3cret"})
        assert r.status_code == 200 and r.text == "hello, alice\n"
        assert r.headers["x-served-by"] == "sluice-embedded"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


class JsonDeny(engine.Filter):
    def request(self, ctx):
        return engine.Reply(403, '{"error": "denied"}', {"Content-Type": "application/json"})


class Broken(engine.Filter):
    def request(self, ctx):
        raise RuntimeError("boom")


def test_a_reply_has_its_reason_phrase_and_one_content_type():
    port = free_port()

    async def main():
        proxy = engine.Proxy(cfg(port, "x", filters=[{"name": "deny"}], route_filters=["deny"]),
                             filters={"deny": JsonDeny})
        await proxy.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        raw = await reader.read()
        writer.close()
        await proxy.stop(drain=1.0)
        return raw

    raw = run(main())
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert head.lower().count(b"content-type:") == 1 and b"application/json" in head
    assert body == b'{"error": "denied"}'


def test_a_failing_filter_is_a_500_logged_once_and_the_connection_lives_on(caplog):
    port = free_port()

    async def main():
        proxy = engine.Proxy(cfg(port, "x", filters=[{"name": "broken"}], route_filters=["broken"]),
                             filters={"broken": Broken})
        await proxy.start()
        async with httpx.AsyncClient() as c:                 # one keep-alive connection
            statuses = [(await c.get(f"http://127.0.0.1:{port}/")).status_code for _ in range(5)]
            conns = proxy._server.worker.active
        await proxy.stop(drain=1.0)
        return statuses, conns

    with caplog.at_level("ERROR"):
        statuses, conns = run(main())
    assert statuses == [500] * 5 and conns == 1
    lines = [r for r in caplog.records if "Broken.request failed" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]


def test_an_embedded_proxy_serves_its_config_through_the_workers_snapshot_path(monkeypatch):
    """One config pipeline: the embedded worker gets snapshot bytes and their digest, as a
    forked one does, and builds its config from them without validating it again."""
    from engine.policy import load_config_text
    from engine.runtime import worker

    port = free_port()
    digests = []
    real = worker.served_config

    def recorded(snapshot, digest, label="<snapshot>"):
        digests.append(digest)
        return real(snapshot, digest, label)

    monkeypatch.setattr(worker, "served_config", recorded)
    two = load_config_text(json.dumps(cfg(port, "two")))

    async def main():
        proxy = engine.Proxy(cfg(port, "one"))
        await proxy.start()
        try:
            served = proxy._server.config
            assert served == proxy.config and served is not proxy.config
            await proxy.apply(two)
            assert proxy._server.config == two and proxy._server.config is not two
            async with httpx.AsyncClient() as c:
                assert (await c.get(f"http://127.0.0.1:{port}/")).text == "two"
        finally:
            await proxy.stop(drain=1.0)

    run(main())
    assert len(digests) == 2 and all(len(d) == 64 for d in digests)

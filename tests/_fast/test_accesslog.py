"""engine/_fast/accesslog.pyx: the line formats and how lines are written (buffered, whole lines,
at most PIPE_BUF per write on a pipe)."""

from __future__ import annotations

import asyncio
import json
import os
import re

import pytest
import uvloop
from hypothesis import given, settings
from hypothesis import strategies as st

from engine._fast.accesslog import AccessLog

FULL = {"client_ip": b"127.0.0.1", "client_port": 5555, "method": b"GET", "path": b"/x?y=1",
        "host": b"example.com", "user_agent": b"curl/8.0", "referer": b"http://r/",
        "request_id": b"abc", "status": 200, "bytes_in": 3, "bytes_out": 120,
        "duration": 0.0123456, "upstream": b"127.0.0.1:9001", "upstream_connect": 0.0,
        "upstream_response": 0.01, "route": b"all", "listener": b"main"}


def run(coro):
    return uvloop.run(coro)


def lines_of(tmp_path, fmt, records):
    path = str(tmp_path / f"{fmt}.log")

    async def main():
        log = AccessLog(asyncio.get_running_loop(), path, fmt)
        for r in records:
            log.record_py(r)
        log.close()

    run(main())
    return open(path, "rb").read().splitlines()


def test_json_line_has_every_field(tmp_path):
    [line] = lines_of(tmp_path, "json", [FULL])
    rec = json.loads(line)
    assert rec["client"] == "127.0.0.1" and rec["client_port"] == 5555
    assert rec["method"] == "GET" and rec["path"] == "/x?y=1" and rec["host"] == "example.com"
    assert rec["protocol"] == "HTTP/1.1" and rec["status"] == 200
    assert rec["bytes_in"] == 3 and rec["bytes_out"] == 120 and rec["duration_ms"] == 12.346
    assert rec["upstream"] == "127.0.0.1:9001" and rec["upstream_connect_ms"] == 0.0
    assert rec["upstream_response_ms"] == 10.0 and rec["user_agent"] == "curl/8.0"
    assert rec["request_id"] == "abc" and rec["route"] == "all" and rec["listener"] == "main"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rec["time"])


def test_absent_values_are_null(tmp_path):
    [line] = lines_of(tmp_path, "json", [{"method": b"-", "path": b"-", "status": 400}])
    rec = json.loads(line)
    assert rec["upstream"] is None and rec["route"] is None and rec["request_id"] is None
    assert rec["upstream_connect_ms"] is None and rec["user_agent"] is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=200))
def test_any_request_bytes_give_valid_json_read_as_latin1(tmp_path_factory, path, agent):
    tmp = tmp_path_factory.mktemp("j")
    [line] = lines_of(tmp, "json", [{**FULL, "path": path, "user_agent": agent}])
    rec = json.loads(line)
    assert rec["path"] == path.decode("latin-1") and rec["user_agent"] == agent.decode("latin-1")


def test_combined_is_nginx_combined(tmp_path):
    [line] = lines_of(tmp_path, "combined", [FULL])
    assert re.fullmatch(
        rb'127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
        rb'"GET /x\?y=1 HTTP/1\.1" 200 120 "http://r/" "curl/8\.0"', line), line


@pytest.mark.parametrize("minor, protocol", [(0, "HTTP/1.0"), (1, "HTTP/1.1"), (2, "HTTP/2.0")])
def test_the_protocol_is_http_1_0_1_1_or_2_0_in_both_formats(tmp_path, minor, protocol):
    [line] = lines_of(tmp_path, "json", [{**FULL, "http_minor": minor}])
    assert json.loads(line)["protocol"] == protocol
    [line] = lines_of(tmp_path, "combined", [{**FULL, "http_minor": minor}])
    assert b'"GET /x?y=1 ' + protocol.encode() + b'" 200 ' in line       # nginx's $request


def test_grpc_status_is_logged_only_for_a_grpc_exchange(tmp_path):
    plain, ok, failed = lines_of(tmp_path, "json", [
        {**FULL, "http_minor": 2},
        {**FULL, "http_minor": 2, "grpc_status": 0},
        {**FULL, "http_minor": 2, "grpc_status": 14}])           # UNAVAILABLE, still HTTP 200
    assert "grpc_status" not in json.loads(plain)
    assert json.loads(ok)["grpc_status"] == 0
    rec = json.loads(failed)
    assert rec["grpc_status"] == 14 and rec["status"] == 200
    assert list(rec).index("grpc_status") == list(rec).index("status") + 1
    [line] = lines_of(tmp_path, "combined", [{**FULL, "grpc_status": 14}])
    # nginx's combined has no such field: the line is the same as without it
    assert line.split(b"] ", 1)[1] == b'"GET /x?y=1 HTTP/1.1" 200 120 "http://r/" "curl/8.0"'


def test_combined_escapes_quotes_and_control_bytes_as_nginx(tmp_path):
    [line] = lines_of(tmp_path, "combined", [{**FULL, "user_agent": b'a"b\\c\n\xff',
                                              "referer": None}])
    assert line.endswith(b'"-" "a\\x22b\\x5Cc\\x0A\\xFF"')


def test_lines_wait_for_the_timer_then_are_written(tmp_path):
    path = str(tmp_path / "t.log")

    async def main():
        log = AccessLog(asyncio.get_running_loop(), path)
        log.record_py(FULL)
        assert os.path.getsize(path) == 0          # buffered, not one write per request
        await asyncio.sleep(0.3)
        assert os.path.getsize(path) > 0           # the 100 ms timer wrote it
        log.close()

    run(main())


def test_two_workers_on_one_pipe_never_interleave_lines(tmp_path):
    """Two processes (as two workers sharing stdout) write big batches into one FIFO: every
    line read back is whole, because each write() is at most PIPE_BUF bytes of whole lines."""
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    got = []
    reader_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)

    def read_all():
        os.set_blocking(reader_fd, True)
        while True:
            chunk = os.read(reader_fd, 65536)
            if not chunk:
                return
            got.append(chunk)

    import threading
    t = threading.Thread(target=read_all)
    pids = []
    for w in range(2):
        pid = os.fork()
        if pid == 0:
            try:
                async def main():
                    log = AccessLog(asyncio.get_running_loop(), fifo)
                    for i in range(3000):
                        log.record_py({**FULL, "path": b"/w%d/%d/" % (w, i) + b"x" * 200})
                    log.close()
                uvloop.run(main())
            finally:
                os._exit(0)
        pids.append(pid)
    t.start()
    for pid in pids:
        os.waitpid(pid, 0)
    t.join(30)
    os.close(reader_fd)
    lines = b"".join(got).splitlines()
    assert len(lines) == 6000
    assert all(json.loads(x)["status"] == 200 for x in lines)


def test_reopen_writes_to_the_new_file(tmp_path):
    path = tmp_path / "a.log"

    async def main():
        log = AccessLog(asyncio.get_running_loop(), str(path))
        log.record_py(FULL)
        os.rename(path, tmp_path / "a.log.1")       # logrotate moves it away
        log.reopen()                                # flushes into the old file first
        log.record_py({**FULL, "path": b"/after"})
        log.close()

    run(main())
    assert b"/x?y=1" in (tmp_path / "a.log.1").read_bytes()
    assert b"/after" in path.read_bytes() and b"/x?y=1" not in path.read_bytes()


def test_unknown_format_is_refused():
    with pytest.raises(ValueError):
        AccessLog(None, "stdout", "xml")

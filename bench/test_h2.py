"""The HTTP/2 harness (issue 10): h2load's command line and output, the peers' HTTP/2 configs,
the answer check over HTTP/2 catching what it exists to catch, the gRPC upstream, the memory
measurement's plumbing, and sluice reported as n/a (never a failure) while it cannot serve
HTTP/2. Nothing here depends on how fast a peer is: load runs are a second long and only their
parsing is asserted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from bench import load
from bench.h2 import check_h2_answers, measure_h2mem
from bench.peers import (
    GRPC_REPLY,
    GRPC_REQUEST,
    ROOT,
    Baseline,
    GrpcUpstream,
    Haproxy,
    HoldUpstream,
    NginxProxy,
    Nghttpx,
    Sluice,
    Unsupported,
    Variant,
    grpc_message,
    unsupported_reason,
)
from bench.run import BY_NAME, Bench, load_kwargs, parse_args, print_report, warm_up

H2LOAD_OUT = """starting benchmark...
spawning thread #0: 10 total client(s). Timing-based test with 0s of warm-up time and 2s of main \
duration for measurements.
Application protocol: h2c
Main benchmark duration is over for thread #0. Stopping all clients.

finished in 2.01s, 64960.00 req/s, 3.16MB/s
requests: 129920 total, 130020 started, 129920 done, 129917 succeeded, 3 failed, 2 errored, \
1 timeout
status codes: 129917 2xx, 0 3xx, 3 4xx, 0 5xx
traffic: 6.32MB (6627030) total, 1.31MB (1373790) headers (space savings 91.96%), 1.49MB \
(1559040) data
"""

needs = {tool: shutil.which(tool) for tool in ("nghttpx", "nghttpd", "nginx", "haproxy", "h2load")}


def need(*tools):
    missing = [t for t in tools if not needs[t]]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)}")


# -- h2load: command line and output -----------------------------------------------------------


def test_h2load_argv_h1_is_one_request_at_a_time():
    argv = load.h2load_argv("http://x/", 1, 50, "/tmp/l")
    assert argv[:2] == ["h2load", "--h1"] and "-m1" in argv and "-c50" in argv


def test_h2load_argv_h2_has_streams_and_no_h1():
    argv = load.h2load_argv("http://x/", 1, 10, "/tmp/l", h2=True, streams=10)
    assert "--h1" not in argv and "-m10" in argv and "-c10" in argv


def test_grpc_load_sends_the_message_with_grpc_headers(tmp_path):
    sc = BY_NAME["grpc"]
    kw = load_kwargs(sc, "h2load", tmp_path / "grpc.bin")
    argv = load.h2load_argv("http://x" + sc.path, 1, sc.conns, "/tmp/l", **kw)
    assert argv[argv.index("-d") + 1] == str(tmp_path / "grpc.bin")
    headers = [argv[i + 1] for i, a in enumerate(argv) if a == "-H"]
    assert headers == ["content-type: application/grpc", "te: trailers"]   # no octet-stream
    assert "-m10" in argv and "--h1" not in argv


def test_h2_scenarios_use_h2load_only_and_their_own_shape():
    for name in ("h2c", "h2tls", "grpc"):
        sc = BY_NAME[name]
        assert sc.tools == ("h2load",) and sc.variant.h2 and sc.concurrency == 100
    assert BY_NAME["h2c"].quick and not BY_NAME["h2tls"].quick and not BY_NAME["grpc"].quick


def test_h2load_output_is_parsed():
    res = load.parse_h2load(H2LOAD_OUT, [3000, 1000, 2000, 4000], want_protocol="h2c")
    assert res["requests"] == 129917 and res["rps"] == 64960.0
    assert res["non2xx"] == 3 and res["errors"] == 3 and res["protocol"] == "h2c"
    assert res["p50_ms"] == 3.0 and res["p99_ms"] == 4.0 and "failed" not in res


def test_h2load_run_that_fell_back_to_http1_is_failed():
    text = H2LOAD_OUT.replace("Application protocol: h2c", "Application protocol: http/1.1")
    assert "not h2" in load.parse_h2load(text, [], want_protocol="h2")["failed"]


def test_h2load_run_without_success_is_failed():
    res = load.parse_h2load("No protocol negotiated. Fallback behaviour may be activated", [], 1)
    assert res["requests"] == 0 and res["failed"].startswith("h2load exited with 1: No protocol")
    res = load.parse_h2load("Application protocol: h2c\n", [], -11)     # killed mid-run
    assert res["failed"].startswith("h2load exited with -11")


def test_h2load_log_lines_give_durations():
    assert load.h2load_durations(["1796013938980345\t200\t14443\n", "junk\n"]) == [14443]


def test_grpc_messages_are_length_prefixed():
    assert GRPC_REQUEST[0] == 0 and int.from_bytes(GRPC_REQUEST[1:5], "big") == len(GRPC_REQUEST) - 5
    assert grpc_message(b"ab") == b"\x00\x00\x00\x00\x04\x0a\x02ab"


# -- sluice's config, and n/a until it serves HTTP/2 -------------------------------------------


class _Up:
    address = "127.0.0.1:1"


def test_sluice_h2_config_lists_http2_first_and_grpc_uses_an_http2_cluster():
    s = Sluice(1)
    s.port = 1234
    conf = s.config(Variant(h2=True), _Up())
    assert conf["listeners"][0]["protocols"] == ["http2", "http1"]
    assert "protocol" not in conf["clusters"][0]
    conf = s.config(Variant(h2=True, grpc=True), _Up())
    assert conf["clusters"][0]["protocol"] == "http2"
    assert "protocols" not in s.config(Variant(), _Up())["listeners"][0]


@pytest.mark.parametrize("variant", [Variant(h2=True), Variant(h2=True, grpc=True)])
def test_sluice_h2_config_validates_or_is_refused_as_not_supported(tmp_path, variant):
    """The n/a path rests on sluice's own wording: when this build refuses the config, the
    harness must recognise the refusal as "not supported", or sluice's rows would fail CI."""
    s = Sluice(1)
    s.port = 1234
    path = tmp_path / "c.json"
    path.write_text(json.dumps(s.config(variant, _Up())))
    out = subprocess.run([sys.executable, "-m", "engine", "validate", str(path)],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 or unsupported_reason(out.stdout + out.stderr), out.stderr


def test_sluice_without_h2client_is_na_for_grpc(tmp_path):
    """A build whose config accepts `protocol: http2` but has no HTTP/2 upstream module would
    reset every gRPC call: n/a, not a failure, and without starting it."""
    s = Sluice(1)
    s.root = tmp_path                           # a checkout with no compiled modules at all
    with pytest.raises(Unsupported, match="h2client"):
        s.start(Variant(h2=True, grpc=True), _Up(), tmp_path)
    assert s.lacks(Variant(h2=True)) is None
    (tmp_path / "engine" / "_fast").mkdir(parents=True)
    (tmp_path / "engine" / "_fast" / "h2client.cpython-311-x86_64-linux-gnu.so").touch()
    assert s.lacks(Variant(h2=True, grpc=True)) is None


def test_sluice_multi_worker_sits_out_the_h2_scenarios():
    assert not Sluice(2).ok_variant(Variant(h2=True)) and Sluice(2).ok_variant(Variant())
    assert Sluice(1).ok_variant(Variant(h2=True))


def test_unsupported_reason_drops_the_config_path():
    log = ("/tmp/x/sluice-1w.json: listeners[0].protocols[0]: HTTP/2 is not supported yet: "
           "this version serves HTTP/1.1 only\n")
    assert unsupported_reason(log).startswith("listeners[0].protocols[0]: HTTP/2")
    assert unsupported_reason("some other error\n") is None


def test_unsupported_peers_are_not_counted_against_strict(tmp_path):
    bench = Bench(parse_args(["--quick"]))
    try:
        bench.results["scenarios"]["h2c"] = {"peers": {
            "sluice-1w": {"unsupported": "HTTP/2 is not supported yet"},
            "nginx": {"check": {"measured": False, "problems": ["status 502"]}}}}
        assert bench.unmeasured() == ["h2c/nginx"]
    finally:
        shutil.rmtree(bench.d, ignore_errors=True)


def test_report_prints_na_rows_and_the_memory_table():
    res = {"commit": "abc", "date": "2026-11-30", "warnings": [],
           "machine": {"cpus": 2, "cpu": "x", "kernel": "6", "loadavg_at_start": 0.0},
           "args": {"rounds": 1, "duration_s": 1.0},
           "versions": {"nginx": "1", "haproxy": "2", "wrk": "w", "h2load": "h", "nghttpx": "n",
                        "python": "3", "uvloop": "u"},
           "scenarios": {
               "h2c": {"title": "t", "path": "/", "conns": 10, "streams": 10, "h2": True,
                       "peers": {"sluice-1w": {"unsupported": "HTTP/2 is not supported yet"}}},
               "h2mem": {"title": "m", "conns": 10, "streams": 5, "h2": True, "peers": {
                   "nghttpx": {"conns": 10, "streams": 5, "rss_before_kib": 1,
                               "rss_idle_kib": 2, "rss_streams_kib": 3, "bytes_per_conn": 102,
                               "bytes_per_stream": 204}}}}}
    import io
    f = io.StringIO()
    print_report(res, f)
    text = f.getvalue()
    assert "n/a (not supported): HTTP/2 is not supported yet" in text
    assert "x nghttpx" in text and "204" in text
    from bench.report import markdown_h2
    md = markdown_h2(res)
    assert "| h2c: t | n/a (not supported yet) |" in md and "nghttpx 102 B per connection" in md


# -- the peers over HTTP/2, and the check catching what it must --------------------------------


@need("nghttpx", "nginx", "haproxy", "h2load")
@pytest.mark.parametrize("peer_cls", [Nghttpx, NginxProxy, Haproxy])
@pytest.mark.parametrize("tls", [False, True])
def test_h2_peers_answer_right_over_h2(upstream, tmp_path, peer_cls, tls):
    sc = BY_NAME["h2tls" if tls else "h2c"]
    peer = peer_cls()
    peer.start(sc.variant, upstream, tmp_path)
    try:
        assert peer.url("/").startswith("https://" if tls else "http://")
        assert check_h2_answers(peer, sc) is None
        check = warm_up(peer, sc, upstream, 1.0, tmp_path / "unused")
        assert check["requests"] > 0 and not check["problems"], check
    finally:
        peer.stop()


@need("nginx")
def test_a_peer_without_h2_fails_the_h2_check(upstream, tmp_path):
    peer = Baseline()                          # HTTP/1.1 only: the h2c preface is garbage to it
    peer.start(Variant(), upstream, tmp_path)
    try:
        assert check_h2_answers(peer, BY_NAME["h2c"]) is not None
    finally:
        peer.stop()


@need("haproxy", "nginx")
def test_h2tls_check_catches_alpn_without_h2(upstream, tmp_path):
    peer = Haproxy()                            # TLS with ALPN http/1.1 only
    peer.start(Variant(tls=True), upstream, tmp_path)
    try:
        assert "ALPN" in check_h2_answers(peer, BY_NAME["h2tls"])
    finally:
        peer.stop()


@need("nghttpx", "nginx")
def test_h2_check_catches_a_wrong_body(upstream, tmp_path):
    peer = Nghttpx()
    peer.start(Variant(h2=True), upstream, tmp_path)
    try:
        sc = BY_NAME["h2c"]
        wrong = type(sc)(**{**sc.__dict__, "expect": sc.expect[:-1] + b"?"})
        assert "wrong body" in check_h2_answers(peer, wrong)
    finally:
        peer.stop()


@need("nghttpd", "nghttpx", "nginx", "haproxy", "h2load")
@pytest.mark.parametrize("peer_cls", [Nghttpx, NginxProxy, Haproxy])
def test_grpc_call_goes_through_each_peer_with_its_trailer(tmp_path, peer_cls):
    up = GrpcUpstream(tmp_path / "grpc")
    peer = peer_cls()
    try:
        sc = BY_NAME["grpc"]
        peer.start(sc.variant, up, tmp_path)
        assert sc.expect == GRPC_REPLY
        assert check_h2_answers(peer, sc) is None       # body and grpc-status: 0
        body = tmp_path / "grpc.bin"
        body.write_bytes(GRPC_REQUEST)
        check = warm_up(peer, sc, up, 1.0, body)
        assert check["requests"] > 0 and not check["problems"], check
        assert check["upstream_conns_opened"] is None     # nghttpd has no counters
    finally:
        peer.stop()
        up.stop()


@need("nghttpd")
@pytest.mark.parametrize("status", ["0", "13", None])
def test_grpc_check_wants_grpc_status_0(tmp_path, status):
    up = GrpcUpstream(tmp_path / "grpc", status=status)
    try:
        up.scheme, up.ca = "http", None           # the origin itself, checked as a peer
        problem = check_h2_answers(up, BY_NAME["grpc"])
        if status == "0":
            assert problem is None
        else:
            assert "grpc-status" in problem
    finally:
        up.stop()


@need("nghttpx")
def test_h2mem_counts_connections_and_streams(tmp_path):
    hold = HoldUpstream(tmp_path / "hold")
    peer = Nghttpx()
    try:
        peer.start(Variant(h2=True), hold, tmp_path)
        assert check_h2_answers(peer, BY_NAME["h2mem"]) is None
        res = measure_h2mem(peer, 20, 30, hold, settle=0.1)
        assert (res["conns"], res["streams"]) == (20, 30) and "problems" not in res, res
        assert hold.held() == 0                       # released when the client went away
    finally:
        peer.stop()
        hold.stop()


@need("nginx")
def test_sluice_h2_is_na_or_answers_over_h2(upstream, tmp_path):
    """Before sluice serves HTTP/2 it is n/a (Unsupported, with sluice's reason); after, it must
    answer over h2c like every other peer."""
    peer = Sluice(1)
    try:
        peer.start(Variant(h2=True), upstream, tmp_path)
    except Unsupported as exc:
        peer.stop()
        assert "not supported" in str(exc)
        return
    try:
        assert check_h2_answers(peer, BY_NAME["h2c"]) is None
    finally:
        peer.stop()

"""engine/_fast/stats.pyx: counters, histograms and gauges in shared memory.

The multi-process tests fork after creating the table, as the supervisor does, and check exact
counts: each worker writes only its own region, so nothing may be lost."""
import math
import multiprocessing
import os

import pytest

from engine._fast import stats as S

_fork = multiprocessing.get_context("fork")


def _run(target, *args) -> list:
    """Run target(*args, out) in a forked process; what it put on `out`."""
    out = _fork.Queue()
    p = _fork.Process(target=target, args=(*args, out))
    p.start()
    results = [out.get(timeout=30)]
    p.join(30)
    assert p.exitcode == 0
    return results[0]


# ---- name registry -----------------------------------------------------------------------------

def test_reserved_slots_come_first_and_names_are_stable():
    s = S.Stats()
    assert s.route_names() == [S.OTHER, S.UNROUTED]
    assert s.cluster_names() == [S.OTHER]
    assert s.endpoint_names() == [S.OTHER]
    assert (S.SLOT_OTHER, S.SLOT_UNROUTED) == (0, 1)
    api, web = s.route_slot("api"), s.route_slot("web")
    assert (api, web) == (2, 3)
    assert s.route_slot("api") == api and s.route_slot(b"web") == web
    assert s.cluster_slot("api") == 1            # one table per kind
    assert s.route_names() == [S.OTHER, S.UNROUTED, "api", "web"]


def test_a_name_must_fit_the_name_field():
    s = S.Stats()
    assert s.route_slot("r" * 128) == 2
    with pytest.raises(ValueError):
        s.route_slot("r" * 129)
    with pytest.raises(ValueError):
        s.cluster_slot("")


def test_a_full_table_hands_out_the_shared_overflow_slot():
    s = S.Stats(max_routes=4, max_clusters=2)
    assert [s.route_slot(n) for n in ("a", "b", "c", "d")] == [2, 3, 0, 0]
    assert [s.cluster_slot(n) for n in ("x", "y")] == [1, 0]
    assert s.route_names() == [S.OTHER, S.UNROUTED, "a", "b"]
    s.attach_worker(0)
    s.record_py(0, s.route_slot("c"), s.cluster_slot("y"), 200, 0.01)
    s.record_py(0, 99, 99, 500, 0.01)           # out of range: also the overflow slot
    agg = s.aggregate()
    assert agg["routes"][S.OTHER]["requests"]["2xx"] == 1
    assert agg["routes"][S.OTHER]["requests"]["5xx"] == 1
    assert agg["clusters"][S.OTHER]["requests"] == {"other": 0, "1xx": 0, "2xx": 1, "3xx": 0,
                                                    "4xx": 0, "5xx": 1}


def _register(stats, names, out):
    out.put([stats.route_slot(n) for n in names])


def test_slots_registered_in_a_forked_child_are_seen_by_the_parent_and_vice_versa():
    s = S.Stats()
    mine = s.route_slot("parent-first")
    child = _run(_register, s, ["child-1", "parent-first", "child-2"])
    assert child == [3, mine, 4]
    assert s.route_slot("child-2") == 4 and s.route_slot("child-1") == 3
    assert s.route_slot("parent-later") == 5
    assert _run(_register, s, ["parent-later"]) == [5]


def _register_many(stats, names, barrier, out):
    barrier.wait()
    out.put({n: stats.route_slot(n) for n in names})


def test_processes_registering_at_once_agree_on_every_slot():
    s = S.Stats(max_routes=1024)
    names = [f"route-{i}" for i in range(300)]
    barrier, out = _fork.Barrier(3), _fork.Queue()
    orders = [names, names[::-1], names[150:] + names[:150]]
    procs = [_fork.Process(target=_register_many, args=(s, o, barrier, out)) for o in orders]
    for p in procs:
        p.start()
    seen = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert seen[0] == seen[1] == seen[2]
    assert sorted(seen[0].values()) == list(range(2, 302))       # no name twice, no gap
    assert s.route_names()[2:] == sorted(names, key=seen[0].get)


def test_a_name_lock_left_by_a_dead_process_is_stolen():
    s = S.Stats()
    pid = os.fork()
    if pid == 0:
        s._hold_name_lock()
        os._exit(0)
    os.waitpid(pid, 0)                  # reaped: kill(pid, 0) now says ESRCH
    assert s.route_slot("after") == 2
    assert s.lock_steals == 1


# ---- recording ---------------------------------------------------------------------------------

def _hammer(stats, worker, route, cluster, n, out):
    stats.attach_worker(worker)
    for i in range(n):
        stats.record_py(worker, route, cluster, 200 if i % 4 else 503, 0.003, 10, 100)
    stats.set_gauge_py(worker, S.GAUGE_CONNECTIONS, 3)
    stats.set_gauge_py(worker, S.GAUGE_REQUESTS, 1)
    stats.set_version(worker, f"v-{worker}")
    out.put(os.getpid())


def test_two_forked_workers_record_and_the_parent_sums_them_exactly():
    s = S.Stats(max_workers=4)
    route, cluster = s.route_slot("api"), s.cluster_slot("backend")
    out = _fork.Queue()
    procs = [_fork.Process(target=_hammer, args=(s, w, route, cluster, 20_000, out))
             for w in (0, 3)]
    for p in procs:
        p.start()
    pids = sorted(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    agg = s.aggregate()
    api = agg["routes"]["api"]
    assert api["count"] == 40_000
    assert api["requests"]["2xx"] == 30_000 and api["requests"]["5xx"] == 10_000
    assert api["bytes_in"] == 400_000 and api["bytes_out"] == 4_000_000
    assert api["buckets"][S.BOUNDS.index(0.005)] == 40_000
    assert api["sum"] == pytest.approx(40_000 * 0.003)
    assert agg["clusters"]["backend"]["requests"]["5xx"] == 10_000
    # the processes exited without release: they still count as live until the supervisor
    # releases their slots; then their gauges go, their counters stay
    assert agg["workers"] == 2
    assert agg["gauges"] == {"active_connections": 6, "active_requests": 2}
    assert s.worker_versions() == {0: "v-0", 3: "v-3"}
    assert sorted(w["pid"] for w in s.workers()) == pids
    s.release_worker(0)
    s.release_worker(3)
    agg = s.aggregate()
    assert agg["workers"] == 0
    assert agg["gauges"] == {"active_connections": 0, "active_requests": 0}
    assert agg["routes"]["api"]["count"] == 40_000
    assert s.worker_versions() == {}


def test_a_restarted_worker_goes_on_counting_in_its_slot():
    s = S.Stats(max_workers=2)
    r = s.route_slot("r")
    s.attach_worker(1, pid=111)
    s.record_py(1, r, -1, 200, 0.0)
    s.add_gauge_py(1, S.GAUGE_REQUESTS, 5)
    s.release_worker(1)
    s.attach_worker(1, pid=222)
    s.record_py(1, r, -1, 200, 0.0)
    agg = s.aggregate()
    assert agg["routes"]["r"]["count"] == 2
    assert agg["gauges"]["active_requests"] == 0
    assert [w["pid"] for w in s.workers()] == [222]


@pytest.mark.parametrize("seconds, bucket", [
    (0.0, 0), (0.0005, 0), (0.00050001, 1), (0.001, 1), (0.0025, 2), (0.099, 7), (0.1, 7),
    (1.0, 10), (1.5, 11), (10.0, 13), (10.0001, 14), (3600.0, 14),
])
def test_a_value_on_a_bucket_bound_falls_in_that_bucket(seconds, bucket):
    s = S.Stats(max_workers=1)
    s.attach_worker(0)
    s.record_py(0, s.route_slot("r"), -1, 200, seconds)
    r = s.aggregate()["routes"]["r"]
    assert r["buckets"] == [1 if i == bucket else 0 for i in range(15)]
    assert r["sum"] == pytest.approx(seconds) and r["count"] == 1


def test_bucket_bounds_are_the_documented_ones():
    assert S.BOUNDS == (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                        2.5, 5.0, 10.0, math.inf)


def test_a_negative_or_nan_duration_counts_as_zero_and_never_poisons_the_sum():
    s = S.Stats(max_workers=1)
    s.attach_worker(0)
    r = s.route_slot("r")
    for v in (-1.0, math.nan, 0.25):
        s.record_py(0, r, -1, 200, v)
    agg = s.aggregate()["routes"]["r"]
    assert agg["buckets"][0] == 2 and agg["count"] == 3 and agg["sum"] == 0.25


@pytest.mark.parametrize("status, cls", [
    (100, "1xx"), (101, "1xx"), (200, "2xx"), (304, "3xx"), (404, "4xx"), (499, "4xx"),
    (599, "5xx"), (0, "other"), (99, "other"), (600, "other"), (999, "other"), (-200, "other"),
])
def test_status_classes(status, cls):
    s = S.Stats(max_workers=1)
    s.attach_worker(0)
    s.record_py(0, s.route_slot("r"), s.cluster_slot("c"), status, 0.0)
    agg = s.aggregate()
    assert {k for k, v in agg["routes"]["r"]["requests"].items() if v} == {cls}
    assert {k for k, v in agg["clusters"]["c"]["requests"].items() if v} == {cls}


def test_an_unrouted_exchange_counts_under_the_reserved_route_and_no_cluster():
    s = S.Stats(max_workers=1)
    s.attach_worker(0)
    s.record_py(0, -1, -1, 404, 0.0001, 0, 40)
    agg = s.aggregate()
    assert agg["routes"][S.UNROUTED]["requests"]["4xx"] == 1
    assert agg["routes"][S.UNROUTED]["bytes_out"] == 40
    assert all(sum(c["requests"].values()) == 0 for c in agg["clusters"].values())


def test_gauges_set_and_add_per_worker_and_sum_over_live_workers():
    s = S.Stats(max_workers=3)
    for w in range(3):
        s.attach_worker(w, pid=1000 + w)
    s.set_gauge_py(0, S.GAUGE_CONNECTIONS, 7)
    s.add_gauge_py(1, S.GAUGE_CONNECTIONS, 2)
    s.add_gauge_py(1, S.GAUGE_CONNECTIONS, -1)
    s.add_gauge_py(2, S.GAUGE_REQUESTS, 4)
    assert s.aggregate()["gauges"] == {"active_connections": 8, "active_requests": 4}
    assert s.aggregate()["workers"] == 3
    s.release_worker(0)
    assert s.aggregate()["gauges"] == {"active_connections": 1, "active_requests": 4}


def test_endpoint_in_flight_counts():
    s = S.Stats(max_workers=2)
    e = s.endpoint_slot(S.endpoint_key("api", "127.0.0.1:9001"))
    assert s.endpoint_names()[e] == "api/127.0.0.1:9001"
    s.attach_worker(0, pid=1)
    s.attach_worker(1, pid=2)
    for w in (0, 1, 1):
        s.endpoint_begin_py(w, e)
    s.endpoint_end_py(1, e)
    assert s.aggregate()["endpoints"]["api/127.0.0.1:9001"] == {
        "active": 2, "requests": 3, "connect_failures": 0, "resets": 0}
    s.release_worker(1)        # what it had in flight died with it
    assert s.aggregate()["endpoints"]["api/127.0.0.1:9001"] == {
        "active": 1, "requests": 3, "connect_failures": 0, "resets": 0}


def test_version_is_kept_to_64_bytes_and_cleared_when_the_worker_goes():
    s = S.Stats(max_workers=2)
    s.attach_worker(1, pid=5)
    s.set_version(1, "x" * 100)
    assert s.worker_versions() == {1: "x" * 64}
    s.set_version(1, b"abc123")
    assert s.worker_versions() == {1: "abc123"}
    s.beat(1, 12.5)
    assert s.workers()[0]["heartbeat"] == 12.5
    s.release_worker(1)
    assert s.worker_versions() == {}


def test_out_of_range_arguments_are_refused_from_python():
    s = S.Stats(max_workers=2)
    for call in (lambda: s.record_py(2, 0, 0, 200, 0.0), lambda: s.attach_worker(-1),
                 lambda: s.set_version(5, "v"), lambda: s.set_gauge_py(2, 0, 1)):
        with pytest.raises(IndexError):
            call()
    s.attach_worker(0)
    s.set_gauge_py(0, 99, 1)            # an unknown gauge is ignored, never written
    assert s.aggregate()["gauges"] == {"active_connections": 0, "active_requests": 0}
    for kw in ({"max_workers": 0}, {"max_routes": 1}, {"max_clusters": 0},
               {"max_endpoints": 0}, {"max_workers": 5000}):
        with pytest.raises(ValueError):
            S.Stats(**kw)


def test_a_large_table_costs_address_space_not_memory():
    # 64 workers x 4096 routes x 256 bytes is 64 MiB mapped; aggregating touches only what
    # was used
    s = S.Stats()
    s.attach_worker(0)
    s.record_py(0, s.route_slot("r"), -1, 200, 0.0)
    before = _rss_kib()
    for _ in range(3):
        s.aggregate()
    assert _rss_kib() - before < 8 * 1024


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_the_child_sees_the_parents_counts_through_the_same_mapping():
    s = S.Stats(max_workers=2)
    s.attach_worker(0)
    s.record_py(0, s.route_slot("r"), -1, 200, 0.0)
    pid = os.fork()
    if pid == 0:
        ok = s.aggregate()["routes"]["r"]["count"] == 1
        s.attach_worker(1)
        s.record_py(1, s.route_slot("r"), -1, 200, 0.0)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert s.aggregate()["routes"]["r"]["count"] == 2


def test_endpoint_failures_and_route_refusals_are_counted_per_worker_and_summed():
    s = S.Stats(max_workers=2)
    s.attach_worker(0, pid=1)
    s.attach_worker(1, pid=2)
    e = s.endpoint_slot("api/127.0.0.1:9001")
    r = s.route_slot("api")
    s.endpoint_failed_py(0, e, False)
    s.endpoint_failed_py(1, e, False)
    s.endpoint_failed_py(1, e, True)
    s.route_limited_py(0, r)
    agg = s.aggregate()
    assert agg["endpoints"]["api/127.0.0.1:9001"]["connect_failures"] == 2
    assert agg["endpoints"]["api/127.0.0.1:9001"]["resets"] == 1
    assert agg["routes"]["api"]["rate_limited"] == 1


def test_open_connections_are_counted_per_listener_over_live_workers():
    s = S.Stats(max_workers=2)
    s.attach_worker(0, pid=1)
    s.attach_worker(1, pid=2)
    main, edge = s.listener_slot("main"), s.listener_slot("edge")
    assert s.listener_slot("main") == main and main != edge
    s.listener_connections_py(0, main, 1)
    s.listener_connections_py(1, main, 1)
    s.listener_connections_py(1, edge, 1)
    s.listener_connections_py(1, edge, -1)
    assert s.aggregate()["listeners"]["main"] == {"active_connections": 2}
    assert s.aggregate()["listeners"]["edge"] == {"active_connections": 0}
    s.release_worker(1)                       # a dead worker's connections are gone
    assert s.aggregate()["listeners"]["main"] == {"active_connections": 1}


def test_an_event_counted_from_python_is_summed_over_workers_and_survives_a_restart():
    s = S.Stats(max_workers=2)
    s.attach_worker(0, pid=111)
    s.attach_worker(1, pid=112)
    s.count_event_py(0, "tls_handshake_failed")
    s.count_event_py(1, "tls_handshake_failed")
    s.release_worker(1)
    s.attach_worker(1, pid=113)
    s.count_event_py(1, "tls_handshake_failed")
    events = s.aggregate()["events"]
    assert events["tls_handshake_failed"] == 3
    assert events["timeout_idle"] == 0 and events["connection_limit"] == 0
    with pytest.raises(ValueError):
        s.count_event_py(0, "no_such_event")


# ---- HTTP/2 ------------------------------------------------------------------------------------

def test_http2_counter_names_are_the_codecs_in_its_order():
    from engine._fast import http2
    assert S.H2_COUNTER_NAMES == http2.COUNTER_NAMES
    assert S.H2_SIDES == ("downstream", "upstream")
    assert (S.H2_DOWNSTREAM, S.H2_UPSTREAM) == (0, 1)


def test_http2_counts_from_a_codec_are_added_per_side_and_summed_over_workers():
    from engine._fast import http2
    # what a real server connection counted: a client preface, one stream, then a PING flood
    conn = http2.H2Connection(client=False)
    conn.initiate(0.0)
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    conn.receive_data(preface, 0.0)
    counts = conn.counters()
    assert counts["frames_in"] == 1
    s = S.Stats(max_workers=2)
    s.attach_worker(0, pid=1)
    s.attach_worker(1, pid=2)
    s.h2_counts_py(0, S.H2_DOWNSTREAM, counts)
    s.h2_counts_py(1, S.H2_DOWNSTREAM, [1] * len(S.H2_COUNTER_NAMES))
    s.h2_counts_py(1, S.H2_UPSTREAM, {"streams_opened": 5, "flow_stalls": 2})
    h2 = s.aggregate()["http2"]
    assert h2["downstream"]["counters"]["frames_in"] == counts["frames_in"] + 1
    assert h2["downstream"]["counters"]["ids_exhausted"] == 1
    assert h2["upstream"]["counters"] == {n: {"streams_opened": 5, "flow_stalls": 2}.get(n, 0)
                                          for n in S.H2_COUNTER_NAMES}


def test_flushing_a_codecs_running_totals_counts_each_frame_once():
    from engine._fast import http2
    conn = http2.H2Connection(client=False)
    conn.initiate(0.0)
    s = S.Stats(max_workers=1)
    s.attach_worker(0)
    flushed = [0] * len(S.H2_COUNTER_NAMES)
    settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    ping = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"12345678"
    conn.receive_data(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings, 0.0)
    flushed = s.h2_flush_py(0, S.H2_DOWNSTREAM, conn.counters().values(), flushed)
    flushed = s.h2_flush_py(0, S.H2_DOWNSTREAM, conn.counters().values(), flushed)  # no change
    conn.receive_data(ping * 3, 0.0)
    flushed = s.h2_flush_py(0, S.H2_DOWNSTREAM, conn.counters().values(), flushed)
    assert flushed == list(conn.counters().values())
    assert s.aggregate()["http2"]["downstream"]["counters"] == conn.counters()
    assert conn.counters()["frames_in"] == 4


def test_a_negative_http2_delta_never_makes_a_counter_go_back():
    s = S.Stats(max_workers=1)
    s.attach_worker(0)
    s.h2_counts_py(0, S.H2_DOWNSTREAM, {"streams_opened": 3})
    s.h2_counts_py(0, S.H2_DOWNSTREAM, {"streams_opened": -2})
    assert s.aggregate()["http2"]["downstream"]["counters"]["streams_opened"] == 3


@pytest.mark.parametrize("code, name", [
    (0x0, "NO_ERROR"), (0x1, "PROTOCOL_ERROR"), (0x7, "REFUSED_STREAM"), (0x8, "CANCEL"),
    (0xb, "ENHANCE_YOUR_CALM"), (0xd, "HTTP_1_1_REQUIRED"), (0xe, "unknown"), (-1, "unknown"),
    (0x7fffffff, "unknown"),
])
def test_resets_and_goaways_are_counted_by_rfc9113_code_name(code, name):
    s = S.Stats(max_workers=1)
    s.attach_worker(0)
    s.h2_reset_py(0, S.H2_DOWNSTREAM, True, code)
    s.h2_reset_py(0, S.H2_UPSTREAM, False, code)
    s.h2_goaway_py(0, S.H2_UPSTREAM, True, code)
    h2 = s.aggregate()["http2"]
    nonzero = lambda d: {k: v for k, v in d.items() if v}
    assert nonzero(h2["downstream"]["resets"]["sent"]) == {name: 1}
    assert nonzero(h2["downstream"]["resets"]["received"]) == {}
    assert nonzero(h2["upstream"]["resets"]["received"]) == {name: 1}
    assert nonzero(h2["upstream"]["goaways"]["sent"]) == {name: 1}
    assert nonzero(h2["downstream"]["goaways"]["sent"]) == {}
    assert S.H2_CODES[code if 0 <= code <= 0xd else -1] == name


def test_http2_gauges_move_per_side_and_only_live_workers_count():
    s = S.Stats(max_workers=2)
    s.attach_worker(0, pid=1)
    s.attach_worker(1, pid=2)
    s.h2_gauge_py(0, S.H2_DOWNSTREAM, S.H2_GAUGE_CONNECTIONS, 1)
    s.h2_gauge_py(0, S.H2_DOWNSTREAM, S.H2_GAUGE_STREAMS, 7)
    s.h2_gauge_py(0, S.H2_DOWNSTREAM, S.H2_GAUGE_STREAMS, -2)
    s.h2_gauge_py(1, S.H2_DOWNSTREAM, S.H2_GAUGE_CONNECTIONS, 2)
    s.h2_gauge_py(1, S.H2_UPSTREAM, S.H2_GAUGE_CONNECTIONS, 3)
    s.h2_counts_py(1, S.H2_UPSTREAM, {"streams_opened": 4})
    h2 = s.aggregate()["http2"]
    assert (h2["downstream"]["active_connections"], h2["downstream"]["active_streams"]) == (3, 5)
    assert (h2["upstream"]["active_connections"], h2["upstream"]["active_streams"]) == (3, 0)
    s.release_worker(1)                         # its connections died with it; counts stay
    h2 = s.aggregate()["http2"]
    assert h2["downstream"]["active_connections"] == 1
    assert h2["upstream"]["active_connections"] == 0
    assert h2["upstream"]["counters"]["streams_opened"] == 4
    s.attach_worker(1, pid=3)                   # a restarted worker starts from zero gauges
    s.h2_gauge_py(1, S.H2_UPSTREAM, S.H2_GAUGE_CONNECTIONS, 1)
    assert s.aggregate()["http2"]["upstream"]["active_connections"] == 1


def test_bad_http2_arguments_write_nothing_and_python_gets_an_error():
    s = S.Stats(max_workers=1)
    s.attach_worker(0)
    s.h2_counts_py(0, 2, {"streams_opened": 1})          # no such side
    s.h2_counts_py(0, -1, {"streams_opened": 1})
    s.h2_reset_py(0, 5, True, 0)
    s.h2_gauge_py(0, S.H2_DOWNSTREAM, 2, 1)               # no such gauge
    s.h2_gauge_py(0, S.H2_DOWNSTREAM, -1, 1)
    h2 = s.aggregate()["http2"]
    for side in S.H2_SIDES:
        assert not any(h2[side]["counters"].values())
        assert not any(h2[side]["resets"]["sent"].values())
        assert h2[side]["active_connections"] == h2[side]["active_streams"] == 0
    with pytest.raises(IndexError):
        s.h2_reset_py(1, 0, True, 0)
    with pytest.raises(ValueError):
        s.h2_counts_py(0, 0, {"no_such_counter": 1})
    with pytest.raises(ValueError):
        s.h2_counts_py(0, 0, [1, 2, 3])


def _h2_hammer(stats, worker, n, out):
    stats.attach_worker(worker)
    for i in range(n):
        stats.h2_counts_py(worker, S.H2_UPSTREAM, {"frames_in": 2, "streams_opened": 1})
        stats.h2_reset_py(worker, S.H2_UPSTREAM, bool(i % 2), 0x8)
    out.put(worker)


def test_two_forked_workers_count_http2_without_losing_an_increment():
    s = S.Stats(max_workers=2)
    out = _fork.Queue()
    procs = [_fork.Process(target=_h2_hammer, args=(s, w, 10_000, out)) for w in (0, 1)]
    for p in procs:
        p.start()
    assert sorted(out.get(timeout=60) for _ in procs) == [0, 1]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    up = s.aggregate()["http2"]["upstream"]
    assert up["counters"]["frames_in"] == 40_000 and up["counters"]["streams_opened"] == 20_000
    assert up["resets"]["sent"]["CANCEL"] == up["resets"]["received"]["CANCEL"] == 10_000

"""The resilience scenario (issue 11: features a route does not use cost nothing): the two sluice
configs it compares, who runs in it, how its runs alternate, the ratios it reports, and the
checks that keep it honest (a fault that is not live, retries or mirrored copies reaching the
upstream). Nothing here depends on how fast sluice is."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import pytest

from bench.peers import (
    FAULT_HEADER,
    ROOT,
    Baseline,
    Sluice,
    Variant,
    all_peers,
)
from bench.report import markdown
from bench.run import (
    BY_NAME,
    SCENARIOS,
    add_ratios,
    check_answers,
    extra_upstream_requests,
    parse_args,
    print_report,
    round_order,
    targets,
)

RESILIENCE = Variant(resilience=True)
CLUSTER_FEATURES = ("health_check", "outlier_detection", "circuit_breakers", "retry_budget")
ROUTE_FEATURES = ("retry", "fault", "mirror")


class _Up:
    address = "127.0.0.1:1"


def configs() -> tuple[dict, dict]:
    plain, res = Sluice(1), Sluice(1, resilient=True)
    plain.port = res.port = 1234
    return plain.config(RESILIENCE, _Up()), res.config(RESILIENCE, _Up())


def test_the_resilient_config_is_the_plain_one_plus_every_feature():
    plain, res = configs()
    for conf in (plain, res):
        conf.pop("admin")                     # a free port each time
    route, cluster = res["routes"][0], res["clusters"][0]
    assert set(CLUSTER_FEATURES) <= set(cluster) and set(ROUTE_FEATURES) <= set(route)
    assert not set(CLUSTER_FEATURES) & set(plain["clusters"][0])
    assert not set(ROUTE_FEATURES) & set(plain["routes"][0])
    for key in CLUSTER_FEATURES:
        del cluster[key]
    for key in ROUTE_FEATURES:
        del route[key]
    assert res.pop("overload") == {"max_loop_delay": "1s"} and "overload" not in plain
    assert [c["name"] for c in res["clusters"]] == ["up", "shadow"]
    res["clusters"] = res["clusters"][:1]
    assert res == plain                       # nothing else differs


def test_the_resilient_config_cannot_trigger_under_the_bench_load():
    _, res = configs()
    route, cluster = res["routes"][0], res["clusters"][0]
    conns = BY_NAME["resilience"].concurrency
    assert cluster["circuit_breakers"]["max_requests"] >= 100 * conns
    assert cluster["circuit_breakers"]["max_retries"] >= 1000
    assert route["fault"]["only_with_header"] == FAULT_HEADER
    assert route["mirror"] == {"cluster": "shadow", "percent": 0}
    assert route["retry"]["attempts"] == 2 and route["retry"]["per_try_timeout"]
    assert route["retry"]["backoff"]
    assert cluster["health_check"]["http"]["path"] == "/"      # the upstream answers 200 there
    assert res["overload"]["max_loop_delay"] == "1s"           # p99 is some milliseconds
    # the shadow cluster is the same upstream: a copy, were one sent, would be counted there
    assert res["clusters"][1]["endpoints"] == cluster["endpoints"]


def test_the_resilient_config_validates(tmp_path):
    """Against this build's config model: the field names are CONFIG.md's."""
    _, res = configs()
    path = tmp_path / "res.json"
    path.write_text(json.dumps(res))
    out = subprocess.run([sys.executable, "-m", "engine", "validate", str(path)],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_only_the_two_sluices_run_the_resilience_variant():
    for ncpu in (1, 2, 8):
        assert [p.name for p in all_peers(ncpu) if p.ok_variant(RESILIENCE)] == \
            ["sluice-1w", "sluice-1w-res"]
    for sc in SCENARIOS:                      # and the resilient one nowhere else
        runs = [p.name for p in all_peers(2) if p.ok_variant(sc.variant)]
        assert ("sluice-1w-res" in runs) == (sc.name == "resilience"), sc.name
        assert "sluice-1w" in runs


def test_the_scenario_is_in_quick_with_wrk_and_repeats():
    sc = BY_NAME["resilience"]
    assert sc.quick and sc.tools == sc.quick_tools == ("wrk",)
    assert sc.compare_to == "sluice-1w" and sc.repeat >= 3
    args = parse_args(["--quick"])
    assert args.scenarios is None             # the default --quick list: every quick scenario


def test_rounds_alternate_and_rotate():
    assert round_order(["A", "B"], 0, 3) == ["A", "B"] * 3
    assert round_order(["A", "B"], 1, 3) == ["B", "A"] * 3
    assert round_order(["A", "B"], 2, 1) == ["A", "B"]
    assert round_order(["A", "B", "C"], 1) == ["B", "C", "A"]
    assert round_order([], 5, 3) == []
    assert round_order(["A"], 3, 2) == ["A", "A"]   # the resilient peer did not start


def test_extra_upstream_requests_are_a_problem_beyond_in_flight_and_probes():
    assert extra_upstream_requests(None, 1000, 50) is None        # no counters (grpc)
    assert extra_upstream_requests(1000, 1000, 50) is None
    assert extra_upstream_requests(1060, 1000, 50) is None        # in flight + probes
    assert "retried or mirrored" in extra_upstream_requests(2000, 1000, 50)


def summary(rps, p99, per_cpu):
    return {"wrk": {"rps": rps, "p50_ms": 1.0, "p99_ms": p99, "req_per_cpu_s": per_cpu,
                    "upstream_conns_per_1k": 0.1, "non2xx": 0, "errors": 0, "failed_runs": 0}}


def results() -> dict:
    peers = {"sluice-1w": {"check": {"problems": []}, "summary": summary(50000, 2.0, 40000)},
             "sluice-1w-res": {"check": {"problems": []}, "summary": summary(48000, 2.2, 39000)}}
    add_ratios(peers, "sluice-1w")
    return {"commit": "abc", "date": "2026-11-30", "warnings": [],
            "machine": {"cpus": 2, "cpu": "x", "kernel": "6", "loadavg_at_start": 0.0},
            "args": {"rounds": 3, "duration_s": 5.0},
            "versions": {"nginx": "1", "haproxy": "2", "wrk": "w", "h2load": "h",
                         "python": "3", "uvloop": "u"},
            "scenarios": {"resilience": {
                "title": BY_NAME["resilience"].title, "path": "/", "conns": 50,
                "tools": ["wrk"], "compare_to": "sluice-1w", "repeat": 3, "peers": peers}}}


def test_ratios_to_the_plain_peer_and_their_targets():
    res = results()
    s = res["scenarios"]["resilience"]["peers"]["sluice-1w-res"]["summary"]["wrk"]
    assert s["vs_ref"] == 0.96 and s["p99_vs_ref"] == 1.1
    assert s["cpu_per_req_vs_ref"] == round(40000 / 39000, 3)   # CPU per request: above 1 worse
    got = {t["target"]: (t["met"], t["need"]) for t in targets(res)}
    assert got == {"resilience/wrk: resilient / plain req/s": (True, ">= 0.95"),
                   "resilience/wrk: resilient / plain CPU per request": (True, "<= 1.05"),
                   "resilience/wrk: resilient / plain p99": (False, "<= 1.05")}


def test_report_shows_the_ratios_and_not_the_nginx_columns():
    res = results()
    f = io.StringIO()
    print_report(res, f)
    text = f.getvalue()
    assert "x ref" in text and "x nginx" not in text and "sluice-1w-res" in text
    assert "0.960" in text and "the sluice-1w run next to it" in text
    md = markdown(res, "wrk")
    assert "sluice-1w-res / sluice-1w: req/s 0.96, p99 1.10, CPU per request 1.03" in md
    assert "2 workers" not in md.split("\n\n")[-1]      # not mistaken for a scaling row
    assert "| resilience" not in md                      # not in the table against nginx


needs_peers = pytest.mark.skipif(not (shutil.which("nginx") and shutil.which("wrk")),
                                 reason="needs nginx and wrk")


@needs_peers
def test_a_resilient_peer_whose_fault_is_not_live_fails_its_check(upstream, tmp_path):
    """A proxy that ignored the resilience config would cost nothing too: the check sends the
    fault header once and wants the configured abort."""
    peer = Baseline()                         # answers right, and knows no fault
    peer.start(Variant(), upstream, tmp_path)
    try:
        sc = BY_NAME["resilience"]
        assert check_answers(peer, sc) is None
        peer.resilient = True
        assert "the fault is not live" in check_answers(peer, sc)
    finally:
        peer.stop()


@needs_peers
def test_resilient_sluice_answers_right_and_faults_only_on_the_header(upstream, tmp_path):
    peer = Sluice(1, resilient=True)
    peer.start(RESILIENCE, upstream, tmp_path)
    try:
        assert check_answers(peer, BY_NAME["resilience"]) is None, peer.log_tail()
    finally:
        peer.stop()


def test_ratios_pair_each_run_with_the_reference_run_next_to_it():
    """A slow drift of the machine's load (each pair slower than the one before) cancels in the
    paired ratios, where the ratio of the medians would follow whichever peer the drift
    favoured."""
    def run(rps, p99, cpu_s):
        return {"tool": "wrk", "rps": rps, "requests": rps * 5, "p99_ms": p99, "cpu_s": cpu_s}

    plain = {"runs": [run(60000, 2.0, 5.0), run(40000, 3.0, 4.0), run(20000, 6.0, 2.0)],
             "summary": summary(40000, 3.0, 50000)}
    res = {"runs": [run(50000, 2.5, 4.0), run(38000, 3.3, 3.8), run(19000, 6.6, 1.9)],
           "summary": summary(36000, 3.3, 50000)}
    peers = {"sluice-1w": plain, "sluice-1w-res": res}
    add_ratios(peers, "sluice-1w")
    s = res["summary"]["wrk"]
    assert s["vs_ref"] == 0.95 and s["p99_vs_ref"] == 1.1 and s["ref_paired_runs"] == 3
    assert s["cpu_per_req_vs_ref"] == 1.0
    assert plain["summary"]["wrk"]["vs_ref"] == 1.0
    res["runs"][1]["failed"] = "wrk exited with 1"          # no pairs: the ratio of medians
    add_ratios(peers, "sluice-1w")
    assert s["vs_ref"] == 0.9 and s["ref_paired_runs"] == 0

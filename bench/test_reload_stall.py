"""bench/reload_stall.py: the harness runs end to end on a small config and measures what it
says (no speed is asserted: speed never fails CI)."""

from __future__ import annotations

from bench.reload_stall import gaps, generate, measure


def test_gaps_split_inside_and_outside_reload_windows():
    ends = [0.0, 0.01, 0.02, 0.50, 0.51, 0.90, 0.91]
    inside, outside = gaps(ends, [(0.1, 0.3)])
    assert round(inside, 2) == 0.48     # 0.02 -> 0.50 spans the window
    assert round(outside, 2) == 0.39    # 0.51 -> 0.90


def test_generated_configs_have_every_kind_of_route_and_differ_by_salt():
    a, b = generate(50, 8080, 9901), generate(50, 8080, 9901, salt="v1")
    assert len(a["routes"]) == 50
    kinds = {key for r in a["routes"] for key in r["match"]}
    assert {"path", "path_prefix", "path_regex", "host", "methods", "headers"} <= kinds
    assert [r["match"] for r in a["routes"][1:]] != [r["match"] for r in b["routes"][1:]]


def test_measures_reloads_of_the_real_binary(tmp_path):
    result = measure(60, reloads=2, connections=1, tmp=tmp_path)
    assert result["routes"] == 60 and result["reloads"] == 2
    assert result["requests"] > 0
    assert result["reload_max_ms"] >= result["reload_median_ms"] > 0
    assert result["stall_ms"] > 0

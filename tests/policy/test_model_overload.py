"""The overload block of the model (engine/policy/model.py, `Overload`): `overload.max_loop_delay`
through the loader (every refusal one `FILE: path: reason` line naming the field), through a
snapshot, and into the Tables a worker serves from (engine/policy/link.py)."""
from __future__ import annotations

import copy

import pytest

import config_check
from config_check import errors
from engine.policy.snapshot import encode_snapshot, load_snapshot, snapshot_of, trusted_config

BASE = {
    "listeners": [{"name": "main", "address": "127.0.0.1:8080", "routes": ["r"]}],
    "routes": [{"name": "r", "match": {"path_prefix": "/"},
                "direct_response": {"status": 200}}],
}


def data(overload=None) -> dict:
    out = copy.deepcopy(BASE)
    if overload is not None:
        out["overload"] = overload
    return out


def config(value: dict):
    return config_check.config(value, warnings=False)


def test_the_default_is_off():
    assert config(data()).overload.max_loop_delay == 0.0
    assert config(data({})).overload.max_loop_delay == 0.0


@pytest.mark.parametrize("value, seconds", [
    ("100ms", 0.1), ("10ms", 0.01), ("1s", 1.0), (0.25, 0.25), ("0s", 0.0), (0, 0.0),
])
def test_durations_of_10ms_and_more_or_zero_are_taken(value, seconds):
    assert config(data({"max_loop_delay": value})).overload.max_loop_delay == seconds


@pytest.mark.parametrize("value", ["5ms", "9.5ms", 0.001])
def test_below_10ms_is_refused_because_it_would_shed_on_scheduling_noise(value):
    (error,) = errors(data({"max_loop_delay": value}))
    assert error.startswith("cfg.yaml: overload.max_loop_delay: ")
    assert "is below 10ms" in error and "scheduling noise" in error and "0s to switch" in error


@pytest.mark.parametrize("value, reason", [
    ("-1s", "expected a duration"),
    (-1, "greater than zero"),
    ("100", "has no unit"),
    (True, "expected a duration"),
])
def test_a_bad_duration_is_refused_at_the_field(value, reason):
    (error,) = errors(data({"max_loop_delay": value}))
    assert error.startswith("cfg.yaml: overload.max_loop_delay: ") and reason in error


def test_an_unknown_field_is_refused_with_a_suggestion():
    (error,) = errors(data({"max_loop_dealy": "100ms"}))
    assert "overload.max_loop_dealy" in error and "max_loop_delay" in error


def test_it_survives_a_snapshot():
    c = config(data({"max_loop_delay": "150ms"}))
    assert load_snapshot(encode_snapshot(c, "c.yaml"))[1].overload.max_loop_delay == 0.15
    header, raw = snapshot_of(c, "c.yaml")
    assert trusted_config(raw, header.sha256)[1] == c


def test_link_puts_it_in_the_tables():
    from engine._fast.limiter import SharedBuckets
    from engine.policy.link import link

    assert link(config(data({"max_loop_delay": "250ms"})), SharedBuckets(64)) \
        .max_loop_delay == 0.25
    assert link(config(data()), SharedBuckets(64)).max_loop_delay == 0.0

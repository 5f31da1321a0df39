"""engine/policy/durations.py"""
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.policy.durations import format_duration, parse_duration


@pytest.mark.parametrize("text, seconds", [
    ("250ms", 0.25), ("5s", 5.0), ("2m", 120.0), ("1h", 3600.0), ("1.5s", 1.5), (".5s", 0.5),
    (5, 5.0), (0.25, 0.25),
])
def test_parses_units_and_bare_seconds(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("value, message", [
    ("5", "'5' has no unit: write '5s' or '5ms'"),
    ("5 s", "expected a duration such as '250ms', '5s', '2m' or '1h', got '5 s'"),
    ("5d", "expected a duration such as '250ms', '5s', '2m' or '1h', got '5d'"),
    ("-1s", "expected a duration such as '250ms', '5s', '2m' or '1h', got '-1s'"),
    ("0s", "a duration must be greater than zero, got 0s"),
    (0, "a duration must be greater than zero, got 0"),
    (-3, "a duration must be greater than zero, got -3"),
    (math.inf, "a duration must be finite, got inf"),
    (True, "expected a duration such as '250ms', '5s', '2m' or '1h', got true"),
    ([1], "expected a duration such as '250ms', '5s', '2m' or '1h', got a list"),
])
def test_refuses_with_a_message(value, message):
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert str(caught.value) == message


@pytest.mark.parametrize("seconds, text", [
    (3600.0, "1h"), (120.0, "2m"), (5.0, "5s"), (0.25, "250ms"), (90.0, "90s"), (1.5, "1500ms"),
])
def test_format_picks_the_largest_exact_unit(seconds, text):
    assert format_duration(seconds) == text


@given(st.integers(min_value=1, max_value=10**7), st.sampled_from(["ms", "s", "m", "h"]))
def test_format_round_trips(count, unit):
    seconds = parse_duration(f"{count}{unit}")
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, rel=1e-12)

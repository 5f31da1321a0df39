"""Durations: `250ms`, `5s`, `1.5m`, `1h`, or a bare YAML number meaning seconds.

The config spells time as a string with a unit (CONFIG.md) so `timeout: 5` is never mistaken for
milliseconds; a bare number is still accepted as seconds because that is what every reader would
guess. A string without a unit (`"5"`) is refused: it was quoted, so it was probably meant to carry
one. The result is float seconds, the unit the runtime clock uses.

Zero, negative, infinite and NaN durations are refused, except where a timeout can be switched
off (`parse_timeout`, the `Timeout` field): there `0s` means none, because the field has a
protective default and leaving it out would not switch it off.
"""
from __future__ import annotations

import math
import re

UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

# Also the JSON Schema pattern for editors (engine.policy.schema).
PATTERN = r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)(ms|s|m|h)$"
_RE = re.compile(PATTERN)

_EXAMPLES = "such as '250ms', '5s', '2m' or '1h'"


def parse_duration(value: object) -> float:
    """Return `value` as float seconds or raise ValueError with a message for the user."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration {_EXAMPLES}, got {str(value).lower()}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        match = _RE.match(value)
        if match is None:
            if _is_number(value):
                raise ValueError(f"'{value}' has no unit: write '{value}s' or '{value}ms'")
            raise ValueError(f"expected a duration {_EXAMPLES}, got '{value}'")
        seconds = float(value[: match.start(3)]) * UNITS[match.group(3)]
    else:
        raise ValueError(f"expected a duration {_EXAMPLES}, got a {_kind(value)}")
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"a duration must be finite, got {value}")
    if seconds <= 0:
        raise ValueError(f"a duration must be greater than zero, got {value}")
    return seconds


def parse_timeout(value: object) -> float:
    """A timeout that may be switched off: like parse_duration, but `0s` (or 0) means none
    and gives 0.0 (CONFIG.md: `max_connection_duration: 0s`)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0:
        return 0.0
    if isinstance(value, str):
        match = _RE.match(value)
        if match is not None and float(value[: match.start(3)]) == 0:
            return 0.0
    return parse_duration(value)


def format_duration(seconds: float) -> str:
    """The shortest unit string that parses back to exactly `seconds` (for dumps and messages)."""
    for unit in ("h", "m", "s"):
        count = seconds / UNITS[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    millis = seconds * 1000
    if millis == int(millis):
        return f"{int(millis)}ms"
    return f"{seconds!r}s"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    return type(value).__name__

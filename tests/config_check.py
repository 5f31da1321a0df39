"""What the model tests ask of the loader (engine.policy.check_data) on a config dict: its
errors as the `FILE: path: reason` lines a user reads, or the checked config."""
from __future__ import annotations

from engine.policy import check_data


def errors(value: dict) -> list[str]:
    return [str(p) for p in check_data(value, "cfg.yaml").errors]


def config(value: dict, warnings: bool = True):
    """The checked config; `warnings=False` also requires that the check warned of nothing."""
    result = check_data(value, "cfg.yaml")
    assert result.ok, [str(p) for p in result.problems]
    if not warnings:
        assert not result.warnings, [str(p) for p in result.warnings]
    return result.config

"""Did-you-mean hints for unknown fields, enum values and undefined names.

A typo is the most common config error, and the fix is usually one of a handful of known words;
naming it saves a trip to the docs. difflib's ratio is good enough at this size and needs no
dependency.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`"; did you mean 'path_prefix'?"` when a choice is close to `word`, else `""`."""
    options = [c for c in choices if isinstance(c, str)]
    if not isinstance(word, str) or not options:
        return ""
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in options}
        close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
        close = [lowered[c] for c in close]
    return f"; did you mean '{close[0]}'?" if close else ""

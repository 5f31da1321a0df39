"""User regular expressions (`match.path_regex`), run by RE2: linear time in the path's length.

Why RE2. Python's `re` backtracks: `/(a+)+$` against a 30-byte path that does not match takes
seconds, and a worker's event loop is stuck for all of them. RE2 (the engine Envoy's safe_regex
uses) runs in time linear in the input for every pattern it accepts, so a config can never make
matching slow. The price is a smaller language: no backreferences, lookaround, possessive or
atomic groups, and repetition counts up to 1000. A pattern outside that language is refused when
the config is validated, with RE2's reason, never at serving time.

One engine, one meaning. The router (engine/_fast/router.pyx) runs the patterns compiled here;
the linter (`matching.covers`) and `sluice explain` call `fullmatch` below, so all three agree:
a pattern matches the whole path, without its query, in RE2's UTF-8 mode (the path on the wire
is ASCII: the HTTP parser refuses any other byte in a request target).

This module imports no compiled module of ours (`engine.policy` must import without a compiler);
the `google-re2` wheel is an ordinary dependency.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import re2

# RE2 logs every refused pattern to stderr by default; the refusal is reported as a config error
# instead. Capturing groups are never read, so RE2 may skip tracking them.
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
_OPTIONS.never_capture = True

# RE2's error text, made plain for the constructs people bring from Perl or Python: (a test of
# RE2's message, a test of the pattern or None, the hint). RE2 names only the start of what it
# refused ("(?P"), so a named backreference is recognised in the pattern.
_HINTS = (
    (re.compile(r"invalid escape sequence: \\[1-9]"), None, "backreferences are not supported"),
    (re.compile(r"invalid perl operator: \(\?P"), re.compile(r"\(\?P="),
     "backreferences are not supported"),
    (re.compile(r"invalid perl operator: \(\?<?[=!]"), None,
     "lookahead and lookbehind are not supported"),
    (re.compile(r"invalid perl operator: \(\?>"), None, "atomic groups are not supported"),
    (re.compile(r"bad repetition operator: [*+?]\+"), None,
     "possessive quantifiers are not supported"),
    (re.compile(r"invalid repetition size"), None, "repetition counts go up to 1000"),
    (re.compile(r"pattern too large"), None, "the compiled pattern exceeds RE2's memory budget"),
)

Compiled = re2._Regexp


def compile_path_regex(pattern: str) -> Compiled:
    """The RE2 program for `pattern`; ValueError with the reason when RE2 cannot run it."""
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as error:
        raise ValueError(_explain(pattern, error)) from None


def problem(pattern: str) -> str | None:
    """Why `pattern` cannot be a path_regex, in one sentence; None when it can."""
    try:
        compile_path_regex(pattern)
    except ValueError as error:
        return str(error)
    return None


def fullmatch(compiled: Compiled | str, path: str | bytes) -> bool:
    """Whether `compiled` matches the whole of `path`, as the router decides it."""
    if isinstance(compiled, str):
        compiled = compile_path_regex(compiled)
    return compiled.fullmatch(path) is not None


def _explain(pattern: str, error: re2.error) -> str:
    reason = error.args[0] if error.args else str(error)
    if isinstance(reason, bytes):
        reason = reason.decode("utf-8", "replace")
    try:
        re.compile(pattern)
    except re.error as python_error:
        # not a regular expression in any dialect: the message people know, with a position
        where = f" at position {python_error.pos}" if python_error.pos is not None else ""
        return f"invalid regular expression: {python_error.msg}{where}"
    except (RecursionError, OverflowError):
        pass
    for test, in_pattern, hint in _HINTS:
        if test.search(reason) and (in_pattern is None or in_pattern.search(pattern)):
            reason = f"{reason} ({hint})"
            break
    return f"not supported by RE2 (linear-time matching): {reason}"


def matcher(patterns: Iterable[str], chunk: int = 256) -> Callable[[str], set[str]]:
    """`match(path)` -> which of `patterns` match the whole of `path`, in one pass per `chunk`
    patterns (RE2::Set) instead of one per pattern: the linter asks this for every exact path of
    a listener. Patterns must already be valid (`problem` is None for each)."""
    distinct = list(dict.fromkeys(patterns))
    sets: list[tuple[list[str], re2.Set | None]] = []
    for start in range(0, len(distinct), chunk):
        part = distinct[start:start + chunk]
        group: re2.Set | None = re2.Set.FullMatchSet(_OPTIONS)
        try:
            for pattern in part:
                group.Add(pattern)
            group.Compile()
        except re2.error:  # past RE2's memory budget for one set: one pattern at a time
            group = None
        sets.append((part, group))

    def match(path: str) -> set[str]:
        found: set[str] = set()
        for part, group in sets:
            if group is None:
                found.update(p for p in part if fullmatch(p, path))
            else:
                found.update(part[i] for i in group.Match(path) or ())
        return found

    return match

"""How a config problem is named and reported.

A `Problem` is one line a user reads: `FILE: path.to.field: reason`. The path is rendered from a
location tuple (`("routes", 2, "match", "path_prefix")` -> `routes[2].match.path_prefix`) so a
user can find the field without a line number; the line and column, when the YAML gave them, ride
along for editors and sorting but are not part of the line (the format is a contract, CONFIG.md).

Warnings are Problems too (`severity=WARNING`); they never fail a load and render with a
`warning: ` prefix before the reason, as compilers do, so a script can tell them apart.

`RuleViolation` is how a model validator reports one or more problems below the object it checks
(`hash_on` inside a cluster): pydantic only lets a validator raise a ValueError at the object's
own location, so the violation carries relative locations that the loader appends.
"""
from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Loc = tuple[str | int, ...]

ROOT = "<root>"

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\-]+\Z")


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"


def render_path(loc: Sequence[str | int]) -> str:
    """`("routes", 2, "match")` -> `routes[2].match`; the empty location is `<root>`.

    Keys that are not plain words (a header named `a.b`, a key with a space) are quoted as
    `headers["a.b"]` so the rendered path stays unambiguous."""
    out: list[str] = []
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out.append(f"[{part}]")
        elif isinstance(part, str) and _PLAIN_KEY.match(part):
            out.append(("." if out else "") + part)
        else:
            text = str(part).replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'["{text}"]')
    return "".join(out) or ROOT


@dataclass(frozen=True)
class Problem:
    """One error or warning in a config source.

    `file` is the name the source was loaded under, `path` the rendered location inside it,
    `reason` a sentence without a trailing period. `line`/`column` are 1-based positions of the
    nearest YAML node, or None when the data did not come from YAML text."""

    file: str
    path: str
    reason: str
    severity: Severity = Severity.ERROR
    line: int | None = None
    column: int | None = None

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def __str__(self) -> str:
        prefix = "" if self.is_error else "warning: "
        return f"{self.file}: {self.path}: {prefix}{self.reason}"


class ConfigError(Exception):
    """A config was refused. `problems` holds every error and warning found, in file order
    (errors first); `str()` is one `FILE: path: reason` line per problem."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.is_error)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if not p.is_error)


class RuleViolation(ValueError):
    """Raised by a model validator: one or more `(relative_loc, reason)` pairs.

    Pydantic turns it into a single `value_error` at the model's location and keeps the exception
    in the error's context; `engine.policy.translate` unpacks it into one Problem per pair."""

    def __init__(self, items: Iterable[tuple[Loc, str]]):
        self.items: tuple[tuple[Loc, str], ...] = tuple(items)
        super().__init__("; ".join(reason for _, reason in self.items))


def violation(loc: Loc, reason: str) -> RuleViolation:
    """One violation at `loc`, relative to the object being validated."""
    return RuleViolation([(loc, reason)])


class RuleCollector:
    """Accumulates violations inside a validator so every broken rule of an object is reported,
    not only the first: `v.add(("hash_on",), "...")` ... `v.raise_if_any()`."""

    def __init__(self) -> None:
        self.items: list[tuple[Loc, str]] = []

    def add(self, loc: Loc, reason: str) -> None:
        self.items.append((loc, reason))

    def raise_if_any(self) -> None:
        if self.items:
            raise RuleViolation(self.items)


def describe_value(value: object) -> str:
    """How a parsed YAML value is named in a message: `the number 5`, `a list`, `'text'`.

    YAML decides types silently (`1` is a number, `"1"` a string), so messages name what the
    parser saw, which is often the surprise."""
    if value is None:
        return "an empty value (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"'{value}'" if len(value) <= 60 else f"'{value[:57]}...'"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def expected_string(value: object) -> str:
    """The reason for a non-string where text belongs, with the fix when YAML made a number."""
    reason = f"expected a string, got {describe_value(value)}"
    if isinstance(value, (bool, int, float)):
        text = str(value).lower() if isinstance(value, bool) else str(value)
        reason += f" (quote it: \"{text}\")"
    return reason

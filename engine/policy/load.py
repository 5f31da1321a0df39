"""Loading a config: file -> text -> YAML data -> `Config`, with every problem found at once.

The stages, each reporting into one list of `Problem`s:
1. read the file (UTF-8) and parse the YAML (`yaml_source`): a syntax error stops here;
2. validate the data against the model (`model`, messages from `translate`);
3. check names and references across objects (`crossref`), read from the raw data so they are
   checked even where items have other errors: all errors come out in one run;
4. on a config without errors only, look for likely mistakes (`lint`): warnings.

Entry points, from the most to the least detail:
- `check_file` / `check_text` / `check_data` -> `LoadResult`: the Config (None if any error),
  every error and warning, and the YAML positions. They never raise for a bad config.
- `validate_file(path)` -> `list[Problem]`: what `sluice validate` prints (errors and warnings).
- `load_config(path)` / `load_config_text(text)` -> `Config`: raise `ConfigError` (holding
  every problem) on any error; warnings are logged on this module's logger.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from . import crossref, lint
from .errors import ROOT, ConfigError, Loc, Problem, Severity, describe_value, render_path
from .fields import BASE_DIR
from .model import DEFER_CROSSREF, Config
from .translate import translate
from .yaml_source import Position, YamlSyntaxError, parse_yaml

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadResult:
    """The outcome of checking one config source."""

    source: str
    config: Config | None  # None when there is any error
    problems: tuple[Problem, ...]  # errors first, each group in file order
    positions: Mapping[Loc, Position] = field(default_factory=dict, repr=False)

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.is_error)

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if not p.is_error)

    @property
    def ok(self) -> bool:
        return self.config is not None

    def raise_for_errors(self) -> Config:
        """The Config, or ConfigError with every problem (warnings included) if any error."""
        if self.config is None:
            raise ConfigError(self.problems)
        return self.config


def load_config(path: str | os.PathLike[str]) -> Config:
    return _logged(check_file(path)).raise_for_errors()


def load_config_text(text: str, source_name: str = "<string>") -> Config:
    return _logged(check_text(text, source_name)).raise_for_errors()


def validate_file(path: str | os.PathLike[str]) -> list[Problem]:
    return list(check_file(path).problems)


def check_file(path: str | os.PathLike[str]) -> LoadResult:
    source = os.fspath(path)
    try:
        with open(source, "rb") as file:
            raw = file.read()
    except OSError as error:
        return _failed(source, f"cannot read the file: {error.strerror or error}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        return _failed(source, f"not UTF-8 text (byte 0x{raw[error.start]:02x} at offset "
                               f"{error.start})")
    return check_text(text, source, base_dir=config_directory(source))


def config_directory(path: str | os.PathLike[str]) -> str:
    """The directory relative paths in the config file at `path` are resolved against."""
    return os.path.dirname(os.path.abspath(os.fspath(path)))


def check_text(text: str, source_name: str = "<string>",
               base_dir: str | None = None) -> LoadResult:
    try:
        parsed = parse_yaml(text)
    except YamlSyntaxError as error:
        problem = Problem(source_name, render_path(error.loc), error.reason, Severity.ERROR,
                          *(error.position or (None, None)))
        return LoadResult(source_name, None, (problem,))
    return check_data(parsed.data, source_name, parsed.positions, parsed.problems,
                      base_dir=base_dir)


def check_data(data: Any, source_name: str = "<data>",
               positions: Mapping[Loc, Position] | None = None,
               earlier: Sequence[tuple[Loc, str]] = (),
               base_dir: str | None = None) -> LoadResult:
    """Check already-parsed data (from YAML, JSON, or code). `earlier` are errors found while
    parsing (duplicate keys...), reported with the rest. `base_dir` is the directory relative
    file paths (TLS certificates) are resolved against: the config file's (`check_file` passes
    it), else the working directory."""
    positions = positions or {}
    errors: list[tuple[Loc, str]] = list(earlier)
    warnings: list[tuple[Loc, str]] = []
    config: Config | None = None
    if data is None:
        errors.append(((), "the config is empty: expected a mapping with listeners, routes "
                           "and clusters"))
    elif not isinstance(data, dict):
        errors.append(((), f"expected a mapping with listeners, routes and clusters at the top "
                           f"level, got {describe_value(data)}"))
    else:
        try:
            config = Config.model_validate(data, context={DEFER_CROSSREF: True,
                                                          BASE_DIR: base_dir})
        except ValidationError as error:
            errors.extend(translate(error, Config))
        errors.extend(crossref.check(crossref.Sections.from_data(data)))
        if config is not None and not errors:
            warnings.extend(lint.check(config))
    problems = sorted(
        [_problem(source_name, loc, reason, Severity.ERROR, positions) for loc, reason in errors]
        + [_problem(source_name, loc, reason, Severity.WARNING, positions)
           for loc, reason in warnings],
        key=_file_order)
    return LoadResult(source_name, None if errors else config, tuple(problems), positions)


def _problem(source: str, loc: Loc, reason: str, severity: Severity,
             positions: Mapping[Loc, Position]) -> Problem:
    position = None
    for end in range(len(loc), -1, -1):  # the nearest located ancestor
        position = positions.get(loc[:end])
        if position is not None:
            break
    line, column = position or (None, None)
    return Problem(source, render_path(loc), reason, severity, line, column)


def _file_order(problem: Problem) -> tuple[int, int, int]:
    return (0 if problem.is_error else 1, problem.line or 1 << 30, problem.column or 0)


def _failed(source: str, reason: str) -> LoadResult:
    return LoadResult(source, None, (Problem(source, ROOT, reason),))


def _logged(result: LoadResult) -> LoadResult:
    if result.config is not None:
        for warning in result.warnings:
            log.warning("%s", warning)
    return result

"""Checks of a valid config against the machine it is about to run on.

The policy layer (`engine.policy`) checks what a config means and never imports user code or
touches the file system beyond the config itself: it must run anywhere (a CI job, a laptop
without a compiler). Some mistakes only show on the machine that serves: a filter module that is
not installed there, an access log in a directory that does not exist. `sluice validate` runs these
checks too, so that they are found before a deploy instead of by a worker failing to start, and
`sluice run` checks the access log before it forks any worker.

What is checked, each reported as a `Problem` (`FILE: path: reason`):
- every `filters[i].python` imports, from the config file's directory and then `sys.path`, and
  names an `engine.Filter` subclass: the same resolution, through the same allow list, as the
  workers of `sluice run` (engine/filters/loader.py). The class is not instantiated: its
  constructor is the user's code with the filter's config, and runs when serving;
- the access log, when it is a file, can be appended to: the file is writable, or it does not
  exist yet and its directory is. A relative path is relative to the current directory, as it is
  for `sluice run`. Nothing is created.
"""

from __future__ import annotations

import os

from engine.policy.errors import Problem

STREAMS = ("stderr", "stdout", "off")


def access_log_problem(path: str) -> str | None:
    """Why the access log `path` cannot be opened for appending, or None when it can (or when it
    is stderr, stdout or off)."""
    if path in STREAMS:
        return None
    if os.path.isdir(path):
        return f"cannot write the access log {path}: it is a directory"
    if os.path.exists(path):
        if os.access(path, os.W_OK):
            return None
        return f"cannot write the access log {path}: permission denied"
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(directory):
        return f"cannot create the access log {path}: the directory {directory} does not exist"
    if not os.path.isdir(directory):
        return f"cannot create the access log {path}: {directory} is not a directory"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"cannot create the access log {path}: the directory {directory} is not writable"
    return None


def filter_problems(config, source: str) -> list[Problem]:
    """Import every filter class `config` names (its module from the directory of `source`
    first), as a worker of `sluice run -c source` would; one Problem per filter that fails."""
    from engine.filters.loader import FilterModuleError, FilterModules

    allowed = FilterModules.at_start(config, directory=config_directory(source))
    problems = []
    for i, spec in enumerate(config.filters):
        if spec.python is None:
            continue
        try:
            allowed.load_class(i, spec.python)
        except FilterModuleError as exc:
            problems.append(Problem(source, exc.where, exc.reason))
    return problems


def config_directory(source: str) -> str:
    """The directory filter modules are found in first: the config (or snapshot) file's."""
    return os.path.dirname(os.path.abspath(source))


def check(config, source: str) -> list[Problem]:
    """Everything above, for `sluice validate`."""
    problems = filter_problems(config, source)
    reason = access_log_problem(config.access_log.path)
    if reason is not None:
        problems.append(Problem(source, "access_log.path", reason))
    return problems

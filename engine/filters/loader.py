"""Which Python modules a config may import filters from, and loading a filter class safely.

Why an allow list: importing a module runs its code, and a config can arrive over the admin API
(`PUT /snapshot`), a watched file or SIGHUP. If any `python: module:Class` were imported, a pushed
snapshot naming `subprocess:Popen` (or any module with import side effects) would run code in
every worker. So the modules filters may come from are fixed when the process starts: the modules
named in the config it was started with, plus those the operator names explicitly
(`sluice run --filter-module MODULE`, `engine.Proxy(..., filter_modules=[...])`). A later config
naming any other module is refused before anything is imported, with the path of the offending
field; a name that is allowed but is not an `engine.Filter` subclass is refused before it is
called.

Where a module is found: in the directory of the config file sluice was started with, then on
`sys.path` (CONFIG.md), so a `filters.py` beside `sluice.yaml` works without PYTHONPATH. The
directory is not put on `sys.path`: it is searched first for the top-level package of an allowed
module only (`_DirectoryFirst`), so a file there can never shadow any other import (a `json.py`
beside the config is never imported).

Who calls it. The supervisor checks every new config with `FilterModules.problems` before a worker
sees it (it never imports filter modules itself); `engine.policy.link.build_filters` loads with
`FilterModules.load_class`, which checks again (a worker must not rely on its caller). Pure
Python, no compiled module: the supervisor checks without building tables, and `sluice validate`
imports the classes (engine/preflight.py) exactly as `sluice run` would.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Iterable

CLI_HINT = "modules named in the config at start, or --filter-module"
EMBED_HINT = "modules named in the config the Proxy started with, or filter_modules="


class FilterModuleError(ValueError):
    """A filter spec refused before import or before its class was called. `where` is the
    field's path (`filters[0].python`), `reason` what is wrong with it."""

    def __init__(self, where: str, reason: str):
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


def modules_of(config) -> set[str]:
    """The modules a config's filters name (`mypkg.filters` of `mypkg.filters:ApiKey`)."""
    return {spec.python.partition(":")[0] for spec in config.filters if spec.python}


class FilterModules:
    """The allow list, fixed once: `FilterModules.at_start(config, extra)`."""

    def __init__(self, modules: Iterable[str], hint: str = CLI_HINT,
                 directory: str | None = None):
        """`directory` (the config file's) is searched before `sys.path`; None: sys.path only."""
        self.modules = frozenset(modules)
        self.hint = hint
        self.directory = os.path.abspath(directory) if directory is not None else None

    @classmethod
    def at_start(cls, config, extra: Iterable[str] = (), hint: str = CLI_HINT,
                 directory: str | None = None) -> FilterModules:
        return cls(modules_of(config) | set(extra), hint, directory)

    def refusal(self, module: str) -> str | None:
        """Why `module` may not be imported, or None when it may."""
        if module in self.modules:
            return None
        return f"module '{module}' is not in the filter module allow list ({self.hint})"

    def problems(self, config, provided: Iterable[str] = ()) -> list[FilterModuleError]:
        """Every filter of `config` that would import a module outside the list (a filter the
        embedding program provides by name is not imported, so it is not checked)."""
        provided = set(provided)
        out = []
        for i, spec in enumerate(config.filters):
            if spec.python and spec.name not in provided:
                reason = self.refusal(spec.python.partition(":")[0])
                if reason is not None:
                    out.append(FilterModuleError(f"filters[{i}].python", reason))
        return out

    def load_class(self, index: int, python: str) -> type:
        """The class named by `python` (`module:Class`) of `filters[index]`: the module is checked
        against the list before it is imported, the attribute before it is returned."""
        where = f"filters[{index}].python"
        module, _, attr = python.partition(":")
        reason = self.refusal(module)
        if reason is not None:
            raise FilterModuleError(where, reason)
        try:
            found = getattr(self._import(where, module), attr)
        except AttributeError:
            raise FilterModuleError(where, f"module '{module}' has no '{attr}'") from None
        if not is_filter_class(found):
            raise FilterModuleError(where, f"'{python}' is not a subclass of engine.Filter")
        return found

    def _import(self, where: str, module: str):
        """Import `module` (already allowed), the config's directory first; whatever importing
        raises (user code: ImportError, SyntaxError, anything its top level does) becomes a
        FilterModuleError naming the field."""
        if self.directory is not None:
            _DirectoryFirst.install(self.directory, {m.partition(".")[0] for m in self.modules})
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            raise FilterModuleError(where, f"cannot import module '{module}': {exc}") from None
        except Exception as exc:
            raise FilterModuleError(where, f"importing module '{module}' raised "
                                           f"{type(exc).__name__}: {exc}") from exc


class _DirectoryFirst(importlib.abc.MetaPathFinder):
    """Finds the named top-level modules (those of the allow list) in one directory, before
    `sys.path` is searched; every other name falls through to the usual finders."""

    def __init__(self, directory: str, names: frozenset[str]):
        self.directory = directory
        self.names = names

    @classmethod
    def install(cls, directory: str, names: set[str]) -> None:
        names = frozenset(names)
        for finder in sys.meta_path:
            if isinstance(finder, cls) and finder.directory == directory \
                    and finder.names == names:
                return
        # after the built-in and frozen importers (a filter module cannot replace `sys`),
        # before the one that searches sys.path
        at = next((i for i, f in enumerate(sys.meta_path)
                   if f is importlib.machinery.PathFinder), len(sys.meta_path))
        sys.meta_path.insert(at, cls(directory, names))

    def find_spec(self, fullname, path=None, target=None):
        if path is not None or fullname not in self.names:
            return None          # a submodule is found in its package's __path__ as usual
        return importlib.machinery.PathFinder.find_spec(fullname, [self.directory])


def is_filter_class(obj) -> bool:
    """A class object deriving from engine.Filter (checked before the class is ever called)."""
    from engine.filters.base import Filter

    return isinstance(obj, type) and issubclass(obj, Filter)

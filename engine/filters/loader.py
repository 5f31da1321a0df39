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

Who calls it. The supervisor checks every new config with `FilterModules.problems` before a worker
sees it (it never imports filter modules itself); `engine.policy.link.build_filters` loads with
`FilterModules.load_class`, which checks again (a worker must not rely on its caller). Pure
Python, no compiled module: the supervisor checks without building tables.
"""

from __future__ import annotations

import importlib
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

    def __init__(self, modules: Iterable[str], hint: str = CLI_HINT):
        self.modules = frozenset(modules)
        self.hint = hint

    @classmethod
    def at_start(cls, config, extra: Iterable[str] = (), hint: str = CLI_HINT) -> FilterModules:
        return cls(modules_of(config) | set(extra), hint)

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
            found = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            raise FilterModuleError(where, f"cannot import module '{module}': {exc}") from None
        except AttributeError:
            raise FilterModuleError(where, f"module '{module}' has no '{attr}'") from None
        if not is_filter_class(found):
            raise FilterModuleError(where, f"'{python}' is not a subclass of engine.Filter")
        return found


def is_filter_class(obj) -> bool:
    """A class object deriving from engine.Filter (checked before the class is ever called)."""
    from engine.filters.base import Filter

    return isinstance(obj, type) and issubclass(obj, Filter)

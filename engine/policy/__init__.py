"""The policy layer: the config's schema, its validation with precise errors, and (later) the
snapshot. See DESIGN.md, section Rooms.

Nothing here imports a compiled module (except `link`, which is imported explicitly by the
runtime), so `sluice validate` and `sluice compile` run on a machine without a compiler; a test
keeps it that way.

    from engine.policy import load_config, ConfigError
    try:
        config = load_config("sluice.yaml")
    except ConfigError as error:
        for problem in error.problems:   # every error (and warning) at once
            print(problem)               # FILE: routes[2].match.path_prefix: reason
"""
from .addresses import Address
from .errors import ConfigError, Problem, Severity
from .load import (
    LoadResult,
    check_data,
    check_file,
    check_text,
    load_config,
    load_config_text,
    validate_file,
)
from .model import (
    AccessLog,
    Admin,
    Cluster,
    Config,
    DirectResponse,
    Endpoint,
    Limits,
    Listener,
    Match,
    Pool,
    RateLimit,
    Rewrite,
    Route,
    Target,
)

__all__ = [
    "AccessLog", "Address", "Admin", "Cluster", "Config", "ConfigError", "DirectResponse",
    "Endpoint", "Limits", "Listener", "LoadResult", "Match", "Pool", "Problem", "RateLimit",
    "Rewrite", "Route", "Severity", "Target", "check_data", "check_file", "check_text",
    "load_config", "load_config_text", "validate_file",
]

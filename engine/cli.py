"""The `sluice` command (CONFIG.md, "Command line").

Errors in the user's config are printed one per line as `FILE: path: reason`, with exit status 1
and no traceback: a traceback is for our bugs, not for their typos.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="sluice", description="An L7 proxy data plane.")
    sub = ap.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="validate, compile and serve a config")
    src = run.add_mutually_exclusive_group(required=True)
    src.add_argument("-c", "--config", help="YAML config file")
    src.add_argument("-s", "--snapshot", help="compiled msgpack snapshot")
    run.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                     help="worker processes (default: one per CPU)")
    run.add_argument("--admin", metavar="ADDR",
                     help="admin API address host:port (overrides admin.address)")
    run.add_argument("--drain-timeout", type=float, default=30.0,
                     help="seconds a drain waits for in-flight requests (default 30)")
    run.add_argument("--access-log", help="stderr | stdout | off | FILE (overrides access_log.path)")
    run.add_argument("--filter-module", action="append", default=[], metavar="MODULE",
                     type=_module_name,
                     help="also allow Python filters from MODULE in configs applied later "
                          "(repeatable; the modules the config at start names are always "
                          "allowed, no other module is ever imported)")

    val = sub.add_parser("validate", help="check a config and print every error")
    val.add_argument("file")
    val.set_defaults(handler=cmd_validate)

    from engine.policy.snapshot import add_compile_parser

    add_compile_parser(sub)
    try:
        from engine.policy.explain import add_explain_parser
    except ImportError:      # explain needs the compiled router
        pass
    else:
        add_explain_parser(sub)
    run.set_defaults(handler=cmd_run)
    return ap


def _module_name(text: str) -> str:
    """A dotted module name (`mypkg.filters`), as in a filter's `python: module:Class`."""
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", text):
        raise argparse.ArgumentTypeError(f"'{text}' is not a module name (e.g. mypkg.filters)")
    return text


def _source_loader(args):
    """A function that (re)reads the config source: YAML (-c) or a compiled snapshot (-s)."""
    if args.snapshot:
        from engine.policy.snapshot import load_snapshot

        path = args.snapshot
        return lambda: (load_snapshot(path)[1], path)
    from engine.policy import load_config

    path = args.config
    return lambda: (load_config(path), path)


def _print_problems(exc: Exception) -> None:
    problems = getattr(exc, "problems", None)
    for problem in problems or [exc]:
        print(problem, file=sys.stderr)


def cmd_validate(args) -> int:
    from engine.policy import validate_file

    problems = validate_file(args.file)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if any(p.severity == "error" for p in problems) else 0


def cmd_run(args) -> int:
    from engine.policy import ConfigError
    from engine.policy.snapshot import SnapshotError

    load = _source_loader(args)
    try:
        config, source = load()
    except (ConfigError, SnapshotError, OSError) as exc:
        _print_problems(exc)
        return 1
    if args.admin:
        from pydantic import ValidationError

        from engine.policy import Admin

        try:
            admin = Admin(address=args.admin, token=config.admin.token)
        except ValidationError as exc:
            print(f"--admin {args.admin}: {exc.errors()[0]['msg']}", file=sys.stderr)
            return 1
        config = config.model_copy(update={"admin": admin})
    unbuilt = [i for i, f in enumerate(config.filters) if f.python is None]
    if unbuilt:
        # only an embedding program can provide a filter without an import path
        for i in unbuilt:
            print(f"{source}: filters[{i}].python: required to run this filter in the sluice "
                  "binary (module:Class)", file=sys.stderr)
        return 1
    from engine.runtime.supervisor import Supervisor

    return Supervisor(config, workers=args.workers, drain_timeout=args.drain_timeout,
                      access_log_path=args.access_log, source=source, watch=source,
                      load_source=load, filter_modules=args.filter_module).run()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("watchfiles").setLevel(logging.WARNING)
    args = _parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())

"""The `sluice` command (CONFIG.md, "Command line").

Errors in the user's config are printed one per line as `FILE: path: reason`, with exit status 1
and no traceback: a traceback is for our bugs, not for their typos. A start that fails for any
reason (the config, a port, the access log, a worker that cannot load a filter) exits 1 with one
line on stderr; `--log-level debug` adds the traceback. Bad command-line arguments exit 2
(argparse).

What the command line overrides in the config, at start and on every reload: `--admin`
(admin.address), `--admin-token` or SLUICE_ADMIN_TOKEN (admin.token, so that a config with a
non-loopback admin address may leave the token out of the file), `--access-log`.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys

TOKEN_ENV = "SLUICE_ADMIN_TOKEN"
TOKEN_WHERE = f"set admin.token in the config, or give --admin-token or {TOKEN_ENV}"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_LEVEL_HELP = "what the log on stderr shows (default info; debug adds tracebacks)"
NOT_BUILT = ("the compiled modules (engine._fast) are missing: this looks like a source tree "
             "that was not built. Install sluice first (pip install .), or build them in place "
             "(python3 setup.py build_ext --inplace)")
NEEDS_COMPILED = ("run", "explain")    # validate and compile run anywhere
# the first byte of a msgpack map (fixmap, map 16, map 32): never the first byte of UTF-8 text
MSGPACK_MAP = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}


def version() -> str:
    """The installed package's version, else the source tree's (engine.__version__)."""
    from importlib import metadata

    try:
        return metadata.version("sluice")
    except metadata.PackageNotFoundError:
        import engine

        return engine.__version__


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="sluice", description="An L7 proxy data plane.")
    ap.add_argument("--version", action="version", version=f"sluice {version()}")
    ap.add_argument("--log-level", choices=LOG_LEVELS, default="info", help=LOG_LEVEL_HELP)
    sub = ap.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="validate, compile and serve a config")
    src = run.add_mutually_exclusive_group(required=True)
    src.add_argument("-c", "--config", help="YAML config file")
    src.add_argument("-s", "--snapshot", help="compiled msgpack snapshot")
    run.add_argument("--workers", type=_positive_int, default=os.cpu_count() or 1,
                     help="worker processes, at least 1 (default: one per CPU)")
    run.add_argument("--admin", metavar="ADDR",
                     help="admin API address host:port (overrides admin.address)")
    run.add_argument("--admin-token", metavar="TOKEN", type=_token,
                     help="admin API bearer token; overrides admin.token in the config "
                          f"(default: ${TOKEN_ENV}, which overrides it too and keeps the token "
                          "out of the process list)")
    run.add_argument("--drain-timeout", type=float, default=30.0,
                     help="seconds a drain waits for in-flight requests (default 30)")
    run.add_argument("--access-log", help="stderr | stdout | off | FILE (overrides access_log.path)")
    run.add_argument("--filter-module", action="append", default=[], metavar="MODULE",
                     type=_module_name,
                     help="also allow Python filters from MODULE in configs applied later "
                          "(repeatable; the modules the config at start names are always "
                          "allowed, no other module is ever imported)")
    # also after the command (`sluice run --log-level debug`); the default is the one above
    run.add_argument("--log-level", choices=LOG_LEVELS, default=argparse.SUPPRESS,
                     help=LOG_LEVEL_HELP)

    val = sub.add_parser(
        "validate", help="check a config and print every error",
        description="Check FILE as `sluice run -c FILE` would before serving: its schema and "
                    "references, then that every filter class imports (from FILE's directory, "
                    "then sys.path) and that the access log can be written; a token in "
                    f"${TOKEN_ENV} counts as admin.token. Prints `OK: FILE (N listeners, N "
                    "routes, N clusters)` on success.")
    val.add_argument("file")
    val.set_defaults(handler=cmd_validate)

    from engine.policy.snapshot import add_compile_parser

    add_compile_parser(sub)
    try:
        from engine.policy.explain import add_explain_parser
    except ImportError:      # explain needs the compiled router: say so when it is asked for
        stub = sub.add_parser("explain", help="(needs the compiled modules)", add_help=False,
                              prefix_chars="\x00")
        stub.add_argument("rest", nargs="*")
        stub.set_defaults(handler=lambda args: _not_built("explain"))
    else:
        add_explain_parser(sub)
    run.set_defaults(handler=cmd_run)
    return ap


def _module_name(text: str) -> str:
    """A dotted module name (`mypkg.filters`), as in a filter's `python: module:Class`."""
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", text):
        raise argparse.ArgumentTypeError(f"'{text}' is not a module name (e.g. mypkg.filters)")
    return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _token(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("an empty token would let anyone in; give one")
    return text


def _not_built(command: str) -> int:
    print(f"sluice {command}: {NOT_BUILT}", file=sys.stderr)
    return 1


def _compiled() -> bool:
    from importlib.util import find_spec

    return find_spec("engine._fast.proxy") is not None


def _admin_token(args) -> str | None:
    """--admin-token, else $SLUICE_ADMIN_TOKEN (unset or empty: none)."""
    return args.admin_token if args.admin_token is not None else (os.environ.get(TOKEN_ENV) or None)


def _check_yaml(path: str, token: str | None):
    """check_file(path), with admin.token set to `token` (when given) before validation: the
    model requires a token with a non-loopback admin.address, and it may come from the command
    line or the environment instead of the file."""
    from engine.policy.load import check_data, check_file, config_directory
    from engine.policy.yaml_source import YamlSyntaxError, parse_yaml

    if token is None:
        return check_file(path)
    try:
        with open(path, "rb") as file:
            parsed = parse_yaml(file.read().decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError, YamlSyntaxError):
        return check_file(path)          # which says what is wrong, in its words
    data = parsed.data
    if isinstance(data, dict) and isinstance(data.get("admin", {}), (dict, type(None))):
        data = {**data, "admin": {**(data.get("admin") or {}), "token": token}}
    return check_data(data, path, parsed.positions, parsed.problems,
                      base_dir=config_directory(path))


def _source_loader(args, token: str | None):
    """A function that (re)reads the config source, YAML (-c) or a compiled snapshot (-s), and
    applies the command line's overrides: the same at start and on every reload."""
    if args.snapshot:
        from engine.policy.snapshot import load_snapshot

        path = args.snapshot

        def load():
            return _overridden(load_snapshot(path)[1], args.admin, token), path
        return load
    log = logging.getLogger("engine.policy.load")
    path = args.config

    def load():
        result = _check_yaml(path, token)
        config = result.raise_for_errors()
        for warning in result.warnings:
            log.warning("%s", warning)
        return _overridden(config, args.admin, token), path
    return load


def _overridden(config, address: str | None, token: str | None):
    """`config` with admin.address = --admin and admin.token = --admin-token/$SLUICE_ADMIN_TOKEN
    where given; raises _Refused (the line to print) for a bad --admin."""
    if address is None and token is None:
        return config
    from pydantic import ValidationError

    from engine.policy import Admin

    token = token or config.admin.token
    if address is None:
        return config.model_copy(update={"admin": Admin(address=config.admin.address,
                                                        token=token)})
    try:
        probe = Admin(address=address, token="-")     # the address alone
    except ValidationError as exc:
        raise _Refused(f"--admin {address}: {_first_error(exc)}") from None
    if token is None and not probe.address.is_loopback:
        raise _Refused(f"--admin {address}: admin.token: required because {probe.address} is "
                       "not a loopback address (the admin API can replace the running config); "
                       f"{TOKEN_WHERE}")
    return config.model_copy(update={"admin": Admin(address=probe.address, token=token)})


class _Refused(Exception):
    """A command-line value refused before anything starts: the message is the line to print."""


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if errors is None:
        return str(exc)
    msg = errors()[0]["msg"]
    return msg.removeprefix("Value error, ")


def _token_hint(problem) -> str:
    """A problem as `run` and `validate` print it: the admin.token one also says where else a
    token may be given."""
    text = str(problem)
    if problem.path == "admin.token" and problem.is_error:
        text += f"; {TOKEN_WHERE}"
    return text


def _looks_like_snapshot(path: str) -> bool:
    try:
        with open(path, "rb") as file:
            head = file.read(1)
    except OSError:
        return False
    return bool(head) and head[0] in MSGPACK_MAP


def cmd_validate(args) -> int:
    if _looks_like_snapshot(args.file):
        print(f"{args.file}: <root>: a compiled snapshot (msgpack), not a YAML config; "
              f"`sluice run -s {args.file}` serves it (loading it validates it)", file=sys.stderr)
        return 1
    # as `run` would see it: a token in the environment satisfies a non-loopback admin.address
    result = _check_yaml(args.file, os.environ.get(TOKEN_ENV) or None)
    for problem in result.problems:
        print(_token_hint(problem), file=sys.stderr)
    if not result.ok:
        return 1
    from engine import preflight

    problems = preflight.check(result.config, args.file)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    config = result.config
    print(f"OK: {args.file} ({_count(len(config.listeners), 'listener')}, "
          f"{_count(len(config.routes), 'route')}, {_count(len(config.clusters), 'cluster')})")
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def cmd_run(args) -> int:
    from engine.policy import ConfigError
    from engine.policy.snapshot import SnapshotError

    if args.config and _looks_like_snapshot(args.config):
        print(f"{args.config}: <root>: a compiled snapshot (msgpack), not a YAML config: "
              f"run it with -s {args.config}", file=sys.stderr)
        return 1
    load = _source_loader(args, _admin_token(args))
    try:
        config, source = load()
    except _Refused as exc:
        print(exc, file=sys.stderr)
        return 1
    except (ConfigError, SnapshotError) as exc:
        for problem in exc.problems:
            print(_token_hint(problem), file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{args.config or args.snapshot}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    unbuilt = [i for i, f in enumerate(config.filters) if f.python is None]
    if unbuilt:
        # only an embedding program can provide a filter without an import path
        for i in unbuilt:
            print(f"{source}: filters[{i}].python: required to run this filter in the sluice "
                  "binary (module:Class)", file=sys.stderr)
        return 1
    from engine.preflight import access_log_problem, config_directory

    access_log = args.access_log or config.access_log.path
    reason = access_log_problem(access_log)
    if reason is not None:
        where = f"--access-log {access_log}" if args.access_log else f"{source}: access_log.path"
        print(f"{where}: {reason}", file=sys.stderr)
        return 1
    from engine.runtime.supervisor import Supervisor

    return Supervisor(config, workers=args.workers, drain_timeout=args.drain_timeout,
                      access_log_path=args.access_log, source=source, watch=source,
                      load_source=load, filter_modules=args.filter_module,
                      filter_directory=config_directory(source)).run()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = getattr(logging, args.log_level.upper())
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("watchfiles").setLevel(max(level, logging.WARNING))
    if args.command in NEEDS_COMPILED and not _compiled():
        return _not_built(args.command)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())

"""Snapshots: a validated config as deterministic msgpack, what a control plane ships.

Theory of operation
-------------------
Who calls it. `sluice compile` (`cmd_compile`, via `compile_file`), `sluice run -s` and
`sluice explain -s` (`load_snapshot`), and the runtime: the admin `PUT /snapshot` and hot reload
receive bytes and call `load_snapshot`; `encode_snapshot` turns a Config built in memory into the
same bytes; workers build what they serve with `trusted_config` (below, "Validated once").
Pure Python: no compiled module is imported here (a test keeps it that way).

The format (schema version 1). One msgpack map with two entries, in this order:

    {"sluice_snapshot": {                  # the header; its key doubles as the magic number
        "schema_version": 1,               # the config schema (CONFIG.md) the content follows
        "config_version": "3f2a9c0d41be",  # the first 12 hex digits of sha256
        "sha256": "<64 hex digits>",       # of the content bytes, exactly as stored
        "created_at": "2024-05-01T12:00:00Z",
        "source": "sluice.yaml"},          # the file name it was compiled from (informational)
     "content": <bin>}                     # msgpack of the config as plain data

The content is `config.model_dump(mode="json")` with every map's keys sorted, packed on its own
and stored as a byte string, so the digest covers exactly the bytes that are decoded: checking it
needs no re-encoding, and a producer in another language only has to hash what it wrote. Defaults
are written out, so a snapshot means what it meant when it was compiled.

`config_version` is derived from the digest: the model has no user-written version field. If
`Config` gains a string `version` field, that value becomes the config version (and is checked
against the content on load the same way).

Determinism. The bytes are a function of the content, the source name and created-at. The content
is canonical (sorted keys, floats always float64, msgpack's shortest integers), so the same YAML
always gives the same content, digest and config version. `created_at` is, for `compile_file`,
SOURCE_DATE_EPOCH when set (the reproducible-builds convention), else the YAML file's mtime
(seconds): compiling an unchanged file again gives byte-identical output; touching the file
changes `created_at` (only), so a pipeline that needs identical bytes across checkouts sets
SOURCE_DATE_EPOCH (for example to the commit time). The source name is the file's base name, so
the directory a file is compiled from does not matter.

What loading refuses, each as one `SnapshotError` line (`FILE: where: reason`): input that is not
a snapshot (not msgpack, or not this map; YAML text gets a hint), a truncated one, trailing bytes,
an unknown schema version, a header with a missing or mistyped field, content whose sha256 or
config version does not match, and content the model refuses today (every problem, as `validate`
prints them: a snapshot made by an older build must still pass today's validation). Unknown header
keys are ignored, so a later build may add informational fields without a new schema version.
The header's informational fields (`created_at`, `source`) are not covered by the digest; nothing
that serves depends on them.

Validated once. Whoever serves a snapshot does not validate it again: the supervisor (or the
embedded `engine.Proxy`) validates a config once, encodes it, and hands the serving side the
snapshot bytes with the content's sha256 it validated; `trusted_config` checks the content
against that digest and decodes it straight into the model (engine/policy/trusted.py), which
costs about what unpickling the Config would, a fraction of validating it. A digest mismatch is
refused like any bad snapshot.

What it must never do: serve from content it has not verified and validated (validated here, or
vouched for by its digest); print tracebacks for bad input (every refusal is a `SnapshotError`,
which is a `ConfigError`).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import msgpack

from .errors import ROOT, ConfigError, Problem
from .load import check_data, check_file
from .model import Config
from .trusted import construct

SCHEMA_VERSION = 1
MAGIC_KEY = "sluice_snapshot"
CONTENT_KEY = "content"
VERSION_DIGITS = 12

# msgpack of {"sluice_snapshot": ...}: a fixmap of 2, then the 15-byte fixstr key.
_PREFIX = b"\x82" + msgpack.packb(MAGIC_KEY)


class SnapshotError(ConfigError):
    """A snapshot was refused. Like `ConfigError`, `problems` holds one `Problem` per line
    (`FILE: where: reason`); most refusals are one line, a content that fails validation gives
    every error."""

    @classmethod
    def one(cls, source: str, reason: str, where: str = ROOT) -> SnapshotError:
        return cls([Problem(source, where, reason)])


@dataclass(frozen=True)
class SnapshotHeader:
    schema_version: int
    config_version: str
    sha256: str
    created_at: str
    source: str

    def as_dict(self) -> dict[str, Any]:
        """For `/config_dump` and logs."""
        return asdict(self)


# -- encoding ----------------------------------------------------------------------------------


def canonical(data: Any) -> Any:
    """Plain data with every map's keys sorted (recursively); sequences keep their order."""
    if isinstance(data, Mapping):
        return {key: canonical(data[key]) for key in sorted(data)}
    if isinstance(data, (list, tuple)):
        return [canonical(item) for item in data]
    return data


def content_bytes(config: Config) -> bytes:
    """The canonical msgpack of a config: what the digest and the config version are of."""
    return msgpack.packb(canonical(config.model_dump(mode="json")), use_bin_type=True)


def config_version(config: Config, digest: str) -> str:
    """The config's own `version` if the model has one, else the digest's first 12 hex digits."""
    own = getattr(config, "version", None)
    return own if isinstance(own, str) and own else digest[:VERSION_DIGITS]


def format_time(seconds: float) -> str:
    """RFC 3339, UTC, whole seconds: `2024-05-01T12:00:00Z`."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(seconds)))


def source_date_epoch() -> int | None:
    """SOURCE_DATE_EPOCH (reproducible-builds.org), or None when unset; ValueError if malformed."""
    text = os.environ.get("SOURCE_DATE_EPOCH")
    if text is None or text == "":
        return None
    if not text.isdigit() or not text.isascii():
        raise ValueError(f"SOURCE_DATE_EPOCH is '{text}', expected a whole number of seconds "
                         "since 1970-01-01 UTC")
    return int(text)


def encode_snapshot(config: Config, source_name: str, *,
                    created_at: float | None = None) -> bytes:
    """The snapshot of a validated `config`. `created_at` is seconds since the epoch; by default
    SOURCE_DATE_EPOCH if set, else now (pass it for byte-identical output; `compile_file` passes
    the file's mtime)."""
    return snapshot_of(config, source_name, created_at=created_at)[1]


def snapshot_of(config: Config, source_name: str, *,
                created_at: float | None = None) -> tuple[SnapshotHeader, bytes]:
    """`encode_snapshot` with the header too (its config version and digest), without decoding
    the bytes again."""
    if created_at is None:
        epoch = source_date_epoch()
        created_at = time.time() if epoch is None else epoch
    content = content_bytes(config)
    digest = hashlib.sha256(content).hexdigest()
    header = SnapshotHeader(SCHEMA_VERSION, config_version(config, digest), digest,
                            format_time(created_at), source_name)
    # insertion order is the byte order: the magic key first, the header in field order
    data = msgpack.packb({MAGIC_KEY: header.as_dict(), CONTENT_KEY: content}, use_bin_type=True)
    return header, data


def compile_file(path: str | os.PathLike[str]) -> tuple[SnapshotHeader, bytes, tuple[Problem, ...]]:
    """Compile a YAML file: (header, snapshot bytes, warnings). Raises `ConfigError` with every
    problem when the config has errors, ValueError for a malformed SOURCE_DATE_EPOCH.

    created_at is SOURCE_DATE_EPOCH when set, else the file's mtime; the source name is the
    file's base name (see the module docstring)."""
    result = check_file(path)
    config = result.raise_for_errors()
    epoch = source_date_epoch()
    created_at = os.stat(path).st_mtime if epoch is None else epoch
    header, data = snapshot_of(config, os.path.basename(os.fspath(path)), created_at=created_at)
    return header, data, result.warnings


# -- decoding ----------------------------------------------------------------------------------


def load_snapshot(source: bytes | bytearray | memoryview | str | os.PathLike[str], *,
                  name: str | None = None) -> tuple[SnapshotHeader, Config]:
    """Verify and validate a snapshot (bytes, or a file path): (header, Config), or
    `SnapshotError`. `name` is how messages name bytes input (default `<snapshot>`)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = name or "<snapshot>"
    else:
        label = name or os.fspath(source)
        try:
            with open(source, "rb") as file:
                data = file.read()
        except OSError as error:
            raise SnapshotError.one(label, f"cannot read the file: {error.strerror or error}") \
                from None
    return decode_snapshot(data, label)


def decode_snapshot(data: bytes, label: str = "<snapshot>") -> tuple[SnapshotHeader, Config]:
    outer = _unpack_outer(data, label)
    header = _header(outer, label)
    content = outer.get(CONTENT_KEY)
    if not isinstance(content, bytes):
        raise SnapshotError.one(label, "missing or not a byte string", CONTENT_KEY)
    digest = hashlib.sha256(content).hexdigest()
    if digest != header.sha256:
        raise SnapshotError.one(label, (
            f"does not match its sha256 {_short(header.sha256)} (it is {_short(digest)}): the "
            "snapshot was changed or corrupted"), CONTENT_KEY)
    try:
        plain = msgpack.unpackb(content, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException) as error:
        raise SnapshotError.one(label, f"is not msgpack data ({_why(error)})", CONTENT_KEY) \
            from None
    result = check_data(plain, label)
    if result.config is None:
        raise SnapshotError(result.errors)
    expected = config_version(result.config, digest)
    if header.config_version != expected:
        raise SnapshotError.one(label, (
            f"'{header.config_version}' does not match the content (expected '{expected}')"),
            f"{MAGIC_KEY}.config_version")
    return header, result.config


def trusted_config(data: bytes, digest: str,
                   label: str = "<snapshot>") -> tuple[SnapshotHeader, Config]:
    """The Config of a snapshot whose content was validated once already, by whoever vouches
    for `digest` (the sha256 of the content it validated: the supervisor, or engine.Proxy).
    The content must hash to `digest`; it is then decoded straight into the model without
    validating it again (engine/policy/trusted.py). `SnapshotError` for bytes that are not that
    content (a digest mismatch: changed or corrupted on the way) or not of this build's model
    shape; nothing else is checked, so bytes from anyone else go through `load_snapshot`."""
    outer = _unpack_outer(data, label)
    header = _header(outer, label)
    content = outer.get(CONTENT_KEY)
    if not isinstance(content, bytes):
        raise SnapshotError.one(label, "missing or not a byte string", CONTENT_KEY)
    actual = hashlib.sha256(content).hexdigest()
    if actual != digest or header.sha256 != digest:
        raise SnapshotError.one(label, (
            f"does not match the digest it was validated with, {_short(digest)} (the content "
            f"is {_short(actual)}, its header says {_short(header.sha256)}): not the snapshot "
            "that was validated"), CONTENT_KEY)
    try:
        # object_hook: a Python call per map lets a thread waiting for the GIL (a worker's
        # event loop, while this runs in its executor) take it every switch interval; one C
        # call over the whole content would hold it for all of a 10,000-route config
        plain = msgpack.unpackb(content, raw=False, strict_map_key=True, use_list=False,
                                object_hook=_same)
        config = construct(Config, plain)
    except (ValueError, TypeError, msgpack.UnpackException) as error:   # ShapeError included
        raise SnapshotError.one(label, f"does not fit this build's config model ({_why(error)})",
                                CONTENT_KEY) from None
    if header.config_version != config_version(config, digest):
        raise SnapshotError.one(label, (
            f"'{header.config_version}' does not match the content"),
            f"{MAGIC_KEY}.config_version")
    return header, config


def _same(value: Any) -> Any:
    return value


def _unpack_outer(data: bytes, label: str) -> dict:
    if not data:
        raise SnapshotError.one(label, "empty: not a sluice snapshot")
    try:
        outer = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except msgpack.ExtraData as error:
        if isinstance(error.unpacked, dict) and MAGIC_KEY in error.unpacked:
            raise SnapshotError.one(label, (
                f"{_count(len(error.extra), 'unexpected byte')} after the end of the snapshot "
                "(two snapshots in one file?)")) from None
        raise SnapshotError.one(label, _not_a_snapshot(data)) from None
    except (ValueError, TypeError, msgpack.UnpackException) as error:
        common = min(len(data), len(_PREFIX))
        if data[:common] != _PREFIX[:common]:
            raise SnapshotError.one(label, _not_a_snapshot(data)) from None
        # msgpack bounds every declared length by the input's size (no allocation on trust):
        # "exceeds max_..._len" means, like "incomplete", that the data ends before it should
        why = str(error)
        if "incomplete" in why or "exceeds max_" in why:
            raise SnapshotError.one(label, (
                f"truncated: the snapshot ends early ({_count(len(data), 'byte')} read)")) \
                from None
        raise SnapshotError.one(label, f"corrupted: not valid msgpack ({_why(error)})") from None
    if not isinstance(outer, dict) or MAGIC_KEY not in outer:
        raise SnapshotError.one(label, _not_a_snapshot(data))
    return outer


def _header(outer: dict, label: str) -> SnapshotHeader:
    raw = outer[MAGIC_KEY]
    if not isinstance(raw, dict):
        raise SnapshotError.one(label, "the header is not a map", MAGIC_KEY)
    version = raw.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise SnapshotError.one(label, "missing or not an integer",
                                f"{MAGIC_KEY}.schema_version")
    if version != SCHEMA_VERSION:
        newer = " (made by a newer sluice?)" if version > SCHEMA_VERSION else ""
        raise SnapshotError.one(label, (
            f"schema version {version} is not supported{newer}: this build reads schema "
            f"version {SCHEMA_VERSION}"), f"{MAGIC_KEY}.schema_version")
    fields = {}
    for key in ("config_version", "sha256", "created_at", "source"):
        value = raw.get(key)
        if not isinstance(value, str):
            raise SnapshotError.one(label, "missing or not a string", f"{MAGIC_KEY}.{key}")
        fields[key] = value
    return SnapshotHeader(version, **fields)


def _not_a_snapshot(data: bytes) -> str:
    reason = "not a sluice snapshot (expected msgpack made by 'sluice compile')"
    head = data[:512]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.reason != "unexpected end of data":
            return reason
        text = head[:error.start].decode("utf-8")
    if text.strip() and all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return reason[:-1] + "; this is text: a YAML config is compiled with 'sluice compile' " \
                              "or run with -c)"
    return reason


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _short(digest: str) -> str:
    return digest[:VERSION_DIGITS] + "..." if len(digest) > VERSION_DIGITS else digest


def _why(error: BaseException) -> str:
    return str(error) or type(error).__name__


# -- command line ------------------------------------------------------------------------------


def add_compile_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`sluice compile FILE.yaml [-o FILE.msgpack]`."""
    parser = subparsers.add_parser(
        "compile", help="validate a config and write it as a msgpack snapshot",
        description="Validate FILE and write a msgpack snapshot. The same YAML gives the same "
                    "bytes; created-at is SOURCE_DATE_EPOCH if set, else FILE's mtime.")
    parser.add_argument("file", help="YAML config file")
    parser.add_argument("-o", "--output",
                        help="snapshot file to write (default: FILE with the suffix .msgpack); "
                             "'-' for standard output")
    parser.set_defaults(handler=cmd_compile)
    return parser


def cmd_compile(args: argparse.Namespace) -> int:
    """Exit 0 with the snapshot written (atomically: a watcher never sees half a file), or 1
    with every error on stderr as `FILE: path: reason`."""
    try:
        header, data, warnings = compile_file(args.file)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return 1
    except (ValueError, OSError) as error:
        print(f"sluice compile: {error}", file=sys.stderr)
        return 1
    for problem in warnings:
        print(problem, file=sys.stderr)
    output = args.output or os.path.splitext(args.file)[0] + ".msgpack"
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        try:
            _write_atomically(output, data)
        except OSError as error:
            print(f"{output}: {ROOT}: cannot write the snapshot: {error.strerror or error}",
                  file=sys.stderr)
            return 1
    print(f"{output}: config version {header.config_version}, sha256 {header.sha256}, "
          f"{len(data)} bytes", file=sys.stderr)
    return 0


def _write_atomically(path: str, data: bytes) -> None:
    """Write beside `path`, then rename over it: readers see the old file or the new one."""
    directory = os.path.dirname(os.path.abspath(path))
    temp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def main(argv: list[str] | None = None) -> int:
    """`python -m engine.policy.snapshot FILE.yaml -o FILE.msgpack` (before the CLI wires it)."""
    parser = argparse.ArgumentParser(prog="sluice")
    add_compile_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["compile", *(sys.argv[1:] if argv is None else argv)])
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())

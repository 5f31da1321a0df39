"""The JSON Schema of the config file, for editors (config/schema.json).

Generated from the model so it cannot drift; a test compares the committed file with what this
module produces now. The schema describes what a user types, not what the model stores:
durations and addresses are strings with patterns (see engine.policy.fields), defaults are
shown in the config's own spelling (`1s`, `127.0.0.1:9901`), and pydantic's per-property
titles ("Hash On") are dropped as noise. The validator remains the authority: the patterns are a
shape check for completion and highlighting, not the full rules.

    python -m engine.policy.schema            # rewrite config/schema.json
    python -m engine.policy.schema --check    # exit 1 if config/schema.json is stale
    python -m engine.policy.schema -o -       # print to stdout
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from . import durations
from .addresses import Address
from .model import Config

SCHEMA_VERSION = 1
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "config" / "schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


class _Generator(GenerateJsonSchema):
    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, Address):
            return str(dft)
        return super().encode_default(dft)


def build_schema() -> dict[str, Any]:
    schema = Config.model_json_schema(schema_generator=_Generator)
    _tidy(schema)
    return {
        "$schema": DIALECT,
        "title": f"sluice config (schema version {SCHEMA_VERSION})",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def render_schema() -> str:
    """The schema as committed: sorted keys, two-space indent, trailing newline."""
    return json.dumps(build_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _tidy(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _tidy(item)
        return
    if not isinstance(node, dict):
        return
    properties = node.get("properties")
    if isinstance(properties, dict):
        for prop in properties.values():
            prop.pop("title", None)
            if _is_duration(prop) and isinstance(prop.get("default"), (int, float)):
                prop["default"] = durations.format_duration(prop["default"])
    for value in node.values():
        _tidy(value)


def _is_duration(prop: dict[str, Any]) -> bool:
    options = prop.get("anyOf", [])
    return any(isinstance(o, dict) and o.get("pattern") == durations.PATTERN for o in options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.policy.schema",
                                     description="Write the config's JSON Schema.")
    parser.add_argument("-o", "--output", default=str(DEFAULT_PATH),
                        help="file to write, or - for stdout (default: config/schema.json)")
    parser.add_argument("--check", action="store_true",
                        help="only compare with the file; exit 1 if it differs")
    args = parser.parse_args(argv)
    text = render_schema()
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    path = Path(args.output)
    if args.check:
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            print(f"{path} is stale: run python -m engine.policy.schema", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""engine/policy/schema.py and the committed config/schema.json."""
import json
from pathlib import Path

import pytest
import yaml

from engine.policy.schema import DEFAULT_PATH, build_schema, main, render_schema
from engine.policy.yaml_source import parse_yaml

EXAMPLE = Path(__file__).parent / "fixtures" / "config_md_example.yaml"


def test_committed_schema_is_what_the_generator_produces_now():
    assert DEFAULT_PATH.read_text(encoding="utf-8") == render_schema(), \
        "config/schema.json is stale: run python -m engine.policy.schema"


def test_check_mode(tmp_path, capsys):
    path = tmp_path / "schema.json"
    assert main(["--check", "-o", str(path)]) == 1
    assert main(["-o", str(path)]) == 0
    assert main(["--check", "-o", str(path)]) == 0
    assert json.loads(path.read_text()) == build_schema()


def test_durations_and_addresses_are_strings_with_patterns():
    defs = build_schema()["$defs"]
    timeout = defs["Cluster"]["properties"]["connect_timeout"]
    assert {"type": "string", "pattern": timeout["anyOf"][0]["pattern"]} == timeout["anyOf"][0]
    assert timeout["default"] == "1s"
    address = defs["Admin"]["properties"]["address"]
    assert address["type"] == "string" and "pattern" in address
    assert address["default"] == "127.0.0.1:9901"
    assert defs["Pool"]["properties"]["idle_timeout"]["default"] == "1m"
    assert "title" not in defs["Cluster"]["properties"]["hash_on"]


def test_schema_accepts_the_config_md_example_and_refuses_unknown_fields():
    jsonschema = pytest.importorskip("jsonschema")
    schema = build_schema()
    # read as sluice reads it, YAML 1.2: PyYAML's YAML 1.1 makes the key `on` (retry.on) a
    # boolean, as YAML 1.1 tools do
    example = parse_yaml(EXAMPLE.read_text()).data
    jsonschema.validate(example, schema)
    example["routes"][0]["match"]["pathprefix"] = "/x"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(example, schema)

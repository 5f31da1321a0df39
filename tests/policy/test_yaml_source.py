"""engine/policy/yaml_source.py: YAML 1.2 scalars, positions, duplicate keys, syntax errors."""
import pytest

from engine.policy import yaml_source
from engine.policy.yaml_source import YamlSyntaxError, parse_yaml


def test_yaml_1_1_words_stay_strings():
    data = parse_yaml("a: off\nb: yes\nc: no\nd: on\ne: 1:30\nf: 0755\ng: Off\n").data
    assert data == {"a": "off", "b": "yes", "c": "no", "d": "on", "e": "1:30", "f": 755,
                    "g": "Off"}


def test_core_schema_scalars():
    data = parse_yaml("a: true\nb: FALSE\nc: ~\nd:\ne: 0x1f\nf: 0o17\ng: 1.5e3\nh: -.inf\n"
                      "i: '5'\nj: !!str 5\n").data
    assert data["a"] is True and data["b"] is False
    assert data["c"] is None and data["d"] is None
    assert (data["e"], data["f"], data["g"]) == (31, 15, 1500.0)
    assert data["h"] == float("-inf")
    assert data["i"] == "5" and data["j"] == "5"


def test_positions_of_keys_and_items_are_one_based():
    parsed = parse_yaml("routes:\n  - name: a\n    match: {path: /x}\n")
    assert parsed.positions[("routes",)] == (1, 1)
    assert parsed.positions[("routes", 0)] == (2, 5)
    assert parsed.positions[("routes", 0, "match")] == (3, 5)
    assert parsed.positions[("routes", 0, "match", "path")] == (3, 13)


def test_duplicate_keys_are_reported():
    parsed = parse_yaml("a: 1\nb: 2\na: 3\n")
    assert parsed.data == {"a": 1, "b": 2}
    assert parsed.problems == [(("a",), "duplicate key 'a' (first given at line 1)")]


def test_merge_keys_and_aliases():
    parsed = parse_yaml("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\nd: *b\n")
    assert parsed.data["c"] == {"x": 1, "y": 3}
    assert parsed.data["d"] == {"x": 1, "y": 2}
    assert parsed.positions[("c", "y")] == (4, 3)  # the explicit key keeps its own line
    assert parsed.positions[("c", "x")] == (1, 11)  # a merged key points at its definition
    assert parsed.problems == []


def test_quoted_merge_key_is_an_ordinary_key():
    assert parse_yaml('a: {"<<": 1}\n').data == {"a": {"<<": 1}}


def test_unsupported_tags_are_reported():
    parsed = parse_yaml("a: !custom x\nb: !!binary aGk=\n")
    assert parsed.problems == [
        (("a",), "unsupported YAML tag '!custom' for value 'x'"),
        (("b",), "unsupported YAML tag 'tag:yaml.org,2002:binary' for value 'aGk='"),
    ]


def test_recursive_alias_is_reported_not_followed():
    parsed = parse_yaml("a: &a [*a]\n")
    assert parsed.problems == [(("a", 0), "a YAML alias refers to a node that contains it")]


def test_alias_bombs_are_refused(monkeypatch):
    monkeypatch.setattr(yaml_source, "MAX_VALUES", 10_000)
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    parsed = parse_yaml("\n".join(lines) + "\n")
    assert parsed.data is None
    assert parsed.problems == [((), "the document expands to more than 10,000 values "
                                     "(through aliases?)")]


def test_empty_document_is_none():
    assert parse_yaml("").data is None
    assert parse_yaml("# only a comment\n").data is None


def _syntax_error(text):
    with pytest.raises(YamlSyntaxError) as caught:
        parse_yaml(text)
    return caught.value


def test_syntax_error_names_line_column_and_the_key_being_parsed():
    error = _syntax_error("routes:\n  - name: x\n    match: {path: /a\n")
    assert error.loc == ("routes", 0, "match")
    assert error.position == (4, 1)
    assert error.reason.startswith("invalid YAML at line 4, column 1: ")
    assert "flow mapping started at line 3, column 12" in error.reason


def test_syntax_error_on_a_tab_says_so():
    error = _syntax_error("a:\n\tb: 1\n")
    assert error.reason.startswith("invalid YAML at line 2, column 1: ")
    assert error.reason.endswith("; YAML indents with spaces, not tabs")


def test_two_documents_are_refused():
    error = _syntax_error("a: 1\n---\nb: 2\n")
    assert error.reason == "expected one YAML document, found a second one at line 2"


def test_control_character_is_located():
    error = _syntax_error("a: 1\nb: \x00\n")
    assert error.reason == ("invalid YAML at line 2, column 4: character #x0000: "
                            "control characters are not allowed")

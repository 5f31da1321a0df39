"""engine/policy/errors.py: how a problem is rendered."""
import pytest

from engine.policy.errors import (
    ConfigError,
    Problem,
    RuleCollector,
    RuleViolation,
    Severity,
    describe_value,
    expected_string,
    render_path,
)


@pytest.mark.parametrize("loc, text", [
    ((), "<root>"),
    (("admin",), "admin"),
    (("routes", 2, "match", "path_prefix"), "routes[2].match.path_prefix"),
    (("routes", 0, "match", "headers", "x-canary"), "routes[0].match.headers.x-canary"),
    (("routes", 0, "match", "headers", "a.b"), 'routes[0].match.headers["a.b"]'),
    (("listeners", 1), "listeners[1]"),
])
def test_render_path(loc, text):
    assert render_path(loc) == text


def test_error_renders_as_file_path_reason():
    problem = Problem("cfg.yaml", "routes[2].match.path_prefix", "a path starts with '/'")
    assert str(problem) == "cfg.yaml: routes[2].match.path_prefix: a path starts with '/'"
    assert problem.is_error


def test_warning_renders_with_a_warning_prefix():
    problem = Problem("cfg.yaml", "routes[1]", "route 'x' is not used", Severity.WARNING)
    assert str(problem) == "cfg.yaml: routes[1]: warning: route 'x' is not used"
    assert not problem.is_error


def test_config_error_lists_every_problem_one_per_line():
    error = ConfigError([Problem("f", "a", "bad"), Problem("f", "b", "odd", Severity.WARNING)])
    assert str(error) == "f: a: bad\nf: b: warning: odd"
    assert [p.path for p in error.errors] == ["a"]
    assert [p.path for p in error.warnings] == ["b"]


def test_rule_collector_raises_all_violations_together():
    rules = RuleCollector()
    rules.raise_if_any()  # nothing collected: no error
    rules.add(("a",), "first")
    rules.add(("b", 0), "second")
    with pytest.raises(RuleViolation) as caught:
        rules.raise_if_any()
    assert caught.value.items == ((("a",), "first"), (("b", 0), "second"))
    assert isinstance(caught.value, ValueError)  # so pydantic reports it as a value_error


@pytest.mark.parametrize("value, text", [
    (None, "an empty value (null)"),
    (True, "the boolean true"),
    (5, "the number 5"),
    (1.5, "the number 1.5"),
    ("x", "'x'"),
    ({}, "a mapping"),
    ([], "a list"),
])
def test_describe_value_names_what_yaml_produced(value, text):
    assert describe_value(value) == text


def test_expected_string_suggests_quoting_a_number():
    assert expected_string(1) == 'expected a string, got the number 1 (quote it: "1")'
    assert expected_string([]) == "expected a string, got a list"

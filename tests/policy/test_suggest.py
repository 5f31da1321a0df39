"""engine/policy/suggest.py"""
from engine.policy.suggest import did_you_mean


def test_suggests_the_closest_word():
    fields = ["host", "path", "path_prefix", "path_regex", "methods", "headers"]
    assert did_you_mean("pathprefix", fields) == "; did you mean 'path_prefix'?"
    assert did_you_mean("method", fields) == "; did you mean 'methods'?"


def test_suggests_across_case():
    assert did_you_mean("API-V1", ["api-v1", "web"]) == "; did you mean 'api-v1'?"


def test_says_nothing_when_nothing_is_close():
    assert did_you_mean("zzz", ["host", "path"]) == ""
    assert did_you_mean("x", []) == ""
    assert did_you_mean(5, ["a"]) == ""  # type: ignore[arg-type]

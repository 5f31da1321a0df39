"""engine/policy/pathregex.py: path_regex runs on RE2, and what RE2 cannot run is refused."""
import pytest

from engine.policy import check_text
from engine.policy.pathregex import compile_path_regex, fullmatch, matcher, problem


def test_matches_the_whole_path():
    assert fullmatch("/users/[0-9]+", "/users/42")
    assert not fullmatch("/users/[0-9]+", "/users/42/x")
    assert not fullmatch("/users/[0-9]+", "/v1/users/42")
    assert fullmatch(compile_path_regex("/a|/b"), b"/b")


def test_catastrophic_backtracking_pattern_is_accepted_and_answers():
    # `re` takes time exponential in the a's here; RE2 time linear in the path
    assert problem("/(a+)+$") is None
    assert not fullmatch("/(a+)+$", "/" + "a" * 10_000 + "!")
    assert fullmatch("/(a+)+$", "/" + "a" * 10_000)


@pytest.mark.parametrize("pattern, hint", [
    (r"/(a)\1", "backreferences are not supported"),
    (r"/(?P<x>a)(?P=x)", "backreferences are not supported"),
    (r"/(?=admin).*", "lookahead and lookbehind are not supported"),
    (r"/(?<!x)a", "lookahead and lookbehind are not supported"),
    (r"/(?>a+)", "atomic groups are not supported"),
    (r"/a++", "possessive quantifiers are not supported"),
    (r"/a{2000}", "repetition counts go up to 1000"),
])
def test_patterns_re2_cannot_run_are_refused_with_the_reason(pattern, hint):
    why = problem(pattern)
    assert why is not None
    assert why.startswith("not supported by RE2 (linear-time matching): ")
    assert why.endswith(f"({hint})")
    with pytest.raises(ValueError, match="not supported by RE2"):
        compile_path_regex(pattern)


def test_a_pattern_invalid_in_every_dialect_keeps_the_plain_message():
    assert problem("/api/(v1") == \
        "invalid regular expression: missing ), unterminated subpattern at position 5"


def test_re2_syntax_python_lacks_is_accepted():
    assert problem(r"/[[:alpha:]]+") is None
    assert fullmatch(r"/[[:alpha:]]+", "/abc")


def test_config_error_is_on_the_field():
    text = """
listeners: [{name: main, address: "127.0.0.1:8080", routes: [ok, bad]}]
routes:
  - {name: ok, match: {path: /}, to: [{cluster: web}]}
  - {name: bad, match: {path_regex: '/(?!admin).*'}, to: [{cluster: web}]}
clusters: [{name: web, endpoints: [{address: "127.0.0.1:9000"}]}]
"""
    (error,) = check_text(text, "cfg.yaml").errors
    assert error.line == 5
    assert str(error) == (
        "cfg.yaml: routes[1].match.path_regex: not supported by RE2 (linear-time matching): "
        "invalid perl operator: (?! (lookahead and lookbehind are not supported)")


def test_matcher_answers_as_fullmatch_one_by_one():
    patterns = ["/a.*", "/a/[0-9]+", "/(a|b)", "/b", "(/a)+"] * 2
    for chunk in (1, 2, 256):
        match = matcher(patterns, chunk=chunk)
        for path in ["/a", "/a/1", "/b", "/a/a", "/c", "/aa", "/a/a/"]:
            assert match(path) == {p for p in patterns if fullmatch(p, path)}

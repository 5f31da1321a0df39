"""engine/policy/syntax.py: the lexical rules of config values."""
import pytest

from engine.policy import syntax


@pytest.mark.parametrize("value", ["web", "api-v1", "a.b_c", "9x"])
def test_valid_names(value):
    assert syntax.name(value) == value


@pytest.mark.parametrize("value, message", [
    ("", "a name must not be empty"),
    ("-x", "'-x' is not a valid name: use letters, digits, '_', '.' and '-', starting with a "
           "letter or digit"),
    ("a b", "'a b' is not a valid name: use letters, digits, '_', '.' and '-', starting with a "
            "letter or digit"),
    ("x" * 129, "a name is at most 128 characters"),
])
def test_invalid_names(value, message):
    with pytest.raises(ValueError, match="^" + __import__("re").escape(message) + "$"):
        syntax.name(value)


def test_header_names_are_lowercased_tokens():
    assert syntax.header_name("X-Canary") == "x-canary"
    with pytest.raises(ValueError, match="not a valid header name"):
        syntax.header_name("x canary")
    with pytest.raises(ValueError, match="not a valid header name"):
        syntax.header_name("x:y")


@pytest.mark.parametrize("value, message", [
    ("a\r\nx-injected: 1", r"header value contains '\r': only printable ASCII, space and tab"),
    ("a\x00", r"header value contains '\x00': only printable ASCII, space and tab"),
    (" a", "header value has leading or trailing whitespace"),
    ("caf\u00e9", "header value contains '\u00e9': only printable ASCII, space and tab"),
])
def test_header_values_that_could_not_go_on_the_wire(value, message):
    with pytest.raises(ValueError) as caught:
        syntax.header_value(value)
    assert str(caught.value) == message


def test_header_value_may_contain_inner_spaces_and_tabs():
    assert syntax.header_value("text/plain; charset=utf-8\tx") == "text/plain; charset=utf-8\tx"


def test_methods_are_uppercased_tokens():
    assert syntax.method("get") == "GET"
    assert syntax.method("PROPFIND") == "PROPFIND"
    with pytest.raises(ValueError, match="not a valid HTTP method"):
        syntax.method("GE T")


@pytest.mark.parametrize("value, normal", [
    ("API.Example.com", "api.example.com"),
    ("*.example.com", "*.example.com"),
    ("localhost", "localhost"),
])
def test_hosts(value, normal):
    assert syntax.host(value) == normal


@pytest.mark.parametrize("value, message", [
    ("*", "'*' alone is not a host: leave match.host out to match any host"),
    ("*example.com", "'*example.com': only a leading '*.' wildcard is allowed"),
    ("a.*.com", "'a.*.com': only a leading '*.' wildcard is allowed"),
    ("*.com", "'*.com': a wildcard needs a domain of two labels or more"),
    ("example.com:8080", "'example.com:8080': match.host takes no port"),
    ("bad_name.com", "'bad_name.com' is not a valid host name"),
])
def test_bad_hosts(value, message):
    with pytest.raises(ValueError) as caught:
        syntax.host(value)
    assert str(caught.value) == message


def test_key_spec_normalises_header_names_but_not_cookie_names():
    plain, prefixed = ("client_ip",), ("header", "cookie")
    assert syntax.key_spec("client_ip", plain, prefixed) == "client_ip"
    assert syntax.key_spec("header:X-User", plain, prefixed) == "header:x-user"
    assert syntax.key_spec("cookie:Session", plain, prefixed) == "cookie:Session"


@pytest.mark.parametrize("value, message", [
    ("ip", "expected one of client_ip, header:NAME, cookie:NAME; got 'ip'"),
    ("header:", "'header:' names no header: write header:NAME"),
    ("cookie:a b", "'cookie:a b': 'a b' is not a valid cookie name"),
    ("route", "expected one of client_ip, header:NAME, cookie:NAME; got 'route'"),
])
def test_bad_key_specs(value, message):
    with pytest.raises(ValueError) as caught:
        syntax.key_spec(value, ("client_ip",), ("header", "cookie"))
    assert str(caught.value) == message

"""The lexical rules of config values: names, HTTP header names and values, methods, hosts, and
the `per:` / `hash_on:` key specs.

Every function takes the raw value and returns it normalised (header names lowercase, methods
uppercase, hosts lowercase) or raises ValueError with a sentence for the user. They know nothing
about pydantic (engine.policy.fields wires them in) so they are easy to test on their own.

The rules are the HTTP grammar, checked here so the compiled hot path never sees a value it
would have to reject or, worse, write to the wire: a header value with CR/LF would let a config
inject headers (RFC 9110 section 5.5 forbids CR, LF and NUL in field values).
"""
from __future__ import annotations

import re

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
NAME_MAX = 128
_NAME = re.compile(NAME_PATTERN)

# RFC 9110 section 5.6.2: token = 1*tchar
TOKEN_PATTERN = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"
_TOKEN = re.compile(TOKEN_PATTERN)

# RFC 9110 section 5.5: field-vchar and SP/HTAB inside; ASCII only here (obs-text is legacy).
_FIELD_VALUE_BAD = re.compile(r"[^\t\x20-\x7e]")

_LABEL = re.compile(r"[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?\Z")

# Headers the proxy owns: hop-by-hop (RFC 9110 section 7.6.1) and message framing (RFC 9112
# section 6). A config that sets them would fight the codec.
MANAGED_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
    "upgrade", "content-length",
})


def name(value: str) -> str:
    """A listener/route/cluster name: it becomes a metric label and a log field, so it is kept to
    letters, digits, `_`, `.` and `-`, starting with a letter or digit."""
    if not value:
        raise ValueError("a name must not be empty")
    if len(value) > NAME_MAX:
        raise ValueError(f"a name is at most {NAME_MAX} characters")
    if not _NAME.match(value):
        raise ValueError(
            f"'{value}' is not a valid name: use letters, digits, '_', '.' and '-', "
            "starting with a letter or digit")
    return value


def header_name(value: str) -> str:
    """RFC 9110 section 5.1: a field name is a token; names are case-insensitive, kept lowercase."""
    if not _TOKEN.match(value):
        raise ValueError(f"'{value}' is not a valid header name")
    return value.lower()


def header_value(value: str) -> str:
    bad = _FIELD_VALUE_BAD.search(value)
    if bad:
        raise ValueError(
            f"header value contains {bad.group()!r}: only printable ASCII, space and tab")
    if value != value.strip(" \t"):
        raise ValueError("header value has leading or trailing whitespace")
    return value


def method(value: str) -> str:
    """RFC 9110 section 9.1: a method is a token; the config is case-insensitive, the wire is not,
    so methods are uppercased (every registered method is uppercase)."""
    if not _TOKEN.match(value):
        raise ValueError(f"'{value}' is not a valid HTTP method")
    return value.upper()


def host(value: str) -> str:
    """A host to match: an exact name or a leading wildcard `*.example.com`, lowercase, no port.

    `*.example.com` matches any name ending in `.example.com` (one label or more before it), not
    `example.com` itself."""
    text = value.lower()
    if text == "*":
        raise ValueError("'*' alone is not a host: leave match.host out to match any host")
    labels = text.split(".")
    if labels[0] == "*":
        labels = labels[1:]
        if len(labels) < 2:
            raise ValueError(f"'{value}': a wildcard needs a domain of two labels or more")
    if "*" in text[1:] or (text.startswith("*") and not text.startswith("*.")):
        raise ValueError(f"'{value}': only a leading '*.' wildcard is allowed")
    if ":" in text:
        raise ValueError(f"'{value}': match.host takes no port")
    if len(text) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"'{value}' is not a valid host name")
    return text


def key_spec(value: str, plain: tuple[str, ...], prefixed: tuple[str, ...]) -> str:
    """Parse a request key spec such as `client_ip`, `header:X-User` or `cookie:session`.

    `plain` are the bare words allowed, `prefixed` the `KIND:NAME` kinds. Header names are
    lowercased; cookie names are case-sensitive (RFC 6265 section 4.1.1) and kept as written."""
    if value in plain:
        return value
    kind, sep, arg = value.partition(":")
    if sep and kind in prefixed:
        if kind == "header":
            return f"header:{header_name(arg)}" if arg else _no_name(value)
        if not arg or not _TOKEN.match(arg):
            raise ValueError(f"'{value}': '{arg}' is not a valid {kind} name")
        return f"{kind}:{arg}"
    choices = ", ".join([*plain, *(f"{k}:NAME" for k in prefixed)])
    raise ValueError(f"expected one of {choices}; got '{value}'")


def _no_name(value: str) -> str:
    raise ValueError(f"'{value}' names no header: write header:NAME")

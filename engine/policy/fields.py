"""Field types of the config model: the pure parsers of `durations`, `addresses` and `syntax`
wired into pydantic, each with the JSON Schema an editor should see.

The pattern is the same everywhere: pydantic checks the basic type first (so a number where a
string belongs gets the one uniform "expected a string" message), then our validator checks and
normalises the text and raises ValueError with a sentence the loader shows as is. `WithJsonSchema`
states what the user types (a string with a pattern), not what the model stores (float seconds,
an Address).

Integers are strict: YAML `5.0` or `"5"` where a count belongs is refused rather than coerced,
and `true` is never a number.
"""
from __future__ import annotations

import ipaddress
import os
import re
from typing import Annotated, Any, NamedTuple

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    PlainValidator,
    Strict,
    ValidationInfo,
    WithJsonSchema,
)

from . import addresses, durations, pathregex, syntax
from .addresses import Address
from .errors import RuleCollector, describe_value, expected_string

# -- numbers -----------------------------------------------------------------------------------

Count = Annotated[int, Strict()]
# Weights fit 16 bits so the compiled balancer can sum 32768 of them in an int32.
Weight = Annotated[int, Strict(), Field(ge=1, le=65535)]

# -- durations and addresses -------------------------------------------------------------------

Duration = Annotated[
    float,
    PlainValidator(durations.parse_duration),
    WithJsonSchema({
        "anyOf": [
            {"type": "string", "pattern": durations.PATTERN},
            {"type": "number", "exclusiveMinimum": 0},
        ],
        "description": "A duration: '250ms', '5s', '2m', '1h', or a number of seconds.",
    }),
]

Timeout = Annotated[
    float,
    PlainValidator(durations.parse_timeout),
    WithJsonSchema({
        "anyOf": [
            {"type": "string", "pattern": durations.PATTERN},
            {"type": "number", "minimum": 0},
        ],
        "description": "A timeout: '250ms', '5s', '2m', '1h', or a number of seconds; "
                       "'0s' switches it off.",
    }),
]

AddressField = Annotated[
    Address,
    PlainValidator(addresses.parse_address),
    PlainSerializer(str, return_type=str, when_used="json"),
    WithJsonSchema({
        "type": "string",
        "pattern": addresses.PATTERN,
        "description": "host:port, or [IPv6]:port.",
        "examples": ["127.0.0.1:8080", "[::1]:8080"],
    }),
]

# -- names and HTTP tokens ---------------------------------------------------------------------

Name = Annotated[
    str,
    AfterValidator(syntax.name),
    WithJsonSchema({"type": "string", "pattern": syntax.NAME_PATTERN,
                    "maxLength": syntax.NAME_MAX}),
]

# A reference to a name: any non-empty string; whether it names something is a cross-reference
# check with a did-you-mean, not a syntax error.
NameRef = Annotated[str, Field(min_length=1)]

HeaderName = Annotated[
    str,
    AfterValidator(syntax.header_name),
    WithJsonSchema({"type": "string", "pattern": syntax.TOKEN_PATTERN}),
]

Method = Annotated[
    str,
    AfterValidator(syntax.method),
    WithJsonSchema({"type": "string", "pattern": syntax.TOKEN_PATTERN,
                    "examples": ["GET", "POST"]}),
]

Host = Annotated[
    str,
    AfterValidator(syntax.host),
    WithJsonSchema({"type": "string", "pattern": r"^(\*\.)?[A-Za-z0-9.\-]+$",
                    "examples": ["api.example.com", "*.example.com"]}),
]


def _header_map(value: Any) -> Any:
    """Lowercase the names of a `{name: value}` map, refusing names that collide once lowercased
    and values a proxy must not send. A non-mapping passes through to pydantic's type error."""
    if not isinstance(value, dict):
        return value
    out: dict[Any, Any] = {}
    spelled: dict[str, str] = {}
    rules = RuleCollector()
    for key, item in value.items():
        if not isinstance(key, str):
            shown = str(key).lower() if isinstance(key, bool) else str(key)
            rules.add((shown,), f"a header name must be a string, got {describe_value(key)}")
            continue
        try:
            lowered = syntax.header_name(key)
        except ValueError as error:
            rules.add((key,), str(error))
            continue
        if lowered in spelled:
            rules.add((key,), f"header '{lowered}' is already given as '{spelled[lowered]}' "
                              "(header names are case-insensitive)")
            continue
        spelled[lowered] = key
        if not isinstance(item, str):
            rules.add((key,), expected_string(item))
            continue
        try:
            out[lowered] = syntax.header_value(item)
        except ValueError as error:
            rules.add((key,), str(error))
    rules.raise_if_any()
    return out


HeaderMap = Annotated[
    dict[str, str],
    BeforeValidator(_header_map),
    WithJsonSchema({
        "type": "object",
        "propertyNames": {"pattern": syntax.TOKEN_PATTERN},
        "additionalProperties": {"type": "string"},
    }),
]

# -- paths -------------------------------------------------------------------------------------


def _path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"a path starts with '/', got '{value}'")
    for char, what in (("?", "a query"), ("#", "a fragment")):
        if char in value:
            raise ValueError(f"'{char}' starts {what}: paths are matched without it")
    if re.search(r"[\x00-\x20\x7f]", value):
        raise ValueError("a path contains a space or a control character")
    return value


def _regex(value: str) -> str:
    """The router runs path_regex with RE2 (linear time, see `pathregex`): a pattern RE2 cannot
    run is refused here, with its reason, rather than ever backtracking while serving."""
    problem = pathregex.problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


Path = Annotated[
    str,
    AfterValidator(_path),
    WithJsonSchema({"type": "string", "pattern": "^/"}),
]

PathRegex = Annotated[
    str,
    AfterValidator(_regex),
    WithJsonSchema({"type": "string", "format": "regex"}),
]

# -- request key specs -------------------------------------------------------------------------


class RequestKey(NamedTuple):
    """A request key spec (`rate_limit.per`, `hash_on`) as the model holds it: parsed once,
    here, so that `link` and `explain` read `kind` and `name` instead of splitting the text.

    `kind` is `route`, `client_ip`, `header` or `cookie`; `name` is the header name (lowercase:
    header names are case-insensitive) or the cookie name (as written: RFC 6265 section 4.1.1
    makes them case-sensitive), and "" for the bare kinds. `str()` gives back the spelling the
    user writes (`header:x-user`), which is also the JSON form, so snapshots and the schema are
    unchanged."""

    kind: str
    name: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}" if self.name else self.kind

    @classmethod
    def parse_normal(cls, text: str) -> RequestKey:
        """From the normal spelling `str()` gives (already validated: a snapshot's content)."""
        kind, _, name = text.partition(":")
        return cls(kind, name)


def _key_parser(plain: tuple[str, ...], prefixed: tuple[str, ...]):
    def parse(value: Any) -> RequestKey:
        if isinstance(value, RequestKey):        # a model_dump()/model_copy round trip
            value = str(value)
        if not isinstance(value, str):
            raise ValueError(expected_string(value))
        return RequestKey.parse_normal(syntax.key_spec(value, plain, prefixed))
    return parse


RateKey = Annotated[
    RequestKey,
    PlainValidator(_key_parser(("route", "client_ip"), ("header",))),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^(route|client_ip|header:.+)$",
                    "examples": ["route", "client_ip", "header:x-api-key"]}),
]

HashKey = Annotated[
    RequestKey,
    PlainValidator(_key_parser(("client_ip",), ("header", "cookie"))),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^(client_ip|header:.+|cookie:.+)$",
                    "examples": ["client_ip", "header:x-user", "cookie:session"]}),
]

# -- files and identities ----------------------------------------------------------------------

# Validation context key: the directory relative file paths are resolved against (the config
# file's; the loader sets it). Without it, the working directory.
BASE_DIR = "sluice_base_dir"


def _file_path(value: str, info: ValidationInfo) -> str:
    """A file the config names (a PEM certificate, key or CA bundle), made absolute: relative to
    the config file's directory, so a config means the same files whatever directory sluice is
    started from, and a snapshot compiled from it names them exactly. Whether the file is usable
    is the model's check (engine.policy.pem), which knows which field names it."""
    if "\x00" in value:
        raise ValueError("a file path contains a NUL character")
    base = (info.context or {}).get(BASE_DIR) or os.getcwd()
    return os.path.normpath(os.path.join(base, os.path.expanduser(value)))


FilePath = Annotated[
    str,
    Field(min_length=1),
    AfterValidator(_file_path),
    WithJsonSchema({"type": "string", "minLength": 1,
                    "description": "A file path; a relative one is relative to the config "
                                   "file's directory.",
                    "examples": ["/etc/sluice/tls/api.crt", "tls/api.key"]}),
]

# A SPIFFE ID (spiffe.io, "SPIFFE-ID"): a trust domain of lowercase letters, digits, '.', '-'
# and '_'; path segments of letters, digits, '.', '-' and '_'. A trailing "/*" makes a prefix.
_TRUST_DOMAIN = r"[a-z0-9._-]+"
_SEGMENT = r"[A-Za-z0-9._-]+"
IDENTITY_PATTERN = rf"^spiffe://{_TRUST_DOMAIN}(/{_SEGMENT})*(/\*)?$"


def _client_identity(value: str) -> str:
    if not value.startswith("spiffe://"):
        raise ValueError(f"a client identity is a SPIFFE ID 'spiffe://TRUST-DOMAIN/PATH', or a "
                         f"prefix of one ending in '/*', got '{value}'")
    if "*" in value and not value.endswith("/*") or value.count("*") > 1:
        raise ValueError("'*' is only allowed as the last path segment ('spiffe://td/ns/x/*' "
                         "matches every identity under spiffe://td/ns/x/)")
    if not re.match(IDENTITY_PATTERN, value):
        raise ValueError(f"'{value}' is not a SPIFFE ID: the trust domain takes lowercase "
                         "letters, digits, '.', '-' and '_'; path segments take letters, digits, "
                         "'.', '-' and '_', and none is empty")
    return value


ClientIdentity = Annotated[
    str,
    AfterValidator(_client_identity),
    WithJsonSchema({"type": "string", "pattern": IDENTITY_PATTERN,
                    "examples": ["spiffe://cluster.local/ns/shop/sa/web",
                                 "spiffe://cluster.local/ns/shop/*"]}),
]


# -- TLS origination ---------------------------------------------------------------------------


def _server_name(value: str) -> str:
    """A TLS server name (RFC 6066 section 3): a DNS host name, never an IP literal or a
    wildcard."""
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        pass
    else:
        raise ValueError(f"'{value}' is an IP address: SNI carries host names only (leave sni "
                         "out to verify an IP endpoint against its certificate's IP address)")
    if value.startswith("*"):
        raise ValueError(f"'{value}': a server name has no wildcard")
    try:
        return syntax.host(value.rstrip("."))
    except ValueError:
        raise ValueError(f"'{value}' is not a valid host name") from None


ServerName = Annotated[
    str,
    AfterValidator(_server_name),
    WithJsonSchema({"type": "string", "pattern": r"^[A-Za-z0-9.\-]+$",
                    "examples": ["api.internal"]}),
]

"""pydantic's ValidationError -> `(loc, reason)` pairs worded for someone editing YAML.

pydantic's messages are written for Python programmers ("Input should be a valid dictionary");
ours name what YAML produced ("expected a mapping, got a list") and, for typos, the closest
valid word. Our own validators raise ValueError with finished sentences, passed through as is;
a `RuleViolation` is unpacked into one pair per rule, at its own sub-location.
"""
from __future__ import annotations

import re
import types
import typing
from typing import Any, Union

from pydantic import BaseModel, ValidationError

from .errors import Loc, RuleViolation, describe_value, expected_string
from .suggest import did_you_mean

_KIND = {
    "int_type": "an integer", "int_from_float": "an integer", "int_parsing": "an integer",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "list_type": "a list", "tuple_type": "a list",
}

_BOUND = {
    "greater_than": ("gt", "greater than"),
    "greater_than_equal": ("ge", "at least"),
    "less_than": ("lt", "less than"),
    "less_than_equal": ("le", "at most"),
}


def translate(error: ValidationError, root: type[BaseModel]) -> list[tuple[Loc, str]]:
    out: list[tuple[Loc, str]] = []
    for item in error.errors(include_url=False):
        loc: Loc = tuple(item["loc"])
        kind, value, ctx = item["type"], item.get("input"), item.get("ctx") or {}
        if loc and loc[-1] == "[key]":
            loc = loc[:-1]
        if kind == "too_short" and isinstance(value, (list, tuple)) \
                and len(value) >= ctx.get("min_length", 1):
            continue  # pydantic counts only the items that validated; theirs are reported
        cause = ctx.get("error")
        if isinstance(cause, RuleViolation):
            out.extend((loc + sub, reason) for sub, reason in cause.items)
        elif kind in ("value_error", "assertion_error") and cause is not None:
            out.append((loc, str(cause)))
        else:
            out.append((loc, _reason(kind, value, ctx, loc, root, item["msg"])))
    return out


def _reason(kind: str, value: Any, ctx: dict[str, Any], loc: Loc,
            root: type[BaseModel], fallback: str) -> str:
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        known = fields_at(root, loc[:-1])
        hint = did_you_mean(str(loc[-1]), known)
        if not hint and known:
            hint = "; expected one of: " + ", ".join(known)
        return f"unknown field{hint}"
    if kind == "string_type":
        return expected_string(value)
    if kind in _KIND:
        return f"expected {_KIND[kind]}, got {describe_value(value)}"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return (f"expected one of {', '.join(choices)}; got {describe_value(value)}"
                + did_you_mean(value, choices))
    if kind in _BOUND:
        key, words = _BOUND[kind]
        return f"must be {words} {_number(ctx.get(key))}, got {_number(value)}"
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return "must not be empty" if n == 1 else f"needs at least {n} items"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "finite_number":
        return f"must be a finite number, got {value!r}"
    return fallback


def fields_at(root: type[BaseModel], loc: Loc) -> list[str]:
    """The field names of the model found at `loc` below `root` (empty if it is not a model)."""
    target: Any = root
    for part in loc:
        target = _strip(target)
        if isinstance(target, type) and issubclass(target, BaseModel):
            field = target.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return []
            target = field.annotation
        elif typing.get_origin(target) in (tuple, list):
            target = typing.get_args(target)[0]
        elif typing.get_origin(target) is dict:
            target = typing.get_args(target)[1]
        else:
            return []
    target = _strip(target)
    if isinstance(target, type) and issubclass(target, BaseModel):
        return list(target.model_fields)
    return []


def _strip(annotation: Any) -> Any:
    """Remove Annotated metadata and `| None` from an annotation."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            options = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(options) != 1:
                return annotation
            annotation = options[0]
        else:
            return annotation


def _number(value: Any) -> str:
    """`0.0` -> `0`: bounds are written as the user would write them."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if not isinstance(value, str) else f"'{value}'"

"""Building a `Config` from a snapshot's content without validating it again.

Theory of operation
-------------------
Who calls it. `snapshot.trusted_config`, and through it every worker (at start and at each
reload) and the embedded `engine.Proxy`: the supervisor (or the Proxy) validated the config once
and encoded it as a snapshot; whoever serves it checks the content's sha256 against the digest
the validator vouched for, then calls `construct(Config, plain)` here. Validating 10,000 routes
again in every worker would cost seconds of CPU per reload for nothing.

What it relies on. The content is `Config.model_dump(mode="json")` of a config this build
validated (snapshot.content_bytes): every field written out (defaults included), every value
already normalised. Decoding is therefore only the inverse of the JSON serialisers: msgpack
arrays (unpacked as tuples) stay tuples, `host:port` strings become `Address`, key specs
`RequestKey`, nested maps their models, and a filter's free-form config gets its lists back.
Nothing is checked except that the data has the model's shape (each model's keys, exactly);
a mismatch raises `ShapeError`, naming the model, which the caller turns into a refused
snapshot. Numbers and strings are taken as they are.

How it is fast. For each model class, once, a builder function is generated from the field
annotations (as dataclasses generates `__init__`): it checks the map's size and keys, decodes in
place the few fields that need it, and makes the map itself the instance's `__dict__`. The
instance state is what pydantic's own `model_construct` gives (`__dict__`, the set of fields
given, no extra, no private state), minus its per-field default and alias handling, which a
complete content never needs, and with the fields in the content's sorted order. For 10,000
routes this takes about what unpickling the same Config takes (about 55 ms against 60 ms, best
of 15), and the supervisor no longer pickles it (about 100 ms).
`tests/policy/test_trusted.py` holds the result equal, type for type, to what validation builds
from the same snapshot, and fails when a field type is added to the model without a decoder
here.

What it must never see: data that has not been validated by this build (a snapshot from a file,
the admin API or another build goes through `snapshot.load_snapshot` first).
"""
from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from .addresses import Address
from .fields import RequestKey

Decoder = Callable[[Any], Any]


class ShapeError(ValueError):
    """The data does not have the shape of the model (not made by this build)."""


def _address(text: str) -> Address:
    """The inverse of `str(Address)`: `host:port` or `[v6]:port`, already validated."""
    if text[0] == "[":
        close = text.index("]")
        return Address(text[1:close], int(text[close + 2:]))
    host, _, port = text.rpartition(":")
    return Address(host, int(port))


# types whose JSON form is not what the model holds: the inverse of their serialiser
_LEAVES: dict[Any, Decoder] = {
    Address: _address,
    RequestKey: RequestKey.parse_normal,
}


def _plain(value: Any) -> Any:
    """A value of a field typed `Any` (a filter's config) as validation leaves it: msgpack
    arrays are lists there, not the tuples `construct` is given."""
    if type(value) is tuple:
        return [_plain(v) for v in value]
    if type(value) is dict:
        return {k: _plain(v) for k, v in value.items()}
    return value


def _decoder(annotation: Any) -> Decoder | None:
    """How to decode a value of type `annotation` from its JSON form, msgpack arrays given as
    tuples; None: keep it as it is."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _decoder(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"no trusted decoder for {annotation!r}")
        inner = _decoder(args[0])
        if inner is None:
            return None
        return lambda value: None if value is None else inner(value)
    if origin is tuple:
        args = typing.get_args(annotation)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"no trusted decoder for {annotation!r}")
        item = _decoder(args[0])
        if item is None:
            return None                   # msgpack made the tuple
        return lambda value: tuple([item(v) for v in value])
    if origin is dict:
        value_type = typing.get_args(annotation)[1]
        item = _decoder(value_type)
        if item is None:
            return None                   # msgpack made the dict, nothing else holds it
        return lambda value: {k: item(v) for k, v in value.items()}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _nested(annotation)
    if annotation in _LEAVES:
        return _LEAVES[annotation]
    if annotation is typing.Any:
        return _plain
    # every float field holds a float (pydantic and the duration parsers make one), which
    # msgpack gives back as a float
    if annotation in (str, int, float, bool) or origin is typing.Literal:
        return None
    raise TypeError(f"no trusted decoder for {annotation!r}")


_BUILDERS: dict[type, Callable[[Any], Any]] = {}

# BaseModel's slots, set through their descriptors (what object.__setattr__ ends up calling)
_SLOT_SETTERS = {
    f"set_{short}": BaseModel.__dict__[slot].__set__
    for short, slot in (("dict", "__dict__"), ("fields_set", "__pydantic_fields_set__"),
                        ("extra", "__pydantic_extra__"), ("private", "__pydantic_private__"))}


def construct(cls: type[BaseModel], data: Any) -> Any:
    """An instance of `cls` from its JSON form as msgpack unpacks it (arrays as tuples), without
    validation (see the module docstring). `data` is consumed: its maps become the instances'
    state. Raises ShapeError when `data` does not have the model's shape, naming the innermost
    model that does not fit."""
    return _nested(cls)(data)


def _builder(cls: type[BaseModel]) -> Callable[[Any], Any]:
    """The function that builds a `cls` from its JSON form, generated once per class (as
    dataclasses and attrs generate `__init__`). The map msgpack made becomes the instance's
    `__dict__` as it is, with the few fields that need a decoder replaced in place: no copy,
    and nothing to free afterwards (freeing a 10,000-route tree of maps at once would hold the
    GIL for milliseconds). So a trusted instance's fields are in the content's (sorted) order,
    which only its repr shows; equality, attribute access and `model_dump` do not depend on it."""
    names = tuple(cls.model_fields)
    env: dict[str, Any] = {"cls": cls, "new": cls.__new__, "ShapeError": ShapeError,
                           "NAMES": frozenset(names), "N": len(names), **_SLOT_SETTERS}
    lines = [f"        data[{name!r}]" for name in names]      # every field is there
    for i, (name, info) in enumerate(cls.model_fields.items()):
        decode = _decoder(info.annotation)
        if decode is not None:
            env[f"d{i}"] = decode
            lines[i] = f"        if (v := data[{name!r}]) is not None: data[{name!r}] = d{i}(v)"
    body = "\n".join(lines) or "        pass"       # a model without fields (tcp: {})
    source = f"""\
def build(data):
    if type(data) is not dict or len(data) != N:
        got = type(data).__name__ + (f" of {{len(data)}}" if type(data) is dict else "")
        raise ShapeError(f"{cls.__name__}: expected a map of its {{N}} fields, got {{got}}")
    try:
{body}
    except ShapeError:
        raise
    except KeyError as missing:
        raise ShapeError(f"{cls.__name__}: no field {{missing}}") from None
    except (TypeError, ValueError, AttributeError, IndexError) as error:
        raise ShapeError(f"{cls.__name__}: {{type(error).__name__}}: {{error}}") from None
    instance = new(cls)
    set_dict(instance, data)
    set_fields_set(instance, set(NAMES))
    set_extra(instance, None)
    set_private(instance, None)
    return instance
"""
    exec(compile(source, f"<trusted {cls.__name__}>", "exec"), env)
    return env["build"]


def _nested(cls: type[BaseModel]) -> Callable[[Any], Any]:
    build = _BUILDERS.get(cls)
    if build is None:
        build = _BUILDERS[cls] = _builder(cls)
    return build

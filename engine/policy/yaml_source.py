"""YAML text -> plain Python data plus the source position of every value.

Why not `yaml.safe_load`:
- Positions. Errors name a path, and editors want a line too; we compose the node graph and
  build the data ourselves, recording `loc -> (line, column)` for every key and item.
- YAML 1.2 core scalars. PyYAML resolves YAML 1.1, where `off`/`no`/`on` are booleans and
  `1:30` is the number 90; in a proxy config `access_log: {path: off}` and `address: 80:80` must
  stay text. Only `true`/`false`, `null`/`~`, decimal/0o/0x integers and plain floats are typed.
- Duplicate keys. PyYAML silently keeps the last; we report them (the later one is usually a
  paste that was meant to replace, or a mistake, and either way the user should know).
- Bounded expansion. Aliases are followed (they are handy for repeated cluster settings, and the
  `<<` merge key is supported), but a document that expands past MAX_VALUES or nests deeper
  than MAX_DEPTH is refused instead of eating the supervisor's memory.

A syntax error raises `YamlSyntaxError` with the path being parsed when the parser gave up
(found by replaying the event stream), so even a broken file points near the right key.
Everything else that is wrong but parseable is returned as `problems` next to the data.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
import yaml.reader
from yaml.nodes import MappingNode, ScalarNode, SequenceNode
from yaml.resolver import BaseResolver

from .errors import Loc

MAX_VALUES = 1_000_000
MAX_DEPTH = 64

Position = tuple[int, int]  # 1-based line, column

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


class _CoreResolver(BaseResolver):  # type: ignore[misc]
    """The YAML 1.2 core schema (yaml.org/spec/1.2.2, section 10.3.2)."""


_INT_RE = re.compile(r"[-+]?[0-9]+\Z|0o[0-7]+\Z|0x[0-9a-fA-F]+\Z")
_FLOAT_RE = re.compile(
    r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z|[-+]?\.(inf|Inf|INF)\Z"
    r"|\.(nan|NaN|NAN)\Z")
_CoreResolver.add_implicit_resolver(
    _BOOL, re.compile(r"true\Z|True\Z|TRUE\Z|false\Z|False\Z|FALSE\Z"), list("tTfF"))
_CoreResolver.add_implicit_resolver(_INT, _INT_RE, list("-+0123456789"))
_CoreResolver.add_implicit_resolver(_FLOAT, _FLOAT_RE, list("-+0123456789."))
_CoreResolver.add_implicit_resolver(_NULL, re.compile(r"~\Z|null\Z|Null\Z|NULL\Z|\Z"),
                                    ["~", "n", "N", ""])

try:  # libyaml when available: same events, ten times faster on large configs
    from yaml.cyaml import CParser as _CParser

    class _Composer(_CParser, _CoreResolver):  # type: ignore[misc]
        def __init__(self, text: str) -> None:
            _CParser.__init__(self, text)
            _CoreResolver.__init__(self)

except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml.composer import Composer
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Composer(Reader, Scanner, Parser, Composer, _CoreResolver):  # type: ignore[misc,no-redef]
        def __init__(self, text: str) -> None:
            Reader.__init__(self, text)
            Scanner.__init__(self)
            Parser.__init__(self)
            Composer.__init__(self)
            _CoreResolver.__init__(self)


class YamlSyntaxError(Exception):
    """The text is not YAML. `loc` is the deepest path open when parsing stopped."""

    def __init__(self, loc: Loc, reason: str, position: Position | None):
        super().__init__(reason)
        self.loc = loc
        self.reason = reason
        self.position = position


@dataclass
class Parsed:
    data: Any
    positions: dict[Loc, Position] = field(default_factory=dict)
    problems: list[tuple[Loc, str]] = field(default_factory=list)


def parse_yaml(text: str) -> Parsed:
    """Parse one YAML document. Raises YamlSyntaxError; other problems are in `.problems`."""
    composer = _Composer(text)
    try:
        node = composer.get_single_node()
    except yaml.MarkedYAMLError as error:
        if error.context == "expected a single document in the stream":
            line = error.problem_mark.line + 1
            raise YamlSyntaxError((), "expected one YAML document, found a second one at line "
                                  f"{line}", _position(error.problem_mark)) from None
        raise YamlSyntaxError(_path_at_error(text), _syntax_reason(error, text),
                              _position(error.problem_mark)) from None
    except yaml.reader.ReaderError as error:  # a character YAML does not allow, such as NUL
        line = text.count("\n", 0, error.position) + 1
        column = error.position - (text.rfind("\n", 0, error.position) + 1) + 1
        raise YamlSyntaxError((), f"invalid YAML at line {line}, column {column}: character "
                              f"#x{error.character:04x}: {error.reason}", (line, column)) from None
    finally:
        composer.dispose()
    parsed = Parsed(None)
    if node is not None:
        builder = _Builder(parsed)
        try:
            parsed.data = builder.build(node, ())
        except _TooBig as error:
            parsed.data = None
            parsed.problems.append(((), str(error)))
    return parsed


class _TooBig(Exception):
    pass


class _Builder:
    """Node graph -> dicts, lists and scalars, recording positions and problems on the way."""

    def __init__(self, parsed: Parsed):
        self.parsed = parsed
        self.count = 0
        self.active: set[int] = set()  # node ids on the current branch (recursive aliases)

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise _TooBig(f"the document expands to more than {MAX_VALUES:,} values "
                          "(through aliases?)")
        if len(loc) > MAX_DEPTH:
            raise _TooBig(f"the document nests deeper than {MAX_DEPTH} levels")
        if id(node) in self.active:
            self._problem(loc, "a YAML alias refers to a node that contains it")
            return None
        if isinstance(node, ScalarNode):
            return self._scalar(node, loc)
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                if node.tag != _SEQ:
                    self._problem(loc, f"unsupported YAML tag '{node.tag}'")
                return [self._item(child, loc + (i,)) for i, child in enumerate(node.value)]
            if node.tag != _MAP:
                self._problem(loc, f"unsupported YAML tag '{node.tag}'")
            return self._mapping(node, loc)
        finally:
            self.active.discard(id(node))

    def _item(self, node: yaml.Node, loc: Loc) -> Any:
        self.parsed.positions.setdefault(loc, _node_position(node))
        return self.build(node, loc)

    def _mapping(self, node: MappingNode, loc: Loc) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value == "<<" \
                    and not key_node.style:  # plain: None (PyYAML) or "" (libyaml)
                merges.append(value_node)
                continue
            if not isinstance(key_node, ScalarNode):
                self._problem(loc, "a key must be a plain value, not a list or mapping")
                continue
            key = self._scalar(key_node, loc)
            if isinstance(key, (dict, list)) or key is None:
                self._problem(loc, "a key must be a non-empty plain value")
                continue
            here = loc + (key,)
            if key in out:
                line = self.parsed.positions[here][0]
                self._problem(here, f"duplicate key '{key}' (first given at line {line})")
                continue
            self.parsed.positions[here] = _node_position(key_node)
            out[key] = self.build(value_node, here)
        if merges:
            self._merge(out, merges, loc)
        return out

    def _merge(self, out: dict[Any, Any], merges: list[yaml.Node], loc: Loc) -> None:
        """Add merged keys that `out` lacks, with their positions (explicit keys keep theirs)."""
        explicit = set(out)
        positions, self.parsed.positions = self.parsed.positions, {}
        try:
            sources = self._merge_sources(merges, loc)
        finally:
            merged_positions, self.parsed.positions = self.parsed.positions, positions
        for source in sources:
            for key, value in source.items():
                out.setdefault(key, value)
        for where, position in merged_positions.items():
            if len(where) > len(loc) and where[len(loc)] not in explicit:
                positions.setdefault(where, position)

    def _merge_sources(self, merges: list[yaml.Node], loc: Loc) -> list[dict[Any, Any]]:
        """`<<: *defaults` or `<<: [*a, *b]`; explicit keys win, then earlier sources."""
        sources: list[dict[Any, Any]] = []
        for value_node in merges:
            nodes = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for source in nodes:
                if not isinstance(source, MappingNode):
                    self._problem(loc, "'<<' merges mappings only")
                    continue
                sources.append(self.build(source, loc))
        return sources

    def _scalar(self, node: ScalarNode, loc: Loc) -> Any:
        text, tag = node.value, node.tag
        if tag == _STR:
            return text
        if tag == _NULL and text in ("", "~", "null", "Null", "NULL"):
            return None
        if tag == _BOOL and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if tag == _INT and _INT_RE.match(text):
            if text.startswith(("0o", "0x")):
                return int(text[2:], 8 if text[1] == "o" else 16)
            return int(text)
        if tag == _FLOAT and _FLOAT_RE.match(text):
            lowered = text.lower()
            if lowered.endswith(".inf"):
                return -math.inf if lowered.startswith("-") else math.inf
            if lowered == ".nan":
                return math.nan
            return float(text)
        self._problem(loc, f"unsupported YAML tag '{tag}' for value '{text}'")
        return text

    def _problem(self, loc: Loc, reason: str) -> None:
        self.parsed.problems.append((loc, reason))


def _node_position(node: yaml.Node) -> Position:
    mark = node.start_mark
    return (mark.line + 1, mark.column + 1)


def _position(mark: Any) -> Position | None:
    if mark is None:
        return None
    return (mark.line + 1, mark.column + 1)


def _syntax_reason(error: yaml.MarkedYAMLError, text: str) -> str:
    mark = error.problem_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    reason = f"invalid YAML{where}: {error.problem}"
    if error.context:
        context = error.context
        if error.context_mark is not None:
            cm = error.context_mark
            context += f" started at line {cm.line + 1}, column {cm.column + 1}"
        reason += f" ({context})"
    if mark is not None and 0 <= mark.index < len(text) and text[mark.index] == "\t":
        reason += "; YAML indents with spaces, not tabs"
    return reason


def _path_at_error(text: str) -> Loc:
    """Replay the event stream up to the syntax error and return the path open at that point.

    Each open collection is a frame: a mapping frame remembers its current key and whether the
    next node is a key or a value; a sequence frame counts its items."""
    frames: list[list[Any]] = []  # ["map", key, expecting_key] | ["seq", index]

    def loc() -> Loc:
        out: list[Any] = []
        for frame in frames:
            if frame[0] == "seq":
                out.append(frame[1])
            elif not frame[2] and frame[1] is not None:
                out.append(frame[1])
        return tuple(out)

    def node_done() -> None:
        if not frames:
            return
        frame = frames[-1]
        if frame[0] == "seq":
            frame[1] += 1
        else:
            frame[2] = not frame[2]

    parser = _Composer(text)
    try:
        while True:
            event = parser.get_event()
            if event is None or isinstance(event, yaml.StreamEndEvent):
                break
            if isinstance(event, yaml.DocumentStartEvent):
                frames.clear()
            elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                if frames and frames[-1][0] == "map" and frames[-1][2]:
                    frames[-1][1] = None  # a complex key: no name to show
                frames.append(["map", None, True] if isinstance(event, yaml.MappingStartEvent)
                              else ["seq", 0])
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                frames.pop()
                node_done()
            elif isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent)):
                if frames and frames[-1][0] == "map" and frames[-1][2]:
                    frames[-1][1] = getattr(event, "value", None)
                node_done()
    except yaml.YAMLError:
        return loc()
    finally:
        parser.dispose()
    return ()

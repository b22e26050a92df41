"""YAML reading that keeps line numbers and reads times of day as text.

Aliases (`*name`) are refused: no campaign file, step front matter or defaults file needs
one, and nine nested levels of them (the "billion laughs" shape) make a 1 KB file stand
for a billion values, which the line-number walk below would visit one by one. Nesting
is bounded too (MAX_DEPTH): the composer recurses per level, and a few hundred `[` would
otherwise end in a RecursionError instead of a line naming the file.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from campaigns.errors import InputError

# Campaign files nest three or four levels; nothing a person writes comes near this.
MAX_DEPTH = 32


class _Refused(yaml.MarkedYAMLError):
    """YAML dripmail does not read: an alias (`*name`), or nesting deeper than MAX_DEPTH."""


class _Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1 base-60 numbers, so an unquoted 17:00 stays "17:00",
    and without aliases."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise _Refused(
                problem="YAML aliases (*name) are not accepted here: write the value out in full",
                problem_mark=mark,
            )
        if self._depth >= MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise _Refused(problem=f"nested more than {MAX_DEPTH} levels deep", problem_mark=mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, rx)
        for tag, rx in resolvers
        if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _timestamp(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    # `2026-13-45` looks like a date to YAML but is none: kept as the text it is, so the
    # field that wanted a date refuses it by its file, line and name (not a traceback).
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except (ValueError, OverflowError):
        return loader.construct_scalar(node)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)

Path_ = tuple[str | int, ...]


def load_with_lines(text: str, source: str) -> tuple[Any, dict[Path_, int]]:
    """Parse YAML; return the data and the 1-based line of every key and item path."""
    try:
        node, data = _parse(text)
    except _Refused as exc:
        mark = exc.problem_mark
        raise InputError(
            str(exc.problem), source=source, line=mark.line + 1 if mark else None
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(
            f"not valid YAML: {problem}", source=source, line=mark.line + 1 if mark else None
        ) from None
    lines: dict[Path_, int] = {}
    if node is not None:
        _walk(node, (), lines)
    return data, lines


def _parse(text: str) -> tuple[yaml.Node | None, Any]:
    """The document's node tree and its data, composed once and built from the same nodes
    (what yaml.load does). The reader checks the text as the loader is made: inside the
    caller's handler too."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        return node, loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, key.value)
            lines[child] = key.start_mark.line + 1
            _walk(value, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), lines)


def line_of(lines: dict[Path_, int], path: Path_) -> int | None:
    """The line of `path`, or of its nearest ancestor that has one."""
    while True:
        if path in lines:
            return lines[path]
        if not path:
            return None
        path = path[:-1]


def dump(data: Any) -> str:
    """YAML for humans: block style, keys in the given order, text kept quoted where needed."""
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)

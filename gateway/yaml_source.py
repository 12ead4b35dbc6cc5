"""YAML loading that remembers where each key is, refuses to lose duplicates, and is bounded.

PyYAML keeps the last of two equal keys silently; an ops file must not. A rules document comes
from an editor who may be careless or hostile, so it is bounded before anything is built from it:
its size, its nesting depth (PyYAML's composer recurses), and its node count with every alias
expanded (a "billion laughs" document is a few hundred bytes whose expansion never ends).
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import CollectionEndEvent, CollectionStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_DOCUMENT_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 50_000
"""Nodes with aliases expanded: a rules file of hundreds of routes and keys has a few thousand."""


class DocumentRefused(yaml.YAMLError):
    """A document over one of the bounds; nothing was built from it."""


class LineIndex:
    """Maps a dotted path (``routes.code.backends[1]``) to its 1-based line."""

    def __init__(self) -> None:
        self._lines: dict[str, int] = {}

    def add(self, path: str, line: int) -> None:
        self._lines.setdefault(path, line)

    def line_of(self, path: str) -> int | None:
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path.rsplit(".", 1)[0] if "." in path else path.rsplit("[", 1)[0] if "[" in path else ""
        return None


def load_yaml(text: str) -> tuple[Any, LineIndex, list[tuple[str, int]]]:
    """Parse one YAML document; return the data, its line index and each duplicate key's path and line.
    Raises ``yaml.YAMLError`` (:class:`DocumentRefused` over a bound); never recurses without bound."""
    if len(text.encode(errors="replace")) > MAX_DOCUMENT_BYTES:
        raise DocumentRefused(f"the document is larger than {MAX_DOCUMENT_BYTES} bytes")
    _check_depth(text)
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    lines = LineIndex()
    duplicates: list[tuple[str, int]] = []
    if node is None:
        return {}, lines, duplicates
    _walk(node, lines, duplicates)
    try:
        return yaml.safe_load(text), lines, duplicates
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise DocumentRefused(f"a value cannot be read: {exc}") from None


def _check_depth(text: str) -> None:
    """Nesting, from the parser's events (a loop, not the composer's recursion)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise DocumentRefused(f"nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, CollectionEndEvent):
            depth -= 1


def _walk(root: Node, lines: LineIndex, duplicates: list[tuple[str, int]]) -> None:
    """Every node with its path, aliases expanded as the data will be, counted against ``MAX_NODES``."""
    stack: list[tuple[Node, str]] = [(root, "")]
    count = 0
    while stack:
        node, path = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise DocumentRefused(f"more than {MAX_NODES} values once aliases are expanded")
        lines.add(path, node.start_mark.line + 1)
        children: list[tuple[Node, str]] = []
        if isinstance(node, MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value) if isinstance(key_node, ScalarNode) else "?"
                child = f"{path}.{key}" if path else key
                if key in seen:
                    duplicates.append((child, key_node.start_mark.line + 1))
                seen.add(key)
                children.append((value_node, child))
        elif isinstance(node, SequenceNode):
            children = [(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        stack.extend(reversed(children))  # in document order: the first of two equal paths keeps its line

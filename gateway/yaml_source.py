"""YAML loading that remembers where each key is and refuses to lose duplicates.

PyYAML keeps the last of two equal keys silently; an ops file must not.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode


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
    """Parse one YAML document; return the data, its line index and each duplicate key's path and line."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    lines = LineIndex()
    duplicates: list[tuple[str, int]] = []
    if node is None:
        return {}, lines, duplicates
    _walk(node, "", lines, duplicates)
    return yaml.safe_load(text), lines, duplicates


def _walk(node: Node, path: str, lines: LineIndex, duplicates: list[tuple[str, int]]) -> None:
    lines.add(path, node.start_mark.line + 1)
    if isinstance(node, MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, ScalarNode) else "?"
            child = f"{path}.{key}" if path else key
            if key in seen:
                duplicates.append((child, key_node.start_mark.line + 1))
            seen.add(key)
            _walk(value_node, child, lines, duplicates)
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, f"{path}[{i}]", lines, duplicates)

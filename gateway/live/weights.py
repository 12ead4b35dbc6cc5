"""A change of a route's variant weights, written into a rules document's own text: only the
numbers change, so comments, order and layout stay as ops wrote them, and the result goes through
validate, dry run and apply like any other edit (the console's Rollouts view proposes it)."""

from __future__ import annotations

from collections.abc import Mapping

import yaml

from contracts.errors import InvalidRequest

MAX_WEIGHT = 1_000_000


def with_weights(text: str, route: str, weights: Mapping[str, int]) -> str:
    """``text`` with ``routes.<route>.variants.<name>.weight`` set to each of ``weights``."""
    for name, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
            raise InvalidRequest(f"weight of {name!r}: want a whole number from 0 to {MAX_WEIGHT}", param="weights")
    variants = child(child(child(yaml.compose(text), "routes"), route), "variants")
    if variants is None:
        raise InvalidRequest(f"route {route!r} has no variants in the serving rules", param="route")
    spans: list[tuple[int, int, int]] = []
    for name, weight in weights.items():
        node = child(child(variants, name), "weight")
        if not isinstance(node, yaml.ScalarNode):
            raise InvalidRequest(f"route {route!r} has no variant {name!r} with a weight", param="weights")
        spans.append((node.start_mark.index, node.end_mark.index, weight))
    for start, end, weight in sorted(spans, reverse=True):  # from the end, so earlier offsets hold
        text = text[:start] + str(weight) + text[end:]
    return text


def child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            found: yaml.Node = value
            return found
    return None

"""A prompt added to the router's examples, written into a rules document's own text: the new
item goes after the last example (or a new ``examples:`` key after the router's last one), so
comments, order and layout stay as ops wrote them. The result goes through validate, dry run and
apply like any other edit (the console adds a prompt from explain or from a dry-run row)."""

from __future__ import annotations

import json

import yaml

from contracts.errors import InvalidRequest
from gateway.live.weights import child


def with_example(text: str, route: str, prompt: str) -> str:
    """``text`` with ``{route, prompt}`` appended to the classifier router's examples."""
    if not prompt.strip():
        raise InvalidRequest("an example's prompt is empty", param="prompt")
    root = yaml.compose(text)
    router = child(root, "router")
    if isinstance(router, yaml.MappingNode) and _scalar(child(router, "kind")) == "llm":
        router = child(router, "fallback")
    if not isinstance(router, yaml.MappingNode) or _scalar(child(router, "kind")) != "classifier":
        raise InvalidRequest(
            "examples belong to a classifier router: the serving rules have no router.kind: classifier "
            "(nor an llm router with a classifier fallback)",
            param="route",
        )
    if router.flow_style:
        edited = _in_flow_style(text, router, route, prompt)
    else:
        edited = _in_block_style(text, router, route, prompt)
    _check(edited, route, prompt)
    return edited


def _in_block_style(text: str, router: yaml.MappingNode, route: str, prompt: str) -> str:
    examples = child(router, "examples")
    if isinstance(examples, yaml.SequenceNode) and not examples.flow_style and examples.value:
        indent = " " * examples.start_mark.column
        at = _end_of(text, examples.value[-1])
        return text[:at] + "\n" + _item(indent, route, prompt) + text[at:]
    if isinstance(examples, yaml.SequenceNode):  # ``examples: []`` or a flow list: written as a block
        indent = " " * (router.value[0][0].start_mark.column + 2)
        key = next(k for k, v in router.value if v is examples)
        return (
            text[: key.start_mark.index]
            + "examples:\n"
            + _item(indent, route, prompt)
            + text[_end_of(text, examples) :]
        )
    if examples is not None:
        raise InvalidRequest("router.examples is not a list", param="route")
    key_indent = " " * router.value[0][0].start_mark.column
    at = _end_of(text, router.value[-1][1])
    return text[:at] + f"\n{key_indent}examples:\n" + _item(key_indent + "  ", route, prompt) + text[at:]


def _in_flow_style(text: str, router: yaml.MappingNode, route: str, prompt: str) -> str:
    """A router written ``{kind: classifier, ...}``: rewritten as the same flow mapping, in JSON."""
    loaded = yaml.safe_load(text[router.start_mark.index : router.end_mark.index])
    loaded["examples"] = [*(loaded.get("examples") or []), {"route": route, "prompt": prompt}]
    return text[: router.start_mark.index] + json.dumps(loaded, ensure_ascii=False) + text[router.end_mark.index :]


def _item(indent: str, route: str, prompt: str) -> str:
    quoted = json.dumps  # a JSON string is a YAML double-quoted scalar
    return f"{indent}- route: {quoted(route)}\n{indent}  prompt: {quoted(prompt, ensure_ascii=False)}"


def _end_of(text: str, node: yaml.Node) -> int:
    """Where a node's text ends, trailing blank lines and spaces left out (a block scalar's included)."""
    at = node.end_mark.index
    while at > node.start_mark.index and text[at - 1] in " \t\r\n":
        at -= 1
    return at


def _scalar(node: yaml.Node | None) -> str | None:
    return node.value if isinstance(node, yaml.ScalarNode) else None


def _check(edited: str, route: str, prompt: str) -> None:
    """The edit reads back as the rules with one more example at the end, or it is not offered."""
    try:
        router = yaml.safe_load(edited)["router"]
        router = router["fallback"] if router.get("kind") == "llm" else router
        last = router["examples"][-1]
    except (yaml.YAMLError, KeyError, TypeError, IndexError) as exc:
        raise InvalidRequest(f"the example could not be written into these rules: {exc}", param="route") from None
    if last != {"route": route, "prompt": prompt}:
        raise InvalidRequest("the example could not be written into these rules' layout", param="route")

from __future__ import annotations

import json

import pytest

from contracts.wire import ChatCompletionRequest
from gateway.cache.key import cache_key

BASE = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}


def key_of(body: dict[str, object], namespace: str = "t:a", route: str = "r", model: str = "m") -> str:
    return cache_key(namespace, route, model, ChatCompletionRequest.model_validate(body))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", 0.7),
        ("top_p", 0.5),
        ("max_tokens", 12),
        ("stop", ["\n"]),
        ("seed", 42),
        ("tools", [{"type": "function", "function": {"name": "f"}}]),
        ("tool_choice", "required"),
        ("response_format", {"type": "json_object"}),
        ("n", 2),
        ("logprobs", True),
        ("presence_penalty", 0.5),
        ("some_vendor_field", "x"),
        ("messages", [{"role": "user", "content": "hi!"}]),
        ("messages", [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]),
    ],
)
def test_every_answer_changing_field_changes_the_key(field: str, value: object) -> None:
    assert key_of({**BASE, field: value}) != key_of(BASE)


def test_field_order_and_whitespace_do_not_change_the_key() -> None:
    body = {
        **BASE,
        "max_tokens": 5,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"b": 1, "a": 2}}}],
    }
    reordered = json.loads(json.dumps(dict(reversed(list(body.items())))))
    reordered["tools"][0]["function"]["parameters"] = {"a": 2, "b": 1}
    spaced = ChatCompletionRequest.model_validate_json(json.dumps(reordered, indent=4))
    assert cache_key("t:a", "r", "m", spaced) == key_of(body)


@pytest.mark.parametrize("field", [("stream", True), ("user", "u-17"), ("stream_options", {"include_usage": True})])
def test_delivery_fields_do_not_change_the_key(field: tuple[str, object]) -> None:
    assert key_of({**BASE, field[0]: field[1]}) == key_of(BASE)


def test_requested_model_name_does_not_matter_but_route_and_backend_model_do() -> None:
    assert key_of({**BASE, "model": "code"}) == key_of(BASE)
    assert key_of(BASE, route="other") != key_of(BASE)
    assert key_of(BASE, model="other-model") != key_of(BASE)


def test_tenants_are_isolated_unless_shared() -> None:
    assert key_of(BASE, namespace="t:a") != key_of(BASE, namespace="t:b")

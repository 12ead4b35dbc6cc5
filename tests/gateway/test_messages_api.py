"""Anthropic Messages through the official anthropic SDK (``base_url`` at the gateway): JSON, the
event stream, the stream helper, a tool_use / tool_result round trip, and Anthropic's errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anthropic
import httpx
import pytest

from tests.gateway.api_harness import KEY, Clients, sdk_clients

TOOL = {
    "name": "weather",
    "description": "the weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
async def clients() -> AsyncIterator[Clients]:
    async with sdk_clients() as clients:
        yield clients


async def test_a_message_answers_with_text_and_usage(clients: Clients) -> None:
    message = await clients.anthropic.messages.create(
        model="auto",
        max_tokens=32,
        system="be brief",
        messages=[{"role": "user", "content": "hello there"}],
        stop_sequences=["\n\n"],
        extra_body={"top_k": 5, "temperature": 0.2},  # this SDK's create() no longer names them
    )
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: hello there"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 3)
    sent = clients.upstream.bodies[-1]
    assert sent["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    assert (sent["max_tokens"], sent["stop"], sent["top_k"], sent["temperature"]) == (32, ["\n\n"], 5, 0.2)


async def test_a_streamed_message_sends_anthropics_events(clients: Clients) -> None:
    stream = await clients.anthropic.messages.create(
        model="auto", max_tokens=32, messages=[{"role": "user", "content": "one two"}], stream=True
    )
    events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start"
    assert kinds[1:3] == ["content_block_start", "content_block_delta"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")  # type: ignore[union-attr]
    assert text == "echo: one two"
    delta = events[-2]
    assert delta.delta.stop_reason == "end_turn"  # type: ignore[union-attr]
    assert delta.usage.output_tokens == 3  # type: ignore[union-attr]


async def test_the_stream_helper_gives_the_final_message(clients: Clients) -> None:
    async with clients.anthropic.messages.stream(
        model="auto", max_tokens=32, messages=[{"role": "user", "content": "stream helper"}]
    ) as stream:
        texts = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(texts) == "echo: stream helper"
    assert final.content[0].text == "echo: stream helper"  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_a_tool_use_round_trip(clients: Clients, stream: bool) -> None:
    asked = [{"role": "user", "content": "weather in Paris?"}]
    if stream:
        async with clients.anthropic.messages.stream(
            model="auto",
            max_tokens=64,
            tools=[TOOL],
            messages=asked,  # type: ignore[list-item]
        ) as events:
            first = await events.get_final_message()
    else:
        first = await clients.anthropic.messages.create(model="auto", max_tokens=64, tools=[TOOL], messages=asked)  # type: ignore[list-item]
    assert first.stop_reason == "tool_use"
    use = next(block for block in first.content if block.type == "tool_use")
    assert (use.id, use.name, use.input) == ("call_1", "weather", {"city": "Paris"})  # type: ignore[union-attr]
    second = await clients.anthropic.messages.create(
        model="auto",
        max_tokens=64,
        tools=[TOOL],  # type: ignore[list-item]
        messages=[
            *asked,
            {"role": "assistant", "content": [block.model_dump() for block in first.content]},  # type: ignore[misc]
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
        ],
    )
    assert second.content[0].text == "echo: sunny"  # type: ignore[union-attr]
    sent = clients.upstream.bodies[-1]["messages"]
    assert sent[1]["tool_calls"][0]["function"] == {"name": "weather", "arguments": '{"city":"Paris"}'}
    assert sent[2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}


async def test_a_missing_max_tokens_is_refused_in_anthropics_shape(clients: Clients) -> None:
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}  # create() itself insists on it
    with pytest.raises(anthropic.BadRequestError) as refused:
        await clients.anthropic.post("/v1/messages", body=body, cast_to=anthropic.types.Message)
    assert refused.value.status_code == 400
    body = refused.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]


async def test_a_wrong_key_is_anthropics_authentication_error(clients: Clients) -> None:
    async with anthropic.AsyncAnthropic(base_url=clients.url, api_key="sk-wrong-key", max_retries=0) as wrong:
        with pytest.raises(anthropic.AuthenticationError) as refused:
            await wrong.messages.create(model="auto", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert refused.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


async def test_an_unknown_model_is_anthropics_not_found_error(clients: Clients) -> None:
    with pytest.raises(anthropic.NotFoundError) as refused:
        await clients.anthropic.messages.create(
            model="claude-nonesuch", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert refused.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


async def test_images_become_image_parts(clients: Clients) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    await clients.anthropic.messages.create(
        model="auto",
        max_tokens=8,
        messages=[{"role": "user", "content": [image, {"type": "text", "text": "what is it?"}]}],  # type: ignore[list-item]
    )
    sent = clients.upstream.bodies[-1]["messages"][0]["content"]
    assert sent == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "text", "text": "what is it?"},
    ]


async def test_count_tokens_says_when_it_is_an_estimate(clients: Clients) -> None:
    counted = await clients.anthropic.messages.count_tokens(
        model="auto", messages=[{"role": "user", "content": "how many tokens is this?"}]
    )
    assert counted.input_tokens > 0
    async with httpx.AsyncClient(base_url=clients.url, headers={"x-api-key": KEY}) as http:
        answer = await http.post(
            "/v1/messages/count_tokens", json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
        )
    assert answer.headers["x-turnout-token-count"] == "estimate"  # the scripted upstream has no tokenizer
    assert answer.json()["estimated"] is True


@pytest.mark.parametrize(
    "body",
    [
        {"model": "auto", "max_tokens": 8},
        {"model": "auto", "max_tokens": "8", "messages": [{"role": "user", "content": "x"}]},
        {"model": "auto", "max_tokens": 2**64, "messages": [{"role": "user", "content": "x"}]},
        {"model": "auto", "max_tokens": 8, "messages": [{"role": "system", "content": "x"}]},
        {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": [{"type": "video"}]}]},
        {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}], "temperature": 1.5},
        {
            "model": "auto",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "x"}],
            "tool_choice": {"type": "x"},
        },
        {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}], "extra": 2**70},
        {
            "model": "auto",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "x"}],
            "tool_choice": {"type": "tool"},
        },
        {
            "model": "auto",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "x"}],
            "tool_choice": {"type": "auto", "name": "f"},
        },
        {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": []}]},
    ],
    ids=[
        "no-messages",
        "string-max-tokens",
        "beyond-64-bits",
        "system-role",
        "unknown-block",
        "hot",
        "tool-choice",
        "extra",
        "forced-tool-without-name",
        "name-without-forcing",
        "empty-content",
    ],
)
async def test_bad_input_is_a_400_in_anthropics_shape(clients: Clients, body: dict[str, object]) -> None:
    async with httpx.AsyncClient(
        base_url=clients.url, headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    ) as http:
        answer = await http.post("/v1/messages", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["type"] == "error"
    assert answer.json()["error"]["type"] == "invalid_request_error"


async def test_broken_json_and_an_oversized_body_keep_anthropics_shape(clients: Clients) -> None:
    async with httpx.AsyncClient(base_url=clients.url, headers={"x-api-key": KEY}) as http:
        broken = await http.post("/v1/messages", content=b"{not json", headers={"content-type": "application/json"})
        large = await http.post("/v1/messages", content=b"x" * (5 * 1024 * 1024))
        wrong_method = await http.get("/v1/messages")
    assert (broken.status_code, broken.json()["error"]["type"]) == (400, "invalid_request_error")
    assert (large.status_code, large.json()["error"]["type"]) == (413, "request_too_large")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["type"] == "error"

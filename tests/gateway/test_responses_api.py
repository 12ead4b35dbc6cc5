"""The OpenAI Responses API through the official openai SDK: JSON, the event stream, the stream
helper, a function-call round trip, stored responses, their continuation, and their owner."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import openai
import pytest

from tests.gateway.api_harness import KEY, OTHER_KEY, Clients, sdk_clients

TOOL = {
    "type": "function",
    "name": "weather",
    "description": "the weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
async def clients() -> AsyncIterator[Clients]:
    async with sdk_clients() as clients:
        yield clients


async def test_a_response_answers_with_output_text_and_usage(clients: Clients) -> None:
    response = await clients.openai.responses.create(
        model="auto", input="hello there", instructions="be brief", max_output_tokens=20, temperature=0.5
    )
    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text == "echo: hello there"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (11, 3)
    sent = clients.upstream.bodies[-1]
    assert sent["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    assert (sent["max_tokens"], sent["temperature"]) == (20, 0.5)


async def test_a_streamed_response_sends_the_event_sequence(clients: Clients) -> None:
    stream = await clients.openai.responses.create(model="auto", input="one two three", stream=True)
    events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[2:4] == ["response.output_item.added", "response.content_part.added"]
    assert "response.output_text.delta" in kinds
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
    assert deltas == "echo: one two three"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    completed = events[-1].response  # type: ignore[union-attr]
    assert completed.output_text == deltas
    assert completed.usage.output_tokens == 3


async def test_the_stream_helper_gives_the_final_response(clients: Clients) -> None:
    async with clients.openai.responses.stream(model="auto", input="stream helper") as stream:
        texts = [event.delta async for event in stream if event.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(texts) == final.output_text == "echo: stream helper"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_a_function_call_round_trip(clients: Clients, stream: bool) -> None:
    if stream:
        async with clients.openai.responses.stream(model="auto", input="weather?", tools=[TOOL]) as events:
            first = await events.get_final_response()
    else:
        first = await clients.openai.responses.create(model="auto", input="weather?", tools=[TOOL])  # type: ignore[list-item]
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert (call.name, call.arguments, call.call_id) == ("weather", '{"city": "Paris"}', "call_1")
    assert clients.upstream.bodies[-1]["tools"][0]["function"]["name"] == "weather"
    second = await clients.openai.responses.create(
        model="auto",
        tools=[TOOL],  # type: ignore[list-item]
        input=[
            {"role": "user", "content": "weather?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        ],
    )
    assert second.output_text == "echo: sunny"
    sent = clients.upstream.bodies[-1]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == "call_1"
    assert sent[2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}


async def test_previous_response_id_continues_the_conversation(clients: Clients) -> None:
    first = await clients.openai.responses.create(model="auto", input="my name is Ada", instructions="first only")
    second = await clients.openai.responses.create(model="auto", input="who am I?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    sent = clients.upstream.bodies[-1]["messages"]
    assert sent == [
        {"role": "user", "content": "my name is Ada"},
        {"role": "assistant", "content": "echo: my name is Ada"},
        {"role": "user", "content": "who am I?"},
    ]  # the first request's instructions are not carried over, as OpenAI does it


async def test_a_streamed_response_is_stored_too(clients: Clients) -> None:
    async with clients.openai.responses.stream(model="auto", input="keep me") as stream:
        final = await stream.get_final_response()
    found = await clients.openai.responses.retrieve(final.id)
    assert found.output_text == "echo: keep me"
    assert found.id == final.id


async def test_a_stored_response_is_retrieved_and_deleted(clients: Clients) -> None:
    created = await clients.openai.responses.create(model="auto", input="remember", metadata={"ticket": "42"})
    found = await clients.openai.responses.retrieve(created.id)
    assert found.output_text == created.output_text
    assert found.metadata == {"ticket": "42"}
    await clients.openai.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        await clients.openai.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        await clients.openai.responses.delete(created.id)


async def test_store_false_keeps_nothing(clients: Clients) -> None:
    created = await clients.openai.responses.create(model="auto", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        await clients.openai.responses.retrieve(created.id)


async def test_another_tenants_response_is_not_there(clients: Clients) -> None:
    created = await clients.openai.responses.create(model="auto", input="mine")
    async with openai.AsyncOpenAI(base_url=clients.url + "/v1", api_key=OTHER_KEY, max_retries=0) as other:
        with pytest.raises(openai.NotFoundError):
            await other.responses.retrieve(created.id)
        with pytest.raises(openai.NotFoundError):
            await other.responses.delete(created.id)
        with pytest.raises(openai.BadRequestError) as refused:
            await other.responses.create(model="auto", input="continue", previous_response_id=created.id)
    assert refused.value.code == "previous_response_not_found"
    assert (await clients.openai.responses.retrieve(created.id)).id == created.id  # still the owner's


async def test_text_format_json_schema_becomes_the_response_format(clients: Clients) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    await clients.openai.responses.create(
        model="auto",
        input="json please",
        text={"format": {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}},
    )
    sent = clients.upstream.bodies[-1]
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": schema, "strict": True},
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "auto"}, "input"),
        ({"model": "auto", "input": 5}, "input"),
        ({"model": "auto", "input": [{"type": "web_search_call", "id": "x"}]}, "input.0"),
        ({"model": "auto", "input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, None),
        ({"model": "auto", "input": "x", "max_output_tokens": 2**64}, "max_output_tokens"),
        ({"model": "auto", "input": "x", "temperature": "hot"}, "temperature"),
        ({"model": "auto", "input": "x", "tools": [{"type": "web_search"}]}, None),
        ({"model": "auto", "input": "x", "background": True}, "background"),
        ({"model": "auto", "input": "x", "seed": 2**70}, None),
        ({"model": "auto", "input": "x", "previous_response_id": "resp_does_not_exist"}, "previous_response_id"),
    ],
    ids=[
        "no-input",
        "input-number",
        "unknown-item",
        "unknown-part",
        "beyond-64-bits",
        "wrong-type",
        "hosted-tool",
        "background",
        "extra-beyond-64-bits",
        "unknown-previous",
    ],
)
async def test_bad_input_is_a_4xx_in_openai_shape(clients: Clients, body: dict[str, object], param: str | None) -> None:
    async with httpx.AsyncClient(base_url=clients.url, headers={"authorization": f"Bearer {KEY}"}) as http:
        answer = await http.post("/v1/responses", json=body)
    assert 400 <= answer.status_code < 500, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param


async def test_an_oversized_body_is_a_413(clients: Clients) -> None:
    async with httpx.AsyncClient(base_url=clients.url, headers={"authorization": f"Bearer {KEY}"}) as http:
        answer = await http.post("/v1/responses", json={"model": "auto", "input": "x" * (5 * 1024 * 1024)})
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "request_too_large"

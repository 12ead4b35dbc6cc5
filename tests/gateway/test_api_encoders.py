"""Each API's encoder on answers the scripted upstream does not give: cut at the token limit, tool
arguments that are not JSON, a stream that opens with a tool call, an empty answer."""

from __future__ import annotations

from typing import Any

import orjson

from contracts.wire import ChatCompletion, ChatCompletionChunk
from gateway.apis.messages import MessagesEncoder
from gateway.apis.responses import ResponsesEncoder
from gateway.apis.responses_wire import ResponsesRequest
from gateway.response_store import ResponseStore


def completion(message: dict[str, Any], finish: str) -> ChatCompletion:
    choice = {"index": 0, "message": message, "finish_reason": finish}
    usage = {"prompt_tokens": 4, "completion_tokens": 16, "total_tokens": 20}
    return ChatCompletion.model_validate({"id": "c", "model": "m", "choices": [choice], "usage": usage})


def chunk(delta: dict[str, Any], finish: str | None = None) -> ChatCompletionChunk:
    return ChatCompletionChunk.model_validate(
        {"model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    )


def responses_encoder() -> ResponsesEncoder:
    asked = ResponsesRequest.model_validate({"model": "auto", "input": "x", "max_output_tokens": 16})
    return ResponsesEncoder(asked, [], "t", ResponseStore(None, 60, 4096, 1 << 20))


def events(raw: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line.removeprefix(b"data: ")) for line in raw.split(b"\n") if line.startswith(b"data: ")]


def test_a_response_cut_at_max_output_tokens_is_incomplete() -> None:
    answer = orjson.loads(responses_encoder().whole(completion({"role": "assistant", "content": "abc"}, "length")))
    assert answer["status"] == "incomplete"
    assert answer["incomplete_details"] == {"reason": "max_output_tokens"}
    stream = responses_encoder().stream()
    raw = stream.opening(chunk({"content": "abc"})) + stream.chunk(chunk({}, "length")) + stream.closing()
    assert events(raw)[-1]["type"] == "response.incomplete"


def test_a_responses_stream_that_opens_with_a_tool_call_has_no_empty_message() -> None:
    stream = responses_encoder().stream()
    call = {"index": 0, "id": "call_9", "function": {"name": "f", "arguments": "{}"}}
    raw = stream.opening(chunk({"tool_calls": [call]})) + stream.chunk(chunk({}, "tool_calls")) + stream.closing()
    final = events(raw)[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["function_call"]
    assert final["output"][0]["call_id"] == "call_9"


def test_an_empty_answer_is_still_one_message_item() -> None:
    stream = responses_encoder().stream()
    raw = stream.opening(chunk({"role": "assistant"})) + stream.chunk(chunk({}, "stop")) + stream.closing()
    kinds = [event["type"] for event in events(raw)]
    assert kinds[-1] == "response.completed"
    assert "response.output_item.done" in kinds
    assert events(raw)[-1]["response"]["output"][0]["content"][0]["text"] == ""


def test_a_message_cut_at_max_tokens_says_so_and_keeps_tool_arguments_that_are_not_json() -> None:
    call = {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "not json"}}
    answer = orjson.loads(
        MessagesEncoder("auto").whole(completion({"role": "assistant", "content": "a", "tool_calls": [call]}, "length"))
    )
    assert answer["stop_reason"] == "max_tokens"
    assert answer["content"][1] == {"type": "tool_use", "id": "t1", "name": "f", "input": {"arguments": "not json"}}


def test_a_messages_stream_switches_blocks_from_text_to_tool_use() -> None:
    stream = MessagesEncoder("auto").stream()
    call = {"index": 0, "id": "t1", "function": {"name": "f", "arguments": '{"a"'}}
    raw = (
        stream.opening(chunk({"content": "thinking"}))
        + stream.chunk(chunk({"tool_calls": [call]}))
        + stream.chunk(chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}, "tool_calls"))
        + stream.closing()
    )
    seen = [(e["type"], e.get("index")) for e in events(raw)]
    assert seen == [
        ("message_start", None),
        ("ping", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert events(raw)[-2]["delta"]["stop_reason"] == "tool_use"

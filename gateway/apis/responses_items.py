"""The Responses API's output items and usage, built alike for a whole answer and a stream's end."""

from __future__ import annotations

from typing import Any

from contracts.wire import ChatCompletion


def usage_of(completion: ChatCompletion | None) -> dict[str, Any] | None:
    usage = completion.usage if completion is not None else None
    if usage is None:
        return None
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
    }


def output_of(completion: ChatCompletion, response_id: str) -> list[dict[str, Any]]:
    """The answer as output items: its text as one message, then one ``function_call`` per tool call."""
    message = (completion.choices[0].model_extra or {}).get("message") or {} if completion.choices else {}
    calls = message.get("tool_calls") or []
    output: list[dict[str, Any]] = []
    if message.get("content") or not calls:
        output.append(message_item(response_id, message.get("content") or "", "completed"))
    output += [
        function_call_item(response_id, i, chat_call(call, response_id, i), "completed") for i, call in enumerate(calls)
    ]
    return output


def message_item(response_id: str, text: str, status: str) -> dict[str, Any]:
    content = (
        [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if status == "completed" else []
    )
    return {
        "type": "message",
        "id": "msg_" + response_id[5:],
        "status": status,
        "role": "assistant",
        "content": content,
    }


def function_call_item(response_id: str, index: int, call: dict[str, Any], status: str) -> dict[str, Any]:
    function = call["function"]
    return {
        "type": "function_call",
        "id": f"fc_{response_id[5:]}_{index}",
        "call_id": call["id"],
        "name": function["name"],
        "arguments": function["arguments"] if status == "completed" else "",
        "status": status,
    }


def chat_call(call: dict[str, Any], response_id: str, index: int) -> dict[str, Any]:
    """A tool call as the chat API carries it, with an id even when the backend gave none."""
    function = call.get("function") or {}
    return {
        "id": call.get("id") or f"call_{response_id[5:]}_{index}",
        "type": "function",
        "function": {"name": function.get("name") or "", "arguments": function.get("arguments") or ""},
    }

"""Anthropic Messages (``POST /v1/messages``, ``POST /v1/messages/count_tokens``).

Decoding turns ``system``, the messages' ``text``, ``image``, ``tool_use`` and ``tool_result``
blocks, ``tools``, ``tool_choice``, ``stop_sequences`` and the sampling settings (``top_k`` passed
through) into the internal chat request. Encoding builds the message (text and ``tool_use`` blocks,
``stop_reason``, usage) or its stream of events (:mod:`.messages_stream`). Errors under
``/v1/messages`` take Anthropic's shape and statuses (:func:`contracts.errors.anthropic_error`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson

from contracts.wire import ChatCompletion, ChatCompletionRequest
from gateway.apis.messages_stream import MessagesStreamEncoder, stop_reason
from gateway.apis.messages_wire import Block, ImageBlock, MessagesRequest, TextBlock, ToolResultBlock, ToolUseBlock
from gateway.auth import Principal
from gateway.request_body import parse_body, validate_payload
from gateway.serving.answer import Arrival
from gateway.serving.call import Call, Endpoint

Message = dict[str, Any]
ASIDE = {"system", "messages", "stop_sequences", "tools", "tool_choice", "metadata"}
"""Fields that become something else in the internal request."""
DROPPED = {"service_tier", "thinking", "container", "context_management"}
"""Anthropic-only settings with no meaning for the backends here: accepted, not sent on."""


class MessagesApi:
    endpoint: Endpoint = "messages"

    async def decode(self, body: bytes, principal: Principal, arrival: Arrival) -> tuple[Call, MessagesEncoder]:
        asked = parse_body(MessagesRequest, body)
        return Call("messages", chat_request(asked)), MessagesEncoder(asked.model)


def chat_request(asked: MessagesRequest) -> ChatCompletionRequest:
    fields = asked.model_dump(mode="json", exclude_unset=True, exclude=ASIDE | DROPPED)
    system = _system(asked.system)
    fields["messages"] = [*system, *(m for message in asked.messages for m in _messages(message.role, message.content))]
    if asked.stop_sequences:
        fields["stop"] = asked.stop_sequences
    if asked.tools is not None:
        fields["tools"] = [
            {"type": "function", "function": _function(tool.name, tool.description, tool.input_schema)}
            for tool in asked.tools
        ]
    if (choice := asked.tool_choice) is not None:
        named = {"type": "function", "function": {"name": choice.name or ""}}
        fields["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}.get(choice.type, named)
        if choice.disable_parallel_tool_use:
            fields["parallel_tool_calls"] = False
    if asked.metadata is not None and asked.metadata.user_id is not None:
        fields["user"] = asked.metadata.user_id
    return validate_payload(ChatCompletionRequest, fields)


def _function(name: str, description: str | None, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "parameters": schema} | ({"description": description} if description else {})


def _system(system: str | list[TextBlock] | None) -> list[Message]:
    if system is None:
        return []
    text = system if isinstance(system, str) else "\n".join(block.text for block in system)
    return [{"role": "system", "content": text}]


def _messages(role: str, content: str | list[Block]) -> list[Message]:
    """One Anthropic message as chat messages: tool results become ``tool`` messages (first, as the
    chat API wants them right after the call), tool uses the assistant's tool calls."""
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    results = [_tool_result(block) for block in content if isinstance(block, ToolResultBlock)]
    parts = [_part(block) for block in content if isinstance(block, TextBlock | ImageBlock)]
    calls = [_tool_call(block) for block in content if isinstance(block, ToolUseBlock)]
    if role == "assistant":
        text = "".join(part["text"] for part in parts if part["type"] == "text")
        said: Message = {"role": "assistant", "content": text or None}
        return [said | ({"tool_calls": calls} if calls else {})] if text or calls else []
    return results + ([{"role": "user", "content": parts}] if parts else [])


def _part(block: TextBlock | ImageBlock) -> dict[str, Any]:
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    source = block.source
    url = source.url if source.type == "url" else f"data:{source.media_type};base64,{source.data}"
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result(block: ToolResultBlock) -> Message:
    content = block.content
    text = content if isinstance(content, str) else "\n".join(b.text for b in content or [] if isinstance(b, TextBlock))
    return {"role": "tool", "tool_call_id": block.tool_use_id, "content": text}


def _tool_call(block: ToolUseBlock) -> dict[str, Any]:
    arguments = orjson.dumps(block.input).decode()
    return {"id": block.id, "type": "function", "function": {"name": block.name, "arguments": arguments}}


@dataclass
class MessagesEncoder:
    model: str
    """The model the caller asked for: named in the answer when the backend names none."""
    id: str = field(default_factory=lambda: "msg_" + secrets.token_hex(12))

    def whole(self, completion: ChatCompletion) -> bytes:
        choice = completion.choices[0]
        message = (choice.model_extra or {}).get("message") or {}
        content: list[dict[str, Any]] = [{"type": "text", "text": message["content"]}] if message.get("content") else []
        for i, call in enumerate(message.get("tool_calls") or []):
            function = call.get("function") or {}
            tool_id = call.get("id") or f"toolu_{self.id[4:]}_{i}"
            content.append(
                {
                    "type": "tool_use",
                    "id": tool_id,
                    "name": function.get("name") or "",
                    "input": tool_input(function.get("arguments")),
                }
            )
        usage = completion.usage
        answer = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": completion.model or self.model,
            "content": content,
            "stop_reason": stop_reason(choice.finish_reason),
            "stop_sequence": None,
            "usage": {
                "input_tokens": usage.prompt_tokens if usage else 0,
                "output_tokens": usage.completion_tokens if usage else 0,
            },
        }
        return orjson.dumps(answer)

    def stream(self) -> MessagesStreamEncoder:
        return MessagesStreamEncoder(self.id, self.model)

    async def keep(self, completion: ChatCompletion) -> None:
        return None  # Anthropic's API stores nothing


def tool_input(arguments: str | None) -> dict[str, Any]:
    """A tool call's arguments as the object Anthropic's ``input`` is; arguments a model wrote that
    are not a JSON object are kept whole under ``arguments``, not dropped."""
    try:
        parsed = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return {"arguments": arguments}
    return parsed if isinstance(parsed, dict) else {"arguments": parsed}

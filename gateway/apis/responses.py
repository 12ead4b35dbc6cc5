"""The OpenAI Responses API (``POST /v1/responses``, ``GET`` and ``DELETE /v1/responses/{id}``).

Decoding turns ``instructions`` and ``input`` (a string, or message, ``function_call`` and
``function_call_output`` items), function tools, ``tool_choice``, ``text.format`` and the sampling
settings into the internal chat request; with ``previous_response_id`` the stored conversation comes
first. Encoding builds the response object (``output`` message and ``function_call`` items, usage,
status) or its stream of events (:mod:`.responses_stream`), and a response with ``store`` is kept
for its tenant (:class:`~gateway.response_store.ResponseStore`).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from contracts.errors import GatewayError, RequestError
from contracts.wire import ChatCompletion, ChatCompletionRequest
from gateway.apis.responses_items import chat_call, output_of, usage_of
from gateway.apis.responses_stream import ResponsesStreamEncoder
from gateway.apis.responses_wire import (
    ContentPart,
    FunctionCallItem,
    FunctionCallOutputItem,
    InputItem,
    InputText,
    MessageItem,
    OutputText,
    Refusal,
    ResponsesRequest,
)
from gateway.auth import Principal
from gateway.request_body import parse_body, validate_payload
from gateway.response_store import ResponseStore
from gateway.serving.answer import Arrival
from gateway.serving.call import Call, Endpoint

Message = dict[str, Any]
DROPPED = {"include", "truncation", "service_tier", "prompt_cache_key", "safety_identifier", "stream_options"}
"""Responses fields with nothing to do here (no server-side files, truncation or tiers): accepted, not sent on."""
ASIDE = {"input", "instructions", "max_output_tokens", "text", "previous_response_id", "background"}
"""Fields that become something else in the internal request."""


class PreviousResponseNotFound(RequestError):
    default_code = "previous_response_not_found"


class ResponsesApi:
    endpoint: Endpoint = "responses"

    async def decode(self, body: bytes, principal: Principal, arrival: Arrival) -> tuple[Call, ResponsesEncoder]:
        asked = parse_body(ResponsesRequest, body)
        store = arrival.resources.responses
        history: list[Message] = []
        if asked.previous_response_id is not None:
            record = await store.get(principal.tenant, asked.previous_response_id)
            if record is None:
                raise PreviousResponseNotFound(
                    f"previous response {asked.previous_response_id!r} not found", param="previous_response_id"
                )
            history = orjson.loads(record)["conversation"]
        conversation = [*history, *messages_of(asked.input)]
        chat = chat_request(asked, conversation)
        return Call("responses", chat), ResponsesEncoder(asked, conversation, principal.tenant, store)


def chat_request(asked: ResponsesRequest, conversation: list[Message]) -> ChatCompletionRequest:
    fields = asked.model_dump(mode="json", exclude_unset=True, exclude=ASIDE | DROPPED, by_alias=True)
    if asked.tools is not None:
        fields["tools"] = [
            {"type": "function", "function": _function(t.model_dump(exclude={"type"}))} for t in asked.tools
        ]
    if isinstance(fields.get("tool_choice"), dict):
        fields["tool_choice"] = {"type": "function", "function": {"name": fields["tool_choice"]["name"]}}
    if asked.max_output_tokens is not None:
        fields["max_tokens"] = asked.max_output_tokens
    if (response_format := _response_format(asked)) is not None:
        fields["response_format"] = response_format
    system = [{"role": "system", "content": asked.instructions}] if asked.instructions else []
    fields["messages"] = [*system, *conversation]
    if not fields["messages"]:
        raise RequestError("input holds no message", param="input")
    return validate_payload(ChatCompletionRequest, fields)


def _function(tool: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in tool.items() if value is not None}


def _response_format(asked: ResponsesRequest) -> dict[str, Any] | None:
    format_ = asked.text.format if asked.text is not None else None
    if format_ is None or format_.type == "text":
        return None
    if format_.type == "json_object":
        return {"type": "json_object"}
    if format_.name is None or format_.schema_ is None:
        raise RequestError("text.format json_schema needs a name and a schema", param="text.format")
    schema: dict[str, Any] = {"name": format_.name, "schema": format_.schema_}
    if format_.strict is not None:
        schema["strict"] = format_.strict
    return {"type": "json_schema", "json_schema": schema}


def messages_of(input_: str | list[InputItem]) -> list[Message]:
    """Input items as chat messages: a run of ``function_call`` items becomes one assistant message's
    tool calls (joined to the assistant text just before it), each output a ``tool`` message."""
    if isinstance(input_, str):
        return [{"role": "user", "content": input_}]
    messages: list[Message] = []
    for item in input_:
        if isinstance(item, MessageItem):
            role = "system" if item.role == "developer" else item.role
            messages.append({"role": role, "content": _content(item.content)})
        elif isinstance(item, FunctionCallItem):
            call = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": item.arguments},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif isinstance(item, FunctionCallOutputItem):
            output = item.output if isinstance(item.output, str) else _text(item.output)
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": output})
    return messages


def _content(content: str | list[ContentPart]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, InputText | OutputText):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, Refusal):
            parts.append({"type": "text", "text": part.refusal})
        elif part.image_url is not None:
            image = {"url": part.image_url} | ({"detail": part.detail} if part.detail else {})
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise RequestError("input_image by file_id is not served here: send image_url", param="input")
    return parts


def _text(parts: list[ContentPart]) -> str:
    return "\n".join(p.text for p in parts if isinstance(p, InputText | OutputText))


@dataclass
class ResponsesEncoder:
    asked: ResponsesRequest
    conversation: list[Message]
    """The request's conversation, without ``instructions`` (which a continuation does not inherit)."""
    tenant: str
    store: ResponseStore
    id: str = field(default_factory=lambda: "resp_" + secrets.token_hex(16))
    created_at: int = field(default_factory=lambda: int(time.time()))

    def whole(self, completion: ChatCompletion) -> bytes:
        return orjson.dumps(self.response(output_of(completion, self.id), completion))

    def stream(self) -> ResponsesStreamEncoder:
        return ResponsesStreamEncoder(self)

    async def keep(self, completion: ChatCompletion) -> None:
        if not self.asked.store:
            return
        answer = self.response(output_of(completion, self.id), completion)
        message = (completion.choices[0].model_extra or {}).get("message") or {}
        said = {"role": "assistant", "content": message.get("content")}
        if message.get("tool_calls"):
            said["tool_calls"] = [chat_call(call, self.id, i) for i, call in enumerate(message["tool_calls"])]
        record = {"response": answer, "conversation": [*self.conversation, said]}
        await self.store.put(self.tenant, self.id, orjson.dumps(record))

    def response(self, output: list[dict[str, Any]], completion: ChatCompletion | None, status: str = "") -> Any:
        """The response object; ``completion`` ``None``: one still in progress."""
        asked = self.asked
        finish = completion.choices[0].finish_reason if completion is not None and completion.choices else None
        incomplete = {"length": "max_output_tokens", "content_filter": "content_filter"}.get(finish or "")
        status = status or ("in_progress" if completion is None else "incomplete" if incomplete else "completed")
        text_format = (
            asked.text.format.model_dump(by_alias=True, exclude_none=True)
            if asked.text and asked.text.format
            else {"type": "text"}
        )
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": None,
            "incomplete_details": {"reason": incomplete} if incomplete else None,
            "instructions": asked.instructions,
            "max_output_tokens": asked.max_output_tokens,
            "model": completion.model if completion is not None and completion.model else asked.model,
            "output": output,
            "parallel_tool_calls": asked.parallel_tool_calls is not False,
            "previous_response_id": asked.previous_response_id,
            "store": asked.store,
            "temperature": asked.temperature,
            "text": {"format": text_format},
            "tool_choice": _tool_choice(asked),
            "tools": [t.model_dump(exclude_none=True) for t in asked.tools or []],
            "top_p": asked.top_p,
            "truncation": "disabled",
            "usage": usage_of(completion),
            "user": asked.user,
            "metadata": asked.metadata or {},
        }

    def failed(self, output: list[dict[str, Any]], error: GatewayError) -> Any:
        failed = self.response(output, None, status="failed")
        failed["error"] = {"code": error.code or error.error_type, "message": error.message}
        return failed


def _tool_choice(asked: ResponsesRequest) -> Any:
    choice = asked.tool_choice
    return choice.model_dump() if choice is not None and not isinstance(choice, str) else choice or "auto"

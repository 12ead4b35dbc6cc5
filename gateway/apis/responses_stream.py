"""A Responses API stream: the chunk deltas as OpenAI's event sequence.

``response.created``, ``response.in_progress``; per output item ``response.output_item.added``, for
text ``response.content_part.added`` and ``response.output_text.delta``..., for a tool call
``response.function_call_arguments.delta``...; when the answer is whole, each item's ``.done``
events and ``response.completed`` (``response.incomplete`` when it was cut at ``max_output_tokens``).
A stream cut after its first event ends with ``error`` and ``response.failed``, never ``completed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from contracts.errors import GatewayError
from contracts.wire import ChatCompletion, ChatCompletionChunk, Usage
from gateway.apis.responses_items import function_call_item, message_item

if TYPE_CHECKING:
    from gateway.apis.responses import ResponsesEncoder


@dataclass
class OpenCall:
    output_index: int
    call_id: str
    name: str
    arguments: str = ""


@dataclass
class ResponsesStreamEncoder:
    encoder: ResponsesEncoder
    sequence: int = 0
    items: int = 0
    """Output items opened so far."""
    text_index: int | None = None
    text: str = ""
    calls: dict[int, OpenCall] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str = ""

    def opening(self, first: ChatCompletionChunk) -> bytes:
        started = self.encoder.response([], None)
        head = self._event("response.created", response=started) + self._event("response.in_progress", response=started)
        return head + self.chunk(first)

    def chunk(self, chunk: ChatCompletionChunk) -> bytes:
        self.model = chunk.model or self.model
        self.usage = chunk.usage or self.usage
        events = b""
        for choice in chunk.choices[:1] if chunk.choices and chunk.choices[0].index == 0 else []:
            delta = (choice.model_extra or {}).get("delta") or {}
            if delta.get("content"):
                events += self._text(delta["content"])
            for call in delta.get("tool_calls") or []:
                events += self._call(call)
            self.finish_reason = choice.finish_reason or self.finish_reason
        return events

    def closing(self) -> bytes:
        events = b""
        if self.text_index is None and not self.calls:
            events += self._open_text()
        output: list[tuple[int, dict[str, Any]]] = []
        if self.text_index is not None:
            events += self._close_text()
            output.append((self.text_index, self._message("completed")))
        for index, call in sorted(self.calls.items()):
            done = self._function_call(index, call, "completed")
            events += self._event(
                "response.function_call_arguments.done",
                item_id=done["id"],
                output_index=call.output_index,
                name=call.name,
                arguments=call.arguments,
            )
            events += self._event("response.output_item.done", output_index=call.output_index, item=done)
            output.append((call.output_index, done))
        summary = ChatCompletion.model_validate(
            {
                "model": self.model,
                "choices": [{"index": 0, "finish_reason": self.finish_reason or "stop"}],
                "usage": self.usage.model_dump() if self.usage is not None else None,
            }
        )
        response = self.encoder.response([item for _, item in sorted(output, key=lambda pair: pair[0])], summary)
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        return events + self._event(kind, response=response)

    def failure(self, error: GatewayError) -> bytes:
        said = self._event("error", code=error.code or error.error_type, message=error.message, param=error.param)
        return said + self._event("response.failed", response=self.encoder.failed([], error))

    def _text(self, text: str) -> bytes:
        events = self._open_text() if self.text_index is None else b""
        self.text += text
        return events + self._event(
            "response.output_text.delta",
            item_id=self._message_id,
            output_index=self.text_index,
            content_index=0,
            delta=text,
            logprobs=[],
        )

    def _open_text(self) -> bytes:
        self.text_index, self.items = self.items, self.items + 1
        added = self._event(
            "response.output_item.added", output_index=self.text_index, item=self._message("in_progress")
        )
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return added + self._event(
            "response.content_part.added",
            item_id=self._message_id,
            output_index=self.text_index,
            content_index=0,
            part=part,
        )

    def _close_text(self) -> bytes:
        where = {"item_id": self._message_id, "output_index": self.text_index, "content_index": 0}
        part = {"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}
        return (
            self._event("response.output_text.done", **where, text=self.text, logprobs=[])
            + self._event("response.content_part.done", **where, part=part)
            + self._event("response.output_item.done", output_index=self.text_index, item=self._message("completed"))
        )

    def _call(self, delta: dict[str, Any]) -> bytes:
        index = delta.get("index", 0) if isinstance(delta.get("index", 0), int) else 0
        function = delta.get("function") or {}
        events = b""
        call = self.calls.get(index)
        if call is None:
            call_id = delta.get("id") or f"call_{self.encoder.id[5:]}_{index}"
            call = self.calls[index] = OpenCall(self.items, call_id, function.get("name") or "")
            self.items += 1
            item = self._function_call(index, call, "in_progress")
            events += self._event("response.output_item.added", output_index=call.output_index, item=item)
        elif function.get("name"):
            call.name += function["name"]
        if arguments := function.get("arguments"):
            call.arguments += arguments
            item_id = self._function_call(index, call, "in_progress")["id"]
            events += self._event(
                "response.function_call_arguments.delta",
                item_id=item_id,
                output_index=call.output_index,
                delta=arguments,
            )
        return events

    def _function_call(self, index: int, call: OpenCall, status: str) -> dict[str, Any]:
        chat = {"id": call.call_id, "function": {"name": call.name, "arguments": call.arguments}}
        return function_call_item(self.encoder.id, index, chat, status)

    @property
    def _message_id(self) -> str:
        return str(self._message("in_progress")["id"])

    def _message(self, status: str) -> dict[str, Any]:
        return message_item(self.encoder.id, self.text, status)

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = orjson.dumps({"type": kind, "sequence_number": self.sequence, **fields})
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"

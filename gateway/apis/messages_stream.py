"""An Anthropic Messages stream: the chunk deltas as Anthropic's events.

``message_start``, ``ping``; per content block ``content_block_start``, ``content_block_delta``
(``text_delta`` or ``input_json_delta``)..., ``content_block_stop``; when the answer is whole,
``message_delta`` with the ``stop_reason`` and usage, then ``message_stop``. A stream cut after its
first event ends with an ``error`` event in Anthropic's shape, never ``message_stop``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from contracts.errors import GatewayError, anthropic_error
from contracts.wire import ChatCompletionChunk, Usage

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}


@dataclass
class MessagesStreamEncoder:
    id: str
    model: str
    blocks: int = 0
    """Content blocks started so far."""
    open_block: tuple[str, int] | None = None
    """The block being written: ``("text", -1)`` or ``("tool", <the chat tool call's index>)``."""
    finish_reason: str | None = None
    usage: Usage | None = None

    def opening(self, first: ChatCompletionChunk) -> bytes:
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": first.model or self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return self._event("message_start", message=message) + self._event("ping") + self.chunk(first)

    def chunk(self, chunk: ChatCompletionChunk) -> bytes:
        self.usage = chunk.usage or self.usage
        events = b""
        for choice in chunk.choices[:1] if chunk.choices and chunk.choices[0].index == 0 else []:
            delta = (choice.model_extra or {}).get("delta") or {}
            if delta.get("content"):
                events += self._switch_to(("text", -1), {"type": "text", "text": ""})
                events += self._delta({"type": "text_delta", "text": delta["content"]})
            for call in delta.get("tool_calls") or []:
                events += self._tool_call(call)
            self.finish_reason = choice.finish_reason or self.finish_reason
        return events

    def closing(self) -> bytes:
        events = self._stop_block()
        usage = self.usage
        counted = {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens} if usage else {}
        stopped = {"stop_reason": stop_reason(self.finish_reason), "stop_sequence": None}
        events += self._event("message_delta", delta=stopped, usage={"output_tokens": 0} | counted)
        return events + self._event("message_stop")

    def failure(self, error: GatewayError) -> bytes:
        _, body = anthropic_error(error)
        return b"event: error\ndata: " + body + b"\n\n"

    def _tool_call(self, call: dict[str, Any]) -> bytes:
        index = call.get("index", 0) if isinstance(call.get("index", 0), int) else 0
        function = call.get("function") or {}
        block: dict[str, Any] = {
            "type": "tool_use",
            "id": call.get("id") or f"toolu_{self.id[4:]}_{index}",
            "name": function.get("name") or "",
            "input": {},
        }
        events = self._switch_to(("tool", index), block)
        if arguments := function.get("arguments"):
            events += self._delta({"type": "input_json_delta", "partial_json": arguments})
        return events

    def _switch_to(self, block: tuple[str, int], started: dict[str, Any]) -> bytes:
        """Start ``block`` unless it is the one being written (stopping that one first)."""
        if self.open_block == block:
            return b""
        events = self._stop_block()
        self.open_block = block
        return events + self._event("content_block_start", index=self.blocks, content_block=started)

    def _stop_block(self) -> bytes:
        if self.open_block is None:
            return b""
        self.open_block = None
        self.blocks += 1
        return self._event("content_block_stop", index=self.blocks - 1)

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return self._event("content_block_delta", index=self.blocks, delta=delta)

    def _event(self, kind: str, **fields: Any) -> bytes:
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **fields}) + b"\n\n"


def stop_reason(finish_reason: str | None) -> str:
    return STOP_REASONS.get(finish_reason or "stop", "end_turn")

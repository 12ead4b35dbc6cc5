"""Between a stream and a whole answer: assemble chunks into one completion, replay one as chunks.

So a streamed answer can be cached, and a cached answer served to a streaming client, either way round.
"""

from __future__ import annotations

from typing import Any

from contracts.wire import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, StreamOptions, Usage


class StreamAssembler:
    """Collects a stream's chunks; ``completion()`` is the whole answer once the stream finished."""

    def __init__(self) -> None:
        self._head: ChatCompletionChunk | None = None
        self._choices: dict[int, dict[str, Any]] = {}
        self._usage: Usage | None = None

    def add(self, chunk: ChatCompletionChunk) -> None:
        self._head = self._head or chunk
        self._usage = chunk.usage or self._usage
        for choice in chunk.choices:
            delta = (choice.model_extra or {}).get("delta") or {}
            merged = self._choices.setdefault(choice.index, {"message": {"role": "assistant", "content": None}})
            _merge_delta(merged["message"], delta)
            if choice.finish_reason:
                merged["finish_reason"] = choice.finish_reason

    def completion(self) -> ChatCompletion | None:
        """``None`` unless every choice finished: a cut stream is never a whole answer."""
        if self._head is None or not self._choices or any("finish_reason" not in c for c in self._choices.values()):
            return None
        choices = [{"index": i, **c} for i, c in sorted(self._choices.items())]
        payload: dict[str, Any] = {"id": self._head.id, "object": "chat.completion", "created": self._head.created}
        payload |= {"model": self._head.model, "choices": choices}
        if self._usage is not None:
            payload["usage"] = self._usage.model_dump(exclude_unset=True)
        return ChatCompletion.model_validate(payload)


def _merge_delta(message: dict[str, Any], delta: dict[str, Any]) -> None:
    if delta.get("role"):
        message["role"] = delta["role"]
    if delta.get("content"):
        message["content"] = (message.get("content") or "") + delta["content"]
    for call in delta.get("tool_calls") or []:
        calls = message.setdefault("tool_calls", [])
        index = call.get("index", len(calls))
        while len(calls) <= index:
            calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
        target = calls[index]
        target["id"] = call.get("id") or target["id"]
        function = call.get("function") or {}
        target["function"]["name"] += function.get("name") or ""
        target["function"]["arguments"] += function.get("arguments") or ""


def replay_chunks(completion: ChatCompletion) -> list[ChatCompletionChunk]:
    """The completion as the chunks a stream brings: content, then finish, then usage (which each
    API's encoder shows as its callers expect)."""
    base = {
        "id": completion.id,
        "object": "chat.completion.chunk",
        "created": completion.created,
        "model": completion.model,
    }
    chunks = []
    for choice in completion.choices:
        message = dict((choice.model_extra or {}).get("message") or {})
        delta = {k: v for k, v in message.items() if v is not None}
        for i, call in enumerate(delta.get("tool_calls") or []):
            call["index"] = i
        chunks.append({**base, "choices": [{"index": choice.index, "delta": delta, "finish_reason": None}]})
        chunks.append(
            {**base, "choices": [{"index": choice.index, "delta": {}, "finish_reason": choice.finish_reason}]}
        )
    if completion.usage is not None:
        chunks.append({**base, "choices": [], "usage": completion.usage.model_dump(exclude_unset=True)})
    return [ChatCompletionChunk.model_validate(c) for c in chunks]


def asks_for_usage(request: ChatCompletionRequest) -> bool:
    """Whether the caller asked for the stream's usage chunk (``stream_options.include_usage``)."""
    return bool(request.stream_options is not None and request.stream_options.include_usage)


def asking_for_usage(request: ChatCompletionRequest) -> ChatCompletionRequest:
    """The request as sent upstream: always asking for the usage chunk, so every stream is booked
    with its real tokens (cost reports, access log, ``tokens_per_minute``), asked for or not."""
    if asks_for_usage(request):
        return request
    return request.model_copy(update={"stream_options": StreamOptions(include_usage=True)})


def as_the_caller_asked(chunk: ChatCompletionChunk, asks_usage: bool) -> ChatCompletionChunk | None:
    """The chunk as the caller should see it: without the usage it did not ask for (the usage-only
    chunk is dropped), as OpenAI sends it."""
    if asks_usage or chunk.usage is None:
        return chunk
    if not chunk.choices:
        return None
    shown = chunk.model_copy(update={"usage": None})
    shown.__pydantic_fields_set__.discard("usage")
    return shown

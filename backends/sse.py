"""Reading an upstream's server-sent events as chat completion chunks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
from pydantic import ValidationError

from backends.http_transport import too_large
from contracts.errors import BackendBadResponse
from contracts.wire import ChatCompletionChunk

DONE = "[DONE]"


async def read_chunks(backend: str, lines: AsyncIterator[str], timeout_s: float) -> AsyncIterator[ChatCompletionChunk]:
    """Yield each ``data:`` event as a chunk until ``[DONE]``.

    Raises ``BackendBadResponse`` for a malformed event, an error event, or a stream
    that ends before it finished; ``TimeoutError`` when no line comes for ``timeout_s``.
    """
    has_finished = False
    while True:
        try:
            async with asyncio.timeout(timeout_s):
                line = await anext(lines)
        except StopAsyncIteration:
            break
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == DONE:
            return
        chunk = parse_chunk(backend, data)
        has_finished = has_finished or any(c.finish_reason for c in chunk.choices)
        yield chunk
    if not has_finished:
        raise BackendBadResponse(f"backend {backend!r}: the stream ended before the answer was finished")


async def bounded_lines(backend: str, parts: AsyncIterator[bytes], limit: int) -> AsyncIterator[str]:
    """The stream's lines, reading at most ``limit`` bytes in all (so no line is longer either):
    an endless stream or an endless line ends in ``ResponseTooLarge``, never in a growing buffer."""
    pending = bytearray()
    received = 0
    async for part in parts:
        received += len(part)
        if received > limit:
            pending.clear()
            raise too_large(backend, limit)
        pending += part
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            yield pending[start:end].rstrip(b"\r").decode("utf-8", "replace")
            start = end + 1
        del pending[:start]
    if pending:
        yield pending.decode("utf-8", "replace")


def parse_chunk(backend: str, data: str) -> ChatCompletionChunk:
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BackendBadResponse(f"backend {backend!r} sent a malformed stream event: {data[:120]!r}") from exc
    if isinstance(payload, dict) and "error" in payload:
        raise BackendBadResponse(f"backend {backend!r} sent an error mid-stream: {str(payload['error'])[:300]}")
    try:
        return ChatCompletionChunk.model_validate(payload)
    except ValidationError as exc:
        raise BackendBadResponse(f"backend {backend!r} sent an invalid chunk: {exc.errors()[0]['msg']}") from exc

"""Writing chat completion chunks to the client as server-sent events."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from contracts.errors import BackendError
from contracts.wire import ChatCompletionChunk

log = logging.getLogger("turnout")
DONE_EVENT = b"data: [DONE]\n\n"


def encode(chunk: ChatCompletionChunk) -> bytes:
    return b"data: " + chunk.__pydantic_serializer__.to_json(chunk, exclude_unset=True) + b"\n\n"


async def sse_events(
    first: ChatCompletionChunk,
    rest: AsyncIterator[ChatCompletionChunk],
    on_close: Callable[[int], None],
    redact: Callable[[bytes], bytes],
) -> AsyncIterator[bytes]:
    """The stream as SSE. A failure after the first chunk ends it with an error event and
    no ``[DONE]``, so no client mistakes a cut answer for a whole one. ``on_close`` learns the
    stream's real outcome: 200 when whole, the error's status when cut, 499 when the client left."""
    status = 499  # unless the stream reaches an end of its own, the client left it
    try:
        yield encode(first)
        async for chunk in rest:
            yield encode(chunk)
        yield DONE_EVENT
        status = 200
    except BackendError as exc:
        status = exc.status
        log.warning("stream cut after the first chunk: %s", exc.message)
        yield b"data: " + redact(exc.body()) + b"\n\n"
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
        on_close(status)

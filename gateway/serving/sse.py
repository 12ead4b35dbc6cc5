"""Writing a stream of completion chunks to the client as server-sent events, in its API's format."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from contracts.errors import BackendError, GatewayError
from contracts.wire import ChatCompletionChunk
from gateway.serving.call import StreamEncoder

log = logging.getLogger("turnout")


async def sse_events(
    first: ChatCompletionChunk,
    rest: AsyncIterator[ChatCompletionChunk],
    on_close: Callable[[int], None],
    redact: Callable[[bytes], bytes],
    encoder: StreamEncoder,
) -> AsyncIterator[bytes]:
    """The stream as SSE. A failure after the first chunk ends it with the API's error events and
    never its end-of-answer events, so no client mistakes a cut answer for a whole one. ``on_close``
    learns the stream's real outcome: 200 when whole, the error's status when cut, 499 when the
    client left."""
    status = 499  # unless the stream reaches an end of its own, the client left it
    try:
        yield encoder.opening(first)
        async for chunk in rest:
            if events := encoder.chunk(chunk):
                yield events
        yield encoder.closing()
        status = 200
    except BackendError as exc:
        status = exc.status
        log.warning("stream cut after the first chunk: %s", exc.message)
        yield redact(encoder.failure(exc))
    except Exception:  # a defect, not a client that left: said in the stream and logged as one
        status = 500
        log.exception("stream failed inside the gateway after the first chunk")
        yield encoder.failure(GatewayError("the stream failed inside the gateway"))
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
        on_close(status)


class Once:
    """A stream's end callback that runs once, whichever of its two callers gets there first."""

    def __init__(self, callback: Callable[[int], None]) -> None:
        self._callback = callback
        self.has_run = False

    def __call__(self, status: int) -> None:
        if not self.has_run:
            self.has_run = True
            self._callback(status)


class SseResponse(StreamingResponse):
    """A stream of chunks as server-sent events whose end is always observed.

    Starlette never starts the body's generator when the client left before the first byte, so the
    generator's own ``finally`` (closing the upstream stream, reporting the end) would never run:
    here the response's end does it instead, with 499."""

    def __init__(
        self,
        first: ChatCompletionChunk,
        rest: AsyncIterator[ChatCompletionChunk],
        on_close: Callable[[int], None],
        redact: Callable[[bytes], bytes],
        encoder: StreamEncoder,
        headers: dict[str, str],
    ) -> None:
        self._rest = rest
        self._ended = Once(on_close)
        events = sse_events(first, rest, self._ended, redact, encoder)
        super().__init__(events, media_type="text/event-stream", headers=headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]  # a started one ends as it would
            if not self._ended.has_run:  # never started: nothing above ran its ``finally``
                try:
                    await self._rest.aclose()  # type: ignore[attr-defined]
                finally:
                    self._ended(499)

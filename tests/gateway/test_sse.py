"""Server-sent events: how a stream's end is reported, whichever way it ends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from contracts.errors import BackendBadResponse
from contracts.wire import ChatCompletionChunk
from gateway.apis.chat import DONE_EVENT, ChatStreamEncoder
from gateway.serving.sse import sse_events
from tests.gateway.harness import delta

FIRST = ChatCompletionChunk.model_validate(delta("a"))


async def failing_after_one(failure: Exception) -> AsyncIterator[ChatCompletionChunk]:
    yield ChatCompletionChunk.model_validate(delta("b"))
    raise failure


async def ended_with(failure: Exception) -> tuple[list[bytes], list[int]]:
    statuses: list[int] = []
    events = [
        e
        async for e in sse_events(
            FIRST, failing_after_one(failure), statuses.append, lambda b: b, ChatStreamEncoder(False)
        )
    ]
    return events, statuses


@pytest.mark.parametrize(
    ("failure", "status"),
    [(BackendBadResponse("cut"), 502), (RuntimeError("a defect in the gateway"), 500)],
    ids=["backend", "defect"],
)
async def test_a_failure_mid_stream_is_reported_with_its_status_not_as_a_client_that_left(
    failure: Exception, status: int
) -> None:
    events, statuses = await ended_with(failure)
    assert statuses == [status]  # 499 would blame a client that never left
    assert DONE_EVENT not in events
    last = orjson.loads(events[-1].removeprefix(b"data: "))
    assert "error" in last


async def test_a_whole_stream_ends_with_done_and_200() -> None:
    async def whole() -> AsyncIterator[ChatCompletionChunk]:
        yield ChatCompletionChunk.model_validate(delta("b", "stop"))

    statuses: list[int] = []
    events = [e async for e in sse_events(FIRST, whole(), statuses.append, lambda b: b, ChatStreamEncoder(False))]
    assert events[-1] == DONE_EVENT
    assert statuses == [200]

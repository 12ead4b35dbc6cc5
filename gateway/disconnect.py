"""Cancelling a request's work, upstream calls included, when its client goes away.

Streams already get this from Starlette once their response has started; this covers the time
before: routing, cache waits and backend calls of JSON answers and of a stream's first chunk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request
from starlette.types import Message

from contracts.errors import ClientClosedRequest

Result = TypeVar("Result")
_GONE = "the client disconnected"


async def unless_disconnected(request: Request, work: Awaitable[Result]) -> Result:
    """Await ``work``; if the client disconnects first, cancel it and raise ``ClientClosedRequest``.

    Call it only once the request body has been read: it takes the connection's next message."""
    task = asyncio.current_task()
    assert task is not None
    is_done = False

    def on_message(watch: asyncio.Task[Message]) -> None:
        is_message = not is_done and not watch.cancelled() and watch.exception() is None
        if is_message and watch.result()["type"] == "http.disconnect":
            task.cancel(_GONE)

    async def next_message() -> Message:
        return await request.receive()

    watch = asyncio.get_running_loop().create_task(next_message())
    watch.add_done_callback(on_message)
    try:
        return await work
    except asyncio.CancelledError as exc:
        if _GONE not in exc.args:
            raise
        task.uncancel()
        raise ClientClosedRequest(
            "the client disconnected before the answer; its upstream call was cancelled"
        ) from None
    finally:
        is_done = True
        watch.cancel()

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
WATCH_AFTER_S = 0.05
"""The watch (a task reading the connection's next message) starts only once the work has run this
long: most answers come sooner and never pay for a task, which was the costliest allocation of the
pinned path (bench/results/profile-pinned.txt). A client that left earlier is seen then, at once."""


async def unless_disconnected(request: Request, work: Awaitable[Result]) -> Result:
    """Await ``work``; if the client disconnects first, cancel it and raise ``ClientClosedRequest``.

    Call it only once the request body has been read: it takes the connection's next message."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    is_done = False
    watch: asyncio.Task[Message] | None = None

    def on_message(watched: asyncio.Task[Message]) -> None:
        is_message = not is_done and not watched.cancelled() and watched.exception() is None
        if is_message and watched.result()["type"] == "http.disconnect":
            task.cancel(_GONE)

    async def next_message() -> Message:
        return await request.receive()

    def start_watching() -> None:
        nonlocal watch
        watch = loop.create_task(next_message())
        watch.add_done_callback(on_message)

    timer = loop.call_later(WATCH_AFTER_S, start_watching)
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
        timer.cancel()
        if watch is not None:
            watch.cancel()

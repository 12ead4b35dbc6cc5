"""Scoring off the event loop, batching whatever arrives while the model is busy.

The batcher never waits to fill a batch: a lone request is scored at once. Requests that
arrive while a batch is running are taken together by the next one, so under load one
model call serves many requests (measured in ``bench/results/router-latency.txt``). What a
caller does with its row (a router's decision, a search over examples) can run in the same
thread, after the batch, so the event loop only hands texts over and takes answers back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

Row = TypeVar("Row")
Result = TypeVar("Result")


def _same(row: Any) -> Any:
    return row


class MicroBatcher(Generic[Row]):
    def __init__(self, score: Callable[[list[str]], Iterable[Row]], max_batch: int = 16) -> None:
        self._score = score
        self._max_batch = max_batch
        self._pending: list[tuple[str, Callable[[Row], Any], asyncio.Future[Any]]] = []
        self._drainer: asyncio.Task[None] | None = None
        """The running drain, referenced so the loop cannot collect it mid-batch."""
        # One thread: ONNX Runtime parallelises inside a call; two calls at once would only contend.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turnout-router")

    async def score(self, text: str) -> Row:
        """The score row for one text."""
        row: Row = await self.score_then(text, _same)
        return row

    async def score_then(self, text: str, then: Callable[[Row], Result]) -> Result:
        """``then`` of the text's row, run in the model's thread right after its batch."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((text, then, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            try:
                outcomes = await loop.run_in_executor(self._executor, self._run, batch)
            except Exception as exc:  # every waiter learns of the failure
                outcomes = [(False, exc)] * len(batch)
            for (_, _, future), (done, value) in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if done:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _run(self, batch: list[tuple[str, Callable[[Row], Any], asyncio.Future[Any]]]) -> list[tuple[bool, Any]]:
        rows = self._score([text for text, _, _ in batch])
        outcomes: list[tuple[bool, Any]] = []
        for (_, then, _), row in zip(batch, rows, strict=True):
            try:
                outcomes.append((True, then(row)))
            except Exception as exc:  # one caller's failure is its own
                outcomes.append((False, exc))
        return outcomes

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

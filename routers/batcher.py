"""Scoring off the event loop, batching whatever arrives while the model is busy.

The batcher never waits to fill a batch: a lone request is scored at once. Requests that
arrive while a batch is running are taken together by the next one, so under load one
model call serves many requests (measured in ``bench/results/router-latency.txt``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import NDArray

Score = Callable[[list[str]], NDArray[np.float32]]


class MicroBatcher:
    def __init__(self, score: Score, max_batch: int = 16) -> None:
        self._score = score
        self._max_batch = max_batch
        self._pending: list[tuple[str, asyncio.Future[NDArray[np.float32]]]] = []
        self._drainer: asyncio.Task[None] | None = None
        """The running drain, referenced so the loop cannot collect it mid-batch."""
        # One thread: ONNX Runtime parallelises inside a call; two calls at once would only contend.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turnout-router")

    async def score(self, text: str) -> NDArray[np.float32]:
        """The score row for one text."""
        future: asyncio.Future[NDArray[np.float32]] = asyncio.get_running_loop().create_future()
        self._pending.append((text, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            try:
                rows = await loop.run_in_executor(self._executor, self._score, [text for text, _ in batch])
            except Exception as exc:  # every waiter learns of the failure
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), row in zip(batch, rows, strict=True):
                if not future.done():
                    future.set_result(row)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

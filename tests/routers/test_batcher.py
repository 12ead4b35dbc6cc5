from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from routers.batcher import MicroBatcher


async def test_concurrent_requests_share_model_calls_and_get_their_own_rows() -> None:
    sizes: list[int] = []
    first_call = threading.Event()

    def score(texts: list[str]) -> np.ndarray:
        sizes.append(len(texts))
        first_call.set()
        time.sleep(0.05)  # the model is busy while more requests arrive
        return np.array([[float(t)] for t in texts], dtype=np.float32)

    batcher = MicroBatcher(score, max_batch=8)
    first = asyncio.create_task(batcher.score("0"))
    await asyncio.to_thread(first_call.wait)
    rest = await asyncio.gather(*(batcher.score(str(i)) for i in range(1, 11)))
    assert float((await first)[0]) == 0.0
    assert [float(row[0]) for row in rest] == list(map(float, range(1, 11)))
    assert sizes[0] == 1
    assert max(sizes[1:]) > 1
    assert max(sizes) <= 8
    batcher.close()


async def test_a_failing_model_fails_every_waiter_and_recovers() -> None:
    calls = 0

    def score(texts: list[str]) -> np.ndarray:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("onnx broke")
        return np.zeros((len(texts), 1), dtype=np.float32)

    batcher = MicroBatcher(score)
    with pytest.raises(RuntimeError, match="onnx broke"):
        await batcher.score("a")
    assert (await batcher.score("b")).shape == (1,)
    batcher.close()

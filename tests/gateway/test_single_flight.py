"""A single flight settles on every exit path of its leader: answer, failure, cancellation."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gateway.cache_store import MemoryStore
from gateway.metrics import Metrics
from gateway.response_cache import CachePlan, ResponseCache
from gateway.rules import CachePolicy
from gateway.schemas import ChatCompletionRequest
from tests.gateway.harness import AUTH, chat_body, completion, gateway

REQUEST = ChatCompletionRequest.model_validate(chat_body(temperature=0))


class StallingStore(MemoryStore):
    """Reads wait until released: a leader can be caught in the middle of its lookup."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.failure: BaseException | None = None

    async def get(self, key: str) -> bytes | None:
        await self.release.wait()
        if self.failure is not None:
            raise self.failure
        return await super().get(key)


def cache_over(store: MemoryStore) -> tuple[ResponseCache, CachePlan]:
    cache = ResponseCache(store, {"b": "openai|x|m"}, Metrics(), timeout_s=30)
    return cache, cache.plan("r", CachePolicy(), "b", REQUEST, "t", "")


async def test_next_identical_request_leads_at_once_after_the_leader_is_cancelled_in_its_lookup() -> None:
    store = StallingStore()
    cache, plan = cache_over(store)
    leader = asyncio.create_task(cache.lookup(plan, 30))
    await asyncio.sleep(0.01)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    store.release.set()
    async with asyncio.timeout(5):  # not the 30 s a leaked flight would make it wait
        after = await cache.lookup(plan, 30)
    assert after.is_leader


async def test_a_leader_failing_after_its_lookup_releases_its_followers() -> None:
    calls = 0

    def failing_then_fine(request: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the backend adapter has a bug")
        return httpx.Response(200, json=completion("fine"))

    async with gateway(failing_then_fine) as client:  # type: ignore[arg-type]
        with pytest.raises(RuntimeError):  # the test transport re-raises what the app answered 500 for
            await client.post("/v1/chat/completions", json=chat_body(temperature=0), headers=AUTH)
        async with asyncio.timeout(5):
            second = await client.post("/v1/chat/completions", json=chat_body(temperature=0), headers=AUTH)
    assert second.status_code == 200

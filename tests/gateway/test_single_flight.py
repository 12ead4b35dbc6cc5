"""A single flight settles on every exit path of its leader: answer, failure, cancellation."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import pytest
import redis.asyncio as aioredis

from contracts.wire import ChatCompletionRequest
from gateway.cache.response_cache import LOCK, CachePlan, ResponseCache
from gateway.cache.store import MemoryStore, RedisStore
from gateway.metrics import Metrics
from gateway.rules import CachePolicy
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
    cache = ResponseCache(store, Metrics(), timeout_s=30)
    return cache, cache.plan("r", CachePolicy(), "b", "openai|x|m", REQUEST, "t", "")


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
        first = await client.post("/v1/chat/completions", json=chat_body(temperature=0), headers=AUTH)
        async with asyncio.timeout(5):
            second = await client.post("/v1/chat/completions", json=chat_body(temperature=0), headers=AUTH)
    assert first.headers["x-turnout-backend"] == "fallback"  # the bug failed the primary; its fallback answered
    assert second.status_code == 200


FOLLOWER = """
import asyncio, sys
from gateway.cache.store import RedisStore
from tests.gateway.test_single_flight import cache_over

async def main() -> None:
    cache, plan = cache_over(RedisStore.from_url(sys.argv[1], 1.0))
    lookup = await cache.lookup(plan, 0.3)  # the other process leads; this wait runs out
    assert lookup.is_leader and lookup.entry is None
    await cache.share(plan, None)  # what a leader does when it is done
    print("released")

asyncio.run(main())
"""


async def test_a_replica_whose_wait_ran_out_never_deletes_the_leaders_redis_lock(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, 1.0)
    leader, plan = cache_over(store)
    raw = aioredis.from_url(redis_url)
    await raw.delete(plan.key, plan.key + LOCK)
    lookup = await leader.lookup(plan, 30)
    assert lookup.is_leader
    follower = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", FOLLOWER, redis_url], capture_output=True, text=True, timeout=60
    )
    assert follower.stdout.strip() == "released", follower.stderr
    still_held = await raw.exists(plan.key + LOCK)
    await leader.share(plan, None)
    released = await raw.exists(plan.key + LOCK)
    await raw.aclose()
    await store.aclose()
    assert still_held == 1
    assert released == 0

"""One suite for every store: in-process LRU; real Redis standalone, 3-node Cluster and Sentinel."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from gateway.cache.store import CacheStore, MemoryStore, RedisStore


@pytest.fixture(params=["memory", "redis", "cluster", "sentinel"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[CacheStore]:
    if request.param == "memory":
        made: CacheStore = MemoryStore()
    else:
        made = RedisStore.from_url(request.getfixturevalue(f"{request.param}_url"), 1.0)
    yield made
    await made.aclose()


def fresh() -> str:
    return f"test:{uuid.uuid4().hex}"


async def test_set_then_get_returns_the_bytes(store: CacheStore) -> None:
    key = fresh()
    assert await store.get(key) is None
    await store.set(key, b"answer", ttl_s=60)
    assert await store.get(key) == b"answer"


async def test_entries_expire_after_their_ttl_and_hits_do_not_refresh_it(store: CacheStore) -> None:
    key = fresh()
    await store.set(key, b"answer", ttl_s=1)
    await asyncio.sleep(0.6)
    assert await store.get(key) == b"answer"  # a hit...
    await asyncio.sleep(0.6)
    assert await store.get(key) is None  # ...did not push the expiry out


async def test_lock_is_exclusive_until_released(store: CacheStore) -> None:
    key = fresh()
    token = await store.lock(key, ttl_ms=5000)
    assert token
    assert await store.lock(key, ttl_ms=5000) is None
    await store.unlock(key, token)
    assert await store.lock(key, ttl_ms=5000)


async def test_unlock_with_another_owners_token_keeps_the_lock(store: CacheStore) -> None:
    key = fresh()
    assert await store.lock(key, ttl_ms=5000)
    await store.unlock(key, "not-the-owner")
    assert await store.lock(key, ttl_ms=5000) is None


async def test_lock_expires_on_its_own(store: CacheStore) -> None:
    key = fresh()
    assert await store.lock(key, ttl_ms=100)
    await asyncio.sleep(0.2)
    assert await store.lock(key, ttl_ms=100)


async def test_memory_store_evicts_least_recently_used_within_its_bound() -> None:
    store = MemoryStore(max_bytes=25)
    await store.set("a", b"x" * 10, 60)
    await store.set("b", b"x" * 10, 60)
    await store.get("a")  # a is now the most recent
    await store.set("c", b"x" * 10, 60)
    assert await store.get("b") is None
    assert await store.get("a") is not None
    assert await store.get("c") is not None

"""Stored Responses API answers: in Redis (a real server) and in process, each only its tenant's,
with a TTL and a size bound; a failing store never fails an answer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest

from contracts.errors import StateStoreUnavailable
from gateway.redis_client import close_redis, redis_client
from gateway.response_store import ResponseStore
from tests.gateway.api_harness import OTHER_KEY, sdk_clients


@pytest.fixture
async def redis_store(redis_url: str) -> AsyncIterator[ResponseStore]:
    redis = redis_client(redis_url)
    yield ResponseStore(redis, ttl_s=60, max_bytes=4096, memory_bytes=1 << 20)
    await close_redis(redis)


async def test_redis_keeps_a_response_for_its_tenant_with_a_ttl(redis_store: ResponseStore, redis_url: str) -> None:
    assert await redis_store.put("one", "resp_a", b'{"response": 1}')
    assert await redis_store.get("one", "resp_a") == b'{"response": 1}'
    assert await redis_store.get("two", "resp_a") is None
    assert not await redis_store.delete("two", "resp_a")
    redis = redis_client(redis_url)
    try:
        keys = [key async for key in redis.scan_iter("tn:resp:*")]
        assert keys
        assert 0 < await redis.ttl(keys[0]) <= 60
    finally:
        await close_redis(redis)
    assert await redis_store.delete("one", "resp_a")
    assert await redis_store.get("one", "resp_a") is None


async def test_a_record_over_the_bound_is_not_stored(redis_store: ResponseStore) -> None:
    assert not await redis_store.put("one", "resp_big", b"x" * 5000)
    assert await redis_store.get("one", "resp_big") is None


async def test_the_in_process_store_drops_the_oldest_past_its_bytes() -> None:
    store = ResponseStore(None, ttl_s=60, max_bytes=1024, memory_bytes=2048)
    for i in range(3):
        assert await store.put("one", f"resp_{i}", b"x" * 1000)
    assert await store.get("one", "resp_0") is None  # the oldest left to make room
    assert await store.get("one", "resp_2") == b"x" * 1000
    assert await store.get("two", "resp_2") is None


async def test_a_store_that_is_down_fails_no_answer_and_reads_are_a_503() -> None:
    redis = redis_client("redis://127.0.0.1:9/0")
    store = ResponseStore(redis, ttl_s=60, max_bytes=4096, memory_bytes=1 << 20)
    try:
        assert not await store.put("one", "resp_a", b"{}")
        with pytest.raises(StateStoreUnavailable):
            await store.get("one", "resp_a")
    finally:
        await close_redis(redis)


async def test_replicas_on_one_redis_share_stored_responses(redis_url: str) -> None:
    async with sdk_clients(redis_url=redis_url) as first, sdk_clients(redis_url=redis_url) as second:
        created = await first.openai.responses.create(model="auto", input="shared")
        found = await second.openai.responses.retrieve(created.id)
        assert found.output_text == created.output_text
        continued = await second.openai.responses.create(model="auto", input="and?", previous_response_id=created.id)
        assert continued.output_text == "echo: and?"
        assert second.upstream.bodies[-1]["messages"][0] == {"role": "user", "content": "shared"}
        async with openai.AsyncOpenAI(base_url=second.url + "/v1", api_key=OTHER_KEY, max_retries=0) as other:
            with pytest.raises(openai.NotFoundError):
                await other.responses.retrieve(created.id)

"""A single flight settles on every exit path of its leader: answer, failure, cancellation."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys

import httpx
import pytest
import redis.asyncio as aioredis

from contracts.wire import ChatCompletionRequest
from gateway.app import create_app
from gateway.cache.response_cache import CacheEntry, CachePlan, ResponseCache
from gateway.cache.single_flight import LOCK, LOCK_TTL_S
from gateway.cache.store import MemoryStore, RedisStore
from gateway.observe.metrics import Metrics
from gateway.rules import CachePolicy, parse_rules
from gateway.settings import Settings
from tests.gateway.harness import AUTH, KEY, RULES, chat_body, completion, delta, gateway, sse

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


def cache_over(store: MemoryStore | RedisStore, timeout_s: float = 30) -> tuple[ResponseCache, CachePlan]:
    cache = ResponseCache(store, Metrics(), timeout_s=timeout_s)
    return cache, cache.plan("r", CachePolicy(), "b", "openai|x|m", REQUEST, "t", "")


ENTRY = CacheEntry(completion=json.dumps(completion("cached")), backend="b", created=0.0)


async def test_next_identical_request_leads_at_once_after_the_leader_is_cancelled_in_its_lookup() -> None:
    store = StallingStore()
    cache, plan = cache_over(store)

    async def lead() -> None:
        async with cache.flight(plan, 30):
            pass

    leader = asyncio.create_task(lead())
    await asyncio.sleep(0.01)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    store.release.set()
    assert cache.flights == {}
    async with asyncio.timeout(5), cache.flight(plan, 30) as after:  # not the 30 s a leaked flight costs
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
    async with cache.flight(plan, 0.3) as flight:  # the other process leads; this wait runs out
        assert flight.is_leader and flight.entry is None
    print("released")

asyncio.run(main())
"""


async def test_a_replica_whose_wait_ran_out_never_deletes_the_leaders_redis_lock(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, 1.0)
    leader, plan = cache_over(store)
    raw = aioredis.from_url(redis_url)
    await raw.delete(plan.key, plan.key + LOCK)
    async with leader.flight(plan, 30) as flight:
        assert flight.is_leader
        follower = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", FOLLOWER, redis_url], capture_output=True, text=True, timeout=60
        )
        assert follower.stdout.strip() == "released", follower.stderr
        still_held = await raw.exists(plan.key + LOCK)
    released = await raw.exists(plan.key + LOCK)
    await raw.aclose()
    await store.aclose()
    assert still_held == 1
    assert released == 0


class FailingRedisStore(RedisStore):
    """A replica's view of Redis that can start failing (a failover in progress) on demand."""

    def __init__(self, url: str) -> None:
        super().__init__(aioredis.from_url(url), owns_client=True)
        self.is_failing = False

    def _check(self) -> None:
        if self.is_failing:
            raise ConnectionError("the master is gone")

    async def get(self, key: str) -> bytes | None:
        self._check()
        return await super().get(key)

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        self._check()
        await super().set(key, value, ttl_s)

    async def lock(self, key: str, ttl_ms: int) -> str | None:
        self._check()
        return await super().lock(key, ttl_ms)

    async def unlock(self, key: str, token: str) -> None:
        self._check()
        await super().unlock(key, token)

    async def renew(self, key: str, token: str, ttl_ms: int) -> bool:
        self._check()
        return await super().renew(key, token, ttl_ms)

    async def read_or_lock(self, key: str, lock: str, ttl_ms: int) -> tuple[bytes | None, str | None]:
        self._check()
        return await super().read_or_lock(key, lock, ttl_ms)

    async def write_and_unlock(self, key: str, value: bytes, ttl_s: int, lock: str, token: str) -> None:
        self._check()
        await super().write_and_unlock(key, value, ttl_s, lock, token)


async def test_a_leader_that_could_not_release_its_lock_holds_other_replicas_only_until_it_expires(
    redis_url: str,
) -> None:
    leader_store, follower_store = FailingRedisStore(redis_url), RedisStore.from_url(redis_url, 1.0)
    leader, plan = cache_over(leader_store)
    follower, _ = cache_over(follower_store)
    await follower_store.client.delete(plan.key, plan.key + LOCK)
    async with leader.flight(plan, 60) as flight:
        assert flight.is_leader
        leader_store.is_failing = True  # it finishes while the store fails: no entry, no release
        await flight.land(ENTRY)
    assert await follower_store.client.exists(plan.key + LOCK) == 1  # the lock outlived its leader
    async with asyncio.timeout(4 * LOCK_TTL_S), follower.flight(plan, 60) as following:
        # Watching the lock, not the entry: it leads (takes the lock) once the lock expired, long
        # before the 60 s it would have polled for an entry that never comes.
        assert following.is_leader
        assert await follower_store.client.get(plan.key + LOCK) is not None
    await leader_store.aclose()
    await follower_store.aclose()


async def test_a_leader_renews_its_lock_while_it_works(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, 1.0)
    cache, plan = cache_over(store)
    await store.client.delete(plan.key, plan.key + LOCK)
    async with cache.flight(plan, 60) as flight:
        assert flight.is_leader
        await asyncio.sleep(LOCK_TTL_S * 1.5)  # working longer than the lock lives
        assert await store.client.exists(plan.key + LOCK) == 1
    assert await store.client.exists(plan.key + LOCK) == 0
    await store.aclose()


async def test_a_replica_waiting_for_another_stops_as_soon_as_the_store_fails(redis_url: str) -> None:
    leader_store, follower_store = RedisStore.from_url(redis_url, 1.0), FailingRedisStore(redis_url)
    leader, plan = cache_over(leader_store)
    follower, _ = cache_over(follower_store)
    await leader_store.client.delete(plan.key, plan.key + LOCK)
    async with leader.flight(plan, 60) as flight:
        assert flight.is_leader
        waiting = asyncio.create_task(follower.flight(plan, 60).__aenter__())
        await asyncio.sleep(0.2)
        assert not waiting.done()  # following the other replica
        follower_store.is_failing = True
        async with asyncio.timeout(10):  # not the 60 s it may wait for a healthy leader
            following = await waiting
        assert following.is_store_down
        await following.__aexit__(None, None, None)
    await leader_store.aclose()
    await follower_store.aclose()


async def test_a_flight_settles_when_landing_fails_or_is_cancelled() -> None:
    cache, plan = cache_over(MemoryStore())

    async def lead_then(failure: BaseException) -> None:
        async with cache.flight(plan, 30) as flight:
            assert flight.is_leader
            raise failure

    for failure in (RuntimeError("has_tool_calls() raised"), asyncio.CancelledError()):
        with pytest.raises(type(failure)):
            await lead_then(failure)
        assert cache.flights == {}
        assert await cache.store.lock(plan.key + LOCK, 1000) is not None  # released, free to take
        await cache.store.unlock(plan.key + LOCK, "")


async def test_followers_in_this_process_get_the_leaders_answer_and_stop_waiting_at_their_bound() -> None:
    cache, plan = cache_over(MemoryStore())
    async with cache.flight(plan, 30) as leader:
        follower = asyncio.create_task(cache.flight(plan, 30).__aenter__())
        await asyncio.sleep(0.05)
        await leader.land(ENTRY)
    assert (await follower).entry == ENTRY
    other = dataclasses.replace(plan, key="other")
    async with cache.flight(other, 30) as slow_leader:
        assert slow_leader.is_leader
        async with asyncio.timeout(10), cache.flight(other, 0.1) as follower_gave_up:
            assert follower_gave_up.entry is None  # asks the backend itself
            assert not follower_gave_up.is_leader


async def test_a_stream_whose_client_left_before_the_first_byte_settles_its_flight() -> None:
    def upstream(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"object": "list", "data": []})
        return httpx.Response(200, content=sse(delta("a"), delta("b", "stop")))

    client = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
    app = create_app(Settings(), parse_rules(RULES), http_client=client)
    body = json.dumps(chat_body(temperature=0, stream=True)).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {KEY}".encode()), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("gateway", 80),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, object]:
        return messages.pop(0) if messages else await asyncio.Event().wait()  # type: ignore[func-returns-value]

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            raise OSError("the client is gone")  # before the body's generator ever starts

    async with app.router.lifespan_context(app):
        cache = app.state.gateway.resources.cache
        with pytest.raises(Exception):  # noqa: B017, PT011  # Starlette reports the disconnect its own way
            await app(scope, receive, send)  # type: ignore[arg-type]
        for _ in range(500):  # the stream's end settles it in a task of its own
            if not cache.flights:
                break
            await asyncio.sleep(0.01)
        assert cache.flights == {}  # settled as the response ended, not left for the next request to wait on
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as c:
            async with asyncio.timeout(10):  # answered, not held behind a pending flight
                again = await c.post("/v1/chat/completions", json=chat_body(temperature=0, stream=True), headers=AUTH)
    await client.aclose()
    assert again.status_code == 200


async def test_a_flight_never_settled_stops_renewing_its_lock_after_its_lease(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, 1.0)
    cache, plan = cache_over(store)
    await store.client.delete(plan.key, plan.key + LOCK)
    flight = await cache.flight(plan, 1.0).__aenter__()  # a leader whose scope never ends
    assert flight.is_leader
    await asyncio.sleep(1.0 + LOCK_TTL_S + 2.0)  # the last renewal, made at most 1 s in, expires 3 s later
    assert await store.client.exists(plan.key + LOCK) == 0  # other replicas are not held for ever
    await flight.aclose()
    await store.aclose()

"""Per-key rate limits: the sliding window, its stores (memory, Redis, Cluster), and the 429s."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import httpx
import pytest

from contracts.errors import RateLimited
from gateway.auth import Principal
from gateway.observe.metrics import Metrics
from gateway.rate_limits import (
    LimitStore,
    MemoryLimitStore,
    RateLimiter,
    RedisLimitStore,
    Take,
    Window,
    retry_after_s,
)
from gateway.resilience.specs import RateLimitSpec
from tests.gateway.harness import chat_body, gateway

LIMITED, FREE = "sk-three-a-minute", "sk-unlimited"


def limited_rules(requests: int | None = 3, tokens: int | None = None) -> str:
    limits = {k: v for k, v in {"requests_per_minute": requests, "tokens_per_minute": tokens}.items() if v}
    spec = ", ".join(f"{k}: {v}" for k, v in limits.items())
    return f"""
backends:
  primary: {{kind: openai, endpoint: "http://primary/v1", model: m, health_check: {{enabled: false}}}}
routes:
  general: {{backends: [primary]}}
default_route: general
router: {{kind: default}}
api_keys:
  - {{tenant: small, sha256: "{hashlib.sha256(LIMITED.encode()).hexdigest()}", limits: {{{spec}}}}}
  - {{tenant: big, sha256: "{hashlib.sha256(FREE.encode()).hexdigest()}"}}
"""


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_retry_after_waits_for_the_previous_minute_to_decay() -> None:
    # 10 of 10 used, all in the previous minute, half of it still weighing: 5 + 6 now > 10.
    assert retry_after_s(Window(False, previous=10, current=6), fraction=0.5, check=1, limit=10) == 12
    # Nothing from before: only the window's roll helps, then the current count decays.
    assert retry_after_s(Window(False, previous=0, current=10), fraction=0.75, check=1, limit=10) == 21


@pytest.fixture(params=["memory", "redis", "cluster"])
async def store(request: pytest.FixtureRequest) -> LimitStore:
    if request.param == "memory":
        return MemoryLimitStore()
    url = request.getfixturevalue("redis_url" if request.param == "redis" else "cluster_url")
    return RedisLimitStore.from_url(url, 1.0)


async def test_store_admits_up_to_the_limit_then_refuses(store: LimitStore) -> None:
    key = f"k{time.time()}"
    results = [await store.take(key, 100, 0.5, [Take("requests", 1, 1, 3)]) for _ in range(4)]
    await store.aclose()
    assert [r.is_admitted for r in results] == [True, True, True, False]
    assert results[-1].current == 3


async def test_store_weighs_the_previous_window_by_its_overlap(store: LimitStore) -> None:
    key = f"k{time.time()}"
    assert (await store.take(key, 200, 0.0, [Take("tokens", 0, 80, 2**53)])).is_admitted  # 80 in window 200
    assert not (await store.take(key, 201, 0.1, [Take("tokens", 1, 0, 70)])).is_admitted  # 80 * 0.9 + 1 > 70
    assert (await store.take(key, 201, 0.9, [Take("tokens", 1, 0, 70)])).is_admitted  # 80 * 0.1 + 1 <= 70
    await store.aclose()


async def test_store_decides_several_counters_at_once_adding_to_none_when_one_is_over(store: LimitStore) -> None:
    key = f"k{time.time()}"
    await store.take(key, 300, 0.0, [Take("tokens", 0, 50, 2**53)])
    both = [Take("requests", 1, 1, 10), Take("tokens", 1, 0, 50)]
    refused = await store.take(key, 300, 0.0, both)  # tokens: 50 + 1 > 50
    admitted = await store.take(key, 300, 0.0, [Take("requests", 1, 1, 10), Take("tokens", 1, 0, 100)])
    after = await store.take(key, 300, 0.0, [Take("requests", 1, 0, 1)])  # 1 counted, by the admitted one only
    await store.aclose()
    assert not refused.is_admitted
    assert refused.refused == both[1]
    assert (refused.previous, refused.current) == (0, 50)
    assert admitted.is_admitted
    assert not after.is_admitted
    assert after.current == 1


class CountingStore(MemoryLimitStore):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.is_failing = False

    async def take(self, key: str, window: int, fraction: float, takes: list[Take]) -> Window:
        self.calls += 1
        if self.is_failing:
            raise ConnectionError("the store is down")
        return await super().take(key, window, fraction, takes)


async def test_admitting_a_key_with_both_limits_is_one_store_call_and_an_outage_stops_calls() -> None:
    store = CountingStore()
    limiter = RateLimiter(store, Metrics(), 0.2)
    principal = Principal("t", key_id="both", limits=RateLimitSpec(requests_per_minute=5, tokens_per_minute=100))
    await limiter.admit(principal)
    assert store.calls == 1  # requests and tokens in one round trip
    store.is_failing = True
    for _ in range(10):
        await limiter.admit(principal)  # let through
    assert store.calls == 1 + 3  # three failures, then the guard's back-off: no call (and no timeout) each


async def test_key_over_its_request_limit_gets_429_with_retry_after() -> None:
    async with gateway(rules=limited_rules(requests=3)) as client:
        statuses = [(await client.post("/v1/chat/completions", json=chat_body(), headers=bearer(LIMITED))).status_code
                    for _ in range(3)]  # fmt: skip
        refused = await client.post("/v1/chat/completions", json=chat_body(), headers=bearer(LIMITED))
        other = await client.post("/v1/chat/completions", json=chat_body(), headers=bearer(FREE))
        metrics = (await client.get("/metrics")).text
    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "requests_per_minute_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 120  # a sliding window may need part of the next minute
    assert other.status_code == 200  # limits are per key
    assert 'turnout_rate_limited_total{limit="requests",tenant="small"} 1.0' in metrics


async def test_key_over_its_token_limit_gets_429_after_spending_them() -> None:
    # Each answer of the mock upstream uses 7 tokens: the third request finds 14 >= 10.
    async with gateway(rules=limited_rules(requests=None, tokens=10)) as client:
        first = await client.post("/v1/chat/completions", json=chat_body(), headers=bearer(LIMITED))
        second = await client.post("/v1/chat/completions", json=chat_body(), headers=bearer(LIMITED))
        third = await client.post("/v1/chat/completions", json=chat_body(), headers=bearer(LIMITED))
    assert (first.status_code, second.status_code) == (200, 200)
    assert third.status_code == 429
    assert third.json()["error"]["code"] == "tokens_per_minute_exceeded"


def embedding_upstream(request: httpx.Request) -> httpx.Response:
    data = [{"object": "embedding", "index": 0, "embedding": [0.5]}]
    return httpx.Response(200, json={"object": "list", "data": data, "usage": {"prompt_tokens": 6, "total_tokens": 6}})


async def test_embedding_tokens_count_toward_the_token_limit() -> None:
    # Each embedding uses 6 tokens: the third request finds 12 >= 10.
    body = {"model": "auto", "input": "hi"}
    async with gateway(embedding_upstream, rules=limited_rules(requests=None, tokens=10)) as client:
        statuses = [(await client.post("/v1/embeddings", json=body, headers=bearer(LIMITED))).status_code
                    for _ in range(3)]  # fmt: skip
    assert statuses == [200, 200, 429]


async def test_limits_hold_across_replicas_sharing_redis(redis_url: str) -> None:
    rules = limited_rules(requests=4)
    async with gateway(rules=rules, redis_url=redis_url) as one, gateway(rules=rules, redis_url=redis_url) as two:
        url = "/v1/chat/completions"
        statuses = [(await c.post(url, json=chat_body(), headers=bearer(LIMITED))).status_code
                    for c in (one, two, one, two, one, two)]  # fmt: skip
    assert statuses == [200, 200, 200, 200, 429, 429]
    assert statuses[-2:] == [429, 429]


async def test_unreachable_limit_store_lets_requests_through() -> None:
    metrics = Metrics()
    limiter = RateLimiter(RedisLimitStore.from_url("redis://127.0.0.1:1/0", 0.2), metrics, 0.2)
    principal = Principal("t", key_id="abc", limits=RateLimitSpec(requests_per_minute=1))
    for _ in range(3):
        await limiter.admit(principal)  # no RateLimited raised
    await limiter.aclose()
    assert b"turnout_rate_limit_errors_total 3.0" in metrics.render()


async def test_memory_limiter_refuses_over_the_limit() -> None:
    limiter = RateLimiter(MemoryLimitStore(), Metrics(), 0.2)
    principal = Principal("t", key_id="mem", limits=RateLimitSpec(requests_per_minute=2))
    await limiter.admit(principal)
    await limiter.admit(principal)
    with pytest.raises(RateLimited) as caught:
        await limiter.admit(principal)
    assert caught.value.status == 429
    assert "retry-after" in caught.value.headers


def counted(target: object, calls: list[str]) -> None:
    """Count each call made to ``target``'s store methods from outside (one round trip each to Redis;
    the in-process store's methods calling one another are not round trips)."""
    depth = [0]
    for name in ("get", "set", "lock", "unlock", "renew", "read_or_lock", "write_and_unlock", "take"):
        method = getattr(target, name, None)
        if method is None:
            continue

        async def call(*args: object, _method: Any = method, _name: str = name) -> object:
            if depth[0] == 0:
                calls.append(_name)
            depth[0] += 1
            try:
                return await _method(*args)
            finally:
                depth[0] -= 1

        setattr(target, name, call)


async def test_a_rate_limited_cache_miss_costs_four_store_round_trips() -> None:
    calls: list[str] = []
    async with gateway(rules=limited_rules(requests=100, tokens=10_000)) as client:
        resources = client._transport.app.state.gateway.resources  # type: ignore[attr-defined]
        counted(resources.cache.store, calls)
        counted(resources.limits._store, calls)
        answer = await client.post("/v1/chat/completions", json=chat_body(temperature=0), headers=bearer(LIMITED))
    assert answer.headers["x-turnout-cache"] == "miss"
    # admit (requests and tokens at once), read-or-lock, write-and-unlock, spend tokens: was 7
    assert calls == ["take", "read_or_lock", "take", "write_and_unlock"]

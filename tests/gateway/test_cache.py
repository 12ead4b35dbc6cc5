"""The response cache through the gateway: hits, policy, streams, single flight, failing open."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import httpx
import pytest

from tests.gateway.harness import KEY, LIMITED_KEY, RULES, chat_body, completion, delta, gateway, sse
from tests.servers import free_port, redis_server

DETERMINISTIC = {"temperature": 0}


class Upstream:
    """Counts calls per host; answers JSON or SSE, or fails as told."""

    def __init__(self, status: int = 200, delay_s: float = 0.0, cut_stream: bool = False) -> None:
        self.calls: Counter[str] = Counter()
        self.status = status
        self.delay_s = delay_s
        self.cut_stream = cut_stream

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls[request.url.host] += 1
        await asyncio.sleep(self.delay_s)
        if self.status != 200:
            return httpx.Response(self.status, json={"error": {"message": "nope"}})
        if json.loads(request.content).get("stream"):
            events = (delta("Hel"), delta("lo", None if self.cut_stream else "stop"))
            return httpx.Response(200, content=sse(*events, done=not self.cut_stream))
        return httpx.Response(200, json=completion(f"answer {self.calls.total()}"))


async def ask(
    client: httpx.AsyncClient, key: str = KEY, headers: dict[str, str] | None = None, **body: object
) -> httpx.Response:
    merged = {**DETERMINISTIC, **body}
    return await client.post(
        "/v1/chat/completions", json=chat_body(**merged), headers={"authorization": f"Bearer {key}", **(headers or {})}
    )


def content_of(response: httpx.Response) -> str:
    if response.headers["content-type"].startswith("text/event-stream"):
        events = [json.loads(e[6:]) for e in response.text.split("\n\n") if e.startswith("data: {")]
        return "".join(c["delta"].get("content") or "" for e in events for c in e["choices"])
    return str(response.json()["choices"][0]["message"]["content"])


@pytest.fixture(params=["memory", "redis", "cluster", "sentinel"])
def store_settings(request: pytest.FixtureRequest) -> dict[str, object]:
    return {} if request.param == "memory" else {"redis_url": request.getfixturevalue(f"{request.param}_url")}


async def test_repeat_is_a_hit_with_the_original_usage(store_settings: dict[str, object]) -> None:
    upstream = Upstream()
    async with gateway(upstream, **store_settings) as client:
        first = await ask(client, messages=[{"role": "user", "content": f"q-{id(store_settings)}"}])
        second = await ask(client, messages=[{"role": "user", "content": f"q-{id(store_settings)}"}])
    assert first.headers["x-turnout-cache"] == "miss"
    assert second.headers["x-turnout-cache"] == "hit"
    assert second.json() == first.json()
    assert second.json()["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    assert second.headers["x-turnout-backend"] == "primary"
    assert upstream.calls.total() == 1


async def test_non_deterministic_requests_bypass_by_default() -> None:
    upstream = Upstream()
    async with gateway(upstream) as client:
        responses = [await ask(client, temperature=0.8) for _ in range(2)]
    assert [r.headers["x-turnout-cache"] for r in responses] == ["bypass", "bypass"]
    assert upstream.calls.total() == 2


async def test_seed_makes_a_request_cacheable() -> None:
    upstream = Upstream()
    async with gateway(upstream) as client:
        await ask(client, temperature=0.8, seed=1)
        second = await ask(client, temperature=0.8, seed=1)
    assert second.headers["x-turnout-cache"] == "hit"


async def test_no_cache_skips_the_read_and_no_store_skips_the_write() -> None:
    upstream = Upstream()
    async with gateway(upstream) as client:
        await ask(client)
        fresh = await ask(client, headers={"cache-control": "no-cache"})
        unstored = await ask(client, headers={"cache-control": "no-store"}, max_tokens=3)
        after_unstored = await ask(client, max_tokens=3)
    assert fresh.headers["x-turnout-cache"] == "bypass"
    assert unstored.headers["x-turnout-cache"] == "miss"
    assert after_unstored.headers["x-turnout-cache"] == "miss"
    assert upstream.calls.total() == 4


@pytest.mark.parametrize(("status", "answered"), [(429, 429), (500, 502), (400, 400)])
async def test_errors_are_never_cached(status: int, answered: int) -> None:
    upstream = Upstream(status=status)
    async with gateway(upstream, rules=RULES.replace("[primary, fallback]", "[primary]")) as client:
        first = await ask(client)
        upstream.status = 200
        second = await ask(client)
    assert first.status_code == answered
    assert second.status_code == 200
    assert second.headers["x-turnout-cache"] == "miss"


async def test_tenants_do_not_see_each_others_entries() -> None:
    upstream = Upstream()
    async with gateway(upstream) as client:
        await ask(client, model="code")
        other = await ask(client, key=LIMITED_KEY, model="code")
    assert other.headers["x-turnout-cache"] == "miss"
    assert upstream.calls.total() == 2


async def test_shared_route_serves_every_tenant() -> None:
    upstream = Upstream()
    shared = RULES.replace("code: {backends: [primary]}", "code: {backends: [primary], cache: {shared: true}}")
    async with gateway(upstream, rules=shared) as client:
        await ask(client, model="code")
        other = await ask(client, key=LIMITED_KEY, model="code")
    assert other.headers["x-turnout-cache"] == "hit"


async def test_fallback_answer_does_not_fill_the_cache_unless_allowed() -> None:
    async def primary_down(request: httpx.Request) -> httpx.Response:
        if request.url.host == "primary":
            return httpx.Response(503)
        return httpx.Response(200, json=completion("from fallback"))

    async with gateway(primary_down) as client:
        await ask(client)
        again = await ask(client)
    allowed = RULES.replace("description: everything}", "description: everything, cache: {fallback_fills: true}}")
    async with gateway(primary_down, rules=allowed) as client:
        await ask(client)
        filled = await ask(client)
    assert again.headers["x-turnout-cache"] == "miss"
    assert filled.headers["x-turnout-cache"] == "hit"
    assert filled.headers["x-turnout-backend"] == "fallback"


async def test_stream_then_json_and_json_then_stream_hit() -> None:
    upstream = Upstream()
    async with gateway(upstream) as client:
        streamed = await ask(client, stream=True)
        await asyncio.sleep(0.05)  # the stream is stored as it closes
        as_json = await ask(client)
        as_stream = await ask(client, stream=True, stream_options={"include_usage": True})
    assert streamed.headers["x-turnout-cache"] == "miss"
    assert as_json.headers["x-turnout-cache"] == "hit"
    assert as_json.json()["choices"][0]["message"]["content"] == "Hello"
    assert as_stream.headers["x-turnout-cache"] == "hit"
    assert content_of(as_stream) == "Hello"
    assert as_stream.text.endswith("data: [DONE]\n\n")
    assert upstream.calls.total() == 1


async def test_truncated_stream_is_not_cached() -> None:
    upstream = Upstream(cut_stream=True)
    async with gateway(upstream, rules=RULES.replace("[primary, fallback]", "[primary]")) as client:
        await ask(client, stream=True)
        await asyncio.sleep(0.05)
        upstream.cut_stream = False
        second = await ask(client)
    assert second.headers["x-turnout-cache"] == "miss"


async def test_tool_call_answers_are_not_cached_by_default() -> None:
    def tool_call(request: httpx.Request) -> httpx.Response:
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        }
        body = {
            "id": "x",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
        }
        return httpx.Response(200, json=body)

    async with gateway(tool_call) as client:
        await ask(client)
        second = await ask(client)
    assert second.headers["x-turnout-cache"] == "miss"


async def test_fifty_identical_concurrent_misses_reach_the_backend_once(store_settings: dict[str, object]) -> None:
    upstream = Upstream(delay_s=0.3)
    async with gateway(upstream, **store_settings) as client:
        body = {"messages": [{"role": "user", "content": f"flight {id(upstream)}"}]}
        responses = await asyncio.gather(*(ask(client, **body) for _ in range(50)))
    assert all(r.status_code == 200 for r in responses)
    assert upstream.calls.total() == 1
    statuses = Counter(r.headers["x-turnout-cache"] for r in responses)
    assert statuses["hit"] == 49
    assert statuses["miss"] + statuses["off"] == 1  # the leader; "off" if its store read timed out under load


async def test_redis_killed_mid_load_fails_no_request() -> None:
    upstream = Upstream()
    with redis_server() as url:
        async with gateway(upstream, redis_url=url) as client:
            before = [await ask(client, max_tokens=i % 3 + 1) for i in range(6)]
            server = __import__("redis").Redis.from_url(url)
            server.shutdown(nosave=True)
            server.close()
            after = [await ask(client, max_tokens=i % 3 + 1) for i in range(20)]
            metrics = (await client.get("/metrics")).text
    assert all(r.status_code == 200 for r in before + after)
    assert {r.headers["x-turnout-cache"] for r in before} == {"miss", "hit"}
    assert {r.headers["x-turnout-cache"] for r in after} == {"off"}
    assert "turnout_cache_errors_total" in metrics


async def test_start_up_warm_up_of_an_unreachable_store_neither_fails_nor_hangs() -> None:
    dead = f"redis+cluster://127.0.0.1:{free_port()}"
    async with asyncio.timeout(20), gateway(redis_url=dead) as client:
        response = await client.post(
            "/v1/chat/completions", json=chat_body(temperature=0), headers={"authorization": f"Bearer {KEY}"}
        )
    assert response.status_code == 200
    assert response.headers["x-turnout-cache"] == "off"

"""Nothing a client sends may hold the event loop: other requests keep being answered."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.gateway.harness import AUTH, RULES, chat_body, completion, gateway

HEALTHZ_LIMIT_S = 0.1
POLL_S = 0.01
CLASSIFIED = RULES.replace("router: {kind: default}", "router: {kind: classifier}")
SEMANTIC = CLASSIFIED.replace("description: everything}", "description: everything, cache: {semantic_threshold: 0.9}}")


def quiet_upstream(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=completion("ok"))


async def slowest_healthz_while(client: httpx.AsyncClient, work: asyncio.Task[httpx.Response]) -> float:
    """The longest a probe waited, counted from when it was due (a stalled loop delays the wake-up
    before the request as much as the request itself)."""
    slowest = 0.0
    while not work.done():
        due = time.perf_counter() + POLL_S
        await asyncio.sleep(POLL_S)
        assert (await client.get("/healthz")).status_code == 200
        slowest = max(slowest, time.perf_counter() - due)
    return slowest


@pytest.mark.parametrize("rules", [CLASSIFIED, SEMANTIC], ids=["classifier", "semantic-cache"])
async def test_healthz_answers_while_a_huge_one_word_prompt_is_routed(rules: str) -> None:
    body = chat_body(messages=[{"role": "user", "content": "hello " * 650_000}], temperature=0)
    async with gateway(quiet_upstream, rules, max_body_bytes=8_000_000) as client:
        await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)  # warm the router
        routed = asyncio.create_task(client.post("/v1/chat/completions", json=body, headers=AUTH))
        slowest = await slowest_healthz_while(client, routed)
        response = await routed
    assert response.status_code == 200
    assert response.headers["x-turnout-route"]
    assert slowest < HEALTHZ_LIMIT_S, f"/healthz took {slowest * 1000:.0f} ms while the prompt was routed"

"""What orchestrators read: the in-flight gauge an autoscaler can scale on."""

from __future__ import annotations

import asyncio
import re

import httpx

from tests.gateway.harness import AUTH, chat_body, completion, gateway


def in_flight(metrics: str) -> float:
    found = re.search(r"^turnout_in_flight_requests (\S+)$", metrics, re.MULTILINE)
    assert found, "turnout_in_flight_requests is not exported"
    return float(found.group(1))


async def test_the_in_flight_gauge_counts_requests_being_answered_but_not_the_scrape() -> None:
    release = asyncio.Event()
    arrived = asyncio.Semaphore(0)

    async def held(request: httpx.Request) -> httpx.Response:
        arrived.release()
        await release.wait()
        return httpx.Response(200, json=completion("late"))

    async with gateway(held) as client:  # type: ignore[arg-type]
        assert in_flight((await client.get("/metrics")).text) == 0
        calls = [
            asyncio.create_task(client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)) for _ in range(3)
        ]
        for _ in range(3):
            await asyncio.wait_for(arrived.acquire(), 10)
        assert in_flight((await client.get("/metrics")).text) == 3
        release.set()
        assert [r.status_code for r in await asyncio.gather(*calls)] == [200, 200, 200]
        assert in_flight((await client.get("/metrics")).text) == 0

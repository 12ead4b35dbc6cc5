"""Deadlines: the route's budget, the client's tighter one, the first-chunk budget, mid-stream
budget, and a client that leaves cancelling its upstream call."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from support.fault_rules import MESSAGES, route_rules
from support.faults import FaultServer
from tests.gateway.resilience_harness import SLACK_S, collect, sdk_gateway, stopwatch


async def wait_for_event(faults: FaultServer, name: str, event: str, within_s: float = 5.0) -> bool:
    for _ in range(int(within_s / 0.02)):
        if faults.count(name, event):
            return True
        await asyncio.sleep(0.02)
    return False


async def test_client_budget_header_tightens_the_route_budget(faults: FaultServer) -> None:
    hanging = faults.backend("hang")
    async with sdk_gateway(route_rules([hanging], route=", latency_budget_ms: 20000")) as gw:
        with stopwatch() as took, pytest.raises(openai.APIStatusError) as caught:
            await gw.client.chat.completions.create(
                model="auto", messages=MESSAGES, extra_headers={"x-turnout-budget-ms": "400"}
            )
    assert caught.value.status_code == 504
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["budget_ms"] == 400
    assert took.seconds < 0.4 + SLACK_S


async def test_client_budget_header_never_loosens_the_route_budget(faults: FaultServer) -> None:
    hanging = faults.backend("hang")
    async with sdk_gateway(route_rules([hanging], route=", latency_budget_ms: 300")) as gw:
        with pytest.raises(openai.APIStatusError) as caught:
            await gw.client.chat.completions.create(
                model="auto", messages=MESSAGES, extra_headers={"x-turnout-budget-ms": "60000"}
            )
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["budget_ms"] == 300


@pytest.mark.parametrize("value", ["0", "-5", "soon", "1.5"])
async def test_bad_budget_header_is_a_400_naming_it(faults: FaultServer, value: str) -> None:
    async with sdk_gateway(route_rules([faults.backend("ok")])) as gw:
        with pytest.raises(openai.BadRequestError) as caught:
            await gw.client.chat.completions.create(
                model="auto", messages=MESSAGES, extra_headers={"x-turnout-budget-ms": value}
            )
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["param"] == "x-turnout-budget-ms"


async def test_first_chunk_budget_moves_a_slow_stream_on_to_the_fallback(faults: FaultServer) -> None:
    slow, good = faults.backend("slow-3000"), faults.backend("ok")
    rules = route_rules([slow, good], route=", latency_budget_ms: 10000, ttft_budget_ms: 800")
    async with sdk_gateway(rules) as gw:
        with stopwatch() as took:
            stream = await gw.client.chat.completions.with_raw_response.create(
                model="auto", messages=MESSAGES, stream=True
            )
        chunks = [c async for c in stream.parse()]
    assert stream.headers["x-turnout-backend"] == good[0]
    assert len(chunks) == 5
    assert took.seconds < 0.8 + SLACK_S  # the first chunk's budget, not the whole one
    assert await wait_for_event(faults, slow[0], "closed")  # the slow attempt was hung up on


async def test_first_chunk_budget_exhausted_is_a_504_naming_it(faults: FaultServer) -> None:
    slow = faults.backend("slow-3000")
    rules = route_rules([slow], route=", latency_budget_ms: 10000, ttft_budget_ms: 500")
    async with sdk_gateway(rules) as gw:
        with pytest.raises(openai.APIStatusError) as caught:
            await gw.client.chat.completions.create(model="auto", messages=MESSAGES, stream=True)
    assert caught.value.status_code == 504
    assert "first-chunk budget" in caught.value.message


async def test_stream_outliving_its_budget_ends_with_an_error_event(faults: FaultServer) -> None:
    dribbling = faults.backend("slowstream-400")  # five chunks over 1.6 s
    async with sdk_gateway(route_rules([dribbling], route=", latency_budget_ms: 900")) as gw:
        stream = await gw.client.chat.completions.create(model="auto", messages=MESSAGES, stream=True)
        received: list[object] = []
        with stopwatch() as took, pytest.raises(openai.APIError) as caught:
            await collect(stream, received)
    assert 1 <= len(received) < 5
    assert "budget ran out mid-stream" in caught.value.message
    assert took.seconds < 0.9 + SLACK_S
    assert await wait_for_event(faults, dribbling[0], "closed")


async def test_client_leaving_a_json_request_cancels_the_upstream_call(faults: FaultServer) -> None:
    hanging = faults.backend("hang")
    async with sdk_gateway(route_rules([hanging])) as gw:
        async with httpx.AsyncClient(base_url=gw.url) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post("/v1/chat/completions", json={"model": "auto", "messages": MESSAGES}, timeout=0.5)
        assert await wait_for_event(faults, hanging[0], "closed")


async def test_client_leaving_before_the_disconnect_watch_starts_still_cancels_the_upstream_call(
    faults: FaultServer,
) -> None:
    hanging = faults.backend("hang")
    async with sdk_gateway(route_rules([hanging])) as gw:
        async with httpx.AsyncClient(base_url=gw.url) as client:
            with pytest.raises(httpx.ReadTimeout):  # gone well before WATCH_AFTER_S
                await client.post("/v1/chat/completions", json={"model": "auto", "messages": MESSAGES}, timeout=0.01)
        assert await wait_for_event(faults, hanging[0], "closed")


async def test_client_leaving_a_stream_cancels_the_upstream_stream(faults: FaultServer) -> None:
    dribbling = faults.backend("slowstream-300")
    async with sdk_gateway(route_rules([dribbling])) as gw:
        stream = await gw.client.chat.completions.create(model="auto", messages=MESSAGES, stream=True)
        first = await anext(aiter(stream))
        await stream.close()
        assert first.choices[0].delta.content == "part0 "
        assert await wait_for_event(faults, dribbling[0], "closed")


async def test_gaps_between_chunks_are_bounded_by_the_backend_timeout_not_the_first_chunk_budget(
    faults: FaultServer,
) -> None:
    dribbling, spare = faults.backend("slowstream-300"), faults.backend("ok")
    rules = route_rules([dribbling, spare], route=", latency_budget_ms: 5000, ttft_budget_ms: 500")
    async with sdk_gateway(rules) as gw:
        stream = await gw.client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES, stream=True)
        chunks = [c async for c in stream.parse()]
    assert stream.headers["x-turnout-backend"] == dribbling[0]
    assert len(chunks) == 5  # 300 ms apart: longer than the first chunk's slice (250 ms), yet whole

"""Hedging: a slow primary gets company after the route's delay; the first good answer wins
and the loser's connection is closed."""

from __future__ import annotations

import httpx

from support.fault_rules import MESSAGES, route_rules
from support.faults import FaultServer
from tests.gateway.resilience_harness import sdk_gateway, stopwatch
from tests.gateway.test_budgets import wait_for_event


async def test_hedge_picks_the_fast_backend_and_closes_the_slow_one(faults: FaultServer) -> None:
    slow, fast = faults.backend("slow-4000"), faults.backend("ok")
    rules = route_rules([slow, fast], route=", hedge: {delay_ms: 150}")
    async with sdk_gateway(rules) as gw:
        with stopwatch() as took:
            raw = await gw.client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES)
        assert raw.headers["x-turnout-backend"] == fast[0]
        assert await wait_for_event(faults, slow[0], "closed", within_s=2)  # cancelled, not left to finish
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(gw.url + "/metrics")).text
    assert took.seconds < 4  # did not wait for the slow one
    assert 'turnout_hedges_total{route="r"} 1.0' in metrics
    assert 'turnout_backend_attempts_total{backend="' + slow[0] + '",outcome="cancelled"} 1.0' in metrics


async def test_hedge_for_a_stream_keeps_the_first_stream_and_closes_the_other(faults: FaultServer) -> None:
    slow, fast = faults.backend("slow-4000"), faults.backend("ok")
    rules = route_rules([slow, fast], route=", hedge: {delay_ms: 100}")
    async with sdk_gateway(rules) as gw:
        stream = await gw.client.chat.completions.create(model="auto", messages=MESSAGES, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
        assert await wait_for_event(faults, slow[0], "closed", within_s=2)
    assert text.startswith("part0")


async def test_no_hedge_before_the_delay(faults: FaultServer) -> None:
    quick, spare = faults.backend("slow-50"), faults.backend("ok")
    rules = route_rules([quick, spare], route=", hedge: {delay_ms: 2000}")
    async with sdk_gateway(rules) as gw:
        raw = await gw.client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES)
    assert raw.headers["x-turnout-backend"] == quick[0]
    assert faults.count(spare[0]) == 0


async def test_hedge_that_fails_leaves_the_primary_to_answer(faults: FaultServer) -> None:
    slowish, broken = faults.backend("slow-600"), faults.backend("status-500")
    rules = route_rules([slowish, broken], route=", hedge: {delay_ms: 100}")
    async with sdk_gateway(rules) as gw:
        raw = await gw.client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES)
    assert raw.headers["x-turnout-backend"] == slowish[0]
    assert faults.count(broken[0]) == 1


async def test_adaptive_hedge_delay_follows_the_primarys_p95(faults: FaultServer) -> None:
    primary, spare = faults.backend("slow-30"), faults.backend("ok")
    rules = route_rules([primary, spare], route=", hedge: {delay_ms: 3000, adaptive: true, min_delay_ms: 1}")
    async with sdk_gateway(rules) as gw:
        for _ in range(20):  # the primary's p95 becomes ~30 ms
            await gw.client.chat.completions.create(model="auto", messages=MESSAGES)
        assert faults.count(spare[0]) == 0
        faults.modes[primary[0]] = "hang"
        with stopwatch() as took:
            raw = await gw.client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES)
    assert raw.headers["x-turnout-backend"] == spare[0]
    assert took.seconds < 1.5  # hedged after ~30 ms, not after the fixed 3,000 ms


async def test_hedge_refused_as_the_callers_fault_starts_no_further_backend(faults: FaultServer) -> None:
    slowish, refusing, spare = faults.backend("slow-300"), faults.backend("status-422"), faults.backend("ok")
    rules = route_rules([slowish, refusing, spare], route=", hedge: {delay_ms: 50}")
    async with sdk_gateway(rules) as gw:
        raw = await gw.client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES)
    assert raw.headers["x-turnout-backend"] == slowish[0]  # the primary still answered
    assert faults.count(refusing[0]) == 1
    assert faults.count(spare[0]) == 0

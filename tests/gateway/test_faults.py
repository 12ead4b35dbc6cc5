"""Each upstream fault, with and without a fallback, driven through the gateway with the openai SDK."""

from __future__ import annotations

import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from support.fault_rules import MESSAGES, route_rules
from support.faults import FaultServer
from tests.gateway.resilience_harness import SLACK_S, collect, sdk_gateway, stopwatch

BUDGET_MS = 1500
# fault -> (status, error code) when it is the route's only backend
ALONE = {
    "hang": (504, {"budget_exceeded", "upstream_timeout"}),
    "slow-5000": (504, {"budget_exceeded", "upstream_timeout"}),
    "status-500": (502, {"bad_upstream_response"}),
    "status-503": (503, {"upstream_unavailable"}),
    "status-429": (429, {"upstream_rate_limited"}),
    "malformed": (502, {"bad_upstream_response"}),
    "reset": (503, {"upstream_unavailable", "bad_upstream_response"}),
}
BEFORE_FIRST_CHUNK = ["hang", "slow-5000", "status-500", "status-429", "reset", "cut-0"]


@pytest.mark.parametrize("fault", list(ALONE))
async def test_fault_falls_back_inside_budget(faults: FaultServer, fault: str) -> None:
    broken, good = faults.backend(fault), faults.backend("ok")
    rules = route_rules([broken, good], route=f", latency_budget_ms: {BUDGET_MS}")
    async with sdk_gateway(rules) as gw:
        with stopwatch() as took:
            raw = await gw.client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES)
    assert raw.headers["x-turnout-backend"] == good[0]
    assert raw.parse().choices[0].message.content == "from ok"
    assert faults.count(broken[0]) == 1
    assert took.seconds < BUDGET_MS / 1000 + SLACK_S


@pytest.mark.parametrize("fault", list(ALONE))
async def test_fault_without_fallback_is_an_error_naming_route_budget_and_attempt(
    faults: FaultServer, fault: str
) -> None:
    broken = faults.backend(fault)
    async with sdk_gateway(route_rules([broken], route=f", latency_budget_ms: {BUDGET_MS}")) as gw:
        with stopwatch() as took, pytest.raises(openai.APIStatusError) as caught:
            await gw.client.chat.completions.create(model="auto", messages=MESSAGES)
    status, codes = ALONE[fault]
    error = caught.value
    assert error.status_code == status
    assert isinstance(error.body, dict)
    assert error.body["code"] in codes
    assert error.body["route"] == "r"
    assert error.body["budget_ms"] == BUDGET_MS
    assert [a["backend"] for a in error.body["attempts"]] == [broken[0]]
    assert took.seconds < BUDGET_MS / 1000 + SLACK_S
    if fault == "status-429":
        assert error.response.headers["retry-after"] == "7"


@pytest.mark.parametrize("fault", BEFORE_FIRST_CHUNK)
async def test_stream_failing_before_its_first_chunk_falls_back(faults: FaultServer, fault: str) -> None:
    broken, good = faults.backend(fault), faults.backend("ok")
    rules = route_rules([broken, good], route=f", latency_budget_ms: {BUDGET_MS}")
    async with sdk_gateway(rules) as gw:
        with stopwatch() as took:
            stream = await gw.client.chat.completions.create(model="auto", messages=MESSAGES, stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "part0 part1 part2 part3 part4 "
    assert faults.count(broken[0]) == 1
    assert took.seconds < BUDGET_MS / 1000 + SLACK_S


async def test_stream_cut_after_chunks_ends_with_an_error_not_a_short_answer(faults: FaultServer) -> None:
    cut, good = faults.backend("cut-2"), faults.backend("ok")
    async with sdk_gateway(route_rules([cut, good])) as gw:
        stream = await gw.client.chat.completions.create(model="auto", messages=MESSAGES, stream=True)
        received: list[ChatCompletionChunk] = []
        with pytest.raises(openai.APIError) as caught:
            await collect(stream, received)
    assert [c.choices[0].delta.content for c in received] == [
        "part0 ",
        "part1 ",
    ]  # what came before the cut, then a clean error
    assert cut[0] in caught.value.message  # the error event names the backend that cut it
    assert faults.count(good[0]) == 0  # after the first chunk there is no fallback: the client saw text


async def test_request_refused_by_upstream_as_callers_fault_does_not_fall_back(faults: FaultServer) -> None:
    refusing, good = faults.backend("status-422"), faults.backend("ok")
    async with sdk_gateway(route_rules([refusing, good])) as gw:
        with pytest.raises(openai.UnprocessableEntityError):
            await gw.client.chat.completions.create(model="auto", messages=MESSAGES)
    assert faults.count(good[0]) == 0


async def test_fallback_statuses_are_configurable(faults: FaultServer) -> None:
    refusing, failing, good = faults.backend("status-400"), faults.backend("status-500"), faults.backend("ok")
    moves_on_400 = route_rules([refusing, good], route=", fallback: {statuses: [400]}")
    async with sdk_gateway(moves_on_400) as gw:
        raw = await gw.client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES)
    assert raw.headers["x-turnout-backend"] == good[0]
    only_connect = route_rules([failing, good], route=", fallback: {failures: [connect, timeout]}")
    async with sdk_gateway(only_connect) as gw:
        with pytest.raises(openai.InternalServerError) as caught:
            await gw.client.chat.completions.create(model="auto", messages=MESSAGES)
    assert caught.value.status_code == 502
    assert faults.count(good[0]) == 1  # only the first route's request reached it

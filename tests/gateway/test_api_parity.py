"""The same gateway behind each API: fallback before the first chunk and a clean error after it
(the fault-injecting upstream), one cache shared by the three, and reports, the access log, the dry
run's samples and route explain that know which API was asked."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from support.fault_rules import route_rules
from support.faults import FaultServer
from tests.gateway.api_harness import RULES, sdk_clients
from tests.gateway.resilience_harness import collect, sdk_gateway

ADMIN_KEY = "an-admin-key-long-enough-for-it"
OK_STREAM = "part0 part1 part2 part3 part4 "
"""What the fault server's ``ok`` backend streams."""
CACHED_RULES = RULES.replace("description: everything}", "description: everything, cache: {enabled: true}}")


@pytest.mark.parametrize("fault", ["status-500", "cut-0", "reset"])
async def test_each_api_falls_back_before_the_first_chunk(faults: FaultServer, fault: str) -> None:
    broken, good = faults.backend(fault), faults.backend("ok")
    async with sdk_gateway(route_rules([broken, good])) as gw:
        async with gw.client.responses.stream(model="auto", input="hello") as stream:
            response = await stream.get_final_response()
        async with (
            anthropic.AsyncAnthropic(base_url=gw.url, api_key="unused", max_retries=0) as claude,
            claude.messages.stream(model="auto", max_tokens=16, messages=[{"role": "user", "content": "hello"}]) as s,
        ):
            message = await s.get_final_message()
    assert response.output_text == OK_STREAM
    assert message.content[0].text == OK_STREAM  # type: ignore[union-attr]
    assert faults.count(broken[0]) == 2


async def test_a_responses_stream_cut_after_its_first_event_fails_cleanly(faults: FaultServer) -> None:
    cut, good = faults.backend("cut-2"), faults.backend("ok")
    async with sdk_gateway(route_rules([cut, good])) as gw:
        stream = await gw.client.responses.create(model="auto", input="hello", stream=True)
        events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds[-2:] == ["error", "response.failed"]
    assert "response.completed" not in kinds
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
    assert text == "part0 part1 "
    failed = events[-1].response  # type: ignore[union-attr]
    assert failed.status == "failed"
    assert cut[0] in failed.error.message
    assert faults.count(good[0]) == 0  # after the first chunk there is no fallback: the client saw text


async def test_a_messages_stream_cut_after_its_first_event_is_an_anthropic_error(faults: FaultServer) -> None:
    cut, good = faults.backend("cut-2"), faults.backend("ok")
    seen: list[Any] = []
    async with (
        sdk_gateway(route_rules([cut, good])) as gw,
        anthropic.AsyncAnthropic(base_url=gw.url, api_key="unused", max_retries=0) as claude,
    ):
        stream = await claude.messages.create(
            model="auto", max_tokens=16, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        with pytest.raises(anthropic.APIStatusError) as caught:
            await collect(stream, seen)
    assert seen[0].type == "message_start"
    assert "message_stop" not in [e.type for e in seen]
    assert caught.value.body["error"]["type"] in {"api_error", "overloaded_error"}  # type: ignore[index]
    assert cut[0] in str(caught.value.body)


async def test_an_upstream_failure_is_in_each_apis_shape(faults: FaultServer) -> None:
    broken = faults.backend("status-503")
    async with sdk_gateway(route_rules([broken])) as gw:
        with pytest.raises(openai.APIStatusError) as openai_error:
            await gw.client.responses.create(model="auto", input="hello")
        async with anthropic.AsyncAnthropic(base_url=gw.url, api_key="unused", max_retries=0) as claude:
            with pytest.raises(anthropic.APIStatusError) as anthropic_error:
                await claude.messages.create(model="auto", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert openai_error.value.status_code == 503
    assert openai_error.value.code == "upstream_unavailable"
    assert anthropic_error.value.status_code == 529  # Anthropic's "overloaded", which its SDK retries
    assert anthropic_error.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


@pytest.fixture
async def cached() -> AsyncIterator[Any]:
    async with sdk_clients(CACHED_RULES, admin_key=ADMIN_KEY) as clients:
        yield clients


@pytest.mark.parametrize("first", ["chat", "responses", "messages"])
async def test_an_answer_cached_through_one_api_is_a_hit_through_the_others(cached: Any, first: str) -> None:
    prompt = f"cache me, first through {first}"
    asks = {
        "chat": lambda: cached.openai.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": prompt}], max_tokens=16, temperature=0
        ),
        "responses": lambda: cached.openai.responses.with_raw_response.create(
            model="auto", input=prompt, max_output_tokens=16, temperature=0
        ),
        "messages": lambda: cached.anthropic.messages.with_raw_response.create(
            model="auto", max_tokens=16, messages=[{"role": "user", "content": prompt}], extra_body={"temperature": 0}
        ),
    }
    order = [first, *(api for api in asks if api != first)]
    states = [(await asks[api]()).headers["x-turnout-cache"] for api in order]
    assert states == ["miss", "hit", "hit"]
    assert len(cached.upstream.bodies) == 1
    hit = await cached.anthropic.messages.create(
        model="auto", max_tokens=16, messages=[{"role": "user", "content": prompt}], extra_body={"temperature": 0}
    )
    assert hit.content[0].text == f"echo: {prompt}"


async def test_a_cached_answer_replays_as_each_apis_stream(cached: Any) -> None:
    prompt = "replay me as a stream"
    await cached.openai.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": prompt}], max_tokens=16, temperature=0
    )
    async with cached.openai.responses.stream(model="auto", input=prompt, max_output_tokens=16, temperature=0) as s:
        response = await s.get_final_response()
    async with cached.anthropic.messages.stream(
        model="auto", max_tokens=16, messages=[{"role": "user", "content": prompt}], extra_body={"temperature": 0}
    ) as s:
        message = await s.get_final_message()
    assert response.output_text == message.content[0].text == f"echo: {prompt}"
    assert message.usage.output_tokens == 3
    assert len(cached.upstream.bodies) == 1


async def test_reports_and_the_access_log_name_the_endpoint(cached: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="turnout.access"):
        await cached.openai.responses.create(model="auto", input="report me")
        await cached.anthropic.messages.create(model="auto", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
        for _ in range(100):  # the access line is written once the response is wholly sent
            logged = {getattr(r, "fields", {}).get("endpoint") for r in caplog.records if r.name == "turnout.access"}
            if {"responses", "messages"} <= logged:
                break
            await asyncio.sleep(0.05)
    assert {"responses", "messages"} <= logged
    async with httpx.AsyncClient(base_url=cached.url, headers={"authorization": f"Bearer {ADMIN_KEY}"}) as admin:
        report = (await admin.get("/admin/reports/cache", params={"since": "1h", "by": "endpoint"})).json()
    endpoints = {row["endpoint"]: row["requests"] for row in report["rows"]}
    assert endpoints.get("responses", 0) >= 1
    assert endpoints.get("messages", 0) >= 1


async def test_route_explain_and_the_dry_run_take_each_apis_body(cached: Any) -> None:
    await cached.anthropic.messages.create(
        model="auto", max_tokens=8, messages=[{"role": "user", "content": "sampled from messages"}]
    )
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=cached.url, headers=headers) as admin:
        explained = [
            (await admin.post("/admin/route/explain", params={"api": api}, json=body)).json()
            for api, body in [
                ("responses", {"model": "auto", "input": "explain me"}),
                ("messages", {"model": "auto", "max_tokens": 8, "messages": [{"role": "user", "content": "explain"}]}),
                ("chat", {"model": "auto", "messages": [{"role": "user", "content": "explain"}]}),
            ]
        ]
        bad = await admin.post("/admin/route/explain", params={"api": "grpc"}, json={})
        proposed = CACHED_RULES.replace("default_route: general", "default_route: other")
        proposed = proposed.replace("routes:\n", "routes:\n  other: {backends: [fallback]}\n")
        dry_run = await admin.post(
            "/admin/rules/dry-run", content=proposed, headers={"content-type": "application/yaml"}
        )
    assert [e["route"] for e in explained] == ["general"] * 3
    assert bad.status_code == 422
    changes = dry_run.json()["changes"]
    assert any(c["preview"] == "sampled from messages" and c["to"]["route"] == "other" for c in changes)

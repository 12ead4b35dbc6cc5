"""An upstream's answer is read only up to its backend's ``max_response_bytes``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import openai
import pytest

from support.fault_rules import MESSAGES, route_rules
from support.faults import FaultServer
from tests.gateway.resilience_harness import collect, sdk_gateway
from tests.servers import gateway_process, rss_bytes

MIB = 1024 * 1024
CAPPED = ", max_response_bytes: 1048576"


@pytest.mark.parametrize("fault", ["endless", "huge-2"])
async def test_json_answer_past_the_cap_is_502_and_the_connection_is_closed(faults: FaultServer, fault: str) -> None:
    broken = faults.backend(fault)
    async with sdk_gateway(route_rules([broken], backend=CAPPED)) as gw:
        with pytest.raises(openai.APIStatusError) as caught:
            await gw.client.chat.completions.create(model="auto", messages=MESSAGES)
    assert caught.value.status_code == 502
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "upstream_response_too_large"
    if fault == "endless":
        await asyncio.sleep(0.2)
        assert faults.count(broken[0], "closed") == 1


@pytest.mark.parametrize("fault", ["endless", "endlessline", "huge-2"])
async def test_answer_past_the_cap_falls_back(faults: FaultServer, fault: str) -> None:
    broken, good = faults.backend(fault), faults.backend("ok")
    async with sdk_gateway(route_rules([broken, good], backend=CAPPED)) as gw:
        raw = await gw.client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES)
        chunks: list[object] = []
        await collect(await gw.client.chat.completions.create(model="auto", messages=MESSAGES, stream=True), chunks)
    assert raw.headers["x-turnout-backend"] == good[0]
    assert chunks


@pytest.mark.parametrize("fault", ["endlessline", "huge-2"])
async def test_stream_past_the_cap_is_502_naming_it(faults: FaultServer, fault: str) -> None:
    broken = faults.backend(fault)
    async with sdk_gateway(route_rules([broken], backend=CAPPED)) as gw:
        with pytest.raises(openai.APIStatusError) as caught:
            await collect(await gw.client.chat.completions.create(model="auto", messages=MESSAGES, stream=True), [])
    assert caught.value.status_code == 502
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "upstream_response_too_large"


async def test_answers_under_the_cap_are_served_whole(faults: FaultServer) -> None:
    broken = faults.backend("huge-2")
    async with sdk_gateway(route_rules([broken], backend=", max_response_bytes: 4194304")) as gw:
        answer = await gw.client.chat.completions.create(model="auto", messages=MESSAGES)
    assert len(answer.choices[0].message.content or "") == 2 * MIB


async def test_memory_returns_near_its_baseline_after_large_answers(faults: FaultServer, tmp_path: Path) -> None:
    big, small = faults.backend("huge-24"), faults.backend("ok")
    config = tmp_path / "rules.yaml"
    config.write_text(
        route_rules([big]).replace("routes:", f"  small: {{kind: openai, endpoint: '{small[1]}', model: m}}\nroutes:")
        + "aliases: {tiny: small}\n"
    )
    with gateway_process(config, TURNOUT_AUTH_DISABLED="true") as (url, pid):
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            for _ in range(3):
                assert (
                    await client.post("/v1/chat/completions", json={"model": "tiny", "messages": MESSAGES})
                ).status_code == 200
            baseline = rss_bytes(pid)
            for i in range(12):
                body = {"model": "auto", "messages": MESSAGES, "stream": i % 3 == 2}
                response = await client.post("/v1/chat/completions", json=body)
                assert response.status_code == 200
                assert len(response.content) > 24 * MIB
                del response
            await client.post("/v1/chat/completions", json={"model": "tiny", "messages": MESSAGES})
            after = rss_bytes(pid)
    assert after - baseline < 64 * MIB, f"RSS grew by {(after - baseline) / MIB:.0f} MiB over 12 answers of 24 MiB"

"""Warm backends: an upstream slow on its first request after being idle (a model that unloads)
meets its first real request warm with warm-up on, cold with it off; the cold histogram shows both;
warm-ups are marked synthetic and never reach a tenant's limits or cost report."""

from __future__ import annotations

import asyncio
import hashlib
import re

import pytest

from support.faults import COLD_IDLE_S, FaultServer
from tests.golden.scripted import EDITOR, replica

KEY = "sk-warm"


def rules(name: str, endpoint: str, warmup: str) -> str:
    return f"""
backends:
  {name}: {{kind: openai, endpoint: '{endpoint}', model: m, health_check: {{enabled: false}}, cold_after_s: 2{warmup}}}
routes:
  general: {{backends: [{name}]}}
default_route: general
router: {{kind: default}}
api_keys:
  - {{tenant: t1, sha256: "{hashlib.sha256(KEY.encode()).hexdigest()}", limits: {{requests_per_minute: 1}}}}
"""


def cold_buckets(exposed: str, backend: str) -> dict[str, float]:
    pattern = rf'turnout_backend_cold_seconds_bucket\{{backend="{re.escape(backend)}",le="([^"]+)"\}} ([0-9.]+)'
    return {le: float(count) for le, count in re.findall(pattern, exposed)}


@pytest.mark.parametrize("is_on", [True, False])
async def test_the_first_real_request_after_idle_is_warm_only_with_warm_up(faults: FaultServer, is_on: bool) -> None:
    name, endpoint = faults.backend("cold-800")
    warmup = ", warmup: {prompt: 'Hello.', requests: 1, keep_warm_idle_s: 1}" if is_on else ""
    async with replica(rules(name, endpoint, warmup)) as client:
        await asyncio.sleep(COLD_IDLE_S + 0.6)  # idle past the point where the model unloads
        answer = await client.post(
            "/v1/chat/completions",
            json={"model": "general", "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer {KEY}"},
        )
        exposed = (await client.get("/metrics")).text
        report = (await client.get("/admin/reports/cache", params={"by": "tenant,endpoint"}, headers=EDITOR)).json()
    assert answer.status_code == 200  # the one request the tenant may make this minute: warm-ups took none
    buckets = cold_buckets(exposed, name)
    if is_on:
        assert buckets["0.5"] == 1.0  # answered at once: warm
        assert faults.count(name) >= 3  # the warm-up before serving, then at least one while idle
        assert f'turnout_backend_warmups_total{{backend="{name}",outcome="ok",reason="change"}} 1.0' in exposed
        assert faults.last_headers.get("x-turnout-synthetic") is None  # the last one was the client's
    else:
        assert buckets["0.5"] == 0.0
        assert buckets["1.0"] == 1.0  # 0.8 s: the model loading
        assert faults.count(name) == 1
    rows = {(row["tenant"], row["endpoint"]): row["requests"] for row in report["rows"]}
    assert rows.pop(("t1", "chat")) == 1  # the tenant's own request, and nothing else of its
    if is_on:  # the warm-ups, booked apart as the gateway's own
        assert rows.pop(("~synthetic", "warmup")) >= 2
    assert rows == {}

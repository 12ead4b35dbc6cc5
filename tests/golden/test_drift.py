"""Drift: a backend whose answers change under the same name is caught by the next scheduled run,
on exactly one replica of two sharing a Redis; the metric and /admin/backends show it."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import httpx
import pytest

from support.faults import FaultServer
from tests.gateway.live.test_following import flush
from tests.golden.scripted import EDITOR, RIGHT, WRONG, replica, rules


def drift_runs(exposed: str) -> dict[str, float]:
    found = re.findall(r'turnout_golden_runs_total\{kind="drift",result="(\w+)",route="general"\} ([0-9.]+)', exposed)
    return {result: float(count) for result, count in found}


async def last_check(client: httpx.AsyncClient) -> dict[str, object]:
    return (await client.get("/admin/backends", headers=EDITOR)).json()["golden"].get("general", {}).get("gold-a", {})


async def test_a_changed_model_is_caught_by_one_replica_and_shown(
    faults: FaultServer,
    golden: Path,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    await flush(redis_url)
    text = rules(faults, golden, "gold-a").replace("concurrency: 2}", "concurrency: 2, every_s: 2}")
    async with replica(text, redis_url=redis_url) as one, replica(text, redis_url=redis_url) as two:
        passed = {}
        for _ in range(80):  # the first run comes one period after start
            passed = await last_check(one)
            if passed:
                break
            await asyncio.sleep(0.1)
        faults.scripts["gold-a"] = WRONG  # redeployed under the same name, with worse weights
        failed: dict[str, object] = {}
        for _ in range(80):
            failed = await last_check(two)
            if failed and not failed["passed"]:
                break
            await asyncio.sleep(0.1)
        runs = [drift_runs((await client.get("/metrics")).text) for client in (one, two)]
        faults.scripts["gold-a"] = RIGHT
    assert passed["passed"] is True
    assert failed["passed"] is False
    assert failed["critical_failed"] == ["capital"]
    assert {r.get("fail", 0.0) for r in runs} == {0.0, 1.0}  # the failing run happened on one replica only
    assert sum(r.get("pass", 0.0) + r.get("fail", 0.0) for r in runs) == 2  # one run a period, fleet-wide
    warnings = [r.getMessage() for r in caplog.records if "golden drift" in r.getMessage()]
    assert len(warnings) == 1
    assert "capital (critical): contains: 'Paris' is not in the answer" in warnings[0]

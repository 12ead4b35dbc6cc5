"""The golden gate against real servers: the fault-injecting upstream, scripted to answer the golden
rows right or wrong, behind two replicas sharing one Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from support.faults import FaultServer
from tests.gateway.live.test_following import flush
from tests.golden.scripted import EDITOR, KEY, replica, rules


async def put(client: httpx.AsyncClient, text: str, **headers: str) -> httpx.Response:
    current = (await client.get("/admin/rules", headers=EDITOR)).json()["version"]
    return await client.put("/admin/rules", content=text, headers={**EDITOR, "if-match": f'"{current}"', **headers})


async def served_by(client: httpx.AsyncClient) -> str:
    answer = await client.post(
        "/v1/chat/completions",
        json={"model": "general", "messages": [{"role": "user", "content": "2+2?"}]},
        headers={"authorization": f"Bearer {KEY}"},
    )
    return answer.headers["x-turnout-backend"]


async def test_a_wrong_backend_is_refused_a_right_one_applied_and_force_is_audited(
    faults: FaultServer, golden: Path, redis_url: str
) -> None:
    await flush(redis_url)
    start = rules(faults, golden, "gold-a")
    async with replica(start, redis_url=redis_url) as one, replica(start, redis_url=redis_url) as two:
        refused = await put(one, rules(faults, golden, "gold-wrong"), **{"x-turnout-change-message": "cheaper"})
        history = (await one.get("/admin/rules/history", headers=EDITOR)).json()
        audit = (await one.get("/admin/rules/audit", headers=EDITOR)).json()
        still = [await served_by(one), await served_by(two)]
        at_the_bar = await put(one, rules(faults, golden, "gold-half"))
        right = await put(one, rules(faults, golden, "gold-b"))
        no_reason = await put(one, rules(faults, golden, "gold-wrong"), **{"x-turnout-force-golden": "true"})
        forced = await put(
            one,
            rules(faults, golden, "gold-wrong"),
            **{"x-turnout-force-golden": "true", "x-turnout-change-message": "the set is stale; fixing it next"},
        )
        forced_audit = (await one.get("/admin/rules/audit", headers=EDITOR)).json()
        await asyncio.sleep(1.2)  # the replicas flush their report tallies
        costs = (await one.get("/admin/reports/cache", params={"by": "tenant,endpoint"}, headers=EDITOR)).json()
        exposed = (await one.get("/metrics")).text
    assert refused.status_code == 422
    body = refused.json()
    assert body["error"]["code"] == "golden_failed"
    (result,) = body["golden"]
    assert (result["route"], result["backend"], result["passed"], result["pass_ratio"]) == (
        "general",
        "gold-wrong",
        False,
        0,
    )
    assert result["critical_failed"] == ["capital"]
    failing = {row["name"]: row for row in result["failing"]}
    assert set(failing) == {"capital", "sum", "json", "polite"}
    assert failing["capital"]["failures"] == ["contains: 'Paris' is not in the answer"]
    assert failing["capital"]["answer"] == "Lyon."
    assert len(history) == 1
    assert audit[0]["action"] == "rejected"
    assert "golden gate refused" in audit[0]["detail"]
    assert still == ["gold-a", "gold-a"]
    assert at_the_bar.status_code == 200  # 0.75 passes a 0.75 bar
    assert right.status_code == 200
    assert no_reason.status_code == 422
    assert no_reason.json()["error"]["param"] == "x-turnout-change-message"
    assert forced.status_code == 200
    assert [a["action"] for a in forced_audit[:2]] == ["golden_forced", "applied"]
    assert "forced by env: the set is stale" in forced_audit[0]["detail"]
    assert 'turnout_golden_runs_total{kind="gate",result="fail",route="general"} 2.0' in exposed  # refused, forced
    golden_rows = [r for r in costs["rows"] if (r["tenant"], r["endpoint"]) == ("~synthetic", "golden")]
    assert golden_rows[0]["requests"] == 4 * 4  # four gated runs of four rows, no tenant's
    assert 'turnout_golden_runs_total{kind="gate",result="pass",route="general"} 2.0' in exposed


async def test_a_change_that_keeps_the_primary_is_not_gated_and_the_dry_run_can_run_the_sets(
    faults: FaultServer, golden: Path
) -> None:
    start = rules(faults, golden, "gold-a")
    async with replica(start) as client:
        before = faults.count("gold-a")
        tighter = await put(client, start.replace("min_pass_ratio: 0.75", "min_pass_ratio: 0.8"))
        asked_before = faults.count("gold-a") - before
        dry = await client.post(
            "/admin/rules/dry-run?golden=true", content=rules(faults, golden, "gold-wrong"), headers=EDITOR
        )
        plain_dry = await client.post(
            "/admin/rules/dry-run", content=rules(faults, golden, "gold-wrong"), headers=EDITOR
        )
    assert tighter.status_code == 200
    assert asked_before == 0
    assert [r["passed"] for r in dry.json()["golden"]] == [False]
    assert "golden" not in plain_dry.json()


async def test_the_upstream_sees_golden_requests_marked_synthetic(faults: FaultServer, golden: Path) -> None:
    async with replica(rules(faults, golden, "gold-a")) as client:
        await put(client, rules(faults, golden, "gold-b"))
    assert faults.last_headers.get("x-turnout-synthetic") == "golden"


async def test_an_invalid_set_is_refused_with_the_rules_at_its_path(faults: FaultServer, golden: Path) -> None:
    async with replica(rules(faults, golden, "gold-a")) as client:
        golden.write_text('{"name": "x", "prompt": "hi", "expect": {}}\n')  # noqa: ASYNC240 (a test's file)
        answer = await client.post("/admin/rules/validate", content=rules(faults, golden, "gold-b"), headers=EDITOR)
        missing = await client.post(
            "/admin/rules/validate", content=rules(faults, golden.with_name("none.jsonl"), "gold-b"), headers=EDITOR
        )
    (problem,) = answer.json()["errors"]
    assert problem["path"] == "routes.general.golden.set"
    assert f"{golden}:1: expect: expects nothing" in problem["message"]
    assert "cannot read" in missing.json()["errors"][0]["message"]

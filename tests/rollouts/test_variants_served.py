"""Variants through the gateway: the header, the chain that answers, the cache kept apart, the
access log, reports, explain and the dry run, and a weight change followed by a second replica."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import httpx
import pytest

from tests.gateway.harness import AUTH, RULES, chat_body, echo_upstream, gateway
from tests.gateway.live.test_following import flush

ADMIN_KEY = "adm-key-0123456789"
EDITOR = {"authorization": f"Bearer {ADMIN_KEY}"}
VARIANTS = RULES.replace(
    "  code: {backends: [primary]}",
    """  code: {backends: [primary]}
  summarization:
    variants:
      current: {backends: [primary, fallback], weight: 50}
      candidate: {backends: [fallback, primary], weight: 50}
    sticky: header:x-cohort""",
)
SAME_PRIMARY = VARIANTS.replace("candidate: {backends: [fallback, primary]", "candidate: {backends: [primary]")


async def ask(client: httpx.AsyncClient, cohort: str, **body: object) -> httpx.Response:
    answer = await client.post(
        "/v1/chat/completions", json=chat_body("summarization", **body), headers={**AUTH, "x-cohort": cohort}
    )
    assert answer.status_code == 200, answer.text
    return answer


async def test_each_cohort_gets_one_variant_and_its_chain_answers() -> None:
    async with gateway(rules=VARIANTS) as client:
        seen: dict[str, set[tuple[str, str]]] = {}
        for n in range(40):
            for _ in range(3):
                answer = await ask(client, f"c{n}")
                seen.setdefault(f"c{n}", set()).add(
                    (answer.headers["x-turnout-variant"], answer.headers["x-turnout-backend"])
                )
    assert all(len(pairs) == 1 for pairs in seen.values())
    assert {pair for pairs in seen.values() for pair in pairs} == {("current", "primary"), ("candidate", "fallback")}


async def test_a_route_without_variants_says_none() -> None:
    async with gateway(rules=VARIANTS) as client:
        answer = await client.post("/v1/chat/completions", json=chat_body("code"), headers=AUTH)
    assert "x-turnout-variant" not in answer.headers


async def cohorts_by_variant(client: httpx.AsyncClient) -> dict[str, str]:
    """A cohort that lands in each variant, found by explain (nothing is sent to a backend)."""
    found: dict[str, str] = {}
    for n in range(100):
        body = chat_body("summarization")
        explained = await client.post("/admin/route/explain", json=body, headers={**EDITOR, "x-cohort": f"c{n}"})
        found.setdefault(explained.json()["variant"], f"c{n}")
        if len(found) == 2:
            return found
    raise AssertionError(f"100 cohorts all landed in {found}")


async def test_variants_never_share_cache_entries_even_with_the_same_primary() -> None:
    calls: Counter[str] = Counter()

    def upstream(request: httpx.Request) -> httpx.Response:
        calls[request.url.host] += 1
        return echo_upstream(request)

    async with gateway(upstream, rules=SAME_PRIMARY, admin_key=ADMIN_KEY) as client:
        cohorts = await cohorts_by_variant(client)
        first = await ask(client, cohorts["current"], temperature=0)
        other = await ask(client, cohorts["candidate"], temperature=0)
        again = await ask(client, cohorts["current"], temperature=0)
        other_again = await ask(client, cohorts["candidate"], temperature=0)
    assert [r.headers["x-turnout-cache"] for r in (first, other, again, other_again)] == ["miss", "miss", "hit", "hit"]
    assert [r.headers["x-turnout-variant"] for r in (first, other, again, other_again)] == [
        "current", "candidate", "current", "candidate"
    ]  # fmt: skip
    assert calls["primary"] == 2


async def test_the_access_log_metrics_and_the_cost_report_carry_the_variant(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with gateway(rules=VARIANTS, admin_key=ADMIN_KEY) as client:
        cohorts = await cohorts_by_variant(client)
        for variant, cohort in cohorts.items():
            for _ in range(2 if variant == "current" else 3):
                await ask(client, cohort)
        report = (
            await client.get("/admin/reports/cache", params={"since": "1h", "by": "route,variant"}, headers=EDITOR)
        ).json()
        exposed = (await client.get("/metrics")).text
    logged = Counter(
        r.fields["variant"]
        for r in caplog.records
        if r.name == "turnout.access"  # type: ignore[attr-defined]
    )
    assert logged == {"current": 2, "candidate": 3}
    rows = {(row["route"], row["variant"]): row["requests"] for row in report["rows"]}
    assert rows == {("summarization", "current"): 2, ("summarization", "candidate"): 3}
    assert 'route="summarization",status="200",variant="candidate"} 3.0' in exposed


async def test_explain_says_which_variant_a_user_gets_and_the_dry_run_shows_who_a_weight_moves() -> None:
    by_user = VARIANTS.replace("sticky: header:x-cohort", "sticky: user")
    all_candidate = by_user.replace("weight: 50}\n      candidate", "weight: 0}\n      candidate")
    async with gateway(rules=by_user, admin_key=ADMIN_KEY) as client:
        explained = {}
        for user in ("ann", "bob", "cyd", "dan", "eve", "fay"):
            body = {"prompt": "hi", "model": "summarization", "user": user}
            answer = (await client.post("/admin/route/explain", json=body, headers=EDITOR)).json()
            explained[user] = answer["variant"]
            assert answer["sticky"] == "user"
            assert answer["backends"][0] == {"current": "primary", "candidate": "fallback"}[answer["variant"]]
            served = await client.post("/v1/chat/completions", json=chat_body("summarization", user=user), headers=AUTH)
            assert served.headers["x-turnout-variant"] == answer["variant"]
        result = (await client.post("/admin/rules/dry-run", content=all_candidate, headers=EDITOR)).json()
    moved = [user for user, variant in explained.items() if variant == "current"]
    assert result["changed"] == len(moved)
    for change in result["changes"]:
        assert change["from"] == {
            "route": "summarization",
            "variant": "current",
            "backend": "primary",
            "decided_by": "model",
        }
        assert change["to"] == {
            "route": "summarization",
            "variant": "candidate",
            "backend": "fallback",
            "decided_by": "model",
        }


async def test_a_weight_change_on_one_replica_moves_the_split_on_the_other_within_2_s(redis_url: str) -> None:
    await flush(redis_url)
    drawn = VARIANTS.replace("    sticky: header:x-cohort\n", "")
    all_current = drawn.replace("weight: 50}\n    ", "weight: 50}\n    ").replace(
        "candidate: {backends: [fallback, primary], weight: 50}",
        "candidate: {backends: [fallback, primary], weight: 0}",
    )
    async with (
        gateway(rules=drawn, redis_url=redis_url, admin_key=ADMIN_KEY) as one,
        gateway(rules=drawn, redis_url=redis_url, admin_key=ADMIN_KEY) as two,
    ):
        before = Counter([(await ask(two, "-")).headers["x-turnout-variant"] for _ in range(60)])
        current = (await one.get("/admin/rules", headers=EDITOR)).json()["version"]
        applied = await one.put("/admin/rules", content=all_current, headers={**EDITOR, "if-match": f'"{current}"'})
        assert applied.status_code == 200, applied.text
        after: Counter[str] = Counter()
        for _ in range(40):  # 2 s
            await asyncio.sleep(0.05)
            answer = await ask(two, "-")
            if answer.headers["x-turnout-rules-version"] == str(applied.json()["version"]):
                after = Counter([(await ask(two, "-")).headers["x-turnout-variant"] for _ in range(60)])
                break
    assert set(before) == {"current", "candidate"}  # drawn at random, 50/50: P(one side empty) ~ 1e-18
    assert after == {"current": 60}

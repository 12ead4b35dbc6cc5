"""``POST /v1/feedback``: a client scores its own answers, by request id; the variant report shows
the scores on the variant that answered, from every replica."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.gateway.harness import AUTH, LIMITED_KEY, chat_body, gateway
from tests.gateway.live.test_following import flush
from tests.rollouts.test_variants_served import ADMIN_KEY, EDITOR, VARIANTS, ask, cohorts_by_variant

OTHER = {"authorization": f"Bearer {LIMITED_KEY}"}
WITH_CODE_VARIANTS = VARIANTS.replace("[code]}", "[code, summarization]}")


async def score(client: httpx.AsyncClient, body: dict[str, object], auth: dict[str, str] = AUTH) -> httpx.Response:
    return await client.post("/v1/feedback", json=body, headers=auth)


async def test_a_key_scores_its_own_answer_and_a_second_score_replaces_the_first() -> None:
    async with gateway(rules=VARIANTS, admin_key=ADMIN_KEY) as client:
        cohorts = await cohorts_by_variant(client)
        served = await ask(client, cohorts["candidate"])
        request_id = served.headers["x-request-id"]
        first = await score(client, {"request_id": request_id, "label": "bad", "comment": "made things up"})
        second = await score(client, {"request_id": request_id, "score": 0.75})
        report = (await client.get("/admin/reports/variants", params={"since": "1h"}, headers=EDITOR)).json()
    assert first.status_code == 200, first.text
    assert first.json() == {
        "object": "feedback", "request_id": request_id, "score": 0.0, "replaced": False,
        "route": "summarization", "variant": "candidate",
    }  # fmt: skip
    assert second.json()["replaced"] is True
    variants = {v["variant"]: v for v in report["routes"]["summarization"]["variants"]}
    assert (variants["candidate"]["feedback"], variants["candidate"]["mean_score"]) == (1, 0.75)
    assert report["weights"] == {"summarization": {"current": 50, "candidate": 50}}


@pytest.mark.parametrize("case", ["other-tenant", "unknown", "expired"])
async def test_another_tenants_unknown_and_expired_ids_are_404(case: str) -> None:
    settings = {"feedback_ttl_s": 1} if case == "expired" else {}
    async with gateway(rules=WITH_CODE_VARIANTS, **settings) as client:
        served = await client.post("/v1/chat/completions", json=chat_body("code"), headers=AUTH)
        request_id = served.headers["x-request-id"] if case != "unknown" else "req-never-seen"
        if case == "expired":
            await asyncio.sleep(1.1)
        answer = await score(client, {"request_id": request_id, "score": 1}, OTHER if case == "other-tenant" else AUTH)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "request_not_found"


@pytest.mark.parametrize(
    "body",
    [
        {"request_id": "x"},
        {"request_id": "x", "score": 1, "label": "good"},
        {"request_id": "x", "score": 1.5},
        {"request_id": "x", "score": -0.1},
        {"request_id": "x", "label": "meh"},
        {"request_id": "", "score": 1},
        {"request_id": "x" * 300, "score": 1},
        {"request_id": "x", "score": 1, "comment": "y" * 2001},
        {"request_id": 7, "score": 1},
        {"score": 1},
        [],
    ],
)
async def test_bad_bodies_are_4xx_in_the_openai_error_shape(body: object) -> None:
    async with gateway() as client:
        answer = await client.post("/v1/feedback", json=body, headers=AUTH)
        broken = await client.post("/v1/feedback", content=b'{"request_id": ', headers=AUTH)
    assert answer.status_code == 422, answer.text  # as every API here: a well-formed body with a bad value
    assert broken.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"


async def test_feedback_needs_a_key_and_can_be_turned_off() -> None:
    async with gateway() as client:
        assert (await client.post("/v1/feedback", json={"request_id": "x", "score": 1})).status_code == 401
    async with gateway(feedback_ttl_s=0) as client:
        off = await score(client, {"request_id": "x", "score": 1})
    assert off.json()["error"]["code"] == "feedback_off"


async def test_feedback_and_reports_from_two_replicas_add_up(redis_url: str) -> None:
    await flush(redis_url)
    settings = {"redis_url": redis_url, "admin_key": ADMIN_KEY}
    async with gateway(rules=VARIANTS, **settings) as one, gateway(rules=VARIANTS, **settings) as two:
        cohorts = await cohorts_by_variant(one)
        on_one = [await ask(one, cohorts["current"]) for _ in range(3)]
        on_two = [await ask(two, cohorts["current"]) for _ in range(2)]
        # Scored through the other replica: one read from the store, one not yet flushed there.
        await asyncio.sleep(1.5)
        answers = [await score(two, {"request_id": r.headers["x-request-id"], "score": 1.0}) for r in on_one]
        answers.append(await score(one, {"request_id": on_two[0].headers["x-request-id"], "score": 0.0}))
        answers.append(await score(two, {"request_id": on_two[1].headers["x-request-id"], "score": 0.5}))
        await asyncio.sleep(1.5)  # both flush their tallies
        report = (await one.get("/admin/reports/variants", params={"since": "1h"}, headers=EDITOR)).json()
    assert [a.status_code for a in answers] == [200] * 5
    (current,) = [v for v in report["routes"]["summarization"]["variants"] if v["variant"] == "current"]
    assert (current["requests"], current["feedback"], current["mean_score"]) == (5, 5, 0.7)
    assert current["p50_ms"] is not None


def test_keys_in_the_store_name_neither_tenant_nor_request() -> None:
    from gateway.observe.feedback import _key

    key = _key("acme", "req-1")
    assert "acme" not in key
    assert "req-1" not in key
    assert key != _key("other", "req-1")

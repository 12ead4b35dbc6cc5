"""Shadow traffic: a sampled copy asked of a candidate once the client's answer is sent, compared,
bounded, booked as shadow spend, and never visible to the client whatever the shadow does."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from tests.gateway.harness import KEY, chat_body, completion, delta, gateway, sse

ADMIN_KEY = "adm-key-0123456789"
EDITOR = {"authorization": f"Bearer {ADMIN_KEY}"}
AUTH = {"authorization": f"Bearer {KEY}"}
RULES = f"""
backends:
  live:
    {{kind: openai, endpoint: "http://live/v1", model: live-model, price: {{input_per_mtok: 1, output_per_mtok: 2}}}}
  candidate:
    kind: openai
    endpoint: "http://candidate/v1"
    model: candidate-model
    price: {{input_per_mtok: 0.1, output_per_mtok: 0.2}}
routes:
  general: {{backends: [live], shadow: {{backend: candidate, sample: SAMPLE, max_in_flight: BOUND, budget_ms: 2000}}}}
default_route: general
router: {{kind: default}}
api_keys:
  - {{tenant: t1, sha256: "{hashlib.sha256(KEY.encode()).hexdigest()}", limits: {{tokens_per_minute: 1000}}}}
"""
ANSWER = "The meeting moved to Thursday at ten, in the large room on the third floor."


def rules(sample: float = 1.0, bound: int = 4) -> str:
    return RULES.replace("SAMPLE", str(sample)).replace("BOUND", str(bound))


class Upstreams:
    """The live backend answers ANSWER; the candidate does what it is told."""

    def __init__(self, candidate: str = "same") -> None:
        self.candidate = candidate
        self.calls: Counter[str] = Counter()
        self.release = asyncio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.calls[host] += 1
        body = json.loads(request.content)
        if host == "live":
            if body.get("stream"):
                return httpx.Response(200, content=sse(delta(ANSWER[:20]), delta(ANSWER[20:], "stop")))
            return httpx.Response(200, json=completion(ANSWER, "live-model"))
        assert not body.get("stream"), "the shadow is asked without streaming"
        if self.candidate == "hang":
            await self.release.wait()
        if self.candidate == "500":
            return httpx.Response(500, json={"error": {"message": "down"}})
        if self.candidate == "huge":
            return httpx.Response(200, content=b'{"choices": [' + b" " * (50 * 1024 * 1024) + b"]}")
        text = (
            ANSWER if self.candidate == "same" else "Photosynthesis turns light, water and carbon dioxide into sugar."
        )
        answer = completion(text, "candidate-model")
        answer["usage"] = {"prompt_tokens": 400, "completion_tokens": 300, "total_tokens": 700}
        return httpx.Response(200, json=answer)


async def settled(client: httpx.AsyncClient, done: Callable[[dict[str, object]], bool]) -> dict[str, object]:
    """The general route's shadow figures once ``done`` holds of them."""
    figures: dict[str, object] = {}
    for _ in range(200):
        report = (await client.get("/admin/reports/variants", params={"since": "1h"}, headers=EDITOR)).json()
        shadows = report["routes"].get("general", {}).get("shadows", [])
        if shadows:
            (figures,) = shadows
            if done(figures):
                return figures
        await asyncio.sleep(0.05)
    raise AssertionError(f"the shadow's figures never settled: {figures}")


def visible(answer: httpx.Response) -> tuple[int, str, dict[str, str]]:
    headers = {k: v for k, v in answer.headers.items() if k not in ("x-request-id", "content-length")}
    return answer.status_code, answer.text, headers


@pytest.mark.parametrize("candidate", ["hang", "500", "huge"])
async def test_a_shadow_that_hangs_fails_or_floods_changes_nothing_for_the_client(candidate: str) -> None:
    upstreams = Upstreams(candidate)
    async with gateway(upstreams, rules=rules(0.0), admin_key=ADMIN_KEY) as client:
        without = await client.post("/v1/chat/completions", json=chat_body("general"), headers=AUTH)
    async with gateway(upstreams, rules=rules(1.0), admin_key=ADMIN_KEY) as client:
        shadowed = await client.post("/v1/chat/completions", json=chat_body("general"), headers=AUTH)
        stream = await client.post("/v1/chat/completions", json=chat_body("general", stream=True), headers=AUTH)
        if candidate != "hang":
            figures = await settled(client, lambda f: f["shadow_errors"] == 2)
            assert figures["pairs"] == 0
    assert visible(shadowed) == visible(without)
    assert stream.status_code == 200
    assert ANSWER[20:] in stream.text
    assert upstreams.calls["candidate"] == 2


async def test_the_same_answer_agrees_an_unrelated_one_does_not_and_both_are_recorded() -> None:
    upstreams = Upstreams("same")
    async with gateway(upstreams, rules=rules(1.0), admin_key=ADMIN_KEY) as client:
        await client.post("/v1/chat/completions", json=chat_body("general"), headers=AUTH)
        agreed = await settled(client, lambda f: f["pairs"] == 1)
        upstreams.candidate = "unrelated"
        await client.post("/v1/chat/completions", json=chat_body("general", stream=True), headers=AUTH)
        both = await settled(client, lambda f: f["pairs"] == 2)
        exposed = (await client.get("/metrics")).text
    assert (agreed["pairs"], agreed["agreement"], agreed["median_similarity"]) == (1, 1.0, 0.975)
    assert (both["pairs"], both["agreement"], both["backend"], both["primary"]) == (2, 0.5, "candidate", "live")
    assert 'turnout_shadow_calls_total{backend="candidate",outcome="agreed",route="general"} 1.0' in exposed
    assert 'turnout_shadow_calls_total{backend="candidate",outcome="disagreed",route="general"} 1.0' in exposed


async def test_the_in_flight_bound_drops_and_counts_the_rest() -> None:
    upstreams = Upstreams("hang")
    async with gateway(upstreams, rules=rules(1.0, bound=2), admin_key=ADMIN_KEY) as client:
        for _ in range(5):
            answer = await client.post("/v1/chat/completions", json=chat_body("general"), headers=AUTH)
            assert answer.status_code == 200
        figures = await settled(client, lambda f: f["shadow_dropped"] == 3)
        assert upstreams.calls["candidate"] == 2
        upstreams.release.set()
    assert figures["pairs"] == 0


async def test_shadow_spend_is_reported_and_never_counted_against_the_tenant() -> None:
    upstreams = Upstreams("unrelated")  # 700 tokens a shadow call; the tenant may spend 1,000 a minute
    async with gateway(upstreams, rules=rules(1.0), admin_key=ADMIN_KEY) as client:
        answers = []
        for n in range(4):
            answers.append(await client.post("/v1/chat/completions", json=chat_body("general"), headers=AUTH))
            figures = await settled(client, lambda f, n=n: f["pairs"] == n + 1)
        cost = (await client.get("/admin/reports/cache", params={"by": "backend"}, headers=EDITOR)).json()
    assert [a.status_code for a in answers] == [200] * 4  # 4 x 7 live tokens; 2,800 shadow tokens not counted
    assert figures["cost_usd"] == pytest.approx(4 * (400 * 0.1 + 300 * 0.2) / 1e6)
    assert figures["cost_ratio"] == pytest.approx((400 * 0.1 + 300 * 0.2) / (5 * 1 + 2 * 2), rel=1e-3)
    by_backend = {row["backend"]: row for row in cost["rows"]}
    assert by_backend["candidate"]["shadow_usd"] == pytest.approx(4 * 100 / 1e6)
    assert by_backend["candidate"]["requests"] == 0
    assert by_backend["live"]["requests"] == 4

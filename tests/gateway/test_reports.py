"""Cost reports: unit figures, the admin endpoint, the CLI, and two gateway processes sharing one Redis."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse

from gateway.observe.reports import Outcome, ReportBook, group
from tests.gateway.harness import AUTH, RULES, chat_body, completion, delta, gateway, sse
from tests.servers import gateway_process, redis_server, serving

ADMIN_KEY = "adm-key-0123456789"

ADMIN = {"authorization": "Bearer adm-key-0123456789"}
PRICED = RULES.replace(
    "model: primary-model}", "model: primary-model, price: {input_per_mtok: 1.0, output_per_mtok: 2.0}}"
).replace("model: fallback-model}", "model: fallback-model, price: {input_per_mtok: 10.0, output_per_mtok: 20.0}}")


async def test_hits_record_savings_and_misses_record_spend_and_routing_savings() -> None:
    book = ReportBook(None)
    book.record(Outcome("r", "b", "t", "miss", 1000, 500, cost_usd=0.002, reference_cost_usd=0.02))
    book.record(Outcome("r", "b", "t", "hit", 1000, 500, cost_usd=0.002))
    book.record(Outcome("r", "-", "t", "error"))
    (row,) = group(await book.totals(3600), ["route"])
    assert row["requests"] == 3
    assert (row["hits"], row["misses"], row["errors"], row["hit_ratio"]) == (1, 1, 1, 0.5)
    assert (row["cost_usd"], row["saved_usd"], row["saved_tokens"]) == (0.002, 0.002, 1500)
    assert row["routing_saved_usd"] == 0.018


async def test_endpoint_totals_equal_what_was_sent() -> None:
    async with gateway(rules=PRICED, admin_key=ADMIN_KEY) as client:
        for i in range(3):
            await client.post("/v1/chat/completions", json=chat_body(temperature=0, max_tokens=i + 1), headers=AUTH)
        await client.post("/v1/chat/completions", json=chat_body(temperature=0, max_tokens=1), headers=AUTH)
        await client.post("/v1/chat/completions", json=chat_body("nope"), headers=AUTH)
        report = (await client.get("/admin/reports/cache?by=route,backend", headers=ADMIN)).json()
        as_csv = await client.get("/admin/reports/cache?by=tenant&format=csv", headers=ADMIN)
    rows = {(r["route"], r["backend"]): r for r in report["rows"]}
    general = rows[("general", "primary")]
    assert (general["requests"], general["misses"], general["hits"]) == (4, 3, 1)
    assert general["cost_usd"] == pytest.approx(3 * (5 * 1.0 + 2 * 2.0) / 1e6)
    assert general["saved_usd"] == pytest.approx((5 * 1.0 + 2 * 2.0) / 1e6)
    assert general["routing_saved_usd"] == pytest.approx(3 * (5 * 9.0 + 2 * 18.0) / 1e6)
    assert rows[("-", "-")]["errors"] == 1
    assert report["totals"]["requests"] == 5
    assert all(type(general[name]) is int for name in ("requests", "hits", "misses", "saved_tokens", "prompt_tokens"))
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.text.splitlines()[0].startswith("tenant,requests,hits")
    assert as_csv.text.splitlines()[1].startswith("t1,5,1,3,0,0,1,15,6,")  # counts as counts, not 5.0


async def test_embeddings_count_in_cost_reports() -> None:
    def upstream(request: httpx.Request) -> httpx.Response:
        if b"fails" in request.content:
            return httpx.Response(400, json={"error": {"message": "no"}})
        data = [{"object": "embedding", "index": 0, "embedding": [0.5]}]
        return httpx.Response(200, json={"object": "list", "data": data, "usage": {"prompt_tokens": 1000}})

    async with gateway(upstream, rules=PRICED, admin_key=ADMIN_KEY) as client:
        for text in ("one", "two", "fails"):
            await client.post("/v1/embeddings", json={"model": "auto", "input": text}, headers=AUTH)
        report = (await client.get("/admin/reports/cache?by=route,tenant", headers=ADMIN)).json()
    rows = {r["route"]: r for r in report["rows"]}
    general = rows["general"]
    assert (general["requests"], general["bypasses"], general["errors"]) == (3, 2, 1)
    assert (general["prompt_tokens"], general["tenant"]) == (2000, "t1")
    assert general["cost_usd"] == pytest.approx(2 * 1000 * 1.0 / 1e6)
    assert general["routing_saved_usd"] == pytest.approx(2 * 1000 * 9.0 / 1e6)


@pytest.mark.parametrize("query", ["since=yesterday", "by=colour", "format=xml"])
async def test_bad_report_queries_are_422(query: str) -> None:
    async with gateway(admin_key=ADMIN_KEY) as client:
        response = await client.get(f"/admin/reports/cache?{query}", headers=ADMIN)
    assert response.status_code == 422


async def test_reports_and_page_need_the_admin_key_for_data_only() -> None:
    async with gateway(admin_key=ADMIN_KEY) as client:
        denied = await client.get("/admin/reports/cache", headers=AUTH)
        page = await client.get("/admin")
    assert denied.status_code == 401
    assert page.status_code == 200
    assert "Hit ratio over time" in page.text


UPSTREAM_CALLS: list[str] = []


def fixed_upstream() -> FastAPI:
    """Answers after 0.3 s and counts the calls it gets."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def answer(request: Request) -> JSONResponse:
        UPSTREAM_CALLS.append((await request.json())["messages"][0]["content"])
        await asyncio.sleep(0.3)
        return JSONResponse(completion("fixed"))

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        return JSONResponse({"data": []})

    return app


@pytest.fixture
def two_gateways(tmp_path: Path) -> Iterator[list[str]]:
    """Its own Redis: report hashes are per hour, and other tests' requests must not count here."""
    with redis_server() as redis_url, serving(fixed_upstream()) as upstream:
        rules = PRICED.replace("http://primary/v1", upstream + "/v1").replace("http://fallback/v1", upstream + "/v1")
        config = tmp_path / "rules.yaml"
        config.write_text(rules + "router: {kind: default}\n" if "router:" not in rules else rules)
        env = {"TURNOUT_REDIS_URL": redis_url, "TURNOUT_ADMIN_KEY": ADMIN_KEY}
        with gateway_process(config, **env) as (first, _), gateway_process(config, **env) as (second, _):
            yield [first, second]


def test_two_gateway_processes_add_into_one_report(two_gateways: list[str]) -> None:
    tag = str(time.time())
    sent = {two_gateways[0]: 7, two_gateways[1]: 5}
    for url, count in sent.items():
        for i in range(count):
            body = chat_body(temperature=0, messages=[{"role": "user", "content": f"{tag} {i % 3}"}])
            assert httpx.post(url + "/v1/chat/completions", json=body, headers=AUTH, timeout=30).status_code == 200
    time.sleep(1.5)  # each process flushes its tally every second
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "report", "cache", "--url", two_gateways[0], "--admin-key", ADMIN_KEY,
         "--by", "route", "--format", "json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    general = next(r for r in json.loads(result.stdout)["rows"] if r["route"] == "general")
    assert general["requests"] == 12
    assert general["hits"] + general["misses"] == 12
    assert general["misses"] == 3  # three distinct prompts; every repeat, on either process, hit the shared cache
    table = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "report", "cache", "--url", two_gateways[1], "--admin-key", ADMIN_KEY],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "general" in table.stdout
    assert "hit_ratio" in table.stdout.splitlines()[0]


@pytest.mark.parametrize("topology", ["cluster", "sentinel"])
async def test_report_flush_and_read_work_on_cluster_and_sentinel(
    topology: str, request: pytest.FixtureRequest
) -> None:
    book = ReportBook.from_url(request.getfixturevalue(f"{topology}_url"))
    tag = f"route-{topology}-{time.time()}"
    for backend in ("a", "b", "c"):  # fields spread over hash slots of one hourly key
        book.record(Outcome(tag, backend, "t", "miss", 10, 5, cost_usd=0.5))
    await book.flush()
    rows = [r for r in group(await book.totals(3600), ["route"]) if r["route"] == tag]
    await book.aclose()
    assert rows[0]["requests"] == 3
    assert rows[0]["cost_usd"] == 1.5


async def test_identical_requests_on_two_replicas_reach_the_backend_once(two_gateways: list[str]) -> None:
    prompt = f"single flight across replicas {time.time()}"
    body = chat_body(temperature=0, messages=[{"role": "user", "content": prompt}])
    async with httpx.AsyncClient(timeout=30) as client:
        responses = await asyncio.gather(
            *(client.post(url + "/v1/chat/completions", json=body, headers=AUTH) for url in two_gateways * 10)
        )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    assert UPSTREAM_CALLS.count(prompt) == 1
    assert sum(r.headers["x-turnout-cache"] == "hit" for r in responses) == 19


@pytest.mark.parametrize("since", ["200000h", "41d", "999999999"])
async def test_report_reaching_past_what_is_kept_is_400_naming_since(since: str) -> None:
    async with gateway(admin_key=ADMIN_KEY) as client:
        response = await client.get(f"/admin/reports/cache?since={since}", headers=ADMIN)
        longest = await client.get("/admin/reports/cache?since=40d", headers=ADMIN)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "since"
    assert longest.status_code == 200


async def test_figures_survive_a_flush_cancelled_mid_write(redis_url: str) -> None:
    book = ReportBook.from_url(redis_url, flush_interval_s=3600)
    admin = aioredis.from_url(redis_url)
    await admin.flushdb()
    for _ in range(3):
        book.record(Outcome("code", "gpu", "cancel-test", "miss", 10, 5, 0.01, 0.02))
    await admin.execute_command("CLIENT", "PAUSE", "5000", "WRITE")
    try:
        flushing = asyncio.create_task(book.flush())
        await asyncio.sleep(0.2)  # the writes are sent and held by the paused server
        flushing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await flushing
    finally:
        await admin.execute_command("CLIENT", "UNPAUSE")
    await book.aclose()  # the shutdown flush sends what the cancelled one took out
    reader = ReportBook.from_url(redis_url)
    totals = group(await reader.totals(3600), ["tenant"])
    await reader.aclose()
    await admin.aclose()
    assert totals[0]["requests"] == 3
    assert totals[0]["prompt_tokens"] == 30


class AnswerLost:
    """A Redis client whose first script runs on the server but whose answer never arrives (a timeout
    after Redis applied it), as a failover or a stalled connection does."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.lost = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def eval(self, *args: object) -> object:
        answer = await self._client.eval(*args)
        if self.lost == 0:
            self.lost += 1
            raise TimeoutError("the answer was lost")
        return answer


async def test_a_flush_whose_answer_was_lost_is_counted_once(redis_url: str) -> None:
    admin = aioredis.from_url(redis_url)
    await admin.flushdb()
    flaky = AnswerLost(aioredis.from_url(redis_url))
    book = ReportBook(flaky, flush_interval_s=3600)
    for _ in range(4):
        book.record(Outcome("code", "gpu", "lost-answer", "miss", 10, 5, 0.01, 0.02))
    await book.flush()  # applied by Redis, but reported as failed: sent again below
    book.record(Outcome("code", "gpu", "lost-answer", "hit", 10, 5))
    await book.flush()
    totals = group(await book.totals(3600), ["tenant"])
    await flaky.aclose()
    await admin.aclose()
    assert flaky.lost == 1
    assert totals[0]["requests"] == 5  # not 9
    assert totals[0]["hits"] == 1


async def test_the_report_is_503_naming_the_store_when_redis_is_down() -> None:
    async with gateway(admin_key=ADMIN_KEY, redis_url="redis://127.0.0.1:1/0") as client:
        await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)  # served without Redis
        report = await client.get("/admin/reports/cache", headers=ADMIN)
    assert report.status_code == 503
    assert report.json()["error"]["code"] == "state_store_unavailable"


async def test_cache_rate_limits_and_reports_share_one_redis_client(redis_url: str) -> None:
    async with gateway(admin_key=ADMIN_KEY, redis_url=redis_url) as client:
        resources = client._transport.app.state.gateway.resources  # type: ignore[attr-defined]
        await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
        assert (await client.get("/admin/reports/cache", headers=ADMIN)).status_code == 200
    assert resources.redis is not None
    assert resources.cache.store.client is resources.redis
    assert resources.limits._store._redis is resources.redis
    assert resources.reports._redis is resources.redis


async def test_a_cache_redis_of_its_own_holds_only_the_cache(redis_url: str) -> None:
    """TURNOUT_CACHE_REDIS_URL: the cache may live on an evicting Redis; limits, reports and rules stay put."""
    with redis_server() as cache_url:
        state, cache = aioredis.from_url(redis_url), aioredis.from_url(cache_url)
        await state.flushdb()
        body = {**chat_body(), "temperature": 0}
        async with gateway(admin_key=ADMIN_KEY, redis_url=redis_url, cache_redis_url=cache_url) as client:
            resources = client._transport.app.state.gateway.resources  # type: ignore[attr-defined]
            first = await client.post("/v1/chat/completions", json=body, headers=AUTH)
            second = await client.post("/v1/chat/completions", json=body, headers=AUTH)
            assert (first.headers["x-turnout-cache"], second.headers["x-turnout-cache"]) == ("miss", "hit")
            assert resources.cache.store.client is not resources.redis
        cache_keys = [key.decode() async for key in cache.scan_iter()]
        state_keys = [key.decode() async for key in state.scan_iter()]
        await state.aclose()
        await cache.aclose()
    assert cache_keys
    assert all(key.startswith("tn:c") for key in cache_keys), cache_keys
    assert not any(key.startswith("tn:c") for key in state_keys), state_keys
    assert any(key.startswith("tn:r:") for key in state_keys)  # the report book
    assert any(key.startswith("tn:{rules}") for key in state_keys)


def usage_when_asked(request: httpx.Request) -> httpx.Response:
    """A model server that sends the usage chunk only when the request asks for it, as OpenAI's does."""
    body = json.loads(request.content)
    asked = (body.get("stream_options") or {}).get("include_usage")
    usage = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
             "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}}  # fmt: skip
    chunks = [delta("a"), delta("b", "stop"), *([usage] if asked else [])]
    return httpx.Response(200, content=sse(*chunks), headers={"content-type": "text/event-stream"})


async def test_a_stream_that_did_not_ask_for_usage_is_booked_with_its_real_tokens() -> None:
    async with gateway(usage_when_asked, rules=PRICED, admin_key=ADMIN_KEY) as client:
        plain = await client.post("/v1/chat/completions", json=chat_body(stream=True), headers=AUTH)
        asked = await client.post(
            "/v1/chat/completions", json=chat_body(stream=True, stream_options={"include_usage": True}), headers=AUTH
        )
        report = (await client.get("/admin/reports/cache?by=tenant", headers=ADMIN)).json()
    events = [json.loads(line[6:]) for line in plain.text.splitlines() if line.startswith("data: {")]
    assert all("usage" not in event for event in events)  # not asked: not shown, as OpenAI does
    assert any(event.get("usage") for event in (json.loads(x[6:]) for x in asked.text.splitlines() if x[6:7] == "{"))
    assert report["totals"]["prompt_tokens"] == 22  # both booked with the server's figures, not 0
    assert report["totals"]["completion_tokens"] == 6

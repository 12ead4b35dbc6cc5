from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.gateway.harness import AUTH, LIMITED_KEY, RULES, chat_body, delta, echo_upstream, gateway, sse


async def test_auto_goes_to_default_route_primary_with_route_headers() -> None:
    async with gateway() as client:
        response = await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "from primary"
    assert response.headers["x-turnout-route"] == "general"
    assert response.headers["x-turnout-backend"] == "primary"


async def test_route_name_alias_and_header_choose_the_route() -> None:
    async with gateway() as client:
        by_alias = await client.post("/v1/chat/completions", json=chat_body("pinned-fallback"), headers=AUTH)
        by_header = await client.post(
            "/v1/chat/completions", json=chat_body("auto"), headers={**AUTH, "x-turnout-route": "code"}
        )
    assert by_alias.headers["x-turnout-backend"] == "fallback"
    assert by_alias.json()["model"] == "fallback-model"
    assert by_header.headers["x-turnout-route"] == "code"


async def test_unknown_fields_reach_the_backend_untouched() -> None:
    seen: list[dict[str, object]] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return echo_upstream(request)

    extra = {"tools": [{"type": "function", "function": {"name": "f"}}], "seed": 3, "logit_bias": {"50256": -100}}
    async with gateway(upstream) as client:
        await client.post("/v1/chat/completions", json=chat_body(**extra), headers=AUTH)
    assert {k: seen[0][k] for k in extra} == extra
    assert seen[0]["model"] == "primary-model"


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_primary_failure_falls_back_to_next_backend(status: int) -> None:
    def upstream(request: httpx.Request) -> httpx.Response:
        if request.url.host == "primary":
            return httpx.Response(status, json={"error": {"message": "primary down"}})
        return echo_upstream(request)

    async with gateway(upstream) as client:
        response = await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    assert response.status_code == 200
    assert response.headers["x-turnout-backend"] == "fallback"


async def test_connection_error_falls_back() -> None:
    def upstream(request: httpx.Request) -> httpx.Response:
        if request.url.host == "primary":
            raise httpx.ConnectError("refused", request=request)
        return echo_upstream(request)

    async with gateway(upstream) as client:
        response = await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    assert response.headers["x-turnout-backend"] == "fallback"


async def test_request_rejected_by_upstream_does_not_fall_back() -> None:
    hosts: list[str] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return httpx.Response(400, json={"error": {"message": "max_tokens too large"}})

    async with gateway(upstream) as client:
        response = await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    assert response.status_code == 400
    assert "max_tokens too large" in response.json()["error"]["message"]
    assert hosts == ["primary"]


async def test_upstream_429_everywhere_is_passed_on_with_retry_after() -> None:
    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"retry-after": "3"}, json={"error": {"message": "busy"}})

    async with gateway(upstream) as client:
        response = await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.json()["error"]["type"] == "rate_limit_error"


async def test_all_backends_failing_names_every_attempt() -> None:
    async with gateway(lambda r: httpx.Response(500, json={"error": "x"})) as client:
        response = await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    assert response.status_code == 502
    message = response.json()["error"]["message"]
    assert "primary" in message
    assert "fallback" in message


async def test_malformed_upstream_body_is_a_clear_502() -> None:
    async with gateway(lambda r: httpx.Response(200, content=b"not json"), rules=ONE_BACKEND) as client:
        response = await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "bad_upstream_response"


ONE_BACKEND = RULES.replace("[primary, fallback]", "[primary]")


async def test_stream_is_relayed_as_sse_with_done() -> None:
    body = sse(delta("Hel"), delta("lo", "stop"))
    async with gateway(lambda r: httpx.Response(200, content=body)) as client:
        response = await client.post("/v1/chat/completions", json=chat_body(stream=True), headers=AUTH)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line for line in response.text.split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    assert [json.loads(e[6:])["choices"][0]["delta"]["content"] for e in events[:-1]] == ["Hel", "lo"]


async def test_stream_failing_before_first_chunk_falls_back() -> None:
    def upstream(request: httpx.Request) -> httpx.Response:
        if request.url.host == "primary":
            return httpx.Response(200, content=sse(done=False))
        return httpx.Response(200, content=sse(delta("ok", "stop")))

    async with gateway(upstream) as client:
        response = await client.post("/v1/chat/completions", json=chat_body(stream=True), headers=AUTH)
    assert response.status_code == 200
    assert response.headers["x-turnout-backend"] == "fallback"


async def test_stream_cut_after_first_chunk_ends_with_error_event_not_done() -> None:
    body = sse(delta("Hel"), delta("lo"), done=False)
    async with gateway(lambda r: httpx.Response(200, content=body)) as client:
        response = await client.post("/v1/chat/completions", json=chat_body(stream=True), headers=AUTH)
    events = [line for line in response.text.split("\n\n") if line]
    assert "data: [DONE]" not in events
    assert json.loads(events[-1][6:])["error"]["code"] == "bad_upstream_response"


async def test_embeddings_are_routed_and_returned() -> None:
    answer = {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}], "model": "e"}
    async with gateway(lambda r: httpx.Response(200, json=answer)) as client:
        response = await client.post("/v1/embeddings", json={"model": "auto", "input": "hi"}, headers=AUTH)
    assert response.json()["data"][0]["embedding"] == [0.5]
    assert response.headers["x-turnout-route"] == "general"


async def test_models_lists_auto_routes_and_aliases_the_key_may_use() -> None:
    async with gateway() as client:
        everything = await client.get("/v1/models", headers=AUTH)
        limited = await client.get("/v1/models", headers={"authorization": f"Bearer {LIMITED_KEY}"})
    assert [m["id"] for m in everything.json()["data"]] == ["auto", "general", "code", "pinned-fallback"]
    assert [m["id"] for m in limited.json()["data"]] == ["auto", "code"]


async def test_metrics_count_requests_by_route_backend_status() -> None:
    async with gateway() as client:
        await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
        await client.post("/v1/chat/completions", json=chat_body("nope"), headers=AUTH)
        text = (await client.get("/metrics")).text
    labels = 'backend="primary",endpoint="chat",route="general",status="200",variant="-"'
    assert f"turnout_requests_total{{{labels}}} 1.0" in text
    assert 'turnout_requests_total{backend="-",endpoint="chat",route="-",status="404",variant="-"} 1.0' in text
    assert 'turnout_backend_attempts_total{backend="primary",outcome="ok"} 1.0' in text
    assert "turnout_request_duration_seconds_bucket" in text


async def test_readyz_serves_the_last_health_check_and_never_calls_the_backends() -> None:
    asked: list[str] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.host)
        if request.url.host == "primary":
            return httpx.Response(500, text="db at 10.1.2.3 is down")
        return httpx.Response(200, json={"data": []})

    async with gateway(upstream, checks_reach=True, admin_key="adm-key-0123456789") as client:
        await checked(client, "primary", "fallback")
        asked.clear()
        answers = [await client.get("/readyz") for _ in range(5)]
        backends = await client.get("/admin/backends", headers={"authorization": "Bearer adm-key-0123456789"})
        anonymous = await client.get("/admin/backends")
    assert asked == []
    assert {a.status_code for a in answers} == {200}
    ready = answers[0].json()
    assert ready["backends"]["primary"] == {"breaker": "closed", "healthy": False}
    assert ready["backends"]["fallback"] == {"breaker": "closed", "healthy": True}
    assert "10.1.2.3" not in answers[0].text
    assert "10.1.2.3" in backends.json()["backends"]["primary"]["last_check"]["detail"]
    assert anonymous.status_code == 401


async def test_readyz_is_503_once_every_default_backend_failed_its_check() -> None:
    async with gateway(lambda r: httpx.Response(500), checks_reach=True) as client:
        await checked(client, "primary", "fallback")
        not_ready = await client.get("/readyz")
        live = await client.get("/healthz")
    assert not_ready.status_code == 503
    assert not_ready.json()["ready"] is False
    assert live.status_code == 200


async def checked(client: httpx.AsyncClient, *backends: str) -> None:
    """Waits for the start-up health check of ``backends``."""
    async with asyncio.timeout(10):
        while True:
            found = (await client.get("/readyz")).json()["backends"]
            if all("healthy" in found[name] for name in backends):
                return
            await asyncio.sleep(0.01)

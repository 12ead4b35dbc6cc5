"""Circuit breakers, health checks and in-flight bounds, through the whole gateway."""

from __future__ import annotations

import asyncio
import hashlib

import httpx
import openai
import pytest

from support.fault_rules import MESSAGES, route_rules
from support.faults import FaultServer
from tests.gateway.harness import AUTH, chat_body, completion, gateway
from tests.gateway.resilience_harness import sdk_gateway

BREAKER = ", breaker: {consecutive_failures: 2, open_s: 0.5}"


async def get(url: str) -> httpx.Response:
    """Async: the fault server shares this event loop, and readyz calls it."""
    async with httpx.AsyncClient() as client:
        return await client.get(url)


async def breaker_state(url: str, backend: str) -> str:
    return str((await get(url + "/readyz")).json()["backends"][backend]["breaker"])


async def breaker_metric(url: str, backend: str) -> str:
    prefix = f'turnout_backend_breaker_state{{backend="{backend}"}} '
    line = next(x for x in (await get(url + "/metrics")).text.splitlines() if x.startswith(prefix))
    return line.removeprefix(prefix)


async def test_breaker_opens_skips_then_half_opens_and_closes_on_success(faults: FaultServer) -> None:
    flaky, good = faults.backend("status-500"), faults.backend("ok")
    async with sdk_gateway(route_rules([flaky, good], backend=BREAKER)) as gw:
        for _ in range(2):
            raw = await gw.client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES)
            assert raw.headers["x-turnout-backend"] == good[0]
        assert await breaker_state(gw.url, flaky[0]) == "open"
        assert await breaker_metric(gw.url, flaky[0]) == "2.0"

        await gw.client.chat.completions.create(model="auto", messages=MESSAGES)
        assert faults.count(flaky[0]) == 2  # open: skipped, not retried on every request

        faults.modes[flaky[0]] = "ok"  # the primary recovers
        await asyncio.sleep(0.6)
        assert await breaker_state(gw.url, flaky[0]) == "half_open"
        raw = await gw.client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES)
        assert raw.headers["x-turnout-backend"] == flaky[0]  # the probe went back to the primary
        assert await breaker_state(gw.url, flaky[0]) == "closed"
        assert await breaker_metric(gw.url, flaky[0]) == "0.0"


async def test_failed_probe_opens_the_breaker_again(faults: FaultServer) -> None:
    flaky, good = faults.backend("status-500"), faults.backend("ok")
    async with sdk_gateway(route_rules([flaky, good], backend=BREAKER)) as gw:
        for _ in range(2):
            await gw.client.chat.completions.create(model="auto", messages=MESSAGES)
        await asyncio.sleep(0.6)
        await gw.client.chat.completions.create(model="auto", messages=MESSAGES)  # the probe, still failing
        assert faults.count(flaky[0]) == 3
        assert await breaker_state(gw.url, flaky[0]) == "open"


async def test_route_with_every_breaker_open_is_a_503_naming_the_skips(faults: FaultServer) -> None:
    flaky = faults.backend("status-500")
    async with sdk_gateway(route_rules([flaky], backend=BREAKER)) as gw:
        for _ in range(2):
            with pytest.raises(openai.InternalServerError):
                await gw.client.chat.completions.create(model="auto", messages=MESSAGES)
        with pytest.raises(openai.APIStatusError) as caught:
            await gw.client.chat.completions.create(model="auto", messages=MESSAGES)
    assert caught.value.status_code == 503
    assert caught.value.response.headers["retry-after"] == "1"  # the breaker's open_s (0.5 s), rounded up
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "no_backend_available"
    assert caught.value.body["attempts"] == [
        {"backend": flaky[0], "outcome": "skipped_breaker_open", "ms": None, "status": None}
    ]


async def test_failing_health_checks_open_the_breaker_without_traffic(faults: FaultServer) -> None:
    sick, good = faults.backend("ok"), faults.backend("ok")
    faults.health[sick[0]] = 500
    checks = ", breaker: {consecutive_failures: 2, open_s: 60}, health_check: {interval_s: 0.1, timeout_s: 1}"
    rules = route_rules([sick, good]).replace(", health_check: {enabled: false}", checks)
    async with sdk_gateway(rules) as gw:
        for _ in range(100):
            if await breaker_state(gw.url, sick[0]) == "open":
                break
            await asyncio.sleep(0.05)
        assert await breaker_state(gw.url, sick[0]) == "open"
        raw = await gw.client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES)
        assert raw.headers["x-turnout-backend"] == good[0]
        assert faults.count(sick[0]) == 0
        faults.health[sick[0]] = 200  # recovers: a passing check lets one request probe it
        for _ in range(100):
            if await breaker_state(gw.url, sick[0]) == "half_open":
                break
            await asyncio.sleep(0.05)
        raw = await gw.client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES)
        assert raw.headers["x-turnout-backend"] == sick[0]


async def test_readyz_is_503_when_the_default_routes_breakers_are_open(faults: FaultServer) -> None:
    flaky = faults.backend("status-500")
    async with sdk_gateway(route_rules([flaky], backend=", breaker: {consecutive_failures: 1, open_s: 60}")) as gw:
        assert (await get(gw.url + "/readyz")).status_code == 200
        with pytest.raises(openai.InternalServerError):
            await gw.client.chat.completions.create(model="auto", messages=MESSAGES)
        ready = await get(gw.url + "/readyz")
    assert ready.status_code == 503
    assert ready.json()["backends"][flaky[0]]["breaker"] == "open"


async def test_backend_at_its_in_flight_bound_passes_requests_to_the_next(faults: FaultServer) -> None:
    slow, spare = faults.backend("slow-500"), faults.backend("ok")
    rules = route_rules([slow, spare], backend=", max_in_flight: 1")
    async with sdk_gateway(rules) as gw:
        answers = await asyncio.gather(
            *(gw.client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES) for _ in range(2))
        )
    assert sorted(a.headers["x-turnout-backend"] for a in answers) == sorted([slow[0], spare[0]])


async def test_every_backend_at_its_bound_is_a_429_with_retry_after(faults: FaultServer) -> None:
    slow = faults.backend("slow-500")
    async with sdk_gateway(route_rules([slow], backend=", max_in_flight: 1")) as gw:
        results = await asyncio.gather(
            *(gw.client.chat.completions.create(model="auto", messages=MESSAGES) for _ in range(2)),
            return_exceptions=True,
        )
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert len(refused) == 1
    assert refused[0].response.headers["retry-after"] == "1"
    assert isinstance(refused[0].body, dict)
    assert refused[0].body["code"] == "backends_busy"


async def test_backend_too_slow_for_the_time_left_is_skipped(faults: FaultServer) -> None:
    slow, quick = faults.backend("slow-150"), faults.backend("ok")
    async with sdk_gateway(route_rules([slow, quick])) as gw:
        for _ in range(20):  # its median becomes ~150 ms
            await gw.client.chat.completions.create(model="auto", messages=MESSAGES)
        raw = await gw.client.chat.completions.with_raw_response.create(
            model="auto", messages=MESSAGES, extra_headers={"x-turnout-budget-ms": "100"}
        )
        metrics = (await get(gw.url + "/metrics")).text
    assert raw.headers["x-turnout-backend"] == quick[0]
    assert faults.count(slow[0]) == 20  # not even tried
    assert f'turnout_backend_attempts_total{{backend="{slow[0]}",outcome="skipped_too_slow"}} 1.0' in metrics


async def test_timeouts_under_a_clients_tight_budget_do_not_open_the_breaker(faults: FaultServer) -> None:
    hanging = faults.backend("hang")
    rules = route_rules([hanging], route=", latency_budget_ms: 600", backend=", breaker: {consecutive_failures: 2}")
    async with sdk_gateway(rules) as gw:
        for _ in range(3):
            with pytest.raises(openai.APIStatusError):
                await gw.client.chat.completions.create(
                    model="auto", messages=MESSAGES, extra_headers={"x-turnout-budget-ms": "100"}
                )
        assert await breaker_state(gw.url, hanging[0]) == "closed"
        for _ in range(2):  # the route's own budget: now the hang is the backend's fault
            with pytest.raises(openai.APIStatusError):
                await gw.client.chat.completions.create(model="auto", messages=MESSAGES)
        assert await breaker_state(gw.url, hanging[0]) == "open"


async def test_probe_failing_with_an_unexpected_exception_settles_the_half_open_breaker() -> None:
    answers = iter(["500", "bug", "ok", "ok"])

    def upstream(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if answer == "bug":
            raise RuntimeError("an adapter bug, not a BackendError")
        if answer == "500":
            return httpx.Response(500, json={"error": {"message": "down"}})
        return httpx.Response(200, json=completion("back"))

    rules = """
backends:
  only: {kind: openai, endpoint: "http://only/v1", model: m, breaker: {consecutive_failures: 1, open_s: 0.1},
         health_check: {enabled: false}}
routes:
  r: {backends: [only]}
default_route: r
router: {kind: default}
api_keys:
  - {tenant: t1, sha256: "KEY_DIGEST"}
""".replace("KEY_DIGEST", hashlib.sha256(b"sk-test-key").hexdigest())
    async with gateway(upstream, rules) as client:
        opened = await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
        await asyncio.sleep(0.15)
        probe = await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
        await asyncio.sleep(0.15)
        recovered = await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    assert opened.status_code == 502
    assert probe.status_code == 502
    assert probe.json()["error"]["attempts"][0]["outcome"] == "bad_upstream_response"
    assert recovered.status_code == 200


async def test_a_budget_shorter_than_every_backend_is_a_504_budget_exceeded_not_a_503(faults: FaultServer) -> None:
    slow = faults.backend("slow-150")
    async with sdk_gateway(route_rules([slow])) as gw:
        for _ in range(20):  # its median becomes ~150 ms
            await gw.client.chat.completions.create(model="auto", messages=MESSAGES)
        with pytest.raises(openai.APIStatusError) as caught:
            await gw.client.chat.completions.create(
                model="auto", messages=MESSAGES, extra_headers={"x-turnout-budget-ms": "100"}
            )
    assert caught.value.status_code == 504
    assert caught.value.body["code"] == "budget_exceeded"  # type: ignore[index]
    assert "shorter than every backend" in caught.value.body["message"]  # type: ignore[index]

"""Swapping the rules snapshot while the gateway serves: what is kept, what starts fresh, what is
closed and when, and that 200 swaps leave nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os

import httpx
import pytest

from backends.openai_compat import OpenAICompatBackend
from gateway.app import create_app
from gateway.rules import parse_rules
from gateway.settings import Settings
from gateway.state import GatewayState
from routers.classifier import TaskClassifier
from support.faults import FaultServer
from tests.gateway.harness import AUTH, KEY, RULES, chat_body, completion, gateway
from tests.servers import rss_bytes


def state_of(client: httpx.AsyncClient) -> GatewayState:
    state: GatewayState = client._transport.app.state.gateway  # type: ignore[attr-defined]
    return state


def one_backend(name: str, endpoint: str | None = None, router: str = "{kind: default}") -> str:
    import hashlib

    return f"""
backends:
  {name}: {{kind: openai, endpoint: "{endpoint or f"http://{name}/v1"}", model: m, health_check: {{enabled: false}}}}
routes:
  general: {{backends: [{name}]}}
default_route: general
router: {router}
api_keys:
  - {{tenant: t1, sha256: "{hashlib.sha256(KEY.encode()).hexdigest()}"}}
"""


UNCHECKED = RULES.replace("-model}", "-model, health_check: {enabled: false}}")
"""The harness's rules without health checks: a passed check would let an open breaker be probed."""


async def test_unchanged_backend_keeps_its_open_breaker_and_a_changed_one_starts_closed() -> None:
    async with gateway(rules=UNCHECKED) as client:
        state = state_of(client)
        before = state.snapshot
        for upstream in before.upstreams.values():
            for _ in range(5):
                upstream.breaker.record_failure()
        assert {u.breaker.state for u in before.upstreams.values()} == {"open"}
        after = await state.apply(parse_rules(UNCHECKED.replace("model: fallback-model", "model: fallback-model-2")))
        answer = await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
    assert after.version == before.version + 1
    assert after.upstreams["primary"] is before.upstreams["primary"]
    assert after.upstreams["primary"].breaker.state == "open"
    assert after.upstreams["fallback"].breaker.state == "closed"
    assert answer.headers["x-turnout-backend"] == "fallback"  # primary's breaker is still open


async def test_a_policy_change_keeps_the_backend_and_what_it_learnt() -> None:
    async with gateway(rules=UNCHECKED) as client:
        state = state_of(client)
        before = state.snapshot
        primary = before.upstreams["primary"]
        for _ in range(5):
            primary.breaker.record_failure()
        priced = UNCHECKED.replace(
            "model: primary-model,", "model: primary-model, timeout_s: 7, price: {input_per_mtok: 3.0},"
        )
        after = await state.apply(parse_rules(priced))
        rebroken = await state.apply(
            parse_rules(priced.replace("timeout_s: 7,", "timeout_s: 7, breaker: {open_s: 9},"))
        )
    kept = after.upstreams["primary"]
    assert kept is not primary  # the new policy ...
    assert (
        kept.backend is primary.backend
    )  # ... on the same backend: not reopened (an embedded llama.cpp keeps running)
    assert kept.timeout_s == 7
    assert kept.breaker is primary.breaker  # the breaker's spec is the same: still open
    assert kept.breaker.state == "open"
    assert kept.answers is primary.answers
    assert rebroken.upstreams["primary"].backend is primary.backend
    assert rebroken.upstreams["primary"].breaker.state == "closed"  # a new breaker spec starts afresh
    assert after.upstreams["fallback"] is before.upstreams["fallback"]  # untouched: as it was


async def test_a_failing_build_leaves_the_old_snapshot_serving() -> None:
    broken = parse_rules(RULES.replace("router: {kind: default}", "router: {kind: classifier, model: /nowhere}"))
    async with gateway() as client:
        state = state_of(client)
        before = state.snapshot
        with pytest.raises(OSError, match="nowhere"):
            await state.apply(broken)
        answer = await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
        ready = await client.get("/readyz")
    assert state.snapshot is before
    assert answer.status_code == 200
    assert ready.json()["rules_version"] == before.version


async def test_a_request_keeps_its_snapshot_and_a_removed_backend_closes_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed: list[str] = []
    close = OpenAICompatBackend.aclose

    async def recording_close(self: OpenAICompatBackend) -> None:
        closed.append(self.name)
        await close(self)

    monkeypatch.setattr(OpenAICompatBackend, "aclose", recording_close)
    arrived, release = asyncio.Event(), asyncio.Event()

    async def upstream(request: httpx.Request) -> httpx.Response:
        if request.url.host == "old":
            arrived.set()
            await release.wait()
        return httpx.Response(200, json=completion(f"from {request.url.host}"))

    async with gateway(upstream, rules=one_backend("old")) as client:  # type: ignore[arg-type]
        state = state_of(client)
        slow = asyncio.create_task(client.post("/v1/chat/completions", json=chat_body(), headers=AUTH))
        await arrived.wait()
        await state.apply(parse_rules(one_backend("new")))
        after_swap = await client.post("/v1/chat/completions", json=chat_body(), headers=AUTH)
        closed_while_in_flight = list(closed)
        release.set()
        first = await slow
        for _ in range(500):  # the close runs in a task of its own, after the response
            if closed:
                break
            await asyncio.sleep(0.01)
    assert closed_while_in_flight == []
    assert (first.headers["x-turnout-backend"], first.json()["choices"][0]["message"]["content"]) == ("old", "from old")
    assert after_swap.headers["x-turnout-backend"] == "new"
    assert closed[0] == "old"


def open_sockets() -> int:
    found = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own descriptor, gone by now
            found += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return found


def loaded_classifiers() -> int:
    gc.collect()
    # type() rather than isinstance(): the latter asks some objects (torch's deprecated aliases) and warns
    return sum(type(o) is TaskClassifier for o in gc.get_objects())


async def test_two_hundred_swaps_leak_nothing(faults: FaultServer) -> None:
    """A backend that changes on every swap (its endpoint), a classifier router whose model is shared,
    a request between swaps over real sockets: RSS, sockets and loaded models stay at their baseline."""
    rules = [
        parse_rules(one_backend("b", faults.endpoint(f"swap{i}"), f"{{kind: classifier, threshold: 0.{5 + i}}}"))
        for i in range(2)
    ]
    faults.modes.update({"swap0": "ok", "swap1": "ok"})
    app = create_app(Settings(), rules[0])
    async with app.router.lifespan_context(app):
        state: GatewayState = app.state.gateway
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:

            async def swaps(count: int) -> None:
                for i in range(count):
                    await state.apply(rules[i % 2])
                    answer = await client.post("/v1/chat/completions", json=chat_body("general"), headers=AUTH)
                    assert answer.status_code == 200

            await swaps(20)  # warm: allocator pools, connections, lazily built objects
            baseline = (rss_bytes(os.getpid()), open_sockets(), loaded_classifiers())
            model = state.snapshot.router.models.copy()
            await swaps(200)
            assert state.snapshot.router.models == model  # the very same loaded model, never reloaded
            after = (rss_bytes(os.getpid()), open_sockets(), loaded_classifiers())
            retired = len(state._retired)
    assert after[2] == baseline[2] == 1
    assert after[1] <= baseline[1] + 2
    assert after[0] - baseline[0] < 20 * 1024 * 1024
    assert retired == 0

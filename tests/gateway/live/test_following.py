"""Replicas follow the store: through Redis (announcements, polling, reconnects), across restarts
without Redis, and from the rules file on disk (edits, invalid edits, ConfigMap symlink swaps)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from gateway.app import create_app
from gateway.settings import Settings
from tests.gateway.harness import AUTH, RULES, chat_body, echo_upstream, gateway

ADMIN_KEY = "adm-key-0123456789"

EDITOR = {"authorization": "Bearer adm-key-0123456789"}
TIGHTER = RULES.replace("code: {backends: [primary]}", "code: {backends: [primary], latency_budget_ms: 5000}")
TO_FALLBACK = RULES.replace("code: {backends: [primary]}", "code: {backends: [fallback]}")


async def version_of(client: httpx.AsyncClient) -> int:
    return int((await client.get("/readyz")).json()["rules_version"])


async def served_within(client: httpx.AsyncClient, version: int, seconds: float) -> bool:
    for _ in range(int(seconds / 0.05)):
        if await version_of(client) == version:
            return True
        await asyncio.sleep(0.05)
    return False


async def apply(client: httpx.AsyncClient, text: str) -> int:
    current = (await client.get("/admin/rules", headers=EDITOR)).json()["version"]
    answer = await client.put("/admin/rules", content=text, headers={**EDITOR, "if-match": f'"{current}"'})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["version"])


@asynccontextmanager
async def from_file(path: Path, **settings: object) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway reading its rules from ``path``, as the server does."""
    upstream = httpx.AsyncClient(transport=httpx.MockTransport(echo_upstream))
    app = create_app(Settings(config=path, admin_key=ADMIN_KEY, rules_poll_s=0.1, **settings), http_client=upstream)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://x") as client:
        yield client
    await upstream.aclose()


async def flush(url: str) -> None:
    admin = aioredis.from_url(url)
    await admin.flushdb()
    await admin.aclose()


async def test_a_change_on_one_replica_is_served_by_the_other_within_2_s(redis_url: str) -> None:
    await flush(redis_url)
    async with (
        gateway(redis_url=redis_url, admin_key=ADMIN_KEY) as one,
        gateway(redis_url=redis_url, admin_key=ADMIN_KEY) as two,
    ):
        version = await apply(one, TO_FALLBACK)
        assert await served_within(two, version, 2.0)
        answer = await two.post("/v1/chat/completions", json=chat_body("code"), headers=AUTH)
        assert answer.headers["x-turnout-backend"] == "fallback"
        assert answer.headers["x-turnout-rules-version"] == str(version)
        async with gateway(redis_url=redis_url, admin_key=ADMIN_KEY) as late:  # started after the change
            assert await version_of(late) == version
            history = (await late.get("/admin/rules/history", headers=EDITOR)).json()
    assert [v["source"] for v in history] == ["api", "bootstrap"]


async def test_a_replica_whose_announcement_connection_was_cut_catches_up(redis_url: str) -> None:
    admin = aioredis.from_url(redis_url)
    await admin.flushdb()
    # Polling every 60 s: only the announcement, or the catch-up on reconnecting, can bring the change.
    settings = {"redis_url": redis_url, "admin_key": ADMIN_KEY, "rules_poll_s": 60}
    async with gateway(**settings) as one, gateway(**settings) as two:
        first = await apply(one, TIGHTER)
        assert await served_within(two, first, 2.0)  # announced
        await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        second = await apply(one, TO_FALLBACK)  # announced while nobody listens
        assert await served_within(two, second, 3.0)
    await admin.aclose()


async def test_without_redis_history_survives_a_restart(tmp_path: Path) -> None:
    async with gateway(admin_key=ADMIN_KEY, state_dir=tmp_path) as client:
        version = await apply(client, TIGHTER)
    async with gateway(admin_key=ADMIN_KEY, state_dir=tmp_path) as client:
        served = await version_of(client)
        history = (await client.get("/admin/rules/history", headers=EDITOR)).json()
        audit = (await client.get("/admin/rules/audit", headers=EDITOR)).json()
    assert served == version == 2
    assert [v["version"] for v in history] == [2, 1]
    assert audit[0]["version"] == 2


async def test_the_rules_file_is_watched(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    async with from_file(path, state_dir=tmp_path / "state") as client:
        path.write_text(RULES.replace("default_route: general", "default_route: nowhere"))
        await asyncio.sleep(0.5)
        assert await version_of(client) == 1  # invalid: the running version stays
        metrics = (await client.get("/metrics")).text
        path.write_text(TIGHTER)
        assert await served_within(client, 2, 2.0)
        newest = (await client.get("/admin/rules", headers=EDITOR)).json()
        audit = (await client.get("/admin/rules/audit", headers=EDITOR)).json()
    assert 'turnout_rules_refused_total{source="file"} 1.0' in metrics
    assert (newest["source"], newest["author"], newest["yaml"]) == ("file", "file", TIGHTER)
    assert [(a["action"], a["source"]) for a in audit] == [("applied", "file"), ("rejected", "file")]
    assert "nowhere" in audit[1]["detail"]


async def test_a_configmap_style_symlink_swap_is_seen(tmp_path: Path) -> None:
    """Kubernetes mounts ``rules.yaml -> ..data/rules.yaml`` and ``..data -> ..<timestamp>``; an update
    writes a new timestamped directory and swaps ``..data`` in one rename."""
    for name, text in (("..v1", RULES), ("..v2", TO_FALLBACK)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "rules.yaml").write_text(text)
    os.symlink("..v1", tmp_path / "..data")
    os.symlink("..data/rules.yaml", tmp_path / "rules.yaml")
    async with from_file(tmp_path / "rules.yaml", state_dir=tmp_path / "state") as client:
        os.symlink("..v2", tmp_path / "..data_tmp")
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
        assert await served_within(client, 2, 2.0)
        answer = await client.post("/v1/chat/completions", json=chat_body("code"), headers=AUTH)
    assert answer.headers["x-turnout-backend"] == "fallback"


async def test_a_file_changed_while_stopped_becomes_a_version_at_start(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    async with from_file(path, state_dir=tmp_path / "state") as client:
        api_version = await apply(client, TIGHTER)
    async with from_file(path, state_dir=tmp_path / "state") as client:
        assert await version_of(client) == api_version  # the file did not change: the API's version stays
    path.write_text(TO_FALLBACK)
    async with from_file(path, state_dir=tmp_path / "state") as client:
        assert await version_of(client) == api_version + 1
        newest = (await client.get("/admin/rules", headers=EDITOR)).json()
    assert newest["source"] == "file"


@pytest.mark.parametrize("topology", ["cluster"])
async def test_replicas_on_a_cluster_follow_by_polling(topology: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(f"{topology}_url")
    async with (
        gateway(redis_url=url, admin_key=ADMIN_KEY) as one,
        gateway(redis_url=url, admin_key=ADMIN_KEY) as two,
    ):
        version = await apply(one, TO_FALLBACK + f"# {os.getpid()}\n")
        assert await served_within(two, version, 3.0)

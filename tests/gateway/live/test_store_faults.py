"""The rules store when it loses its data, holds garbage, is paused or is down: versions never go
back, every replica converges, a write reported as failed never lands later, and reads answer
503 in the error shape, never 500. Real Redis (flushed, paused with CLIENT PAUSE, fed garbage)
and a real state directory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis.asyncio as aioredis

from gateway.live.redis_store import PREFIX
from tests.gateway.harness import RULES, gateway
from tests.gateway.live.test_following import ADMIN_KEY, EDITOR, TIGHTER, TO_FALLBACK, apply, from_file, served_within

SETTINGS = {"admin_key": ADMIN_KEY, "rules_poll_s": 0.2}


async def test_an_emptied_redis_is_restored_from_what_replicas_serve_and_versions_never_go_back(
    redis_url: str,
) -> None:
    admin = aioredis.from_url(redis_url)
    await admin.flushdb()
    async with gateway(redis_url=redis_url, **SETTINGS) as one, gateway(redis_url=redis_url, **SETTINGS) as two:
        await apply(one, TIGHTER)
        third = await apply(one, TO_FALLBACK)
        assert await served_within(two, third, 2.0)
        await admin.flushdb()  # Redis restarted without its data
        found = await one.get("/admin/rules", headers=EDITOR)
        assert found.status_code == 200  # not 404 "version 0": the console can still sign in
        assert found.json()["version"] == third
        after = await apply(two, RULES)
        assert after == third + 1  # not version 1 while replicas serve 3
        assert await served_within(one, after, 2.0)  # and the other replica follows
        audit = (await one.get("/admin/rules/audit?limit=5", headers=EDITOR)).json()
    await admin.aclose()
    assert "restored" in [entry["action"] for entry in audit]


async def test_garbage_in_the_store_is_skipped_not_fatal(redis_url: str) -> None:
    admin = aioredis.from_url(redis_url)
    await admin.flushdb()
    async with gateway(redis_url=redis_url, **SETTINGS) as one:
        await admin.set(PREFIX + "latest", "not a number")
        await admin.lpush(PREFIX + "audit", "{torn")
        version = await apply(one, TIGHTER)  # a valid PUT is not a 422 "rules invalid"
        audit = await one.get("/admin/rules/audit", headers=EDITOR)
        history = await one.get("/admin/rules/history", headers=EDITOR)
    await admin.aclose()
    assert version == 2  # continues from what serves (1), never back
    assert audit.status_code == 200
    assert history.status_code == 200


async def test_a_write_answered_503_while_redis_was_paused_never_lands_later(redis_url: str) -> None:
    admin = aioredis.from_url(redis_url)
    await admin.flushdb()
    async with gateway(redis_url=redis_url, **SETTINGS) as one, gateway(redis_url=redis_url, **SETTINGS) as two:
        current = (await one.get("/admin/rules", headers=EDITOR)).json()["version"]
        await admin.execute_command("CLIENT", "PAUSE", "4000", "WRITE")
        refused = await one.put("/admin/rules", content=TIGHTER, headers={**EDITOR, "if-match": f'"{current}"'})
        await asyncio.sleep(4.5)  # the pause ends: the held script runs now, and must store nothing
        latest = await admin.get(PREFIX + "latest")
        served = [(await c.get("/readyz")).json()["rules_version"] for c in (one, two)]
    await admin.aclose()
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "state_store_unavailable"
    assert int(latest) == current
    assert served == [current, current]


async def test_admin_reads_are_503_when_redis_is_down() -> None:
    async with gateway(redis_url="redis://127.0.0.1:1/0", **SETTINGS) as client:
        answers = [await client.get(path, headers=EDITOR) for path in ("/admin/rules", "/admin/rules/history")]
    for answer in answers:
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "state_store_unavailable"


async def test_a_stray_or_truncated_file_in_the_state_directory_is_skipped(tmp_path: Path) -> None:
    async with gateway(admin_key=ADMIN_KEY, state_dir=tmp_path) as client:
        await apply(client, TIGHTER)
    rules = tmp_path / "rules"
    (rules / "vnotes.json").write_text("kept by an operator")
    (rules / "README").write_text("not a version")
    (rules / "v00000003.json").write_text('{"yaml": "truncat')  # a newest version cut short
    async with gateway(admin_key=ADMIN_KEY, state_dir=tmp_path) as client:  # starts: it used to exit 3
        found = await client.get("/admin/rules", headers=EDITOR)
        history = await client.get("/admin/rules/history", headers=EDITOR)
        applied = await client.put(
            "/admin/rules", content=TO_FALLBACK, headers={**EDITOR, "if-match": f'"{found.json()["version"]}"'}
        )
    assert found.status_code == 200
    assert found.json()["version"] == 2
    assert [v["version"] for v in history.json()] == [2, 1]
    assert applied.status_code == 200
    assert applied.json()["version"] == 4  # a number taken by an unreadable file is never reused


async def test_a_store_failure_is_not_a_500_anywhere_in_the_api(redis_url: str) -> None:
    admin = aioredis.from_url(redis_url)
    await admin.flushdb()
    async with gateway(redis_url=redis_url, **SETTINGS) as client:
        await admin.set(PREFIX + "v:1", "garbage")
        answers = [await client.get(p, headers=EDITOR) for p in ("/admin/rules/history", "/admin/rules/versions/1")]
    await admin.aclose()
    assert all(a.status_code < 500 for a in answers), [a.text for a in answers]
    assert isinstance(answers[0].json(), list)


async def test_a_rules_file_edit_during_a_redis_outage_is_stored_once_redis_is_back(
    redis_url: str, tmp_path: Path
) -> None:
    admin = aioredis.from_url(redis_url)
    await admin.flushdb()
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    async with from_file(path, redis_url=redis_url) as client:
        await admin.execute_command("CLIENT", "PAUSE", "2500", "WRITE")
        path.write_text(TIGHTER)  # seen while the store cannot take it
        await asyncio.sleep(3.0)
        assert await served_within(client, 2, 5.0)  # kept, tried again, stored
        history = (await client.get("/admin/rules/history", headers=EDITOR)).json()
    await admin.aclose()
    assert [v["source"] for v in history] == ["file", "bootstrap"]


async def test_a_rules_file_that_is_not_utf8_is_refused_audited_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    async with from_file(path, state_dir=tmp_path / "state") as client:
        path.write_bytes(RULES.encode() + b"# \xff\xfe not text\n")
        audit: list[dict[str, object]] = []
        for _ in range(100):
            audit = (await client.get("/admin/rules/audit", headers=EDITOR)).json()
            if audit:
                break
            await asyncio.sleep(0.05)
        metrics = (await client.get("/metrics")).text
        version = (await client.get("/readyz")).json()["rules_version"]
    assert audit[0]["action"] == "rejected"
    assert audit[0]["source"] == "file"
    assert 'turnout_rules_refused_total{source="file"} 1.0' in metrics
    assert version == 1

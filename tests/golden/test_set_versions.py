"""A changed golden set is a change: the same rules with the new set become a new version (once,
whichever replicas see the file), gated on the new set against the live primary; a set the live
primary fails is refused once and the running version stays."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import httpx

from support.faults import FaultServer
from tests.gateway.live.test_following import flush
from tests.golden.scripted import EDITOR, ROWS, replica, rules


def replace(path: Path, rows: list[dict[str, object]]) -> None:
    """Swap the file whole, as a ConfigMap update does (a reader never sees half a file)."""
    staged = path.with_suffix(".new")
    staged.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    os.replace(staged, path)


async def history(client: httpx.AsyncClient) -> list[dict[str, object]]:
    return list((await client.get("/admin/rules/history", headers=EDITOR)).json())


async def until(check: object, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("never happened")


async def test_a_changed_set_is_a_new_version_once_and_a_failing_one_is_refused(
    faults: FaultServer, golden: Path, redis_url: str
) -> None:
    await flush(redis_url)
    settings = {"redis_url": redis_url, "rules_poll_s": 0.1}
    text = rules(faults, golden, "gold-a")
    async with replica(text, **settings) as one, replica(text, **settings) as two:
        await asyncio.sleep(0.5)  # each replica reads the sets it starts with
        extra = {"name": "sum-again", "prompt": "2+2?", "expect": {"contains": "4"}}
        replace(golden, [*ROWS, extra])

        async def stored_once() -> bool:
            return len(await history(one)) == 2

        await until(stored_once)
        await asyncio.sleep(0.5)  # the other replica saw the same file: no second version
        versions = await history(two)
        wrong = {
            "name": "capital-de",
            "prompt": "Capital of France?",
            "expect": {"contains": "Berlin"},
            "critical": True,
        }
        replace(golden, [*ROWS, wrong])
        await asyncio.sleep(1.0)
        after = await history(one)
        audit = (await one.get("/admin/rules/audit", headers=EDITOR)).json()
        served = (await one.get("/admin/rules", headers=EDITOR)).json()
    assert len(versions) == 2
    assert versions[0]["source"] == "file"
    assert str(versions[0]["message"]).startswith("golden set changed: general (sha256 ")
    assert len(after) == 2  # the failing set was refused: nothing stored
    refusals = [a for a in audit if a["action"] == "rejected"]
    assert 1 <= len(refusals) <= 2  # once per replica that saw it, not once per poll
    assert "capital-de" not in served["yaml"]
    assert served["golden"]["general"] == versions[0]["golden"]["general"]  # type: ignore[index]

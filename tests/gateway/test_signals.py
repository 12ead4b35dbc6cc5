"""The serving process's signals, on ``turnout serve`` processes: SIGHUP swaps the rules (under
load, and refusing an invalid file), SIGTERM drains."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import openai
from openai import AsyncOpenAI

from support.fault_rules import MESSAGES, route_rules
from support.faults import FaultServer
from tests.servers import gateway_process, has_exited

UNAUTHENTICATED = {"TURNOUT_AUTH_DISABLED": "true"}


async def readyz(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(url + "/readyz")


async def rules_version(url: str) -> int:
    return int((await readyz(url)).json()["rules_version"])


async def until(condition: Callable[[], Awaitable[bool]], timeout_s: float = 20) -> None:
    """Polls ``condition`` (another process's state has no event to wait on) until it holds."""
    for _ in range(int(timeout_s / 0.05)):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"still not so after {timeout_s} s")


def sdk(url: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)


async def ask(client: AsyncOpenAI, stream: bool) -> tuple[str, str]:
    """The backend that answered, by its header, and the whole answer's text."""
    if stream:
        raw = await client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in raw.parse()])
        return raw.headers["x-turnout-backend"], text
    raw = await client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES)
    return raw.headers["x-turnout-backend"], raw.parse().choices[0].message.content or ""


async def test_sighup_with_an_invalid_file_keeps_the_running_version_and_logs_why(
    faults: FaultServer, tmp_path: Path
) -> None:
    config, log = tmp_path / "rules.yaml", tmp_path / "gateway.log"
    config.write_text(route_rules([faults.backend("ok")]))
    with gateway_process(config, log, **UNAUTHENTICATED) as (url, pid):
        config.write_text(route_rules([faults.backend("ok")]).replace("default_route: r", "default_route: nowhere"))
        os.kill(pid, signal.SIGHUP)
        await until(lambda: _logged(log, "nowhere"))
        kept = await rules_version(url)
        config.write_text(route_rules([faults.backend("ok")]))
        os.kill(pid, signal.SIGHUP)
        await until(lambda: _is_version(url, 2))
    assert kept == 1
    assert "default_route: unknown route 'nowhere'" in log.read_text()
    assert "version 1 keeps serving" in log.read_text()


async def _logged(log: Path, text: str) -> bool:
    return text in await asyncio.to_thread(log.read_text)


async def _is_version(url: str, version: int) -> bool:
    return await rules_version(url) == version


async def test_a_hundred_requests_through_a_sighup_swap_all_succeed_each_from_one_snapshot(
    faults: FaultServer, tmp_path: Path
) -> None:
    """Fifty requests (half of them streams) are in flight at the swap and fifty come after it; the
    swap moves the route to another backend. None fails, and each answer is whole and from one side."""
    old, new = faults.backend("slow-1500"), faults.backend("slow-300")
    config = tmp_path / "rules.yaml"
    config.write_text(route_rules([old]))
    with gateway_process(config, **UNAUTHENTICATED) as (url, pid):
        async with sdk(url) as client:
            before = [asyncio.create_task(ask(client, stream=i % 2 == 0)) for i in range(50)]
            await until(lambda: _arrived(faults, old[0], 50))
            config.write_text(route_rules([new]))
            os.kill(pid, signal.SIGHUP)
            await until(lambda: _is_version(url, 2))
            after = [asyncio.create_task(ask(client, stream=i % 2 == 0)) for i in range(50)]
            answers = await asyncio.gather(*before, *after)
    stream_text = "part0 part1 part2 part3 part4 "
    expected = {
        (old[0], "from slow-1500"): 25, (old[0], stream_text): 25,
        (new[0], "from slow-300"): 25, (new[0], stream_text): 25,
    }  # fmt: skip
    assert {answer: answers.count(answer) for answer in set(answers)} == expected
    assert [backend for backend, _ in answers[:50]] == [old[0]] * 50


async def _arrived(faults: FaultServer, name: str, count: int) -> bool:
    return faults.count(name) >= count


async def test_sigterm_drains_requests_and_streams_in_flight_with_readyz_503(
    faults: FaultServer, tmp_path: Path
) -> None:
    slow, dribbling = faults.backend("slow-1500"), faults.backend("slowstream-300")
    config = tmp_path / "rules.yaml"
    config.write_text(
        route_rules([slow]).replace("routes:", f"  {dribbling[0]}: {{kind: openai, endpoint: '{dribbling[1]}', "
                                              "model: m, health_check: {enabled: false}}\nroutes:")
        .replace("default_route: r", f"default_route: r\naliases: {{dribbling: {dribbling[0]}}}")
    )  # fmt: skip
    with gateway_process(config, **UNAUTHENTICATED) as (url, pid):
        async with sdk(url) as client:
            answer = asyncio.create_task(ask(client, stream=False))
            stream = await client.chat.completions.create(model="dribbling", messages=MESSAGES, stream=True)
            first = await anext(aiter(stream))
            await until(lambda: _arrived(faults, slow[0], 1))
            os.kill(pid, signal.SIGTERM)
            draining = await readyz(url)
            rest = [c.choices[0].delta.content async for c in stream]
            backend, text = await answer
            await until(lambda: _exited(pid), timeout_s=30)
            try:
                await client.models.list()
                refused = False
            except openai.APIConnectionError:
                refused = True
    assert draining.status_code == 503
    assert draining.json()["draining"] is True
    assert (backend, text) == (slow[0], "from slow-1500")
    assert first.choices[0].delta.content + "".join(c or "" for c in rest) == "part0 part1 part2 part3 part4 "
    assert refused


async def _exited(pid: int) -> bool:
    return has_exited(pid)

"""The gateway under uvicorn in front of the fault server, called with the official openai SDK."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TypeVar

from openai import AsyncOpenAI

from gateway.app import create_app
from gateway.rules import parse_rules
from gateway.settings import Settings
from tests.servers import serving

T = TypeVar("T")
SLACK_S = 1.5
"""What an answer may take beyond its budget in these tests: generous, because these machines are
shared and noisy. It tells a kept promise from a hung request (backends here time out after 30 s);
the measured slack is in bench/results/fault-matrix.md."""


@dataclass
class Gateway:
    url: str
    client: AsyncOpenAI


@asynccontextmanager
async def sdk_gateway(rules: str, **settings: object) -> AsyncIterator[Gateway]:
    app = create_app(Settings(auth_disabled=True, **settings), parse_rules(rules))  # type: ignore[arg-type]
    with serving(app) as url:
        async with AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=30) as client:
            yield Gateway(url, client)


async def collect(stream: AsyncIterator[T], into: list[T]) -> None:
    """Read a stream to its end, keeping what came, so a test can look at it after an error."""
    async for item in stream:
        into.append(item)


@dataclass
class Stopwatch:
    started: float = 0.0
    seconds: float = 0.0


@contextmanager
def stopwatch() -> Iterator[Stopwatch]:
    watch = Stopwatch(time.monotonic())
    try:
        yield watch
    finally:
        watch.seconds = time.monotonic() - watch.started

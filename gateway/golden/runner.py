"""Running a golden set against one backend: its rows asked ``concurrency`` at a time (temperature
0, marked ``x-turnout-synthetic: golden`` upstream), each answer held to its row's expectations,
the whole run bounded by the set's ``timeout_s``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from backends.request_context import SYNTHETIC
from contracts.errors import BackendError
from contracts.wire import ChatCompletion, ChatCompletionRequest
from gateway.golden.expectations import Answered, Similarity, failures
from gateway.golden.sets import GoldenRow, GoldenSet
from gateway.rollouts.agreement import answer_text
from gateway.rules import GoldenSpec

SHOWN_CHARS = 500


class Answerer(Protocol):
    """What a set runs against: a backend, or a running gateway's route (``turnout golden run --url``)."""

    @property
    def name(self) -> str: ...

    async def complete(self, request: ChatCompletionRequest, timeout_s: float) -> ChatCompletion: ...


@dataclass(frozen=True)
class RowResult:
    name: str
    critical: bool
    failures: list[str]
    answer: str
    """Its first 500 characters."""
    latency_ms: float

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class SetResult:
    route: str
    backend: str
    min_pass_ratio: float
    rows: list[RowResult] = field(default_factory=list)
    set_sha256: str = ""

    @property
    def pass_ratio(self) -> float:
        return sum(row.passed for row in self.rows) / len(self.rows) if self.rows else 0.0

    @property
    def critical_failed(self) -> list[str]:
        return [row.name for row in self.rows if row.critical and not row.passed]

    @property
    def passed(self) -> bool:
        return bool(self.rows) and self.pass_ratio >= self.min_pass_ratio and not self.critical_failed

    def summary(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "backend": self.backend,
            "passed": self.passed,
            "pass_ratio": round(self.pass_ratio, 4),
            "min_pass_ratio": self.min_pass_ratio,
            "rows": len(self.rows),
            "critical_failed": self.critical_failed,
            "set_sha256": self.set_sha256,
            "failing": [
                {"name": r.name, "critical": r.critical, "failures": r.failures, "answer": r.answer}
                for r in self.rows
                if not r.passed
            ],
        }


Book = Callable[[ChatCompletion], None]
"""Where each answer's tokens and cost go (the cost report, as synthetic traffic)."""


async def run_set(
    golden: GoldenSet,
    backend: Answerer,
    spec: GoldenSpec,
    similarity: Similarity,
    route: str,
    book: Book | None = None,
) -> SetResult:
    deadline = time.monotonic() + spec.timeout_s
    gate = asyncio.Semaphore(spec.concurrency)
    token = SYNTHETIC.set("golden")
    try:
        rows = await asyncio.gather(
            *(_run_row(row, backend, deadline, gate, similarity, route, book) for row in golden.rows)
        )
    finally:
        SYNTHETIC.reset(token)
    return SetResult(route, backend.name, spec.min_pass_ratio, list(rows), golden.sha256)


async def _run_row(
    row: GoldenRow,
    backend: Answerer,
    deadline: float,
    gate: asyncio.Semaphore,
    similarity: Similarity,
    route: str,
    book: Book | None,
) -> RowResult:
    async with gate:
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            return RowResult(row.name, row.critical, ["timeout: the set's timeout_s ran out first"], "", 0.0)
        body: dict[str, Any] = {"model": route, "messages": row.request_messages(), "temperature": 0}
        if row.max_tokens is not None:
            body["max_tokens"] = row.max_tokens
        started = time.monotonic()
        try:
            async with asyncio.timeout(left_s):
                completion = await backend.complete(ChatCompletionRequest.model_validate(body), left_s)
        except TimeoutError:
            return RowResult(row.name, row.critical, ["timeout: no answer within the set's timeout_s"], "", 0.0)
        except BackendError as exc:
            return RowResult(row.name, row.critical, [f"error: {exc.message}"], "", 0.0)
        latency_ms = (time.monotonic() - started) * 1000
        if book is not None:
            book(completion)
        text = answer_text(completion)
        tokens = completion.usage.completion_tokens if completion.usage is not None else None
        failed = await failures(row.expect, Answered(text, latency_ms, tokens), similarity)
        return RowResult(row.name, row.critical, failed, text[:SHOWN_CHARS], round(latency_ms, 1))

"""Shadow traffic: a sample of a route's answered requests asked again of a candidate backend, in
the background, and the two answers compared. The client never waits for it, sees it, or pays for
it: the copy starts only once the client's answer is wholly sent (a stream's last byte included),
it is never cached and never counted against the tenant's limits, and whatever it does (hang,
fail, answer garbage or too much) ends in the shadow's own figures.

Per route at most ``max_in_flight`` shadow calls run at once; a sample beyond that is dropped and
counted. Each pair is compared: short answers (labels, numbers) agree when equal once normalised;
longer ones by the cosine similarity of their sentence embeddings (:mod:`gateway.rollouts.agreement`)
against ``agree_at``. What is kept per (route, primary, shadow) is figures, never the texts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass

from contracts.errors import BackendError
from contracts.wire import ChatCompletion, ChatCompletionRequest
from gateway.observe import ReportBook, shadow_labels, similarity_field
from gateway.observe.metrics import Metrics
from gateway.resilience.upstreams import Upstream
from gateway.rollouts.agreement import Agreement, answer_text
from gateway.rules import ShadowSpec

log = logging.getLogger("turnout")


@dataclass(frozen=True)
class ShadowCase:
    """One answered request to ask again of the route's shadow backend."""

    route: str
    tenant: str
    endpoint: str
    primary: str
    """The backend that answered the client."""
    request: ChatCompletionRequest
    """The client's request, made non-streaming."""
    answer: str
    """The client's answer's text."""
    primary_usd: float
    spec: ShadowSpec
    upstream: Upstream
    input_per_mtok: float
    output_per_mtok: float


class ShadowRunner:
    """The process's shadow calls: started from a request's end, bounded per route, all cancelled
    when the runner closes."""

    def __init__(self, metrics: Metrics, reports: ReportBook, agreement: Agreement) -> None:
        self._metrics = metrics
        self._reports = reports
        self._agreement = agreement
        self._in_flight: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def in_flight(self, route: str) -> int:
        return self._in_flight[route]

    def offer(self, case: ShadowCase, primary_ms: float) -> None:
        """Start the shadow call of ``case`` unless its route is at its bound; never waits, never raises."""
        if self._closed:
            return
        if self._in_flight[case.route] >= case.spec.max_in_flight:
            self._book(case, {"shadow_dropped": 1.0})
            self._metrics.observe_shadow(case.route, case.spec.backend, "dropped")
            return
        self._in_flight[case.route] += 1
        task = asyncio.get_running_loop().create_task(self._run(case, primary_ms))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, case: ShadowCase, primary_ms: float) -> None:
        backend = case.spec.backend
        try:
            started = time.monotonic()
            try:
                async with asyncio.timeout(case.spec.budget_ms / 1000):
                    completion = await case.upstream.backend.complete(case.request, case.spec.budget_ms / 1000)
            except (BackendError, TimeoutError) as exc:
                self._book(case, {"shadow_errors": 1.0})
                self._metrics.observe_shadow(case.route, backend, "error")
                log.info("shadow %s of route %s failed: %s", backend, case.route, exc or "timed out")
                return
            shadow_ms = (time.monotonic() - started) * 1000
            similarity = await self._agreement.similarity(case.answer, answer_text(completion))
            agreed = similarity >= case.spec.agree_at
            self._book(case, self._pair(case, completion, similarity, agreed, shadow_ms, primary_ms))
            self._metrics.observe_shadow(case.route, backend, "agreed" if agreed else "disagreed")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("shadow %s of route %s failed unexpectedly", backend, case.route)
            self._book(case, {"shadow_errors": 1.0})
            self._metrics.observe_shadow(case.route, backend, "error")
        finally:
            self._in_flight[case.route] -= 1

    @staticmethod
    def _pair(
        case: ShadowCase,
        completion: ChatCompletion,
        similarity: float,
        agreed: bool,
        shadow_ms: float,
        primary_ms: float,
    ) -> dict[str, float]:
        usage = completion.usage
        prompt, generated = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
        cost = (prompt * case.input_per_mtok + generated * case.output_per_mtok) / 1e6
        return {
            "shadow_pairs": 1.0,
            "shadow_agreed": 1.0 if agreed else 0.0,
            similarity_field(similarity): 1.0,
            "shadow_ms": shadow_ms,
            "shadowed_ms": primary_ms,
            "shadow_usd": cost,
            "shadowed_usd": case.primary_usd,
            "shadow_output_tokens": float(generated),
        }

    def _book(self, case: ShadowCase, deltas: dict[str, float]) -> None:
        """Into the reports under the shadow backend, variant ``shadow``: its spend is shadow spend."""
        labels = shadow_labels(case.route, case.spec.backend, case.tenant, case.endpoint, case.primary)
        with contextlib.suppress(Exception):  # a report that cannot take it loses a figure, nothing more
            self._reports.add(labels, deltas)

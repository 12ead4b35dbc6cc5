"""One request's run down its route's backends, inside its deadline.

Backends are tried in order. A failure that the route's fallback policy accepts moves on to
the next; with hedging, the next also starts when the current one is slow, and the first good
answer wins while the others are cancelled (their connections closed). Backends whose breaker
is open, that are at their in-flight bound, or whose median latency no longer fits the time
left are skipped. Each attempt gets the time left minus what the fallbacks after it need.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from backends.base import Backend
from backends.request_context import TRACE_HEADERS
from contracts.errors import BackendBadResponse, BackendError, BackendTimeout
from gateway.observe.metrics import Metrics
from gateway.observe.tracing import Tracing
from gateway.resilience.attempts import (
    CANCELLED,
    SKIPPED_BREAKER_OPEN,
    SKIPPED_BUSY,
    SKIPPED_TOO_SLOW,
    Attempt,
    Exhaustion,
)
from gateway.resilience.deadline import Deadline
from gateway.resilience.fallback import FallbackPolicy, counts_against_backend
from gateway.resilience.specs import FallbackSpec, HedgeSpec
from gateway.resilience.upstreams import Upstream
from gateway.rules import RouteSpec
from routers.decision import RouteDecision

log = logging.getLogger("turnout")

Answer = TypeVar("Answer")
Call = Callable[[Backend, float], Awaitable[Answer]]
Discard = Callable[[Answer], Awaitable[None]]


@dataclass(frozen=True)
class Traced(Generic[Answer]):
    """What a traced race records of its attempts beyond the backend's own facts."""

    tracing: Tracing
    operation: str
    """``chat`` or ``embeddings`` (``gen_ai.operation.name``)."""
    request: Mapping[str, object]
    """``gen_ai.request.*`` of the request."""
    describe: Callable[[Answer], Mapping[str, object]]
    """``gen_ai.response.*`` and ``gen_ai.usage.*`` of an answer."""


MAX_PARALLEL = 2


@dataclass(frozen=True)
class RoutePolicy:
    fallback: FallbackPolicy
    hedge: HedgeSpec | None = None
    reserve_s: float | None = None

    @classmethod
    def of(cls, spec: RouteSpec) -> RoutePolicy:
        reserve = spec.attempt_reserve_ms / 1000 if spec.attempt_reserve_ms is not None else None
        return cls(FallbackPolicy(spec.fallback), spec.hedge, reserve)


PINNED_POLICY = RoutePolicy(FallbackPolicy(FallbackSpec()))


@dataclass(frozen=True)
class _Running:
    upstream: Upstream
    started: float
    timeout_s: float


class BackendRace(Generic[Answer]):
    def __init__(
        self,
        upstreams: Mapping[str, Upstream],
        metrics: Metrics,
        decision: RouteDecision,
        deadline: Deadline,
        policy: RoutePolicy,
        is_stream: bool,
        traced: Traced[Answer] | None = None,
    ) -> None:
        self._upstreams = upstreams
        self._traced = traced
        self._try = self._attempt if traced is None else self._attempt_traced
        """How an attempt is made: bound once, so an untraced race pays nothing for tracing."""
        self._metrics = metrics
        self._decision = decision
        self._deadline = deadline
        self._policy = policy
        self._is_stream = is_stream
        self._pending = deque(decision.backends)
        self._running: dict[asyncio.Task[Answer], _Running] = {}
        self._last_start = 0.0
        self.attempts: list[Attempt] = []
        self._failures: list[BackendError] = []
        self._reopens_in: list[float] = []  # seconds until each skipped breaker lets a probe through

    async def run(self, call: Call[Answer], discard: Discard[Answer] | None = None) -> tuple[str, Answer]:
        """The first good answer and the backend that gave it; raises the route's exhaustion error."""
        if self._policy.hedge is None:
            return await self._one_at_a_time(call)
        try:
            return await self._race(call, discard)
        finally:
            self._cancel_running()

    async def _one_at_a_time(self, call: Call[Answer]) -> tuple[str, Answer]:
        """Without hedging no two attempts overlap: each is awaited in place, with no task to schedule."""
        while (upstream := self._next_upstream()) is not None:
            timeout = self._attempt_timeout(upstream)
            started = time.monotonic()
            upstream.in_flight += 1
            try:
                async with asyncio.timeout(self._time_left()):
                    return upstream.name, await self._try(upstream, call, timeout)
            except BackendError as exc:
                self._failures.append(exc)
                if not self._policy.fallback.moves_on(exc):
                    raise self._exhausted(is_refused=True) from None
            except TimeoutError:  # the budget ran out before the attempt's own timeout said so
                self._out_of_budget(_Running(upstream, started, timeout))
                raise self._exhausted(is_out_of_time=True) from None
            except asyncio.CancelledError:
                upstream.breaker.release()  # the client left: no verdict on the backend
                raise
            finally:
                upstream.in_flight -= 1
        raise self._exhausted()

    async def _race(self, call: Call[Answer], discard: Discard[Answer] | None) -> tuple[str, Answer]:
        wants_another = True
        while True:
            is_started = wants_another and len(self._running) < MAX_PARALLEL and self._start_next(call)
            if not is_started and not self._running:
                raise self._exhausted()
            done = await self._wait()
            if not done:
                if self._is_out_of_time():
                    self._stop_out_of_time()
                    raise self._exhausted(is_out_of_time=True)
                wants_another = True  # the hedge delay passed
                continue
            winner = await self._settle(done, discard)
            if winner is not None:
                return winner
            wants_another = not self._running or self._policy.hedge is not None

    def _next_upstream(self) -> Upstream | None:
        """The next backend that can take the request now; those skipped are recorded as attempts."""
        while self._pending:
            upstream = self._upstreams[self._pending.popleft()]
            skipped = self._skip_reason(upstream)
            if skipped is None:
                return upstream
            self._record(Attempt(upstream.name, skipped))
        return None

    def _start_next(self, call: Call[Answer]) -> bool:
        upstream = self._next_upstream()
        if upstream is None:
            return False
        timeout = self._attempt_timeout(upstream)
        task = asyncio.get_running_loop().create_task(self._try(upstream, call, timeout))
        upstream.in_flight += 1  # counted now, so that concurrent requests see the bound at once
        task.add_done_callback(upstream.attempt_ended)
        if self._running:
            self._metrics.observe_hedge(self._decision.route)
        self._last_start = time.monotonic()
        self._running[task] = _Running(upstream, self._last_start, timeout)
        return True

    def _skip_reason(self, upstream: Upstream) -> str | None:
        if upstream.is_full:
            return SKIPPED_BUSY
        typical = upstream.latencies(self._is_stream).percentile(0.5)
        if typical is not None and typical > self._time_left():
            return SKIPPED_TOO_SLOW
        if not upstream.breaker.try_acquire():
            self._reopens_in.append(upstream.breaker.seconds_until_probe())
            return SKIPPED_BREAKER_OPEN
        return None

    def _attempt_timeout(self, upstream: Upstream) -> float:
        """The time left minus the fallbacks' reserves, but never less than an equal share of it."""
        left = self._time_left()
        later = [self._upstreams[name] for name in self._pending]
        reserved = sum(self._reserve(u) for u in later)
        return min(upstream.timeout_s, max(left - reserved, left / (len(later) + 1)))

    def _reserve(self, upstream: Upstream) -> float:
        if self._policy.reserve_s is not None:
            return self._policy.reserve_s
        p95 = upstream.latencies(self._is_stream).percentile(0.95)
        if p95 is not None:
            return p95
        return self._budget_s() / len(self._decision.backends)

    async def _attempt(self, upstream: Upstream, call: Call[Answer], timeout_s: float) -> Answer:
        started = time.monotonic()
        last, upstream.last_real = upstream.last_real, started
        is_cold = last is None or started - last >= upstream.cold_after_s
        try:
            answer = await call(upstream.backend, timeout_s)
        except BackendError as exc:
            self._failed(upstream, exc, timeout_s, started)
            raise
        except asyncio.CancelledError:
            if self._running.pop(asyncio.current_task(), None) is not None:  # type: ignore[arg-type]
                self._record(Attempt(upstream.name, CANCELLED, _ms_since(started)))  # a hedge that lost
            raise
        except TimeoutError:  # the request's budget, raised by the caller's timeout: its concern
            raise
        except Exception as exc:  # an adapter bug: the backend still failed, and a probe must settle
            log.exception("backend %s failed with an unmapped %s", upstream.name, type(exc).__name__)
            error = BackendBadResponse(f"backend {upstream.name!r} failed: {type(exc).__name__}")
            self._failed(upstream, error, timeout_s, started)
            raise error from exc
        upstream.breaker.record_success()
        took = time.monotonic() - started
        upstream.latencies(self._is_stream).add(took)
        if is_cold:
            self._metrics.observe_cold(upstream.name, took)
        self._record(Attempt(upstream.name, "ok", _ms_since(started)))
        return answer

    async def _attempt_traced(self, upstream: Upstream, call: Call[Answer], timeout_s: float) -> Answer:
        """:meth:`_attempt` inside its CLIENT span, whose trace context goes upstream with it."""
        traced = self._traced
        assert traced is not None
        model = upstream.gen_ai.get("gen_ai.request.model", upstream.name)
        attributes = {**upstream.gen_ai, **traced.request, "turnout.backend": upstream.name}
        span = traced.tracing.attempt(f"{traced.operation} {model}", attributes)
        token = TRACE_HEADERS.set(span.headers())
        started = time.monotonic()
        try:
            answer = await self._attempt(upstream, call, timeout_s)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                span.set({"turnout.outcome": "cancelled"})  # a hedge that lost, or the client left
            else:
                span.fail(_error_type(exc))
            span.end()
            raise
        finally:
            TRACE_HEADERS.reset(token)
        if self._is_stream:
            span.event("gen_ai.first_chunk", {"turnout.first_chunk_ms": round((time.monotonic() - started) * 1000, 1)})
        span.set(traced.describe(answer))
        span.end()
        return answer

    def _failed(self, upstream: Upstream, error: BackendError, timeout_s: float, started: float) -> None:
        self._blame(upstream, error, timeout_s)
        self._record(Attempt(upstream.name, error.code or "error", _ms_since(started), error.upstream_status))

    def _blame(self, upstream: Upstream, error: BackendError, timeout_s: float) -> None:
        """Tell the breaker. A timeout counts only if the attempt had the time the backend usually needs
        (its p95), or, before that is known, if the client did not tighten the budget: one client's
        tight budget must not open the breaker for everyone."""
        usual = upstream.latencies(self._is_stream).percentile(0.95)
        if not isinstance(error, BackendTimeout):
            is_fair = True
        elif usual is None:
            is_fair = not self._deadline.is_tightened
        else:
            is_fair = timeout_s >= usual
        if counts_against_backend(error) and is_fair:
            upstream.breaker.record_failure()
        else:
            upstream.breaker.release()

    async def _wait(self) -> set[asyncio.Task[Answer]]:
        timeout = self._time_left()
        hedge = self._policy.hedge
        if hedge is not None and self._pending and len(self._running) < MAX_PARALLEL:
            waited = time.monotonic() - self._last_start
            timeout = min(timeout, max(0.0, self._hedge_delay(hedge) - waited))
        done, _ = await asyncio.wait(self._running, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        return done

    def _hedge_delay(self, hedge: HedgeSpec) -> float:
        if hedge.adaptive:
            primary = self._upstreams[self._decision.backends[0]]
            p95 = primary.latencies(self._is_stream).percentile(0.95)
            if p95 is not None:
                return max(p95, hedge.min_delay_ms / 1000)
        return hedge.delay_ms / 1000

    async def _settle(
        self, done: set[asyncio.Task[Answer]], discard: Discard[Answer] | None
    ) -> tuple[str, Answer] | None:
        winner: tuple[str, Answer] | None = None
        for task in done:
            upstream = self._running.pop(task).upstream
            error = task.exception()
            if error is None:
                if winner is None:
                    winner = (upstream.name, task.result())
                elif discard is not None:  # two answered at once: close the second
                    await discard(task.result())
                continue
            if not isinstance(error, BackendError):
                raise error
            self._failures.append(error)
            if not self._policy.fallback.moves_on(error):
                self._pending.clear()  # no further backend for this request; one still running may answer
                if winner is None and not self._running:
                    raise self._exhausted(is_refused=True)
        return winner

    def _stop_out_of_time(self) -> None:
        """The budget ran out with attempts still running: each counts as a timeout."""
        for running in self._running.values():
            self._out_of_budget(running)
        self._cancel_running(is_recorded=True)

    def _out_of_budget(self, running: _Running) -> None:
        """An attempt cut short by the request's budget: a timeout, for the breaker and the record."""
        upstream = running.upstream
        self._blame(upstream, BackendTimeout(f"backend {upstream.name!r}: out of budget"), running.timeout_s)
        self._record(Attempt(upstream.name, "budget_exceeded", _ms_since(running.started)))

    def _cancel_running(self, is_recorded: bool = False) -> None:
        """Cancel what still runs; its connections close as the tasks unwind, without being waited for."""
        running = list(self._running.items())
        if is_recorded:
            self._running.clear()
        for task, attempt in running:
            if not task.done():
                task.cancel()
                attempt.upstream.closing.add(task)  # released by the attempt's own done-callback

    def _record(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)
        self._metrics.observe_attempt(attempt.backend, attempt.outcome)

    def _is_out_of_time(self) -> bool:
        return self._deadline.is_expired(first_chunk=self._is_stream)

    def _time_left(self) -> float:
        if self._is_stream:
            return self._deadline.remaining_first_chunk()
        return self._deadline.remaining()

    def _budget_s(self) -> float:
        end = self._deadline.first_chunk_expires if self._is_stream else self._deadline.expires
        return end - self._deadline.started

    def _exhausted(self, is_refused: bool = False, is_out_of_time: bool = False) -> BackendError:
        return Exhaustion(
            route=self._decision.route,
            budget_ms=round(self._budget_s() * 1000),
            elapsed_ms=self._deadline.elapsed_ms(),
            budget_name="first-chunk budget" if self._is_stream else "latency budget",
            is_out_of_time=is_out_of_time or self._is_out_of_time(),
            attempts=list(self.attempts),
            failures=self._failures,
            is_refused=is_refused,
            retry_after_s=min(self._reopens_in) if self._reopens_in else None,
        ).error()


def _error_type(exc: BaseException) -> str:
    if isinstance(exc, BackendError):
        return exc.code or type(exc).__name__
    return "budget_exceeded" if isinstance(exc, TimeoutError) else type(exc).__name__


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)

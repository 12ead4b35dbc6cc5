"""Each backend with what the gateway knows of it: breaker, recent latencies, requests in flight."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from backends.base import Backend, Health
from gateway.resilience.breaker import CircuitBreaker
from gateway.resilience.latency_window import LatencyWindow
from gateway.rules import BackendSpec


@dataclass(frozen=True)
class CheckResult:
    health: Health
    checked_at: float
    """``time.time()`` of the check."""


@dataclass(eq=False)
class Upstream:
    backend: Backend
    timeout_s: float
    breaker: CircuitBreaker
    max_in_flight: int | None = None
    in_flight: int = 0
    answers: LatencyWindow = field(default_factory=LatencyWindow)
    """Seconds to a whole answer (``complete`` and ``embed``)."""
    first_chunks: LatencyWindow = field(default_factory=LatencyWindow)
    """Seconds to a stream's first chunk."""
    last_check: CheckResult | None = None
    """The last periodic health check; it stays with the backend across a rules swap."""
    cold_after_s: float = 300.0
    """An attempt after this long without a real one is cold (its latency also goes to the cold histogram)."""
    last_real: float | None = None
    """``time.monotonic()`` of the last attempt for a client; ``None`` before the first."""
    last_warm: float | None = None
    """... and of the last warm-up request."""
    gen_ai: dict[str, object] = field(default_factory=dict)
    """The backend as the GenAI semantic conventions name it (provider, model, server), for its spans."""
    closing: set[asyncio.Task[Any]] = field(default_factory=set)
    """Attempts cancelled (lost hedges, budgets run out) still closing their connections: held here
    until done, since the event loop keeps only weak references to tasks."""

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def is_full(self) -> bool:
        return self.max_in_flight is not None and self.in_flight >= self.max_in_flight

    def attempt_ended(self, task: asyncio.Task[Any]) -> None:
        """Done-callback of every attempt, even one cancelled before it ran."""
        self.in_flight -= 1
        if task.cancelled():
            self.breaker.release()  # a hedge that lost, or the client left: no verdict on the backend
        if task in self.closing:
            self.closing.discard(task)
            if not task.cancelled():
                task.exception()  # it finished before the cancel landed; nobody waits for its outcome

    def with_policy(self, spec: BackendSpec, previous: BackendSpec) -> Upstream:
        """The same backend (not reopened) under a new policy, keeping what it has learnt: its
        latencies, its last health check, and its breaker's state while the breaker's spec is the same.
        Attempts already running finish on this object; the new one counts those started from now."""
        breaker = self.breaker if spec.breaker == previous.breaker else CircuitBreaker(self.name, spec.breaker)
        return Upstream(
            backend=self.backend,
            timeout_s=spec.timeout_s,
            breaker=breaker,
            max_in_flight=spec.max_in_flight,
            answers=self.answers,
            first_chunks=self.first_chunks,
            last_check=self.last_check,
            cold_after_s=spec.cold_after_s,
            last_real=self.last_real,
            last_warm=self.last_warm,
            gen_ai=self.gen_ai,
        )

    def latencies(self, is_stream: bool) -> LatencyWindow:
        return self.first_chunks if is_stream else self.answers

    def is_idle(self, now: float, idle_s: float) -> bool:
        """Whether neither a client nor a warm-up has asked it for ``idle_s`` (nor ever, when never)."""
        last = max(self.last_real or 0.0, self.last_warm or 0.0)
        return now - last >= idle_s


def open_upstream(backend: Backend, spec: BackendSpec) -> Upstream:
    return Upstream(
        backend=backend,
        timeout_s=spec.timeout_s,
        breaker=CircuitBreaker(backend.name, spec.breaker),
        max_in_flight=spec.max_in_flight,
        cold_after_s=spec.cold_after_s,
        gen_ai=gen_ai_attributes(spec),
    )


def gen_ai_attributes(spec: BackendSpec) -> dict[str, object]:
    """``gen_ai.provider.name``, ``gen_ai.request.model``, ``server.address`` and ``server.port``."""
    attributes: dict[str, object] = {"gen_ai.request.model": spec.model}
    if spec.kind == "litellm":
        attributes["gen_ai.provider.name"] = spec.model.partition("/")[0] if "/" in spec.model else "openai"
        where = getattr(spec, "api_base", None)
    else:
        attributes["gen_ai.provider.name"] = "llama.cpp" if spec.kind == "local" else "openai"
        where = getattr(spec, "endpoint", None)
    if where:
        parsed = urlsplit(str(where))
        attributes["server.address"] = parsed.hostname
        attributes["server.port"] = parsed.port or (443 if parsed.scheme == "https" else 80)
    return attributes

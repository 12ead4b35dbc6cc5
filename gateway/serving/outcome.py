"""What one API request came to, observed once by metrics, cost reports and the access log."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from starlette.requests import Request

from contracts.errors import GatewayError
from gateway.auth import Principal
from gateway.guardrails.engine import Ledger
from gateway.observe import Outcome, Served, deltas_of, with_decision, with_guardrails
from gateway.observe.access_log import access_logging, log_access
from gateway.resources import Resources
from gateway.rollouts.shadow import ShadowCase
from gateway.snapshot import RulesSnapshot
from routers.decision import RouteDecision

log = logging.getLogger("turnout")


def status_of(exc: BaseException) -> int:
    """The status a request that raised ``exc`` is recorded with: the error's own, 499 when the
    client left (its task was cancelled), 500 for anything unexpected (the catch-all handler's)."""
    if isinstance(exc, GatewayError):
        return exc.status
    return 499 if isinstance(exc, asyncio.CancelledError) else 500


@dataclass(frozen=True)
class Tokens:
    """What an answer used and cost: from its backend's usage, or from the cache entry that replayed it."""

    prompt: int = 0
    completion: int = 0
    cost_usd: float = 0.0


@dataclass
class RequestOutcome:
    """What each stage of the request path returned, kept as it returns it (:mod:`gateway.serving.path`);
    ``observe`` assembles the record from them once the request ends, however far it got."""

    endpoint: str
    request_id: str
    started: float = field(default_factory=time.monotonic)
    """When the request arrived: its deadline counts from here, and its latency metric."""
    principal: Principal | None = None
    """Admission's answer: who asked."""
    decision: RouteDecision | None = None
    """Routing's answer."""
    cache: str = "bypass"
    """The cache lookup's answer: hit, miss, bypass or off."""
    backend: str = "-"
    """Dispatch's answer: the backend that answered (a hit's: the one that first did)."""
    tokens: Tokens = field(default_factory=Tokens)
    """Settlement's answer (or the hit's entry)."""
    ended_status: int | None = None
    """A stream's own end (200 whole, the error's status when cut, 499 when the client left): its
    response started with 200 before that was known."""
    finishing: asyncio.Task[None] | None = None
    """A stream's cache write and pricing, which the observation waits for."""
    first_chunk_s: float | None = None
    """A stream from a backend: seconds from arrival to its first chunk."""
    trace_id: str | None = None
    """The request's trace, when tracing is on: the access log names it, so logs and traces join."""
    shadow: ShadowCase | None = None
    """Settlement drew this request for the route's shadow: asked once the answer is wholly sent."""
    guardrails: Ledger | None = None
    """The guardrails' results, when the route runs any."""

    def guardrail_results(self) -> list[str]:
        """``name:stage:result`` of each check that ran (never what it matched)."""
        ledger = self.guardrails
        return [f"{r.guardrail}:{r.stage}:{r.result}" for r in ledger.results] if ledger is not None else []

    def stream_ended(self, status: int, finishing: asyncio.Task[None]) -> None:
        self.ended_status, self.finishing = status, finishing

    @property
    def tenant(self) -> str:
        return self.principal.tenant if self.principal is not None else "-"

    @property
    def route(self) -> str:
        return self.decision.route if self.decision is not None else "-"

    @property
    def variant(self) -> str:
        variant = self.decision.variant if self.decision is not None else None
        return variant if variant is not None else "-"

    async def observe_once_settled(self, resources: Resources, snapshot: RulesSnapshot, status: int) -> None:
        """Observes the outcome once a stream's cache write is done; ``status`` is the one the
        response started with, or the failure's (:func:`status_of`) when none was sent."""
        try:
            if self.finishing is not None:
                await asyncio.shield(self.finishing)
        except Exception:
            log.exception("finishing a stream (its cache write) failed")
        finally:
            self.observe(resources, snapshot, status if self.ended_status is None else self.ended_status)

    def observe(self, resources: Resources, snapshot: RulesSnapshot, status: int) -> None:
        elapsed, tokens = time.monotonic() - self.started, self.tokens
        variant = self.variant
        resources.metrics.observe_request(self.endpoint, self.route, variant, self.backend, status, elapsed)
        outcome = Outcome(
            route=self.route,
            backend=self.backend,
            tenant=self.tenant,
            cache=self.cache if status == 200 else "error",
            prompt_tokens=tokens.prompt,
            completion_tokens=tokens.completion,
            cost_usd=tokens.cost_usd,
            reference_cost_usd=snapshot.reference_price(tokens.prompt, tokens.completion),
            endpoint=self.endpoint,
            variant=variant,
            latency_ms=elapsed * 1000,
            first_chunk_ms=None if self.first_chunk_s is None else self.first_chunk_s * 1000,
            guardrails=self.guardrails.summary() if self.guardrails is not None else "none",
        )
        deltas = deltas_of(outcome)
        resources.reports.add((self.route, self.backend, outcome.tenant, self.endpoint, variant), deltas)
        decision = self.decision
        if decision is not None:
            with_decision(deltas, decision.decided_by, decision.score)
        if self.guardrails is not None:
            with_guardrails(deltas, ((r.guardrail, r.stage, r.result) for r in self.guardrails.results))
        resources.traffic.add((self.route, self.backend, "-", "-", "-"), deltas)
        if status == 200 and self.principal is not None:
            resources.feedback.remember(
                self.tenant, self.request_id, Served(self.route, variant, self.backend, self.endpoint)
            )
        if status == 200 and self.shadow is not None:
            resources.shadows.offer(self.shadow, elapsed * 1000)
        if not access_logging():
            return
        log_access(
            {
                "request_id": self.request_id,
                "endpoint": self.endpoint,
                "tenant": self.tenant,
                "route": self.route,
                "variant": variant,
                "backend": self.backend,
                "decided_by": self.decision.decided_by if self.decision is not None else "-",
                "cache": self.cache,
                "status": status,
                "ms": round(elapsed * 1000, 1),
                "prompt_tokens": tokens.prompt,
                "completion_tokens": tokens.completion,
            }
            | ({"trace_id": self.trace_id} if self.trace_id is not None else {})
            | ({"guardrails": self.guardrail_results()} if self.guardrails is not None else {})
        )


def request_outcome(request: Request, endpoint: str) -> RequestOutcome:
    """The outcome of this API request, which the request scope (:class:`gateway.front.Gateway`)
    observes in its one ``finally``, once the response is wholly sent."""
    outcome = RequestOutcome(endpoint, getattr(request.state, "request_id", "-"))
    outcome.trace_id = request.scope.get("state", {}).get("trace_id")  # the front's, when tracing is on
    request.state.outcome = outcome
    return outcome

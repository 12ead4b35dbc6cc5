"""What one API request came to, observed once by metrics, cost reports and the access log."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from contracts.errors import GatewayError
from gateway.access_log import log_access
from gateway.admin.reports import Outcome
from gateway.resources import Resources
from gateway.snapshot import RulesSnapshot


def status_of(exc: BaseException) -> int:
    """The status a request that raised ``exc`` is recorded with: the error's own, 499 when the
    client left (its task was cancelled), 500 for anything unexpected (the catch-all handler's)."""
    if isinstance(exc, GatewayError):
        return exc.status
    return 499 if isinstance(exc, asyncio.CancelledError) else 500


@dataclass
class RequestOutcome:
    """Filled in as the request is decided and answered; ``observe`` reports it once it ends."""

    endpoint: str
    request_id: str
    started: float = field(default_factory=time.monotonic)
    """When the request arrived: its deadline counts from here, and its latency metric."""
    tenant: str = "-"
    route: str = "-"
    backend: str = "-"
    decided_by: str = "-"
    cache: str = "bypass"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def priced(self, snapshot: RulesSnapshot, prompt_tokens: int, completion_tokens: int) -> None:
        self.prompt_tokens, self.completion_tokens = prompt_tokens, completion_tokens
        self.cost_usd = snapshot.price(self.backend, prompt_tokens, completion_tokens)

    def observe(self, resources: Resources, snapshot: RulesSnapshot, status: int) -> None:
        elapsed = time.monotonic() - self.started
        resources.metrics.observe_request(self.endpoint, self.route, self.backend, status, elapsed)
        outcome = Outcome(
            route=self.route,
            backend=self.backend,
            tenant=self.tenant,
            cache=self.cache if status == 200 else "error",
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cost_usd=self.cost_usd,
            reference_cost_usd=snapshot.reference_price(self.prompt_tokens, self.completion_tokens),
        )
        resources.reports.record(outcome)
        log_access(
            {
                "request_id": self.request_id,
                "endpoint": self.endpoint,
                "tenant": self.tenant,
                "route": self.route,
                "backend": self.backend,
                "decided_by": self.decided_by,
                "cache": self.cache,
                "status": status,
                "ms": round(elapsed * 1000, 1),
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
            }
        )

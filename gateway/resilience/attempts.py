"""What one request tried: each backend attempt and its outcome, and the error when all failed."""

from __future__ import annotations

import math
from dataclasses import dataclass

from contracts.errors import AnswerRejected, BackendError, BackendsBusy, BudgetExceeded, NoBackendAvailable

SKIPPED_BREAKER_OPEN = "skipped_breaker_open"
SKIPPED_BUSY = "skipped_busy"
SKIPPED_TOO_SLOW = "skipped_too_slow"
CANCELLED = "cancelled"
BUSY_RETRY_AFTER_S = 1


@dataclass
class Attempt:
    backend: str
    outcome: str
    """``ok``, the error's code (``upstream_timeout`` ...), ``cancelled`` (a hedge that lost) or ``skipped_*``."""
    ms: int | None = None
    upstream_status: int | None = None

    @property
    def was_sent(self) -> bool:
        return not self.outcome.startswith("skipped")

    def describe(self) -> str:
        took = f" after {self.ms} ms" if self.ms is not None else ""
        status = f" ({self.upstream_status})" if self.upstream_status else ""
        return f"{self.backend}: {self.outcome}{status}{took}"

    def as_dict(self) -> dict[str, object]:
        return {"backend": self.backend, "outcome": self.outcome, "ms": self.ms, "status": self.upstream_status}


@dataclass(frozen=True)
class Exhaustion:
    """Why a route ran out of options, to build the error the client gets."""

    route: str
    budget_ms: int
    elapsed_ms: int
    budget_name: str
    """``latency budget`` or ``first-chunk budget``."""
    is_out_of_time: bool
    attempts: list[Attempt]
    failures: list[BackendError]
    is_refused: bool = False
    """The last failure does not move on (the request's own fault, or not in the route's fallback list)."""
    retry_after_s: float | None = None
    """When a skipped backend's breaker will let a probe through."""

    def error(self) -> BackendError:
        tried = "; ".join(a.describe() for a in self.attempts) or "nothing tried"
        where = f"route {self.route!r}"
        if self.is_out_of_time:
            error: BackendError = BudgetExceeded(
                f"{where}: the {self.budget_ms} ms {self.budget_name} ran out after {self.elapsed_ms} ms ({tried})"
            )
        elif self.attempts and all(a.outcome == SKIPPED_TOO_SLOW for a in self.attempts):
            # Nothing is down: the budget is shorter than every backend takes. Retrying cannot help.
            error = BudgetExceeded(
                f"{where}: the {self.budget_ms} ms {self.budget_name} is shorter than every backend's typical "
                f"latency ({tried}); allow more time"
            )
        elif not self.failures and any(a.outcome == SKIPPED_BUSY for a in self.attempts):
            error = BackendsBusy(
                f"{where}: every backend is at its in-flight limit ({tried})",
                headers={"retry-after": str(BUSY_RETRY_AFTER_S)},
            )
        elif not self.failures:
            retry = (
                {"retry-after": str(max(1, math.ceil(self.retry_after_s)))} if self.retry_after_s is not None else None
            )
            error = NoBackendAvailable(f"{where}: no backend can take the request now ({tried})", headers=retry)
        else:
            rejected = [f for f in self.failures if isinstance(f, AnswerRejected)]
            error = rejected[-1] if rejected else self.failures[-1]  # an answer withheld, not a 502
            if len(self.attempts) > 1 and not self.is_refused and not rejected:
                error.message = f"{where}: every backend failed ({tried})"
        error.details = {
            "route": self.route,
            "budget_ms": self.budget_ms,
            "elapsed_ms": self.elapsed_ms,
            "attempts": [a.as_dict() for a in self.attempts],
        }
        return error

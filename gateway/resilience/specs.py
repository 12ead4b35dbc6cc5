"""The rules file's promises about time and load: budgets, fallback, hedging, breakers, limits."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from contracts.strict import Strict

FailureKind = Literal["connect", "timeout", "5xx", "429", "bad_response"]
ALL_FAILURE_KINDS: tuple[FailureKind, ...] = ("connect", "timeout", "5xx", "429", "bad_response")


class FallbackSpec(Strict):
    """Which failures of a backend move the request on to the route's next backend."""

    failures: list[FailureKind] = list(ALL_FAILURE_KINDS)
    """``connect``: refused or reset; ``timeout``: no answer in time; ``5xx``; ``429``;
    ``bad_response``: a malformed body, a cut stream, or a misconfigured upstream (401/403/404)."""
    statuses: list[int] = []
    """Further upstream statuses that move on, e.g. ``[400]`` when a bigger model behind the
    fallback accepts prompts the primary rejects. Other 4xx are the request's own fault and do not."""

    @field_validator("failures", mode="before")
    @classmethod
    def _numbers_as_names(cls, value: object) -> object:
        """YAML reads ``429`` as a number; it names the kind all the same."""
        return [str(item) if isinstance(item, int) else item for item in value] if isinstance(value, list) else value


class HedgeSpec(Strict):
    """Start the next backend in parallel when the current one has not answered after a delay."""

    delay_ms: int = Field(500, ge=1, le=600_000)
    """The delay, or the one used until ``adaptive`` has enough samples."""
    adaptive: bool = False
    """Use the primary's recent p95 latency as the delay once it has answered 20 times."""
    min_delay_ms: int = Field(10, ge=1, le=600_000)
    """Floor for the adaptive delay, so a fast primary is not hedged on every request."""


class BreakerSpec(Strict):
    """A circuit breaker per backend: skipped while open, probed by one request when half-open."""

    consecutive_failures: int = Field(5, ge=1, le=10_000)
    failure_ratio: float = Field(0.5, gt=0, le=1)
    """Open when this share of the last ``window`` calls failed, once ``min_calls`` were made."""
    window: int = Field(20, ge=1, le=10_000)
    min_calls: int = Field(10, ge=1, le=10_000)
    open_s: float = Field(10.0, ge=0.1, le=3600)
    """How long it stays open before one request probes it."""


class HealthCheckSpec(Strict):
    """A periodic, cheap check (``GET /models`` for HTTP backends) whose failures feed the breaker."""

    enabled: bool = True
    interval_s: float = Field(10.0, ge=0.1, le=86_400)
    """At least 0.1 s: a check is a request to the model server, never a load on it."""
    timeout_s: float = Field(2.0, ge=0.1, le=300)


class RateLimitSpec(Strict):
    """Per API key, over a sliding minute; shared across replicas through Redis when it is set."""

    requests_per_minute: int | None = Field(None, ge=1, le=10**9)
    tokens_per_minute: int | None = Field(None, ge=1, le=10**12)
    """A request is admitted while the key's tokens of the last minute are under the limit;
    its prompt and completion tokens count once it is answered."""

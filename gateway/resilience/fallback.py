"""Which backend failures move a request on to the route's next backend."""

from __future__ import annotations

from contracts.errors import (
    AnswerRejected,
    BackendError,
    BackendRateLimited,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    ExternalRedactionFailed,
)
from gateway.resilience.specs import FailureKind, FallbackSpec


def failure_kind(error: BackendError) -> FailureKind | None:
    """The kind of failure, or ``None`` for a request the upstream refused as the caller's fault."""
    status = error.upstream_status
    if isinstance(error, BackendRejected | AnswerRejected | ExternalRedactionFailed):
        return None
    if isinstance(error, BackendTimeout):
        return "timeout"
    if isinstance(error, BackendRateLimited):
        return "429"
    if status is not None and status >= 500:
        return "5xx"
    if isinstance(error, BackendUnavailable):
        return "connect"
    return "bad_response"


class FallbackPolicy:
    def __init__(self, spec: FallbackSpec) -> None:
        self._kinds = frozenset(spec.failures)
        self._statuses = frozenset(spec.statuses)

    def moves_on(self, error: BackendError) -> bool:
        if isinstance(error, AnswerRejected | ExternalRedactionFailed):
            return True  # the guardrail asked for the next backend, whatever the route's failures list
        if error.upstream_status in self._statuses:
            return True
        kind = failure_kind(error)
        return kind is not None and kind in self._kinds


def counts_against_backend(error: BackendError) -> bool:
    """Whether the failure says something about the backend's health (for its circuit breaker)."""
    return failure_kind(error) is not None

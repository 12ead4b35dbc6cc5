"""Which failures move a request on to the next backend."""

from __future__ import annotations

import pytest

from contracts.errors import (
    BackendBadResponse,
    BackendError,
    BackendRateLimited,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
)
from gateway.resilience.fallback import FallbackPolicy, failure_kind
from gateway.resilience.specs import FallbackSpec


def answered(error: BackendError, status: int) -> BackendError:
    error.upstream_status = status
    return error


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (BackendUnavailable("refused"), "connect"),
        (answered(BackendUnavailable("503"), 503), "5xx"),
        (BackendTimeout("slow"), "timeout"),
        (answered(BackendBadResponse("500"), 500), "5xx"),
        (BackendBadResponse("garbage"), "bad_response"),
        (answered(BackendBadResponse("401"), 401), "bad_response"),
        (answered(BackendRateLimited("429"), 429), "429"),
        (BackendRejected("bad request", status=400), None),
    ],
)
def test_failure_kinds(error: BackendError, kind: str | None) -> None:
    assert failure_kind(error) == kind


def test_default_policy_moves_on_for_backend_faults_but_not_the_callers() -> None:
    policy = FallbackPolicy(FallbackSpec())
    assert policy.moves_on(BackendTimeout("slow"))
    assert policy.moves_on(answered(BackendRateLimited("429"), 429))
    assert not policy.moves_on(answered(BackendRejected("too long", status=400), 400))


def test_policy_narrows_to_chosen_kinds_and_widens_to_chosen_statuses() -> None:
    policy = FallbackPolicy(FallbackSpec(failures=["connect"], statuses=[400]))
    assert policy.moves_on(BackendUnavailable("refused"))
    assert not policy.moves_on(answered(BackendBadResponse("500"), 500))
    assert policy.moves_on(answered(BackendRejected("context too long", status=400), 400))


def test_unquoted_429_in_yaml_names_the_kind() -> None:
    spec = FallbackSpec.model_validate({"failures": ["connect", 429, "5xx"]})
    assert spec.failures == ["connect", "429", "5xx"]

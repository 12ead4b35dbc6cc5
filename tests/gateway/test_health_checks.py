"""Health checks feed the breakers, except when nothing was probed."""

from __future__ import annotations

from typing import Any, cast

from backends.base import Backend, Health
from gateway.resilience.breaker import CircuitBreaker
from gateway.resilience.health_checks import HealthChecker
from gateway.resilience.specs import BreakerSpec, HealthCheckSpec
from gateway.resilience.upstreams import Upstream


class FixedHealth:
    """A backend double whose health is set by the test."""

    def __init__(self, health: Health) -> None:
        self.name = "b"
        self.health_result = health

    async def health(self, timeout_s: float) -> Health:
        return self.health_result


def checker(health: Health) -> tuple[HealthChecker, Upstream]:
    backend = cast(Backend, cast(Any, FixedHealth(health)))
    upstream = Upstream(backend, 1.0, CircuitBreaker("b", BreakerSpec(consecutive_failures=2, open_s=60)))
    return HealthChecker({"b": upstream}, {"b": HealthCheckSpec()}), upstream


async def test_failed_checks_open_the_breaker() -> None:
    health, upstream = checker(Health(is_healthy=False, detail="refused"))
    await health.check("b", 1)
    assert upstream.breaker.state == "closed"
    await health.check("b", 1)
    assert upstream.breaker.state == "open"
    assert upstream.last_check is not None
    assert not upstream.last_check.health.is_healthy


async def test_passing_check_half_opens_an_open_breaker() -> None:
    health, upstream = checker(Health(is_healthy=True))
    upstream.breaker.record_failure()
    upstream.breaker.record_failure()
    await health.check("b", 1)
    assert upstream.breaker.state == "half_open"


async def test_unprobed_health_is_no_evidence_for_the_breaker() -> None:
    health, upstream = checker(Health(is_healthy=True, detail="external API, not probed", is_probed=False))
    upstream.breaker.record_failure()
    upstream.breaker.record_failure()
    await health.check("b", 1)
    assert upstream.breaker.state == "open"

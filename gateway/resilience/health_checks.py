"""Periodic health checks of the backends, feeding their circuit breakers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

from gateway.resilience.specs import HealthCheckSpec
from gateway.resilience.upstreams import CheckResult, Upstream

log = logging.getLogger("turnout")


class HealthChecker:
    """One task per backend with checks enabled. A failed check counts as a failure for the
    breaker; a passed one lets an open breaker be probed without waiting out its ``open_s``."""

    def __init__(self, upstreams: Mapping[str, Upstream], specs: Mapping[str, HealthCheckSpec]) -> None:
        self._upstreams = upstreams
        self._specs = specs
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """The first check runs at once, so readiness reflects the backends from the start."""
        loop = asyncio.get_running_loop()
        for name, spec in self._specs.items():
            if spec.enabled:
                self._tasks.append(loop.create_task(self._watch(name, spec), name=f"health:{name}"))

    async def check(self, name: str, timeout_s: float) -> CheckResult:
        upstream = self._upstreams[name]
        health = await upstream.backend.health(timeout_s)
        result = CheckResult(health, time.time())
        was_healthy = (upstream.last_check or result).health.is_healthy
        upstream.last_check = result
        if not health.is_probed:
            return result
        if not health.is_healthy:
            upstream.breaker.record_failure()
            if was_healthy:
                log.warning("backend %s failed its health check: %s", name, health.detail)
        else:
            upstream.breaker.hint_recovered()
        return result

    async def _watch(self, name: str, spec: HealthCheckSpec) -> None:
        while True:
            try:
                await self.check(name, spec.timeout_s)
            except Exception:  # a checker must outlive any one failure
                log.exception("health check of %s failed unexpectedly", name)
            await asyncio.sleep(spec.interval_s)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

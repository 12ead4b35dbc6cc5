"""Drift checks: every ``golden.every_s`` one replica of the fleet runs each route's golden set
against the live primary (each variant's primary too), so a model server redeployed under the same
name with worse weights is caught. With Redis, the replica that takes the route's short lock
(``tn:golden:lock:<route>``, held for one period) runs it and stores the result for all to show;
without Redis the process runs it alone. A run below the bar logs one WARNING naming the failing rows."""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from typing import Any

import orjson

from gateway.golden.runner import SetResult, run_set
from gateway.golden.sets import GoldenInvalid, load_set
from gateway.golden.synthetic import book_synthetic
from gateway.live.gate import primaries
from gateway.redis_client import REDIS_FAILURES
from gateway.state import GatewayState

log = logging.getLogger("turnout")
TICK_S = 1.0
KEEP_S = 40 * 24 * 3600
STORE_TIMEOUT_S = 1.0


class DriftChecks:
    def __init__(self, state: GatewayState) -> None:
        self._state = state
        self._redis: Any | None = state.resources.redis
        self._replica = secrets.token_hex(8)
        self._due: dict[str, float] = {}
        self._last: dict[str, dict[str, Any]] = {}
        """Without Redis: each route's last results, by backend."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._forever())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def last_results(self) -> dict[str, dict[str, Any]]:
        """Each route's last drift run per backend (from whichever replica ran it)."""
        routes = [name for name, spec in self._state.snapshot.rules.routes.items() if spec.golden is not None]
        if self._redis is None or not routes:
            return {route: self._last[route] for route in routes if route in self._last}
        try:
            async with asyncio.timeout(STORE_TIMEOUT_S):
                found = await self._redis.mget([f"tn:golden:last:{route}" for route in routes])
        except (*REDIS_FAILURES, TimeoutError):
            return {}
        return {route: orjson.loads(raw) for route, raw in zip(routes, found, strict=True) if raw}

    async def _forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                await self.run_due()
            except Exception:
                log.exception("golden drift checks failed")

    async def run_due(self) -> None:
        now = time.monotonic()
        for route, spec in self._state.snapshot.rules.routes.items():
            golden = spec.golden
            if golden is None or golden.every_s is None:
                self._due.pop(route, None)
                continue
            due = self._due.setdefault(route, now + golden.every_s)
            if now < due:
                continue
            self._due[route] = now + golden.every_s
            if await self._lead(route, golden.every_s):
                await self._check(route)

    async def _lead(self, route: str, every_s: int) -> bool:
        """Whether this replica runs the route's check this period (the one that takes its lock)."""
        if self._redis is None:
            return True
        try:
            async with asyncio.timeout(STORE_TIMEOUT_S):
                taken = await self._redis.set(f"tn:golden:lock:{route}", self._replica, nx=True, px=every_s * 1000)
        except (*REDIS_FAILURES, TimeoutError):
            return False  # no store, no way to know nobody else runs it: the next period tries again
        return bool(taken)

    async def _check(self, route: str) -> None:
        snapshot = self._state.snapshot
        spec = snapshot.rules.routes[route]
        assert spec.golden is not None
        try:
            golden = await asyncio.to_thread(load_set, spec.golden.set)
        except GoldenInvalid as exc:
            log.warning("golden drift check of route %s skipped: %s", route, exc)
            return
        results: dict[str, Any] = {}
        for backend in sorted(primaries(spec)):
            resources = self._state.resources
            book = functools.partial(book_synthetic, resources.reports, snapshot.rules, route, backend, kind="golden")
            upstream = snapshot.upstreams[backend].backend
            result = await run_set(golden, upstream, spec.golden, resources.agreement.similarity, route, book)
            self._state.resources.metrics.observe_golden_run(route, backend, "drift", result.passed, result.pass_ratio)
            _warn_if_failed(result)
            results[backend] = result.summary() | {"at": time.time()}
        await self._remember(route, results)

    async def _remember(self, route: str, results: dict[str, Any]) -> None:
        if self._redis is None:
            self._last[route] = results
            return
        try:
            async with asyncio.timeout(STORE_TIMEOUT_S):
                await self._redis.set(f"tn:golden:last:{route}", orjson.dumps(results), ex=KEEP_S)
        except (*REDIS_FAILURES, TimeoutError) as exc:
            log.warning("golden drift result of route %s not stored: %s", route, exc)


def _warn_if_failed(result: SetResult) -> None:
    if result.passed:
        return
    failing = ", ".join(
        f"{row.name}{' (critical)' if row.critical else ''}: {'; '.join(row.failures)}"
        for row in result.rows
        if not row.passed
    )
    log.warning(
        "golden drift: route %s on %s passed %.0f%% (%.0f%% needed); failing: %s",
        result.route, result.backend, result.pass_ratio * 100, result.min_pass_ratio * 100, failing,
    )  # fmt: skip

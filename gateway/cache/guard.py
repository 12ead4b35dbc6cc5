"""Calling the cache's store so that a failing or slow store never fails a request.

A call is abandoned after a few milliseconds and the request is served uncached
(``x-turnout-cache: off``). After a few failures in a row the store is left alone for a growing
back-off, and the incident is logged once, not per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import TypeVar

from gateway.metrics import Metrics

log = logging.getLogger("turnout")
T = TypeVar("T")
FAILURES_TO_TRIP = 3


class CacheUnavailable(Exception):
    pass


class StoreGuard:
    """Calls the store with a deadline; after failures in a row, skips it for a doubling back-off."""

    def __init__(self, timeout_s: float, metrics: Metrics) -> None:
        self._timeout_s = timeout_s
        self._metrics = metrics
        self._retry_at = 0.0
        self._backoff_s = 0.5
        self._failures = 0
        self._is_down = False

    async def call(self, operation: Awaitable[T]) -> T:
        if time.monotonic() < self._retry_at:
            if asyncio.iscoroutine(operation):
                operation.close()
            raise CacheUnavailable
        try:
            async with asyncio.timeout(self._timeout_s):
                result = await operation
        except Exception as exc:
            self._failed(exc)
            raise CacheUnavailable from exc
        self._failures = 0
        if self._is_down:
            log.warning("cache store is back; serving from cache again")
            self._is_down, self._backoff_s = False, 0.5
        return result

    def _failed(self, exc: Exception) -> None:
        self._metrics.observe_cache_error()
        self._failures += 1
        if self._failures < FAILURES_TO_TRIP:
            return
        self._retry_at = time.monotonic() + self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, 30.0)
        if not self._is_down:
            self._is_down = True
            log.warning(
                "cache store failed (%s: %s); serving uncached, retrying with back-off", type(exc).__name__, exc
            )

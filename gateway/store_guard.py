"""The one policy for calling a shared store (Redis) on the request path: a store that fails or
is slow never fails a request, and an outage costs each request nothing after the first few.

Each call has a deadline of a few milliseconds (``TURNOUT_CACHE_TIMEOUT_MS``). Any failure, a
timeout included, is :class:`StoreUnavailable` to the caller, which serves without the store (the
cache uncached, limits open). After ``FAILURES_TO_TRIP`` failures in a row the store is not called at
all for a doubling back-off (0.5 s to 30 s), and the incident is logged once, not per request. The
response cache and the rate limits each have one guard over the same policy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger("turnout")
T = TypeVar("T")
FAILURES_TO_TRIP = 3
FIRST_BACKOFF_S = 0.5
LONGEST_BACKOFF_S = 30.0


class StoreUnavailable(Exception):
    """The store failed, timed out, or is being left alone after failing."""


class StoreGuard:
    """Calls one store with a deadline; after failures in a row, skips it for a doubling back-off."""

    def __init__(self, what: str, timeout_s: float, on_failure: Callable[[], None]) -> None:
        self._what = what
        """What the store serves, for the log: ``cache store``, ``rate-limit store``."""
        self._timeout_s = timeout_s
        self._on_failure = on_failure
        self._retry_at = 0.0
        self._backoff_s = FIRST_BACKOFF_S
        self._failures = 0
        self._is_down = False

    async def call(self, operation: Awaitable[T]) -> T:
        if time.monotonic() < self._retry_at:
            if asyncio.iscoroutine(operation):
                operation.close()
            raise StoreUnavailable
        try:
            async with asyncio.timeout(self._timeout_s):
                result = await operation
        except Exception as exc:
            self._failed(exc)
            raise StoreUnavailable from exc
        self._failures = 0
        if self._is_down:
            log.warning("%s is back; using it again", self._what)
            self._is_down, self._backoff_s = False, FIRST_BACKOFF_S
        return result

    def _failed(self, exc: Exception) -> None:
        self._on_failure()
        self._failures += 1
        if self._failures < FAILURES_TO_TRIP:
            return
        self._retry_at = time.monotonic() + self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, LONGEST_BACKOFF_S)
        if not self._is_down:
            self._is_down = True
            log.warning(
                "%s failed (%s: %s); serving without it, retrying with back-off", self._what, type(exc).__name__, exc
            )

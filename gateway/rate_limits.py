"""Per-API-key limits on requests and tokens per minute, over a sliding window.

The window is the current minute plus the previous one weighted by how much of it still
overlaps the last 60 seconds. Counters live in Redis when ``TURNOUT_REDIS_URL`` is set, so
every replica sees the same totals, and in the process otherwise. A failing store lets requests
through (and counts the failure): limits degrade, service does not.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

from contracts.errors import RateLimited
from gateway.auth import Principal
from gateway.metrics import Metrics
from gateway.redis_client import close_redis, redis_client

log = logging.getLogger("turnout")
WINDOW_S = 60
UNLIMITED = 2**53
KEEP_S = 150  # a counter must outlive the next window, which weighs it

# KEYS: current window, previous window. ARGV: cost to check, amount to add, elapsed fraction, limit.
TAKE_SCRIPT = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local prev = tonumber(redis.call('GET', KEYS[2]) or '0')
if prev * (1 - tonumber(ARGV[3])) + cur + tonumber(ARGV[1]) > tonumber(ARGV[4]) then
  return {0, prev, cur}
end
if tonumber(ARGV[2]) > 0 then
  redis.call('INCRBY', KEYS[1], ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
end
return {1, prev, cur}
"""


@dataclass(frozen=True)
class Window:
    """The counters a decision was made on."""

    is_admitted: bool
    previous: int
    current: int


class LimitStore(Protocol):
    async def take(self, name: str, window: int, fraction: float, check: int, add: int, limit: int) -> Window:
        """Admit when the sliding usage plus ``check`` fits ``limit``; if admitted, add ``add``."""
        ...

    async def aclose(self) -> None: ...


class MemoryLimitStore:
    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}

    async def take(self, name: str, window: int, fraction: float, check: int, add: int, limit: int) -> Window:
        previous = self._counts.get((name, window - 1), 0)
        current = self._counts.get((name, window), 0)
        if previous * (1 - fraction) + current + check > limit:
            return Window(False, previous, current)
        if add:
            if (name, window) not in self._counts:
                self._forget_before(window - 1)
            self._counts[(name, window)] = current + add
        return Window(True, previous, current)

    def _forget_before(self, window: int) -> None:
        for key in [key for key in self._counts if key[1] < window]:
            del self._counts[key]

    async def aclose(self) -> None:
        self._counts.clear()


class RedisLimitStore:
    def __init__(self, client: Any, owns_client: bool = False) -> None:
        self._redis = client
        self._owns_client = owns_client
        self._take = client.register_script(TAKE_SCRIPT)

    @classmethod
    def from_url(cls, url: str, timeout_s: float) -> RedisLimitStore:
        return cls(redis_client(url, timeout_s), owns_client=True)

    async def take(self, name: str, window: int, fraction: float, check: int, add: int, limit: int) -> Window:
        slot = "{" + name + "}"  # both windows in one Cluster hash slot, as a script needs
        keys = [f"tn:rl:{slot}:{window}", f"tn:rl:{slot}:{window - 1}"]
        admitted, previous, current = await self._take(keys=keys, args=[check, add, fraction, limit, KEEP_S])
        return Window(bool(admitted), int(previous), int(current))

    async def aclose(self) -> None:
        if self._owns_client:
            await close_redis(self._redis)


class RateLimiter:
    def __init__(self, store: LimitStore, metrics: Metrics, timeout_s: float) -> None:
        self._store = store
        self._metrics = metrics
        self._timeout_s = timeout_s
        self._is_failing = False

    async def admit(self, principal: Principal) -> None:
        """Raise ``RateLimited`` (429 with Retry-After) when the key is over one of its limits."""
        limits = principal.limits
        if limits is None:
            return
        if limits.requests_per_minute is not None:
            await self._take(principal, "requests", 1, 1, limits.requests_per_minute)
        if limits.tokens_per_minute is not None:
            await self._take(principal, "tokens", 1, 0, limits.tokens_per_minute)

    async def spend_tokens(self, principal: Principal, tokens: int) -> None:
        """Count an answer's tokens against the key's token limit."""
        if principal.limits is None or principal.limits.tokens_per_minute is None or tokens <= 0:
            return
        await self._take(principal, "tokens", 0, tokens, UNLIMITED)

    async def _take(self, principal: Principal, kind: str, check: int, add: int, limit: int) -> None:
        now = time.time()
        window, fraction = int(now // WINDOW_S), (now % WINDOW_S) / WINDOW_S
        try:
            async with asyncio.timeout(self._timeout_s):
                decision = await self._store.take(f"{principal.key_id}:{kind}", window, fraction, check, add, limit)
        except Exception as exc:  # the limit store must never take the gateway down
            self._metrics.observe_rate_limit_error()
            if not self._is_failing:
                log.warning("rate-limit store failed (%s: %s); letting requests through", type(exc).__name__, exc)
            self._is_failing = True
            return
        self._is_failing = False
        if decision.is_admitted:
            return
        self._metrics.observe_rate_limited(principal.tenant, kind)
        wait_s = retry_after_s(decision, fraction, check, limit)
        raise RateLimited(
            f"this API key is over its limit of {limit} {kind} per minute; retry in {wait_s} s",
            headers={"retry-after": str(wait_s)},
            code=f"{kind}_per_minute_exceeded",
        )

    async def aclose(self) -> None:
        await self._store.aclose()


def retry_after_s(window: Window, fraction: float, check: int, limit: int) -> int:
    """Seconds until the sliding usage leaves room for ``check`` more, rounded up (at least 1)."""
    over = window.previous * (1 - fraction) + window.current + check - limit
    if window.previous > 0 and over / window.previous <= 1 - fraction:
        return max(1, math.ceil(over / window.previous * WINDOW_S))
    # Not before the window rolls: then the current count becomes the decaying previous one.
    into_next = 1 - (limit - check) / window.current if window.current > 0 else 0.0
    return max(1, math.ceil((1 - fraction + max(0.0, into_next)) * WINDOW_S))


def open_rate_limiter(redis: Any | None, metrics: Metrics, timeout_s: float) -> RateLimiter:
    """Counters in Redis over the process's shared client when there is one; in the process otherwise."""
    store: LimitStore = MemoryLimitStore() if redis is None else RedisLimitStore(redis)
    return RateLimiter(store, metrics, timeout_s)

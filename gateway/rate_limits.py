"""Per-API-key limits on requests and tokens per minute, over a sliding window.

The window is the current minute plus the previous one weighted by how much of it still
overlaps the last 60 seconds. Counters live in Redis when ``TURNOUT_REDIS_URL`` is set, so
every replica sees the same totals, and in the process otherwise. A failing store lets requests
through (and counts the failure): limits degrade, service does not.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

from contracts.errors import RateLimited
from gateway.auth import Principal
from gateway.observe.metrics import Metrics
from gateway.redis_client import close_redis, redis_client
from gateway.store_guard import StoreGuard, StoreUnavailable

WINDOW_S = 60
UNLIMITED = 2**53
KEEP_S = 150  # a counter must outlive the next window, which weighs it

# KEYS: per counter, its current and previous window. ARGV: elapsed fraction, keep seconds, then per
# counter: cost to check, amount to add, limit. All or nothing: when one counter would go over, none
# is added to, and the answer names it (1-based) with its windows; {0, 0, 0} when admitted.
TAKE_SCRIPT = """
local fraction = tonumber(ARGV[1])
for i = 1, #KEYS / 2 do
  local cur = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  local prev = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  if prev * (1 - fraction) + cur + tonumber(ARGV[3 * i]) > tonumber(ARGV[3 * i + 2]) then
    return {i, prev, cur}
  end
end
for i = 1, #KEYS / 2 do
  local add = tonumber(ARGV[3 * i + 1])
  if add > 0 then
    redis.call('INCRBY', KEYS[2 * i - 1], add)
    redis.call('EXPIRE', KEYS[2 * i - 1], ARGV[2])
  end
end
return {0, 0, 0}
"""


@dataclass(frozen=True)
class Take:
    """One counter of a key in one decision: admit if ``check`` more fits ``limit``, then add ``add``."""

    kind: str
    """``requests`` or ``tokens``."""
    check: int
    add: int
    limit: int


@dataclass(frozen=True)
class Window:
    """The counters a refusal was made on (zeros when admitted)."""

    is_admitted: bool
    previous: int
    current: int
    refused: Take | None = None


class LimitStore(Protocol):
    async def take(self, key: str, window: int, fraction: float, takes: list[Take]) -> Window:
        """One decision over several counters of ``key``, in one round trip: admitted when each
        sliding usage plus its ``check`` fits its ``limit``; then (and only then) each ``add`` is added."""
        ...

    async def aclose(self) -> None: ...


class MemoryLimitStore:
    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}

    async def take(self, key: str, window: int, fraction: float, takes: list[Take]) -> Window:
        for take in takes:
            previous = self._counts.get((f"{key}:{take.kind}", window - 1), 0)
            current = self._counts.get((f"{key}:{take.kind}", window), 0)
            if previous * (1 - fraction) + current + take.check > take.limit:
                return Window(False, previous, current, take)
        for take in (t for t in takes if t.add):
            name = f"{key}:{take.kind}"
            if (name, window) not in self._counts:
                self._forget_before(window - 1)
            self._counts[(name, window)] = self._counts.get((name, window), 0) + take.add
        return Window(True, 0, 0)

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

    async def take(self, key: str, window: int, fraction: float, takes: list[Take]) -> Window:
        slot = "{" + key + "}"  # every counter of a key in one Cluster hash slot, as a script needs
        keys = [f"tn:rl:{slot}:{t.kind}:{w}" for t in takes for w in (window, window - 1)]
        args: list[object] = [fraction, KEEP_S, *(v for t in takes for v in (t.check, t.add, t.limit))]
        refused, previous, current = await self._take(keys=keys, args=args)
        if not refused:
            return Window(True, 0, 0)
        return Window(False, int(previous), int(current), takes[int(refused) - 1])

    async def aclose(self) -> None:
        if self._owns_client:
            await close_redis(self._redis)


class RateLimiter:
    """Limits through one :class:`gateway.store_guard.StoreGuard`: a failing store lets requests
    through, and during an outage costs them nothing (the guard's back-off), not a timeout each."""

    def __init__(self, store: LimitStore, metrics: Metrics, timeout_s: float) -> None:
        self._store = store
        self._metrics = metrics
        self._guard = StoreGuard("rate-limit store", timeout_s, metrics.observe_rate_limit_error)

    async def admit(self, principal: Principal) -> None:
        """Raise ``RateLimited`` (429 with Retry-After) when the key is over one of its limits."""
        limits = principal.limits
        if limits is None:
            return
        takes = []
        if limits.requests_per_minute is not None:
            takes.append(Take("requests", 1, 1, limits.requests_per_minute))
        if limits.tokens_per_minute is not None:
            takes.append(Take("tokens", 1, 0, limits.tokens_per_minute))
        if takes:
            await self._take(principal, takes)

    async def spend_tokens(self, principal: Principal, tokens: int) -> None:
        """Count an answer's tokens against the key's token limit."""
        if principal.limits is None or principal.limits.tokens_per_minute is None or tokens <= 0:
            return
        await self._take(principal, [Take("tokens", 0, tokens, UNLIMITED)])

    async def _take(self, principal: Principal, takes: list[Take]) -> None:
        now = time.time()
        window, fraction = int(now // WINDOW_S), (now % WINDOW_S) / WINDOW_S
        try:
            decision = await self._guard.call(self._store.take(principal.key_id, window, fraction, takes))
        except StoreUnavailable:  # the limit store must never take the gateway down
            return
        refused = decision.refused
        if refused is None:
            return
        self._metrics.observe_rate_limited(principal.tenant, refused.kind)
        wait_s = retry_after_s(decision, fraction, refused.check, refused.limit)
        raise RateLimited(
            f"this API key is over its limit of {refused.limit} {refused.kind} per minute; retry in {wait_s} s",
            headers={"retry-after": str(wait_s)},
            code=f"{refused.kind}_per_minute_exceeded",
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

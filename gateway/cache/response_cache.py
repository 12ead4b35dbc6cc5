"""The response cache: who may read and write which entry, single flight, and failing open.

A store that errors or is slow never fails a request: the call is abandoned after a few
milliseconds and the request is served uncached (``x-turnout-cache: off``). After a few
failures in a row the store is left alone for a growing back-off, and the incident is logged
once, not per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from contracts.wire import ChatCompletion, ChatCompletionRequest
from gateway.cache.key import cache_key, is_deterministic
from gateway.cache.store import CacheStore
from gateway.metrics import Metrics
from gateway.rules import CachePolicy

log = logging.getLogger("turnout")
T = TypeVar("T")
POLL_S = 0.02
LOCK = ":lock"
FAILURES_TO_TRIP = 3


class CacheUnavailable(Exception):
    pass


class CacheEntry(BaseModel):
    completion: str
    """The answer as first served, JSON."""
    backend: str
    created: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def answer(self) -> ChatCompletion:
        return ChatCompletion.model_validate_json(self.completion)


@dataclass(frozen=True)
class Lookup:
    entry: CacheEntry | None
    is_leader: bool
    """This request must call the backend and then ``finish`` (also on failure)."""
    is_store_down: bool = False


@dataclass(frozen=True)
class CachePlan:
    key: str
    namespace: str
    policy: CachePolicy
    primary: str
    """The route's first backend: only its answers fill the cache unless ``fallback_fills``."""
    identity: str
    """What answers on the route's primary backend (``model_identity``): part of the key."""
    can_read: bool
    can_write: bool


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


class ResponseCache:
    def __init__(self, store: CacheStore, metrics: Metrics, timeout_s: float) -> None:
        self.store = store
        self.guard = StoreGuard(timeout_s, metrics)
        self._inflight: dict[str, asyncio.Future[CacheEntry | None]] = {}
        self._lock_tokens: dict[str, str] = {}
        """Cache key to the token of the store lock this process's leader holds for it."""

    def plan(
        self,
        route: str,
        policy: CachePolicy,
        primary: str,
        identity: str,
        request: ChatCompletionRequest,
        tenant: str,
        cache_control: str,
    ) -> CachePlan:
        eligible = policy.enabled and (policy.mode == "always" or is_deterministic(request))
        directives = {d.strip().lower() for d in cache_control.split(",")}
        namespace = "shared" if policy.shared else f"t:{tenant}"
        return CachePlan(
            # Hashing the whole request costs; a request the cache will not touch skips it.
            key=cache_key(namespace, route, identity, request) if eligible else "",
            namespace=namespace,
            policy=policy,
            primary=primary,
            identity=identity,
            can_read=eligible and "no-cache" not in directives,
            can_write=eligible and "no-store" not in directives,
        )

    async def read(self, plan: CachePlan) -> CacheEntry | None:
        """The entry, or ``None``; raises ``CacheUnavailable`` when the store failed."""
        raw = await self.guard.call(self.store.get(plan.key))
        if raw is None:
            return None
        try:
            return CacheEntry.model_validate_json(raw)
        except ValidationError:
            log.warning("dropping an unreadable cache entry %s", plan.key)
            return None

    async def lookup(self, plan: CachePlan, wait_s: float) -> Lookup:
        """Read the entry, with single flight: among identical concurrent misses one leads (calls the
        backend, then ``finish``) and the others wait for its answer, in this process directly and
        across replicas through the store (a short lock, then polling), at most ``wait_s``."""
        waiting = self._inflight.get(plan.key)
        if waiting is not None:
            try:
                async with asyncio.timeout(wait_s):
                    return Lookup(await asyncio.shield(waiting), is_leader=False)
            except TimeoutError:
                return Lookup(None, is_leader=False)
        self._inflight[plan.key] = asyncio.get_running_loop().create_future()
        try:
            entry = await self.read(plan)
            if entry is None:
                token = await self.guard.call(self.store.lock(plan.key + LOCK, int(wait_s * 1000)))
                if token is None:
                    entry = await self._poll(plan, wait_s)  # another replica leads
                else:
                    self._lock_tokens[plan.key] = token
        except CacheUnavailable:
            return Lookup(None, is_leader=True, is_store_down=True)
        except BaseException:  # cancelled or failed before it could lead: followers ask for themselves
            self._settle(plan, None)
            raise
        if entry is not None:
            self._settle(plan, entry)
            return Lookup(entry, is_leader=False)
        return Lookup(None, is_leader=True)

    async def finish(self, plan: CachePlan, entry: CacheEntry | None, is_leader: bool, has_tool_calls: bool) -> bool:
        """Store the answer if the policy allows it and hand it to waiting identical requests.
        Says whether it was stored; never raises."""
        storable = entry is not None and self._may_store(plan, entry, has_tool_calls)
        if is_leader:
            self._settle(plan, entry if storable else None)
        stored = False
        if storable and entry is not None:
            with contextlib.suppress(CacheUnavailable):
                await self.guard.call(self.store.set(plan.key, entry.model_dump_json().encode(), plan.policy.ttl_s))
                stored = True
        if is_leader:
            await self.share(plan, None)
        return stored

    async def share(self, plan: CachePlan, entry: CacheEntry | None) -> None:
        """End a flight this request leads: waiters get ``entry`` (``None``: ask the backend themselves)."""
        self._settle(plan, entry)
        token = self._lock_tokens.pop(plan.key, None)
        if token is not None:  # a leader whose wait for another replica ran out holds no lock
            with contextlib.suppress(CacheUnavailable):
                await self.guard.call(self.store.unlock(plan.key + LOCK, token))

    def _may_store(self, plan: CachePlan, entry: CacheEntry, has_tool_calls: bool) -> bool:
        if not plan.can_write or (entry.backend != plan.primary and not plan.policy.fallback_fills):
            return False
        if has_tool_calls and not plan.policy.tool_calls:
            return False
        return len(entry.completion) <= plan.policy.max_entry_bytes

    def _settle(self, plan: CachePlan, entry: CacheEntry | None) -> None:
        waiting = self._inflight.pop(plan.key, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(entry)

    async def _poll(self, plan: CachePlan, wait_s: float) -> CacheEntry | None:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if (entry := await self._read_quietly(plan)) is not None:
                return entry
            await asyncio.sleep(POLL_S)
        return None

    async def _read_quietly(self, plan: CachePlan) -> CacheEntry | None:
        try:
            return await self.read(plan)
        except CacheUnavailable:
            return None

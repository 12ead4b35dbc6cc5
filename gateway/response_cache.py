"""The response cache: who may read and write which entry, single flight, and failing open.

A store that errors or is slow never fails a request: the call is abandoned after a few
milliseconds, the request is served uncached (``x-switchyard-cache: off``), the store is left
alone for a growing back-off, and the incident is logged once, not per request.
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

from gateway.cache_key import cache_key, is_deterministic
from gateway.cache_store import CacheStore
from gateway.metrics import Metrics
from gateway.rules import CachePolicy
from gateway.schemas import ChatCompletion, ChatCompletionRequest

log = logging.getLogger("switchyard")
T = TypeVar("T")
POLL_S = 0.02


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
class CachePlan:
    key: str
    policy: CachePolicy
    primary: str
    can_read: bool
    can_write: bool

    @property
    def status_if_unserved(self) -> str:
        return "miss" if self.can_read else "bypass"


class StoreGuard:
    """Calls the store with a deadline; after a failure, skips it for a doubling back-off."""

    def __init__(self, timeout_s: float, metrics: Metrics) -> None:
        self._timeout_s = timeout_s
        self._metrics = metrics
        self._retry_at = 0.0
        self._backoff_s = 0.5
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
        if self._is_down:
            log.warning("cache store is back; serving from cache again")
            self._is_down, self._backoff_s = False, 0.5
        return result

    def _failed(self, exc: Exception) -> None:
        self._metrics.observe_cache_error()
        self._retry_at = time.monotonic() + self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, 30.0)
        if not self._is_down:
            self._is_down = True
            log.warning(
                "cache store failed (%s: %s); serving uncached, retrying with back-off", type(exc).__name__, exc
            )


class ResponseCache:
    def __init__(self, store: CacheStore, identities: dict[str, str], metrics: Metrics, timeout_s: float) -> None:
        self.store = store
        self._identities = identities
        self._guard = StoreGuard(timeout_s, metrics)
        self._inflight: dict[str, asyncio.Event] = {}

    def plan(
        self,
        route: str,
        policy: CachePolicy,
        primary: str,
        request: ChatCompletionRequest,
        tenant: str,
        cache_control: str,
    ) -> CachePlan:
        eligible = policy.enabled and (policy.mode == "always" or is_deterministic(request))
        directives = {d.strip().lower() for d in cache_control.split(",")}
        namespace = "shared" if policy.shared else f"t:{tenant}"
        return CachePlan(
            key=cache_key(namespace, route, self._identities[primary], request),
            policy=policy,
            primary=primary,
            can_read=eligible and "no-cache" not in directives,
            can_write=eligible and "no-store" not in directives,
        )

    async def read(self, plan: CachePlan) -> CacheEntry | None:
        """The entry, or ``None``; raises ``CacheUnavailable`` when the store failed."""
        raw = await self._guard.call(self.store.get(plan.key))
        if raw is None:
            return None
        try:
            return CacheEntry.model_validate_json(raw)
        except ValidationError:
            log.warning("dropping an unreadable cache entry %s", plan.key)
            return None

    async def write(self, plan: CachePlan, entry: CacheEntry, backend: str, has_tool_calls: bool) -> bool:
        """Store the answer if the policy allows it; never raises."""
        if not plan.can_write or (backend != plan.primary and not plan.policy.fallback_fills):
            return False
        if has_tool_calls and not plan.policy.tool_calls:
            return False
        raw = entry.model_dump_json().encode()
        if len(raw) > plan.policy.max_entry_bytes:
            return False
        try:
            await self._guard.call(self.store.set(plan.key, raw, plan.policy.ttl_s))
        except CacheUnavailable:
            return False
        return True

    async def coalesce(self, plan: CachePlan, wait_s: float) -> tuple[CacheEntry | None, bool]:
        """Single flight. Returns ``(entry, False)`` when an identical request, here or on another
        replica, produced an answer while this one waited; ``(None, True)`` when this request leads
        and must call ``release`` when done; ``(None, False)`` when waiting ran out."""
        event = self._inflight.get(plan.key)
        if event is not None:
            try:
                async with asyncio.timeout(wait_s):
                    await event.wait()
            except TimeoutError:
                return None, False
            return await self._read_quietly(plan), False
        self._inflight[plan.key] = asyncio.Event()
        try:
            is_ours = await self._guard.call(self.store.lock(plan.key + ":lock", int(wait_s * 1000)))
        except CacheUnavailable:
            is_ours = True
        if is_ours:
            return None, True
        entry = await self._poll(plan, wait_s)
        await self.release(plan, is_leader=False)
        return entry, False

    async def release(self, plan: CachePlan, is_leader: bool = True) -> None:
        event = self._inflight.pop(plan.key, None)
        if event is not None:
            event.set()
        if is_leader:
            with contextlib.suppress(CacheUnavailable):
                await self._guard.call(self.store.unlock(plan.key + ":lock"))

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
